//! Keys and what the secure world derives from the device secret.
//!
//! - OEM signing keys are P-256 keys; packages name theirs by [`key_id`], the first 8 bytes
//!   of the SHA-256 of its SEC1 uncompressed public key.
//! - The device identity key and every key the monitor hands out are derived, never stored:
//!   [`derive_key`] turns a secret and a label into a P-256 scalar with HMAC-SHA256
//!   (re-hashing with a counter in the negligible case the result is not a valid scalar).
//! - The compound device identifier of the DICE scheme is [`compound_device_id`]: HMAC-SHA256
//!   keyed with the device secret over the boot measurements, in boot order. Other software
//!   measures differently and so gets another CDI and other keys.

use hmac::{Hmac, Mac};
use p256::ecdsa::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

pub type HmacSha256 = Hmac<Sha256>;

/// SEC1 uncompressed encoding of a P-256 public key.
pub const PUBLIC_KEY_LEN: usize = 65;

/// The id a package header uses for the key that signed it.
pub fn key_id(key: &VerifyingKey) -> [u8; 8] {
    let digest = Sha256::digest(key.to_encoded_point(false).as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// HMAC-SHA256 of `parts` (concatenated) under `key`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// A P-256 signing key derived from `secret` for `label` and `context`.
pub fn derive_key(secret: &[u8; 32], label: &[u8], context: &[u8]) -> SigningKey {
    (0u8..=255)
        .find_map(|counter| SigningKey::from_slice(&hmac(secret, &[label, context, &[counter]])).ok())
        .expect("256 tries never all miss the P-256 scalar range")
}

/// The CDI: the device secret bound to the measurements of what booted.
pub fn compound_device_id(device_secret: &[u8; 32], measurements: &[[u8; 32]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(device_secret).expect("HMAC takes keys of any length");
    mac.update(b"septa cdi");
    for measurement in measurements {
        mac.update(measurement);
    }
    mac.finalize().into_bytes().into()
}

/// The sealing CDI: the device secret bound to the OEM keys that signed the booted
/// software, not to its hashes — so data sealed with it (app storage) survives an update
/// signed by the same OEM, and no other device or signer can unseal it (DICE's `CDI_Seal`).
pub fn sealing_cdi(device_secret: &[u8; 32], authority_key_ids: &[[u8; 8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(device_secret).expect("HMAC takes keys of any length");
    mac.update(SEALING);
    for id in authority_key_ids {
        mac.update(id);
    }
    mac.finalize().into_bytes().into()
}

/// The seed of the device identity key: depends on the device secret only, so the identity
/// survives software updates. The loader hands this (not the secret) to the monitor.
pub fn identity_seed(device_secret: &[u8; 32]) -> [u8; 32] {
    hmac(device_secret, &[DEVICE_IDENTITY])
}

/// The device identity key, from its seed.
pub fn device_identity_key(seed: &[u8; 32]) -> SigningKey {
    derive_key(seed, DEVICE_IDENTITY, b"")
}

/// Labels for [`derive_key`].
pub const DEVICE_IDENTITY: &[u8] = b"septa device identity";
pub const ATTESTATION: &[u8] = b"septa attestation";
pub const APP_KEY: &[u8] = b"septa app key";
pub const SEALING: &[u8] = b"septa sealing cdi";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_stable_and_separated() {
        let secret = [7u8; 32];
        let a = derive_key(&secret, APP_KEY, &[1; 16]);
        assert_eq!(a.to_bytes(), derive_key(&secret, APP_KEY, &[1; 16]).to_bytes());
        assert_ne!(a.to_bytes(), derive_key(&secret, APP_KEY, &[2; 16]).to_bytes());
        assert_ne!(a.to_bytes(), derive_key(&[8; 32], APP_KEY, &[1; 16]).to_bytes());
    }

    #[test]
    fn cdi_depends_on_every_measurement_and_its_order() {
        let secret = [1u8; 32];
        let base = compound_device_id(&secret, &[[1; 32], [2; 32]]);
        assert_ne!(base, compound_device_id(&secret, &[[2; 32], [1; 32]]));
        assert_ne!(base, compound_device_id(&secret, &[[1; 32], [3; 32]]));
        assert_ne!(base, compound_device_id(&[2; 32], &[[1; 32], [2; 32]]));
    }
}
