//! One function per subcommand: take a validated config, run, return an exit code. What
//! the user asked for goes to stdout; logs and progress go to stderr.

use super::args::{
    Command, GenerateArgs, Generated, InfoArgs, LocalArgs, RestartArgs, RunArgs, SchedulerArgs, SubmitArgs, WorkerArgs,
};
use super::config::{self, ConfigError, DEFAULT_PORT};
use crate::client::graph::{load_graph, GraphError};
use crate::client::run::{run_graph, RunError, RunReport};
use crate::client::{AsyncClient, ClientError, KeyStatus};
use crate::local::{LocalCluster, LocalError};
use crate::nanny::{run_nanny, supervise, NannyError, EXIT_FATAL, EXIT_RETIRED};
use crate::protocol::{CommandSpec, TaskDesc, TaskError, TaskSpec};
use crate::scheduler::{Scheduler, StopReason};
use crate::units::parse_duration;
use crate::worker::WorkerExit;
use crate::worker::{Registry, Worker, WorkerError};
use futures_lite::StreamExt;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything a subcommand can fail with; each prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    WriteFile { path: String, source: std::io::Error },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot find this program's own executable: {0}")]
    OwnExecutable(std::io::Error),
    #[error(transparent)]
    Nanny(#[from] NannyError),
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    #[error("only {have} of {want} workers registered in time")]
    WorkersMissing { have: usize, want: usize },
}

impl CliError {
    /// The process exit status for this error. A worker that cannot work as configured exits
    /// with `EXIT_FATAL`, so its nanny does not restart it.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_)
            | CliError::Bind { .. }
            | CliError::Worker(
                WorkerError::Unreachable { .. }
                | WorkerError::Refused { .. }
                | WorkerError::Listen { .. }
                | WorkerError::LocalDir { .. },
            ) => EXIT_FATAL as u8,
            _ => super::EXIT_FAILURE,
        }
    }
}

pub fn dispatch(command: Command, registry: Registry) -> Result<u8, CliError> {
    match command {
        Command::Scheduler(a) => scheduler(a),
        Command::Worker(a) => worker(a, registry),
        Command::Nanny(a) => nanny(config::worker(&a)?),
        Command::Restart(a) => restart(a),
        Command::Ssh(a) => {
            crate::ssh::run_ssh(config::ssh(&a)?)?;
            Ok(0)
        }
        Command::Local(a) => local(a, registry),
        Command::Submit(a) => submit(a),
        Command::Run(a) => run(a, registry),
        Command::Info(a) => info(a),
        Command::Generate(a) => generate(a),
    }
}

/// Resolves on the first SIGINT or SIGTERM.
fn termination_signal() -> Result<impl std::future::Future<Output = ()>, CliError> {
    let mut signals = async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
        .map_err(CliError::Signals)?;
    Ok(async move {
        let _ = signals.next().await;
    })
}

