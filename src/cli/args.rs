//! The command line as clap structs. They only parse text into fields; checking values
//! (durations, sizes, addresses) is the job of [`super::config`].
//!
//! No default is written here: each comes from the config type it ends up in
//! (`CoreConfig::default()`, `Policy::default()`, `local::DEFAULT_LISTEN`, ...) or, for a
//! config type without a `Default`, from [`super::config::defaults`], so the help text and
//! the library can never disagree.

use super::config::{defaults, NWorkers};
use crate::local::{DEFAULT_LISTEN, DEFAULT_THREADS_PER_WORKER};
use crate::nanny::Policy;
use crate::protocol::net::DEFAULT_PORT;
use crate::scheduler::CoreConfig;
use crate::units::{duration_flag, MEMORY_LIMIT_FORMS};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The command line as clap sees it: the derived definitions, with every subcommand's
/// `--version` printing `distd 0.1.0` (clap would name it `distd-worker`).
pub fn command() -> clap::Command {
    Cli::command().mut_subcommands(|sub| sub.display_name("distd"))
}

/// Parses this process's command line; clap prints its own errors and exits with
/// [`crate::exit::USAGE`] (0 for `--help` and `--version`).
pub fn parse<I, T>(args: I) -> Cli
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = command();
    let mut matches = cmd.clone().get_matches_from(args);
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// [`command`] without its hidden subcommands (`generate`), for the completions and man pages:
/// clap_complete would offer them. Clap cannot remove a subcommand, so the root is built again
/// around the visible ones; it has no arguments of its own to carry over.
pub fn visible_command() -> clap::Command {
    let full = command();
    debug_assert_eq!(
        full.get_arguments().count(),
        0,
        "the root's own arguments would be lost"
    );
    let mut root = clap::Command::new(full.get_name().to_string())
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .disable_help_subcommand(true);
    if let Some(about) = full.get_about() {
        root = root.about(about.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        root = root.subcommand(sub.clone());
    }
    root
}

/// The visible subcommands, the values `distd help` takes (a test checks the list).
pub const SUBCOMMANDS: &[&str] = &[
    "scheduler",
    "worker",
    "nanny",
    "local",
    "ssh",
    "submit",
    "run",
    "info",
    "restart",
    "access",
    "help",
];

/// `--memory-limit`'s long help: the table of its forms and what the limit does.
fn memory_limit_help() -> String {
    let mut help = String::from("Memory per worker, read as dask reads it:\n\n");
    for (form, meaning) in MEMORY_LIMIT_FORMS {
        help.push_str(&format!("  {form:<18} {meaning}\n"));
    }
    help.push('\n');
    help.push_str(&super::manual::memory_limit_thresholds());
    help
}

/// `--threads-per-worker`'s help, with the default it has unless `-n auto` chose one.
fn threads_per_worker_help() -> String {
    format!(
        "Threads per worker (default: {DEFAULT_THREADS_PER_WORKER}; with -n auto, chosen with the number of workers)"
    )
}

#[derive(Debug, Parser)]
#[command(
    name = "distd",
    version,
    about = "A distributed task runtime: one scheduler, many workers, task graphs of commands and functions",
    long_about = None,
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler: the one process that knows the graph and the workers
    Scheduler(SchedulerArgs),
    /// Run workers that connect to a scheduler and run its tasks, under a nanny that
    /// restarts them (unless --no-nanny)
    Worker(WorkerArgs),
    /// Run a nanny: it starts workers as its children and supervises them (as `worker`)
    #[command(mut_arg("no_nanny", |a| a.hide(true)))]
    Nanny(WorkerArgs),
    /// Run a scheduler and N workers in this process (a local cluster)
    Local(LocalArgs),
    /// Start a scheduler and nanny-supervised workers on a list of hosts over SSH
    Ssh(SshArgs),
    /// Run one command as a task on a cluster; print its output and exit with its status
    Submit(SubmitArgs),
    /// Run a graph file (TOML) on a cluster, or on a local cluster started for it
    Run(RunArgs),
    /// Show a cluster's workers and task counts
    Info(InfoArgs),
    /// Restart every nanny-supervised worker of a cluster; all tasks and results are dropped
    Restart(RestartArgs),
    /// Make access files: a cluster's credential ahead of time, or a client-only copy
    Access(AccessArgs),
    /// Print this message or the help of the given subcommand
    Help(HelpArgs),
    /// Write shell completions or man pages (used by `make completions` and `make man`)
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// How a command proves it belongs to its cluster; on every command that connects.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Security")]
pub struct SecurityArgs {
    /// Turn off TLS and authentication: anyone who can reach the ports can run commands as
    /// this user. Every process of the cluster must be given it
    #[arg(long)]
    pub no_security: bool,
    /// The cluster credential to use (an access file from a scheduler or `distd access
    /// generate`), instead of the one found by the cluster's id in the access folder; without
    /// it, DISTD_ACCESS_FILE, unless another flag here says otherwise
    #[arg(long, value_name = "FILE", conflicts_with = "no_security")]
    pub access_file: Option<PathBuf>,
    /// Your organisation's CA certificate (PEM), with --tls-cert and --tls-key: used instead
    /// of a generated credential
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["tls_cert", "tls_key"],
        conflicts_with_all = ["no_security", "access_file"]
    )]
    pub tls_ca_file: Option<PathBuf>,
    /// This process's certificate (PEM, signed by --tls-ca-file; servers' name their host)
    #[arg(long, value_name = "FILE", requires = "tls_ca_file")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM, mode 0600)
    #[arg(long, value_name = "FILE", requires = "tls_ca_file")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AccessArgs {
    #[command(subcommand)]
    pub command: AccessCommand,
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Make a new cluster credential in FILE (mode 0600), for `distd scheduler --access-file
    /// FILE` and its workers and clients on hosts without a shared home
    Generate {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Leave out the member part: the file can submit, but not join as a worker
        #[arg(long)]
        client_only: bool,
    },
    /// Copy an access file without its member part: for users who may submit but not add
    /// workers
    ClientFile {
        #[arg(value_name = "FROM")]
        from: PathBuf,
        #[arg(value_name = "TO")]
        to: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Interface to listen on (0.0.0.0 for all)
    #[arg(long, default_value = defaults::SCHEDULER_HOST)]
    pub host: String,
    /// Port to listen on (0 picks a free one)
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Write the scheduler's address to this JSON file (removed on a clean exit)
    #[arg(long, value_name = "FILE")]
    pub scheduler_file: Option<PathBuf>,
    /// Write the scheduler's process id to this file
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Exit after this long with no client and no task (e.g. 30s, 5m)
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// A task errs as "killed worker" after this many workers died running it
    #[arg(long, default_value_t = CoreConfig::default().allowed_failures, value_name = "N")]
    pub allowed_failures: u32,
    /// A worker silent for this long is considered lost
    #[arg(long, default_value = duration_flag(CoreConfig::default().heartbeat_timeout), value_name = "DURATION")]
    pub heartbeat_timeout: String,
    /// Tasks queued on a worker per thread, beyond the running ones
    #[arg(long, default_value_t = CoreConfig::default().queue_per_thread, value_name = "N")]
    pub worker_queue: u32,
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// The scheduler a command talks to: its address, or the file `distd scheduler
/// --scheduler-file` wrote (which also carries the credential).
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Scheduler address: tcp://host:port, host:port or host
    #[arg(value_name = "ADDR", required_unless_present = "scheduler_file")]
    pub address: Option<String>,
    /// Read the scheduler's address and credential from this file (written by `distd
    /// scheduler --scheduler-file`)
    #[arg(long, value_name = "FILE", conflicts_with = "address")]
    pub scheduler_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Tasks run at once per worker (default and 0: the number of cores / nworkers)
    #[arg(long, value_name = "N")]
    pub nthreads: Option<usize>,
    /// Worker processes to start (each supervised by the nanny): a number, -1 for one per
    /// core, or auto to split the cores into workers and threads as dask does
    #[arg(long, default_value_t = NWorkers::Count(defaults::NWORKERS), value_name = "N", allow_negative_numbers = true)]
    pub nworkers: NWorkers,
    /// Memory per worker: auto, 0 (none), a fraction (0.5, 1), a percentage (80%) or a size
    /// (4GiB); see --help
    #[arg(long, default_value = defaults::MEMORY_LIMIT, value_name = "LIMIT", long_help = memory_limit_help())]
    pub memory_limit: String,
    /// Grace period for a worker to stop before its nanny kills it
    #[arg(
        long,
        default_value = duration_flag(Policy::default().shutdown_timeout),
        value_name = "DURATION",
        conflicts_with = "no_nanny"
    )]
    pub shutdown_timeout: String,
    /// On SIGINT/SIGTERM, finish running tasks and hand results over before leaving
    #[arg(long)]
    pub drain: bool,
    /// Retire each worker after this long (its results are moved to other workers first)
    #[arg(long, value_name = "DURATION")]
    pub lifetime: Option<String>,
    /// Spread retirements: each worker's lifetime varies by up to this much either way
    #[arg(long, value_name = "DURATION", requires = "lifetime")]
    pub lifetime_stagger: Option<String>,
    /// Start a new worker after one retires (under a nanny)
    #[arg(long, requires = "lifetime")]
    pub lifetime_restart: bool,
    /// The nanny gives up on a crash loop: this many failures within a minute of a worker
    /// that died by itself seconds after it started (workers killed from outside or for
    /// memory are always restarted)
    #[arg(long, default_value_t = Policy::default().crash_limit, value_name = "N", conflicts_with = "no_nanny")]
    pub crash_limit: usize,
    /// The worker's name (default: HOST-PID)
    #[arg(long)]
    pub name: Option<String>,
    /// Abstract resources, e.g. "GPU=2 MEM=8e9"
    #[arg(long, value_name = "SPEC")]
    pub resources: Option<String>,
    /// Folder for scratch files (default: ~/.cache/distd)
    #[arg(long, value_name = "DIR")]
    pub local_directory: Option<PathBuf>,
    /// Address to listen on for peers, host:port (default: the interface that reaches the scheduler)
    #[arg(long, value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// Address peers should use to reach this worker, host:port
    #[arg(long, value_name = "ADDR")]
    pub contact_address: Option<String>,
    /// Give up after the scheduler is unreachable this long, at start or later; it covers the
    /// whole connect (resolving, connecting, the handshake, registering)
    #[arg(long, default_value = duration_flag(defaults::DEATH_TIMEOUT), value_name = "DURATION")]
    pub death_timeout: String,
    /// Run the worker in this process, without a nanny (one worker only)
    #[arg(long, conflicts_with = "nworkers")]
    pub no_nanny: bool,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Number of workers (default and -1: the number of cores; auto: as `distd worker`)
    #[arg(short = 'n', long = "nworkers", value_name = "N", allow_negative_numbers = true)]
    pub nworkers: Option<NWorkers>,
    #[arg(long, value_name = "T", help = threads_per_worker_help())]
    pub threads_per_worker: Option<usize>,
    /// Interface the scheduler listens on
    #[arg(long, default_value_t = DEFAULT_LISTEN.ip().to_string())]
    pub host: String,
    /// Scheduler port (0 picks a free one)
    #[arg(long, default_value_t = DEFAULT_LISTEN.port())]
    pub port: u16,
    /// Folder for the workers' scratch files
    #[arg(long, value_name = "DIR")]
    pub local_directory: Option<PathBuf>,
    /// Run this graph file on the cluster, then exit
    #[arg(long, value_name = "GRAPH")]
    pub run: Option<PathBuf>,
    /// Run the workers as separate processes under a nanny, not as threads of this one
    #[arg(long)]
    pub processes: bool,
    /// With --run: never draw a progress bar
    #[arg(long, requires = "run")]
    pub no_progress: bool,
    /// With --run: wait for a worker that can run a task that no worker can (a resource, a
    /// worker name), instead of failing at once
    #[arg(long, requires = "run")]
    pub wait_for_workers: bool,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Args)]
