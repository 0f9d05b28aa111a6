//! Runaway programs are stopped, not waited for.
//!
//! A mapping may loop forever on some payload (`def f: f; f`), or build something
//! huge (`[range(1e9)]`). jaq offers no fuel or step limit, and its evaluation gives
//! no hook to check a clock, so each run goes to a thread of its own and the caller
//! waits at most [`TIME_LIMIT`]: past it, the record fails with a reason naming the
//! bound and the batch goes on. A thread cannot be stopped from outside: the
//! abandoned one runs on until its program ends (or the container does). They are
//! counted ([`runaway_threads`]): past [`MAX_RUNAWAYS`] no new run starts (the
//! record is retried, not failed), and the mapper's `main` recycles a container that
//! holds one, so abandoned threads never pile up.

use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::Value;

/// The longest a mapping (or key expression) may run on one event. The example
/// mapping takes about 0.1 ms.
pub const TIME_LIMIT: Duration = Duration::from_secs(1);

/// The largest output a mapping may produce, as JSON: a bound on runaway output. (A
/// delivery over SQS's 256 KiB is refused later by the mapper as `too_large`.)
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Abandoned threads still running, beyond which no new run starts.
const MAX_RUNAWAYS: usize = 4;

/// A program's thread: deep but not endless recursion (jq's `recurse`, nested
/// `reduce`) needs more than the 2 MiB a thread gets by default. Endless recursion
/// stops at half of it (`guard`).
pub(super) const STACK_BYTES: usize = 64 * 1024 * 1024;

static RUNAWAYS: AtomicUsize = AtomicUsize::new(0);

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

/// How many abandoned runs are still running in this process.
pub fn runaway_threads() -> usize {
    RUNAWAYS.load(Ordering::SeqCst)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopped {
    /// Still running at the time limit; abandoned.
    TimeLimit,
    /// Not started: too many abandoned runs are still going.
    Saturated,
    /// The thread could not start, or ended without an answer (a panic in jaq).
    Failed,
}

/// Runs `job` on a thread of its own and waits at most `limit` for its answer.
pub(super) fn run<T, F>(limit: Duration, job: F) -> Result<T, Stopped>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if RUNAWAYS.load(Ordering::SeqCst) >= MAX_RUNAWAYS {
        return Err(Stopped::Saturated);
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let state = Arc::new(AtomicU8::new(RUNNING));
    let thread_state = state.clone();
    let spawned = std::thread::Builder::new().name("jq".to_owned()).stack_size(STACK_BYTES).spawn(move || {
        let answer = job();
        // The receiver is gone if the caller gave up; the answer is dropped then.
        let _ = tx.send(answer);
        if thread_state.swap(FINISHED, Ordering::SeqCst) == ABANDONED {
            RUNAWAYS.fetch_sub(1, Ordering::SeqCst);
        }
    });
    if spawned.is_err() {
        return Err(Stopped::Failed);
    }
    match rx.recv_timeout(limit) {
        Ok(answer) => Ok(answer),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Stopped::Failed),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            // Counted before it is marked, so the thread's decrement never comes first.
            RUNAWAYS.fetch_add(1, Ordering::SeqCst);
            if state.swap(ABANDONED, Ordering::SeqCst) == FINISHED {
                // It finished just now: not a runaway after all.
                RUNAWAYS.fetch_sub(1, Ordering::SeqCst);
                return rx.try_recv().map_err(|_| Stopped::Failed);
            }
            Err(Stopped::TimeLimit)
        }
    }
}

/// Whether `value` written as JSON fits in `limit` bytes; stops writing once it does not.
pub(super) fn fits(value: &Value, limit: usize) -> bool {
    struct Counter {
        written: usize,
        limit: usize,
    }
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written += buf.len();
            if self.written > self.limit {
                return Err(io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Counter { written: 0, limit }, value).is_ok()
}
