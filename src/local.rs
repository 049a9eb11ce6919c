//! Both kinds of local cluster, a scheduler and N workers on this machine: [`LocalCluster`],
//! workers as threads of this process (as dask.distributed's LocalCluster), and
//! [`ProcessCluster`], workers as children of a nanny in this process (`distd local
//! --processes`). What `distd local` and `distd run` without a scheduler start.
//!
//! It starts and stops; it never parses flags (that is `cli::config`'s job) and never runs a
//! graph itself.

use crate::client::{AsyncClient, ClientError};
use crate::nanny::{supervise, NannyConfig, NannyError};
use crate::protocol::security::{ClusterSecurity, Credential};
use crate::scheduler::{CoreConfig, Scheduler, SchedulerConfig};
use crate::worker::{Registry, Worker, WorkerConfig, WorkerError};
use smol::Task;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a local cluster's scheduler listens unless told otherwise: loopback, a free port.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Threads per worker of a local cluster unless told otherwise.
pub const DEFAULT_THREADS_PER_WORKER: usize = 1;

/// How long a local cluster's worker waits for its scheduler: they start together, so a
/// scheduler gone this long is gone for good.
pub const WORKER_DEATH_TIMEOUT: Duration = Duration::from_secs(10);

/// How to build a local cluster.
#[derive(Clone, Debug)]
pub struct LocalClusterConfig {
    pub workers: usize,
    pub threads_per_worker: usize,
    /// Where the scheduler listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Base folder for the workers' scratch space.
    pub local_dir: PathBuf,
    pub registry: Registry,
    /// How its connections are secured: a new credential unless the process was given one
    /// or runs with `--no-security`.
    pub security: ClusterSecurity,
}

impl Default for LocalClusterConfig {
    fn default() -> Self {
        LocalClusterConfig {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            threads_per_worker: DEFAULT_THREADS_PER_WORKER,
            listen: DEFAULT_LISTEN,
            local_dir: default_local_dir(),
            registry: Registry::builtin(),
            security: ClusterSecurity::default(),
        }
    }
}

/// Where workers keep scratch files unless told otherwise: the user's cache folder
/// (`~/.cache/distd`), or the system's temp folder when there is none.
pub fn default_local_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "distd")
        .map(|d| d.cache_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("distd"))
}

/// How long a [`ProcessCluster`]'s workers may take to register.
const PROCESS_WORKERS_PATIENCE: Duration = Duration::from_secs(30);

