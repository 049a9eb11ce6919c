//! The worker: a synchronous state machine ([`state`]), task execution ([`exec`]), the
//! function registry ([`registry`]), result transfer ([`peer`]) and the async shell
//! ([`server`]).

pub mod exec;
pub mod peer;
pub mod registry;
pub mod server;
pub mod state;
pub mod store;

pub use registry::Registry;
pub use server::{Worker, WorkerConfig, WorkerError, WorkerExit, WorkerStopper};
