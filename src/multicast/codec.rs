//! The session's wire codec: bincode envelopes, optionally followed by a
//! truncated HMAC-SHA256 tag under the session key, so that only key
//! holders can join or inject datagrams.

use crate::actor::{Envelope, SharedState, WireError};
use crate::net::{decode_envelope, encode_envelope};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use troupe_message::multicast::Message;

/// Bytes of the tag appended under a session key (128 bits).
pub const TAG_LEN: usize = 16;

/// Encodes and decodes session datagrams.
#[derive(Clone)]
pub struct SessionCodec {
    mac: Option<Hmac<Sha256>>,
}

impl SessionCodec {
    /// A codec that authenticates with `key` (any length), or does not
    /// when `None`.
    pub fn new(key: Option<&[u8]>) -> Self {
        SessionCodec {
            // HMAC takes keys of any length, so this cannot fail.
            mac: key.and_then(|k| Hmac::<Sha256>::new_from_slice(k).ok()),
        }
    }
}

impl SharedState for SessionCodec {
    type Message = Message;

    fn decode(&self, bytes: &[u8]) -> Result<Envelope<Message>, WireError> {
        let body = match &self.mac {
            None => bytes,
            Some(mac) => {
                if bytes.len() < TAG_LEN {
                    return Err(WireError::BadAuth);
                }
                let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
                let mut mac = mac.clone();
                mac.update(body);
                mac.verify_truncated_left(tag)
                    .map_err(|_| WireError::BadAuth)?;
                body
            }
        };
        decode_envelope(body)
    }

    fn encode(&self, envelope: &Envelope<Message>, out: &mut Vec<u8>) {
        encode_envelope(envelope, out);
        if let Some(mac) = &self.mac {
            let mut mac = mac.clone();
            mac.update(out);
            let tag = mac.finalize().into_bytes();
            out.extend_from_slice(&tag[..TAG_LEN]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::Addr;

    #[test]
    fn only_the_right_key_decodes() {
        let env = Envelope {
            from: Addr::Client(7),
            to: Addr::Node(0),
            body: Message::Join,
        };
        let keyed = SessionCodec::new(Some(b"secret"));
        let mut buf = Vec::new();
        keyed.encode(&env, &mut buf);
        assert_eq!(keyed.decode(&buf), Ok(env.clone()));
        let other = SessionCodec::new(Some(b"other"));
        assert_eq!(other.decode(&buf), Err(WireError::BadAuth));
        let mut flipped = buf.clone();
        flipped[0] ^= 1;
        assert_eq!(keyed.decode(&flipped), Err(WireError::BadAuth));
        let plain = SessionCodec::new(None);
        let mut unsigned = Vec::new();
        plain.encode(&env, &mut unsigned);
        assert_eq!(keyed.decode(&unsigned), Err(WireError::BadAuth));
        assert_eq!(keyed.decode(&[1, 2]), Err(WireError::BadAuth));
        assert!(plain.decode(&[0xff; 3]).is_err());
    }
}
