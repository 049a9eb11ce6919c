//! One function per subcommand: take a validated config, run, return an exit code. What
//! the user asked for goes to stdout; logs and progress go to stderr.

use super::args::{Command, HelpArgs, InfoArgs, LocalArgs, RestartArgs, RunArgs, SchedulerArgs, WorkerArgs};
use super::config::{self, ConfigError, RunTarget};
use crate::client::graph::{load_graph, GraphError};
use crate::client::run::{run_graph, RunError, RunReport};
use crate::client::{AsyncClient, ClientError};
use crate::exit;
use crate::local::{AnyLocalCluster, LocalCluster, LocalError, ProcessCluster};
use crate::nanny::supervisor::GiveUp;
use crate::nanny::{run_nanny, NannyError};
use crate::scheduler::Scheduler;
use crate::units::plural;
use crate::worker::WorkerExit;
use crate::worker::{Registry, Worker, WorkerError};
use futures_lite::StreamExt;
use std::io::{IsTerminal, Write};
use std::path::Path;

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
    /// A task of the run cannot run on any connected worker, and the run does not wait.
    #[error("{0}; start a worker that can run it, or pass --wait-for-workers to wait for one")]
    Unrunnable(ClientError),
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
    #[error(transparent)]
    Submit(#[from] super::submit::SubmitError),
    #[error(transparent)]
    Access(#[from] super::access::AccessSetupError),
    #[error(transparent)]
    Security(#[from] crate::protocol::security::SecurityError),
}

/// An access file that cannot be written is a fault of the command's credential setup.
impl From<crate::protocol::access::AccessError> for CliError {
    fn from(e: crate::protocol::access::AccessError) -> CliError {
        CliError::Access(e.into())
    }
}

impl CliError {
    /// The process exit status for this error, from the one table ([`crate::exit`]). A
    /// worker that cannot work as configured exits with [`exit::CONFIG`], so its nanny does not
    /// restart it, and a nanny whose worker cannot start exits with it too: a port in use is
    /// 78 from every command.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(ConfigError::Usage { .. }) => exit::USAGE,
            CliError::Config(_)
            | CliError::Bind { .. }
            | CliError::Access(_)
            | CliError::Security(_)
            | CliError::Local(LocalError::Listen { .. } | LocalError::Scheduler { .. })
            | CliError::Worker(
                WorkerError::Dial(_)
                | WorkerError::Unreachable { .. }
                | WorkerError::Listen { .. }
                | WorkerError::LocalDir { .. },
            )
            | CliError::Nanny(NannyError::GaveUp {
                reason: GiveUp::CannotStart { .. },
                ..
            }) => exit::CONFIG,
            _ => exit::FAILURE,
        }
    }
}

pub fn dispatch(command: Command, registry: Registry) -> Result<u8, CliError> {
    match command {
        Command::Scheduler(a) => scheduler(a),
        Command::Worker(a) => worker(a, registry),
        Command::Nanny(a) => nanny(config::nanny(&a)?),
        Command::Restart(a) => restart(a),
        Command::Ssh(a) => {
            crate::ssh::run_ssh(config::ssh(&a)?)?;
            Ok(0)
        }
        Command::Local(a) => local(a, registry),
        Command::Submit(a) => super::submit::submit(a),
        Command::Run(a) => run(a, registry),
        Command::Info(a) => info(a),
        Command::Help(a) => help(a),
        Command::Generate(a) => super::generate::generate(a),
        Command::Access(a) => Ok(super::access::access_command(a)?),
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
    crate::sys::write_replacing(path, contents.as_bytes(), 0o644).map_err(fail)
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
    let mut setup = config::scheduler(&args)?;
    let stop_signal = termination_signal()?;
    setup.config.credential = crate::protocol::security::ClusterSecurity::from_keyring().resolve()?;
    let _published = super::access::publish_made_here(setup.config.credential.as_deref())?;
    let credential = setup.config.credential.clone();
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
            let mut json = serde_json::json!({
                "address": address,
                "pid": std::process::id(),
                "version": crate::protocol::DISTD_VERSION,
            });
            match &credential {
                // It carries the credential: its owner's alone, as an access file.
                Some(c) => {
                    json["access"] = super::access::scheduler_file_part(c);
                    crate::protocol::access::write_private(f, &format!("{json:#}\n"))?;
                }
                None => write_atomic(f, &format!("{json}\n"))?,
            }
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
        // An idle timeout is logged by the scheduler itself, once.
        sched.join().await;
        for f in [&setup.scheduler_file, &setup.pid_file].into_iter().flatten() {
            let _ = std::fs::remove_file(f);
        }
        Ok(exit::SUCCESS)
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
            WorkerExit::Retired if setup.lifetime_restart => exit::RETIRED,
            _ => exit::SUCCESS,
        })
    })
}

