//! `LocalCluster`: a scheduler and N workers in this process, on loopback, as
//! dask.distributed's LocalCluster. What `distd local` and `distd run` without a scheduler
//! start.

use crate::scheduler::{CoreConfig, Scheduler, SchedulerConfig};
use crate::worker::{Registry, Worker, WorkerConfig, WorkerError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
}

impl Default for LocalClusterConfig {
    fn default() -> Self {
        LocalClusterConfig {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            threads_per_worker: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            local_dir: default_local_dir(),
            registry: Registry::builtin(),
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

/// Why a local cluster did not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot start the scheduler on {addr}: {source}")]
    Scheduler { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start worker {index}: {source}")]
    Worker { index: usize, source: WorkerError },
}

/// A scheduler and its workers, running in this process until stopped.
pub struct LocalCluster {
    pub scheduler: Scheduler,
    pub workers: Vec<Worker>,
}

impl LocalCluster {
    pub async fn start(config: LocalClusterConfig) -> Result<LocalCluster, LocalError> {
        let scheduler = Scheduler::start(SchedulerConfig {
            listen: config.listen,
            core: CoreConfig::default(),
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
                death_timeout: Duration::from_secs(10),
                memory_limit: 0,
                lifetime: None,
                drain: false,
            };
            let w = Worker::start(wc, config.registry.clone())
                .await
                .map_err(|source| LocalError::Worker { index, source })?;
            workers.push(w);
        }
        Ok(LocalCluster { scheduler, workers })
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
