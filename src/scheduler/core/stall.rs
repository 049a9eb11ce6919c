//! Telling clients when their work cannot go on: no worker is connected while they wait for
//! tasks (every nanny gave up, the workers were stopped, none was started), so a client
//! is never left waiting in silence. It is told once per stall, and again when a worker
//! joins.

use super::{Core, Outgoing};
use crate::protocol::ToClient;
use std::time::{Duration, Instant};

/// How long the cluster may have no worker, while clients wait for tasks, before they are
/// told: long enough for a worker that restarts or reconnects to come back unnoticed.
pub(crate) const NO_WORKER_NOTICE_AFTER: Duration = Duration::from_secs(10);

/// Where the cluster stands on the notice.
#[derive(Debug, Default)]
pub(super) struct Stall {
    /// Since when no worker is connected (`None` while one is).
    pub(super) no_worker_since: Option<Instant>,
    /// The waiting clients were told; they are told again when a worker joins.
    pub(super) told: bool,
}

impl Core {
    /// The last worker left at `now` (or none ever came).
    pub(super) fn stall_on_no_worker(&mut self, now: Instant) {
        if self.workers.is_empty() && self.stall.no_worker_since.is_none() {
            self.stall.no_worker_since = Some(now);
        }
    }

    /// A worker joined: clients told of the stall hear that it is over.
    pub(super) fn stall_on_worker_joined(&mut self) {
        self.stall.no_worker_since = None;
        if std::mem::take(&mut self.stall.told) {
            self.notify_waiting_clients("a worker joined; the tasks go on".to_string());
        }
    }

    /// When the notice is due, if it may be.
    pub(super) fn stall_deadline(&self) -> Option<Instant> {
        let since = self.stall.no_worker_since?;
        (!self.stall.told && self.clients.values().any(|c| c.wants > 0)).then_some(since + NO_WORKER_NOTICE_AFTER)
    }

    /// Tells the waiting clients, once, that no worker has been connected for a while.
    pub(super) fn stall_on_timer(&mut self, now: Instant) {
        let Some(due) = self.stall_deadline() else { return };
        if now < due {
            return;
        }
        let waiting = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                !matches!(
                    t.state,
                    super::task::TaskState::Memory | super::task::TaskState::Erred(_)
                )
            })
            .count();
        if waiting == 0 {
            return;
        }
        self.stall.told = true;
        let since = self
            .stall
            .no_worker_since
            .map_or(0.0, |s| now.duration_since(s).as_secs_f64());
        let message = format!(
            "no worker has been connected for {since:.0} s; {} for one (start workers, or check why their nannies gave up)",
            match waiting {
                1 => "1 task waits".to_string(),
                n => format!("{n} tasks wait"),
            }
        );
        log::warn!("{message}");
        self.notify_waiting_clients(message);
    }

    fn notify_waiting_clients(&mut self, message: String) {
        for (id, c) in self.clients.iter() {
            if c.wants > 0 {
                self.outbox.push(Outgoing::Client(
                    *id,
                    ToClient::Notice {
                        message: message.clone(),
                    },
                ));
            }
        }
    }
}
