//! Access files: a cluster credential as TOML with PEM strings, readable by its owner only.
//!
//! A scheduler writes its credential to `DATA_DIR/access/ID.toml` (mode 0600, in a folder of
//! mode 0700) and into its `--scheduler-file`; `distd access generate F` writes one ahead of
//! time. A file that others may read or write is refused, naming it and its mode. The same
//! text travels over a pipe (`distd ssh` to remote processes, a nanny to its workers), ended
//! by [`END_LINE`], never in argv.

use super::security::{Credential, Identity, Naming, SecurityError};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Ends an access file sent over a pipe, so the reader knows where it stops.
pub const END_LINE: &str = "# end of distd access";

/// Set (to 1) in the environment of a process whose stdin starts with an access file.
pub const STDIN_ENV: &str = "DISTD_ACCESS_STDIN";

/// Why an access file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read access file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write access file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "access file {} has mode {mode:04o}: others may read it; it must be its owner's alone (chmod 600 {})",
        path.display(),
        path.display()
    )]
    Loose { path: PathBuf, mode: u32 },
    #[error("access file {} is not one: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("access file {}: {source}", path.display())]
    Credential { path: PathBuf, source: SecurityError },
}

/// The fields of an access file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessFields {
    /// The cluster id, for the reader (it is recomputed from `ca`).
    pub cluster: String,
    /// `cluster` for a generated credential, `host` for an organisation's certificates.
    #[serde(default = "cluster_naming")]
    pub naming: String,
    pub ca: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_key: Option<String>,
    pub client_cert: String,
    pub client_key: String,
    /// In a published file, the process that published it: `HOST PID`. A later publisher on
    /// that host removes the file if that process is gone (it was killed, so never removed
    /// its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_by: Option<String>,
}

fn cluster_naming() -> String {
    "cluster".into()
}

impl AccessFields {
    pub fn of(c: &Credential) -> AccessFields {
        AccessFields {
            cluster: c.id().to_string(),
            naming: match c.naming() {
                Naming::Cluster => "cluster".into(),
                Naming::Host => "host".into(),
            },
            ca: c.ca_pem().to_string(),
            member_cert: c.member().map(|m| m.cert_pem.clone()),
            member_key: c.member().map(|m| m.key_pem.clone()),
            client_cert: c.client().cert_pem.clone(),
            client_key: c.client().key_pem.clone(),
            published_by: None,
        }
    }

    /// The credential these fields describe; `Err` names what is wrong.
    pub fn credential(self) -> Result<Credential, String> {
        let naming = match self.naming.as_str() {
            "cluster" => Naming::Cluster,
            "host" => Naming::Host,
            other => return Err(format!("naming = {other:?}: expected \"cluster\" or \"host\"")),
        };
        let member = match (self.member_cert, self.member_key) {
            (Some(cert_pem), Some(key_pem)) => Some(Identity { cert_pem, key_pem }),
            (None, None) => None,
            _ => return Err("member_cert and member_key go together".into()),
        };
        let client = Identity {
            cert_pem: self.client_cert,
            key_pem: self.client_key,
        };
        let c = Credential::new(self.ca, member, client, naming).map_err(|e| e.to_string())?;
        if c.id().as_str() != self.cluster {
            return Err(format!(
                "cluster = {:?}, but its ca is cluster {}",
                self.cluster,
                c.id()
            ));
        }
        Ok(c)
    }
}

/// The text of an access file for `c`.
pub fn encode(c: &Credential) -> String {
    encode_fields(c, AccessFields::of(c))
}

fn encode_fields(c: &Credential, fields: AccessFields) -> String {
    let body = toml::to_string(&fields).expect("access fields are plain strings");
    format!(
        "# distd access file of cluster {}: whoever holds it may use the cluster. Keep it secret.\n{body}",
        c.id()
    )
}

/// The credential in access-file `text` read from `path` (named in errors).
pub fn parse(text: &str, path: &Path) -> Result<Credential, AccessError> {
    let fields: AccessFields = toml::from_str(text).map_err(|e| AccessError::Parse {
        path: path.to_path_buf(),
        reason: e.message().to_string(),
    })?;
    fields.credential().map_err(|reason| AccessError::Parse {
        path: path.to_path_buf(),
        reason,
    })
}

