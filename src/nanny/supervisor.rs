//! The nanny's logic for one supervised worker child: when to start it, when to restart it
//! and how long to wait first, when a crash loop means giving up, when memory means killing
//! it, and how a stop escalates from SIGTERM to SIGKILL.
//!
//! A synchronous state machine: events are method calls with `now` passed in, decisions are
//! [`Action`]s the nanny's shell carries out. It never spawns, signals or sleeps itself.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Exit status of a worker that must not be restarted: it cannot work as configured (bad
/// flag, port taken, scheduler unreachable past its death timeout).
pub const EXIT_FATAL: i32 = 78;

/// Exit status of a worker that retired (its lifetime was up) and wants a successor.
pub const EXIT_RETIRED: i32 = 75;

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
    /// Kill the child when its RSS exceeds this many bytes (95% of the memory limit).
    pub kill_above: Option<u64>,
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
            kill_above: None,
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
    /// `Err` with the reason when the nanny gives up on it.
    Finished(Result<(), String>),
}

/// What a stop the nanny started leads to once the child has exited.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AfterStop {
    /// A stop for good (a signal to the nanny).
    Finish,
    /// A requested restart: start again at once, not counted as a crash.
    Restart,
    /// The nanny killed it (memory): a crash, restarted with backoff.
    Crash,
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
    /// Why the child is being killed, when the nanny decided it (memory).
    kill_reason: Option<String>,
    actions: Vec<Action>,
}

