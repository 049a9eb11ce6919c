//! The command line: clap structs ([`args`]), validated configs ([`config`], with the sizes
//! of workers in [`sizing`]), one function per subcommand ([`commands`]), and the manual
//! ([`generate`] lays out man pages and completions, [`manual`] holds their words).
//! [`main_with_registry`] is the whole program; a Rust user's own binary calls it with its
//! own function registry. Exit statuses come from the one table, `crate::exit`.

mod access;
mod args;
mod commands;
mod config;
mod generate;
mod manual;
mod sizing;
mod submit;

pub(crate) use access::publish as publish_access;
pub(crate) use config::defaults::SCHEDULER_HOST;

use crate::worker::Registry;
use std::process::ExitCode;

/// Parses the command line, runs the subcommand, and maps its outcome to an exit code.
/// Errors are printed once, here, as `distd: error: ...`.
pub fn main_with_registry(registry: Registry) -> ExitCode {
    ExitCode::from(main_with_args(registry, std::env::args_os()))
}

/// [`main_with_registry`] on a command line the caller gives (its first item the program's
/// name), for a program that builds it itself; returns the exit status.
pub fn main_with_args<I, T>(registry: Registry, args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = args::parse(args);
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
    // The credential is read before anything dials or listens.
    let security = match &cli.command {
        args::Command::Scheduler(a) => Some((&a.security, None)),
        args::Command::Worker(a) | args::Command::Nanny(a) => Some((&a.security, a.target.scheduler_file.as_deref())),
        args::Command::Local(a) => Some((&a.security, None)),
        args::Command::Ssh(a) => Some((&a.security, None)),
        args::Command::Submit(a) => Some((&a.security, a.target.scheduler_file.as_deref())),
        args::Command::Run(a) => Some((&a.security, a.scheduler_file.as_deref())),
        args::Command::Info(a) => Some((&a.security, a.target.scheduler_file.as_deref())),
        args::Command::Restart(a) => Some((&a.security, a.target.scheduler_file.as_deref())),
        args::Command::Access(_) | args::Command::Help(_) | args::Command::Generate(_) => None,
    };
    if let Some((flags, scheduler_file)) = security {
        if let Err(e) = access::prepare(flags, scheduler_file) {
            eprintln!("distd: error: {e}");
            return crate::exit::CONFIG;
        }
    }
    // After the credential: a launcher hands it over on the same stdin this then watches.
    if std::env::var_os(crate::sys::WATCH_STDIN_ENV).is_some() {
        // Only this process watches its stdin, not the workers it may start.
        std::env::remove_var(crate::sys::WATCH_STDIN_ENV);
        crate::sys::stop_when_stdin_closes(crate::exit::FAILURE);
    }
    match commands::dispatch(cli.command, registry) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("distd: error: {e}");
            e.exit_code()
        }
    }
}
