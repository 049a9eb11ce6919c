//! The worker core's decisions in time: when a heartbeat is due, when memory is checked and
//! what a reading means (pause, resume, spill), when the lifetime is up, and how a stop
//! request or the scheduler's `Shutdown` ends the worker (drain first, or leave at once).
//!
//! A second `impl` block of [`WorkerCore`], under the same contract (see `state.rs`): `now` comes
//! in with the events, decisions go out as [`Effect`]s, deadlines through
//! [`WorkerCore::next_deadline`]. It must never read the clock or `/proc`: the shell samples
//! memory when the core asks ([`Effect::SampleMemory`]) and passes the reading in.

use super::state::{Effect, WorkerCore, WorkerExit, WorkerSettings};
use crate::memory::MemoryPolicy;
use crate::protocol::FromWorker;
use crate::units::format_bytes;
use std::time::{Duration, Instant};

/// What outlives a scheduler session: the clock-driven part of the worker.
#[derive(Debug, Default)]
pub struct Life {
    drain: bool,
    memory: MemoryPolicy,
    /// Registered with a scheduler; heartbeats and retirement need one.
    connected: bool,
    /// The interval the scheduler asked for.
    heartbeat_every: Duration,
    /// None while not connected.
    next_heartbeat: Option<Instant>,
    /// A heartbeat is due and waits for the memory reading it carries.
    heartbeat_waiting: bool,
    /// None without a memory limit or while not connected.
    next_memory_check: Option<Instant>,
    /// When to retire; None once retiring, or without a lifetime.
    lifetime_ends: Option<Instant>,
    /// Retiring, and why: told to every scheduler this worker registers with, and the next
    /// `Shutdown` ends it as retired.
    retiring: Option<String>,
    /// A spill the core asked for has not finished: no second one meanwhile.
    spilling: bool,
    /// Bytes of results that came to be held here since the last memory reading.
    grown: u64,
    /// The core decided the worker ends; nothing happens after.
    left: Option<WorkerExit>,
}

impl Life {
    /// A spill asked for has not finished.
    pub(crate) fn is_spilling(&self) -> bool {
        self.spilling
    }

    pub fn new(settings: &WorkerSettings, now: Instant) -> Life {
        Life {
            drain: settings.drain,
            memory: settings.memory,
            lifetime_ends: settings.lifetime.map(|d| now + d),
            ..Life::default()
        }
    }

    #[cfg(test)]
    pub fn sanity_check(&self, paused: bool) {
        assert_eq!(
            self.connected,
            self.next_heartbeat.is_some(),
            "heartbeats iff connected"
        );
        assert!(
            self.next_memory_check.is_none() || (self.connected && self.memory.is_limited()),
            "memory is checked only when connected and limited"
        );
        assert!(
            !self.heartbeat_waiting || self.connected,
            "a heartbeat waits only when connected"
        );
        assert!(
            self.retiring.is_none() || self.lifetime_ends.is_none(),
            "a retiring worker has no lifetime left to end"
        );
        assert!(!paused || self.memory.is_limited(), "paused only under a memory limit");
        assert!(
            !self.spilling || self.memory.is_limited(),
            "spilling only under a memory limit"
        );
    }
}