/// Refuses a file that anyone but its owner may read or write.
pub fn check_mode(path: &Path) -> Result<(), AccessError> {
    let meta = std::fs::metadata(path).map_err(|source| AccessError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(AccessError::Loose {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Reads the access file at `path`, refusing one with loose permissions.
pub fn read(path: &Path) -> Result<Credential, AccessError> {
    check_mode(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Writes `text` to `path` with mode 0600 (through a temporary file and a rename, so no
/// reader sees half a file and no moment has looser permissions), creating its folder with
/// mode 0700 if it is missing.
pub fn write_private(path: &Path, text: &str) -> Result<(), AccessError> {
    let fail = |source| AccessError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(fail)?;
        }
    }
    crate::sys::write_replacing(path, text.as_bytes(), 0o600).map_err(fail)
}

/// Writes the access file of `c` into `dir` (the keyring's access folder), as `ID.toml`,
/// making sure the folder is its owner's alone; returns its path.
pub fn save(c: &Credential, dir: &Path) -> Result<PathBuf, AccessError> {
    let fail = |source| AccessError::Write {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    sweep_abandoned(dir);
    let path = dir.join(format!("{}.toml", c.id()));
    let mut fields = AccessFields::of(c);
    fields.published_by = Some(publisher(&crate::sys::hostname(), std::process::id()));
    write_private(&path, &encode_fields(c, fields))?;
    Ok(path)
}

fn publisher(host: &str, pid: u32) -> String {
    format!("{host} {pid}")
}

/// Removes the access files in `dir` that a process of this host published and that
/// process is gone: a scheduler that was killed could not remove its own. Files of other
/// hosts (a shared home), of live processes and made by hand are kept.
fn sweep_abandoned(dir: &Path) {
    #[derive(Deserialize)]
    struct Published {
        published_by: Option<String>,
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let host = crate::sys::hostname();
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let Some(by) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| toml::from_str::<Published>(&text).ok())
            .and_then(|p| p.published_by)
        else {
            continue;
        };
        let Some((h, pid)) = by.rsplit_once(' ').and_then(|(h, p)| Some((h, p.parse::<u32>().ok()?))) else {
            continue;
        };
        if h == host && !crate::sys::process_exists(pid) {
            log::info!("removing {}: its scheduler (pid {pid}) is gone", path.display());
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The bytes that hand `c` over a pipe: the access file, then [`END_LINE`].
pub fn handoff(c: &Credential) -> Vec<u8> {
    format!("{}{END_LINE}\n", encode(c)).into_bytes()
}

/// Reads a handed-over access file from `input` up to [`END_LINE`], leaving what follows
/// unread (a launcher keeps stdin open after it, to stop us by closing it).
pub fn read_handoff(input: &mut impl BufRead) -> Result<Credential, AccessError> {
    let path = Path::new("<stdin>");
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = input.read_line(&mut line).map_err(|source| AccessError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            return Err(AccessError::Parse {
                path: path.to_path_buf(),
                reason: format!("it ended before {END_LINE:?}"),
            });
        }
        if line.trim_end() == END_LINE {
            break;
        }
        if text.len() > 64 * 1024 {
            return Err(AccessError::Parse {
                path: path.to_path_buf(),
                reason: "it is longer than 64 KiB".into(),
            });
        }
        text.push_str(&line);
    }
    parse(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_file_round_trips_with_owner_only_modes_and_a_loose_one_is_refused() {
        let c = Credential::generate().expect("generate");
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("access");
        let path = save(&c, &dir).expect("save");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read(&path).expect("read back").id(), c.id());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&path).expect_err("loose");
        assert_eq!(
            err.to_string(),
            format!(
                "access file {} has mode 0644: others may read it; it must be its owner's alone (chmod 600 {})",
                path.display(),
                path.display()
            )
        );
    }

    #[test]
    fn publishing_removes_what_a_gone_process_of_this_host_published_and_nothing_else() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("access");
        let host = crate::sys::hostname();
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let gone = child.id();
        child.wait().expect("wait");
        let publish_as = |by: Option<String>| {
            let c = Credential::generate().expect("generate");
            let mut fields = AccessFields::of(&c);
            fields.published_by = by;
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{}.toml", c.id()));
            write_private(&path, &encode_fields(&c, fields)).expect("write");
            path
        };
        let abandoned = publish_as(Some(publisher(&host, gone)));
        let live = publish_as(Some(publisher(&host, std::process::id())));
        let other_host = publish_as(Some(publisher("some-other-host", gone)));
        let by_hand = publish_as(None);
        let ours = save(&Credential::generate().expect("generate"), &dir).expect("save");
        assert!(!abandoned.exists(), "the gone process's file is kept");
        for kept in [&live, &other_host, &by_hand, &ours] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        // A published file still reads as an access file.
        read(&ours).expect("read back");
    }

    #[test]
    fn a_handoff_is_read_up_to_its_end_line_and_no_further() {
        let c = Credential::generate().expect("generate");
        let mut bytes = handoff(&c);
        bytes.extend_from_slice(b"what follows\n");
        let mut input = io::Cursor::new(bytes);
        assert_eq!(read_handoff(&mut input).expect("read").id(), c.id());
        let mut rest = String::new();
        input.read_line(&mut rest).unwrap();
        assert_eq!(rest, "what follows\n");
        let err = read_handoff(&mut io::Cursor::new(b"cluster = 1\n".to_vec())).expect_err("cut");
        assert!(err.to_string().contains("it ended before"), "{err}");
    }
}
