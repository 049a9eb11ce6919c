//! The nanny process's shell: spawns each worker child (this same executable, `worker
//! --no-nanny`), forwards its output, watches its exit, reads its memory, keeps a connection
//! to the scheduler, and carries out what the [`NannyCore`] decides.
//!
//! It decides nothing (signals, restarts, kills, what to tell the scheduler and when are the
//! core's) and keeps no periodic ticker: its loop waits for an event or the core's deadline.
//!
//! The nanny is a child subreaper: task processes orphaned by a dead worker are re-parented
//! to it, and it kills them. Where cgroups can be used, each worker child makes its task
//! groups in a cgroup directory of its own that the nanny names (`sys::cgroup::CGROUP_ENV`),
//! and the nanny kills and removes that directory when the child dies: that finds the
//! processes that left the tree too. Each worker child is tethered (`sys::spawn_tethered`),
//! so it dies with the nanny however the nanny dies, and the nanny's cgroup directory has a
//! guardian that kills what is left in it then (`sys::cgroup`).
//!
//! A worker child's scratch folder goes however the child ends: it removes the folder itself
//! when it stops, and when the nanny dies (its death signal is one it catches); the nanny
//! removes the folder of a child it reaped (SIGKILL, a memory kill, a crash), through the
//! folder's lock, so a live worker's folder is never touched.

use super::core::{NannyAction, NannyCore};
use super::supervisor::{ExitKind, GiveUp, Policy};
use crate::protocol::{dial_with, spawn_writer, DialError, FrameReader, FromNanny, Retry, Role, ToNanny};
use crate::rt::{DeadlineWait, Woke};
use async_io::Timer;
use futures_lite::{AsyncBufReadExt, FutureExt, StreamExt};
use smol::Task;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many lines of each worker's stderr are kept for the crash report.
const LOG_TAIL: usize = 20;

/// Everything a nanny needs before it starts anything.
#[derive(Clone, Debug)]
pub struct NannyConfig {
    /// `host:port` of the scheduler.
    pub scheduler: String,
    /// The nanny's name; worker `i` is named `NAME-i` when there are several, else `NAME`.
    pub name: String,
    pub nworkers: usize,
    /// The executable to run as the worker (normally this one).
    pub exe: PathBuf,
    /// Arguments after `worker ADDR --no-nanny --name NAME` for every child.
    pub worker_args: Vec<OsString>,
    pub policy: Policy,
    /// How long the scheduler may be unreachable when the nanny starts.
    pub death_timeout: Duration,
    /// Send the workers' stdout to our stderr: when stdout carries something else (the
    /// results of `distd local --processes --run`).
    pub worker_stdout_to_stderr: bool,
    /// The workers' `--local-directory`, where the nanny removes a dead worker's scratch
    /// folder as soon as it reaps it.
    pub local_dir: PathBuf,
    /// The credential to hand each worker over its stdin, when it may not find it by itself
    /// (it came to the nanny over a pipe, or lives only in this process).
    pub credential: Option<std::sync::Arc<crate::protocol::Credential>>,
}

