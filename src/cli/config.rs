//! Turns parsed arguments into validated configs: durations and sizes parsed, addresses
//! checked and resolved, files read. Every subcommand's flags are checked here, before any
//! socket opens; nothing here opens one. Every error names the flag or file that was wrong.

use super::args::{LocalArgs, RunArgs, SchedulerArgs, SubmitArgs, TargetArgs, WorkerArgs};
use crate::client::strip_scheme;
use crate::local::{default_local_dir, LocalClusterConfig};
use crate::protocol::CommandSpec;
use crate::scheduler::{CoreConfig, SchedulerConfig};
use crate::units::{parse_duration, UnitError};

use super::sizing::memory_limit;
pub use super::sizing::{parse_memory_limit, NWorkers};
use crate::worker::{Registry, WorkerConfig};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::protocol::net::DEFAULT_PORT;

/// Defaults of the flags whose config types have no `Default` of their own: the clap
/// structs show these, and the configs built here use them. (The others come from
/// `CoreConfig::default()`, `nanny::Policy::default()` and `local`'s constants.)
pub mod defaults {
    use std::time::Duration;

    /// `--death-timeout`: how long a worker keeps trying an unreachable scheduler.
    pub const DEATH_TIMEOUT: Duration = Duration::from_secs(60);
    /// `--memory-limit`: the machine's memory shared by the cores a worker's threads use.
    pub const MEMORY_LIMIT: &str = "auto";
    /// `--nworkers`: worker processes per nanny (per host for `distd ssh`).
    pub const NWORKERS: usize = 1;
    /// The smallest `--memory-limit` (but 0, no limit): a worker rests at about 14 MiB, and
    /// pauses new work at 80% of its limit, so below this it could never run a task.
    pub const MIN_MEMORY_LIMIT: u64 = 32 << 20;
    /// `distd scheduler --host`: every interface.
    pub const SCHEDULER_HOST: &str = "0.0.0.0";
    /// `distd ssh --nthreads`: 0 means the remote cores divided by `--nworkers`.
    pub const SSH_NTHREADS: usize = 0;
    /// `distd ssh --remote-distd`: the distd on the remote `PATH`.
    pub const SSH_REMOTE_DISTD: &str = "distd";
    /// `distd ssh --remote-dir`: where `--upload` puts distd, relative to the remote home.
    pub const SSH_REMOTE_DIR: &str = ".cache/distd";
}

/// A bad flag, file or value, reported as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Flags that do not go together, or that cannot make sense here: a usage error, as
    /// clap's own (`exit::USAGE`).
    #[error("{flag} {reason}")]
    Usage { flag: &'static str, reason: String },
    #[error("invalid value for {flag}: {source}")]
    Unit { flag: &'static str, source: UnitError },
    #[error("invalid value for {flag}: {reason}")]
    Value { flag: &'static str, reason: String },
    #[error("invalid value for {flag}: {source}")]
    Hosts {
        flag: &'static str,
        source: crate::ssh::pattern::PatternError,
    },
    #[error("invalid value for {flag}: cannot read {path}: {source}")]
    ReadFile {
        flag: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read scheduler file {path}: {problem}")]
    SchedulerFile {
        path: String,
        problem: SchedulerFileProblem,
    },
}

/// What is wrong with a scheduler file.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerFileProblem {
    #[error("{0}")]
    Read(#[source] std::io::Error),
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("no \"address\" field")]
    NoAddress,
}

fn duration(flag: &'static str, s: &str) -> Result<Duration, ConfigError> {
    parse_duration(s).map_err(|source| ConfigError::Unit { flag, source })
}

/// Checks an address `tcp://host:port`, `host:port`, `[v6]:port` or `host` and returns
/// `host:port` (the port defaulting to `default_port`). It is not resolved here, so that a
/// name is looked up again on every connection attempt.
pub fn parse_address(flag: &'static str, s: &str, default_port: u16) -> Result<String, ConfigError> {
    let bad = |reason: String| ConfigError::Value { flag, reason };
    if let Some((scheme, _)) = s.split_once("://") {
        if scheme != "tcp" {
            return Err(bad(format!("{s:?}: only tcp:// addresses are supported")));
        }
    }
    let rest = strip_scheme(s).trim_end_matches('/');
    if rest.is_empty() {
        return Err(bad("empty address".into()));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad(format!("{s:?}: unclosed '[' in an IPv6 address")))?;
        match after.strip_prefix(':') {
            Some(p) => (format!("[{h}]"), Some(p)),
            None if after.is_empty() => (format!("[{h}]"), None),
            None => return Err(bad(format!("{s:?}: unexpected {after:?} after the IPv6 address"))),
        }
    } else if rest.matches(':').count() > 1 {
        (format!("[{rest}]"), None)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(bad(format!("{s:?}: bad host name")));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            // Port 0 (any free port) only where the address is one to listen on.
            Ok(n) if n > 0 || default_port == 0 => n,
            _ => return Err(bad(format!("{s:?}: port {p:?} is not a number from 1 to 65535"))),
        },
    };
    Ok(format!("{host}:{port}"))
}

