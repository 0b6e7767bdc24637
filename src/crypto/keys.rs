//! The keys one program holds for a run, parsed once.

use super::{client_mac_key, domain_digest, mac, mac_verify, Tag};
use secp256k1::ecdsa::Signature;
use secp256k1::{All, Message, PublicKey, Secp256k1, SecretKey};
use troupe_message::control::Keys;

/// Why keys from a command are unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad key material: {}", self.0)
    }
}

impl std::error::Error for KeyError {}

fn public_keys(what: &str, raw: &[Vec<u8>]) -> Result<Vec<PublicKey>, KeyError> {
    raw.iter()
        .enumerate()
        .map(|(i, k)| {
            PublicKey::from_slice(k).map_err(|e| KeyError(format!("{what} public key {i}: {e}")))
        })
        .collect()
}

fn secret_key(what: &str, raw: &[u8]) -> Result<SecretKey, KeyError> {
    SecretKey::from_slice(raw).map_err(|e| KeyError(format!("{what} secret key: {e}")))
}

fn sign_with(secp: &Secp256k1<All>, key: &SecretKey, domain: &[u8], bytes: &[u8]) -> Vec<u8> {
    let msg = Message::from_digest(domain_digest(domain, bytes));
    secp.sign_ecdsa(&msg, key).serialize_compact().to_vec()
}

fn verify_with(
    secp: &Secp256k1<All>,
    key: &PublicKey,
    domain: &[u8],
    bytes: &[u8],
    sig: &[u8],
) -> bool {
    let Ok(sig) = Signature::from_compact(sig) else {
        return false;
    };
    let msg = Message::from_digest(domain_digest(domain, bytes));
    secp.verify_ecdsa(&msg, &sig, key).is_ok()
}

/// What a replica holds: its own secret key, every replica's public key,
/// its own MAC seed, and (when clients sign) the clients' public keys.
pub struct ReplicaKeys {
    secp: Secp256k1<All>,
    id: u16,
    secret: Option<SecretKey>,
    replicas: Vec<PublicKey>,
    mac_seed: Vec<u8>,
    clients: Vec<PublicKey>,
    first_client: u64,
}

impl ReplicaKeys {
    /// Parses replica `id`'s keys from a command.
    pub fn from_command(id: u16, keys: &Keys) -> Result<Self, KeyError> {
        Ok(ReplicaKeys {
            secp: Secp256k1::new(),
            id,
            secret: Some(secret_key("replica", &keys.secret)?),
            replicas: public_keys("replica", &keys.replica_public)?,
            mac_seed: keys.client_seed.clone(),
            clients: public_keys("client", &keys.client_public)?,
            first_client: keys.first_client,
        })
    }

    /// This replica's id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Number of replicas with a known public key.
    pub fn replicas(&self) -> usize {
        self.replicas.len()
    }

    /// Signs `bytes` in `domain` with this replica's key.
    pub fn sign(&self, domain: &[u8], bytes: &[u8]) -> Vec<u8> {
        match &self.secret {
            Some(k) => sign_with(&self.secp, k, domain, bytes),
            None => Vec::new(),
        }
    }

    /// Whether `sig` is replica `signer`'s signature of `bytes` in `domain`.
    pub fn verify_replica(&self, signer: u16, domain: &[u8], bytes: &[u8], sig: &[u8]) -> bool {
        self.replicas
            .get(signer as usize)
            .is_some_and(|k| verify_with(&self.secp, k, domain, bytes, sig))
    }

    /// Whether `sig` is client `client`'s signature of `bytes` in `domain`.
    pub fn verify_client(&self, client: u64, domain: &[u8], bytes: &[u8], sig: &[u8]) -> bool {
        client
            .checked_sub(self.first_client)
            .and_then(|i| self.clients.get(i as usize))
            .is_some_and(|k| verify_with(&self.secp, k, domain, bytes, sig))
    }

    /// The MAC of `bytes` for client `client` (this replica's shared key).
    pub fn client_mac(&self, client: u64, bytes: &[u8]) -> Tag {
        mac(&client_mac_key(&self.mac_seed, client), bytes)
    }

    /// Whether `tag` is client `client`'s MAC of `bytes` for this replica.
    pub fn verify_client_mac(&self, client: u64, bytes: &[u8], tag: &[u8]) -> bool {
        mac_verify(&client_mac_key(&self.mac_seed, client), bytes, tag)
    }
}

/// What a client host holds: every replica's public key and MAC seed,
/// and (when clients sign) the secret keys of its own clients.
pub struct ClientKeys {
    secp: Secp256k1<All>,
    replicas: Vec<PublicKey>,
    mac_seeds: Vec<Vec<u8>>,
    secrets: Vec<SecretKey>,
    first_client: u64,
}

impl ClientKeys {
    /// Parses a client host's keys from a command.
    pub fn from_command(keys: &Keys) -> Result<Self, KeyError> {
        Ok(ClientKeys {
            secp: Secp256k1::new(),
            replicas: public_keys("replica", &keys.replica_public)?,
            mac_seeds: keys.replica_mac_seeds.clone(),
            secrets: keys
                .client_secret
                .iter()
                .map(|k| secret_key("client", k))
                .collect::<Result<_, _>>()?,
            first_client: keys.first_client,
        })
    }

    /// Number of replicas.
    pub fn replicas(&self) -> usize {
        self.replicas.len()
    }