/// Writes `contents` to `path` atomically (a temp file renamed over it).
fn write_atomic(path: &Path, contents: &str) -> Result<(), CliError> {
    let fail = |source| CliError::WriteFile {
        path: path.display().to_string(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The address to tell others: the bound one, or for 0.0.0.0 this host's own address.
fn announced(addr: std::net::SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return format!("tcp://{addr}");
    }
    let ip = std::net::ToSocketAddrs::to_socket_addrs(&(crate::sys::hostname().as_str(), addr.port()))
        .ok()
        .and_then(|mut it| it.find(|a| a.is_ipv4() && !a.ip().is_loopback()))
        .map(|a| a.ip())
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    format!("tcp://{}", std::net::SocketAddr::new(ip, addr.port()))
}

fn scheduler(args: SchedulerArgs) -> Result<u8, CliError> {
    let setup = config::scheduler(&args)?;
    let stop_signal = termination_signal()?;
    crate::rt::block_on(async {
        let listen = setup.config.listen;
        let sched = Scheduler::start(setup.config).await.map_err(|source| CliError::Bind {
            addr: listen.to_string(),
            source,
        })?;
        let address = announced(sched.address);
        if let Some(f) = &setup.pid_file {
            write_atomic(f, &format!("{}\n", std::process::id()))?;
        }
        if let Some(f) = &setup.scheduler_file {
            let json = serde_json::json!({
                "address": address,
                "pid": std::process::id(),
                "version": crate::protocol::DISTD_VERSION,
            });
            write_atomic(f, &format!("{json}\n"))?;
        }
        // Announced once the files are written: whoever reads the line may rely on them.
        println!("scheduler at {address}");
        let _ = std::io::stdout().flush();
        let stopper = sched.stopper();
        let _on_signal = crate::rt::spawn(async move {
            stop_signal.await;
            log::info!("signal received; shutting down");
            stopper.stop("scheduler interrupted").await;
        });
        let reason = sched.join().await;
        for f in [&setup.scheduler_file, &setup.pid_file].into_iter().flatten() {
            let _ = std::fs::remove_file(f);
        }
        if let StopReason::IdleTimeout(d) = reason {
            eprintln!("distd: scheduler idle for {:.1} s; exiting", d.as_secs_f64());
        }
        Ok(0)
    })
}

fn worker(args: WorkerArgs, registry: Registry) -> Result<u8, CliError> {
    let setup = config::worker(&args)?;
    if !setup.no_nanny {
        return nanny(setup);
    }
    let stop_signal = termination_signal()?;
    crate::rt::block_on(async {
        // A signal while the worker still waits for its scheduler stops it too.
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let _on_signal = crate::rt::spawn(async move {
            stop_signal.await;
            let _ = stop_tx.send(()).await;
        });
        let started = futures_lite::future::or(async { Some(Worker::start(setup.worker, registry).await) }, async {
            let _ = stop_rx.recv().await;
            None
        })
        .await;
        let Some(w) = started else {
            log::info!("signal received before the worker registered; exiting");
            return Ok(0);
        };
        let w = w?;
        println!("worker at tcp://{}", w.peer_address);
        println!("registered with tcp://{}", w.scheduler);
        let _ = std::io::stdout().flush();
        let stopper = w.stopper();
        let _forward = crate::rt::spawn(async move {
            while stop_rx.recv().await.is_ok() {
                log::info!("signal received; stopping the worker");
                stopper.stop().await;
            }
        });
        let exit = w.join().await?;
        Ok(match exit {
            WorkerExit::Retired if setup.lifetime_restart => EXIT_RETIRED as u8,
            _ => 0,
        })
    })
}

/// Runs the workers of `setup` as children of a nanny in this process.
fn nanny(setup: config::WorkerSetup) -> Result<u8, CliError> {
    let exe = std::env::current_exe().map_err(CliError::OwnExecutable)?;
    run_nanny(setup.nanny(exe))?;
    Ok(0)
}

/// Waits until the scheduler has `n` workers.
async fn wait_for_workers(client: &AsyncClient, n: usize, patience: Duration) -> Result<(), CliError> {
    match client.wait_for_workers(n, patience).await? {
        have if have < n => Err(CliError::WorkersMissing { have, want: n }),
        _ => Ok(()),
    }
}

fn local(args: LocalArgs, registry: Registry) -> Result<u8, CliError> {
    let cfg = config::local(&args, registry)?;
    let graph = args.run.as_deref().map(load_graph).transpose()?;
    let stop_signal = termination_signal()?;
    if args.processes {
        return local_processes(cfg, graph, stop_signal, !args.no_progress);
    }
    crate::rt::block_on(async {
        let n = cfg.workers;
        let cluster = LocalCluster::start(cfg).await?;
        let address = cluster.address();
        match graph {
            None => {
                println!("scheduler at {address}");
                println!("{n} workers ready");
                let _ = std::io::stdout().flush();
                stop_signal.await;
                cluster.stop().await;
                Ok(0)
            }
            Some(graph) => {
                log::info!("local cluster at {address} with {n} workers");
                let code = run_on(&address, graph, !args.no_progress).await;
                cluster.stop().await;
                code
            }
        }
    })
}

/// `distd local --processes`: the scheduler in this process, the workers as children of a
/// nanny in this process.
fn local_processes(
    cfg: crate::local::LocalClusterConfig,
    graph: Option<crate::client::graph::Graph>,
    stop_signal: impl std::future::Future<Output = ()>,
    progress: bool,
) -> Result<u8, CliError> {
    let exe = std::env::current_exe().map_err(CliError::OwnExecutable)?;
    crate::rt::block_on(async {
        let listen = cfg.listen;
        let sched = Scheduler::start(crate::scheduler::SchedulerConfig {
            listen,
            core: Default::default(),
        })
        .await
        .map_err(|source| CliError::Bind {
            addr: listen.to_string(),
            source,
        })?;
        let address = sched.address.to_string();
        let setup = config::WorkerSetup {
            worker: crate::worker::WorkerConfig {
                scheduler: address.clone(),
                nthreads: cfg.threads_per_worker,
                name: Some("local".into()),
                resources: Vec::new(),
                local_dir: cfg.local_dir.clone(),
                listen: Some(std::net::SocketAddr::new(sched.address.ip(), 0)),
                contact_address: None,
                death_timeout: Duration::from_secs(10),
                memory_limit: 0,
                lifetime: None,
                drain: false,
            },
            nworkers: cfg.workers,
            no_nanny: false,
            lifetime_restart: false,
            lifetime_flags: Vec::new(),
            shutdown_timeout: Duration::from_secs(10),
            crash_limit: 5,
        };
        let (stop_tx, stop_rx) = async_channel::unbounded();
        let mut nanny_config = setup.nanny(exe);
        nanny_config.worker_stdout_to_stderr = true;
        let mut nanny = crate::rt::spawn(supervise(nanny_config, stop_rx));
        let client = AsyncClient::connect(&address).await?;
        // A nanny that gives up (the workers cannot start) is the error to show, not the wait.
        let ready = futures_lite::future::or(
            async { Some(wait_for_workers(&client, cfg.workers, Duration::from_secs(30)).await) },
            async {
                match (&mut nanny).await {
                    Err(e) => Some(Err(CliError::Nanny(e))),
                    Ok(()) => None,
                }
            },
        )
        .await;
        drop(client);
        match ready {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                sched.stop().await;
                return Err(e);
            }
            None => {
                sched.stop().await;
                return Err(CliError::WorkersMissing {
                    have: 0,
                    want: cfg.workers,
                });
            }
        }
        let code = match graph {
            None => {
                println!("scheduler at tcp://{address}");
                println!("{} workers ready", cfg.workers);
                let _ = std::io::stdout().flush();
                stop_signal.await;
                Ok(0)
            }
            Some(graph) => run_on(&address, graph, progress).await,
        };
        let _ = stop_tx.send(()).await;
        let supervised = nanny.await;
        sched.stop().await;
        supervised?;
        code
    })
}

fn restart(args: RestartArgs) -> Result<u8, CliError> {
    let addr = config::parse_address("ADDR", &args.address, DEFAULT_PORT)?;
    crate::rt::block_on(async {
        let client = AsyncClient::connect(&addr).await?;
        let n = client.restart().await?;
        println!("restarted {n} workers");
        Ok(0)
    })
}

async fn run_on(address: &str, graph: crate::client::graph::Graph, progress: bool) -> Result<u8, CliError> {
    let client = AsyncClient::connect(address).await?;
    let progress = progress && std::io::stderr().is_terminal();
    let report = run_graph(&client, graph, progress).await?;
    Ok(report_failures(&report))
}

/// Prints one line per failed task to stderr; the exit code of the run.
fn report_failures(report: &RunReport) -> u8 {
    for f in &report.failures {
        if f.downstream > 0 {
            eprintln!(
                "distd: task {:?} failed: {} ({} dependent tasks not run)",
                f.key, f.error, f.downstream
            );
        } else {
            eprintln!("distd: task {:?} failed: {}", f.key, f.error);
        }
    }
    if report.succeeded() {
        0
    } else {
        super::EXIT_FAILURE
    }
}

fn run(args: RunArgs, registry: Registry) -> Result<u8, CliError> {
    let graph = load_graph(&args.graph)?;
    let progress = !args.no_progress;
    match &args.scheduler {
        Some(addr) => {
            let addr = config::parse_address("--scheduler", addr, DEFAULT_PORT)?;
            crate::rt::block_on(run_on(&addr, graph, progress))
        }
        None => {
            let local_args = LocalArgs {
                nworkers: args.nworkers,
                threads_per_worker: args.threads_per_worker,
                host: "127.0.0.1".into(),
                port: 0,
                local_directory: None,
                run: None,
                no_progress: args.no_progress,
                processes: false,
            };
            let cfg = config::local(&local_args, registry)?;
            crate::rt::block_on(async {
                let cluster = LocalCluster::start(cfg).await?;
                let code = run_on(&cluster.address(), graph, progress).await;
                cluster.stop().await;
                code
            })
        }
    }
}

fn submit(args: SubmitArgs) -> Result<u8, CliError> {
    let addr = config::parse_address("ADDR", &args.address, DEFAULT_PORT)?;
    let timeout_ms = args
        .timeout
        .as_deref()
        .map(|t| {
            parse_duration(t)
                .map(|d| d.as_millis() as u64)
                .map_err(|source| ConfigError::Unit {
                    flag: "--timeout",
                    source,
                })
        })
        .transpose()?;
    let mut env = Vec::new();
    for e in &args.env {
        let (k, v) = e.split_once('=').ok_or_else(|| ConfigError::Value {
            flag: "--env",
            reason: format!("{e:?} is not NAME=VALUE"),
        })?;
        env.push((k.to_string(), v.to_string()));
    }
    crate::rt::block_on(async {
        let client = AsyncClient::connect(&addr).await?;
        let key = args.key.clone().unwrap_or_else(|| client.unique_key("submit"));
        let task = TaskDesc {
            key: key.clone(),
            spec: TaskSpec::Command(CommandSpec {
                argv: args.command.clone(),
                env,
                cwd: args.cwd.clone(),
                timeout_ms,
                stdin: None,
            }),
            deps: Vec::new(),
            options: Default::default(),
        };
        client.submit(vec![task]).await?;
        client.wait(std::slice::from_ref(&key)).await?;
        match client.status(&key) {
            Some(KeyStatus::Erred(e)) => {
                let code = match &e {
                    TaskError::Exit { status, stderr } => {
                        eprint!("{stderr}");
                        (*status).clamp(1, 255) as u8
                    }
                    TaskError::Signal { signal, stderr } => {
                        eprint!("{stderr}");
                        (128 + signal).clamp(1, 255) as u8
                    }
                    TaskError::Timeout { .. } => 124,
                    TaskError::Spawn { .. } => 127,
                    _ => super::EXIT_FAILURE,
                };
                eprintln!("distd: task {key:?} failed: {e}");
                Ok(code)
            }
            _ => {
                let out = client.gather(std::slice::from_ref(&key)).await?;
                let _ = std::io::stdout().write_all(&out[0]);
                let _ = std::io::stdout().flush();
                client.release(&[key])?;
                Ok(0)
            }
        }
    })
}

fn info(args: InfoArgs) -> Result<u8, CliError> {
    let addr = config::parse_address("ADDR", &args.address, DEFAULT_PORT)?;
    let info = crate::rt::block_on(async { AsyncClient::connect(&addr).await?.info().await })?;
    // Printing stops quietly when stdout is closed (`distd info | head`).
    let stdout = std::io::stdout();
    let mut o = stdout.lock();
    macro_rules! say {
        ($($t:tt)*) => {
            let _ = writeln!(o, $($t)*);
        };
    }
    if args.json {
        say!(
            "{}",
            serde_json::to_string_pretty(&info).expect("cluster info is plain data")
        );
        return Ok(0);
    }
    say!("scheduler tcp://{addr} (distd {})", info.scheduler_version);
    say!("clients: {}", info.clients);
    say!("workers: {}", info.workers.len());
    if !info.workers.is_empty() {
        say!(
            "  {:<20} {:<22} {:>7} {:>10} {:>10} {:>8} {:>10}",
            "NAME",
            "ADDRESS",
            "THREADS",
            "MEMORY",
            "PROCESSING",
            "RESULTS",
            "BYTES"
        );
        for w in &info.workers {
            say!(
                "  {:<20} {:<22} {:>7} {:>10} {:>10} {:>8} {:>10}",
                w.name,
                w.address,
                w.nthreads,
                crate::units::format_bytes(w.memory),
                w.processing,
                w.stored,
                crate::units::format_bytes(w.stored_bytes)
            );
        }
    }
    let counts: Vec<String> = info.tasks.iter().map(|(s, n)| format!("{s}={n}")).collect();
    say!(
        "tasks: {}",
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(" ")
        }
    );
    Ok(0)
}

