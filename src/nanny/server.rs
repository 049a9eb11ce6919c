//! The nanny process's shell: spawns each worker child (this same executable, `worker
//! --no-nanny`), forwards its output, watches its exit and its memory, keeps a connection to
//! the scheduler, and carries out what each [`Supervisor`] decides.
//!
//! The nanny is a child subreaper: task processes orphaned by a dead worker are re-parented
//! to it, and it kills them. Each worker child gets `PR_SET_PDEATHSIG`, so it dies with the
//! nanny however the nanny dies.

use super::supervisor::{Action, ExitKind, Policy, Supervisor};
use crate::protocol::{dial, spawn_writer, FrameReader, FromNanny, Role, ToNanny};
use futures_lite::{AsyncBufReadExt, FutureExt, StreamExt};
use smol::Task;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many lines of each worker's stderr are kept for the crash report.
const LOG_TAIL: usize = 20;

/// How often children's memory is sampled.
const MEMORY_POLL: Duration = Duration::from_millis(100);

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
}

/// Why a nanny stopped other than by request.
#[derive(Debug, thiserror::Error)]
pub enum NannyError {
    #[error("worker {worker}: {reason}{}", said(.log))]
    GaveUp {
        worker: String,
        reason: String,
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
    FromScheduler(ToNanny),
    SchedulerLost(String),
    Signal,
    Tick,
}

/// One worker child slot.
struct Slot {
    name: String,
    supervisor: Supervisor,
    child: Option<Child>,
    /// The last lines the child wrote to stderr.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// A live child process and the task that watches it (and forwards its output).
struct Child {
    pid: u32,
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
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let (tx, rx) = async_channel::unbounded::<Event>();
    let _stops = {
        let tx = tx.clone();
        crate::rt::spawn(async move {
            while stop.recv().await.is_ok() {
                if tx.send(Event::Signal).await.is_err() {
                    return;
                }
            }
        })
    };
    // Memory is polled only when there is a limit to enforce; deadlines have their own timer.
    let _ticker = config
        .policy
        .kill_above
        .is_some()
        .then(|| crate::ticker::ticker(MEMORY_POLL, tx.clone(), || Event::Tick));
    let now = Instant::now();
    let names: Vec<String> = if config.nworkers == 1 {
        vec![config.name.clone()]
    } else {
        (0..config.nworkers).map(|i| format!("{}-{i}", config.name)).collect()
    };
    // The scheduler link comes up in the background: the workers start at once and wait for
    // the scheduler themselves, under their own death timeout.
    let _linking = {
        let (c, n, tx) = (config.clone(), names.clone(), tx.clone());
        crate::rt::spawn(async move {
            if let Some(link) = connect(&c, &n, tx.clone()).await {
                let _ = tx.send(Event::Linked(link)).await;
            }
        })
    };
    let link = None;
    let mut nanny = Nanny {
        slots: names
            .into_iter()
            .map(|name| Slot {
                name,
                supervisor: Supervisor::new(config.policy.clone(), now),
                child: None,
                log: Arc::default(),
            })
            .collect(),
        config,
        events: tx,
        link,
        signals_seen: 0,
        failure: None,
    };
    nanny.step(Instant::now());
    while !nanny.slots.iter().all(|s| s.supervisor.is_done()) {
        // Wake for the earliest restart or kill deadline, not just on the polling tick.
        let deadline = nanny.slots.iter().filter_map(|s| s.supervisor.next_deadline()).min();
        let ev = match deadline {
            Some(at) => {
                rx.recv()
                    .or(async {
                        async_io::Timer::at(at).await;
                        Ok(Event::Tick)
                    })
                    .await
            }
            None => rx.recv().await,
        };
        let Ok(ev) = ev else { break };
        nanny.handle(ev);
    }
    nanny.reap_orphans();
    match nanny.failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Connects and registers with the scheduler; without it the nanny still supervises, it
/// just cannot report deaths early.
async fn connect(config: &NannyConfig, names: &[String], events: async_channel::Sender<Event>) -> Option<Link> {
    let stream = match dial(&config.scheduler, Role::Nanny, Role::Scheduler, config.death_timeout).await {
        Ok(d) => d.stream,
        Err(e) => {
            log::warn!("nanny: {e}");
            return None;
        }
    };
    let (tx, rx) = async_channel::unbounded();
    let writer = spawn_writer(rx, stream.clone());
    let _ = tx.try_send(FromNanny::Register {
        name: config.name.clone(),
        host: crate::sys::hostname(),
        pid: std::process::id(),
        workers: names.to_vec(),
    });
    let reader = crate::rt::spawn(async move {
        let mut r = FrameReader::new(stream);
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
    slots: Vec<Slot>,
    events: async_channel::Sender<Event>,
    link: Option<Link>,
    /// SIGINT/SIGTERM received so far: the first stops gracefully, the second kills.
    signals_seen: usize,
    /// The first slot that gave up, and why.
    failure: Option<NannyError>,
}

impl Nanny {
    fn handle(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Exited(i, how) => {
                log::info!("nanny: worker {} exited ({how})", self.slots[i].name);
                self.slots[i].child = None;
                self.slots[i].supervisor.on_exit(how, now);
                self.reap_orphans();
            }
            Event::Linked(link) => self.link = Some(link),
            Event::FromScheduler(ToNanny::Registered) => {}
            Event::FromScheduler(ToNanny::Restart) => {
                log::info!("nanny: restarting workers as the scheduler asked");
                for s in &mut self.slots {
                    s.supervisor.on_restart(now);
                }
            }
            Event::SchedulerLost(reason) => {
                log::warn!("nanny: lost the scheduler ({reason}); the workers reconnect on their own");
                self.link = None;
            }
            Event::Signal => {
                self.signals_seen += 1;
                for s in &mut self.slots {
                    if self.signals_seen == 1 {
                        s.supervisor.on_stop(now);
                    } else {
                        s.supervisor.on_kill_now();
                    }
                }
            }
            Event::Tick => {
                for s in &mut self.slots {
                    if let Some(c) = &s.child {
                        if let Some(rss) = crate::sys::rss(Some(c.pid)) {
                            s.supervisor.on_memory(rss, now);
                        }
                    }
                }
            }
        }
        self.step(now);
    }

    /// Ticks every supervisor and carries out what they decided.
    fn step(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            self.slots[i].supervisor.on_tick(now);
            for action in self.slots[i].supervisor.take_actions() {
                self.apply(i, action, now);
            }
        }
    }

    fn apply(&mut self, i: usize, action: Action, now: Instant) {
        let slot = &mut self.slots[i];
        match action {
            Action::Spawn => match spawn_worker(&self.config, &slot.name, i, slot.log.clone(), self.events.clone()) {
                Ok(child) => {
                    log::info!("nanny: started worker {} (pid {})", slot.name, child.pid);
                    slot.child = Some(child);
                }
                Err(e) => {
                    slot.supervisor.on_spawn_failed(&e.to_string(), now);
                }
            },
            Action::Terminate => {
                if let Some(c) = &slot.child {
                    signal_group(c.pid, libc::SIGTERM);
                }
            }
            Action::Kill => {
                if let Some(c) = &slot.child {
                    signal_group(c.pid, libc::SIGKILL);
                }
            }
            Action::ReportDeath { reason } => {
                match last_error(&slot.log) {
                    Some(said) => log::warn!("nanny: worker {} died: {reason} ({said})", slot.name),
                    None => log::warn!("nanny: worker {} died: {reason}", slot.name),
                }
                if let Some(link) = &self.link {
                    let _ = link.tx.try_send(FromNanny::WorkerDied {
                        worker: slot.name.clone(),
                        reason,
                    });
                }
            }
            Action::Finished(Ok(())) => {}
            Action::Finished(Err(reason)) => {
                // The worker's own error line says it best; else the tail of its log.
                let log: Vec<String> = match last_error(&slot.log) {
                    Some(said) => vec![said],
                    None => {
                        let tail = slot.log.lock().expect("log lock");
                        tail.iter().skip(tail.len().saturating_sub(3)).cloned().collect()
                    }
                };
                if self.failure.is_none() {
                    self.failure = Some(NannyError::GaveUp {
                        worker: slot.name.clone(),
                        reason,
                        log,
                    });
                }
                // One worker giving up stops the whole nanny: a half-working node is worse
                // than a clear error.
                for s in &mut self.slots {
                    s.supervisor.on_stop(now);
                }
            }
        }
    }

    /// Kills processes re-parented to the nanny (orphans of dead workers' tasks).
    fn reap_orphans(&self) {
        let me = std::process::id();
        let live: Vec<u32> = self
            .slots
            .iter()
            .filter_map(|s| s.child.as_ref().map(|c| c.pid))
            .collect();
        let Ok(dir) = std::fs::read_dir("/proc") else { return };
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if live.contains(&pid) {
                continue;
            }
            let Some((ppid, pgrp)) = parent_and_group(pid) else {
                continue;
            };
            if ppid != me {
                continue;
            }
            // SAFETY: plain signal and wait calls on a process that is our own child.
            unsafe {
                if pgrp as u32 != me && pgrp > 1 {
                    libc::killpg(pgrp, libc::SIGKILL);
                }
                libc::kill(pid as i32, libc::SIGKILL);
                libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
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

/// Parent pid and process group of `pid`, from `/proc/PID/stat`.
fn parent_and_group(pid: u32) -> Option<(u32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let _state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((ppid, pgrp))
}

/// Sends `sig` to the child's process group (the child leads its own group).
fn signal_group(pid: u32, sig: i32) {
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe {
        libc::killpg(pid as i32, sig);
    }
}

fn spawn_worker(
    config: &NannyConfig,
    name: &str,
    index: usize,
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
    // The worker leads its own process group, so a terminal's Ctrl-C reaches only the nanny,
    // which then stops the worker in order.
    cmd.process_group(0);
    cmd.env_remove(crate::ssh::WATCH_STDIN_ENV);
    // SAFETY: the closure only calls prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut cmd = async_process::Command::from(cmd);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
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
                async_io::Timer::after(Duration::from_secs(1)).await;
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
    Ok(Child { pid, _waiter: waiter })
}
