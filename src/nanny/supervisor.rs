//! The nanny's logic for one supervised worker child: when to start it, when to restart it
//! and how long to wait first, when a crash loop means giving up, when memory means killing
//! it, and how a stop escalates from SIGTERM to SIGKILL.
//!
//! The restart rule: every death is restarted after a backoff that doubles while deaths come
//! before the worker settled ([`Policy::settle`]) and resets once one ran that long. Only a
//! *crash loop* gives up: a worker that failed by itself (an exit status, or a signal other
//! than the ones others send to stop a process: [`OUTSIDE_SIGNALS`]) before it settled,
//! [`Policy::crash_limit`] times within [`Policy::crash_window`]. A worker killed from outside
//! or for memory is restarted, however often, as dask's nanny does: giving up would leave the
//! scheduler's clients waiting on a cluster with no workers.
//!
//! A synchronous state machine under the one contract: events are `on_*` calls with `now`
//! passed in, decisions are [`Action`]s taken with [`Supervisor::take_outbox`], its next timer is
//! [`Supervisor::next_deadline`]. It never spawns, signals, sleeps or reads the clock itself.
//! The [`NannyCore`](super::core::NannyCore) owns one per child.

use crate::memory::MemoryPolicy;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Exit status of a worker that must not be restarted: it cannot work as configured (bad
/// flag, port taken, scheduler unreachable past its death timeout). From the one table.
pub const EXIT_FATAL: i32 = crate::exit::CONFIG as i32;

/// Exit status of a worker that retired (its lifetime was up) and wants a successor.
pub const EXIT_RETIRED: i32 = crate::exit::RETIRED as i32;

/// Grace between SIGTERM and SIGKILL for a memory kill: memory runs away fast.
const MEMORY_KILL_GRACE: Duration = Duration::from_millis(500);

/// The signals others send to stop a process (SIGHUP, SIGINT, SIGKILL, SIGTERM; the numbers
/// are the same on every Unix): a worker ended by one did not fail by itself, so its death
/// never counts toward a crash loop. The kernel's OOM killer sends SIGKILL too.
pub const OUTSIDE_SIGNALS: [i32; 4] = [1, 2, 9, 15];

/// Restart and memory policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Second restart delay (the first restart is immediate); doubles on each death before
    /// the worker settled.
    pub backoff_start: Duration,
    pub backoff_max: Duration,
    /// How long a worker runs before it counts as settled (it registered and served long
    /// ago): its death then resets the backoff and is never part of a crash loop.
    pub settle: Duration,
    /// This many deaths of a crash loop (the worker failed by itself before it settled)
    /// within `crash_window` stop the nanny. Other deaths never do.
    pub crash_limit: usize,
    pub crash_window: Duration,
    /// Grace between SIGTERM and SIGKILL when stopping.
    pub shutdown_timeout: Duration,
    /// The worker's memory limit: the child is killed above its kill threshold.
    pub memory: MemoryPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            backoff_start: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            // Registration takes well under a second; five leave room for a loaded machine.
            settle: Duration::from_secs(5),
            crash_limit: 5,
            crash_window: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            memory: MemoryPolicy::unlimited(),
        }
    }
}

/// How a child ended, as the shell saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for ExitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitKind::Code(c) => write!(f, "exit status {c}"),
            ExitKind::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Why the nanny gave up on a worker.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GiveUp {
    /// It exited with [`EXIT_FATAL`]: restarting would fail the same way.
    #[error("the worker cannot start ({how})")]
    CannotStart { how: ExitKind },
    #[error(
        "crash loop: the worker failed {} within {:.0} s, each time less than {:.0} s after it started ({}); not restarting it",
        crate::units::plural(.exits.len() as u64, "time"),
        .window.as_secs_f64(),
        .settle.as_secs_f64(),
        .exits.join("; ")
    )]
    CrashLoop {
        window: Duration,
        /// How soon after its start a death counted.
        settle: Duration,
        /// How each recent crash ended, oldest first.
        exits: Vec<String>,
    },
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Spawn,
    /// SIGTERM to the child: a graceful stop.
    Terminate,
    /// SIGKILL to the child's process group.
    Kill,
    /// Tell the scheduler the worker is gone, and why.
    ReportDeath {
        reason: String,
    },
    /// The slot is done: `Ok` when it stopped as asked or the worker finished by itself,
    /// `Err` when the nanny gives up on it.
    Finished(Result<(), GiveUp>),
}

