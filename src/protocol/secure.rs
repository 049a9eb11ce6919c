//! A connection past its handshake, as a [`Link`]: a reader and a writer, over TLS or (with
//! `--no-security`) plain TCP; and the TLS step of the handshake, the one place where a peer
//! proves it belongs to the cluster.
//!
//! After the hello exchange in the clear ([`super::handshake`]), a secured dialer looks up
//! the credential of the cluster the accepting side named (the [`keyring`]), starts TLS 1.3
//! as the client with the member or the client certificate (by the role it comes as), and
//! verifies the server's certificate against the cluster's root; the accepting side verifies
//! the dialer's the same way. Then the accepting side checks what the dialer's certificate
//! lets it be ([`Standing`]: a client's cannot register a worker) and sends its verdict,
//! inside TLS, in the same layout as the hello's: `u8` 0 or 1, `u16` LE length, reason.

use super::handshake::{Guard, HandshakeError, Hello, Role};
use super::security::{keyring, Credential, Standing};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The reading half of a link.
pub type LinkReader = Box<dyn AsyncRead + Send + Unpin>;

/// The writing half of a link.
pub type LinkWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection past its handshake: read from `reader`, write to `writer` (one task each),
/// and [`Link::closer`] to end both at once.
pub struct Link {
    pub reader: LinkReader,
    pub writer: LinkWriter,
    socket: TcpStream,
    /// The credential the link was made with: a worker serves its peer port with the one it
    /// registered with.
    pub credential: Option<Arc<Credential>>,
}

/// Ends a link's socket in both directions, which ends its reader and its writer.
#[derive(Clone)]
pub struct Closer(TcpStream);

impl Closer {
    pub fn close(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

impl Link {
    /// A plain TCP link (`--no-security`).
    pub fn plain(stream: TcpStream) -> Link {
        Link {
            reader: Box::new(stream.clone()),
            writer: Box::new(stream.clone()),
            socket: stream,
            credential: None,
        }
    }

    fn tls<S>(tls: S, socket: TcpStream, credential: Arc<Credential>) -> Link
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (reader, writer) = futures_lite::io::split(tls);
        Link {
            reader: Box::new(EndIsEnd(reader)),
            writer: Box::new(writer),
            socket,
            credential: Some(credential),
        }
    }

    pub fn closer(&self) -> Closer {
        Closer(self.socket.clone())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// A peer that closes its socket without TLS's close_notify (it was killed, or shut its
/// socket as plain distd links do) ends the stream as a plain socket's end does: the frame
/// reader tells a cut frame from a clean end by itself.
struct EndIsEnd<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for EndIsEnd<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(0)),
            other => other,
        }
    }
}

/// How this process guards the connections it dials: `--no-security` or TLS.
pub fn dialing_guard() -> Guard {
    match keyring::is_insecure() {
        true => Guard::Insecure,
        false => Guard::Secured,
    }
}

/// The dialing side's TLS step, after a hello exchange in which both sides said they are
/// secured: `host` is the host part of the address dialed (for an organisation's
/// certificates, the name the server's must carry).
pub async fn dial_tls(stream: TcpStream, host: &str, ours: Role, theirs: &Hello) -> Result<Link, HandshakeError> {
    let cluster = theirs.cluster.clone().ok_or(HandshakeError::NoCluster)?;
    let credential = keyring::lookup(&cluster).map_err(|source| HandshakeError::NoCredential {
        cluster: cluster.clone(),
        source: Box::new(source),
    })?;
    if *credential.id() != cluster {
        return Err(HandshakeError::OtherCluster(Box::new((
            credential.id().clone(),
            cluster,
        ))));
    }
    let config = credential
        .client_config(ours != Role::Client)
        .ok_or(HandshakeError::NotMember(ours))?;
    let name = credential
        .server_name(host)
        .ok_or_else(|| HandshakeError::Tls(io::Error::other(format!("{host:?} is no name a certificate can carry"))))?;
    let mut tls = futures_rustls::TlsConnector::from(config)
        .connect(name, stream.clone())
        .await
        .map_err(HandshakeError::Tls)?;
    let mut verdict = [0u8; 3];
    tls.read_exact(&mut verdict).await.map_err(tls_or_io)?;
    if verdict[0] != 0 {
        let mut reason = vec![0u8; u16::from_le_bytes([verdict[1], verdict[2]]) as usize];
        tls.read_exact(&mut reason).await.map_err(tls_or_io)?;
        return Err(HandshakeError::Refused {
            by: theirs.role,
            reason: String::from_utf8_lossy(&reason).into_owned(),
        });
    }
    Ok(Link::tls(tls, stream, credential))
}

/// A refusal of our certificate arrives as an alert on the first read after the handshake
/// (TLS 1.3 client authentication ends after the client's last flight): a TLS failure too.
fn tls_or_io(e: io::Error) -> HandshakeError {
    match e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        true => HandshakeError::Tls(e),
        false => HandshakeError::Io(e),
    }
}

/// The accepting side's TLS step with `credential` (a member's), for a dialer whose hello
/// was `theirs`: TLS, then the standing check and the verdict.
pub async fn accept_tls(
    stream: TcpStream,
    credential: &Arc<Credential>,
    theirs: &Hello,
) -> Result<Link, HandshakeError> {
    let config = credential
        .server_config()
        .ok_or(HandshakeError::NotMember(Role::Scheduler))?;
    let mut tls = futures_rustls::TlsAcceptor::from(config)
        .accept(stream.clone())
        .await
        .map_err(HandshakeError::Tls)?;
    let standing = {
        let (_, conn) = tls.get_ref();
        match conn.peer_certificates().and_then(|c| c.first()) {
            Some(cert) => credential.standing_of(cert),
            // The verifier demands a certificate; none means no TLS session at all.
            None => {
                return Err(HandshakeError::Tls(io::Error::other(
                    "the peer presented no certificate",
                )))
            }
        }
    };
    let refusal = match (standing, theirs.role) {
        (Standing::Client, role) if role != Role::Client => Some(format!(
            "a client's credential cannot connect as a {role}: that takes the cluster's member credential"
        )),
        _ => None,
    };
    let mut reply = vec![0u8, 0, 0];
    if let Some(text) = &refusal {
        reply = vec![1];
        reply.extend_from_slice(&(text.len() as u16).to_le_bytes());
        reply.extend_from_slice(text.as_bytes());
    }
    tls.write_all(&reply).await?;
    tls.flush().await?;
    match refusal {
        Some(reason) => Err(HandshakeError::Guard(reason)),
        None => Ok(Link::tls(tls, stream, credential.clone())),
    }
}
