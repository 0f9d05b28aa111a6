//! Runaway programs are stopped, not waited for.
//!
//! A mapping may loop forever on some payload (`def f: f; f`), or build something
//! huge (`[range(1e9)]`). jaq offers no fuel or step limit, and its evaluation gives
//! no hook to check a clock, so each run goes to a worker thread and the caller
//! waits at most [`TIME_LIMIT`]: past it, the record fails with a reason naming the
//! bound and the batch goes on. A thread cannot be stopped from outside: the
//! abandoned worker runs on until its program ends (or the container does), and is
//! never given another run. Abandoned runs are counted ([`runaway_threads`]): past
//! [`MAX_RUNAWAYS`] no new run starts (the record is retried, not failed), and the
//! mapper's `main` recycles a container that holds one, so they never pile up.
//!
//! Workers that answered in time are kept ([`IDLE_WORKERS`] of them) and reused, so
//! a warm mapper does not create a thread with a 64 MiB stack for every program it
//! runs (three or four per event).

use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
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

/// Idle workers kept for the next runs; a worker finishing while this many wait ends.
const IDLE_WORKERS: usize = 2;

/// A program's thread: deep but not endless recursion (jq's `recurse`, nested
/// `reduce`) needs more than the 2 MiB a thread gets by default. Endless recursion
/// stops at half of it (`guard`).
pub(super) const STACK_BYTES: usize = 64 * 1024 * 1024;

static RUNAWAYS: AtomicUsize = AtomicUsize::new(0);

/// The process's workers.
static POOL: Pool = Pool::new();

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

type Job = Box<dyn FnOnce() + Send>;

struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    fn spawn() -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("jq".to_owned()).stack_size(STACK_BYTES).spawn(move || {
            for job in queue {
                job();
            }
        })?;
        Ok(Self { jobs })
    }
}

/// Workers waiting for a job. A worker's thread ends when its sender is dropped.
struct Pool {
    idle: Mutex<Vec<Worker>>,
}

impl Pool {
    const fn new() -> Self {
        Self { idle: Mutex::new(Vec::new()) }
    }

    /// An idle worker, or a new one.
    fn take(&self) -> io::Result<Worker> {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        idle.map_or_else(Worker::spawn, Ok)
    }

    /// Back to the idle ones, unless enough wait already (then its thread ends).
    fn give_back(&self, worker: Worker) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < IDLE_WORKERS {
            idle.push(worker);
        }
    }

    fn run<T, F>(&self, limit: Duration, job: F) -> Result<T, Stopped>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if RUNAWAYS.load(Ordering::SeqCst) >= MAX_RUNAWAYS {
            return Err(Stopped::Saturated);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let state = Arc::new(AtomicU8::new(RUNNING));
        let job_state = state.clone();
        let job: Job = Box::new(move || {
            let answer = job();
            // The receiver is gone if the caller gave up; the answer is dropped then.
            let _ = tx.send(answer);
            if job_state.swap(FINISHED, Ordering::SeqCst) == ABANDONED {
                RUNAWAYS.fetch_sub(1, Ordering::SeqCst);
            }
        });
        // Only a worker whose job answered is given back, so its thread is alive.
        let worker = self.take().map_err(|_| Stopped::Failed)?;
        worker.jobs.send(job).map_err(|_| Stopped::Failed)?;
        match rx.recv_timeout(limit) {
            Ok(answer) => {
                self.give_back(worker);
                Ok(answer)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Stopped::Failed),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Counted before it is marked, so the job's decrement never comes first.
                RUNAWAYS.fetch_add(1, Ordering::SeqCst);
                if state.swap(ABANDONED, Ordering::SeqCst) == FINISHED {
                    // It finished just now: not a runaway after all.
                    RUNAWAYS.fetch_sub(1, Ordering::SeqCst);
                    self.give_back(worker);
                    return rx.try_recv().map_err(|_| Stopped::Failed);
                }
                // The worker is dropped: its thread ends once the runaway job does.
                Err(Stopped::TimeLimit)
            }
        }
    }
}

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

/// Runs `job` on a worker thread and waits at most `limit` for its answer.
pub(super) fn run<T, F>(limit: Duration, job: F) -> Result<T, Stopped>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    POOL.run(limit, job)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn here() -> thread::ThreadId {
        thread::current().id()
    }

    #[test]
    fn a_worker_that_answered_in_time_runs_the_next_program_and_an_abandoned_one_never_does() {
        let pool = Pool::new();
        let long = Duration::from_secs(10);
        let first = pool.run(long, here).unwrap();
        assert_ne!(first, here(), "a program runs on a worker, not the caller's thread");
        assert_eq!(pool.run(long, here).unwrap(), first, "the idle worker is reused");

        let (release, stuck) = mpsc::channel::<()>();
        let abandoned = pool.run(Duration::from_millis(50), move || stuck.recv().map(|()| here()));
        assert_eq!(abandoned, Err(Stopped::TimeLimit));
        let after = pool.run(long, here).unwrap();
        assert_ne!(after, first, "the worker still running the abandoned program gets no other");
        release.send(()).unwrap();
        assert_eq!(pool.run(long, here).unwrap(), after);
    }
}
