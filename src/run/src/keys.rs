//! Fresh secrets for every run.

use secp256k1::{PublicKey, Secp256k1, SecretKey};
use std::io::Read;

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