/// What a stop the nanny started leads to once the child has exited.
#[derive(Clone, Debug, PartialEq)]
enum AfterStop {
    /// A stop for good (a signal to the nanny).
    Finish,
    /// A requested restart: start again at once, not counted as a crash.
    Restart,
    /// The nanny killed it, for this reason (memory), already reported: restarted with
    /// backoff, never part of a crash loop.
    Crash(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    /// Waiting to (re)start at `at`.
    Waiting {
        at: Instant,
    },
    Running {
        since: Instant,
    },
    /// SIGTERM sent; SIGKILL at `kill_at` unless `killed` already; `after` says what the
    /// exit leads to. `since` is when the child started (for the backoff).
    Stopping {
        since: Instant,
        kill_at: Instant,
        after: AfterStop,
        killed: bool,
    },
    Done,
}

/// What one death means for the restart policy.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Death {
    /// The child ran past [`Policy::settle`]: the backoff starts over.
    settled: bool,
    /// It failed by itself before it settled: one more toward the crash limit.
    crash_loop: bool,
}

impl Death {
    const SETTLED: Death = Death {
        settled: true,
        crash_loop: false,
    };

    fn early(by_itself: bool) -> Death {
        Death {
            settled: false,
            crash_loop: by_itself,
        }
    }
}

/// One supervised child.
pub struct Supervisor {
    policy: Policy,
    phase: Phase,
    /// The next restart delay.
    backoff: Duration,
    /// Recent deaths of a crash loop (failed by itself before it settled): when, and how
    /// the child ended.
    crashes: VecDeque<(Instant, String)>,
    outbox: Vec<Action>,
}

impl Supervisor {
    /// A supervisor that starts its child at `now`.
    pub fn new(policy: Policy, now: Instant) -> Supervisor {
        Supervisor {
            policy,
            phase: Phase::Waiting { at: now },
            // The first crash restarts at once: one death is no loop.
            backoff: Duration::ZERO,
            crashes: VecDeque::new(),
            outbox: Vec::new(),
        }
    }

