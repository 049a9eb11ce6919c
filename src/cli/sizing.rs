//! How big the workers are: `--nworkers` (a count, `-1`, `auto`) and `--memory-limit` (dask's
//! forms), turned into numbers on this machine. The forms are dask's, so that what dask users
//! type means the same; every refusal names the flag. Nothing here starts anything.

use super::config::{default_threads, defaults, ConfigError};
use crate::units::MemoryLimit;

/// `--nworkers` as typed: a count, `-1` (one worker per core) or `auto`, dask-worker's forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NWorkers {
    Count(usize),
    /// `-1`: as many workers as cores.
    PerCore,
    /// `auto`: dask's split of the cores into workers and threads ([`auto_split`]).
    Auto,
}

/// A `--nworkers` that is none of its forms.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a number of workers: give a count, -1 (one worker per core) or auto")]
pub struct NWorkersError(String);

impl std::str::FromStr for NWorkers {
    type Err = NWorkersError;

    fn from_str(s: &str) -> Result<NWorkers, NWorkersError> {
        match s.trim() {
            t if t.eq_ignore_ascii_case("auto") => Ok(NWorkers::Auto),
            "-1" => Ok(NWorkers::PerCore),
            t => t.parse().map(NWorkers::Count).map_err(|_| NWorkersError(s.to_string())),
        }
    }
}

impl std::fmt::Display for NWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NWorkers::Count(n) => write!(f, "{n}"),
            NWorkers::PerCore => f.write_str("-1"),
            NWorkers::Auto => f.write_str("auto"),
        }
    }
}

impl NWorkers {
    /// How many workers on `cores` cores, and how many threads each when `auto` chose them.
    pub fn resolve(self, cores: usize) -> (usize, Option<usize>) {
        match self {
            NWorkers::Count(n) => (n, None),
            NWorkers::PerCore => (cores, None),
            NWorkers::Auto => {
                let (workers, threads) = auto_split(cores);
                (workers, Some(threads))
            }
        }
    }
}

/// dask's `nprocesses_nthreads`, what `dask worker --nworkers auto` starts on `cores` cores:
/// up to 4 cores, a single-threaded worker per core; beyond, the fewest workers (the smallest
/// divisor of `cores` that is at least its square root) with `cores / workers` threads each,
/// so 32 cores are 8 workers of 4 threads.
pub fn auto_split(cores: usize) -> (usize, usize) {
    let cores = cores.max(1);
    let workers = if cores <= 4 {
        cores
    } else {
        (1..=cores)
            .find(|&d| cores.is_multiple_of(d) && d * d >= cores)
            .unwrap_or(cores)
    };
    (workers, cores / workers)
}

/// `--memory-limit` in bytes (0 for none) for a worker of `nthreads` threads on this machine:
/// see [`crate::units::parse_memory_limit`] for the forms. A limit a worker could not run under
/// (below [`defaults::MIN_MEMORY_LIMIT`]) is refused; one above the machine's memory is lowered
/// to it with a warning, as dask does.
pub fn parse_memory_limit(flag: &'static str, s: &str, nthreads: usize) -> Result<u64, ConfigError> {
    let limit = memory_limit(flag, s)?;
    let total = crate::sys::total_memory();
    if total == 0 && matches!(limit, MemoryLimit::Fraction(_)) {
        log::warn!("this machine's memory is unknown: {flag} {s} sets no limit");
        return Ok(0);
    }
    let bytes = limit.bytes(total, default_threads(), nthreads);
    // `auto` is the default: a machine it leaves too little memory on is no mistake of the
    // user's (the worker warns when it pauses).
    if matches!(limit, MemoryLimit::Fraction(_)) && bytes < defaults::MIN_MEMORY_LIMIT {
        return Err(too_small(flag, s, limit, bytes));
    }
    if bytes > total && total > 0 {
        log::warn!(
            "{flag} {s} is more than this machine's {} of memory; using that",
            crate::units::format_bytes(total)
        );
        return Ok(total);
    }
    Ok(bytes)
}

/// `--memory-limit` parsed, and refused when its size alone is too small to run under (a
/// fraction is checked once the machine is known).
pub(super) fn memory_limit(flag: &'static str, s: &str) -> Result<MemoryLimit, ConfigError> {
    let limit = crate::units::parse_memory_limit(s).map_err(|source| ConfigError::Unit { flag, source })?;
    if let MemoryLimit::Bytes(b) = limit {
        if b < defaults::MIN_MEMORY_LIMIT {
            return Err(too_small(flag, s, limit, b));
        }
    }
    Ok(limit)
}

