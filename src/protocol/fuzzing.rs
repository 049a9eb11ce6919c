//! Entry points for fuzzing the decoders: each takes bytes as a peer could send them and
//! must return, whatever they are, without panicking and without allocating by a length the
//! bytes declare. The cargo-fuzz targets in `fuzz/` and the stable replay in
//! `tests/fuzz_frames.rs` call these, and nothing else does.
//!
//! They only decode: nothing here dials, accepts, or runs a whole handshake (that stays in
//! `net`), and what is decoded is dropped. Hidden from the docs: it is no API.
#![doc(hidden)]

use super::frame::FrameReader;
use super::handshake::{read_hello, read_verdict};
use super::messages::{FromClient, FromNanny, FromPeer, FromWorker, ToClient, ToNanny, ToPeer, ToWorker};
use futures_lite::future::block_on;
use futures_lite::io::Cursor;
use serde::de::DeserializeOwned;

/// The bytes as a stream of frames, read to its end or first error once as each message
/// enum, as every reader of a connection does. A `FromPeer::Data` frame is followed by its
/// raw payload, which is read as the peer client reads it.
pub fn frames(bytes: &[u8]) {
    frames_as::<ToWorker>(bytes);
    frames_as::<FromWorker>(bytes);
    frames_as::<FromNanny>(bytes);
    frames_as::<ToNanny>(bytes);
    frames_as::<FromClient>(bytes);
    frames_as::<ToClient>(bytes);
    frames_as::<ToPeer>(bytes);
    block_on(async {
        let mut reader = FrameReader::new(Cursor::new(bytes));
        while let Ok(Some(reply)) = reader.next::<FromPeer>().await {
            if let FromPeer::Data { len, .. } = reply {
                let Ok(len) = usize::try_from(len) else { return };
                if reader.read_payload(len).await.is_err() {
                    return;
                }
            }
        }
    });
}

fn frames_as<T: DeserializeOwned>(bytes: &[u8]) {
    block_on(async {
        let mut reader = FrameReader::new(Cursor::new(bytes));
        while let Ok(Some(_)) = reader.next::<T>().await {}
    });
}

/// The bytes as the start of a connection: a hello, then (as the connecting side reads
/// after the accepting side's hello) a verdict and its reason.
pub fn hello(bytes: &[u8]) {
    block_on(async {
        let mut stream = Cursor::new(bytes);
        if read_hello(&mut stream).await.is_err() {
            return;
        }
        let mut verdict = [0u8; 3];
        let mut reason = Vec::new();
        let _ = read_verdict(&mut stream, &mut verdict, &mut reason).await;
    });
}

/// The bytes as one frame's body, decoded as each message enum.
pub fn message(bytes: &[u8]) {
    decode_as::<ToWorker>(bytes);
    decode_as::<FromWorker>(bytes);
    decode_as::<FromNanny>(bytes);
    decode_as::<ToNanny>(bytes);
    decode_as::<FromClient>(bytes);
    decode_as::<ToClient>(bytes);
    decode_as::<ToPeer>(bytes);
    decode_as::<FromPeer>(bytes);
}

fn decode_as<T: DeserializeOwned>(bytes: &[u8]) {
    let _ = postcard::from_bytes::<T>(bytes);
}
