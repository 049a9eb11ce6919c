//! The exit statuses of every distd command, in one table: what each number means, for the
//! code that exits with it, for the nanny that reads its worker's, and for the documentation
//! (the README's "Exit status" section and every man page's EXIT STATUS are [`TABLE`]).
//!
//! Only numbers live here. Which error gets which status is decided at the edge
//! (`cli::commands::CliError::exit_code`); nothing here exits or reads anything.

/// The command did what was asked (a daemon stopped by SIGINT or SIGTERM included).
pub const SUCCESS: u8 = 0;

/// The work failed: a task failed (`distd run`), a client could not reach its scheduler or
/// lost it, a nanny gave up on a crash loop.
pub const FAILURE: u8 = 1;

/// The command line is wrong: clap's own errors (an unknown flag, a missing or malformed
/// argument), and flags that cannot go together, which distd refuses the same way.
pub const USAGE: u8 = 2;

/// A worker retired (its `--lifetime` was up) and, with `--lifetime-restart`, wants its nanny
/// to start a successor (sysexits' EX_TEMPFAIL: try again).
pub const RETIRED: u8 = 75;

/// The command cannot work as configured, and trying again unchanged would fail the same way
/// (sysexits' EX_CONFIG): a value distd refused, a port or folder it cannot use, a worker's
/// scheduler unreachable for its whole `--death-timeout`. A nanny never restarts a worker that
/// exits with it.
pub const CONFIG: u8 = 78;

/// `distd submit`: the command ran past its `--timeout` (as `timeout(1)`).
pub const TIMEOUT: u8 = 124;

/// `distd submit`: the command could not be started (as a shell's "command not found").
pub const CANNOT_START: u8 = 127;

/// `distd submit`: the command was killed by signal N; the status is this plus N (as a shell).
pub const SIGNAL_BASE: u8 = 128;

/// A row's status: one number, or a base plus a signal's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exactly(u8),
    PlusSignal(u8),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Exactly(n) => write!(f, "{n}"),
            Status::PlusSignal(n) => write!(f, "{n}+N"),
        }
    }
}

/// The table as users read it: (status, meaning). `distd submit` also exits with its
/// command's own status, which the rows for 124, 127 and 128+N complete.
pub const TABLE: &[(Status, &str)] = &[
    (
        Status::Exactly(SUCCESS),
        "success; a service (scheduler, worker, nanny, local, ssh) stopped by SIGINT or SIGTERM",
    ),
    (
        Status::Exactly(FAILURE),
        "failure: a task failed (run), a client cannot reach its scheduler, a nanny gave up on a crash loop",
    ),
    (
        Status::Exactly(USAGE),
        "usage: an unknown flag, a missing or malformed argument, flags that do not go together",
    ),
    (
        Status::Exactly(RETIRED),
        "a worker retired (--lifetime with --lifetime-restart); its nanny starts another",
    ),
    (
        Status::Exactly(CONFIG),
        "configuration: a value distd refused, a port in use, a folder it cannot create, a scheduler unreachable past --death-timeout",
    ),
    (Status::Exactly(TIMEOUT), "submit: the command timed out (--timeout)"),
    (Status::Exactly(CANNOT_START), "submit: the command cannot start"),
    (Status::PlusSignal(SIGNAL_BASE), "submit: the command was killed by signal N"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The table lists each status once, in increasing order, as users read them.
    #[test]
    fn the_table_lists_every_status_once_in_order() {
        let codes: Vec<String> = TABLE.iter().map(|(code, _)| code.to_string()).collect();
        assert_eq!(codes, ["0", "1", "2", "75", "78", "124", "127", "128+N"]);
    }

    /// Clap's usage errors exit with [`USAGE`], as distd's own refusals of a combination do.
    #[test]
    fn clap_usage_errors_are_usage() {
        let e = clap::Command::new("x")
            .try_get_matches_from(["x", "--bogus"])
            .expect_err("an unknown flag");
        assert_eq!(e.exit_code(), i32::from(USAGE));
    }

    /// The README's "Exit status" section is this table.
    #[test]
    fn the_readme_has_the_table() {
        let readme = include_str!("../README.md");
        for (status, meaning) in TABLE {
            let row = format!("| {status} | {meaning} |");
            assert!(readme.contains(&row), "README.md lacks the row {row:?}");
        }
    }
}