/// Resolves `host:port` now (for addresses this process binds).
pub fn resolve(flag: &'static str, addr: &str) -> Result<SocketAddr, ConfigError> {
    addr.to_socket_addrs()
        .map_err(|e| ConfigError::Value {
            flag,
            reason: format!("cannot resolve {addr:?}: {e}"),
        })?
        .next()
        .ok_or_else(|| ConfigError::Value {
            flag,
            reason: format!("{addr:?} resolves to no address"),
        })
}

/// `"GPU=2 MEM=8e9"` (spaces or commas between) into named amounts.
pub fn parse_resources(flag: &'static str, s: &str) -> Result<Vec<(String, f64)>, ConfigError> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for item in s
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|x| !x.is_empty())
    {
        let bad = |why: &str| ConfigError::Value {
            flag,
            reason: format!("{item:?}: {why}; expected NAME=AMOUNT, e.g. \"GPU=2 MEM=8e9\""),
        };
        let (name, amount) = item.split_once('=').ok_or_else(|| bad("no '='"))?;
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        let amount: f64 = amount.parse().map_err(|_| bad("amount is not a number"))?;
        if !amount.is_finite() || amount < 0.0 {
            return Err(bad("amount must be a finite number >= 0"));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad("named twice"));
        }
        out.push((name.to_string(), amount));
    }
    Ok(out)
}

/// What `distd scheduler` runs with.
pub struct SchedulerSetup {
    pub config: SchedulerConfig,
    pub scheduler_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
}

pub fn scheduler(args: &SchedulerArgs) -> Result<SchedulerSetup, ConfigError> {
    let host = parse_address("--host", &args.host, args.port)?;
    let listen = resolve("--host", &host)?;
    let listen = SocketAddr::new(listen.ip(), args.port);
    let idle_timeout = args
        .idle_timeout
        .as_deref()
        .map(|s| duration("--idle-timeout", s))
        .transpose()?;
    let heartbeat_timeout = duration("--heartbeat-timeout", &args.heartbeat_timeout)?;
    if heartbeat_timeout < Duration::from_millis(500) {
        return Err(ConfigError::Value {
            flag: "--heartbeat-timeout",
            reason: "must be at least 500ms".into(),
        });
    }
    Ok(SchedulerSetup {
        config: SchedulerConfig {
            listen,
            core: CoreConfig {
                allowed_failures: args.allowed_failures,
                heartbeat_timeout,
                // Five heartbeats fit in the timeout, never fewer than the default's rate.
                heartbeat_interval: (heartbeat_timeout / 5).min(CoreConfig::default().heartbeat_interval),
                queue_per_thread: args.worker_queue,
                idle_timeout,
                ..CoreConfig::default()
            },
            // Made by the command once the flags are checked (`ClusterSecurity`).
            credential: None,
        },
        scheduler_file: args.scheduler_file.clone(),
        pid_file: args.pid_file.clone(),
    })
}

