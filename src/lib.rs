//! distd: a distributed task runtime. One scheduler, many workers, task graphs of commands
//! and functions, run from the command line or from Rust.
//!
//! The public API mirrors dask.distributed's: [`Scheduler`] and [`Worker`] started
//! in-process, [`LocalCluster`] for both at once, and [`Client`] / [`AsyncClient`] to
//! submit tasks and gather results. Build your own binary with your own functions by
//! extending [`Registry::builtin`] and calling [`cli::main_with_registry`]. The wire
//! protocol ([`protocol`]) is public too, for programs that speak it themselves.
//!
//! Everything else is the crate's own: its modules are private, so the compiler reports
//! what nothing uses.

/// For the state machines' tier-1 tests: methods of a wrapper that forward each event to the
/// machine in field `$field` and then run its `sanity_check`, so every step is checked:
/// `checked! { core; on_timer(now: Instant); }`.
#[cfg(test)]
macro_rules! checked {
    ($field:tt; $($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $name(&mut self, $($arg: $ty),*) {
                self.$field.$name($($arg),*);
                self.$field.sanity_check();
            }
        )*
    };
}

pub mod cli;
mod client;
#[cfg(test)]
mod cluster_sim;
mod exit;
mod idmap;
mod local;
mod memory;
mod nanny;
pub mod protocol;
mod rt;
mod scheduler;
mod ssh;
mod sys;
mod units;
mod worker;

pub use client::{AsyncClient, Client, ClientError, GatherProblem, KeyStatus};
pub use local::{LocalCluster, LocalClusterConfig, LocalError};
pub use nanny::NannyError;
pub use protocol::{CommandSpec, TaskDesc, TaskError, TaskOptions, TaskSpec};
pub use scheduler::{CoreConfig, Scheduler, SchedulerConfig, SchedulerStopper, StopReason};
pub use worker::{Registry, Worker, WorkerConfig, WorkerError, WorkerExit, WorkerStopper};
