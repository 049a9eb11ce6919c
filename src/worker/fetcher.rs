//! The worker's fetches of task inputs from peers: one fetcher task per peer address, each
//! with its own connection, so a peer that stalls or is gone holds up only the fetches
//! asked of it, never the worker's loop or the fetches from other peers.
//!
//! It owns the connections to peers and one policy the shell keeps (as it keeps the
//! registration's): a refused or broken connection to the *only* holder of an input is tried
//! again with backoff for [`PeerTimeouts::reconnect`] before the fetch is reported failed; an
//! input with other holders is reported at once, so the core asks the next one. A peer that
//! stalls (silent for [`PeerTimeouts::progress`] while it owes bytes, or not answering a
//! connection within [`PeerTimeouts::connect`]) is reported without another try. It never
//! decides which holder to ask or what a failure means: every outcome goes to the core.

use super::state::FetchError;
use crate::protocol::{Data, PeerClient, PeerError, PeerTimeouts, Role, TaskId};
use smol::Task;
use std::collections::HashMap;
use std::time::Duration;

/// One input to fetch from a peer.
#[derive(Clone, Copy, Debug)]
struct Request {
    task: TaskId,
    /// The peer is the only holder listed: worth a little patience (see the module doc).
    only_holder: bool,
}

/// Where a fetcher reports each outcome: the worker loop's channel, and how an outcome
/// becomes one of its events.
pub(super) struct Report<E> {
    pub events: async_channel::Sender<E>,
    pub event: fn(TaskId, Result<Data, FetchError>) -> E,
}

impl<E> Clone for Report<E> {
    fn clone(&self) -> Self {
        Report {
            events: self.events.clone(),
            event: self.event,
        }
    }
}

impl<E> Report<E> {
    async fn send(&self, task: TaskId, outcome: Result<Data, FetchError>) {
        // Unbounded: a fetcher never waits for the loop.
        let _ = self.events.send((self.event)(task, outcome)).await;
    }

    async fn failed(&self, batch: &[Request], e: &PeerError) {
        let e = FetchError::Transfer(e.to_string());
        for r in batch {
            self.send(r.task, Err(e.clone())).await;
        }
    }
}

/// The fetcher of every peer asked so far; dropping it (or [`Fetchers::clear`]) stops them
/// all and closes their connections.
pub(super) struct Fetchers<E> {
    report: Report<E>,
    timeouts: PeerTimeouts,
    by_peer: HashMap<String, (async_channel::Sender<Request>, Task<()>)>,
}

impl<E: Send + 'static> Fetchers<E> {
    pub fn new(report: Report<E>, timeouts: PeerTimeouts) -> Fetchers<E> {
        Fetchers {
            report,
            timeouts,
            by_peer: HashMap::new(),
        }
    }

    /// Fetches `task` from the peer at `from`; the outcome comes back as an event.
    pub fn fetch(&mut self, task: TaskId, from: String, only_holder: bool) {
        let (report, timeouts) = (&self.report, self.timeouts);
        let entry = self.by_peer.entry(from.clone()).or_insert_with(|| {
            let (tx, rx) = async_channel::unbounded();
            (tx, crate::rt::spawn(fetcher(from, rx, report.clone(), timeouts)))
        });
        let _ = entry.0.try_send(Request { task, only_holder });
    }

    /// Stops every fetch (the session they belonged to ended).
    pub fn clear(&mut self) {
        self.by_peer.clear();
    }
}

/// Fetches from one peer over one connection, batching whatever is queued, until its channel
/// closes.
async fn fetcher<E>(addr: String, rx: async_channel::Receiver<Request>, report: Report<E>, timeouts: PeerTimeouts) {
    let mut conn: Option<PeerClient> = None;
    while let Ok(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        // A connection kept from earlier fetches may have broken while idle (the peer
        // restarted its listener): one more try over a new one before anything fails.
        let mut fresh = false;
        loop {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match connect(&addr, &mut batch, &report, timeouts).await {
                    Some(c) => {
                        fresh = true;
                        conn.insert(c)
                    }
                    None => break,
                },
            };
            let tasks: Vec<TaskId> = batch.iter().map(|r| r.task).collect();
            match c.fetch(&tasks).await {
                Ok(results) => {
                    for (t, r) in tasks.into_iter().zip(results) {
                        let r = r.ok_or_else(|| FetchError::NotHeld { holder: addr.clone() });
                        report.send(t, r).await;
                    }
                    break;
                }
                Err(e) => {
                    conn = None;
                    if !fresh && e.is_transient() {
                        log::debug!("connection to {addr} broke ({e}); fetching again over a new one");
                        continue;
                    }
                    report.failed(&batch, &e).await;
                    break;
                }
            }
        }
    }
}

/// A connection to `addr` for `batch`, or `None` when every input of it was reported
/// failed. On a refused or broken connection the inputs with other holders are reported at
/// once (and leave `batch`), and the only holder of the others is tried again for a while.
async fn connect<E>(
    addr: &str,
    batch: &mut Vec<Request>,
    report: &Report<E>,
    timeouts: PeerTimeouts,
) -> Option<PeerClient> {
    let err = match PeerClient::connect_with(addr, Role::Peer, timeouts, Duration::ZERO).await {
        Ok(c) => return Some(c),
        Err(e) => e,
    };
    if !err.is_transient() || !batch.iter().any(|r| r.only_holder) {
        report.failed(batch, &err).await;
        return None;
    }
    let (sole, others): (Vec<Request>, Vec<Request>) = batch.iter().partition(|r| r.only_holder);
    report.failed(&others, &err).await;
    *batch = sole;
    log::info!(
        "cannot connect to {addr} ({err}), the only holder of {}; trying again for up to {:.1} s",
        crate::units::plural(batch.len() as u64, "input"),
        timeouts.reconnect.as_secs_f64()
    );
    match PeerClient::connect_with(addr, Role::Peer, timeouts, timeouts.reconnect).await {
        Ok(c) => Some(c),
        Err(e) => {
            report.failed(batch, &e).await;
            None
        }
    }
}
