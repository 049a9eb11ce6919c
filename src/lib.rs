//! distd: a distributed task runtime. One scheduler, many workers, task graphs of commands
//! and functions, run from the command line or from Rust.
//!
//! The public API mirrors dask.distributed's: [`Scheduler`] and [`Worker`] started
//! in-process, [`LocalCluster`] for both at once, and [`Client`] / [`AsyncClient`] to
//! submit tasks and gather results. Build your own binary with your own functions by
//! extending [`Registry::builtin`] and calling [`cli::main_with_registry`].

pub mod cli;
pub mod client;
mod idmap;
pub mod local;
mod memory;
pub mod nanny;
pub mod protocol;
pub mod rt;
pub mod scheduler;
pub mod ssh;
mod sys;
pub mod units;
pub mod worker;

pub use client::{AsyncClient, Client, ClientError, KeyStatus};
pub use local::{LocalCluster, LocalClusterConfig};
pub use protocol::{CommandSpec, TaskDesc, TaskError, TaskOptions, TaskSpec};
pub use scheduler::{Scheduler, SchedulerConfig};
pub use worker::{Registry, Worker, WorkerConfig};
