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
//! `DISTD_SPIN_US`, 0 to sleep at once) before it sleeps in the reactor: the next message of
//! a busy exchange is then handled at once, instead of after the thread is woken, which
//! costs far more than a task on a virtual machine. Work is a poll of a task that was woken
//! (a spawned task is polled only then; the future given to [`block_on`] counts only when its
//! own waker was woken), so the spin ends 100 µs after the last real work and an idle process
//! sleeps. (Counting every poll of that future, which the executor re-polls on every pass,
//! made an earlier spin that never ended.) Work after a rest of over 10 ms halves the next
//! spin, and work that comes sooner restores it: at rest, woken only by heartbeats, a process
//! soon stops spinning at all.
//!
//! A shell's loop takes its events from an [`Inbox`]: ordinary events in order, and an urgent
//! lane (stop requests, from a signal) that overtakes any backlog. It handles at most
//! [`BATCH`] events before it lets the executor's other tasks run ([`yield_now`]), so a
//! stream of events that never pauses cannot starve them (the signal handler among them).
//!
//! [`DeadlineWait`] is how every state machine's shell waits: for its next event or its
//! machine's next deadline, with one timer that moves only when the deadline does.

use async_executor::{Executor, Task};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
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
            let _ =
                std::panic::catch_unwind(|| async_io::block_on(EXECUTOR.run(futures_lite::future::pending::<()>())));
        });
        if let Err(e) = spawned {
            panic!("cannot start distd's runtime thread: {e}");
        }
    });
}

/// `fut`'s output, unless `deadline` comes first: then `None`, and `fut` is dropped.
pub async fn until<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        async_io::Timer::at(deadline).await;
        None
    })
    .await
}

/// `fut`'s output, unless `after` passes first: then `None`, and `fut` is dropped.
pub async fn within<T>(after: Duration, fut: impl Future<Output = T>) -> Option<T> {
    until(Instant::now() + after, fut).await
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
    async_io::block_on(Spin::new(EXECUTOR.run(WhenWoken::new(future))))
}

/// Polls of distd's tasks that had been woken, so far: the executor's thread watches it to
/// tell work from idling.
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

/// A spawned task, its polls counted in [`POLLS`]: the executor polls a task only when it was
/// woken, so each poll is work.
fn counted<F: Future>(inner: F) -> impl Future<Output = F::Output> {
    let mut inner = Box::pin(inner);
    futures_lite::future::poll_fn(move |cx| {
        POLLS.fetch_add(1, Ordering::Relaxed);
        inner.as_mut().poll(cx)
    })
}

/// The waker [`WhenWoken`] gives its future: it notes the wake, then passes it on.
struct NotingWaker {
    woken: AtomicBool,
    inner: Mutex<Waker>,
}

impl Wake for NotingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).wake_by_ref();
    }
}

/// The future of [`block_on`], its polls counted in [`POLLS`] only when its own waker was
/// woken since the last: the executor polls it on every pass, work or not.
struct WhenWoken<F> {
    inner: Pin<Box<F>>,
    waker: Option<(Arc<NotingWaker>, Waker)>,
}