/// `distd ssh`'s hosts expanded and its flags checked.
pub fn ssh(args: &super::args::SshArgs) -> Result<crate::ssh::SshConfig, ConfigError> {
    use crate::ssh::pattern::{expand_all, expand_pattern, parse_hostfile, DEFAULT_HOST_CAP};
    let bad = |flag: &'static str, reason: String| ConfigError::Value { flag, reason };
    let hosts = |flag: &'static str, source| ConfigError::Hosts { flag, source };
    let mut expansion =
        expand_all(args.hosts.iter().map(|s| s.as_str()), DEFAULT_HOST_CAP).map_err(|source| hosts("HOST", source))?;
    if let Some(f) = &args.hostfile {
        let text = std::fs::read_to_string(f).map_err(|source| ConfigError::ReadFile {
            flag: "--hostfile",
            path: f.display().to_string(),
            source,
        })?;
        let more = parse_hostfile(
            &text,
            &f.display().to_string(),
            DEFAULT_HOST_CAP - expansion.hosts.len(),
        )
        .map_err(|source| hosts("--hostfile", source))?;
        for h in more.hosts {
            if expansion.hosts.contains(&h) {
                expansion.duplicates.push(h);
            } else {
                expansion.hosts.push(h);
            }
        }
        expansion.duplicates.extend(more.duplicates);
    }
    for d in &expansion.duplicates {
        log::warn!("host {d} is listed more than once; using it once");
    }
    if expansion.hosts.is_empty() {
        return Err(bad("HOST", "no hosts given".into()));
    }
    let scheduler = match &args.scheduler {
        None => expansion.hosts[0].clone(),
        Some(s) => {
            let mut v = expand_pattern(s).map_err(|source| hosts("--scheduler", source))?;
            if v.len() != 1 {
                return Err(bad(
                    "--scheduler",
                    format!("{s:?} names {}, not one", crate::units::plural(v.len() as u64, "host")),
                ));
            }
            v.remove(0)
        }
    };
    let nworkers = match args.nworkers {
        NWorkers::Count(0) => return Err(bad("--nworkers", "must be at least 1".into())),
        NWorkers::Count(n) => n,
        other => {
            return Err(bad(
                "--nworkers",
                format!(
                "{other} needs each host's cores, unknown before its workers start: give a number of workers per host"
            ),
            ))
        }
    };
    // Checked here so a typo fails before any connection; the remote side resolves `auto` and
    // fractions against its own memory.
    memory_limit("--memory-limit", &args.memory_limit)?;
    let mut worker_args = vec![
        "--nworkers".to_string(),
        nworkers.to_string(),
        "--nthreads".into(),
        args.nthreads.to_string(),
        "--memory-limit".into(),
        args.memory_limit.clone(),
    ];
    if let Some(d) = &args.local_directory {
        worker_args.push("--local-directory".into());
        worker_args.push(d.clone());
    }
    Ok(crate::ssh::SshConfig {
        hosts: expansion.hosts,
        scheduler,
        scheduler_port: args.scheduler_port,
        worker_args,
        nworkers,
        ssh_user: args.ssh_username.clone(),
        ssh_port: args.ssh_port,
        ssh_key: args.ssh_private_key.clone(),
        ssh_config: args.ssh_config.clone(),
        remote: if args.upload {
            crate::ssh::RemoteDistd::Upload {
                dir: args.remote_dir.clone(),
            }
        } else {
            crate::ssh::RemoteDistd::Path(args.remote_distd.clone())
        },
        log_directory: args.log_directory.clone(),
        connect_timeout: duration("--connect-timeout", &args.connect_timeout)?,
        handoff: None,
    })
}

/// The scheduler address a command names: ADDR, or the one in its `--scheduler-file`.
pub fn target(t: &TargetArgs) -> Result<String, ConfigError> {
    named_scheduler("ADDR", t.address.as_deref(), t.scheduler_file.as_deref())?.ok_or_else(|| ConfigError::Value {
        flag: "ADDR",
        reason: "give a scheduler address or --scheduler-file".into(),
    })
}

/// The scheduler named by an address flag (`flag`) or a scheduler file, if either is given.
fn named_scheduler(
    flag: &'static str,
    address: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    match (address, file) {
        (Some(a), _) => parse_address(flag, a, DEFAULT_PORT).map(Some),
        (None, Some(f)) => read_scheduler_file(f).map(Some),
        (None, None) => Ok(None),
    }
}

/// Reads the address from a scheduler file.
pub fn read_scheduler_file(path: &Path) -> Result<String, ConfigError> {
    let fail = |problem| ConfigError::SchedulerFile {
        path: path.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(SchedulerFileProblem::Read(e)))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(SchedulerFileProblem::Json(e)))?;
    let addr = v
        .get("address")
        .and_then(|a| a.as_str())
        .ok_or_else(|| fail(SchedulerFileProblem::NoAddress))?;
    parse_address("--scheduler-file", addr, DEFAULT_PORT)
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// `base` moved by a random amount within `stagger` either way, so workers started together
/// do not all retire together.
fn staggered(base: Duration, stagger: Duration) -> Duration {
    if stagger.is_zero() {
        return base;
    }
    let unit = (crate::sys::random_u64() % 2_000_001) as f64 / 1_000_000.0 - 1.0;
    let shifted = base.as_secs_f64() + unit * stagger.as_secs_f64();
    Duration::from_secs_f64(shifted.max(0.001))
}

