//! The scheduler: a synchronous core that decides ([`core`]) and an async shell that talks
//! to the network ([`server`]).

pub mod core;
#[cfg(test)]
mod core_tests;
mod id_list;
pub mod server;
mod table;

pub use self::core::{CoreConfig, StopReason};
pub use server::{Scheduler, SchedulerConfig, SchedulerStopper};
