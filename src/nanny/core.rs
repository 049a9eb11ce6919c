//! The nanny's one state machine: every supervised worker slot (a [`Supervisor`] each), the
//! signals the nanny got, its link to the scheduler, and when the nanny is done.
//!
//! It decides what the nanny does: a first SIGINT/SIGTERM stops the workers gracefully, a
//! second kills them at once; one slot giving up stops them all; the scheduler's restart
//! restarts them all; memory is checked on a timer; a death is told to the scheduler (when
//! linked) *before* a memory kill, so the report arrives ahead of the connection drop; a lost
//! scheduler is dialled again at once, and a dial that gave up is tried again after a backoff,
//! for as long as the nanny runs (a restarted scheduler finds its nannies again).
//!
//! The contract: `on_*(..., now)` in, [`NannyAction`]s out through [`NannyCore::take_outbox`],
//! [`NannyCore::next_deadline`] for the next timer. It never spawns, signals, reads `/proc`
//! or the clock, or touches a socket: the shell in `server.rs` does.

use super::supervisor::{Action, ExitKind, GiveUp, Policy, Supervisor};
use crate::memory::MemoryPolicy;
use crate::protocol::{FromNanny, ToNanny};
use std::time::{Duration, Instant};

/// The wait before dialling again after a dial gave up (it retried for its own patience
/// first); doubles on each failure up to [`LINK_RETRY_MAX`], reset once linked.
const LINK_RETRY: Duration = Duration::from_secs(1);
const LINK_RETRY_MAX: Duration = Duration::from_secs(30);

/// The longest wait between memory checks while no worker's memory moves: an idle nanny
/// wakes every 2 s (a check reads the worker's whole process tree: without cgroups, every
/// process's `/proc/PID/stat`), and memory that starts to grow is seen within this long and
/// then every [`MemoryPolicy::CHECK_EVERY`]. The worker itself checks every 100 ms while it
/// runs tasks, and pauses them above 80% of its limit.
pub const MEMORY_CHECK_AT_REST: Duration = Duration::from_secs(2);

/// What the nanny's shell must do. `slot` indexes the workers as named at the start.
#[derive(Clone, Debug, PartialEq)]
pub enum NannyAction {
    /// Start the slot's worker process.
    Spawn { slot: usize },
    /// SIGTERM to the slot's worker: a graceful stop.
    Terminate { slot: usize },
    /// SIGKILL to the slot's worker and its process group.
    Kill { slot: usize },
    /// The slot's worker died (or is about to be killed), for this reason: log it with its
    /// last words.
    Died { slot: usize, reason: String },
    /// Send this to the scheduler.
    Send(FromNanny),
    /// The first slot that gave up: the nanny ends with this error once all are stopped.
    GaveUp { slot: usize, reason: GiveUp },
    /// Read the resident memory of every live worker and hand it to [`NannyCore::on_memory`].
    SampleMemory,
    /// Kill processes re-parented to the nanny: orphans of a dead worker's tasks.
    ReapOrphans,
    /// Dial the scheduler and register; the shell answers with [`NannyCore::on_linked`] or
    /// [`NannyCore::on_link_failed`].
    Link,
}

/// The nanny's link to the scheduler.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    /// Not linked: dial again at `retry` (None once the nanny stops for good).
    Down { retry: Option<Instant> },
    /// A dial is under way.
    Dialing,
    /// Registered: deaths are reported.
    Up,
}

/// One worker slot.
struct Slot {
    name: String,
    supervisor: Supervisor,
}

