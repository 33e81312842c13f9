//! Plain capture files mapped into memory.
//!
//! Mapping saves the copy from the page cache that `read(2)` makes, and lets the parallel
//! pipeline hand worker threads offsets into the file instead of copies of each frame. Pages
//! already processed are dropped from the process's resident set as the run advances
//! ([`MappedCapture::release_before`]), so peak RSS stays flat in the capture's size.
//!
//! A mapped file that another program truncates while we read it makes the kernel raise
//! SIGBUS; captures are normally complete files, and growing files (a capture still being
//! written) are safe: we see the length they had when opened. `.gz` inputs, pipes and other
//! special files are streamed instead.

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use memmap2::Mmap;

/// Pages are released in steps of at least this many bytes (fewer system calls), aligned to
/// this size (a multiple of every page size Linux uses for file mappings).
const RELEASE_STEP: usize = 8 << 20;

/// A read-only mapping of a whole capture file.
pub struct MappedCapture {
    map: Arc<Mmap>,
    /// Bytes at the start of the mapping already released from the resident set.
    released: AtomicUsize,
}

impl MappedCapture {
    /// Maps `file` when it is a non-empty regular file; `None` otherwise (the caller streams).
    pub fn open(file: &File) -> Option<Self> {
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() == 0 {
            return None;
        }
        // SAFETY: the mapping is read-only and private; Rust code only reads it. The one hazard
        // is another process truncating the file while it is mapped (documented above).
        let map = unsafe { Mmap::map(file) }.ok()?;
        // Records are visited in file order; read-ahead helps, and is only a hint.
        let _ = map.advise(memmap2::Advice::Sequential);
        Some(MappedCapture {
            map: Arc::new(map),
            released: AtomicUsize::new(0),
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// A handle on the mapping that worker threads can keep with offsets into it.
    pub fn shared(&self) -> Arc<Mmap> {
        Arc::clone(&self.map)
    }

    /// Drops the pages wholly before `offset` from this process's resident set (they stay in
    /// the page cache). Cheap to call often: it acts only every few megabytes.
    ///
    /// # Safety
    /// No reference into the mapping below `offset` may be alive, on any thread, while this
    /// runs: after `MADV_DONTNEED` such pages are read from the file again on the next access,
    /// which is only the same bytes because the mapping is never written.
    pub unsafe fn release_before(&self, offset: usize) {
        let target = offset.min(self.map.len()) / RELEASE_STEP * RELEASE_STEP;
        let done = self.released.load(Ordering::Relaxed);
        if target < done + RELEASE_STEP {
            return;
        }
        // SAFETY: forwarded to the caller (no live borrows below `offset`); `done` and
        // `target` are multiples of RELEASE_STEP, hence page aligned, and within the mapping.
        let result = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, done, target - done)
        };
        if result.is_ok() {
            self.released.store(target, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_regular_files_and_refuses_empty_ones() {
        let dir = std::env::temp_dir().join(format!("tw-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("a.bin");
        let data: Vec<u8> = (0..(RELEASE_STEP * 2 + 100))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&data))
            .expect("write");
        let file = File::open(&path).expect("open");
        let mapped = MappedCapture::open(&file).expect("a regular file maps");
        assert_eq!(mapped.bytes(), &data[..]);
        // SAFETY: no borrows of the mapping are alive here.
        unsafe { mapped.release_before(RELEASE_STEP + 5) };
        assert_eq!(mapped.released.load(Ordering::Relaxed), RELEASE_STEP);
        // Released pages read back from the file unchanged.
        assert_eq!(mapped.bytes(), &data[..]);

        let empty = dir.join("empty.bin");
        std::fs::File::create(&empty).expect("create");
        assert!(MappedCapture::open(&File::open(&empty).expect("open")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
