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

/// The keys of one run: for each replica its own secret key and
/// everyone's public keys; for the client host the public keys only. The
/// MAC seed clients and replicas derive per-client keys from goes to both.
pub fn run_keys(replicas: usize) -> std::io::Result<(Vec<Keys>, Keys)> {
    let pairs = replica_keys(replicas)?;
    let replica_public: Vec<Vec<u8>> = pairs.iter().map(|k| k.1.clone()).collect();
    let client_seed = random_bytes(32)?;
    let replica_keys = pairs
        .into_iter()
        .map(|(secret, _)| Keys {
            secret,
            replica_public: replica_public.clone(),
            client_seed: client_seed.clone(),
        })
        .collect();
    let host = Keys {
        replica_public,
        client_seed,
        ..Keys::default()
    };
    Ok((replica_keys, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_gets_only_its_own_secret_and_every_run_fresh_keys() {
        let (replicas, host) = run_keys(4).unwrap();
        assert_eq!(replicas.len(), 4);
        let secp = Secp256k1::signing_only();
        for (i, r) in replicas.iter().enumerate() {
            assert_eq!(r.replica_public, host.replica_public);
            let secret = SecretKey::from_slice(&r.secret).unwrap();
            let public = PublicKey::from_secret_key(&secp, &secret).serialize();
            assert_eq!(&public[..], &r.replica_public[i][..], "its own pair");
        }
        let secrets: std::collections::HashSet<_> = replicas.iter().map(|r| &r.secret).collect();
        assert_eq!(secrets.len(), 4);
        assert!(host.secret.is_empty());
        let (again, _) = run_keys(4).unwrap();
        assert_ne!(again[0].secret, replicas[0].secret);
        assert_ne!(token().unwrap(), token().unwrap());
    }
}