    /// Client `client`'s signature of `bytes` in `domain` (empty when this
    /// host has no key for it).
    pub fn sign(&self, client: u64, domain: &[u8], bytes: &[u8]) -> Vec<u8> {
        client
            .checked_sub(self.first_client)
            .and_then(|i| self.secrets.get(i as usize))
            .map(|k| sign_with(&self.secp, k, domain, bytes))
            .unwrap_or_default()
    }

    /// The MAC client `client` computes of `bytes` for `replica`.
    pub fn mac_for(&self, client: u64, replica: u16, bytes: &[u8]) -> Tag {
        let seed = self
            .mac_seeds
            .get(replica as usize)
            .map(Vec::as_slice)
            .unwrap_or_default();
        mac(&client_mac_key(seed, client), bytes)
    }

    /// Whether `tag` is `replica`'s MAC of `bytes` for client `client`.
    pub fn verify_mac(&self, client: u64, replica: u16, bytes: &[u8], tag: &[u8]) -> bool {
        match self.mac_seeds.get(replica as usize) {
            Some(seed) => mac_verify(&client_mac_key(seed, client), bytes, tag),
            None => false,
        }
    }

    /// Whether `sig` is `replica`'s signature of `bytes` in `domain`.
    pub fn verify_replica(&self, replica: u16, domain: &[u8], bytes: &[u8], sig: &[u8]) -> bool {
        self.replicas
            .get(replica as usize)
            .is_some_and(|k| verify_with(&self.secp, k, domain, bytes, sig))
    }
}

/// Key material for tests and the simulator: `n` replicas and clients
/// `first .. first + clients`, derived deterministically from `seed`.
pub fn test_keys(n: usize, first: u64, clients: u64, seed: u8) -> (Vec<Keys>, Keys) {
    let secp = Secp256k1::new();
    let secret = |tag: u8, i: u64| {
        let mut bytes = super::digest(&[seed, tag]);
        bytes[..8].copy_from_slice(&(i + 1).to_le_bytes());
        // A SHA-256 output is a valid key except with negligible
        // probability; these are fixed inputs, checked by the tests.
        SecretKey::from_slice(&bytes).unwrap_or_else(|_| unreachable!())
    };
    let replica_secret: Vec<SecretKey> = (0..n as u64).map(|i| secret(1, i)).collect();
    let client_secret: Vec<SecretKey> = (0..clients).map(|i| secret(2, i)).collect();
    let mac_seeds: Vec<Vec<u8>> = (0..n as u8).map(|i| vec![seed, i, 3]).collect();
    let replica_public: Vec<Vec<u8>> = replica_secret
        .iter()
        .map(|k| PublicKey::from_secret_key(&secp, k).serialize().to_vec())
        .collect();
    let client_public: Vec<Vec<u8>> = client_secret
        .iter()
        .map(|k| PublicKey::from_secret_key(&secp, k).serialize().to_vec())
        .collect();
    let replicas = (0..n)
        .map(|i| Keys {
            secret: replica_secret[i].secret_bytes().to_vec(),
            replica_public: replica_public.clone(),
            client_seed: mac_seeds[i].clone(),
            client_public: client_public.clone(),
            first_client: first,
            ..Keys::default()
        })
        .collect();
    let host = Keys {
        replica_public,
        replica_mac_seeds: mac_seeds,
        client_secret: client_secret
            .iter()
            .map(|k| k.secret_bytes().to_vec())
            .collect(),
        first_client: first,
        ..Keys::default()
    };
    (replicas, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_sign_clients_mac_and_nobody_else_verifies() {
        let (replicas, host) = test_keys(4, 10, 3, 1);
        let r0 = ReplicaKeys::from_command(0, &replicas[0]).unwrap();
        let r1 = ReplicaKeys::from_command(1, &replicas[1]).unwrap();
        let c = ClientKeys::from_command(&host).unwrap();
        let sig = r0.sign(b"d", b"msg");
        assert!(r1.verify_replica(0, b"d", b"msg", &sig));
        assert!(!r1.verify_replica(1, b"d", b"msg", &sig), "wrong signer");
        assert!(!r1.verify_replica(0, b"e", b"msg", &sig), "wrong domain");
        assert!(!r1.verify_replica(0, b"d", b"msG", &sig));
        assert!(!r1.verify_replica(9, b"d", b"msg", &sig), "unknown signer");
        assert!(!r1.verify_replica(0, b"d", b"msg", &sig[..10]));
        assert!(c.verify_replica(0, b"d", b"msg", &sig));

        let tag = c.mac_for(11, 1, b"req");
        assert!(r1.verify_client_mac(11, b"req", &tag));
        assert!(
            !r0.verify_client_mac(11, b"req", &tag),
            "another replica's key"
        );
        assert!(
            !r1.verify_client_mac(12, b"req", &tag),
            "another client's key"
        );
        assert!(c.verify_mac(11, 1, b"rep", &r1.client_mac(11, b"rep")));

        let csig = c.sign(12, b"r", b"op");
        assert!(r0.verify_client(12, b"r", b"op", &csig));
        assert!(!r0.verify_client(11, b"r", b"op", &csig));
        assert!(c.sign(99, b"r", b"op").is_empty(), "no key for that client");
        assert!(!r0.verify_client(99, b"r", b"op", &csig));

        let mut bad = replicas[0].clone();
        bad.replica_public[2] = vec![1, 2, 3];
        assert!(ReplicaKeys::from_command(0, &bad).is_err());
    }
}