/// What `distd worker` and `distd nanny` run with.
#[derive(Clone, Debug)]
pub struct WorkerSetup {
    /// The config of each worker (names get a `-i` suffix when there are several).
    pub worker: WorkerConfig,
    pub nworkers: usize,
    pub no_nanny: bool,
    pub shutdown_timeout: Duration,
    pub crash_limit: usize,
    /// A retired worker exits with `EXIT_RETIRED`, so its nanny starts a new one.
    pub lifetime_restart: bool,
    /// `--lifetime` and `--lifetime-stagger` as given, for the nanny's children to draw
    /// their own staggered lifetimes.
    pub lifetime_flags: Vec<String>,
}

impl WorkerSetup {
    /// The nanny that runs these workers as children of `exe`.
    pub fn nanny(&self, exe: PathBuf) -> crate::nanny::NannyConfig {
        let w = &self.worker;
        let mut args: Vec<std::ffi::OsString> = vec![
            "--nthreads".into(),
            w.nthreads.to_string().into(),
            "--memory-limit".into(),
            w.memory_limit.to_string().into(),
            "--death-timeout".into(),
            format!("{}ms", w.death_timeout.as_millis()).into(),
            "--local-directory".into(),
            w.local_dir.clone().into_os_string(),
        ];
        if !w.resources.is_empty() {
            let spec: Vec<String> = w.resources.iter().map(|(k, v)| format!("{k}={v}")).collect();
            args.push("--resources".into());
            args.push(spec.join(" ").into());
        }
        if let Some(l) = w.listen {
            args.push("--listen-address".into());
            args.push(l.to_string().into());
        }
        if let Some(c) = &w.contact_address {
            args.push("--contact-address".into());
            args.push(c.into());
        }
        args.extend(self.lifetime_flags.iter().map(Into::into));
        if self.lifetime_restart {
            args.push("--lifetime-restart".into());
        }
        if w.drain {
            args.push("--drain".into());
        }
        crate::nanny::NannyConfig {
            scheduler: w.scheduler.clone(),
            name: w
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", crate::sys::hostname(), std::process::id())),
            nworkers: self.nworkers,
            exe,
            credential: crate::protocol::security::keyring::given(),
            worker_args: args,
            policy: crate::nanny::Policy {
                shutdown_timeout: self.shutdown_timeout,
                crash_limit: self.crash_limit,
                memory: crate::memory::MemoryPolicy::new(w.memory_limit),
                ..crate::nanny::Policy::default()
            },
            death_timeout: w.death_timeout,
            worker_stdout_to_stderr: false,
            local_dir: w.local_dir.clone(),
        }
    }
}

/// `--lifetime`, moved by up to `--lifetime-stagger` either way.
fn lifetime(args: &WorkerArgs) -> Result<Option<Duration>, ConfigError> {
    let Some(l) = &args.lifetime else {
        return Ok(None);
    };
    let base = duration("--lifetime", l)?;
    let stagger = args
        .lifetime_stagger
        .as_deref()
        .map(|s| duration("--lifetime-stagger", s))
        .transpose()?
        .unwrap_or_default();
    Ok(Some(staggered(base, stagger)))
}

/// What `distd nanny` runs with: `distd worker`'s, but a nanny always supervises.
pub fn nanny(args: &WorkerArgs) -> Result<WorkerSetup, ConfigError> {
    if args.no_nanny {
        return Err(ConfigError::Usage {
            flag: "--no-nanny",
            reason: "does not apply to `distd nanny`, which always runs its workers as its children; \
                     `distd worker --no-nanny` runs a worker without a nanny"
                .into(),
        });
    }
    worker(args)
}

/// `--nworkers` and `--nthreads` of `distd worker` on this machine: (workers, threads each).
fn worker_counts(args: &WorkerArgs) -> Result<(usize, usize), ConfigError> {
    let cores = default_threads();
    let (nworkers, auto_threads) = args.nworkers.resolve(cores);
    if nworkers == 0 {
        return Err(ConfigError::Value {
            flag: "--nworkers",
            reason: "must be at least 1".into(),
        });
    }
    let nthreads = match (args.nthreads, auto_threads) {
        (Some(n), Some(_)) if n > 0 => {
            return Err(ConfigError::Usage {
                flag: "--nthreads",
                reason: "cannot be given with --nworkers auto, which chooses the threads of each worker too".into(),
            })
        }
        (_, Some(t)) => t,
        (Some(0) | None, None) => (cores / nworkers).max(1),
        (Some(n), None) => n,
    };
    Ok((nworkers, nthreads))
}

