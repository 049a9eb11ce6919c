//! The first exchange on every connection, in a fixed layout that every distd version can
//! read, so that a peer of another version is told so in words instead of failing to decode.
//!
//! Layout of a hello: 8 bytes magic, `u32` LE protocol version, `u8` role, `u8` length and
//! the distd version string; then `u8` guard (0: `--no-security`, 1: TLS), `u8` length and
//! the cluster id (empty from a dialer). The accepting side answers with its own hello, then
//! a verdict: `u8` 0 (accepted) or 1 (refused), `u16` LE length and a reason in UTF-8.
//!
//! This exchange is in the clear and proves nothing: it tells versions apart, roles apart,
//! a secured peer from a `--no-security` one (each refuses the other, naming the flag), and
//! which cluster's credential the dialer needs. Then, when both are secured, TLS starts
//! ([`super::secure`]) and the proof is made there. Every length here is a byte's, so a
//! peer that has proved nothing yet can make us hold at most 2 x 255 bytes.
//!
//! Both sides check what the other says it is: the accepting side admits the roles it
//! serves, and the connecting side stops as soon as the answering hello names another role
//! than the one it came for (a client that reached a worker's peer port), before any verdict,
//! whatever the accepting side would have admitted. Neither side bounds its wait here but the
//! accepting one ([`HANDSHAKE_TIMEOUT`]): the connecting side's bound is its dial's
//! (`protocol::net`), which knows the caller's patience.

use super::security::{keyring::LookupError, ClusterId};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::fmt;
use std::io;

/// Opens every distd connection.
pub const MAGIC: [u8; 8] = *b"DISTD\x7fHS";

/// How long an accepting side waits for a peer's hello.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a connecting side with no patience of its own (a client's one attempt) waits
/// for a peer to answer its hello. A distd answers at once, from a task of its own; this is
/// for something that accepts and never answers (a stopped process, another service).
pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Bumped on every incompatible change of any message.
pub const PROTOCOL_VERSION: u32 = 6;

/// Whether a side speaks TLS after its hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// `--no-security`: plain TCP.
    Insecure,
    /// TLS 1.3 with the cluster's credential.
    Secured,
}

/// Who is speaking on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Scheduler,
    Worker,
    Client,
    Nanny,
    /// A worker fetching results from another worker.
    Peer,
}

impl Role {
    fn to_byte(self) -> u8 {
        match self {
            Role::Scheduler => 1,
            Role::Worker => 2,
            Role::Client => 3,
            Role::Nanny => 4,
            Role::Peer => 5,
        }
    }

    fn from_byte(b: u8) -> Option<Role> {
        Some(match b {
            1 => Role::Scheduler,
            2 => Role::Worker,
            3 => Role::Client,
            4 => Role::Nanny,
            5 => Role::Peer,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Scheduler => "scheduler",
            Role::Worker => "worker",
            Role::Client => "client",
            Role::Nanny => "nanny",
            Role::Peer => "peer worker",
        })
    }
}

/// What one side says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub protocol: u32,
    pub version: String,
    pub role: Role,
    pub guard: Guard,
    /// The cluster of an accepting side that is secured; `None` from a dialer.
    pub cluster: Option<ClusterId>,
}

impl Hello {
    /// This process's hello in `role`.
    pub fn ours(role: Role, guard: Guard, cluster: Option<ClusterId>) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            version: super::DISTD_VERSION.to_string(),
            role,
            guard,
            cluster,
        }
    }

    /// The bytes of this hello on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let version = &self.version.as_bytes()[..self.version.len().min(255)];
        let cluster = self.cluster.as_ref().map(|c| c.as_str().as_bytes()).unwrap_or(&[]);
        let mut out = Vec::with_capacity(16 + version.len() + cluster.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.protocol.to_le_bytes());
        out.push(self.role.to_byte());
        out.push(version.len() as u8);
        out.extend_from_slice(version);
        out.push(match self.guard {
            Guard::Insecure => 0,
            Guard::Secured => 1,
        });
        out.push(cluster.len() as u8);
        out.extend_from_slice(cluster);
        out
    }

    fn describe(&self) -> String {
        format!("distd {} (protocol {})", self.version, self.protocol)
    }
}

