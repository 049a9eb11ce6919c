//! The credential of a command: read once, before anything dials or listens, into the
//! process's keyring (`protocol::security::keyring`); and `distd access generate`.
//!
//! In order: `--no-security`; a credential handed over stdin (by `distd ssh` or a nanny:
//! `DISTD_ACCESS_STDIN=1`); `--access-file F`; the TLS flags (an organisation's CA and this
//! process's certificate); a `--scheduler-file` that carries one; then `DISTD_ACCESS_FILE`
//! (the environment is below every flag). With none of them, a dialer looks the credential up by the cluster id its peer names, in
//! the access folder, and a scheduler makes a new one.

use super::args::{AccessArgs, AccessCommand, SecurityArgs};
use crate::protocol::access::{self, AccessError};
use crate::protocol::security::{keyring, Credential, Identity, SecurityError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a command's credential could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AccessSetupError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("{flag} {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag}: {source}")]
    Credential { flag: &'static str, source: SecurityError },
    #[error("{ACCESS_FILE_ENV}: {source}")]
    FromEnvironment { source: AccessError },
    #[error("--scheduler-file {}: its access part: {reason}", path.display())]
    SchedulerFile { path: PathBuf, reason: String },
}

/// Puts what the flags say into the keyring. `scheduler_file` is the command's
/// `--scheduler-file`, if it reads one.
pub fn prepare(args: &SecurityArgs, scheduler_file: Option<&Path>) -> Result<(), AccessSetupError> {
    if args.no_security {
        keyring::set_insecure(true);
        log::warn!("--no-security: connections are neither authenticated nor encrypted");
        return Ok(());
    }
    if std::env::var_os(access::STDIN_ENV).is_some() {
        // Only this process reads its stdin so, not the workers it may start.
        std::env::remove_var(access::STDIN_ENV);
        let credential = access::read_handoff(&mut std::io::stdin().lock())?;
        keyring::set_given(Arc::new(credential));
        return Ok(());
    }
    if let Some(path) = &args.access_file {
        keyring::set_given(Arc::new(access::read(path)?));
        return Ok(());
    }
    if let (Some(ca), Some(cert), Some(key)) = (&args.tls_ca_file, &args.tls_cert, &args.tls_key) {
        let read = |flag: &'static str, path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| AccessSetupError::Read {
                flag,
                path: path.clone(),
                source,
            })
        };
        if let Err(e) = access::check_mode(key) {
            return Err(e.into());
        }
        let own = Identity {
            cert_pem: read("--tls-cert", cert)?,
            key_pem: read("--tls-key", key)?,
        };
        let credential =
            Credential::enterprise(read("--tls-ca-file", ca)?, own).map_err(|source| AccessSetupError::Credential {
                flag: "--tls-ca-file",
                source,
            })?;
        keyring::set_given(Arc::new(credential));
        return Ok(());
    }
    if let Some(path) = scheduler_file {
        if let Some(credential) = from_scheduler_file(path)? {
            keyring::set_given(Arc::new(credential));
            return Ok(());
        }
    }
    // The environment's access file, below every flag (flag > environment).
    if let Some(path) = std::env::var_os(ACCESS_FILE_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let credential = access::read(&path).map_err(|source| AccessSetupError::FromEnvironment { source })?;
        keyring::set_given(Arc::new(credential));
    }
    Ok(())
}

/// The environment variable that names an access file, as `--access-file` does.
pub const ACCESS_FILE_ENV: &str = "DISTD_ACCESS_FILE";

/// The credential a scheduler file carries (under `access`), if it carries one.
fn from_scheduler_file(path: &Path) -> Result<Option<Credential>, AccessSetupError> {
    let fail = |reason: String| AccessSetupError::SchedulerFile {
        path: path.to_path_buf(),
        reason,
    };
    // Its address is read (and a missing file reported) where the address is needed.
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(None);
    };
    let Some(fields) = v.get("access") else {
        return Ok(None);
    };
    access::check_mode(path)?;
    let fields: access::AccessFields = serde_json::from_value(fields.clone()).map_err(|e| fail(e.to_string()))?;
    fields.credential().map(Some).map_err(fail)
}

/// The JSON value a scheduler file carries its credential in.
pub fn scheduler_file_part(c: &Credential) -> serde_json::Value {
    serde_json::to_value(access::AccessFields::of(c)).unwrap_or(serde_json::Value::Null)
}

/// Saves a cluster's credential in the access folder, where this user's clients and workers
/// on this machine (or a shared home) find it; returns its path, removed when dropped.
pub fn publish(c: &Credential) -> Result<Published, AccessError> {
    let path = access::save(c, &keyring::access_dir())?;
    log::info!("access file: {}", path.display());
    Ok(Published(path))
}

/// [`publish`]es `c` if this process made it: a given credential is already where its owner
/// keeps it.
pub fn publish_made_here(c: Option<&Credential>) -> Result<Option<Published>, AccessError> {
    match keyring::given() {
        Some(_) => Ok(None),
        None => c.map(publish).transpose(),
    }
}

/// An access file that a running cluster published; removed with the cluster.
pub struct Published(PathBuf);

impl Drop for Published {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `distd access ...`.
pub fn access_command(args: AccessArgs) -> Result<u8, AccessSetupError> {
    match args.command {
        AccessCommand::Generate { file, client_only } => {
            let c = Credential::generate().map_err(|source| AccessSetupError::Credential {
                flag: "generate",
                source,
            })?;
            let c = match client_only {
                true => c.client_only().map_err(|source| AccessSetupError::Credential {
                    flag: "--client-only",
                    source,
                })?,
                false => c,
            };
            access::write_private(&file, &access::encode(&c))?;
            println!("{}: access file of cluster {}", file.display(), c.id());
            Ok(crate::exit::SUCCESS)
        }
        AccessCommand::ClientFile { from, to } => {
            let c = access::read(&from)?
                .client_only()
                .map_err(|source| AccessSetupError::Credential {
                    flag: "client-file",
                    source,
                })?;
            access::write_private(&to, &access::encode(&c))?;
            println!("{}: client access file of cluster {}", to.display(), c.id());
            Ok(crate::exit::SUCCESS)
        }
    }
}
