//! Fresh secrets for every run.

use secp256k1::{PublicKey, Secp256k1, SecretKey};
use std::io::Read;
use troupe_message::control::Keys;

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// A random hex token (the control plane's shared secret for a sweep).
pub fn token() -> std::io::Result<String> {
    Ok(random_bytes(16)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A fresh secp256k1 key pair per replica: `(secret, compressed public)`.
pub fn replica_keys(n: usize) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let secp = Secp256k1::signing_only();
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        // A random 32-byte string is a valid key except with negligible
        // probability; draw again in that case.
        if let Ok(secret) = SecretKey::from_slice(&random_bytes(32)?) {
            let public = PublicKey::from_secret_key(&secp, &secret);
            keys.push((secret.secret_bytes().to_vec(), public.serialize().to_vec()));
        }
    }
    Ok(keys)
}

/// The keys of one run: for each replica its own secret key, its own MAC
/// seed and everyone's public keys; for the client host every replica's
/// public key and MAC seed. With `signing_clients`, clients
/// `first_client .. first_client + clients` also get key pairs: replicas
/// receive the public halves, the client host the secret ones.
pub fn run_keys(
    replicas: usize,
    first_client: u64,
    clients: u32,
    signing_clients: bool,
) -> std::io::Result<(Vec<Keys>, Keys)> {
    let pairs = replica_keys(replicas)?;
    let replica_public: Vec<Vec<u8>> = pairs.iter().map(|k| k.1.clone()).collect();
    let mac_seeds: Vec<Vec<u8>> = (0..replicas)
        .map(|_| random_bytes(32))
        .collect::<Result<_, _>>()?;
    let client_pairs = if signing_clients {
        replica_keys(clients as usize)?
    } else {
        Vec::new()
    };
    let replica_keys = pairs
        .into_iter()
        .zip(&mac_seeds)
        .map(|((secret, _), seed)| Keys {
            secret,
            replica_public: replica_public.clone(),
            client_seed: seed.clone(),
            client_public: client_pairs.iter().map(|k| k.1.clone()).collect(),
            first_client,
            ..Keys::default()
        })
        .collect();
    let host = Keys {
        replica_public,
        replica_mac_seeds: mac_seeds,
        client_secret: client_pairs.into_iter().map(|k| k.0).collect(),
        first_client,
        ..Keys::default()
    };
    Ok((replica_keys, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_gets_only_its_own_secrets() {
        let (replicas, host) = run_keys(4, 1, 3, true).unwrap();
        assert_eq!(replicas.len(), 4);
        for (i, r) in replicas.iter().enumerate() {
            assert_eq!(r.replica_public.len(), 4);
            assert_eq!(r.client_seed, host.replica_mac_seeds[i]);
            assert!(r.replica_mac_seeds.is_empty() && r.client_secret.is_empty());
            assert_eq!(r.client_public.len(), 3);
        }
        assert_ne!(replicas[0].secret, replicas[1].secret);
        assert!(host.secret.is_empty() && host.client_seed.is_empty());
        assert_eq!(host.client_secret.len(), 3);
        let secp = Secp256k1::signing_only();
        for (i, r) in replicas.iter().enumerate() {
            assert_eq!(r.replica_public, host.replica_public);
            let secret = SecretKey::from_slice(&r.secret).unwrap();
            let public = PublicKey::from_secret_key(&secp, &secret).serialize();
            assert_eq!(&public[..], &r.replica_public[i][..], "its own pair");
        }
        let (unsigned, _) = run_keys(4, 1, 3, false).unwrap();
        assert!(unsigned[0].client_public.is_empty());
        assert_ne!(
            unsigned[0].secret, replicas[0].secret,
            "fresh keys every run"
        );
        assert_ne!(token().unwrap(), token().unwrap());
    }
}