fn too_small(flag: &'static str, s: &str, limit: MemoryLimit, bytes: u64) -> ConfigError {
    let floor = crate::units::format_bytes(defaults::MIN_MEMORY_LIMIT);
    let hint = match limit {
        // The dask user's trap: above 1, a bare number is bytes.
        MemoryLimit::Bytes(_) if !s.trim().ends_with(|c: char| c.is_ascii_alphabetic()) => {
            "; a number above 1 is bytes (as in dask): for a share of memory write a fraction up to 1 or a percentage such as 80%"
        }
        _ => "",
    };
    ConfigError::Value {
        flag,
        reason: format!(
            "{s:?} is {}, less than the {floor} a worker needs to run a task{hint}",
            crate::units::format_bytes(bytes)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dask's own examples of `nprocesses_nthreads`, and the shapes between.
    #[test]
    fn auto_splits_the_cores_as_dask_does() {
        assert_eq!(auto_split(4), (4, 1));
        assert_eq!(auto_split(32), (8, 4));
        assert_eq!(auto_split(1), (1, 1));
        assert_eq!(auto_split(2), (2, 1));
        assert_eq!(auto_split(6), (3, 2));
        assert_eq!(auto_split(7), (7, 1));
        assert_eq!(auto_split(12), (4, 3));
        assert_eq!(auto_split(16), (4, 4));
        assert_eq!(auto_split(0), (1, 1));
    }

    #[test]
    fn nworkers_take_a_count_minus_one_or_auto() {
        assert_eq!("3".parse::<NWorkers>().ok(), Some(NWorkers::Count(3)));
        assert_eq!("0".parse::<NWorkers>().ok(), Some(NWorkers::Count(0)));
        assert_eq!("-1".parse::<NWorkers>().ok(), Some(NWorkers::PerCore));
        assert_eq!("auto".parse::<NWorkers>().ok(), Some(NWorkers::Auto));
        assert_eq!("Auto".parse::<NWorkers>().ok(), Some(NWorkers::Auto));
        for bad in ["-2", "-0.5", "1.5", "many", ""] {
            let e = bad.parse::<NWorkers>().expect_err(bad).to_string();
            assert!(e.contains("-1 (one worker per core) or auto"), "{bad:?}: {e}");
        }
        for n in [NWorkers::Count(2), NWorkers::PerCore, NWorkers::Auto] {
            assert_eq!(n.to_string().parse::<NWorkers>().ok(), Some(n), "{n}");
        }
        assert_eq!(NWorkers::Count(2).resolve(8), (2, None));
        assert_eq!(NWorkers::PerCore.resolve(8), (8, None));
        assert_eq!(NWorkers::Auto.resolve(32), (8, Some(4)));
    }

    #[test]
    fn memory_limits_below_what_a_worker_needs_are_refused() {
        let e = parse_memory_limit("--memory-limit", "2.0", 1)
            .expect_err("two bytes")
            .to_string();
        assert!(
            e.starts_with("invalid value for --memory-limit: \"2.0\" is 2 B, less than the 32.0 MiB"),
            "{e}"
        );
        assert!(e.contains("a number above 1 is bytes (as in dask)"), "{e}");
        let e = parse_memory_limit("--memory-limit", "1MiB", 1)
            .expect_err("one MiB")
            .to_string();
        assert!(!e.contains("above 1"), "a size with a unit needs no hint: {e}");
        assert_eq!(parse_memory_limit("--memory-limit", "0", 1).ok(), Some(0));
        assert_eq!(parse_memory_limit("--memory-limit", "64MiB", 1).ok(), Some(64 << 20));
    }

    /// Regression: `--memory-limit 1` meant one byte; as in dask it is all of the memory.
    #[test]
    fn one_is_all_of_the_memory() {
        let total = crate::sys::total_memory();
        assert_eq!(parse_memory_limit("--memory-limit", "1", 1).ok(), Some(total));
        assert_eq!(parse_memory_limit("--memory-limit", "1.0", 1).ok(), Some(total));
        assert_eq!(parse_memory_limit("--memory-limit", "100%", 1).ok(), Some(total));
        // More than there is is lowered to what there is, as dask does.
        let twice = (2 * total).to_string();
        assert_eq!(parse_memory_limit("--memory-limit", &twice, 1).ok(), Some(total));
    }
}