/// Why a connection did not get past its first exchange.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the peer is not speaking the distd protocol (bad magic bytes)")]
    BadMagic,
    #[error("the peer sent an unknown role byte {0}")]
    BadRole(u8),
    #[error("the peer's version string is not UTF-8")]
    BadVersion,
    #[error("version mismatch: {0}")]
    VersionMismatch(String),
    #[error("a {peer} may not connect here (this is a {ours})")]
    WrongRole { peer: Role, ours: Role },
    /// The connecting side's check: the peer answered as `found`, and the caller came for
    /// `expected`. Final: another attempt reaches the same port.
    #[error("it is a distd {found}'s port, not a {expected}'s")]
    WrongPeer { found: Role, expected: Role },
    #[error("refused by the {by}: {reason}")]
    Refused { by: Role, reason: String },
    #[error("the peer sent a bad guard byte or cluster id")]
    BadGuard,
    /// A secured side met one that runs with `--no-security` (or the other way round).
    #[error("{0}")]
    Guard(String),
    /// A secured peer said no cluster id, so no credential can be looked up.
    #[error("the peer is secured but named no cluster")]
    NoCluster,
    /// The dialer has no credential for the peer's cluster.
    #[error("{source}; pass --access-file or --scheduler-file")]
    NoCredential {
        cluster: ClusterId,
        source: Box<LookupError>,
    },
    /// The dialer's given credential is of another cluster than the peer's.
    #[error(
        "our credential belongs to another cluster (ours is cluster {}, the peer's is cluster {})",
        .0.0,
        .0.1
    )]
    OtherCluster(Box<(ClusterId, ClusterId)>),
    /// The dialer's credential is a client's and it came as a member.
    #[error("our credential is a client's: it cannot connect as a {0}")]
    NotMember(Role),
    /// TLS failed: a certificate our root did not sign, or a peer that refused ours.
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
}

pub(super) async fn read_hello<R: AsyncRead + Unpin>(r: &mut R) -> Result<Hello, HandshakeError> {
    let mut head = [0u8; 14];
    r.read_exact(&mut head).await?;
    if head[..8] != MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let protocol = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let role = Role::from_byte(head[12]).ok_or(HandshakeError::BadRole(head[12]))?;
    let mut version = vec![0u8; head[13] as usize];
    r.read_exact(&mut version).await?;
    let version = String::from_utf8(version).map_err(|_| HandshakeError::BadVersion)?;
    let mut tail = [0u8; 2];
    r.read_exact(&mut tail).await?;
    let guard = match tail[0] {
        0 => Guard::Insecure,
        1 => Guard::Secured,
        _ => return Err(HandshakeError::BadGuard),
    };
    let mut cluster = vec![0u8; tail[1] as usize];
    r.read_exact(&mut cluster).await?;
    let cluster = match cluster.is_empty() {
        true => None,
        false => Some(
            std::str::from_utf8(&cluster)
                .ok()
                .and_then(ClusterId::parse)
                .ok_or(HandshakeError::BadGuard)?,
        ),
    };
    Ok(Hello {
        protocol,
        version,
        role,
        guard,
        cluster,
    })
}

/// What a side guarded by `ours` says of a peer guarded by `theirs`, when they differ.
fn guard_mismatch(ours: &Hello, theirs: &Hello) -> Option<String> {
    match (ours.guard, theirs.guard) {
        (Guard::Secured, Guard::Insecure) => Some(format!(
            "the {} runs with --no-security and this {} is secured: a secured distd never talks in the clear \
             (give both --no-security, or neither)",
            theirs.role, ours.role
        )),
        (Guard::Insecure, Guard::Secured) => Some(format!(
            "this {} runs with --no-security and the {} is secured (give both --no-security, or neither)",
            ours.role, theirs.role
        )),
        _ => None,
    }
}

fn mismatch(ours: &Hello, theirs: &Hello) -> Option<String> {
    if ours.protocol == theirs.protocol && ours.version == theirs.version {
        return None;
    }
    Some(format!(
        "this {} runs {}, the {} runs {}; every process of a cluster must run the same distd",
        ours.role,
        ours.describe(),
        theirs.role,
        theirs.describe()
    ))
}

/// The connecting side: says hello as `role` to what should be an `expect`, then reads the
/// verdict. Returns the peer's hello. A peer whose hello names another role ends it at once
/// ([`HandshakeError::WrongPeer`]), before the verdict is read.
pub async fn connect_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    role: Role,
    expect: Role,
    guard: Guard,
) -> Result<Hello, HandshakeError> {
    let ours = Hello::ours(role, guard, None);
    stream.write_all(&ours.encode()).await?;
    stream.flush().await?;
    let theirs = read_hello(stream).await?;
    let mut verdict = [0u8; 3];
    let mut reason = Vec::new();
    let answered = read_verdict(stream, &mut verdict, &mut reason).await;
    if theirs.role != expect {
        // Named whatever the verdict; it was read (it comes with the hello) only so that
        // closing now leaves nothing unread, which would reset the peer's connection.
        return Err(HandshakeError::WrongPeer {
            found: theirs.role,
            expected: expect,
        });
    }
    answered?;
    // Ours first: a secured dialer names the flag whatever the peer said.
    if let (Guard::Secured, Some(m)) = (guard, guard_mismatch(&ours, &theirs)) {
        return Err(HandshakeError::Guard(m));
    }
    if verdict[0] != 0 {
        let reason = String::from_utf8_lossy(&reason).into_owned();
        // Whatever the peer said, a version difference is named here, with both versions.
        if let Some(m) = mismatch(&ours, &theirs) {
            if !reason.contains(&theirs.version) {
                return Err(HandshakeError::VersionMismatch(format!(
                    "{m} (the {} said: {reason})",
                    theirs.role
                )));
            }
        }
        return Err(HandshakeError::Refused {
            by: theirs.role,
            reason,
        });
    }
    if let Some(m) = mismatch(&ours, &theirs) {
        return Err(HandshakeError::VersionMismatch(m));
    }
    Ok(theirs)
}