pub fn worker(args: &WorkerArgs) -> Result<WorkerSetup, ConfigError> {
    let (nworkers, nthreads) = worker_counts(args)?;
    if args.crash_limit == 0 {
        return Err(ConfigError::Value {
            flag: "--crash-limit",
            reason: "must be at least 1".into(),
        });
    }
    let scheduler = target(&args.target)?;
    let listen = args
        .listen_address
        .as_deref()
        .map(|a| parse_address("--listen-address", a, 0).and_then(|a| resolve("--listen-address", &a)))
        .transpose()?;
    let contact_address = args
        .contact_address
        .as_deref()
        .map(|a| parse_address("--contact-address", a, 0))
        .transpose()?;
    if nworkers > 1 {
        if contact_address.is_some() {
            return Err(ConfigError::Value {
                flag: "--contact-address",
                reason: "cannot be shared by several workers (--nworkers)".into(),
            });
        }
        if listen.is_some_and(|l| l.port() != 0) {
            return Err(ConfigError::Value {
                flag: "--listen-address",
                reason: "several workers (--nworkers) cannot share one port; use port 0".into(),
            });
        }
    }
    if let Some(c) = &contact_address {
        if c.ends_with(":0") {
            return Err(ConfigError::Value {
                flag: "--contact-address",
                reason: format!("{c:?} needs a port"),
            });
        }
    }
    let worker = WorkerConfig {
        scheduler,
        nthreads,
        name: args.name.clone(),
        resources: args
            .resources
            .as_deref()
            .map(|r| parse_resources("--resources", r))
            .transpose()?
            .unwrap_or_default(),
        local_dir: args.local_directory.clone().unwrap_or_else(default_local_dir),
        listen,
        contact_address,
        death_timeout: duration("--death-timeout", &args.death_timeout)?,
        memory_limit: parse_memory_limit("--memory-limit", &args.memory_limit, nthreads)?,
        lifetime: lifetime(args)?,
        drain: args.drain,
    };
    Ok(WorkerSetup {
        worker,
        nworkers,
        no_nanny: args.no_nanny,
        shutdown_timeout: duration("--shutdown-timeout", &args.shutdown_timeout)?,
        crash_limit: args.crash_limit,
        lifetime_restart: args.lifetime_restart,
        lifetime_flags: [
            ("--lifetime", &args.lifetime),
            ("--lifetime-stagger", &args.lifetime_stagger),
        ]
        .into_iter()
        .filter_map(|(flag, v)| v.as_ref().map(|v| [flag.to_string(), v.clone()]))
        .flatten()
        .collect(),
    })
}

/// What `distd local` runs.
pub struct LocalSetup {
    pub cluster: LocalClusterConfig,
    /// With `--processes`: the workers run as children of a nanny, set up so.
    pub processes: Option<LocalWorkers>,
    /// `--run GRAPH`: run it, then exit (else serve until interrupted).
    pub run: Option<PathBuf>,
    pub progress: bool,
    /// With `--run`: wait for workers that can run what none connected can.
    pub wait_for_workers: bool,
}

/// The workers of `distd local --processes`: one nanny with a child per worker.
pub struct LocalWorkers {
    /// Everything but the scheduler's address, known once the scheduler listens.
    setup: WorkerSetup,
}

impl LocalWorkers {
    /// The nanny for a scheduler at `scheduler`, running `exe` as its workers. Their
    /// stdout goes to our stderr: our stdout carries the results of `--run`.
    pub fn nanny(&self, scheduler: String, exe: PathBuf) -> crate::nanny::NannyConfig {
        let mut setup = self.setup.clone();
        setup.worker.scheduler = scheduler;
        let mut nanny = setup.nanny(exe);
        nanny.worker_stdout_to_stderr = true;
        nanny
    }
}

/// A local cluster of `nworkers` (default: one per core) with `threads_per_worker` each
/// (default: [`crate::local::DEFAULT_THREADS_PER_WORKER`], or what `-n auto` chose).
fn local_cluster(
    nworkers: Option<NWorkers>,
    threads_per_worker: Option<usize>,
    listen: SocketAddr,
    local_dir: Option<PathBuf>,
    registry: Registry,
) -> Result<LocalClusterConfig, ConfigError> {
    let (workers, auto_threads) = nworkers.unwrap_or(NWorkers::PerCore).resolve(default_threads());
    let threads_per_worker = match (threads_per_worker, auto_threads) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Usage {
                flag: "--threads-per-worker",
                reason: "cannot be given with -n auto, which chooses the threads of each worker too".into(),
            })
        }
        (Some(0), None) => {
            return Err(ConfigError::Value {
                flag: "--threads-per-worker",
                reason: "must be at least 1".into(),
            })
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => crate::local::DEFAULT_THREADS_PER_WORKER,
    };
    Ok(LocalClusterConfig {
        workers,
        threads_per_worker,
        listen,
        local_dir: local_dir.unwrap_or_else(default_local_dir),
        registry,
        security: crate::protocol::security::ClusterSecurity::from_keyring(),
    })
}

