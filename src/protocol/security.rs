//! The cluster credential and the TLS configurations made from it: who may join a cluster,
//! and as what.
//!
//! A generated credential is a cluster CA (whose key is dropped once it has signed) and two
//! certificates it signed: the **member** one (`member.ID.distd`), which the scheduler,
//! workers and nannies present, and the **client** one (`client.ID.distd`), which clients
//! present. A credential without the member part lets its holder submit but not join as a
//! worker. An organisation's own CA ([`Credential::enterprise`]) makes every holder a member
//! and names servers by the host the dialer named.
//!
//! The cluster id is the first 8 bytes of the SHA-256 of the CA certificate, in hex: it is
//! what the handshake carries in the clear, so a dialer finds the right credential whichever
//! of the scheduler's addresses it was given. It proves nothing by itself: TLS does.
//!
//! Every connection is TLS 1.3 with mutual authentication, verified by rustls' own webpki
//! verifiers against the cluster's root alone; nothing here accepts a certificate the root
//! did not sign. The provider is ring (see ARCHITECTURE.md, "Security").
//!
//! The process's [`keyring`] holds what it knows: whether it runs with `--no-security`, the
//! credential it was given (a file, stdin), the credentials of clusters it started, and the
//! access folder where schedulers leave theirs. This module does no I/O but the keyring's
//! reading of access files ([`super::access`]).

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// The id of a cluster: its CA's fingerprint, 16 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(String);

impl ClusterId {
    /// The id of the cluster whose root is `ca_der`.
    fn of(ca_der: &[u8]) -> ClusterId {
        let digest = Sha256::digest(ca_der);
        ClusterId(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// An id as it came off the wire or out of a file name: 16 lowercase hex digits.
    pub fn parse(text: &str) -> Option<ClusterId> {
        (text.len() == 16 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| ClusterId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a verified peer may do, by the certificate it presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The member certificate: may be a scheduler, worker, nanny or peer.
    Member,
    /// The client certificate: may only be a client.
    Client,
}

/// Why a credential could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot generate the cluster credential: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what} is not a PEM {kind}: {reason}")]
    Pem {
        what: String,
        kind: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Tls(#[from] rustls::Error),
    #[error("this credential is a client's: a scheduler or worker needs the cluster's member credential")]
    ClientOnly,
    #[error("the certificate authority is not usable: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A certificate and its key, as PEM text.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.write_str("Identity { .. }")
    }
}

/// How servers are named in the certificates they present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// A generated credential: `member.ID.distd`, whatever the address.
    Cluster,
    /// An organisation's certificates: the host the dialer named.
    Host,
}

/// A cluster credential, with the TLS configurations made from it.
pub struct Credential {
    id: ClusterId,
    naming: Naming,
    ca_pem: String,
    member: Option<Identity>,
    client: Identity,
    /// The member certificate, to tell a member from a client.
    member_der: Option<CertificateDer<'static>>,
    server: Option<Arc<ServerConfig>>,
    dial_as_member: Option<Arc<ClientConfig>>,
    dial_as_client: Arc<ClientConfig>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credential {{ cluster: {}, member: {} }}",
            self.id,
            self.member.is_some()
        )
    }
}

/// The credential a port serves with, which its owner may change while it serves: a
/// worker's peer port proves itself with the cluster the worker is registered with now, so
/// a worker that rejoins a restarted scheduler of a new cluster serves that cluster's
/// peers and clients, not the old one's. Read once per accepted connection.
#[derive(Clone, Debug, Default)]
pub struct Served(Arc<std::sync::Mutex<Option<Arc<Credential>>>>);

impl Served {
    pub fn new(credential: Option<Arc<Credential>>) -> Served {
        Served(Arc::new(std::sync::Mutex::new(credential)))
    }

