//! The fuse area of the boot ROM: the device secret, the OEM public keys, the revoked keys
//! and the anti-rollback minimum security versions.
//!
//! `septa provision` writes it; only the loader reads it (flash 0 is secure-only). Layout:
//! magic `SFUS`, a u16 length, then the postcard encoding of [`Fuses`]. An unprovisioned or
//! corrupt area is an error, never a default.

use crate::keys::PUBLIC_KEY_LEN;
use core::fmt;
use p256::ecdsa::VerifyingKey;
use serde::{Deserialize, Serialize};

pub const MAGIC: [u8; 4] = *b"SFUS";
pub const MAX_KEYS: usize = 4;
pub const MAX_REVOKED: usize = 8;
pub const MAX_MINIMUMS: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fuses {
    /// The unique device secret (UDS).
    pub device_secret: [u8; 32],
    /// OEM public keys (SEC1 uncompressed) that may sign packages.
    pub oem_keys: heapless::Vec<heapless::Vec<u8, PUBLIC_KEY_LEN>, MAX_KEYS>,
    /// Ids of OEM keys that must no longer be accepted.
    pub revoked: heapless::Vec<[u8; 8], MAX_REVOKED>,
    /// Minimum security version per component id.
    pub minimum_versions: heapless::Vec<([u8; 16], u32), MAX_MINIMUMS>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No `SFUS` magic: the device was never provisioned.
    NotProvisioned,
    Corrupt,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotProvisioned => write!(f, "the fuse area is not provisioned (run `septa provision`)"),
            Error::Corrupt => write!(f, "the fuse area is corrupt"),
        }
    }
}

/// Why a package's signing key is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    Unknown,
    Revoked,
}

impl Fuses {
    pub fn decode(area: &[u8]) -> Result<Fuses, Error> {
        if area.get(..4) != Some(&MAGIC[..]) {
            return Err(Error::NotProvisioned);
        }
        let len = area.get(4..6).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize).ok_or(Error::Corrupt)?;
        let bytes = area.get(6..6 + len).ok_or(Error::Corrupt)?;
        postcard::from_bytes(bytes).map_err(|_| Error::Corrupt)
    }

    /// Encodes into `area` (the whole fuse area, which must be large enough).
    pub fn encode_into(&self, area: &mut [u8]) -> Result<(), Error> {
        let (head, body) = area.split_at_mut(6);
        let len = postcard::to_slice(self, body).map_err(|_| Error::Corrupt)?.len();
        head[..4].copy_from_slice(&MAGIC);
        head[4..6].copy_from_slice(&(len as u16).to_le_bytes());
        Ok(())
    }

    /// The provisioned OEM key with id `id`, unless it is revoked.
    pub fn signing_key(&self, id: &[u8; 8]) -> Result<VerifyingKey, KeyError> {
        if self.revoked.contains(id) {
            return Err(KeyError::Revoked);
        }
        self.oem_keys
            .iter()
            .filter_map(|bytes| VerifyingKey::from_sec1_bytes(bytes).ok())
            .find(|key| crate::keys::key_id(key) == *id)
            .ok_or(KeyError::Unknown)
    }

    /// The minimum security version recorded for `component_id` (0 if none).
    pub fn minimum_version(&self, component_id: &[u8; 16]) -> u32 {
        self.minimum_versions.iter().find(|(id, _)| id == component_id).map_or(0, |(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;

    fn fuses() -> (Fuses, VerifyingKey, VerifyingKey) {
        let a = *SigningKey::from_slice(&[1; 32]).unwrap().verifying_key();
        let b = *SigningKey::from_slice(&[2; 32]).unwrap().verifying_key();
        let mut keys = heapless::Vec::new();
        for key in [a, b] {
            keys.push(heapless::Vec::from_slice(key.to_encoded_point(false).as_bytes()).unwrap()).unwrap();
        }
        let fuses = Fuses {
            device_secret: [9; 32],
            oem_keys: keys,
            revoked: heapless::Vec::from_slice(&[crate::keys::key_id(&b)]).unwrap(),
            minimum_versions: heapless::Vec::from_slice(&[([5; 16], 3)]).unwrap(),
        };
        (fuses, a, b)
    }

    #[test]
    fn round_trip_through_the_area() {
        let (f, ..) = fuses();
        let mut area = [0xffu8; 4096];
        f.encode_into(&mut area).unwrap();
        assert_eq!(Fuses::decode(&area).unwrap(), f);
    }

    #[test]
    fn keys_are_found_by_id_and_revoked_ones_refused() {
        let (f, a, b) = fuses();
        assert_eq!(f.signing_key(&crate::keys::key_id(&a)), Ok(a));
        assert_eq!(f.signing_key(&crate::keys::key_id(&b)), Err(KeyError::Revoked));
        assert_eq!(f.signing_key(&[0; 8]), Err(KeyError::Unknown));
        assert_eq!(f.minimum_version(&[5; 16]), 3);
        assert_eq!(f.minimum_version(&[6; 16]), 0);
    }

    #[test]
    fn blank_or_corrupt_areas_are_errors() {
        assert_eq!(Fuses::decode(&[0; 64]), Err(Error::NotProvisioned));
        let mut area = [0u8; 64];
        area[..4].copy_from_slice(&MAGIC);
        area[4] = 200;
        assert_eq!(Fuses::decode(&area), Err(Error::Corrupt));
        for len in 0..6 {
            assert!(Fuses::decode(&area[..len]).is_err());
        }
    }
}
