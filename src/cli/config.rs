//! Turns parsed arguments into validated configs: durations and sizes parsed, addresses
//! checked and resolved, files read. Nothing here opens a socket; every error names the flag
//! or file that was wrong.

use super::args::{LocalArgs, SchedulerArgs, WorkerArgs};
use crate::client::strip_scheme;
use crate::local::{default_local_dir, LocalClusterConfig};
use crate::scheduler::{CoreConfig, SchedulerConfig};
use crate::units::{parse_duration, UnitError};
use crate::worker::{Registry, WorkerConfig};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default scheduler port, as dask's.
pub const DEFAULT_PORT: u16 = 8786;

/// A bad flag, file or value, reported as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for {flag}: {source}")]
    Unit {
        flag: &'static str,
        source: UnitError,
    },
    #[error("invalid value for {flag}: {reason}")]
    Value { flag: &'static str, reason: String },
    #[error("cannot read scheduler file {path}: {reason}")]
    SchedulerFile { path: String, reason: String },
}

fn duration(flag: &'static str, s: &str) -> Result<Duration, ConfigError> {
    parse_duration(s).map_err(|source| ConfigError::Unit { flag, source })
}

/// Checks an address `tcp://host:port`, `host:port`, `[v6]:port` or `host` and returns
/// `host:port` (the port defaulting to `default_port`). It is not resolved here, so that a
/// name is looked up again on every connection attempt.
pub fn parse_address(
    flag: &'static str,
    s: &str,
    default_port: u16,
) -> Result<String, ConfigError> {
    let bad = |reason: String| ConfigError::Value { flag, reason };
    if let Some((scheme, _)) = s.split_once("://") {
        if scheme != "tcp" {
            return Err(bad(format!("{s:?}: only tcp:// addresses are supported")));
        }
    }
    let rest = strip_scheme(s).trim_end_matches('/');
    if rest.is_empty() {
        return Err(bad("empty address".into()));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad(format!("{s:?}: unclosed '[' in an IPv6 address")))?;
        match after.strip_prefix(':') {
            Some(p) => (format!("[{h}]"), Some(p)),
            None if after.is_empty() => (format!("[{h}]"), None),
            None => {
                return Err(bad(format!(
                    "{s:?}: unexpected {after:?} after the IPv6 address"
                )))
            }
        }
    } else if rest.matches(':').count() > 1 {
        (format!("[{rest}]"), None)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(bad(format!("{s:?}: bad host name")));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(bad(format!(
                    "{s:?}: port {p:?} is not a number from 1 to 65535"
                )))
            }
        },
    };
    Ok(format!("{host}:{port}"))
}

/// Resolves `host:port` now (for addresses this process binds).
pub fn resolve(flag: &'static str, addr: &str) -> Result<SocketAddr, ConfigError> {
    addr.to_socket_addrs()
        .map_err(|e| ConfigError::Value {
            flag,
            reason: format!("cannot resolve {addr:?}: {e}"),
        })?
        .next()
        .ok_or_else(|| ConfigError::Value {
            flag,
            reason: format!("{addr:?} resolves to no address"),
        })
}

/// `"GPU=2 MEM=8e9"` (spaces or commas between) into named amounts.
pub fn parse_resources(flag: &'static str, s: &str) -> Result<Vec<(String, f64)>, ConfigError> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for item in s
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|x| !x.is_empty())
    {
        let bad = |why: &str| ConfigError::Value {
            flag,
            reason: format!("{item:?}: {why}; expected NAME=AMOUNT, e.g. \"GPU=2 MEM=8e9\""),
        };
        let (name, amount) = item.split_once('=').ok_or_else(|| bad("no '='"))?;
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        let amount: f64 = amount.parse().map_err(|_| bad("amount is not a number"))?;
        if !amount.is_finite() || amount < 0.0 {
            return Err(bad("amount must be a finite number >= 0"));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad("named twice"));
        }
        out.push((name.to_string(), amount));
    }
    Ok(out)
}

/// What `distd scheduler` runs with.
pub struct SchedulerSetup {
    pub config: SchedulerConfig,
    pub scheduler_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
}

pub fn scheduler(args: &SchedulerArgs) -> Result<SchedulerSetup, ConfigError> {
    let host = parse_address("--host", &args.host, args.port)?;
    let listen = resolve("--host", &host)?;
    let listen = SocketAddr::new(listen.ip(), args.port);
    let idle_timeout = args
        .idle_timeout
        .as_deref()
        .map(|s| duration("--idle-timeout", s))
        .transpose()?;
    let heartbeat_timeout = duration("--heartbeat-timeout", &args.heartbeat_timeout)?;
    if heartbeat_timeout < Duration::from_millis(500) {
        return Err(ConfigError::Value {
            flag: "--heartbeat-timeout",
            reason: "must be at least 500ms".into(),
        });
    }
    Ok(SchedulerSetup {
        config: SchedulerConfig {
            listen,
            core: CoreConfig {
                allowed_failures: args.allowed_failures,
                heartbeat_timeout,
                heartbeat_interval: (heartbeat_timeout / 5).min(Duration::from_secs(1)),
                ..CoreConfig::default()
            },
            idle_timeout,
        },
        scheduler_file: args.scheduler_file.clone(),
        pid_file: args.pid_file.clone(),
    })
}