    /// The credential now (`None`: plain TCP).
    pub fn get(&self) -> Option<Arc<Credential>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From the next accepted connection on.
    pub fn set(&self, credential: Option<Arc<Credential>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = credential;
    }
}

impl From<Option<Arc<Credential>>> for Served {
    fn from(credential: Option<Arc<Credential>>) -> Served {
        Served::new(credential)
    }
}

/// ring, with AES-128-GCM first (both sides prefer it: the fastest of the three here).
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

fn cert_der(what: &str, pem: &str) -> Result<CertificateDer<'static>, SecurityError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| SecurityError::Pem {
        what: what.to_string(),
        kind: "certificate",
        reason: e.to_string(),
    })
}

fn chain_der(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    match chain {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(SecurityError::Pem {
            what: what.to_string(),
            kind: "certificate",
            reason: "no certificate in it".into(),
        }),
        Err(e) => Err(SecurityError::Pem {
            what: what.to_string(),
            kind: "certificate",
            reason: e.to_string(),
        }),
    }
}

fn key_der(what: &str, pem: &str) -> Result<PrivateKeyDer<'static>, SecurityError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| SecurityError::Pem {
        what: what.to_string(),
        kind: "private key",
        reason: e.to_string(),
    })
}

impl Credential {
    /// A new cluster: a CA, the member and client certificates it signs, and then no CA key.
    pub fn generate() -> Result<Credential, SecurityError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "distd cluster CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let id = ClusterId::of(ca.der());
        let sign = |who: &str| -> Result<Identity, SecurityError> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(vec![format!("{who}.{id}.distd")])?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("distd {who}"));
            let cert = params.signed_by(&key, &ca, &ca_key)?;
            Ok(Identity {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            })
        };
        let member = sign("member")?;
        let client = sign("client")?;
        Credential::new(ca.pem(), Some(member), client, Naming::Cluster)
    }

    /// An organisation's certificates: its CA, and the certificate and key this process
    /// presents (every holder is a member; servers are named by host).
    pub fn enterprise(ca_pem: String, own: Identity) -> Result<Credential, SecurityError> {
        Credential::new(ca_pem, Some(own.clone()), own, Naming::Host)
    }

    /// A credential from its parts (as read from an access file).
    pub fn new(
        ca_pem: String,
        member: Option<Identity>,
        client: Identity,
        naming: Naming,
    ) -> Result<Credential, SecurityError> {
        let ca = cert_der("the certificate authority", &ca_pem)?;
        let id = ClusterId::of(&ca);
        let mut roots = RootCertStore::empty();
        roots.add(ca)?;
        let roots = Arc::new(roots);
        let client_verifier: Arc<dyn ClientCertVerifier> =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build()?;
        let server_verifier: Arc<dyn ServerCertVerifier> =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(SecurityError::Verifier)?;
        let dialing = |me: &Identity, what: &str| -> Result<Arc<ClientConfig>, SecurityError> {
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .dangerous()
                // The standard webpki verifier, built on the cluster's root alone.
                .with_custom_certificate_verifier(server_verifier.clone())
                .with_client_auth_cert(chain_der(what, &me.cert_pem)?, key_der(what, &me.key_pem)?)?;
            config.resumption = rustls::client::Resumption::disabled();
            Ok(Arc::new(config))
        };
        let (server, dial_as_member, member_der) = match &member {
            Some(m) => {
                let mut server = ServerConfig::builder_with_provider(provider())
                    .with_protocol_versions(&[&rustls::version::TLS13])?
                    .with_client_cert_verifier(client_verifier)
                    .with_single_cert(
                        chain_der("the member certificate", &m.cert_pem)?,
                        key_der("the member key", &m.key_pem)?,
                    )?;
                // No resumption: every connection proves itself in full, and no tickets cost
                // bytes on the wire.
                server.send_tls13_tickets = 0;
                (
                    Some(Arc::new(server)),
                    Some(dialing(m, "the member certificate")?),
                    Some(cert_der("the member certificate", &m.cert_pem)?),
                )
            }
            None => (None, None, None),
        };
        let dial_as_client = dialing(&client, "the client certificate")?;
        Ok(Credential {
            id,
            naming,
            ca_pem,
            member,
            client,
            member_der,
            server,
            dial_as_member,
            dial_as_client,
        })
    }

    pub fn id(&self) -> &ClusterId {
        &self.id
    }

    pub fn naming(&self) -> Naming {
        self.naming
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn member(&self) -> Option<&Identity> {
        self.member.as_ref()
    }

    pub fn client(&self) -> &Identity {
        &self.client
    }

    /// The same cluster's credential without the member part: for clients only.
    pub fn client_only(&self) -> Result<Credential, SecurityError> {
        Credential::new(self.ca_pem.clone(), None, self.client.clone(), self.naming)
    }

    /// The configuration of the accepting side, if this credential may serve (a member's).
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.server.clone()
    }

    /// The configuration of a dialing side: as a member, or as a client. `None` for a
    /// member's when this credential has no member part.
    pub fn client_config(&self, as_member: bool) -> Option<Arc<ClientConfig>> {
        match as_member {
            true => self.dial_as_member.clone(),
            false => Some(self.dial_as_client.clone()),
        }
    }

    /// The name a server of this cluster at `host` presents.
    pub fn server_name(&self, host: &str) -> Option<ServerName<'static>> {
        match self.naming {
            Naming::Cluster => ServerName::try_from(format!("member.{}.distd", self.id)).ok(),
            Naming::Host => ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string()).ok(),
        }
    }

    /// What a peer whose verified chain starts with `cert` may do.
    pub fn standing_of(&self, cert: &CertificateDer<'_>) -> Standing {
        match (self.naming, &self.member_der) {
            (Naming::Host, _) => Standing::Member,
            (Naming::Cluster, Some(member)) if member.as_ref() == cert.as_ref() => Standing::Member,
            // Verified against a root whose key signed two certificates and is gone: the
            // other one is the client's.
            (Naming::Cluster, _) => Standing::Client,
        }
    }
}

