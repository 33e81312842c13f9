//! Ctrl-C (SIGINT) and SIGTERM while an offline run reads its captures.
//!
//! Without a handler the process dies on the spot, leaving behind what it had started: the
//! `<name>.partial` copy of `flows -o FILE` and the sorted-row spill folder under the temporary
//! directory (gigabytes on an ISP-sized run). With [`Guard`] in place, the first signal only
//! sets a flag; the pipeline stops reading at its next checkpoint ([`Pipeline::set_stop`],
//! every 4096 packets), the run ends with [`Interrupted`], every temporary is removed as it
//! is dropped, and the process exits with 128 + the signal's number, as a shell reports a
//! process killed by it. Nothing is written: a report of part of the input would look like a
//! report of all of it.
//!
//! The handler is reset by its first delivery (`SA_RESETHAND`), so a second Ctrl-C kills at
//! once, as users expect when a stop takes too long. Reads interrupted by the signal restart
//! (`SA_RESTART`). Once reading is over the previous handlers are restored (dropping the
//! [`Guard`]): the outputs are then written through complete-or-absent files
//! (`crate::atomic_file`), which a signal cannot leave half-written.
//!
//! [`Pipeline::set_stop`]: crate::pipeline::Pipeline::set_stop

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set by the handler; read by the pipeline.
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The signal that set [`REQUESTED`].
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The run was stopped by a signal before it had read all its input.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {name} after {packets} packets; no output was written")]
pub struct Interrupted {
    /// The signal's number (2 for SIGINT, 15 for SIGTERM).
    pub signal: i32,
    name: &'static str,
    packets: u64,
}

impl Interrupted {
    /// The run's end after a stop request, with the packets read until then.
    pub fn now(packets: u64) -> Self {
        let signal = SIGNAL.load(Ordering::SeqCst);
        Interrupted {
            signal,
            name: signal_name(signal),
            packets,
        }
    }

    /// The exit status a shell gives a process killed by the signal.
    pub fn exit_code(&self) -> i32 {
        128 + self.signal
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

/// SIGINT and SIGTERM set the stop flag while this lives; dropping it puts the previous
/// handlers back.
pub struct Guard {
    #[cfg(unix)]
    previous: [(libc::c_int, libc::sigaction); 2],
}

impl Guard {
    /// Installs the handlers and returns the flag they set.
    pub fn install() -> (Guard, &'static AtomicBool) {
        (Guard::new(), &REQUESTED)
    }

    #[cfg(unix)]
    fn new() -> Guard {
        let install = |signal: libc::c_int| {
            // SAFETY: sigaction is given a zero-initialised (valid, empty) struct with a
            // handler that only stores to atomics, which is async-signal-safe.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
                libc::sigemptyset(&mut action.sa_mask);
                let mut previous: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, &action, &mut previous);
                (signal, previous)
            }
        };
        Guard {
            previous: [install(libc::SIGINT), install(libc::SIGTERM)],
        }
    }

    #[cfg(not(unix))]
    fn new() -> Guard {
        Guard {}
    }
}

#[cfg(unix)]
impl Drop for Guard {
    fn drop(&mut self) {
        for (signal, previous) in &self.previous {
            // SAFETY: restores the action sigaction returned for this signal.
            unsafe {
                libc::sigaction(*signal, previous, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    SIGNAL.store(signal, Ordering::SeqCst);
    REQUESTED.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_and_message_name_the_signal() {
        let e = Interrupted {
            signal: 2,
            name: signal_name(2),
            packets: 4096,
        };
        assert_eq!(e.exit_code(), 130);
        assert_eq!(
            e.to_string(),
            "interrupted by SIGINT after 4096 packets; no output was written"
        );
        assert_eq!(signal_name(15), "SIGTERM");
    }
}