    /// Everything decided since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.outbox)
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// When the shell should call [`on_timer`](Self::on_timer) next, if a deadline is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { at } => Some(at),
            Phase::Stopping {
                kill_at, killed: false, ..
            } => Some(kill_at),
            _ => None,
        }
    }

    /// Starts the child when its (re)start is due, kills it when its grace is up.
    pub fn on_timer(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Waiting { at } if now >= *at => {
                self.phase = Phase::Running { since: now };
                self.outbox.push(Action::Spawn);
            }
            Phase::Stopping { kill_at, killed, .. } if !*killed && now >= *kill_at => {
                *killed = true;
                self.outbox.push(Action::Kill);
            }
            _ => {}
        }
    }

    /// The child could not even be spawned (the executable is gone, fork failed).
    pub fn on_spawn_failed(&mut self, error: &std::io::Error, now: Instant) {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Running { since } => {
                let death = Death::early(true);
                self.died(format!("could not start: {error}"), death, since, true, now)
            }
            // Asked to stop before its spawn was tried: no child will ever exit, so the stop
            // is over now.
            Phase::Stopping { after, since, .. } => self.stopped(after, since, now),
            phase => self.phase = phase,
        }
    }

    /// A stop is over (its child exited, or never started): what comes after it.
    fn stopped(&mut self, after: AfterStop, since: Instant, now: Instant) {
        match after {
            AfterStop::Restart => {
                self.phase = Phase::Waiting { at: now };
                self.on_timer(now);
            }
            AfterStop::Finish => self.outbox.push(Action::Finished(Ok(()))),
            AfterStop::Crash(reason) => {
                // A memory kill is the nanny's own doing: never a crash loop.
                self.died(reason, self.judge(since, false, now), since, false, now)
            }
        }
    }

    /// What a death `since`..`now` means: settled or not, and whether it counts toward a
    /// crash loop (only when it failed `by_itself` before settling).
    fn judge(&self, since: Instant, by_itself: bool, now: Instant) -> Death {
        if now.duration_since(since) >= self.policy.settle {
            Death::SETTLED
        } else {
            Death::early(by_itself)
        }
    }

    /// The child exited.
    pub fn on_exit(&mut self, how: ExitKind, now: Instant) {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        match phase {
            Phase::Waiting { .. } | Phase::Done => {
                // No child was running: not ours to judge.
                log::debug!("nanny: an exit ({how}) without a running child");
                self.phase = phase;
            }
            Phase::Stopping { after, since, .. } => self.stopped(after, since, now),
            Phase::Running { since } => match how {
                // The worker ended by itself, as asked by its scheduler: nothing to restart.
                ExitKind::Code(0) => self.outbox.push(Action::Finished(Ok(()))),
                ExitKind::Code(EXIT_RETIRED) => {
                    log::info!("the worker retired; starting its successor");
                    self.phase = Phase::Waiting { at: now };
                    self.on_timer(now);
                }
                ExitKind::Code(EXIT_FATAL) => {
                    let reason = GiveUp::CannotStart { how };
                    self.outbox.push(Action::ReportDeath {
                        reason: reason.to_string(),
                    });
                    self.outbox.push(Action::Finished(Err(reason)));
                }
                how => {
                    let by_itself = match how {
                        ExitKind::Code(_) => true,
                        ExitKind::Signal(s) => !OUTSIDE_SIGNALS.contains(&s),
                    };
                    let death = self.judge(since, by_itself, now);
                    self.died(format!("worker process {how}"), death, since, true, now);
                }
            },
        }
    }

    /// A death: reported unless `report` is false (reported already), restarted after the
    /// backoff, or given up on when it completes a crash loop.
    fn died(&mut self, reason: String, death: Death, since: Instant, report: bool, now: Instant) {
        debug_assert!(since <= now, "a child dies after it started");
        if report {
            self.outbox.push(Action::ReportDeath { reason: reason.clone() });
        }
        if death.settled {
            self.backoff = Duration::ZERO;
        }
        while let Some((t, _)) = self.crashes.front() {
            if now.duration_since(*t) > self.policy.crash_window {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
        if death.crash_loop {
            self.crashes.push_back((now, reason));
        }
        if self.crashes.len() >= self.policy.crash_limit {
            self.phase = Phase::Done;
            self.outbox.push(Action::Finished(Err(GiveUp::CrashLoop {
                window: self.policy.crash_window,
                settle: self.policy.settle,
                exits: self.crashes.iter().map(|(_, r)| r.clone()).collect(),
            })));
            return;
        }
        self.phase = Phase::Waiting { at: now + self.backoff };
        self.backoff = if self.backoff.is_zero() {
            self.policy.backoff_start
        } else {
            (self.backoff * 2).min(self.policy.backoff_max)
        };
    }

    /// A memory sample of the running child.
    pub fn on_memory(&mut self, rss: u64, now: Instant) {
        let Some(limit) = self.policy.memory.kill_above() else {
            return;
        };
        if rss <= limit || !matches!(self.phase, Phase::Running { .. }) {
            return;
        }
        let reason = format!(
            "memory: the worker used {} of RSS, above the kill threshold of {} ({}% of its memory limit)",
            crate::units::format_bytes(rss),
            crate::units::format_bytes(limit),
            self.policy.memory.kill_percent()
        );
        // The scheduler hears why before the worker's connection drops, so the tasks it was
        // running are charged with the reason.
        self.outbox.push(Action::ReportDeath { reason: reason.clone() });
        let Phase::Running { since } = self.phase else {
            return;
        };
        self.phase = Phase::Stopping {
            since,
            kill_at: now + MEMORY_KILL_GRACE.min(self.policy.shutdown_timeout),
            after: AfterStop::Crash(reason),
            killed: false,
        };
        self.outbox.push(Action::Terminate);
    }

    /// Stop for good: SIGTERM now, SIGKILL after the grace period.
    pub fn on_stop(&mut self, now: Instant) {
        self.terminate(now, AfterStop::Finish);
    }

    /// Stop at once (a second signal): SIGKILL now.
    pub fn on_kill_now(&mut self, now: Instant) {
        match self.phase {
            Phase::Running { since } | Phase::Stopping { since, .. } => {
                self.phase = Phase::Stopping {
                    since,
                    kill_at: now,
                    after: AfterStop::Finish,
                    killed: true,
                };
                self.outbox.push(Action::Kill);
            }
            Phase::Waiting { .. } => {
                self.phase = Phase::Done;
                self.outbox.push(Action::Finished(Ok(())));
            }
            Phase::Done => {}
        }
    }

    /// Restart on request (the scheduler's restart): stop gracefully, then start again at
    /// once, without counting it as a crash.
    pub fn on_restart(&mut self, now: Instant) {
        self.terminate(now, AfterStop::Restart);
    }

    fn terminate(&mut self, now: Instant, after: AfterStop) {
        match &mut self.phase {
            Phase::Running { since } => {
                self.phase = Phase::Stopping {
                    since: *since,
                    kill_at: now + self.policy.shutdown_timeout,
                    after,
                    killed: false,
                };
                self.outbox.push(Action::Terminate);
            }
            Phase::Stopping { after: pending, .. } => *pending = after,
            Phase::Waiting { .. } if after == AfterStop::Restart => {
                self.phase = Phase::Waiting { at: now };
                self.on_timer(now);
            }
            Phase::Waiting { .. } => {
                self.phase = Phase::Done;
                self.outbox.push(Action::Finished(Ok(())));
            }
            Phase::Done => {}
        }
    }

    /// Whether a stop for good is under way or over: nothing will start again.
    #[cfg(test)]
    pub fn is_stopping_for_good(&self) -> bool {
        matches!(
            self.phase,
            Phase::Done
                | Phase::Stopping {
                    after: AfterStop::Finish,
                    ..
                }
        )
    }

    /// Asserts the invariants of the backoff, the crash record and the phase.
    #[cfg(test)]
    pub fn sanity_check(&self) {
        let p = &self.policy;
        assert!(
            self.backoff <= p.backoff_max.max(p.backoff_start),
            "backoff within its bounds"
        );
        if !self.is_done() {
            assert!(self.crashes.len() < p.crash_limit, "a crash loop ends the slot");
        }
        if let (Some(first), Some(last)) = (self.crashes.front(), self.crashes.back()) {
            assert!(first.0 <= last.0, "crashes in order");
            assert!(last.0.duration_since(first.0) <= p.crash_window, "only recent crashes");
        }
        if let Phase::Stopping {
            after, since, kill_at, ..
        } = &self.phase
        {
            assert!(since <= kill_at, "a stop escalates after the child started");
            if let AfterStop::Crash(reason) = after {
                assert!(!reason.is_empty(), "a kill carries its reason");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A supervisor whose every event is followed by its sanity check.
    struct Checked(Supervisor);

    impl Checked {
        fn new(policy: Policy, now: Instant) -> Checked {
            let s = Supervisor::new(policy, now);
            s.sanity_check();
            Checked(s)
        }

        checked! {
            0;
            on_timer(now: Instant);
            on_exit(how: ExitKind, now: Instant);
            on_spawn_failed(error: &std::io::Error, now: Instant);
            on_memory(rss: u64, now: Instant);
            on_stop(now: Instant);
            on_kill_now(now: Instant);
            on_restart(now: Instant);
        }

        fn take_outbox(&mut self) -> Vec<Action> {
            self.0.take_outbox()
        }

        fn next_deadline(&self) -> Option<Instant> {
            self.0.next_deadline()
        }

        fn is_done(&self) -> bool {
            self.0.is_done()
        }
    }

    /// Kills above 950 bytes (95% of 1000).
    fn policy() -> Policy {
        Policy {
            shutdown_timeout: Duration::from_secs(2),
            memory: MemoryPolicy::new(1000),
            ..Policy::default()
        }
    }

    #[test]
    fn starts_at_once_and_restarts_a_crash_with_doubling_backoff() {
        let t0 = Instant::now();
        let mut s = Checked::new(policy(), t0);
        s.on_timer(t0);
        assert_eq!(s.take_outbox(), vec![Action::Spawn]);
        s.on_exit(ExitKind::Signal(9), t0);
        let a = s.take_outbox();
        assert!(
            matches!(&a[0], Action::ReportDeath { reason } if reason.contains("signal 9")),
            "{a:?}"
        );
        // The first restart is immediate, the next ones back off from 0.1 s, doubling.
        assert_eq!(s.next_deadline(), Some(t0));
        s.on_timer(t0);
        assert_eq!(s.take_outbox(), vec![Action::Spawn]);
        let t1 = t0 + Duration::from_millis(50);
        s.on_exit(ExitKind::Code(101), t1);
        s.take_outbox();
        assert_eq!(s.next_deadline(), Some(t1 + Duration::from_millis(100)));
        s.on_timer(t1 + Duration::from_millis(100));
        s.take_outbox();
        let t2 = t1 + Duration::from_millis(150);
        s.on_exit(ExitKind::Code(101), t2);
        s.take_outbox();
        assert_eq!(s.next_deadline(), Some(t2 + Duration::from_millis(200)));
    }

    #[test]
    fn a_crash_loop_gives_up_naming_the_exits() {
        let mut now = Instant::now();
        let mut s = Checked::new(policy(), now);
        let mut a = Vec::new();
        for i in 0..5 {
            s.on_timer(now);
            assert_eq!(s.take_outbox(), vec![Action::Spawn], "start {i}");
            s.on_exit(ExitKind::Code(1), now);
            a = s.take_outbox();
            now = s.next_deadline().unwrap_or(now);
        }
        match a.last() {
            Some(Action::Finished(Err(e))) => {
                let e = e.to_string();
                assert!(e.contains("crash loop") && e.contains("exit status 1"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert!(s.is_done());
    }

    #[test]
    fn clean_and_fatal_exits_are_not_restarted() {
        let t0 = Instant::now();
        let mut s = Checked::new(policy(), t0);
        s.on_timer(t0);
        s.take_outbox();
        s.on_exit(ExitKind::Code(0), t0);
        assert_eq!(s.take_outbox(), vec![Action::Finished(Ok(()))]);
        let mut s = Checked::new(policy(), t0);
        s.on_timer(t0);
        s.take_outbox();
        s.on_exit(ExitKind::Code(EXIT_FATAL), t0);
        assert!(matches!(s.take_outbox().last(), Some(Action::Finished(Err(_)))));
    }

    #[test]
    fn stop_escalates_to_kill_after_the_grace_period() {
        let t0 = Instant::now();
        let mut s = Checked::new(policy(), t0);
        s.on_timer(t0);
        s.take_outbox();
        s.on_stop(t0);
        assert_eq!(s.take_outbox(), vec![Action::Terminate]);
        s.on_timer(t0 + Duration::from_secs(1));
        assert!(s.take_outbox().is_empty());
        s.on_timer(t0 + Duration::from_secs(2));
        assert_eq!(s.take_outbox(), vec![Action::Kill]);
        s.on_exit(ExitKind::Signal(9), t0 + Duration::from_secs(2));
        assert_eq!(s.take_outbox(), vec![Action::Finished(Ok(()))]);
    }

    #[test]
    fn memory_above_the_threshold_kills_and_restarts_naming_memory() {
        let t0 = Instant::now();
        let mut s = Checked::new(policy(), t0);
        s.on_timer(t0);
        s.take_outbox();
        s.on_memory(950, t0);
        assert!(s.take_outbox().is_empty());
        s.on_memory(2000, t0);
        let a = s.take_outbox();
        assert!(
            matches!(&a[0], Action::ReportDeath { reason } if reason.contains("memory")),
            "{a:?}"
        );
        assert_eq!(a[1], Action::Terminate);
        s.on_exit(ExitKind::Signal(15), t0);
        assert!(s.take_outbox().is_empty(), "reported once, before the kill");
        assert!(s.next_deadline().is_some(), "restarts after backoff");
    }

    #[test]
    fn requested_restart_starts_again_at_once() {
        let t0 = Instant::now();
        let mut s = Checked::new(policy(), t0);
        s.on_timer(t0);
        s.take_outbox();
        s.on_restart(t0);
        assert_eq!(s.take_outbox(), vec![Action::Terminate]);
        s.on_exit(ExitKind::Signal(15), t0);
        assert_eq!(s.take_outbox(), vec![Action::Spawn]);
    }

    #[test]
    fn a_memory_kill_escalates_after_half_a_second_and_backs_off_like_a_crash() {
        let t0 = Instant::now();
        let mut s = Checked::new(policy(), t0);
        s.on_timer(t0);
        s.take_outbox();
        s.on_memory(2000, t0);
        s.take_outbox();
        assert_eq!(s.next_deadline(), Some(t0 + MEMORY_KILL_GRACE));
        s.on_timer(t0 + MEMORY_KILL_GRACE);
        assert_eq!(s.take_outbox(), vec![Action::Kill]);
        s.on_exit(ExitKind::Signal(9), t0 + MEMORY_KILL_GRACE);
        assert_eq!(
            s.take_outbox(),
            vec![],
            "the memory reason was reported before the kill"
        );
        // Backed off like any early death: the first restarts at once, the next one waits.
        assert_eq!(s.next_deadline(), Some(t0 + MEMORY_KILL_GRACE));
        let t1 = t0 + MEMORY_KILL_GRACE;
        s.on_timer(t1);
        assert_eq!(s.take_outbox(), vec![Action::Spawn]);
        s.on_memory(2000, t1);
        s.take_outbox();
        s.on_exit(ExitKind::Signal(15), t1);
        assert_eq!(s.next_deadline(), Some(t1 + Duration::from_millis(100)));
    }

    #[test]
    fn a_worker_that_cannot_be_spawned_is_reported_and_retried() {
        let t0 = Instant::now();
        let mut s = Checked::new(policy(), t0);
        s.on_timer(t0);
        s.take_outbox();
        s.on_spawn_failed(&std::io::Error::from(std::io::ErrorKind::NotFound), t0);
        let a = s.take_outbox();
        assert!(
            matches!(&a[..], [Action::ReportDeath { reason }] if reason.starts_with("could not start")),
            "{a:?}"
        );
        assert_eq!(s.next_deadline(), Some(t0));
    }

    #[test]
    fn the_second_stop_kills_at_once_and_a_child_that_ran_long_resets_the_backoff() {
        let t0 = Instant::now();
        let mut s = Checked::new(policy(), t0);
        s.on_timer(t0);
        s.take_outbox();
        s.on_exit(ExitKind::Code(1), t0);
        s.on_timer(t0);
        s.on_exit(ExitKind::Code(1), t0);
        s.take_outbox();
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_millis(100)));
        let t1 = t0 + Duration::from_millis(100);
        s.on_timer(t1);
        s.take_outbox();
        let t2 = t1 + policy().settle;
        s.on_exit(ExitKind::Code(1), t2);
        s.take_outbox();
        assert_eq!(s.next_deadline(), Some(t2), "a stable child restarts at once");
        s.on_timer(t2);
        s.take_outbox();
        s.on_stop(t2);
        assert_eq!(s.take_outbox(), vec![Action::Terminate]);
        s.on_kill_now(t2);
        assert_eq!(s.take_outbox(), vec![Action::Kill]);
        assert_eq!(s.next_deadline(), None);
        s.on_exit(ExitKind::Signal(9), t2);
        assert_eq!(s.take_outbox(), vec![Action::Finished(Ok(()))]);
        assert!(s.is_done());
    }

    /// Runs the child until it dies `after` its start, as `how`; returns the restart delay
    /// chosen (None when the supervisor gave up).
    fn die(s: &mut Checked, now: &mut Instant, after: Duration, how: ExitKind) -> Option<Duration> {
        *now += after;
        s.on_exit(how, *now);
        let a = s.take_outbox();
        if matches!(a.last(), Some(Action::Finished(_))) {
            return None;
        }
        let at = s.next_deadline().expect("a restart is due");
        let delay = at.duration_since(*now);
        *now = at;
        s.on_timer(*now);
        assert_eq!(s.take_outbox(), vec![Action::Spawn]);
        Some(delay)
    }

    /// Regression test for issue 10: with the default policy, outside SIGKILLs stopped the
    /// nanny within seconds (5 "crashes" in a minute), and clients then waited forever.
    #[test]
    fn workers_killed_from_outside_are_restarted_however_often_and_however_soon() {
        let mut now = Instant::now();
        let mut s = Checked::new(Policy::default(), now);
        s.on_timer(now);
        s.take_outbox();
        let mut delays = Vec::new();
        for i in 0..200u64 {
            // Some die at once, some after they served; SIGKILL, SIGTERM, SIGINT and SIGHUP.
            let after = Duration::from_millis((i * 7919) % 9000);
            let how = ExitKind::Signal(OUTSIDE_SIGNALS[i as usize % 4]);
            let delay = die(&mut s, &mut now, after, how).expect("never gives up on outside kills");
            delays.push(delay);
        }
        assert!(!s.is_done());
        assert!(delays.iter().all(|d| *d <= Policy::default().backoff_max), "{delays:?}");
    }

    #[test]
    fn memory_kills_are_restarted_however_often() {
        let mut now = Instant::now();
        let mut s = Checked::new(policy(), now);
        s.on_timer(now);
        s.take_outbox();
        for _ in 0..50 {
            s.on_memory(2000, now);
            assert!(matches!(
                s.take_outbox()[..],
                [Action::ReportDeath { .. }, Action::Terminate]
            ));
            s.on_exit(ExitKind::Signal(15), now);
            assert_eq!(s.take_outbox(), vec![], "reported before the kill, never given up");
            now = s.next_deadline().expect("restarts");
            s.on_timer(now);
            assert_eq!(s.take_outbox(), vec![Action::Spawn]);
        }
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap_while_deaths_come_early_and_resets_once_settled() {
        let p = Policy::default();
        let mut now = Instant::now();
        let mut s = Checked::new(p.clone(), now);
        s.on_timer(now);
        s.take_outbox();
        let early = Duration::from_millis(10);
        let delays: Vec<Duration> = (0..10)
            .map(|_| die(&mut s, &mut now, early, ExitKind::Signal(9)).expect("restarts"))
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(
            delays,
            [0, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
                .map(ms)
                .to_vec()
        );
        assert_eq!(
            die(&mut s, &mut now, p.settle, ExitKind::Signal(9)),
            Some(ms(0)),
            "settled: at once"
        );
        assert_eq!(die(&mut s, &mut now, early, ExitKind::Signal(9)), Some(ms(100)));
    }

    #[test]
    fn only_early_failures_of_the_worker_itself_make_a_crash_loop() {
        let p = Policy::default();
        let mut now = Instant::now();
        let mut s = Checked::new(p.clone(), now);
        s.on_timer(now);
        s.take_outbox();
        // Failures after the worker settled never add up, however many.
        for _ in 0..20 {
            assert!(die(&mut s, &mut now, p.settle, ExitKind::Code(101)).is_some());
            assert!(die(&mut s, &mut now, p.settle, ExitKind::Signal(11)).is_some());
        }
        // Early outside kills between early failures do not count either: the fifth early
        // failure of its own, a panic or a segfault, gives up.
        let early = Duration::from_millis(10);
        for i in 0..4 {
            let how = if i % 2 == 0 {
                ExitKind::Code(101)
            } else {
                ExitKind::Signal(11)
            };
            assert!(die(&mut s, &mut now, early, how).is_some(), "failure {i}");
            assert!(die(&mut s, &mut now, early, ExitKind::Signal(9)).is_some());
        }
        assert_eq!(die(&mut s, &mut now, early, ExitKind::Code(1)), None);
        assert!(s.is_done());
    }

    #[test]
    fn early_failures_spread_wider_than_the_window_do_not_give_up() {
        let p = Policy::default();
        let mut now = Instant::now();
        let mut s = Checked::new(p.clone(), now);
        s.on_timer(now);
        s.take_outbox();
        for i in 0..3 * p.crash_limit {
            // One early failure per 20 s: never crash_limit of them within the minute.
            now += Duration::from_secs(20);
            assert!(
                die(&mut s, &mut now, Duration::from_millis(1), ExitKind::Code(1)).is_some(),
                "{i}"
            );
        }
    }
}