impl Supervisor {
    /// A supervisor that starts its child at once.
    pub fn new(policy: Policy, now: Instant) -> Supervisor {
        // The first crash restarts at once: one death is no loop.
        let backoff = Duration::ZERO;
        Supervisor {
            policy,
            phase: Phase::Waiting { at: now },
            backoff,
            crashes: VecDeque::new(),
            kill_reason: None,
            actions: Vec::new(),
        }
    }

    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// When the shell should call [`on_tick`](Self::on_tick) next, if a deadline is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { at } => Some(at),
            Phase::Stopping {
                kill_at, killed: false, ..
            } => Some(kill_at),
            _ => None,
        }
    }

    pub fn on_tick(&mut self, now: Instant) {
        match self.phase {
            Phase::Waiting { at } if now >= at => {
                self.phase = Phase::Running { since: now };
                self.actions.push(Action::Spawn);
            }
            Phase::Stopping {
                kill_at,
                after,
                killed: false,
            } if now >= kill_at => {
                self.phase = Phase::Stopping {
                    kill_at,
                    after,
                    killed: true,
                };
                self.actions.push(Action::Kill);
            }
            _ => {}
        }
    }

    /// The child could not even be spawned (the executable is gone, fork failed).
    pub fn on_spawn_failed(&mut self, reason: &str, now: Instant) {
        self.on_exit_reason(format!("could not start: {reason}"), false, true, now);
    }

    /// The child exited.
    pub fn on_exit(&mut self, how: ExitKind, now: Instant) {
        match (&self.phase, &how) {
            (
                Phase::Stopping {
                    after: AfterStop::Restart,
                    ..
                },
                _,
            ) => {
                self.kill_reason = None;
                self.phase = Phase::Waiting { at: now };
                self.on_tick(now);
            }
            (
                Phase::Stopping {
                    after: AfterStop::Finish,
                    ..
                },
                _,
            ) => {
                self.phase = Phase::Done;
                self.actions.push(Action::Finished(Ok(())));
            }
            (
                Phase::Stopping {
                    after: AfterStop::Crash,
                    ..
                },
                _,
            ) => {
                let reason = self
                    .kill_reason
                    .take()
                    .unwrap_or_else(|| format!("worker process {how}"));
                self.on_exit_reason(reason, false, false, now);
            }
            (_, ExitKind::Code(0)) if self.kill_reason.is_none() => {
                // The worker ended by itself, as asked by its scheduler: nothing to restart.
                self.phase = Phase::Done;
                self.actions.push(Action::Finished(Ok(())));
            }
            (_, ExitKind::Code(EXIT_RETIRED)) if self.kill_reason.is_none() => {
                log::info!("the worker retired; starting its successor");
                self.phase = Phase::Waiting { at: now };
                self.on_tick(now);
            }
            (_, ExitKind::Code(EXIT_FATAL)) => {
                self.phase = Phase::Done;
                let reason = format!("the worker cannot start ({how})");
                self.actions.push(Action::ReportDeath { reason: reason.clone() });
                self.actions.push(Action::Finished(Err(reason)));
            }
            _ => {
                let reason = match self.kill_reason.take() {
                    Some(r) => r,
                    None => format!("worker process {how}"),
                };
                let stable = matches!(self.phase, Phase::Running { since } if now.duration_since(since) >= self.policy.stable_after);
                self.on_exit_reason(reason, stable, true, now);
            }
        }
    }

    /// A crash: counted, reported unless `reported` already, and restarted after backoff.
    fn on_exit_reason(&mut self, reason: String, stable: bool, report: bool, now: Instant) {
        if report {
            self.actions.push(Action::ReportDeath { reason: reason.clone() });
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
            let last: Vec<&str> = self.crashes.iter().map(|(_, r)| r.as_str()).collect();
            self.phase = Phase::Done;
            self.actions.push(Action::Finished(Err(format!(
                "crash loop: the worker failed {} times within {:.0} s ({}); not restarting it",
                self.crashes.len(),
                self.policy.crash_window.as_secs_f64(),
                last.join("; ")
            ))));
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
        let Some(limit) = self.policy.kill_above else { return };
        if rss <= limit || !matches!(self.phase, Phase::Running { .. }) {
            return;
        }
        self.kill_reason = Some(format!(
            "memory: the worker used {} of RSS, above the kill threshold of {} (95% of its memory limit)",
            crate::units::format_bytes(rss),
            crate::units::format_bytes(limit)
        ));
        // The scheduler hears why before the worker's connection drops, so the tasks it was
        // running are charged with the reason.
        self.actions.push(Action::ReportDeath {
            reason: self.kill_reason.clone().expect("set above"),
        });
        // Memory runs away fast: little grace before SIGKILL.
        self.phase = Phase::Stopping {
            kill_at: now + Duration::from_millis(500).min(self.policy.shutdown_timeout),
            after: AfterStop::Crash,
            killed: false,
        };
        self.actions.push(Action::Terminate);
    }

    /// Stop for good: SIGTERM now, SIGKILL after the grace period.
    pub fn on_stop(&mut self, now: Instant) {
        self.terminate(now, AfterStop::Finish);
    }

    /// Stop at once (a second signal): SIGKILL now.
    pub fn on_kill_now(&mut self) {
        match self.phase {
            Phase::Running { .. } | Phase::Stopping { .. } => {
                self.phase = Phase::Stopping {
                    kill_at: Instant::now(),
                    after: AfterStop::Finish,
                    killed: true,
                };
                self.actions.push(Action::Kill);
            }
            Phase::Waiting { .. } => {
                self.phase = Phase::Done;
                self.actions.push(Action::Finished(Ok(())));
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
        match self.phase {
            Phase::Running { .. } => {
                self.phase = Phase::Stopping {
                    kill_at: now + self.policy.shutdown_timeout,
                    after,
                    killed: false,
                };
                self.actions.push(Action::Terminate);
            }
            Phase::Stopping { kill_at, killed, .. } => {
                self.phase = Phase::Stopping { kill_at, after, killed };
            }
            Phase::Waiting { .. } if after == AfterStop::Restart => {
                self.phase = Phase::Waiting { at: now };
                self.on_tick(now);
            }
            Phase::Waiting { .. } => {
                self.phase = Phase::Done;
                self.actions.push(Action::Finished(Ok(())));
            }
            Phase::Done => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            shutdown_timeout: Duration::from_secs(2),
            kill_above: Some(1000),
            ..Policy::default()
        }
    }

    #[test]
    fn starts_at_once_and_restarts_a_crash_with_doubling_backoff() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(policy(), t0);
        s.on_tick(t0);
        assert_eq!(s.take_actions(), vec![Action::Spawn]);
        s.on_exit(ExitKind::Signal(9), t0);
        let a = s.take_actions();
        assert!(
            matches!(&a[0], Action::ReportDeath { reason } if reason.contains("signal 9")),
            "{a:?}"
        );
        // The first restart is immediate, the next ones back off from 0.1 s, doubling.
        assert_eq!(s.next_deadline(), Some(t0));
        s.on_tick(t0);
        assert_eq!(s.take_actions(), vec![Action::Spawn]);
        let t1 = t0 + Duration::from_millis(50);
        s.on_exit(ExitKind::Code(101), t1);
        s.take_actions();
        assert_eq!(s.next_deadline(), Some(t1 + Duration::from_millis(100)));
        s.on_tick(t1 + Duration::from_millis(100));
        s.take_actions();
        let t2 = t1 + Duration::from_millis(150);
        s.on_exit(ExitKind::Code(101), t2);
        s.take_actions();
        assert_eq!(s.next_deadline(), Some(t2 + Duration::from_millis(200)));
    }

    #[test]
    fn a_crash_loop_gives_up_naming_the_exits() {
        let mut now = Instant::now();
        let mut s = Supervisor::new(policy(), now);
        let mut a = Vec::new();
        for i in 0..5 {
            s.on_tick(now);
            assert_eq!(s.take_actions(), vec![Action::Spawn], "start {i}");
            s.on_exit(ExitKind::Code(1), now);
            a = s.take_actions();
            now = s.next_deadline().unwrap_or(now);
        }
        match a.last() {
            Some(Action::Finished(Err(e))) => assert!(e.contains("crash loop") && e.contains("exit status 1"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(s.is_done());
    }

    #[test]
    fn clean_and_fatal_exits_are_not_restarted() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(policy(), t0);
        s.on_tick(t0);
        s.take_actions();
        s.on_exit(ExitKind::Code(0), t0);
        assert_eq!(s.take_actions(), vec![Action::Finished(Ok(()))]);
        let mut s = Supervisor::new(policy(), t0);
        s.on_tick(t0);
        s.take_actions();
        s.on_exit(ExitKind::Code(EXIT_FATAL), t0);
        assert!(matches!(s.take_actions().last(), Some(Action::Finished(Err(_)))));
    }

    #[test]
    fn stop_escalates_to_kill_after_the_grace_period() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(policy(), t0);
        s.on_tick(t0);
        s.take_actions();
        s.on_stop(t0);
        assert_eq!(s.take_actions(), vec![Action::Terminate]);
        s.on_tick(t0 + Duration::from_secs(1));
        assert!(s.take_actions().is_empty());
        s.on_tick(t0 + Duration::from_secs(2));
        assert_eq!(s.take_actions(), vec![Action::Kill]);
        s.on_exit(ExitKind::Signal(9), t0 + Duration::from_secs(2));
        assert_eq!(s.take_actions(), vec![Action::Finished(Ok(()))]);
    }

    #[test]
    fn memory_above_the_threshold_kills_and_restarts_naming_memory() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(policy(), t0);
        s.on_tick(t0);
        s.take_actions();
        s.on_memory(999, t0);
        assert!(s.take_actions().is_empty());
        s.on_memory(2000, t0);
        let a = s.take_actions();
        assert!(
            matches!(&a[0], Action::ReportDeath { reason } if reason.contains("memory")),
            "{a:?}"
        );
        assert_eq!(a[1], Action::Terminate);
        s.on_exit(ExitKind::Signal(15), t0);
        assert!(s.take_actions().is_empty(), "reported once, before the kill");
        assert!(s.next_deadline().is_some(), "restarts after backoff");
    }

    #[test]
    fn requested_restart_starts_again_at_once() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(policy(), t0);
        s.on_tick(t0);
        s.take_actions();
        s.on_restart(t0);
        assert_eq!(s.take_actions(), vec![Action::Terminate]);
        s.on_exit(ExitKind::Signal(15), t0);
        assert_eq!(s.take_actions(), vec![Action::Spawn]);
    }
}