/// Writes completions for bash, zsh and fish, or a man page per command.
fn generate(args: GenerateArgs) -> Result<u8, CliError> {
    use clap::CommandFactory;
    let fail = |path: &Path, source| CliError::WriteFile {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&args.dir).map_err(|e| fail(&args.dir, e))?;
    let mut cmd = super::args::Cli::command();
    match args.what {
        Generated::Completions => {
            for (shell, file) in [
                (clap_complete::Shell::Bash, "distd.bash"),
                (clap_complete::Shell::Zsh, "_distd"),
                (clap_complete::Shell::Fish, "distd.fish"),
            ] {
                let mut buf = Vec::new();
                clap_complete::generate(shell, &mut cmd, "distd", &mut buf);
                let path = args.dir.join(file);
                std::fs::write(&path, buf).map_err(|e| fail(&path, e))?;
            }
        }
        Generated::Man => {
            cmd.build();
            let mut pages = vec![("distd".to_string(), cmd.clone())];
            for sub in cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            {
                pages.push((format!("distd-{}", sub.get_name()), sub.clone()));
            }
            for (name, page) in pages {
                let mut buf = Vec::new();
                clap_mangen::Man::new(page.name(name.clone()))
                    .render(&mut buf)
                    .map_err(|e| fail(&args.dir, e))?;
                let path = args.dir.join(format!("{name}.1"));
                std::fs::write(&path, buf).map_err(|e| fail(&path, e))?;
            }
        }
    }
    Ok(0)
}