impl WorkerCore {
    /// The earliest moment [`on_timer`](Self::on_timer) has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let life = &self.life;
        if life.left.is_some() {
            return None;
        }
        // The lifetime waits for a scheduler to hand the work to.
        let lifetime = life.lifetime_ends.filter(|_| life.connected);
        // Memory is watched while something can make it grow; at rest the heartbeat's reading
        // is enough (a check that fell due meanwhile runs as soon as work comes).
        let memory = life.next_memory_check.filter(|_| self.is_busy());
        [life.next_heartbeat, memory, lifetime].into_iter().flatten().min()
    }

    /// Whatever is due at `now`: retire when the lifetime is up; ask for a memory reading
    /// when a heartbeat or a memory check is due.
    pub fn on_timer(&mut self, now: Instant) {
        if self.life.left.is_some() {
            return;
        }
        if self.life.connected && self.life.lifetime_ends.is_some_and(|at| at <= now) {
            self.retire("its lifetime is up");
        }
        let mut sample = false;
        if let Some(at) = self.life.next_heartbeat.filter(|at| *at <= now) {
            self.life.heartbeat_waiting = true;
            // From the later of the deadline and now: a late loop does not send a burst.
            self.life.next_heartbeat = Some(at.max(now) + self.life.heartbeat_every);
            sample = true;
        }
        if let Some(at) = self.life.next_memory_check.filter(|at| *at <= now && self.is_busy()) {
            self.life.next_memory_check = Some(at.max(now) + MemoryPolicy::CHECK_EVERY);
            sample = true;
        }
        if sample {
            self.life.grown = 0;
            self.outbox.push(Effect::SampleMemory);
        }
    }

    /// A result of `nbytes` came to be held here (computed, fetched, put): memory grew by
    /// about as much. Past 2% of the limit since the last reading, memory is read now rather
    /// than at the next check: results that come faster than checks (4 MiB blobs from a
    /// fast function under an 80 MiB limit) would otherwise run past the pause and spill
    /// thresholds into the nanny's kill between two checks.
    pub(crate) fn note_growth(&mut self, nbytes: u64) {
        let life = &mut self.life;
        if life.left.is_some() || !life.connected || !life.memory.is_limited() {
            return;
        }
        life.grown += nbytes;
        if life.grown >= life.memory.limit() / 50 {
            life.grown = 0;
            self.outbox.push(Effect::SampleMemory);
        }
    }

    /// A memory reading, as asked for by [`Effect::SampleMemory`]: this process's resident
    /// bytes, and the bytes of results the store holds in memory. It goes into a waiting
    /// heartbeat; against the limit it pauses or resumes new tasks and starts a spill.
    pub fn on_memory(&mut self, rss: u64, in_memory: u64, _now: Instant) {
        if self.life.left.is_some() {
            return;
        }
        if std::mem::take(&mut self.life.heartbeat_waiting) {
            self.outbox.push(Effect::Send(FromWorker::Heartbeat { memory: rss }));
        }
        let policy = self.life.memory;
        let (Some(pause_above), Some(spill_above)) = (policy.pause_above(), policy.spill_above()) else {
            return;
        };
        let paused = rss > pause_above;
        if paused != self.paused {
            if paused {
                log::warn!(
                    "memory {} above {}% of the limit {}: pausing new tasks",
                    format_bytes(rss),
                    policy.pause_percent(),
                    format_bytes(policy.limit())
                );
            } else {
                log::info!("memory back under {}% of the limit: resuming", policy.pause_percent());
            }
            self.set_paused(paused);
        }
        if rss > spill_above && !self.life.spilling {
            self.life.spilling = true;
            self.outbox.push(Effect::Spill { keep: in_memory / 2 });
        }
    }

    /// The spill asked for by [`Effect::Spill`] is over (done or failed).
    pub fn on_spilled(&mut self) {
        self.life.spilling = false;
    }

    /// Registered with a scheduler that wants a heartbeat every `heartbeat`. A worker that
    /// was retiring tells this scheduler too; a lifetime that ran out meanwhile retires it now.
    pub fn on_registered(&mut self, heartbeat: Duration, now: Instant) {
        // `Registered` is the session's first scheduler message.
        self.seen = 1;
        let life = &mut self.life;
        life.connected = true;
        life.heartbeat_every = heartbeat;
        life.next_heartbeat = Some(now + heartbeat);
        life.heartbeat_waiting = false;
        life.next_memory_check = life.memory.is_limited().then(|| now + MemoryPolicy::CHECK_EVERY);
        if let Some(reason) = life.retiring.clone() {
            self.outbox.push(Effect::Send(FromWorker::Retire { reason }));
        }
        self.on_timer(now);
    }

    /// The scheduler connection is gone: every task and result of the session is forgotten
    /// (the shell reconnects and registers anew).
    pub fn on_scheduler_lost(&mut self, _now: Instant) {
        // What the outbox still holds is dropped with the session, unapplied: a spill asked
        // for there never starts, so it will never report `Spilled` either.
        if self.outbox.iter().any(|e| matches!(e, Effect::Spill { .. })) {
            self.life.spilling = false;
        }
        self.forget_session();
        let life = &mut self.life;
        life.connected = false;
        life.next_heartbeat = None;
        life.heartbeat_waiting = false;
        life.next_memory_check = None;
    }

    /// Someone asked the worker to stop (a signal, [`crate::Worker::stop`]). With `drain`
    /// the first request retires it (tasks finish, results are handed over); otherwise, or
    /// when it already retires, or without a scheduler, it leaves at once.
    pub fn on_stop_requested(&mut self, _now: Instant) {
        if self.life.left.is_some() {
            return;
        }
        if !self.life.connected {
            self.leave(WorkerExit::Stopped);
            return;
        }
        if self.life.drain && self.life.retiring.is_none() {
            self.retire("draining on a stop request");
            return;
        }
        self.outbox.push(Effect::Send(FromWorker::Leaving {
            reason: "the worker was asked to stop".into(),
        }));
        self.leave(WorkerExit::Stopped);
    }

    /// The scheduler's `Shutdown`: the end of a retirement, or of the cluster.
    pub fn on_shutdown(&mut self, _now: Instant) {
        if self.life.left.is_some() {
            return;
        }
        let exit = if self.life.retiring.is_some() {
            WorkerExit::Retired
        } else {
            WorkerExit::Stopped
        };
        self.leave(exit);
    }

    /// Retiring (lifetime or drain): the scheduler stops sending it work, has its results
    /// copied elsewhere, then sends `Shutdown`.
    #[cfg(test)]
    pub fn is_retiring(&self) -> bool {
        self.life.retiring.is_some()
    }

    fn retire(&mut self, reason: &str) {
        if self.life.retiring.is_some() {
            return;
        }
        log::info!("retiring: {reason}");
        self.life.retiring = Some(reason.to_string());
        self.life.lifetime_ends = None;
        self.outbox.push(Effect::Send(FromWorker::Retire {
            reason: reason.to_string(),
        }));
    }

    fn leave(&mut self, exit: WorkerExit) {
        self.life.left = Some(exit);
        self.outbox.push(Effect::Leave(exit));
    }
}
