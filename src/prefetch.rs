//! Cache prefetch hints for the two places where the pipeline walks memory another agent
//! wrote and the next address is known before it is needed: pcap record headers in a mapped
//! file, and a batch's frame descriptors, written by the reading thread's core.

/// Hints the CPU to load the cache line holding `*item` (nothing for `None`, or off x86-64).
/// A hint only: it changes no result, and a wrong or useless one costs a few cycles.
#[inline(always)]
pub(crate) fn prefetch<T>(item: Option<&T>) {
    if let Some(item) = item {
        prefetch_address(std::ptr::from_ref(item).cast::<u8>());
    }
}

/// [`prefetch`] for every cache line `*item` touches (its first and last bytes' lines, and
/// each 64 bytes between).
#[inline(always)]
pub(crate) fn prefetch_all<T>(item: Option<&T>) {
    let Some(item) = item else { return };
    let bytes = std::ptr::from_ref(item).cast::<u8>();
    let size = std::mem::size_of::<T>();
    let mut offset = 0;
    while offset < size {
        prefetch_address(bytes.wrapping_add(offset));
        offset += 64;
    }
    if size > 0 {
        prefetch_address(bytes.wrapping_add(size - 1));
    }
}

#[inline(always)]
fn prefetch_address(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and never faults, whatever the
    // address; callers pass addresses inside one live value.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            address.cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
