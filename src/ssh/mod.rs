//! `distd ssh`: host patterns ([`pattern`]) and the launcher that starts a whole cluster over
//! OpenSSH ([`launcher`]). The only place where tokio runs (inside `async_compat`), because
//! the `openssh` crate needs it.

pub mod launcher;
pub mod pattern;

pub use launcher::{run_ssh, RemoteDistd, SshConfig, SshError, DEFAULT_CONNECT_TIMEOUT};
