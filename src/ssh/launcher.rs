//! `distd ssh`: starts a scheduler on one host and nanny-supervised workers on every host,
//! over OpenSSH (the system's ssh, through the `openssh` crate: ~/.ssh/config, agents and
//! ProxyJump work), and tears it all down on Ctrl-C.
//!
//! openssh runs on tokio; this module alone wraps its futures in `async_compat::Compat` so the
//! rest of distd stays on smol. Remote processes run with `DISTD_WATCH_STDIN=1`: each keeps
//! its stdin open to us and stops when it closes, so no remote process outlives `distd ssh`,
//! however it ends.
//!
//! The cluster's credential is made here, on the launching machine, and handed to every
//! remote process first thing on that same stdin (`DISTD_ACCESS_STDIN=1`): never in argv,
//! never in a file on the remote host. While the cluster runs it is in this user's access
//! folder here too, so `distd submit` from this machine finds it.

use super::pattern::HostSpec;
use crate::client::AsyncClient;
use async_compat::Compat;
use futures_lite::{AsyncBufReadExt, AsyncWriteExt, StreamExt};
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use smol::Task;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long `distd ssh` waits for a host to answer unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which distd the remote hosts run.
#[derive(Clone, Debug)]
pub enum RemoteDistd {
    /// A program on the remote PATH (or a path); its version must equal ours.
    Path(String),
    /// Copy this very binary into this folder on each host (relative to the remote home).
    Upload { dir: String },
}

/// Everything `distd ssh` needs, validated.
#[derive(Clone, Debug)]
pub struct SshConfig {
    pub hosts: Vec<HostSpec>,
    pub scheduler: HostSpec,
    pub scheduler_port: u16,
    /// Flags for every `distd worker` (after the scheduler address).
    pub worker_args: Vec<String>,
    pub nworkers: usize,
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_key: Option<PathBuf>,
    pub ssh_config: Option<PathBuf>,
    pub remote: RemoteDistd,
    /// Where each remote process's output is also written, one file per host and role.
    pub log_directory: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// The credential handed to every remote process over its stdin (set by `run_ssh`).
    pub handoff: Option<Arc<Vec<u8>>>,
}

/// Why `distd ssh` could not run.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("scheduler host {host} unreachable: {reason}")]
    SchedulerHost { host: String, reason: RemoteError },
    #[error("host {host} cannot run this distd: {reason}")]
    Unfit { host: String, reason: RemoteError },
    #[error("no host could be reached")]
    NoHosts,
    #[error("the scheduler on {host} did not start: {reason}")]
    SchedulerStart { host: String, reason: SchedulerStartError },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot read this program's own executable: {0}")]
    OwnExecutable(std::io::Error),
    #[error("cannot write logs to {path}: {source}")]
    Log { path: String, source: std::io::Error },
    #[error(transparent)]
    Credential(crate::protocol::security::SecurityError),
    #[error(transparent)]
    Access(crate::protocol::access::AccessError),
}

