//! Where distd's async tasks run. One executor for the whole process:
//!
//! - The CLI runs it on the main thread ([`block_on`]): a daemon's I/O, loops and timers then
//!   share one thread, so a packet's arrival wakes its task without a hop between threads.
//! - A program that uses the library from its own threads gets one background thread that
//!   runs it, started on the first [`spawn`], as smol's global executor does.
//!
//! Blocking work never runs here: functions run on the worker's function threads, file
//! reads on `blocking`'s pool.

use async_executor::{Executor, Task};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static EXECUTOR: Executor<'static> = Executor::new();

/// Set once some thread runs the executor for good (the CLI's main thread, or the
/// background thread).
static RUNNER: AtomicBool = AtomicBool::new(false);

fn ensure_runner() {
    static BACKGROUND: OnceLock<()> = OnceLock::new();
    if RUNNER.load(Ordering::Acquire) {
        return;
    }
    BACKGROUND.get_or_init(|| {
        RUNNER.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new().name("distd-rt".into()).spawn(|| loop {
            let _ =
                std::panic::catch_unwind(|| async_io::block_on(EXECUTOR.run(futures_lite::future::pending::<()>())));
        });
        if let Err(e) = spawned {
            panic!("cannot start distd's runtime thread: {e}");
        }
    });
}

/// Spawns a task on distd's executor. Dropping the returned handle cancels the task.
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
    ensure_runner();
    EXECUTOR.spawn(future)
}

/// Runs `future` to completion on this thread, which runs every distd task meanwhile. For a
/// program's main thread: call it before anything is spawned, so no background thread is
/// started.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    RUNNER.store(true, Ordering::Release);
    async_io::block_on(EXECUTOR.run(future))
}