/// Runs the workers of `setup` as children of a nanny in this process.
fn nanny(setup: config::WorkerSetup) -> Result<u8, CliError> {
    let exe = std::env::current_exe().map_err(CliError::OwnExecutable)?;
    run_nanny(setup.nanny(exe))?;
    Ok(0)
}

fn local(args: LocalArgs, registry: Registry) -> Result<u8, CliError> {
    let setup = config::local(&args, registry)?;
    let graph = setup.run.as_deref().map(load_graph).transpose()?;
    let exe = match setup.processes {
        Some(_) => Some(std::env::current_exe().map_err(CliError::OwnExecutable)?),
        None => None,
    };
    let stop_signal = termination_signal()?;
    crate::rt::block_on(async {
        let n = setup.cluster.workers;
        let cluster = match (setup.processes, exe) {
            (Some(workers), Some(exe)) => AnyLocalCluster::Processes(
                ProcessCluster::start(setup.cluster.listen, setup.cluster.security.clone(), |scheduler| {
                    workers.nanny(scheduler, exe)
                })
                .await?,
            ),
            _ => AnyLocalCluster::Threads(LocalCluster::start(setup.cluster).await?),
        };
        // Other commands of this user (`distd submit`, `distd info`) find it there.
        let _published = match graph.is_none() {
            true => super::access::publish_made_here(cluster.credential().as_deref())?,
            false => None,
        };
        let address = cluster.address();
        let code = match graph {
            None => {
                println!("scheduler at {address}");
                println!("{} ready", plural(n as u64, "worker"));
                let _ = std::io::stdout().flush();
                stop_signal.await;
                Ok(0)
            }
            Some(graph) => {
                log::info!("local cluster at {address} with {}", plural(n as u64, "worker"));
                run_on(&address, graph, setup.progress, setup.wait_for_workers).await
            }
        };
        cluster.stop().await?;
        code
    })
}

fn restart(args: RestartArgs) -> Result<u8, CliError> {
    let addr = config::target(&args.target)?;
    crate::rt::block_on(async {
        let client = AsyncClient::connect(&addr).await?;
        let n = client.restart().await?;
        println!("restarted {}", plural(n as u64, "worker"));
        Ok(0)
    })
}

async fn run_on(
    address: &str,
    graph: crate::client::graph::Graph,
    progress: bool,
    wait_for_workers: bool,
) -> Result<u8, CliError> {
    let client = AsyncClient::connect(address).await?;
    client.set_wait_for_workers(wait_for_workers);
    let progress = progress && std::io::stderr().is_terminal();
    let report = match run_graph(&client, graph, progress).await {
        Err(RunError::Client(e @ ClientError::Unrunnable { .. })) => return Err(CliError::Unrunnable(e)),
        other => other?,
    };
    Ok(report_failures(&report))
}

/// Prints one line per failed task to stderr; the exit code of the run.
fn report_failures(report: &RunReport) -> u8 {
    for f in &report.failures {
        if f.downstream > 0 {
            eprintln!(
                "distd: task {:?} failed: {} ({} not run)",
                f.key,
                f.error,
                plural(f.downstream as u64, "dependent task")
            );
        } else {
            eprintln!("distd: task {:?} failed: {}", f.key, f.error);
        }
    }
    if report.succeeded() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    }
}

fn run(args: RunArgs, registry: Registry) -> Result<u8, CliError> {
    let setup = config::run(&args, registry)?;
    let graph = load_graph(&setup.graph)?;
    match setup.target {
        RunTarget::Scheduler(addr) => crate::rt::block_on(run_on(&addr, graph, setup.progress, setup.wait_for_workers)),
        RunTarget::Local(cluster) => crate::rt::block_on(async {
            let cluster = LocalCluster::start(cluster).await?;
            let code = run_on(&cluster.address(), graph, setup.progress, setup.wait_for_workers).await;
            cluster.stop().await;
            code
        }),
    }
}

fn info(args: InfoArgs) -> Result<u8, CliError> {
    let addr = config::target(&args.target)?;
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
    say!("other clients: {}", info.clients);
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

/// `distd help [COMMAND]`: the long help of distd or of one subcommand, as `--help` prints it.
fn help(args: HelpArgs) -> Result<u8, CliError> {
    let mut cmd = super::args::command();
    cmd.build();
    let page = match &args.command {
        None => &mut cmd,
        Some(name) => cmd.find_subcommand_mut(name).ok_or_else(|| ConfigError::Usage {
            flag: "COMMAND",
            reason: format!("{name:?} is not a distd command"),
        })?,
    };
    // Printing stops quietly when stdout is closed, as for `distd info`.
    let _ = write!(std::io::stdout(), "{}", page.render_long_help());
    Ok(exit::SUCCESS)
}
