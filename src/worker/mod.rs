//! The worker: a synchronous state machine ([`state`]), task execution ([`exec`]), starting
//! commands ([`spawn`]), the function registry ([`registry`]), result transfer ([`peer`]) and
//! the async shell ([`server`]).

pub mod exec;
pub mod peer;
pub mod registry;
pub mod server;
mod spawn;
pub mod state;
pub mod store;

pub use registry::Registry;
pub use server::{Worker, WorkerConfig, WorkerError, WorkerExit, WorkerStopper};