/// A local cluster started to run a graph must have a worker: refused before anything starts
/// (the run would wait for ever). `elsewhere` says what else the user could do.
fn refuse_no_workers(cluster: &LocalClusterConfig, elsewhere: &str) -> Result<(), ConfigError> {
    if cluster.workers > 0 {
        return Ok(());
    }
    Err(ConfigError::Usage {
        flag: "--nworkers",
        reason: format!("0 starts no worker, so the graph could never run; give -n 1 or more{elsewhere}"),
    })
}

pub fn local(args: &LocalArgs, registry: Registry) -> Result<LocalSetup, ConfigError> {
    let host = parse_address("--host", &args.host, args.port)?;
    let listen = resolve("--host", &host)?;
    let listen = SocketAddr::new(listen.ip(), args.port);
    let cluster = local_cluster(
        args.nworkers,
        args.threads_per_worker,
        listen,
        args.local_directory.clone(),
        registry,
    )?;
    // Without --run, other workers may join the cluster: no worker of its own is fine.
    if args.run.is_some() {
        refuse_no_workers(&cluster, "")?;
    }
    let policy = crate::nanny::Policy::default();
    let processes = args.processes.then(|| LocalWorkers {
        setup: WorkerSetup {
            worker: WorkerConfig {
                scheduler: String::new(),
                nthreads: cluster.threads_per_worker,
                name: Some("local".into()),
                resources: Vec::new(),
                local_dir: cluster.local_dir.clone(),
                listen: Some(SocketAddr::new(listen.ip(), 0)),
                contact_address: None,
                death_timeout: crate::local::WORKER_DEATH_TIMEOUT,
                memory_limit: 0,
                lifetime: None,
                drain: false,
            },
            nworkers: cluster.workers,
            no_nanny: false,
            // The defaults of `distd worker`'s flags.
            shutdown_timeout: policy.shutdown_timeout,
            crash_limit: policy.crash_limit,
            lifetime_restart: false,
            lifetime_flags: Vec::new(),
        },
    });
    Ok(LocalSetup {
        cluster,
        processes,
        run: args.run.clone(),
        progress: !args.no_progress,
        wait_for_workers: args.wait_for_workers,
    })
}

/// Where `distd run` runs its graph.
pub enum RunTarget {
    /// `--scheduler ADDR`: a running cluster.
    Scheduler(String),
    /// A local cluster started for the run.
    Local(LocalClusterConfig),
}

/// What `distd run` runs with.
pub struct RunSetup {
    pub graph: PathBuf,
    pub target: RunTarget,
    pub progress: bool,
    /// Wait for workers that can run what none connected can, instead of failing.
    pub wait_for_workers: bool,
}

pub fn run(args: &RunArgs, registry: Registry) -> Result<RunSetup, ConfigError> {
    let target = match named_scheduler("--scheduler", args.scheduler.as_deref(), args.scheduler_file.as_deref())? {
        Some(address) => RunTarget::Scheduler(address),
        None => {
            let cluster = local_cluster(
                args.nworkers,
                args.threads_per_worker,
                crate::local::DEFAULT_LISTEN,
                None,
                registry,
            )?;
            refuse_no_workers(&cluster, ", or --scheduler ADDR to run it on a cluster")?;
            RunTarget::Local(cluster)
        }
    };
    Ok(RunSetup {
        graph: args.graph.clone(),
        target,
        progress: !args.no_progress,
        wait_for_workers: args.wait_for_workers,
    })
}

/// What `distd submit` sends.
pub struct SubmitSetup {
    pub address: String,
    /// The task's key; a unique one when not given.
    pub key: Option<String>,
    pub command: CommandSpec,
}