#[command(after_long_help = SUBMIT_HELP)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The task's key (default: a unique one)
    #[arg(long)]
    pub key: Option<String>,
    /// Kill the command after this long
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Working directory of the command on the worker
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Extra environment variable for the command, NAME=VALUE (repeatable)
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Do not read stdin: the command's stdin is /dev/null (as with `ssh -n`)
    #[arg(short = 'n', long)]
    pub no_stdin: bool,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// What `distd submit --help` says about the command's streams and the exit status.
const SUBMIT_HELP: &str = "\
The command's stdout is printed to stdout, whole, and its stderr to stderr (its last 1 MiB), \
whether it succeeds or fails; a failure then ends with one line, `distd: task KEY failed: ...`, \
that says how. When stdin is not a terminal it is read to its end and becomes the command's \
stdin (--no-stdin: it is not read, and the command reads /dev/null, as from a terminal).

Exit status: the command's own; 124 when --timeout killed it; 127 when it cannot start (no such \
program, a --cwd that is not a directory); 128+N when a signal N killed it; 1 when the task \
failed otherwise.";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The graph file (TOML)
    #[arg(value_name = "GRAPH")]
    pub graph: PathBuf,
    /// Run on this cluster instead of starting a local one
    #[arg(long, value_name = "ADDR")]
    pub scheduler: Option<String>,
    /// Run on the cluster whose scheduler wrote this file (`distd scheduler --scheduler-file`);
    /// it also carries the credential
    #[arg(long, value_name = "FILE", conflicts_with = "scheduler")]
    pub scheduler_file: Option<PathBuf>,
    /// Workers of the local cluster (default and -1: the number of cores; auto: as `distd
    /// worker`)
    #[arg(
        short = 'n',
        long = "nworkers",
        value_name = "N",
        allow_negative_numbers = true,
        conflicts_with_all = ["scheduler", "scheduler_file"]
    )]
    pub nworkers: Option<NWorkers>,
    #[arg(long, value_name = "T", help = threads_per_worker_help(), conflicts_with_all = ["scheduler", "scheduler_file"])]
    pub threads_per_worker: Option<usize>,
    /// Never draw a progress bar
    #[arg(long)]
    pub no_progress: bool,
    /// Wait for a worker that can run a task that no connected worker can (a resource, a
    /// worker name), instead of failing at once naming the task and what it needs
    #[arg(long)]
    pub wait_for_workers: bool,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// Host patterns: user@host:port, [v6], node{1..4}, 10.0.0.{1,2}, node[01-16,20], 10.0.0.<1,2>
    #[arg(value_name = "HOST", required_unless_present = "hostfile")]
    pub hosts: Vec<String>,
    /// Read host patterns from this file (one per line, # comments)
    #[arg(long, value_name = "FILE")]
    pub hostfile: Option<PathBuf>,
    /// Host of the scheduler (default: the first host)
    #[arg(long, value_name = "HOST")]
    pub scheduler: Option<String>,
    /// Scheduler port (0 picks a free one)
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub scheduler_port: u16,
    /// Threads per worker (default: the remote cores / nworkers)
    #[arg(long, default_value_t = defaults::SSH_NTHREADS, value_name = "N")]
    pub nthreads: usize,
    /// Worker processes per host
    #[arg(long, default_value_t = NWorkers::Count(defaults::NWORKERS), value_name = "N", allow_negative_numbers = true)]
    pub nworkers: NWorkers,
    /// Memory per worker (as `distd worker --memory-limit`; see --help)
    #[arg(long, default_value = defaults::MEMORY_LIMIT, value_name = "LIMIT", long_help = memory_limit_help())]
    pub memory_limit: String,
    /// User name for SSH
    #[arg(long, value_name = "USER")]
    pub ssh_username: Option<String>,
    /// SSH port
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,
    /// SSH private key
    #[arg(long, value_name = "FILE")]
    pub ssh_private_key: Option<PathBuf>,
    /// An ssh configuration file to use instead of ~/.ssh/config (ssh -F)
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// The distd to run on the hosts (its version must equal this one's)
    #[arg(long, default_value = defaults::SSH_REMOTE_DISTD, value_name = "PATH", conflicts_with = "upload")]
    pub remote_distd: String,
    /// Copy this distd binary to each host (checksummed; reused when already there)
    #[arg(long)]
    pub upload: bool,
    /// With --upload: where the binary goes on each host (relative to the remote home)
    #[arg(long, default_value = defaults::SSH_REMOTE_DIR, value_name = "DIR", requires = "upload")]
    pub remote_dir: String,
    /// Scratch folder of the workers on each host
    #[arg(long, value_name = "DIR")]
    pub local_directory: Option<String>,
    /// Also write every remote process's output to files in this local folder
    #[arg(long, value_name = "DIR")]
    pub log_directory: Option<PathBuf>,
    /// Give up on a host that does not answer within this long
    #[arg(long, default_value = duration_flag(crate::ssh::DEFAULT_CONNECT_TIMEOUT), value_name = "DURATION")]
    pub connect_timeout: String,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Args)]
pub struct HelpArgs {
    /// The subcommand to describe (default: distd itself)
    #[arg(value_name = "COMMAND", value_parser = clap::builder::PossibleValuesParser::new(SUBCOMMANDS))]
    pub command: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Generated {
    Completions,
    Man,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[arg(value_enum)]
    pub what: Generated,
    /// Folder to write into
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `distd help` offers exactly the visible subcommands.
    #[test]
    fn help_knows_every_visible_subcommand() {
        let cmd = visible_command();
        let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
        assert_eq!(names, SUBCOMMANDS);
        assert!(command()
            .get_subcommands()
            .any(|s| s.get_name() == "generate" && s.is_hide_set()));
    }

    /// Regression: `distd worker --version` printed `distd-worker 0.1.0`.
    #[test]
    fn every_version_is_distds() {
        let mut cmd = command();
        cmd.build();
        for sub in cmd.get_subcommands() {
            assert_eq!(sub.render_version(), format!("distd {}\n", env!("CARGO_PKG_VERSION")));
        }
    }
}
