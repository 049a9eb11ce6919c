//! The command line: clap structs ([`args`]), validated configs ([`config`]), and one
//! function per subcommand ([`commands`]). [`main_with_registry`] is the whole program;
//! a Rust user's own binary calls it with its own function registry.

pub mod args;
pub mod commands;
pub mod config;

use crate::worker::Registry;
use clap::Parser;
use std::process::ExitCode;

/// Exit status of a command that failed for a reason other than bad usage.
pub const EXIT_FAILURE: u8 = 1;

/// Parses the command line, runs the subcommand, and maps its outcome to an exit code.
/// Errors are printed once, here, as `distd: error: ...`.
pub fn main_with_registry(registry: Registry) -> ExitCode {
    let cli = args::Cli::parse();
    let daemon = matches!(
        cli.command,
        args::Command::Scheduler(_) | args::Command::Worker(_) | args::Command::Local(_)
    );
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(if daemon { "info" } else { "warn" }))
        .format_timestamp_millis()
        .init();
    match commands::dispatch(cli.command, registry) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("distd: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