/// The nanny's state. One owner; see the module doc.
pub struct NannyCore {
    slots: Vec<Slot>,
    /// SIGINT/SIGTERM received so far: the first stops gracefully, the second kills.
    signals: usize,
    /// Stopping for good (a signal, or a slot gave up): nothing restarts any more.
    stopping: bool,
    /// The slot that gave up first.
    gave_up: Option<usize>,
    /// The scheduler link: deaths are reported while it is up.
    link: Link,
    /// The wait before the next dial after one that gave up.
    link_backoff: Duration,
    /// None without a memory limit, or once done.
    next_memory_check: Option<Instant>,
    /// The wait from one memory check to the next: [`MemoryPolicy::CHECK_EVERY`] while a
    /// worker's memory moves, doubling up to [`MEMORY_CHECK_AT_REST`] while none does.
    memory_every: Duration,
    /// Each slot's last memory reading, to tell movement from rest.
    last_rss: Vec<Option<u64>>,
    /// A reading that differs from the last by more than this (1% of the limit) is movement.
    moved_by: u64,
    outbox: Vec<NannyAction>,
}

impl NannyCore {
    /// Supervises one worker per name, each started at once (at the first `on_timer`).
    pub fn new(names: Vec<String>, policy: &Policy, now: Instant) -> NannyCore {
        let names_empty = names.is_empty();
        let slots = names.len();
        NannyCore {
            slots: names
                .into_iter()
                .map(|name| Slot {
                    name,
                    supervisor: Supervisor::new(policy.clone(), now),
                })
                .collect(),
            signals: 0,
            stopping: false,
            gave_up: None,
            link: Link::Down { retry: Some(now) },
            link_backoff: LINK_RETRY,
            next_memory_check: (policy.memory.is_limited() && !names_empty).then(|| now + MemoryPolicy::CHECK_EVERY),
            memory_every: MemoryPolicy::CHECK_EVERY,
            last_rss: vec![None; slots],
            moved_by: policy.memory.limit() / 100,
            outbox: Vec::new(),
        }
    }