/// Reads the address from a scheduler file.
pub fn read_scheduler_file(path: &Path) -> Result<String, ConfigError> {
    let fail = |reason: String| ConfigError::SchedulerFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let addr = v
        .get("address")
        .and_then(|a| a.as_str())
        .ok_or_else(|| fail("no \"address\" field".into()))?;
    parse_address("--scheduler-file", addr, DEFAULT_PORT)
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn worker(args: &WorkerArgs) -> Result<WorkerConfig, ConfigError> {
    let scheduler = match (&args.address, &args.scheduler_file) {
        (Some(a), _) => parse_address("ADDR", a, DEFAULT_PORT)?,
        (None, Some(f)) => read_scheduler_file(f)?,
        (None, None) => {
            return Err(ConfigError::Value {
                flag: "ADDR",
                reason: "give a scheduler address or --scheduler-file".into(),
            })
        }
    };
    let nthreads = match args.nthreads {
        Some(0) => {
            return Err(ConfigError::Value {
                flag: "--nthreads",
                reason: "must be at least 1".into(),
            })
        }
        Some(n) => n,
        None => default_threads(),
    };
    let listen = args
        .listen_address
        .as_deref()
        .map(|a| {
            parse_address("--listen-address", a, 0).and_then(|a| resolve("--listen-address", &a))
        })
        .transpose()?;
    let contact_address = args
        .contact_address
        .as_deref()
        .map(|a| parse_address("--contact-address", a, 0))
        .transpose()?;
    if let Some(c) = &contact_address {
        if c.ends_with(":0") {
            return Err(ConfigError::Value {
                flag: "--contact-address",
                reason: format!("{c:?} needs a port"),
            });
        }
    }
    Ok(WorkerConfig {
        scheduler,
        nthreads,
        name: args.name.clone(),
        resources: args
            .resources
            .as_deref()
            .map(|r| parse_resources("--resources", r))
            .transpose()?
            .unwrap_or_default(),
        local_dir: args
            .local_directory
            .clone()
            .unwrap_or_else(default_local_dir),
        listen,
        contact_address,
        death_timeout: duration("--death-timeout", &args.death_timeout)?,
        memory_limit: 0,
    })
}

pub fn local(args: &LocalArgs, registry: Registry) -> Result<LocalClusterConfig, ConfigError> {
    let host = parse_address("--host", &args.host, args.port)?;
    let listen = resolve("--host", &host)?;
    if args.threads_per_worker == 0 {
        return Err(ConfigError::Value {
            flag: "--threads-per-worker",
            reason: "must be at least 1".into(),
        });
    }
    Ok(LocalClusterConfig {
        workers: args.nworkers.unwrap_or_else(default_threads),
        threads_per_worker: args.threads_per_worker,
        listen: SocketAddr::new(listen.ip(), args.port),
        local_dir: args
            .local_directory
            .clone()
            .unwrap_or_else(default_local_dir),
        registry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_accept_the_usual_forms() {
        assert_eq!(parse_address("A", "tcp://h:1", 9).unwrap(), "h:1");
        assert_eq!(parse_address("A", "h", 9).unwrap(), "h:9");
        assert_eq!(parse_address("A", "[::1]:5", 9).unwrap(), "[::1]:5");
        assert_eq!(parse_address("A", "::1", 9).unwrap(), "[::1]:9");
    }

    #[test]
    fn bad_addresses_name_the_flag_and_the_value() {
        let e = parse_address("ADDR", "h:99999", 9).unwrap_err().to_string();
        assert!(e.contains("ADDR") && e.contains("99999"), "{e}");
        let e = parse_address("ADDR", "tls://h:1", 9)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tcp://"), "{e}");
    }

    #[test]
    fn resources_parse_and_reject() {
        assert_eq!(
            parse_resources("R", "GPU=2 MEM=8e9").unwrap(),
            vec![("GPU".into(), 2.0), ("MEM".into(), 8e9)]
        );
        assert!(parse_resources("R", "GPU")
            .unwrap_err()
            .to_string()
            .contains("\"GPU\""));
        assert!(parse_resources("R", "GPU=-1").is_err());
    }
}
