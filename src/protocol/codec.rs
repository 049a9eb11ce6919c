//! The typed layer over task bytes: how Rust values become function arguments and results.
//!
//! Kept here so that postcard stays inside `src/protocol`; the client and the function
//! registry call these two functions.

use serde::{de::DeserializeOwned, Serialize};

/// Why a value could not be turned into bytes or back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

/// Encodes a value as task argument or result bytes.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(|e| CodecError(format!("cannot encode value: {e}")))
}

/// Decodes task bytes made by [`to_bytes`].
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(|e| {
        CodecError(format!(
            "cannot decode {} bytes as {}: {e}",
            bytes.len(),
            std::any::type_name::<T>()
        ))
    })
}