pub fn submit(args: &SubmitArgs) -> Result<SubmitSetup, ConfigError> {
    let address = target(&args.target)?;
    let timeout_ms = args
        .timeout
        .as_deref()
        .map(|t| duration("--timeout", t).map(|d| d.as_millis() as u64))
        .transpose()?;
    let mut env = Vec::new();
    for e in &args.env {
        let (k, v) = e.split_once('=').ok_or_else(|| ConfigError::Value {
            flag: "--env",
            reason: format!("{e:?} is not NAME=VALUE"),
        })?;
        env.push((k.to_string(), v.to_string()));
    }
    Ok(SubmitSetup {
        address,
        key: args.key.clone(),
        command: CommandSpec {
            argv: args.command.clone(),
            env,
            cwd: args.cwd.clone(),
            timeout_ms,
            ..CommandSpec::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subcommand of `distd ARGS`, parsed by clap.
    fn parse(args: &[&str]) -> super::super::args::Command {
        use clap::Parser;
        super::super::args::Cli::try_parse_from(std::iter::once("distd").chain(args.iter().copied()))
            .expect("the test's command line parses")
            .command
    }

    #[test]
    fn flag_defaults_are_the_config_types_defaults() {
        use super::super::args::Command;
        let Command::Scheduler(a) = parse(&["scheduler"]) else {
            unreachable!()
        };
        let core = scheduler(&a).expect("the defaults are valid").config.core;
        let want = CoreConfig::default();
        assert_eq!(core.allowed_failures, want.allowed_failures);
        assert_eq!(core.heartbeat_timeout, want.heartbeat_timeout);
        assert_eq!(core.heartbeat_interval, want.heartbeat_interval);
        assert_eq!(core.queue_per_thread, want.queue_per_thread);
        assert_eq!(a.port, DEFAULT_PORT);
        let Command::Worker(a) = parse(&["worker", "127.0.0.1:1"]) else {
            unreachable!()
        };
        let setup = worker(&a).expect("the defaults are valid");
        let policy = crate::nanny::Policy::default();
        assert_eq!(setup.crash_limit, policy.crash_limit);
        assert_eq!(setup.shutdown_timeout, policy.shutdown_timeout);
        assert_eq!(setup.worker.death_timeout, defaults::DEATH_TIMEOUT);
        assert_eq!(setup.nworkers, defaults::NWORKERS);
        let Command::Local(a) = parse(&["local"]) else {
            unreachable!()
        };
        let setup = local(&a, Registry::builtin()).expect("the defaults are valid");
        assert_eq!(setup.cluster.listen, crate::local::DEFAULT_LISTEN);
        assert_eq!(
            setup.cluster.threads_per_worker,
            crate::local::DEFAULT_THREADS_PER_WORKER
        );
    }

    /// Pins that `distd local --processes` gives its nanny the defaults of `distd worker`'s
    /// flags (it had literals of its own, equal today, that could drift apart).
    #[test]
    fn local_processes_supervise_with_the_worker_defaults() {
        use super::super::args::Command;
        let Command::Local(a) = parse(&["local", "--processes", "-n", "2"]) else {
            unreachable!()
        };
        let setup = local(&a, Registry::builtin()).expect("valid flags");
        let workers = setup.processes.expect("--processes");
        let nanny = workers.nanny("127.0.0.1:1".into(), "distd".into());
        let Command::Worker(w) = parse(&["worker", "127.0.0.1:1"]) else {
            unreachable!()
        };
        let by_flags = worker(&w).expect("valid flags").nanny("distd".into());
        assert_eq!(nanny.policy.crash_limit, by_flags.policy.crash_limit);
        assert_eq!(nanny.policy.shutdown_timeout, by_flags.policy.shutdown_timeout);
        assert_eq!(nanny.scheduler, "127.0.0.1:1");
        assert_eq!(nanny.nworkers, 2);
        assert!(nanny.worker_stdout_to_stderr, "stdout carries the results of --run");
    }

    #[test]
    fn submit_flags_are_checked_before_connecting() {
        use super::super::args::Command;
        let Command::Submit(a) = parse(&["submit", "h", "--env", "A=1", "--timeout", "2s", "--", "echo", "x"]) else {
            unreachable!()
        };
        let setup = submit(&a).expect("valid flags");
        assert_eq!(setup.address, format!("h:{DEFAULT_PORT}"));
        assert_eq!(setup.command.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(setup.command.timeout_ms, Some(2000));
        let Command::Submit(a) = parse(&["submit", "h", "--env", "A", "--", "true"]) else {
            unreachable!()
        };
        assert!(submit(&a).err().expect("no '='").to_string().contains("--env"));
    }

    #[test]
    fn addresses_accept_the_usual_forms() {
        assert_eq!(parse_address("A", "tcp://h:1", 9).unwrap(), "h:1");
        assert_eq!(parse_address("A", "h", 9).unwrap(), "h:9");
        assert_eq!(parse_address("A", "[::1]:5", 9).unwrap(), "[::1]:5");
        assert_eq!(parse_address("A", "::1", 9).unwrap(), "[::1]:9");
    }

    #[test]
    fn bad_addresses_name_the_flag_and_the_value() {
        let e = parse_address("ADDR", "h:99999", 9).unwrap_err().to_string();
        assert!(e.contains("ADDR") && e.contains("99999"), "{e}");
        let e = parse_address("ADDR", "tls://h:1", 9).unwrap_err().to_string();
        assert!(e.contains("tcp://"), "{e}");
    }

    #[test]
    fn resources_parse_and_reject() {
        assert_eq!(
            parse_resources("R", "GPU=2 MEM=8e9").unwrap(),
            vec![("GPU".into(), 2.0), ("MEM".into(), 8e9)]
        );
        assert!(parse_resources("R", "GPU").unwrap_err().to_string().contains("\"GPU\""));
        assert!(parse_resources("R", "GPU=-1").is_err());
    }

    fn usage_flag(e: ConfigError) -> &'static str {
        match e {
            ConfigError::Usage { flag, .. } => flag,
            other => panic!("not a usage error: {other}"),
        }
    }

    /// `distd nanny --no-nanny` was accepted and ignored.
    #[test]
    fn a_nanny_refuses_no_nanny() {
        use super::super::args::Command;
        let Command::Nanny(a) = parse(&["nanny", "127.0.0.1:1", "--no-nanny"]) else {
            unreachable!()
        };
        assert_eq!(usage_flag(nanny(&a).expect_err("refused")), "--no-nanny");
        let Command::Nanny(a) = parse(&["nanny", "127.0.0.1:1"]) else {
            unreachable!()
        };
        assert!(nanny(&a).is_ok());
    }

    #[test]
    fn worker_counts_follow_dask() {
        use super::super::args::Command;
        let cores = default_threads();
        let setup = |args: &[&str]| {
            let mut all = vec!["worker", "127.0.0.1:1"];
            all.extend_from_slice(args);
            let Command::Worker(a) = parse(&all) else {
                unreachable!()
            };
            worker(&a)
        };
        let s = setup(&["--nworkers", "-1"]).expect("valid");
        assert_eq!((s.nworkers, s.worker.nthreads), (cores, 1));
        let s = setup(&["--nworkers", "auto"]).expect("valid");
        assert_eq!((s.nworkers, s.worker.nthreads), crate::cli::sizing::auto_split(cores));
        let s = setup(&["--nworkers", "auto", "--nthreads", "0"]).expect("0 is the default");
        assert_eq!(s.nworkers, crate::cli::sizing::auto_split(cores).0);
        let e = setup(&["--nworkers", "auto", "--nthreads", "2"]).expect_err("refused");
        assert_eq!(usage_flag(e), "--nthreads");
        assert!(setup(&["--nworkers", "0"]).is_err());
    }

    /// `distd run -n 0` and `distd local -n 0 --run` waited for ever.
    #[test]
    fn a_run_without_workers_is_refused() {
        use super::super::args::Command;
        let Command::Run(a) = parse(&["run", "g.toml", "-n", "0"]) else {
            unreachable!()
        };
        assert_eq!(
            usage_flag(run(&a, Registry::builtin()).err().expect("refused")),
            "--nworkers"
        );
        let Command::Local(a) = parse(&["local", "-n", "0", "--run", "g.toml"]) else {
            unreachable!()
        };
        assert_eq!(
            usage_flag(local(&a, Registry::builtin()).err().expect("refused")),
            "--nworkers"
        );
        // Without --run, other workers may join.
        let Command::Local(a) = parse(&["local", "-n", "0"]) else {
            unreachable!()
        };
        assert_eq!(local(&a, Registry::builtin()).expect("allowed").cluster.workers, 0);
        let Command::Local(a) = parse(&["local", "-n", "-1"]) else {
            unreachable!()
        };
        assert_eq!(
            local(&a, Registry::builtin()).expect("valid").cluster.workers,
            default_threads()
        );
        let Command::Local(a) = parse(&["local", "-n", "auto", "--threads-per-worker", "2"]) else {
            unreachable!()
        };
        assert_eq!(
            usage_flag(local(&a, Registry::builtin()).err().expect("refused")),
            "--threads-per-worker"
        );
    }

    #[test]
    fn ssh_needs_a_number_of_workers() {
        use super::super::args::Command;
        let Command::Ssh(a) = parse(&["ssh", "h1", "--nworkers", "auto"]) else {
            unreachable!()
        };
        let e = ssh(&a).expect_err("refused").to_string();
        assert!(e.contains("--nworkers") && e.contains("per host"), "{e}");
    }
}
