//! The first exchange on every connection, in a fixed layout that every distd version can
//! read, so that a peer of another version is told so in words instead of failing to decode.
//!
//! Layout of a hello: 8 bytes magic, `u32` LE protocol version, `u8` role, `u8` length and
//! the distd version string. The accepting side answers with its own hello, then a verdict:
//! `u8` 0 (accepted) or 1 (refused), `u16` LE length and a reason in UTF-8.
//!
//! Both sides check what the other says it is: the accepting side admits the roles it
//! serves, and the connecting side stops as soon as the answering hello names another role
//! than the one it came for (a client that reached a worker's peer port), before any verdict,
//! whatever the accepting side would have admitted. Neither side bounds its wait here but the
//! accepting one ([`HANDSHAKE_TIMEOUT`]): the connecting side's bound is its dial's
//! (`protocol::net`), which knows the caller's patience.

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
pub const PROTOCOL_VERSION: u32 = 5;

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
}

impl Hello {
    /// This process's hello in `role`.
    pub fn ours(role: Role) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            version: super::DISTD_VERSION.to_string(),
            role,
        }
    }

    /// The bytes of this hello on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let version = &self.version.as_bytes()[..self.version.len().min(255)];
        let mut out = Vec::with_capacity(14 + version.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.protocol.to_le_bytes());
        out.push(self.role.to_byte());
        out.push(version.len() as u8);
        out.extend_from_slice(version);
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
    Ok(Hello {
        protocol,
        version,
        role,
    })
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
) -> Result<Hello, HandshakeError> {
    let ours = Hello::ours(role);
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
    role: Role,
    allowed: &[Role],
) -> Result<Hello, HandshakeError> {
    // A connection that says nothing must not hold a task forever.
    crate::rt::within(HANDSHAKE_TIMEOUT, accept_handshake_now(stream, role, allowed))
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
    role: Role,
    allowed: &[Role],
) -> Result<Hello, HandshakeError> {
    let ours = Hello::ours(role);
    let theirs = read_hello(stream).await?;
    let problem = if let Some(m) = mismatch(&ours, &theirs) {
        Some(HandshakeError::VersionMismatch(m))
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
        let h = Hello::ours(Role::Worker);
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
            accept_handshake(&mut s, Role::Worker, &[Role::Peer, Role::Client]).await
        });
        let err = smol::block_on(async {
            let mut s = smol::net::TcpStream::connect(addr).await.expect("connect");
            connect_handshake(&mut s, Role::Client, Role::Scheduler).await
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
        let ours = Hello::ours(Role::Scheduler);
        let theirs = Hello {
            protocol: 99,
            version: "9.9.9".into(),
            role: Role::Worker,
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
