//! The worker: a synchronous state machine ([`state`], with its decisions in time in
//! `lifecycle`), task execution ([`exec`]), starting commands ([`spawn`]) and reading their
//! output (`capture`), the function
//! registry ([`registry`]), result transfer (serving in [`peer`], fetching in `fetcher`), its
//! scratch folder ([`scratch`]), joining the scheduler (`registration`), stopping when its
//! nanny dies (`tether`) and the async shell ([`server`]).

mod capture;
pub mod exec;
mod fetcher;
#[cfg(test)]
mod fetcher_tests;
mod lifecycle;
pub mod peer;
mod registration;
pub mod registry;
mod scratch;
pub mod server;
mod spawn;
pub mod state;
#[cfg(test)]
mod state_tests;
pub mod store;
mod tether;

pub use registry::Registry;
pub(crate) use scratch::remove_scratch_of;
pub use server::{Worker, WorkerConfig, WorkerError, WorkerExit, WorkerStopper};