/// What one process knows about security: the process-wide keyring.
pub mod keyring {
    use super::{ClusterId, Credential};
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    struct Ring {
        insecure: bool,
        given: Option<Arc<Credential>>,
        known: Vec<Arc<Credential>>,
        /// More access folders to look in after this user's own.
        also: Vec<PathBuf>,
    }

    static RING: Mutex<Ring> = Mutex::new(Ring {
        insecure: false,
        given: None,
        known: Vec::new(),
        also: Vec::new(),
    });

    /// Looks in `dir` too, after this user's access folder: for a program (a test) that
    /// drives clusters whose access folders are elsewhere.
    pub fn look_also_in(dir: PathBuf) {
        let mut r = ring();
        if !r.also.contains(&dir) {
            r.also.push(dir);
        }
    }

    fn ring() -> std::sync::MutexGuard<'static, Ring> {
        RING.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this process runs with `--no-security`: then it neither dials nor serves TLS.
    /// (Set once by the CLI; a benchmark switches it to measure both.)
    pub fn set_insecure(on: bool) {
        ring().insecure = on;
    }

    pub fn is_insecure() -> bool {
        ring().insecure
    }

    /// The credential this process was given (`--access-file`, `--scheduler-file`, the TLS
    /// flags, stdin): the one every dial uses, whatever cluster the peer names.
    pub fn set_given(credential: Arc<Credential>) {
        let mut r = ring();
        r.given = Some(credential);
    }

    pub fn given() -> Option<Arc<Credential>> {
        ring().given.clone()
    }

    /// A credential of a cluster this process started (or read), found again by its id.
    pub fn remember(credential: Arc<Credential>) {
        let mut r = ring();
        if !r.known.iter().any(|c| c.id() == credential.id()) {
            r.known.push(credential);
        }
    }

    /// Where schedulers leave their access files: `DATA_DIR/access` (the `directories`
    /// crate: `~/.local/share/distd/access` on Linux).
    pub fn access_dir() -> PathBuf {
        directories::ProjectDirs::from("", "", "distd")
            .map(|d| d.data_dir().join("access"))
            .unwrap_or_else(|| std::env::temp_dir().join("distd-access"))
    }

    /// Why no credential was found for a cluster.
    #[derive(Debug, thiserror::Error)]
    pub enum LookupError {
        #[error("none found in {}", dir.display())]
        NotFound { dir: PathBuf },
        #[error(transparent)]
        Access(#[from] crate::protocol::access::AccessError),
    }

