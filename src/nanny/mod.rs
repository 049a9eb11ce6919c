//! The nanny: a small process that starts workers as its children, watches their exit and
//! memory, restarts them with backoff, and stops them in order. [`core`] decides for the
//! whole nanny (one [`supervisor`] per child), [`server`] carries it out.

pub mod core;
pub mod server;
pub mod supervisor;

pub use server::{run_nanny, supervise, NannyConfig, NannyError};
pub use supervisor::Policy;