/// Why a local cluster did not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot start the scheduler on {addr}: {source}")]
    Scheduler { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start worker {index}: {source}")]
    Worker { index: usize, source: Box<WorkerError> },
    /// The scheduler of a [`ProcessCluster`] could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The nanny of a [`ProcessCluster`] gave up (its workers cannot start, say).
    #[error(transparent)]
    Nanny(#[from] NannyError),
    #[error(transparent)]
    Security(#[from] crate::protocol::security::SecurityError),
    #[error("only {have} of {} registered in time", crate::units::plural(*want as u64, "worker"))]
    WorkersMissing { have: usize, want: usize },
}

/// A scheduler and its workers, running in this process until stopped.
pub struct LocalCluster {
    pub scheduler: Scheduler,
    pub workers: Vec<Worker>,
    /// The credential its connections prove (`None` with `--no-security`).
    pub credential: Option<Arc<Credential>>,
}

impl LocalCluster {
    pub async fn start(config: LocalClusterConfig) -> Result<LocalCluster, LocalError> {
        let credential = config.security.resolve()?;
        let scheduler = Scheduler::start(SchedulerConfig {
            listen: config.listen,
            core: CoreConfig::default(),
            credential: credential.clone(),
        })
        .await
        .map_err(|source| LocalError::Scheduler {
            addr: config.listen,
            source,
        })?;
        let addr = scheduler.address;
        let connect = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        let mut workers = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            let wc = WorkerConfig {
                scheduler: connect.to_string(),
                nthreads: config.threads_per_worker.max(1),
                name: Some(format!("local-{index}")),
                resources: Vec::new(),
                local_dir: config.local_dir.clone(),
                listen: Some(SocketAddr::new(connect.ip(), 0)),
                contact_address: None,
                death_timeout: WORKER_DEATH_TIMEOUT,
                memory_limit: 0,
                lifetime: None,
                drain: false,
            };
            let w = Worker::start(wc, config.registry.clone())
                .await
                .map_err(|source| LocalError::Worker {
                    index,
                    source: Box::new(source),
                })?;
            workers.push(w);
        }
        Ok(LocalCluster {
            scheduler,
            workers,
            credential,
        })
    }

    /// Starts a cluster from sync code; it runs on smol's global executor.
    pub fn start_blocking(config: LocalClusterConfig) -> Result<LocalCluster, LocalError> {
        smol::block_on(Self::start(config))
    }

    /// `tcp://HOST:PORT` of the scheduler, for clients.
    pub fn address(&self) -> String {
        let a = self.scheduler.address;
        if a.ip().is_unspecified() {
            format!("tcp://127.0.0.1:{}", a.port())
        } else {
            format!("tcp://{a}")
        }
    }

    /// Stops the workers, then the scheduler.
    pub async fn stop(self) {
        for w in self.workers {
            let _ = w.stop().await;
        }
        self.scheduler.stop().await;
    }

    pub fn stop_blocking(self) {
        smol::block_on(self.stop())
    }
}

/// A scheduler in this process and its workers as child processes of a nanny that runs in
/// this process too (`distd local --processes`).
pub struct ProcessCluster {
    scheduler: Scheduler,
    /// The nanny's supervision; it ends once its workers have stopped.
    nanny: Task<Result<(), NannyError>>,
    /// A message here is the nanny's stop signal.
    stop_nanny: async_channel::Sender<()>,
    /// The credential its connections prove (`None` with `--no-security`).
    pub credential: Option<Arc<Credential>>,
}

impl ProcessCluster {
    /// Starts the scheduler on `listen`, then the nanny that `nanny_for(scheduler address)`
    /// describes, and returns once all of its workers have registered. A nanny that gives up
    /// meanwhile is the error, not the wait.
    pub async fn start(
        listen: SocketAddr,
        security: ClusterSecurity,
        nanny_for: impl FnOnce(String) -> NannyConfig,
    ) -> Result<ProcessCluster, LocalError> {
        let credential = security.resolve()?;
        let scheduler = Scheduler::start(SchedulerConfig {
            listen,
            core: CoreConfig::default(),
            credential: credential.clone(),
        })
        .await
        .map_err(|source| LocalError::Listen { addr: listen, source })?;
        let mut nanny_config = nanny_for(scheduler.address.to_string());
        // Its workers are other processes: the nanny hands them the credential.
        nanny_config.credential = credential.clone();
        let want = nanny_config.nworkers;
        let (stop_nanny, stop_rx) = async_channel::unbounded();
        let mut nanny = crate::rt::spawn(supervise(nanny_config, stop_rx));
        let client = AsyncClient::connect(&scheduler.address.to_string()).await?;
        let ready = futures_lite::future::or(
            async {
                Some(
                    client
                        .wait_for_workers(want, PROCESS_WORKERS_PATIENCE)
                        .await
                        .map_err(LocalError::from),
                )
            },
            async {
                match (&mut nanny).await {
                    Err(e) => Some(Err(LocalError::Nanny(e))),
                    Ok(()) => None,
                }
            },
        )
        .await;
        drop(client);
        let problem = match ready {
            Some(Ok(have)) if have >= want => None,
            Some(Ok(have)) => Some(LocalError::WorkersMissing { have, want }),
            Some(Err(e)) => Some(e),
            None => Some(LocalError::WorkersMissing { have: 0, want }),
        };
        if let Some(e) = problem {
            scheduler.stop().await;
            return Err(e);
        }
        Ok(ProcessCluster {
            scheduler,
            nanny,
            stop_nanny,
            credential,
        })
    }

    /// `tcp://HOST:PORT` of the scheduler, for clients.
    pub fn address(&self) -> String {
        format!("tcp://{}", self.scheduler.address)
    }

    /// Stops the workers (through their nanny), then the scheduler. The nanny's failure, if
    /// it had one, is the result.
    pub async fn stop(self) -> Result<(), LocalError> {
        let _ = self.stop_nanny.send(()).await;
        let supervised = self.nanny.await;
        self.scheduler.stop().await;
        Ok(supervised?)
    }
}

/// Either kind of local cluster, for code that serves or runs on whichever was asked for.
pub enum AnyLocalCluster {
    Threads(LocalCluster),
    Processes(ProcessCluster),
}

impl AnyLocalCluster {
    /// The credential its connections prove (`None` with `--no-security`).
    pub fn credential(&self) -> Option<Arc<Credential>> {
        match self {
            AnyLocalCluster::Threads(c) => c.credential.clone(),
            AnyLocalCluster::Processes(c) => c.credential.clone(),
        }
    }

    /// `tcp://HOST:PORT` of the scheduler, for clients.
    pub fn address(&self) -> String {
        match self {
            AnyLocalCluster::Threads(c) => c.address(),
            AnyLocalCluster::Processes(c) => c.address(),
        }
    }

    /// Stops the workers, then the scheduler.
    pub async fn stop(self) -> Result<(), LocalError> {
        match self {
            AnyLocalCluster::Threads(c) => {
                c.stop().await;
                Ok(())
            }
            AnyLocalCluster::Processes(c) => c.stop().await,
        }
    }
}