/// What went wrong with one thing done on a remote host.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// ssh itself failed (to connect, to start a command, to wait for it).
    #[error("{}", describe(.0))]
    Ssh(#[source] openssh::Error),
    #[error("sending data: {0}")]
    Send(#[source] std::io::Error),
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        /// Its stderr on one line.
        stderr: String,
    },
    #[error("remote {program:?} is {theirs:?}, this is {ours:?}; every host must run the same distd (try --upload)")]
    OtherVersion {
        program: String,
        theirs: String,
        ours: String,
    },
    #[error("remote architecture is {theirs}, this binary is for {ours}; --upload cannot help")]
    OtherArchitecture { theirs: String, ours: &'static str },
    #[error("cannot read this binary: {0}")]
    OwnBinary(#[source] std::io::Error),
    #[error("uploaded {path} but its checksum differs")]
    Checksum { path: String },
}

/// Why the remote scheduler did not come up, or what ended it.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerStartError {
    #[error("{0}")]
    Spawn(RemoteError),
    #[error("unexpected first line {0:?}")]
    UnexpectedLine(String),
    #[error("it printed no address within {} s", ANNOUNCE_PATIENCE.as_secs())]
    Silent,
    #[error("the scheduler {0}")]
    Ended(RemoteExit),
}

/// How a remote process ended.
#[derive(Debug, thiserror::Error)]
pub enum RemoteExit {
    #[error("exited with {0}")]
    Exited(std::process::ExitStatus),
    #[error("{0}")]
    Lost(RemoteError),
}

/// How long the remote scheduler may take to print its address.
const ANNOUNCE_PATIENCE: Duration = Duration::from_secs(30);

/// How long every worker may take to register before the summary says some did not.
const REGISTER_PATIENCE: Duration = Duration::from_secs(60);

/// Why one host is not part of the cluster.
enum HostFailure {
    /// ssh could not reach it: the cluster starts without it.
    Unreachable(RemoteError),
    /// It answers but cannot run our distd (version, architecture, upload).
    Unfit(RemoteError),
}

/// A host ready to run our distd: its session and the program to run there.
type Ready = (Arc<Session>, String);

/// One line of ssh's own error, with its causes.
fn describe(e: &openssh::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let t = c.to_string();
        if !t.is_empty() && !s.contains(&t) {
            s.push_str(": ");
            s.push_str(t.trim());
        }
        src = c.source();
    }
    s.replace('\n', " ")
}

impl SshConfig {
    fn builder(&self, host: &HostSpec) -> SessionBuilder {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Add)
            .connect_timeout(self.connect_timeout)
            .server_alive_interval(Duration::from_secs(5))
            // The master exits by itself once no command uses it, e.g. after we are killed.
            .control_persist(openssh::ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(10).expect("10 is not zero"),
            ));
        if let Some(u) = host.user.clone().or_else(|| self.ssh_user.clone()) {
            b.user(u);
        }
        if let Some(p) = host.port.or(self.ssh_port) {
            b.port(p);
        }
        if let Some(k) = &self.ssh_key {
            b.keyfile(k);
        }
        if let Some(c) = &self.ssh_config {
            b.config_file(c);
        }
        b
    }

    async fn connect(&self, host: &HostSpec) -> Result<Arc<Session>, RemoteError> {
        let b = self.builder(host);
        let dest = host.host.clone();
        Compat::new(async move { b.connect(dest).await })
            .await
            .map(Arc::new)
            .map_err(RemoteError::Ssh)
    }
}

