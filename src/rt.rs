//! Where distd's async tasks run. One executor for the whole process:
//!
//! - The CLI runs it on the main thread ([`block_on`]): a daemon's I/O, loops and timers then
//!   share one thread, so a packet's arrival wakes its task without a hop between threads.
//! - A program that uses the library from its own threads gets one background thread that
//!   runs it, started on the first [`spawn`], as smol's global executor does.
//!
//! Blocking work never runs here: functions run on the worker's function threads, file
//! reads on `blocking`'s pool.
//!
//! After its last piece of work the executor's thread keeps polling, without blocking and
//! yielding its core to anything runnable, for [`spin_budget`] (100 µs by default,
//! `DISTD_SPIN_US`) before it sleeps in the reactor: the next message of a busy exchange is
//! then handled at once, instead of after an idle core wakes up, which costs about 100 µs on
//! a virtual machine.
//!
//! [`DeadlineWait`] is how every state machine's shell waits: for its next event or its
//! machine's next deadline, with one timer that moves only when the deadline does.

use async_executor::{Executor, Task};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
            let _ = std::panic::catch_unwind(|| {
                async_io::block_on(Spin::new(EXECUTOR.run(futures_lite::future::pending::<()>())))
            });
        });
        if let Err(e) = spawned {
            panic!("cannot start distd's runtime thread: {e}");
        }
    });
}

/// Spawns a task on distd's executor. Dropping the returned handle cancels the task.
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
    ensure_runner();
    EXECUTOR.spawn(counted(future))
}

/// Runs `future` to completion on this thread, which runs every distd task meanwhile. For a
/// program's main thread: call it before anything is spawned, so no background thread is
/// started.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    RUNNER.store(true, Ordering::Release);
    async_io::block_on(Spin::new(EXECUTOR.run(counted(future))))
}

/// Polls of distd's tasks so far: the executor's thread watches it to tell work from idling.
static POLLS: AtomicU64 = AtomicU64::new(0);

/// How long, by default, a thread keeps looking for work after its last before it sleeps.
const DEFAULT_SPIN_US: u64 = 100;

/// How long the executor's thread (and a function thread) keeps looking for work after its
/// last before it sleeps: `DISTD_SPIN_US` microseconds, 0 to sleep at once.
pub(crate) fn spin_budget() -> Duration {
    static BUDGET: OnceLock<Duration> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let us = match std::env::var("DISTD_SPIN_US") {
            Err(_) => DEFAULT_SPIN_US,
            Ok(v) => v.trim().parse().unwrap_or_else(|_| {
                log::warn!("DISTD_SPIN_US={v:?} is not a number of microseconds; using {DEFAULT_SPIN_US}");
                DEFAULT_SPIN_US
            }),
        };
        Duration::from_micros(us)
    })
}

/// `inner`, with its polls counted in [`POLLS`].
fn counted<F: Future>(inner: F) -> impl Future<Output = F::Output> {
    let mut inner = Box::pin(inner);
    futures_lite::future::poll_fn(move |cx| {
        POLLS.fetch_add(1, Ordering::Relaxed);
        inner.as_mut().poll(cx)
    })
}

/// Keeps the executor's thread awake for a moment after its last work: it polls the
/// reactor without blocking, yielding the core to anything else runnable, so a message
/// arriving soon is handled at once instead of waiting for an idle core to wake up.
struct Spin<F> {
    inner: Pin<Box<F>>,
    seen: u64,
    last_work: Instant,
}

impl<F> Spin<F> {
    fn new(inner: F) -> Spin<F> {
        Spin {
            inner: Box::pin(inner),
            seen: 0,
            last_work: Instant::now(),
        }
    }
}

impl<F: Future> Future for Spin<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Poll::Ready(v) = self.inner.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        let polls = POLLS.load(Ordering::Relaxed);
        let now = Instant::now();
        if polls != self.seen {
            self.seen = polls;
            self.last_work = now;
        }
        if now.duration_since(self.last_work) < spin_budget() {
            std::thread::yield_now();
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// What woke a state machine's shell: the next event, or the machine's deadline.
pub enum Woke<T> {
    Event(T),
    /// Every sender of the events is gone.
    Closed,
    /// The deadline came.
    Deadline,
}

/// Waits for a shell's next event or its state machine's next deadline, whichever comes
/// first (the contract in ARCHITECTURE.md, "State machines"). The timer is registered with the
/// reactor only when the deadline moves: registering one costs the reactor a wake-up, and
/// most batches of events leave the deadline where it was.
#[derive(Default)]
pub struct DeadlineWait {
    armed: Option<(Instant, async_io::Timer)>,
}

impl DeadlineWait {
    pub async fn next<T>(&mut self, events: &async_channel::Receiver<T>, deadline: Option<Instant>) -> Woke<T> {
        use futures_lite::FutureExt;
        if self.armed.as_ref().map(|(at, _)| *at) != deadline {
            self.armed = deadline.map(|at| (at, async_io::Timer::at(at)));
        }
        let event = async {
            match events.recv().await {
                Ok(ev) => Woke::Event(ev),
                Err(_) => Woke::Closed,
            }
        };
        let Some((_, timer)) = self.armed.as_mut() else {
            return event.await;
        };
        let woke = event
            .or(async {
                timer.await;
                Woke::Deadline
            })
            .await;
        if matches!(woke, Woke::Deadline) {
            // A fired timer never fires again: the next call arms a new one.
            self.armed = None;
        }
        woke
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_ends_with_the_next_event_or_the_deadline_and_rearms_after_it_fired() {
        block_on(async {
            let (tx, rx) = async_channel::unbounded::<u32>();
            let mut wait = DeadlineWait::default();
            let waiting = futures_lite::future::poll_once(wait.next(&rx, None)).await;
            assert!(waiting.is_none(), "no event, no deadline: it waits");
            tx.send(7).await.expect("open");
            let soon = Instant::now() + Duration::from_millis(20);
            assert!(matches!(wait.next(&rx, Some(soon)).await, Woke::Event(7)));
            assert!(matches!(wait.next(&rx, Some(soon)).await, Woke::Deadline));
            // The same deadline again (the machine did not move it): a new timer, which is
            // already due, rather than the fired one, which would never wake.
            assert!(matches!(wait.next(&rx, Some(soon)).await, Woke::Deadline));
            drop(tx);
            assert!(matches!(wait.next(&rx, None).await, Woke::Closed));
        });
    }
}