    /// Everything decided since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<NannyAction> {
        std::mem::take(&mut self.outbox)
    }

    /// Every slot is done: the nanny exits.
    pub fn is_done(&self) -> bool {
        self.slots.iter().all(|s| s.supervisor.is_done())
    }

    /// The name of slot `slot`'s worker.
    pub fn name(&self, slot: usize) -> &str {
        &self.slots[slot].name
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        if self.is_done() {
            return None;
        }
        self.slots
            .iter()
            .filter_map(|s| s.supervisor.next_deadline())
            .chain(self.next_memory_check)
            .chain(match self.link {
                Link::Down { retry } => retry,
                _ => None,
            })
            .min()
    }

    /// Starts, kills, samples and dials whatever is due at `now`.
    pub fn on_timer(&mut self, now: Instant) {
        if matches!(self.link, Link::Down { retry: Some(at) } if at <= now) {
            self.link = Link::Dialing;
            self.outbox.push(NannyAction::Link);
        }
        for i in 0..self.slots.len() {
            self.slots[i].supervisor.on_timer(now);
            self.drain(i, now);
        }
        if let Some(at) = self.next_memory_check.filter(|at| *at <= now) {
            self.next_memory_check = (!self.is_done()).then(|| at.max(now) + self.memory_every);
            // Slower next time unless a reading of this round moves (see `on_memory`).
            self.memory_every = (self.memory_every * 2).min(MEMORY_CHECK_AT_REST);
            self.outbox.push(NannyAction::SampleMemory);
        }
    }

    /// SIGINT or SIGTERM to the nanny: the first stops every worker gracefully (SIGKILL after
    /// the grace period), the next ones kill them at once.
    pub fn on_signal(&mut self, now: Instant) {
        self.signals += 1;
        self.stopping = true;
        for i in 0..self.slots.len() {
            if self.signals == 1 {
                self.slots[i].supervisor.on_stop(now);
            } else {
                self.slots[i].supervisor.on_kill_now(now);
            }
            self.drain(i, now);
        }
    }

    /// The slot's worker process exited.
    pub fn on_exit(&mut self, slot: usize, how: ExitKind, now: Instant) {
        log::info!("nanny: worker {} exited ({how})", self.slots[slot].name);
        self.slots[slot].supervisor.on_exit(how, now);
        self.drain(slot, now);
        self.outbox.push(NannyAction::ReapOrphans);
    }

    /// The slot's worker could not be started.
    pub fn on_spawn_failed(&mut self, slot: usize, error: &std::io::Error, now: Instant) {
        self.slots[slot].supervisor.on_spawn_failed(error, now);
        self.drain(slot, now);
    }

    /// A memory reading of the slot's live worker, as asked by [`NannyAction::SampleMemory`].
    pub fn on_memory(&mut self, slot: usize, rss: u64, now: Instant) {
        let last = self.last_rss[slot].replace(rss);
        if last.is_none_or(|l| l.abs_diff(rss) > self.moved_by) {
            // Memory moves: watch it closely again, from now on.
            self.memory_every = MemoryPolicy::CHECK_EVERY;
            if let Some(at) = &mut self.next_memory_check {
                *at = (*at).min(now + MemoryPolicy::CHECK_EVERY);
            }
        }
        self.slots[slot].supervisor.on_memory(rss, now);
        self.drain(slot, now);
    }

    /// The nanny registered with the scheduler.
    pub fn on_linked(&mut self, _now: Instant) {
        self.link = Link::Up;
        self.link_backoff = LINK_RETRY;
    }

    /// A dial asked for by [`NannyAction::Link`] gave up (unreachable past its patience, or
    /// refused): another comes after the backoff, unless the nanny is stopping.
    pub fn on_link_failed(&mut self, now: Instant) {
        let retry = (!self.stopping && !self.is_done()).then(|| now + self.link_backoff);
        self.link = Link::Down { retry };
        self.link_backoff = (self.link_backoff * 2).min(LINK_RETRY_MAX);
    }

    /// The scheduler connection is gone: dial again at once (a restarted scheduler comes back
    /// on the same address), unless the nanny is stopping. The workers reconnect on their own.
    pub fn on_scheduler_lost(&mut self, _now: Instant) {
        if self.stopping || self.is_done() {
            self.link = Link::Down { retry: None };
        } else {
            self.link = Link::Dialing;
            self.outbox.push(NannyAction::Link);
        }
    }

    pub fn on_scheduler_message(&mut self, msg: ToNanny, now: Instant) {
        match msg {
            ToNanny::Registered => {}
            ToNanny::Restart if self.stopping => {
                log::info!("nanny: not restarting workers as the scheduler asked: stopping");
            }
            ToNanny::Restart => {
                log::info!("nanny: restarting workers as the scheduler asked");
                for i in 0..self.slots.len() {
                    self.slots[i].supervisor.on_restart(now);
                    self.drain(i, now);
                }
            }
        }
    }

    /// Turns what slot `i`'s supervisor decided into the nanny's actions.
    fn drain(&mut self, i: usize, now: Instant) {
        for action in self.slots[i].supervisor.take_outbox() {
            match action {
                Action::Spawn => self.outbox.push(NannyAction::Spawn { slot: i }),
                Action::Terminate => self.outbox.push(NannyAction::Terminate { slot: i }),
                Action::Kill => self.outbox.push(NannyAction::Kill { slot: i }),
                Action::ReportDeath { reason } => {
                    if self.link == Link::Up {
                        self.outbox.push(NannyAction::Send(FromNanny::WorkerDied {
                            worker: self.slots[i].name.clone(),
                            reason: reason.clone(),
                        }));
                    }
                    self.outbox.push(NannyAction::Died { slot: i, reason });
                }
                Action::Finished(Ok(())) => {}
                Action::Finished(Err(reason)) => self.give_up(i, reason, now),
            }
        }
        if self.is_done() {
            self.next_memory_check = None;
        }
        if self.stopping {
            // No new dial once stopping: a link that is up keeps reporting deaths.
            if let Link::Down { retry } = &mut self.link {
                *retry = None;
            }
        }
    }

    /// One worker giving up stops the whole nanny: a half-working node is worse than a
    /// clear error.
    fn give_up(&mut self, slot: usize, reason: GiveUp, now: Instant) {
        if self.gave_up.is_none() {
            self.gave_up = Some(slot);
            self.outbox.push(NannyAction::GaveUp { slot, reason });
        }
        self.stopping = true;
        for j in 0..self.slots.len() {
            if j != slot {
                self.slots[j].supervisor.on_stop(now);
                // A stop yields no second give-up, so this goes one level deep at most.
                self.drain(j, now);
            }
        }
    }

    /// Asserts the invariants between the slots, the signals and the stop.
    #[cfg(test)]
    pub fn sanity_check(&self) {
        for s in &self.slots {
            s.supervisor.sanity_check();
            if self.stopping {
                assert!(s.supervisor.is_stopping_for_good(), "{}: stopping for good", s.name);
            }
        }
        assert!(self.signals == 0 || self.stopping, "a signal stops the nanny");
        assert!(self.gave_up.is_none() || self.stopping, "giving up stops the nanny");
        if self.is_done() {
            assert_eq!(self.next_memory_check, None, "a done nanny checks no memory");
            assert_eq!(self.next_deadline(), None, "a done nanny has no timer");
        }
        if self.stopping {
            assert!(
                !matches!(self.link, Link::Down { retry: Some(_) }),
                "a stopping nanny dials no more"
            );
        }
        assert!(
            (LINK_RETRY..=LINK_RETRY_MAX).contains(&self.link_backoff),
            "the link backoff within its bounds"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nanny::supervisor::EXIT_FATAL;
    use std::time::Duration;

    /// A nanny core whose every event is followed by its sanity check.
    struct Checked(NannyCore);

    impl Checked {
        /// `n` workers `w-0`... started at `now`, under a 1000-byte limit (kill above 950),
        /// linked to the scheduler; the outbox is empty.
        fn started(n: usize, now: Instant) -> Checked {
            let policy = Policy {
                shutdown_timeout: Duration::from_secs(2),
                memory: MemoryPolicy::new(1000),
                ..Policy::default()
            };
            let mut c = Checked(NannyCore::new((0..n).map(|i| format!("w-{i}")).collect(), &policy, now));
            c.0.sanity_check();
            c.on_timer(now);
            let mut expected = vec![NannyAction::Link];
            expected.extend((0..n).map(|slot| NannyAction::Spawn { slot }));
            assert_eq!(c.take_outbox(), expected, "the first timer dials and spawns");
            c.on_linked(now);
            c
        }

        checked! {
            0;
            on_timer(now: Instant);
            on_signal(now: Instant);
            on_exit(slot: usize, how: ExitKind, now: Instant);
            on_memory(slot: usize, rss: u64, now: Instant);
            on_linked(now: Instant);
            on_link_failed(now: Instant);
            on_scheduler_lost(now: Instant);
            on_scheduler_message(msg: ToNanny, now: Instant);
            on_spawn_failed(slot: usize, error: &std::io::Error, now: Instant);
        }

        fn take_outbox(&mut self) -> Vec<NannyAction> {
            self.0.take_outbox()
        }
    }

    fn died(worker: &str, reason: &str) -> NannyAction {
        NannyAction::Send(FromNanny::WorkerDied {
            worker: worker.into(),
            reason: reason.into(),
        })
    }

    #[test]
    fn the_first_signal_stops_gracefully_and_the_second_kills_at_once() {
        let t0 = Instant::now();
        let mut n = Checked::started(2, t0);
        n.on_signal(t0);
        assert_eq!(
            n.take_outbox(),
            vec![NannyAction::Terminate { slot: 0 }, NannyAction::Terminate { slot: 1 }]
        );
        assert_eq!(
            n.0.next_deadline(),
            Some(t0 + MemoryPolicy::CHECK_EVERY),
            "the grace period is longer"
        );
        let t1 = t0 + Duration::from_millis(50);
        n.on_signal(t1);
        assert_eq!(
            n.take_outbox(),
            vec![NannyAction::Kill { slot: 0 }, NannyAction::Kill { slot: 1 }]
        );
        n.on_exit(0, ExitKind::Signal(9), t1);
        assert_eq!(n.take_outbox(), vec![NannyAction::ReapOrphans]);
        assert!(!n.0.is_done());
        n.on_exit(1, ExitKind::Signal(9), t1);
        n.take_outbox();
        assert!(n.0.is_done());
        assert_eq!(n.0.next_deadline(), None);
        // No restart after a stop, whatever the scheduler asks.
        n.on_scheduler_message(ToNanny::Restart, t1);
        assert_eq!(n.take_outbox(), vec![]);
    }

    #[test]
    fn a_graceful_stop_escalates_to_a_kill_after_the_grace_period() {
        let t0 = Instant::now();
        let mut n = Checked::started(1, t0);
        n.on_signal(t0);
        n.take_outbox();
        let grace = t0 + Duration::from_secs(2);
        n.on_timer(grace);
        let a = n.take_outbox();
        assert!(a.contains(&NannyAction::Kill { slot: 0 }), "{a:?}");
        n.on_exit(0, ExitKind::Signal(9), grace);
        assert!(n.0.is_done());
    }

    #[test]
    fn memory_checks_slow_down_to_every_2_s_at_rest_and_speed_up_when_memory_moves() {
        let t0 = Instant::now();
        let mut n = Checked::started(1, t0);
        let mut gaps = Vec::new();
        let mut last = t0;
        // Limit 1000: readings within 10 bytes of the last are rest.
        for rss in [500, 505, 500, 508, 503, 500, 501, 600, 600, 600] {
            let now = n.0.next_deadline().expect("a memory check is due");
            n.on_timer(now);
            assert_eq!(n.take_outbox(), vec![NannyAction::SampleMemory]);
            n.on_memory(0, rss, now);
            assert_eq!(n.take_outbox(), vec![]);
            gaps.push(now.duration_since(last).as_millis() as u64);
            last = now;
        }
        // The first reading is movement (nothing to compare with): two checks 100 ms apart,
        // then 200, 400, 800 ms, 1.6 s and 2 s at rest; 600 moves, so checks come every
        // 100 ms again.
        assert_eq!(gaps, [100, 100, 100, 200, 400, 800, 1600, 2000, 100, 100]);
    }

    #[test]
    fn memory_is_sampled_on_a_timer_and_a_kill_is_reported_before_it_happens() {
        let t0 = Instant::now();
        let mut n = Checked::started(2, t0);
        assert_eq!(n.0.next_deadline(), Some(t0 + MemoryPolicy::CHECK_EVERY));
        let t1 = t0 + MemoryPolicy::CHECK_EVERY;
        n.on_timer(t1);
        assert_eq!(n.take_outbox(), vec![NannyAction::SampleMemory]);
        assert_eq!(n.0.next_deadline(), Some(t1 + MemoryPolicy::CHECK_EVERY));
        n.on_memory(0, 950, t1);
        assert_eq!(n.take_outbox(), vec![], "at the threshold is not above it");
        n.on_memory(1, 2000, t1);
        let a = n.take_outbox();
        let reason = match &a[..] {
            [NannyAction::Send(FromNanny::WorkerDied { worker, reason }), NannyAction::Died {
                slot: 1,
                reason: logged,
            }, NannyAction::Terminate { slot: 1 }]
                if worker == "w-1" && reason == logged =>
            {
                reason.clone()
            }
            other => panic!("report, then the kill: {other:?}"),
        };
        assert!(reason.contains("memory") && reason.contains("95%"), "{reason}");
        // The exit is not reported again; the worker comes back.
        n.on_exit(1, ExitKind::Signal(15), t1);
        assert_eq!(n.take_outbox(), vec![NannyAction::ReapOrphans]);
        n.on_timer(t1);
        assert_eq!(n.take_outbox(), vec![NannyAction::Spawn { slot: 1 }]);
    }

    #[test]
    fn without_a_scheduler_a_death_is_only_logged() {
        let t0 = Instant::now();
        let mut n = Checked::started(1, t0);
        n.on_scheduler_lost(t0);
        assert_eq!(n.take_outbox(), vec![NannyAction::Link], "dials again at once");
        n.on_exit(0, ExitKind::Code(3), t0);
        assert_eq!(
            n.take_outbox(),
            vec![
                NannyAction::Died {
                    slot: 0,
                    reason: "worker process exit status 3".into()
                },
                NannyAction::ReapOrphans
            ]
        );
        n.on_linked(t0);
        n.on_timer(t0);
        n.take_outbox();
        n.on_exit(0, ExitKind::Code(3), t0);
        assert_eq!(n.take_outbox()[0], died("w-0", "worker process exit status 3"));
    }

    #[test]
    fn crashes_back_off_and_a_crash_loop_gives_up_stopping_every_worker() {
        let t0 = Instant::now();
        let mut n = Checked::started(2, t0);
        let mut now = t0;
        let mut restarts = Vec::new();
        for _ in 0..4 {
            n.on_exit(0, ExitKind::Signal(11), now);
            n.take_outbox();
            let at = n.0.slots[0].supervisor.next_deadline().expect("a restart is due");
            restarts.push(at.duration_since(now));
            now = at;
            n.on_timer(now);
            assert!(n.take_outbox().contains(&NannyAction::Spawn { slot: 0 }));
        }
        let ms = |m| Duration::from_millis(m);
        assert_eq!(restarts, vec![ms(0), ms(100), ms(200), ms(400)]);
        // The fifth crash within the window gives up, and stops the other worker at once.
        n.on_exit(0, ExitKind::Signal(11), now);
        let a = n.take_outbox();
        let gave_up = a.iter().filter(|a| matches!(a, NannyAction::GaveUp { .. })).count();
        assert_eq!(gave_up, 1, "{a:?}");
        assert!(a.iter().any(|a| matches!(
            a,
            NannyAction::GaveUp { slot: 0, reason: GiveUp::CrashLoop { exits, .. } } if exits.len() == 5
        )));
        assert!(a.contains(&NannyAction::Terminate { slot: 1 }), "{a:?}");
        n.on_exit(1, ExitKind::Code(0), now);
        assert!(n.0.is_done());
    }

    #[test]
    fn a_worker_that_cannot_start_is_reported_and_ends_the_nanny() {
        let t0 = Instant::now();
        let mut n = Checked::started(2, t0);
        n.on_exit(1, ExitKind::Code(EXIT_FATAL), t0);
        let a = n.take_outbox();
        let reason = GiveUp::CannotStart {
            how: ExitKind::Code(EXIT_FATAL),
        };
        assert_eq!(a[0], died("w-1", &reason.to_string()));
        assert!(a.contains(&NannyAction::GaveUp { slot: 1, reason }), "{a:?}");
        assert!(a.contains(&NannyAction::Terminate { slot: 0 }), "{a:?}");
        n.on_exit(0, ExitKind::Code(0), t0);
        assert!(n.0.is_done());
    }

    #[test]
    fn the_schedulers_restart_restarts_every_worker_without_counting_a_crash() {
        let t0 = Instant::now();
        let mut n = Checked::started(2, t0);
        n.on_scheduler_message(ToNanny::Registered, t0);
        assert_eq!(n.take_outbox(), vec![]);
        n.on_scheduler_message(ToNanny::Restart, t0);
        assert_eq!(
            n.take_outbox(),
            vec![NannyAction::Terminate { slot: 0 }, NannyAction::Terminate { slot: 1 }]
        );
        n.on_exit(0, ExitKind::Signal(15), t0);
        assert_eq!(
            n.take_outbox(),
            vec![NannyAction::Spawn { slot: 0 }, NannyAction::ReapOrphans]
        );
    }

    /// Regression test for a bug: with two or more workers that cannot be started at all (the
    /// executable is gone), the first slot to give up stopped the others while their spawns
    /// were still queued; their spawns then failed, the failure was ignored in `Stopping`, and
    /// the nanny waited forever for children that never existed.
    #[test]
    fn workers_that_cannot_start_stop_the_nanny_whatever_their_number() {
        for n in 1..=3 {
            let mut now = Instant::now();
            let mut c = Checked::started(n, now);
            let mut pending: Vec<NannyAction> = (0..n).map(|slot| NannyAction::Spawn { slot }).collect();
            let mut gave_up = false;
            let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
            for _ in 0..1000 {
                for action in std::mem::take(&mut pending) {
                    match action {
                        NannyAction::Spawn { slot } => c.on_spawn_failed(slot, &missing, now),
                        NannyAction::GaveUp { .. } => gave_up = true,
                        _ => {}
                    }
                }
                pending = c.take_outbox();
                if pending.is_empty() {
                    if c.0.is_done() {
                        break;
                    }
                    let next =
                        c.0.next_deadline()
                            .expect("a nanny that is not done has something to wait for");
                    now = now.max(next);
                    c.on_timer(now);
                    pending = c.take_outbox();
                }
            }
            assert!(c.0.is_done(), "{n} workers: the nanny ends");
            assert!(gave_up, "{n} workers: it gives up, naming why");
        }
    }

    /// Regression test for issue 10: after the scheduler restarted, the nanny never linked
    /// again, and `distd restart` found no nanny-supervised worker.
    #[test]
    fn a_lost_scheduler_is_dialled_again_at_once_and_a_dial_that_gave_up_after_a_backoff() {
        let t0 = Instant::now();
        let mut n = Checked::started(1, t0);
        n.on_scheduler_lost(t0);
        assert_eq!(n.take_outbox(), vec![NannyAction::Link]);
        n.on_link_failed(t0);
        assert_eq!(n.take_outbox(), vec![]);
        // Each failed dial is tried again after 1 s, 2 s, 4 s ... up to 30 s, memory checks
        // going on meanwhile.
        let mut dials = vec![t0];
        while dials.len() < 8 {
            let now = n.0.next_deadline().expect("a dial or a memory check is due");
            n.on_timer(now);
            let a = n.take_outbox();
            if a.contains(&NannyAction::Link) {
                dials.push(now);
                n.on_link_failed(now);
            }
        }
        let gaps: Vec<u64> = dials
            .windows(2)
            .map(|w| w[1].duration_since(w[0]).as_millis() as u64)
            .collect();
        // Memory checks come every 100 ms, so a dial is due within one check of its time.
        let expected = [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000];
        for (gap, want) in gaps.iter().zip(expected) {
            assert!(
                *gap >= want && *gap <= want + 100,
                "gaps {gaps:?}, expected about {expected:?}"
            );
        }
        // Linked again: deaths are reported once more, and the backoff starts over.
        let now = n.0.next_deadline().expect("a deadline");
        n.on_timer(now);
        n.take_outbox();
        n.on_linked(now);
        n.on_exit(0, ExitKind::Code(3), now);
        assert_eq!(n.take_outbox()[0], died("w-0", "worker process exit status 3"));
        n.on_scheduler_lost(now);
        assert_eq!(n.take_outbox(), vec![NannyAction::Link]);
        n.on_link_failed(now);
        assert_eq!(
            n.0.link,
            Link::Down {
                retry: Some(now + LINK_RETRY)
            }
        );
    }

    #[test]
    fn a_stopping_nanny_dials_no_more() {
        let t0 = Instant::now();
        let mut n = Checked::started(1, t0);
        n.on_scheduler_lost(t0);
        n.on_link_failed(t0);
        n.take_outbox();
        n.on_signal(t0);
        assert_eq!(n.take_outbox(), vec![NannyAction::Terminate { slot: 0 }]);
        n.on_exit(0, ExitKind::Signal(15), t0);
        n.take_outbox();
        assert!(n.0.is_done());
        assert_eq!(n.0.next_deadline(), None, "no dial is pending");

        // Linked while stopping: the link stays up, and once lost it is not dialled again.
        let mut n = Checked::started(1, t0);
        n.on_signal(t0);
        n.take_outbox();
        n.on_scheduler_lost(t0);
        assert_eq!(n.take_outbox(), vec![]);
    }
}
