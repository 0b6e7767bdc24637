//! The plain codec: bincode envelopes, no authentication.

use crate::actor::{Envelope, SharedState, WireError};
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;

/// Encodes an envelope with bincode into `out` (cleared first).
pub fn encode_envelope<M: Serialize>(envelope: &Envelope<M>, out: &mut Vec<u8>) {
    out.clear();
    // Serializing plain data into a Vec cannot fail; should a protocol
    // type ever refuse (a map with non-string keys in some format), the
    // datagram is left empty and the receiver counts it as malformed.
    if bincode::serialize_into(&mut *out, envelope).is_err() {
        out.clear();
    }
}

/// Decodes a bincode envelope, rejecting trailing bytes and any length
/// prefix larger than the datagram (bincode checks sizes against the
/// remaining input, so garbage cannot make it allocate without bound).
pub fn decode_envelope<M: DeserializeOwned>(bytes: &[u8]) -> Result<Envelope<M>, WireError> {
    decode_bincode(bytes)
}

/// Decodes any bincode value with the same guards as [`decode_envelope`]
/// (for frames that carry a bare message, the connection naming the peer).
pub fn decode_bincode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    use bincode::Options;
    bincode::options()
        .with_fixint_encoding()
        .with_limit(bytes.len() as u64)
        .deserialize(bytes)
        .map_err(|e| WireError::Malformed(e.to_string()))
}

/// The [`SharedState`] of protocols that need no cryptography: bincode in,
/// bincode out. Cheap enough to run inline on the core thread.
pub struct BincodeCodec<M>(PhantomData<fn() -> M>);

impl<M> BincodeCodec<M> {
    /// The codec.
    pub fn new() -> Self {
        BincodeCodec(PhantomData)
    }
}

impl<M> Default for BincodeCodec<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Serialize + DeserializeOwned> SharedState for BincodeCodec<M> {
    type Message = M;

    fn decode(&self, bytes: &[u8]) -> Result<Envelope<M>, WireError> {
        decode_envelope(bytes)
    }

    fn encode(&self, envelope: &Envelope<M>, out: &mut Vec<u8>) {
        encode_envelope(envelope, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::Addr;
    use troupe_message::unreplicated::{Message, Request};

    #[test]
    fn round_trip_and_garbage_is_an_error() {
        let codec = BincodeCodec::<Message>::new();
        let env = Envelope {
            from: Addr::Client(9),
            to: Addr::Node(0),
            body: Message::Request(Request {
                client: 9,
                seq: 3,
                op: vec![1, 2, 3],
            }),
        };
        let mut buf = Vec::new();
        codec.encode(&env, &mut buf);
        assert_eq!(codec.decode(&buf).unwrap(), env);

        // Truncations, garbage and a huge length prefix all fail cleanly.
        for cut in 0..buf.len() {
            assert!(
                codec.decode(&buf[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        assert!(codec.decode(&[0xff; 64]).is_err());
        let mut huge = buf.clone();
        let op_len_at = buf.len() - 3 - 8;
        huge[op_len_at..op_len_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(codec.decode(&huge), Err(WireError::Malformed(_))));
    }
}
