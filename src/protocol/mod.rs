//! The wire protocol: message types, ids, the handshake, length-prefixed framing, and the
//! network edge: the one place that dials and accepts ([`net`]), where every connection is
//! authenticated and encrypted ([`secure`], with the credential of [`security`] and the
//! access files of [`access`]), and the peer fetch client.
//!
//! This module is the only place that knows the encoding (postcard) and the only one that
//! opens connections. Everything else sends and receives typed messages. It never decides
//! anything about tasks or workers.

pub mod access;
pub mod codec;
mod conn;
mod frame;
pub mod fuzzing;
mod handshake;
mod ids;
mod messages;
pub mod net;
mod peer_client;
mod secure;
pub mod security;
mod task;
mod transcript;
mod watched;

pub use conn::{spawn_writer, spawn_writer_then, write_loop, Data};
pub use frame::{encode_frame, FrameError, FrameReader, MAX_FRAME_LEN};
pub use handshake::{
    accept_handshake, connect_handshake, Guard, HandshakeError, Hello, Role, ANSWER_TIMEOUT, MAGIC, PROTOCOL_VERSION,
};
pub use ids::{AttemptId, ClientId, NannyId, RequestId, TaskId, WorkerId};
pub use messages::*;
pub use net::{dial, dial_bounded, dial_with, serve, AttemptError, DialError, Dialed, Retry};
pub use peer_client::{PeerClient, PeerError, PeerTimeouts};
pub use secure::{Closer, Link, LinkReader, LinkWriter};
pub use security::{ClusterId, Credential, Served};
pub use task::{ArgsForm, CommandOutput, CommandSpec, TaskDesc, TaskOptions, TaskSpec};
pub use transcript::{transcript_tail, Ending, Transcript, TranscriptError, TRANSCRIPT_STDERR};
pub(crate) use watched::Watched;

/// The version of this build of distd, sent in every handshake.
pub const DISTD_VERSION: &str = env!("CARGO_PKG_VERSION");
