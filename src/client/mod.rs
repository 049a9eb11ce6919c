//! Everything on the client side: the Rust client API, graph files, and the CLI client
//! commands' logic.

mod api;
mod blocking;
pub mod graph;
pub mod run;

pub use api::{strip_scheme, AsyncClient, ClientError, GatherProblem, KeyStatus};
pub use blocking::Client;
