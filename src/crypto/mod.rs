//! Cryptography for Byzantine fault-tolerant protocols: digests, secp256k1
//! signatures and MACs, with the keys a run hands out.
//!
//! Everything here is plain functions over bytes, so any protocol can use
//! it from its [`SharedState`](crate::actor::SharedState) (signing and
//! verifying on a pool of threads) without this module knowing any wire
//! type. Signatures are over `SHA-256(len(domain) || domain || bytes)`: the domain keeps
//! a signature made for one kind of message from being replayed as
//! another kind with the same bytes.

mod keys;

pub use keys::{test_keys, ClientKeys, KeyError, ReplicaKeys};

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// A MAC tag (HMAC-SHA-256).
pub type Tag = [u8; 32];

/// Length of a compact secp256k1 signature.
pub const SIGNATURE_LEN: usize = 64;

/// SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// SHA-256 of `len(domain) || domain || bytes`: the value a signature
/// covers (the length keeps one domain from being a prefix of another).
pub fn domain_digest(domain: &[u8], bytes: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update((domain.len() as u64).to_le_bytes());
    h.update(domain);
    h.update(bytes);
    h.finalize().into()
}

/// HMAC-SHA-256 of `bytes` under `key`.
pub fn mac(key: &[u8], bytes: &[u8]) -> Tag {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(bytes);
    m.finalize().into_bytes().into()
}

/// Whether `tag` is the MAC of `bytes` under `key` (constant time).
pub fn mac_verify(key: &[u8], bytes: &[u8], tag: &[u8]) -> bool {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(bytes);
    m.verify_slice(tag).is_ok()
}

/// The MAC key client `client` shares with the replica whose MAC seed is
/// `seed`. Each replica gets only its own seed, so no replica can compute
/// the keys another replica shares with clients; the client host gets
/// every replica's seed.
pub fn client_mac_key(seed: &[u8], client: u64) -> Tag {
    mac(seed, &client.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_macs() {
        assert_ne!(digest(b"a"), digest(b"b"));
        assert_ne!(domain_digest(b"x", b"ab"), domain_digest(b"xa", b"b"));
        let key = client_mac_key(b"seed", 7);
        assert_ne!(key, client_mac_key(b"seed", 8));
        let tag = mac(&key, b"hello");
        assert!(mac_verify(&key, b"hello", &tag));
        assert!(!mac_verify(&key, b"hellO", &tag));
        assert!(!mac_verify(&key, b"hello", &tag[..31]));
    }
}
