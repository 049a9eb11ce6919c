//! The wire protocol: message types, ids, the handshake and length-prefixed framing.
//!
//! This module is the only place that knows the encoding (postcard). Everything else sends
//! and receives typed messages. It never decides anything about tasks or workers.

pub mod codec;
mod conn;
mod frame;
mod handshake;
mod ids;
mod messages;
mod task;

pub use conn::{spawn_writer, write_loop, Data};
pub use frame::{encode_frame, FrameError, FrameReader, MAX_FRAME_LEN};
pub use handshake::{accept_handshake, connect_handshake, HandshakeError, Hello, Role, MAGIC, PROTOCOL_VERSION};
pub use ids::{ClientId, NannyId, RequestId, TaskId, WorkerId};
pub use messages::*;
pub use task::{CommandSpec, TaskDesc, TaskOptions, TaskSpec};

/// The version of this build of distd, sent in every handshake.
pub const DISTD_VERSION: &str = env!("CARGO_PKG_VERSION");
