//! Everything on the client side: the Rust client API, graph files, and the CLI client
//! commands' logic.

mod api;
pub mod graph;
pub mod run;

pub use api::{strip_scheme, AsyncClient, Client, ClientError, GatherProblem, KeyStatus};
