//! The nanny's logic for one supervised worker child: when to start it, when to restart it
//! and how long to wait first, when a crash loop means giving up, when memory means killing
//! it, and how a stop escalates from SIGTERM to SIGKILL.
//!
//! A synchronous state machine under the one contract: events are `on_*` calls with `now`
//! passed in, decisions are [`Action`]s taken with [`Supervisor::take_outbox`], its next timer is
//! [`Supervisor::next_deadline`]. It never spawns, signals, sleeps or reads the clock itself.
//! The [`NannyCore`](super::core::NannyCore) owns one per child.

use crate::memory::MemoryPolicy;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Exit status of a worker that must not be restarted: it cannot work as configured (bad
/// flag, port taken, scheduler unreachable past its death timeout).
pub const EXIT_FATAL: i32 = 78;

/// Exit status of a worker that retired (its lifetime was up) and wants a successor.
pub const EXIT_RETIRED: i32 = 75;

/// Grace between SIGTERM and SIGKILL for a memory kill: memory runs away fast.
const MEMORY_KILL_GRACE: Duration = Duration::from_millis(500);

/// Restart and memory policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Second restart delay (the first restart is immediate); doubles on each crash.
    pub backoff_start: Duration,
    pub backoff_max: Duration,
    /// A child that ran this long resets the backoff.
    pub stable_after: Duration,
    /// This many crashes within `crash_window` stop the nanny.
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
            stable_after: Duration::from_secs(60),
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
        "crash loop: the worker failed {} times within {:.0} s ({}); not restarting it",
        .exits.len(),
        .window.as_secs_f64(),
        .exits.join("; ")
    )]
    CrashLoop {
        window: Duration,
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
    /// The nanny killed it, for this reason (memory), already reported: a crash, restarted
    /// with backoff.
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
    /// exit leads to.
    Stopping {
        kill_at: Instant,
        after: AfterStop,
        killed: bool,
    },
    Done,
}

/// One supervised child.
pub struct Supervisor {
    policy: Policy,
    phase: Phase,
    /// The next restart delay.
    backoff: Duration,
    /// Recent crashes, for crash-loop detection: when, and how the child ended.
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
            Phase::Running { .. } => self.crashed(format!("could not start: {error}"), false, true, now),
            // Asked to stop before its spawn was tried: no child will ever exit, so the stop
            // is over now.
            Phase::Stopping { after, .. } => self.stopped(after, now),
            phase => self.phase = phase,
        }
    }

    /// A stop is over (its child exited, or never started): what comes after it.
    fn stopped(&mut self, after: AfterStop, now: Instant) {
        match after {
            AfterStop::Restart => {
                self.phase = Phase::Waiting { at: now };
                self.on_timer(now);
            }
            AfterStop::Finish => self.outbox.push(Action::Finished(Ok(()))),
            AfterStop::Crash(reason) => self.crashed(reason, false, false, now),
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
            Phase::Stopping { after, .. } => self.stopped(after, now),
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
                    let stable = now.duration_since(since) >= self.policy.stable_after;
                    self.crashed(format!("worker process {how}"), stable, true, now);
                }
            },
        }
    }

    /// A crash: counted, reported unless `report` is false (reported already), and
    /// restarted after backoff, or given up on as a crash loop.
    fn crashed(&mut self, reason: String, stable: bool, report: bool, now: Instant) {
        if report {
            self.outbox.push(Action::ReportDeath { reason: reason.clone() });
        }
        if stable {
            self.backoff = Duration::ZERO;
        }
        self.crashes.push_back((now, reason));
        while let Some((t, _)) = self.crashes.front() {
            if now.duration_since(*t) > self.policy.crash_window {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
        if self.crashes.len() >= self.policy.crash_limit {
            self.phase = Phase::Done;
            self.outbox.push(Action::Finished(Err(GiveUp::CrashLoop {
                window: self.policy.crash_window,
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
        self.phase = Phase::Stopping {
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
            Phase::Running { .. } | Phase::Stopping { .. } => {
                self.phase = Phase::Stopping {
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
            Phase::Running { .. } => {
                self.phase = Phase::Stopping {
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
            after: AfterStop::Crash(reason),
            ..
        } = &self.phase
        {
            assert!(!reason.is_empty(), "a kill carries its reason");
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
    fn a_memory_kill_escalates_after_half_a_second_and_counts_as_a_crash() {
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
        // Counted as a crash: the first restarts at once, the next one backs off.
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
        let t2 = t1 + policy().stable_after;
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
}