    /// The credential for cluster `id`: the given one if any (the caller checks its id),
    /// else one this process knows, else the access file for `id` in [`access_dir`].
    pub fn lookup(id: &ClusterId) -> Result<Arc<Credential>, LookupError> {
        {
            let r = ring();
            if let Some(g) = &r.given {
                return Ok(g.clone());
            }
            if let Some(k) = r.known.iter().find(|c| c.id() == id) {
                return Ok(k.clone());
            }
        }
        let dir = access_dir();
        let also = ring().also.clone();
        let Some(path) = std::iter::once(&dir)
            .chain(also.iter())
            .map(|d| d.join(format!("{id}.toml")))
            .find(|p| p.exists())
        else {
            return Err(LookupError::NotFound { dir });
        };
        let credential = Arc::new(crate::protocol::access::read(&path)?);
        remember(credential.clone());
        Ok(credential)
    }
}

/// How a cluster that this process starts is secured.
#[derive(Clone, Debug)]
pub enum ClusterSecurity {
    /// A new credential, made at start (the default).
    Generate,
    /// This one (it must have the member part).
    Given(Arc<Credential>),
    /// `--no-security`.
    Insecure,
}

impl ClusterSecurity {
    /// What the process's [`keyring`] says: insecure, the given credential, or a new one.
    pub fn from_keyring() -> ClusterSecurity {
        if keyring::is_insecure() {
            return ClusterSecurity::Insecure;
        }
        match keyring::given() {
            Some(c) => ClusterSecurity::Given(c),
            None => ClusterSecurity::Generate,
        }
    }

    /// The credential to serve with, known from now on to this process's keyring (so its
    /// own clients and workers find it); `None` when insecure.
    pub fn resolve(self) -> Result<Option<Arc<Credential>>, SecurityError> {
        let credential = match self {
            ClusterSecurity::Insecure => return Ok(None),
            ClusterSecurity::Given(c) if c.member().is_none() => return Err(SecurityError::ClientOnly),
            ClusterSecurity::Given(c) => c,
            ClusterSecurity::Generate => Arc::new(Credential::generate()?),
        };
        keyring::remember(credential.clone());
        Ok(Some(credential))
    }
}

impl Default for ClusterSecurity {
    fn default() -> Self {
        ClusterSecurity::from_keyring()
    }
}

/// For tests: one credential per test process, generated once and known to its keyring.
#[cfg(test)]
pub(crate) fn test_credential() -> Arc<Credential> {
    static ONE: std::sync::OnceLock<Arc<Credential>> = std::sync::OnceLock::new();
    ONE.get_or_init(|| {
        let c = Arc::new(Credential::generate().expect("generate a test credential"));
        keyring::remember(c.clone());
        c
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_credential_has_a_stable_id_and_two_standings() {
        let c = Credential::generate().expect("generate");
        assert!(ClusterId::parse(c.id().as_str()).is_some(), "{}", c.id());
        let again = Credential::new(
            c.ca_pem().to_string(),
            c.member().cloned(),
            c.client().clone(),
            Naming::Cluster,
        )
        .expect("rebuild");
        assert_eq!(again.id(), c.id());
        let member = cert_der("m", &c.member().unwrap().cert_pem).unwrap();
        let client = cert_der("c", &c.client().cert_pem).unwrap();
        assert_eq!(c.standing_of(&member), Standing::Member);
        assert_eq!(c.standing_of(&client), Standing::Client);
        let clients = c.client_only().expect("client only");
        assert!(clients.server_config().is_none() && clients.client_config(true).is_none());
        assert_eq!(clients.id(), c.id());
    }

    #[test]
    fn garbage_pem_is_named() {
        let err = Credential::new(
            "not pem".into(),
            None,
            Identity {
                cert_pem: String::new(),
                key_pem: String::new(),
            },
            Naming::Cluster,
        )
        .expect_err("garbage");
        assert!(
            err.to_string()
                .starts_with("the certificate authority is not a PEM certificate"),
            "{err}"
        );
    }
}
