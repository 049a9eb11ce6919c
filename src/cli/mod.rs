//! The command line: clap structs ([`args`]), validated configs ([`config`]), and one
//! function per subcommand ([`commands`]). [`main_with_registry`] is the whole program;
//! a Rust user's own binary calls it with its own function registry.

mod args;
mod commands;
mod config;

use crate::worker::Registry;
use clap::Parser;
use std::process::ExitCode;

/// Exit status of a command that failed for a reason other than bad usage.
pub const EXIT_FAILURE: u8 = 1;

/// For processes started by `distd ssh`: when stdin closes (the launcher is gone, or asked
/// us to stop), stop as if by SIGTERM, and exit for good if that takes too long.
fn stop_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 256];
        loop {
            match std::io::Read::read(&mut std::io::stdin(), &mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        log::info!("stdin closed: the launching distd ssh is gone; stopping");
        // SAFETY: sending a signal to ourselves has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
        std::thread::sleep(std::time::Duration::from_secs(20));
        std::process::exit(EXIT_FAILURE as i32);
    });
}

/// Parses the command line, runs the subcommand, and maps its outcome to an exit code.
/// Errors are printed once, here, as `distd: error: ...`.
pub fn main_with_registry(registry: Registry) -> ExitCode {
    let cli = args::Cli::parse();
    // Long-running services log what they do; a command that runs something and ends
    // (including `local --run`) only warns.
    let daemon = match &cli.command {
        args::Command::Scheduler(_) | args::Command::Worker(_) | args::Command::Nanny(_) | args::Command::Ssh(_) => {
            true
        }
        args::Command::Local(a) => a.run.is_none(),
        _ => false,
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(if daemon { "info" } else { "warn" }))
        .format_timestamp_millis()
        .init();
    if std::env::var_os(crate::ssh::WATCH_STDIN_ENV).is_some() {
        // Only this process watches its stdin, not the workers it may start.
        std::env::remove_var(crate::ssh::WATCH_STDIN_ENV);
        stop_when_stdin_closes();
    }
    match commands::dispatch(cli.command, registry) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("distd: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