/// The verdict after the accepting side's hello: its byte, and the reason.
pub(super) async fn read_verdict<S: AsyncRead + Unpin>(
    stream: &mut S,
    verdict: &mut [u8; 3],
    reason: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    stream.read_exact(verdict).await?;
    reason.resize(u16::from_le_bytes([verdict[1], verdict[2]]) as usize, 0);
    stream.read_exact(reason).await?;
    Ok(())
}

/// The accepting side, a `role` that admits peers of the roles in `allowed`: reads the
/// peer's hello, checks it, answers. Returns the peer's hello when it was accepted.
pub async fn accept_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    ours: Hello,
    allowed: &[Role],
) -> Result<Hello, HandshakeError> {
    // A connection that says nothing must not hold a task forever.
    crate::rt::within(HANDSHAKE_TIMEOUT, accept_handshake_now(stream, ours, allowed))
        .await
        .unwrap_or_else(|| {
            Err(HandshakeError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
            )))
        })
}

async fn accept_handshake_now<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    ours: Hello,
    allowed: &[Role],
) -> Result<Hello, HandshakeError> {
    let role = ours.role;
    let theirs = read_hello(stream).await?;
    let problem = if let Some(m) = mismatch(&ours, &theirs) {
        Some(HandshakeError::VersionMismatch(m))
    } else if let Some(m) = guard_mismatch(&ours, &theirs) {
        Some(HandshakeError::Guard(m))
    } else if !allowed.contains(&theirs.role) {
        Some(HandshakeError::WrongRole {
            peer: theirs.role,
            ours: role,
        })
    } else {
        None
    };
    let mut reply = ours.encode();
    match &problem {
        None => reply.extend_from_slice(&[0, 0, 0]),
        Some(p) => {
            let text = p.to_string();
            let text = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
            reply.push(1);
            reply.extend_from_slice(&(text.len() as u16).to_le_bytes());
            reply.extend_from_slice(text);
        }
    }
    stream.write_all(&reply).await?;
    stream.flush().await?;
    match problem {
        None => Ok(theirs),
        Some(p) => Err(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips() {
        let h = Hello::ours(Role::Worker, Guard::Secured, ClusterId::parse("0123456789abcdef"));
        let bytes = h.encode();
        let back = smol::block_on(read_hello(&mut futures_lite::io::Cursor::new(bytes))).unwrap();
        assert_eq!(h, back);
    }

    /// The connecting side names a peer of another role from its hello alone, though that
    /// peer would have admitted it (a worker's peer port admits clients).
    #[test]
    fn the_connecting_side_refuses_a_peer_of_another_role() {
        let listener = smol::block_on(smol::net::TcpListener::bind("127.0.0.1:0")).expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let peer_port = crate::rt::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            accept_handshake(
                &mut s,
                Hello::ours(Role::Worker, Guard::Insecure, None),
                &[Role::Peer, Role::Client],
            )
            .await
        });
        let err = smol::block_on(async {
            let mut s = smol::net::TcpStream::connect(addr).await.expect("connect");
            connect_handshake(&mut s, Role::Client, Role::Scheduler, Guard::Insecure).await
        })
        .expect_err("a peer port is no scheduler");
        assert!(
            matches!(
                err,
                HandshakeError::WrongPeer {
                    found: Role::Worker,
                    expected: Role::Scheduler
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "it is a distd worker's port, not a scheduler's");
        // The peer port admitted the client: the refusal was the client's own.
        assert_eq!(smol::block_on(peer_port).expect("admitted").role, Role::Client);
    }

    #[test]
    fn mismatch_names_both_versions() {
        let ours = Hello::ours(Role::Scheduler, Guard::Secured, None);
        let theirs = Hello {
            protocol: 99,
            version: "9.9.9".into(),
            role: Role::Worker,
            guard: Guard::Secured,
            cluster: None,
        };
        let m = mismatch(&ours, &theirs).unwrap();
        assert!(m.contains("9.9.9 (protocol 99)"), "{m}");
        assert!(
            m.contains(&format!(
                "{} (protocol {})",
                super::super::DISTD_VERSION,
                PROTOCOL_VERSION
            )),
            "{m}"
        );
    }
}