impl<F> WhenWoken<F> {
    fn new(inner: F) -> WhenWoken<F> {
        WhenWoken {
            inner: Box::pin(inner),
            waker: None,
        }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let (noting, waker) = this.waker.get_or_insert_with(|| {
            let noting = Arc::new(NotingWaker {
                // The first poll is work.
                woken: AtomicBool::new(true),
                inner: Mutex::new(cx.waker().clone()),
            });
            (noting.clone(), Waker::from(noting))
        });
        {
            let mut inner = noting.inner.lock().unwrap_or_else(|e| e.into_inner());
            if !inner.will_wake(cx.waker()) {
                *inner = cx.waker().clone();
            }
        }
        if noting.woken.swap(false, Ordering::AcqRel) {
            POLLS.fetch_add(1, Ordering::Relaxed);
        }
        let waker = waker.clone();
        this.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// A sleep longer than this before the next work is rest, not a pause in a busy exchange:
/// far longer than any message's round trip, far shorter than a heartbeat.
const LONG_REST: Duration = Duration::from_millis(10);

/// Keeps the executor's thread awake for a moment after its last work: it polls the
/// reactor without blocking, yielding the core to anything else runnable, so a message
/// arriving soon is handled at once instead of waiting for the thread to be woken.
///
/// The spin lasts while the process is busy: work that comes within [`LONG_REST`] of falling
/// asleep makes the next spin full, work after a longer rest halves it (down to none). A busy
/// exchange keeps the full spin, even on a loaded machine where its messages come late; a
/// process at rest, woken only by its heartbeat, stops spinning after a few beats.
struct Spin<F> {
    inner: Pin<Box<F>>,
    seen: u64,
    last_work: Instant,
    /// How long this thread spins after its next work.
    budget: Duration,
    /// When it last went to sleep without work, if it has slept since its last work.
    slept_at: Option<Instant>,
}

impl<F> Spin<F> {
    fn new(inner: F) -> Spin<F> {
        Spin {
            inner: Box::pin(inner),
            seen: 0,
            last_work: Instant::now(),
            budget: spin_budget(),
            slept_at: None,
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
            if let Some(slept) = self.slept_at.take() {
                if now.duration_since(slept) < LONG_REST {
                    // Still a busy exchange: spin fully after this work.
                    self.budget = spin_budget();
                } else {
                    // A long rest: spin half as long after this work.
                    self.budget /= 2;
                    if self.budget < Duration::from_micros(1) {
                        self.budget = Duration::ZERO;
                    }
                }
            }
        }
        if self.slept_at.is_some() {
            return Poll::Pending;
        }
        if now.duration_since(self.last_work) < self.budget {
            std::thread::yield_now();
            cx.waker().wake_by_ref();
        } else {
            // The spin found nothing: sleep. How soon the next work comes says whether the
            // next spin should be full or shorter.
            self.slept_at = Some(now);
        }
        Poll::Pending
    }
}

/// Most events a shell's loop handles in a row before it lets the executor's other tasks
/// run (readers, writers, the signal handler): enough that the per-batch work (timers, the
/// outbox) is spread thin, few enough that a burst never holds the thread for long.
pub const BATCH: usize = 256;

/// Lets the executor's other tasks run once before this one goes on.
pub use futures_lite::future::yield_now;

/// Where a shell's events come from: ordinary events in the order they were sent, and an
/// urgent lane whose events overtake every ordinary one already queued. A stop request
/// (a signal) goes in the urgent lane, so no backlog of messages delays it.
pub struct Inbox<T> {
    urgent: async_channel::Receiver<T>,
    events: async_channel::Receiver<T>,
}

/// The two ends that send to an [`Inbox`].
pub struct Senders<T> {
    /// Ordinary events, handled in order.
    pub events: async_channel::Sender<T>,
    /// Events that overtake the queued ordinary ones.
    pub urgent: async_channel::Sender<T>,
}

/// A new inbox and its senders. The inbox counts as closed once every ordinary sender is
/// gone; the urgent lane alone does not keep it open.
pub fn inbox<T>() -> (Senders<T>, Inbox<T>) {
    let (events, events_rx) = async_channel::unbounded();
    let (urgent, urgent_rx) = async_channel::unbounded();
    (
        Senders { events, urgent },
        Inbox {
            urgent: urgent_rx,
            events: events_rx,
        },
    )
}

impl<T> Inbox<T> {
    /// The next event if one is queued: an urgent one first.
    pub fn try_next(&self) -> Option<T> {
        self.urgent.try_recv().or_else(|_| self.events.try_recv()).ok()
    }

    /// The events of one batch: `first`, then whatever is queued, at most [`BATCH`] in all.
    /// A batch that came to [`BATCH`] is [`Batch::is_full`]: more may be queued, and the loop
    /// yields before it takes them.
    pub fn batch(&self, first: T) -> Batch<'_, T> {
        Batch {
            inbox: self,
            first: Some(first),
            taken: 0,
        }
    }

    /// Waits for the next event (an urgent one first); `None` once the ordinary lane closed
    /// and nothing urgent is queued.
    pub async fn next(&self) -> Option<T> {
        use futures_lite::FutureExt;
        if let Some(ev) = self.try_next() {
            return Some(ev);
        }
        let urgent = async {
            match self.urgent.recv().await {
                Ok(ev) => Some(ev),
                // Nobody can send an urgent event any more: only the ordinary lane matters.
                Err(_) => futures_lite::future::pending().await,
            }
        };
        urgent.or(async { self.events.recv().await.ok() }).await
    }
}

/// One batch of a shell's events ([`Inbox::batch`]).
pub struct Batch<'a, T> {
    inbox: &'a Inbox<T>,
    first: Option<T>,
    taken: usize,
}

impl<T> Batch<'_, T> {
    /// The batch came to [`BATCH`] events: let the executor's other tasks run before the next.
    pub fn is_full(&self) -> bool {
        self.taken == BATCH
    }
}

impl<T> Iterator for Batch<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.taken == BATCH {
            return None;
        }
        let ev = self.first.take().or_else(|| self.inbox.try_next())?;
        self.taken += 1;
        Some(ev)
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
    pub async fn next<T>(&mut self, events: &Inbox<T>, deadline: Option<Instant>) -> Woke<T> {
        use futures_lite::FutureExt;
        if self.armed.as_ref().map(|(at, _)| *at) != deadline {
            self.armed = deadline.map(|at| (at, async_io::Timer::at(at)));
        }
        let event = async {
            match events.next().await {
                Some(ev) => Woke::Event(ev),
                None => Woke::Closed,
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
            let (tx, rx) = inbox::<u32>();
            let tx = tx.events;
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

    #[test]
    fn urgent_events_overtake_the_queued_ones_and_the_inbox_closes_with_its_ordinary_lane() {
        block_on(async {
            let (tx, rx) = inbox::<u32>();
            for i in 0..1000 {
                tx.events.try_send(i).expect("open");
            }
            tx.urgent.try_send(9999).expect("open");
            assert_eq!(rx.next().await, Some(9999), "the urgent event comes first");
            assert_eq!(rx.try_next(), Some(0), "then the others, in order");
            let Senders { events, urgent } = tx;
            drop(urgent);
            assert_eq!(rx.next().await, Some(1), "a closed urgent lane leaves the rest");
            drop(events);
            let mut left = 0;
            while rx.next().await.is_some() {
                left += 1;
            }
            assert_eq!(left, 998, "what was queued is still handed out before the end");
        });
    }

    #[test]
    fn a_batch_takes_at_most_batch_events_and_says_when_it_was_cut() {
        let (tx, rx) = inbox::<usize>();
        for i in 1..300 {
            tx.events.try_send(i).expect("open");
        }
        let mut batch = rx.batch(0);
        assert_eq!((&mut batch).count(), BATCH);
        assert!(batch.is_full(), "more is queued");
        let mut rest = rx.batch(rx.try_next().expect("queued"));
        assert_eq!((&mut rest).collect::<Vec<_>>(), (BATCH..300).collect::<Vec<_>>());
        assert!(!rest.is_full());
    }
}