/// Runs a command to completion on `session`; its stdout, or an error with its stderr.
async fn run_remote(
    session: &Session,
    program: &str,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<String, RemoteError> {
    Compat::new(async {
        let mut cmd = session.command(program);
        cmd.args(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().await.map_err(RemoteError::Ssh)?;
        if let (Some(bytes), Some(stdin)) = (input, child.stdin().take()) {
            let mut stdin = Compat::new(stdin);
            stdin.write_all(bytes).await.map_err(RemoteError::Send)?;
            stdin.close().await.map_err(RemoteError::Send)?;
        }
        let out = child.wait_with_output().await.map_err(RemoteError::Ssh)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(RemoteError::Failed {
                command: format!("{program} {}", args.join(" ")),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().replace('\n', " | "),
            })
        }
    })
    .await
}

/// Makes sure `host` runs our distd; returns the program to run there.
async fn prepare_remote(config: &SshConfig, session: &Session, local_sha: Option<&str>) -> Result<String, RemoteError> {
    let ours = format!("distd {}", crate::protocol::DISTD_VERSION);
    match &config.remote {
        RemoteDistd::Path(p) => {
            let out = run_remote(session, p, &["--version"], None).await?;
            let theirs = out.trim();
            if theirs != ours {
                return Err(RemoteError::OtherVersion {
                    program: p.clone(),
                    theirs: theirs.to_string(),
                    ours,
                });
            }
            Ok(p.clone())
        }
        RemoteDistd::Upload { dir } => upload(session, dir, local_sha.expect("computed for --upload")).await,
    }
}

/// Copies this binary into `dir` on the host, unless a copy with checksum `sha` is there.
async fn upload(session: &Session, dir: &str, sha: &str) -> Result<String, RemoteError> {
    let arch = run_remote(session, "uname", &["-m"], None).await?;
    let arch = arch.trim();
    if arch != std::env::consts::ARCH {
        return Err(RemoteError::OtherArchitecture {
            theirs: arch.to_string(),
            ours: std::env::consts::ARCH,
        });
    }
    let dir = run_remote(
        session,
        "sh",
        &["-c", "mkdir -p \"$1\" && cd \"$1\" && pwd", "sh", dir],
        None,
    )
    .await?;
    let path = format!("{}/distd-{}-{}", dir.trim(), crate::protocol::DISTD_VERSION, &sha[..16]);
    let remote_sha = |out: &str| out.split_whitespace().next().unwrap_or("").to_string();
    if let Ok(out) = run_remote(session, "sha256sum", &[&path], None).await {
        if remote_sha(&out) == sha {
            return Ok(path);
        }
    }
    let exe = std::env::current_exe().map_err(RemoteError::OwnBinary)?;
    let bytes = blocking::unblock(move || std::fs::read(exe))
        .await
        .map_err(RemoteError::OwnBinary)?;
    let script = "t=\"$1.tmp.$$\" && cat > \"$t\" && chmod 755 \"$t\" && mv \"$t\" \"$1\"";
    run_remote(session, "sh", &["-c", script, "sh", &path], Some(&bytes)).await?;
    let out = run_remote(session, "sha256sum", &[&path], None).await?;
    if remote_sha(&out) != sha {
        return Err(RemoteError::Checksum { path });
    }
    Ok(path)
}

fn sha256_of_self() -> Result<String, SshError> {
    use sha2::Digest;
    let exe = std::env::current_exe().map_err(SshError::OwnExecutable)?;
    let bytes = std::fs::read(exe).map_err(SshError::OwnExecutable)?;
    Ok(sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Where a remote process's output goes: our stdout/stderr with a `[host]` prefix, and a
/// log file when asked.
#[derive(Clone)]
struct Output {
    prefix: String,
    file: Option<Arc<Mutex<std::fs::File>>>,
}

impl Output {
    fn new(config: &SshConfig, host: &HostSpec, role: &str) -> Result<Output, SshError> {
        let file = match &config.log_directory {
            None => None,
            Some(d) => {
                let path = d.join(format!("{}-{role}.log", host.host.replace([':', '/'], "_")));
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| SshError::Log {
                        path: path.display().to_string(),
                        source,
                    })?;
                Some(Arc::new(Mutex::new(f)))
            }
        };
        Ok(Output {
            prefix: format!("[{}]", host.host),
            file,
        })
    }

    fn line(&self, stdout: bool, line: &str) {
        if stdout {
            println!("{} {line}", self.prefix);
        } else {
            eprintln!("{} {line}", self.prefix);
        }
        if let Some(f) = &self.file {
            let _ = writeln!(f.lock().expect("log lock"), "{line}");
        }
    }
}

/// A remote distd process: its stdin is held open until we want it to stop.
struct RemoteProc {
    /// Dropping it closes the remote stdin, which stops the process.
    stdin: Option<openssh::ChildStdin>,
    done: Task<RemoteExit>,
}

/// Starts `program args...` on the host with its output forwarded; `first_line` receives
/// the first stdout line (the scheduler announces its address that way).
async fn spawn_remote(
    session: Arc<Session>,
    program: String,
    args: Vec<String>,
    out: Output,
    first_line: Option<async_channel::Sender<String>>,
    handoff: Option<Arc<Vec<u8>>>,
) -> Result<RemoteProc, RemoteError> {
    let mut child = Compat::new(async {
        let mut cmd = Session::to_command(session, "env");
        cmd.arg(format!("{}=1", crate::sys::WATCH_STDIN_ENV));
        if handoff.is_some() {
            // The name of the variable only: the credential itself follows on stdin.
            cmd.arg(format!("{}=1", crate::protocol::access::STDIN_ENV));
        }
        cmd.arg(&program).args(&args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().await
    })
    .await
    .map_err(RemoteError::Ssh)?;
    let mut stdin = child.stdin().take();
    if let (Some(bytes), Some(s)) = (&handoff, stdin.take()) {
        let mut s = Compat::new(s);
        s.write_all(bytes).await.map_err(RemoteError::Send)?;
        s.flush().await.map_err(RemoteError::Send)?;
        stdin = Some(s.into_inner());
    }
    let stdout = child.stdout().take().expect("stdout was piped");
    let stderr = child.stderr().take().expect("stderr was piped");
    let o = out.clone();
    let forward_out = async move {
        let mut lines = futures_lite::io::BufReader::new(Compat::new(stdout)).lines();
        let mut first = first_line;
        while let Some(Ok(line)) = lines.next().await {
            if let Some(tx) = first.take() {
                let _ = tx.try_send(line.clone());
            }
            o.line(true, &line);
        }
    };
    let o = out.clone();
    let forward_err = async move {
        let mut lines = futures_lite::io::BufReader::new(Compat::new(stderr)).lines();
        while let Some(Ok(line)) = lines.next().await {
            o.line(false, &line);
        }
    };
    let done = crate::rt::spawn(async move {
        futures_lite::future::zip(forward_out, forward_err).await;
        match Compat::new(child.wait()).await {
            Ok(st) => RemoteExit::Exited(st),
            Err(e) => RemoteExit::Lost(RemoteError::Ssh(e)),
        }
    });
    Ok(RemoteProc { stdin, done })
}

/// Runs the cluster until SIGINT/SIGTERM; returns once every remote process has stopped.
pub fn run_ssh(config: SshConfig) -> Result<(), SshError> {
    let mut signals = async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
        .map_err(SshError::Signals)?;
    let local_sha = match config.remote {
        RemoteDistd::Upload { .. } => Some(sha256_of_self()?),
        RemoteDistd::Path(_) => None,
    };
    if let Some(d) = &config.log_directory {
        std::fs::create_dir_all(d).map_err(|source| SshError::Log {
            path: d.display().to_string(),
            source,
        })?;
    }
    let credential = crate::protocol::security::ClusterSecurity::from_keyring()
        .resolve()
        .map_err(SshError::Credential)?;
    let handoff = credential
        .as_deref()
        .map(|c| Arc::new(crate::protocol::access::handoff(c)));
    let _published = match &credential {
        Some(c) => Some(crate::cli::publish_access(c).map_err(SshError::Access)?),
        None => None,
    };
    let insecure = credential.is_none();
    let mut config = config;
    config.handoff = handoff.clone();
    // Shared by every host's tasks: the host list alone may hold tens of thousands of names.
    let config = Arc::new(config);
    crate::rt::block_on(async {
        let ready = connect_all(&config, local_sha).await?;
        let worker_hosts: Vec<HostSpec> = config.hosts.iter().filter(|h| ready.contains_key(h)).cloned().collect();
        if worker_hosts.is_empty() {
            return Err(SshError::NoHosts);
        }
        let (mut scheduler, address) =
            start_scheduler(&config, &ready[&config.scheduler], handoff.clone(), insecure).await?;

        // Workers, each host supervised: a dropped connection is retried with backoff.
        let (stop_tx, stop_rx) = async_channel::unbounded::<()>();
        let mut supervisors = Vec::new();
        for h in &worker_hosts {
            let (session, program) = ready[h].clone();
            let out = Output::new(&config, h, "worker")?;
            let mut args = vec!["worker".to_string(), address.clone()];
            if insecure {
                args.push("--no-security".into());
            }
            args.extend(config.worker_args.iter().cloned());
            supervisors.push(crate::rt::spawn(supervise_host(
                config.clone(),
                h.clone(),
                session,
                program,
                args,
                out,
                stop_rx.clone(),
            )));
        }

        let want = worker_hosts.len() * config.nworkers;
        let scheduler_ended = futures_lite::future::or(
            async {
                summarize(&address, want, worker_hosts.len()).await;
                futures_lite::future::pending::<Option<RemoteExit>>().await
            },
            futures_lite::future::or(
                async {
                    signals.next().await;
                    None
                },
                async { Some((&mut scheduler.done).await) },
            ),
        )
        .await;

        // Stop: close every remote stdin, so each remote distd stops gracefully.
        eprintln!("distd ssh: stopping the cluster");
        drop(stop_tx);
        for s in supervisors {
            s.await;
        }
        let RemoteProc { stdin, done } = scheduler;
        close_stdin(stdin).await;
        if scheduler_ended.is_none() {
            let _ = crate::rt::within(Duration::from_secs(15), done).await;
        }
        for (_, (session, _)) in ready {
            if let Ok(s) = Arc::try_unwrap(session) {
                let _ = Compat::new(s.close()).await;
            }
        }
        match scheduler_ended {
            None => Ok(()),
            Some(how) => Err(SshError::SchedulerStart {
                host: config.scheduler.to_string(),
                reason: SchedulerStartError::Ended(how),
            }),
        }
    })
}

/// Connects to every host at once and prepares our distd there. A host that does not
/// answer is skipped (unless it is the scheduler's); one that cannot run our distd stops
/// everything before anything starts: one software environment across the cluster.
async fn connect_all(config: &Arc<SshConfig>, local_sha: Option<String>) -> Result<HashMap<HostSpec, Ready>, SshError> {
    let mut all = config.hosts.clone();
    if !all.contains(&config.scheduler) {
        all.insert(0, config.scheduler.clone());
    }
    let attempts: Vec<(HostSpec, Task<Result<Ready, HostFailure>>)> = all
        .iter()
        .map(|h| {
            let (c, h2, sha) = (config.clone(), h.clone(), local_sha.clone());
            (
                h.clone(),
                crate::rt::spawn(async move {
                    let s = c.connect(&h2).await.map_err(HostFailure::Unreachable)?;
                    let program = prepare_remote(&c, &s, sha.as_deref())
                        .await
                        .map_err(HostFailure::Unfit)?;
                    Ok((s, program))
                }),
            )
        })
        .collect();
    let mut ready = HashMap::new();
    for (h, t) in attempts {
        match t.await {
            Ok(x) => {
                ready.insert(h, x);
            }
            Err(HostFailure::Unfit(reason)) => {
                return Err(SshError::Unfit {
                    host: h.to_string(),
                    reason,
                })
            }
            Err(HostFailure::Unreachable(reason)) if h == config.scheduler => {
                return Err(SshError::SchedulerHost {
                    host: h.to_string(),
                    reason,
                })
            }
            Err(HostFailure::Unreachable(reason)) => {
                eprintln!("distd ssh: [{}] unreachable, skipped: {reason}", h.host)
            }
        }
    }
    Ok(ready)
}

/// Starts the scheduler on its host and learns its address from its first stdout line.
async fn start_scheduler(
    config: &SshConfig,
    (session, program): &Ready,
    handoff: Option<Arc<Vec<u8>>>,
    insecure: bool,
) -> Result<(RemoteProc, String), SshError> {
    let failed = |reason| SshError::SchedulerStart {
        host: config.scheduler.to_string(),
        reason,
    };
    let (tx, rx) = async_channel::bounded(1);
    let sched_out = Output::new(config, &config.scheduler, "scheduler")?;
    let mut args: Vec<String> = vec![
        "scheduler".into(),
        "--host".into(),
        crate::cli::SCHEDULER_HOST.into(),
        "--port".into(),
        config.scheduler_port.to_string(),
    ];
    if insecure {
        args.push("--no-security".into());
    }
    let scheduler = spawn_remote(session.clone(), program.clone(), args, sched_out, Some(tx), handoff)
        .await
        .map_err(|e| failed(SchedulerStartError::Spawn(e)))?;
    let first = crate::rt::within(ANNOUNCE_PATIENCE, rx.recv())
        .await
        .and_then(Result::ok);
    let port = first
        .as_deref()
        .and_then(|l| l.strip_prefix("scheduler at tcp://"))
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| {
            failed(match &first {
                Some(l) => SchedulerStartError::UnexpectedLine(l.clone()),
                None => SchedulerStartError::Silent,
            })
        })?;
    let sched_host = if config.scheduler.host.contains(':') {
        format!("[{}]", config.scheduler.host)
    } else {
        config.scheduler.host.clone()
    };
    Ok((scheduler, format!("{sched_host}:{port}")))
}

/// One summary line once every worker has registered (or a warning once they did not).
async fn summarize(address: &str, want: usize, hosts: usize) {
    let Ok(client) = AsyncClient::connect(address).await else {
        eprintln!("distd ssh: cannot reach the scheduler at {address} from here to count workers");
        return;
    };
    match client.wait_for_workers(want, REGISTER_PATIENCE).await {
        Ok(have) if have >= want => {
            println!(
                "distd ssh: scheduler at tcp://{address}, {} on {}",
                crate::units::plural(have as u64, "worker"),
                crate::units::plural(hosts as u64, "host")
            );
            let _ = std::io::stdout().flush();
        }
        _ => eprintln!(
            "distd ssh: not every worker registered within {} s",
            REGISTER_PATIENCE.as_secs()
        ),
    }
}

async fn close_stdin(stdin: Option<openssh::ChildStdin>) {
    if let Some(s) = stdin {
        let _ = Compat::new(s).close().await;
    }
}

/// Keeps `distd worker` running on one host until `stop` closes; restarts it with backoff
/// when it ends (a dropped connection), reconnecting the session first.
async fn supervise_host(
    config: Arc<SshConfig>,
    host: HostSpec,
    mut session: Arc<Session>,
    program: String,
    args: Vec<String>,
    out: Output,
    stop: async_channel::Receiver<()>,
) {
    let handoff = config.handoff.clone();
    let mut backoff = Duration::from_millis(500);
    loop {
        let proc = match spawn_remote(
            session.clone(),
            program.clone(),
            args.clone(),
            out.clone(),
            None,
            handoff.clone(),
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("distd ssh: [{}] cannot start the worker: {e}", host.host);
                if wait_or_stop(&stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                if let Ok(s) = config.connect(&host).await {
                    session = s;
                }
                continue;
            }
        };
        let RemoteProc { stdin, done } = proc;
        let started = Instant::now();
        let stopped = futures_lite::future::or(
            async {
                let _ = stop.recv().await;
                true
            },
            async {
                let how = done.await;
                eprintln!("distd ssh: [{}] worker {how}", host.host);
                false
            },
        )
        .await;
        if stopped {
            close_stdin(stdin).await;
            // The remote nanny stops its workers; give it its grace period.
            async_io::Timer::after(Duration::from_millis(200)).await;
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(500);
        }
        eprintln!(
            "distd ssh: [{}] restarting the worker in {:.1} s",
            host.host,
            backoff.as_secs_f64()
        );
        if wait_or_stop(&stop, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
        if Compat::new(session.check()).await.is_err() {
            match config.connect(&host).await {
                Ok(s) => session = s,
                Err(e) => eprintln!("distd ssh: [{}] reconnect failed: {e}", host.host),
            }
        }
    }
}

/// Sleeps `d`; true if `stop` closed meanwhile.
async fn wait_or_stop(stop: &async_channel::Receiver<()>, d: Duration) -> bool {
    futures_lite::future::or(
        async {
            let _ = stop.recv().await;
            true
        },
        async {
            async_io::Timer::after(d).await;
            false
        },
    )
    .await
}