/// Why a nanny stopped other than by request.
#[derive(Debug, thiserror::Error)]
pub enum NannyError {
    #[error("worker {worker}: {reason}{}", said(.log))]
    GaveUp {
        worker: String,
        /// Typed, so the CLI can tell a worker that cannot start from a crash loop.
        reason: GiveUp,
        log: Vec<String>,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

fn said(log: &[String]) -> String {
    match log {
        [] => String::new(),
        [one] => format!(": {one}"),
        many => format!("; its last log lines: {}", many.join(" | ")),
    }
}

/// What the nanny's loop reacts to.
enum Event {
    Exited(usize, ExitKind),
    Linked(Link),
    /// A dial gave up (unreachable past the death timeout, or refused).
    LinkFailed,
    FromScheduler(ToNanny),
    SchedulerLost(String),
    Signal,
}

/// The I/O side of one worker slot (its decisions are the core's).
#[derive(Default)]
struct Slot {
    /// The cgroup directory of a dead child, until its leftovers are killed.
    dead_cgroup: Option<PathBuf>,
    child: Option<Child>,
    /// The last lines the child wrote to stderr.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// A live child process and the task that watches it (and forwards its output).
struct Child {
    pid: u32,
    /// Where it makes its task cgroups, if cgroups are used.
    cgroup: Option<PathBuf>,
    _waiter: Task<()>,
}

/// The nanny's link to the scheduler, if it has one.
struct Link {
    tx: async_channel::Sender<FromNanny>,
    _reader: Task<()>,
    _writer: Task<()>,
}

/// Runs a nanny in the foreground until its workers are stopped (by SIGINT/SIGTERM: the
/// first stops them gracefully, the second kills them; or by their scheduler).
pub fn run_nanny(config: NannyConfig) -> Result<(), NannyError> {
    let mut signals = async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
        .map_err(NannyError::Signals)?;
    let (stop_tx, stop_rx) = async_channel::unbounded();
    // Children are spawned from this (the main) thread: PR_SET_PDEATHSIG fires when the
    // thread that forked them exits, so it must live as long as the nanny.
    crate::rt::block_on(async {
        let _signals = crate::rt::spawn(async move {
            while signals.next().await.is_some() {
                if stop_tx.send(()).await.is_err() {
                    return;
                }
            }
        });
        supervise(config, stop_rx).await
    })
}

/// Supervises the workers until they are stopped: each message on `stop` acts as a signal
/// (the first stops gracefully, the second kills). Children are spawned from the thread
/// that polls this future, which must outlive them (the main thread, or one of smol's
/// executor threads, which live as long as the process).
pub async fn supervise(config: NannyConfig, stop: async_channel::Receiver<()>) -> Result<(), NannyError> {
    // Made (and guarded) before any child starts, and before this process becomes a
    // subreaper, so the double-forked guardian is not re-parented to it.
    let _ = crate::sys::cgroup::owner_dir();
    crate::sys::become_subreaper();
    let (senders, rx) = crate::rt::inbox::<Event>();
    let tx = senders.events;
    // Stop requests take the urgent lane: no queued event delays them.
    let _stops = {
        let tx = senders.urgent;
        crate::rt::spawn(async move {
            while stop.recv().await.is_ok() {
                if tx.send(Event::Signal).await.is_err() {
                    return;
                }
            }
        })
    };
    let names: Vec<String> = if config.nworkers == 1 {
        vec![config.name.clone()]
    } else {
        (0..config.nworkers).map(|i| format!("{}-{i}", config.name)).collect()
    };
    let now = Instant::now();
    let mut nanny = Nanny {
        slots: names.iter().map(|_| Slot::default()).collect(),
        core: NannyCore::new(names.clone(), &config.policy, now),
        config,
        names,
        events: tx,
        link: None,
        linking: None,
        failure: None,
    };
    nanny.core.on_timer(now);
    nanny.apply_outbox();
    let mut wait = DeadlineWait::default();
    while !nanny.core.is_done() {
        match wait.next(&rx, nanny.core.next_deadline()).await {
            Woke::Event(ev) => nanny.handle(ev),
            Woke::Closed => break,
            Woke::Deadline => {}
        }
        let now = Instant::now();
        if nanny.core.next_deadline().is_some_and(|at| at <= now) {
            nanny.core.on_timer(now);
        }
        nanny.apply_outbox();
    }
    nanny.reap_orphans();
    match nanny.failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Connects and registers with the scheduler; without it the nanny still supervises, it
/// just cannot report deaths early. It dials quietly: its workers dial the same scheduler
/// and say what they meet (an unreachable scheduler is their line, and their error when they
/// give up); only a scheduler that answers and refuses the nanny itself is its own news.
async fn connect(config: &NannyConfig, names: &[String], events: async_channel::Sender<Event>) -> Option<Link> {
    let mut retry = Retry::new(Role::Scheduler, &config.scheduler, config.death_timeout, Instant::now()).quiet();
    let stream = match dial_with(&config.scheduler, Role::Nanny, Role::Scheduler, &mut retry, None).await {
        Ok(d) => d.link,
        Err(e @ (DialError::Refused { .. } | DialError::NoCredential { .. } | DialError::Untrusted { .. })) => {
            log::warn!("nanny: {e}");
            return None;
        }
        Err(e) => {
            log::debug!("nanny: {e}");
            return None;
        }
    };
    let (tx, rx) = async_channel::unbounded();
    let closer = stream.closer();
    let writer = spawn_writer(rx, stream.writer, closer);
    let _ = tx.try_send(FromNanny::Register {
        name: config.name.clone(),
        host: crate::sys::hostname(),
        pid: std::process::id(),
        workers: names.to_vec(),
    });
    let reader = crate::rt::spawn(async move {
        let mut r = FrameReader::new(stream.reader);
        let reason = loop {
            match r.next::<ToNanny>().await {
                Ok(Some(m)) => {
                    let _ = events.send(Event::FromScheduler(m)).await;
                }
                Ok(None) => break "connection closed".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        let _ = events.send(Event::SchedulerLost(reason)).await;
    });
    Some(Link {
        tx,
        _reader: reader,
        _writer: writer,
    })
}

struct Nanny {
    config: NannyConfig,
    core: NannyCore,
    /// The workers' names, as registered with the scheduler.
    names: Vec<String>,
    /// Indexed like the core's slots.
    slots: Vec<Slot>,
    events: async_channel::Sender<Event>,
    link: Option<Link>,
    /// The dial under way, if any: it comes up in the background, as the workers start at
    /// once and wait for the scheduler themselves, under their own death timeout.
    linking: Option<Task<()>>,
    /// The error the nanny ends with: the first slot that gave up, and why.
    failure: Option<NannyError>,
}

impl Nanny {
    fn handle(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Exited(i, how) => {
                if let Some(child) = self.slots[i].child.take() {
                    self.slots[i].dead_cgroup = child.cgroup;
                    // Reaped, so the lock of its scratch folder is free: the folder goes now,
                    // not when (or if) another worker starts in the same local directory.
                    crate::worker::remove_scratch_of(&self.config.local_dir, child.pid);
                }
                self.core.on_exit(i, how, now);
            }
            Event::Linked(link) => {
                self.linking = None;
                self.link = Some(link);
                self.core.on_linked(now);
            }
            Event::LinkFailed => {
                self.linking = None;
                self.core.on_link_failed(now);
            }
            Event::FromScheduler(msg) => self.core.on_scheduler_message(msg, now),
            Event::SchedulerLost(reason) => {
                log::warn!("nanny: lost the scheduler ({reason}); dialling again (the workers reconnect on their own)");
                self.link = None;
                self.core.on_scheduler_lost(now);
            }
            Event::Signal => self.core.on_signal(now),
        }
    }

    /// Carries out what the core decided, and what it decides on the way (a failed spawn, a
    /// memory reading).
    fn apply_outbox(&mut self) {
        loop {
            let outbox = self.core.take_outbox();
            if outbox.is_empty() {
                return;
            }
            // A death that makes its slot give up is said once, by the nanny's last line.
            let giving_up: Vec<usize> = outbox
                .iter()
                .filter_map(|a| match a {
                    NannyAction::GaveUp { slot, .. } => Some(*slot),
                    _ => None,
                })
                .collect();
            for action in outbox {
                match action {
                    NannyAction::Died { slot, .. } if giving_up.contains(&slot) => {}
                    action => self.apply(action),
                }
            }
        }
    }

    fn apply(&mut self, action: NannyAction) {
        match action {
            NannyAction::Spawn { slot } => {
                let name = self.core.name(slot).to_string();
                let log = self.slots[slot].log.clone();
                let cgroup = crate::sys::cgroup::owner_dir().and_then(|owner| {
                    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    crate::sys::cgroup::make(owner, &format!("worker-{n}"))
                        .map_err(|e| log::warn!("nanny: no cgroup for worker {name}: {e}"))
                        .ok()
                });
                match spawn_worker(&self.config, &name, slot, cgroup, log, self.events.clone()) {
                    Ok(child) => {
                        log::info!("nanny: started worker {name} (pid {})", child.pid);
                        self.slots[slot].child = Some(child);
                    }
                    Err(e) => self.core.on_spawn_failed(slot, &e, Instant::now()),
                }
            }
            NannyAction::Terminate { slot } => self.signal(slot, libc::SIGTERM),
            NannyAction::Kill { slot } => self.signal(slot, libc::SIGKILL),
            NannyAction::Died { slot, reason } => {
                let name = self.core.name(slot);
                match last_error(&self.slots[slot].log) {
                    Some(said) => log::warn!("nanny: worker {name} died: {reason} ({said})"),
                    None => log::warn!("nanny: worker {name} died: {reason}"),
                }
            }
            NannyAction::Send(msg) => {
                if let Some(link) = &self.link {
                    let _ = link.tx.try_send(msg);
                }
            }
            NannyAction::GaveUp { slot, reason } => {
                // The worker's own error line says it best; else the tail of its log.
                let log: Vec<String> = match last_error(&self.slots[slot].log) {
                    Some(said) => vec![said],
                    None => {
                        let tail = self.slots[slot].log.lock().expect("log lock");
                        tail.iter().skip(tail.len().saturating_sub(3)).cloned().collect()
                    }
                };
                self.failure = Some(NannyError::GaveUp {
                    worker: self.core.name(slot).to_string(),
                    reason,
                    log,
                });
            }
            NannyAction::SampleMemory => {
                let now = Instant::now();
                for i in 0..self.slots.len() {
                    // The worker and everything it started: its task commands' memory too.
                    let rss = self.slots[i]
                        .child
                        .as_ref()
                        .and_then(|c| crate::sys::tree_rss(c.pid, c.cgroup.as_deref()));
                    if let Some(rss) = rss {
                        self.core.on_memory(i, rss, now);
                    }
                }
            }
            NannyAction::ReapOrphans => self.reap_orphans(),
            NannyAction::Link => {
                let (c, n, tx) = (self.config.clone(), self.names.clone(), self.events.clone());
                self.linking = Some(crate::rt::spawn(async move {
                    let linked = match connect(&c, &n, tx.clone()).await {
                        Some(link) => Event::Linked(link),
                        None => Event::LinkFailed,
                    };
                    let _ = tx.send(linked).await;
                }));
            }
        }
    }

    /// Signals the slot's worker and its process group (it leads its own).
    fn signal(&self, slot: usize, signal: i32) {
        if let Some(c) = &self.slots[slot].child {
            crate::sys::signal_group(c.pid, signal);
        }
    }

    /// Kills what dead workers left: their cgroups (removed with what is in them), and
    /// processes re-parented to the nanny (orphans of their tasks).
    fn reap_orphans(&mut self) {
        for slot in &mut self.slots {
            if let Some(dir) = slot.dead_cgroup.take() {
                crate::sys::cgroup::remove_tree(&dir);
            }
        }
        let live: Vec<u32> = self
            .slots
            .iter()
            .filter_map(|s| s.child.as_ref().map(|c| c.pid))
            .collect();
        crate::sys::kill_children_except(&live);
    }
}

/// The last `distd: error: ...` line a worker printed, without that prefix.
fn last_error(log: &Mutex<VecDeque<String>>) -> Option<String> {
    log.lock()
        .expect("log lock")
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix(ERROR_PREFIX).map(str::to_string))
}

/// How the CLI starts its one error line.
const ERROR_PREFIX: &str = "distd: error: ";

fn spawn_worker(
    config: &NannyConfig,
    name: &str,
    index: usize,
    cgroup: Option<PathBuf>,
    log: Arc<Mutex<VecDeque<String>>>,
    events: async_channel::Sender<Event>,
) -> std::io::Result<Child> {
    let mut cmd = std::process::Command::new(&config.exe);
    cmd.arg("worker")
        .arg(&config.scheduler)
        .arg("--no-nanny")
        .arg("--name")
        .arg(name)
        .args(&config.worker_args);
    // The nanny watches its own stdin for `distd ssh`; its workers do not.
    cmd.env_remove(crate::sys::WATCH_STDIN_ENV);
    let handoff = config.credential.as_deref().map(crate::protocol::access::handoff);
    match &handoff {
        Some(_) => cmd.env(crate::protocol::access::STDIN_ENV, "1"),
        None => cmd.env_remove(crate::protocol::access::STDIN_ENV),
    };
    if crate::protocol::security::keyring::is_insecure() {
        cmd.arg("--no-security");
    }
    match &cgroup {
        Some(dir) => cmd.env(crate::sys::cgroup::CGROUP_ENV, dir),
        None => cmd.env_remove(crate::sys::cgroup::CGROUP_ENV),
    };
    // The worker leads its own process group, so a terminal's Ctrl-C reaches only the nanny,
    // which then stops the worker in order; and it dies with the nanny.
    let mut child = crate::sys::spawn_tethered(cmd, handoff)?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout was piped");
    let stderr = child.stderr.take().expect("stderr was piped");
    let to_stderr = config.worker_stdout_to_stderr;
    let stdout_task = crate::rt::spawn(async move {
        let mut lines = futures_lite::io::BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next().await {
            if to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    });
    let stderr_task = crate::rt::spawn(async move {
        let mut lines = futures_lite::io::BufReader::new(stderr).lines();
        while let Some(Ok(line)) = lines.next().await {
            // A worker's error line is not repeated: the nanny reports it, once.
            if !line.starts_with(ERROR_PREFIX) {
                eprintln!("{line}");
            }
            let mut tail = log.lock().expect("log lock");
            if tail.len() == LOG_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
    let waiter = crate::rt::spawn(async move {
        let status = child.status().await;
        // Its last words (often the reason it died) are read before its exit is reported.
        let drained = async {
            stdout_task.await;
            stderr_task.await;
        };
        drained
            .or(async {
                Timer::after(Duration::from_secs(1)).await;
            })
            .await;
        let how = match status {
            Ok(st) => match (st.code(), st.signal()) {
                (Some(c), _) => ExitKind::Code(c),
                (None, Some(s)) => ExitKind::Signal(s),
                (None, None) => ExitKind::Code(-1),
            },
            Err(_) => ExitKind::Code(-1),
        };
        let _ = events.send(Event::Exited(index, how)).await;
    });
    Ok(Child {
        pid,
        cgroup,
        _waiter: waiter,
    })
}
