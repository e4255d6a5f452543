//! The image package: one monitor, kernel or app image, signed by an OEM key.
//!
//! Layout (little-endian), [`HEADER_LEN`] bytes of header followed by the payload:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `SPKG` |
//! | 4 | 2 | format version ([`FORMAT_VERSION`]) |
//! | 6 | 2 | kind ([`Kind`]) |
//! | 8 | 16 | component id (UUID bytes) |
//! | 24 | 4 | security version |
//! | 28 | 4 | payload length |
//! | 32 | 32 | SHA-256 of the payload |
//! | 64 | 8 | id of the signing key ([`crate::keys::key_id`]) |
//! | 72 | 64 | ECDSA P-256 signature (r ‖ s) over SHA-256 of bytes 0..72 |
//!
//! The signature covers the header, and the header covers the payload through its hash (an
//! app's payload begins with its manifest), so one verification covers the whole package.
//! The loader trusts nothing in a header: [`Package::parse`] checks magic, version, kind and
//! that the payload fits in the bytes given; [`Package::verify_signature`] and
//! [`Package::verify_payload`] check the rest.

use core::fmt;
use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 4] = *b"SPKG";
pub const FORMAT_VERSION: u16 = 2;
/// The signed part of the header.
pub const SIGNED_LEN: usize = 72;
pub const SIGNATURE_LEN: usize = 64;
pub const HEADER_LEN: usize = SIGNED_LEN + SIGNATURE_LEN;

/// The component id of the security monitor (UUID 5e97a000-0000-4000-8000-000000000001).
pub const MONITOR_COMPONENT_ID: [u8; 16] = [0x5e, 0x97, 0xa0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x01];
/// The component id of the kernel (UUID 5e97a000-0000-4000-8000-000000000002).
pub const KERNEL_COMPONENT_ID: [u8; 16] = [0x5e, 0x97, 0xa0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x02];

/// What a package contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The security monitor: a raw binary loaded into secure RAM.
    Monitor = 1,
    /// The kernel: a raw binary loaded into non-secure RAM.
    Kernel = 2,
    /// An app: an ELF file the kernel loads into its own address space.
    App = 3,
}

impl Kind {
    pub fn from_u16(value: u16) -> Option<Kind> {
        match value {
            1 => Some(Kind::Monitor),
            2 => Some(Kind::Kernel),
            3 => Some(Kind::App),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Monitor => "monitor",
            Kind::Kernel => "kernel",
            Kind::App => "app",
        }
    }
}

/// A package header as written by the host tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub component_id: [u8; 16],
    pub security_version: u32,
    pub payload_len: u32,
    pub payload_sha256: [u8; 32],
    /// Which OEM key signed the package.
    pub key_id: [u8; 8],
}

/// Why a package was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the header or the payload length says.
    Truncated {
        needed: usize,
        available: usize,
    },
    BadMagic,
    UnsupportedFormat(u16),
    UnknownKind(u16),
    /// The payload's SHA-256 differs from the one in the header.
    PayloadHashMismatch,
    /// The signature does not verify with the key the header names.
    BadSignature,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, only {available} present")
            }
            Error::BadMagic => write!(f, "bad magic (not a Septa package)"),
            Error::UnsupportedFormat(v) => write!(f, "unsupported package format version {v}"),
            Error::UnknownKind(k) => write!(f, "unknown package kind {k}"),
            Error::PayloadHashMismatch => write!(f, "payload SHA-256 does not match the header"),
            Error::BadSignature => write!(f, "signature does not verify"),
        }
    }
}

impl Header {
    /// A header for `payload`, with its length and hash filled in, to be signed by `key_id`.
    pub fn for_payload(
        kind: Kind,
        component_id: [u8; 16],
        security_version: u32,
        payload: &[u8],
        key_id: [u8; 8],
    ) -> Header {
        Header {
            kind,
            component_id,
            security_version,
            payload_len: u32::try_from(payload.len()).expect("payload larger than 4 GiB"),
            payload_sha256: Sha256::digest(payload).into(),
            key_id,
        }
    }

    /// The bytes the signature covers.
    pub fn encode_signed(&self) -> [u8; SIGNED_LEN] {
        let mut out = [0u8; SIGNED_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&(self.kind as u16).to_le_bytes());
        out[8..24].copy_from_slice(&self.component_id);
        out[24..28].copy_from_slice(&self.security_version.to_le_bytes());
        out[28..32].copy_from_slice(&self.payload_len.to_le_bytes());
        out[32..64].copy_from_slice(&self.payload_sha256);
        out[64..72].copy_from_slice(&self.key_id);
        out
    }

    /// The whole header: the signed part and the signature.
    pub fn encode(&self, signature: &[u8; SIGNATURE_LEN]) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..SIGNED_LEN].copy_from_slice(&self.encode_signed());
        out[SIGNED_LEN..].copy_from_slice(signature);
        out
    }

    /// The measurement of the package: SHA-256 of the signed header, which binds kind,
    /// component id, security version and (through its hash) the payload.
    pub fn measurement(&self) -> [u8; 32] {
        Sha256::digest(self.encode_signed()).into()
    }

    pub fn decode(bytes: &[u8]) -> Result<Header, Error> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Error::Truncated { needed: HEADER_LEN, available: bytes.len() })?;
        if b[0..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        let format = u16::from_le_bytes([b[4], b[5]]);
        if format != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat(format));
        }
        let kind_raw = u16::from_le_bytes([b[6], b[7]]);
        let kind = Kind::from_u16(kind_raw).ok_or(Error::UnknownKind(kind_raw))?;
        let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut component_id = [0u8; 16];
        component_id.copy_from_slice(&b[8..24]);
        let mut payload_sha256 = [0u8; 32];
        payload_sha256.copy_from_slice(&b[32..64]);
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&b[64..72]);
        Ok(Header {
            kind,
            component_id,
            security_version: word(24),
            payload_len: word(28),
            payload_sha256,
            key_id,
        })
    }
}

/// A package whose header parsed and whose payload lies inside the given bytes.
#[derive(Debug)]
pub struct Package<'a> {
    pub header: Header,
    pub signature: [u8; SIGNATURE_LEN],
    pub payload: &'a [u8],
}

impl<'a> Package<'a> {
    /// Parses the package at the start of `bytes` (which may continue past its end).
    pub fn parse(bytes: &'a [u8]) -> Result<Package<'a>, Error> {
        let header = Header::decode(bytes)?;
        let total = HEADER_LEN
            .checked_add(header.payload_len as usize)
            .ok_or(Error::Truncated { needed: usize::MAX, available: bytes.len() })?;
        let payload =
            bytes.get(HEADER_LEN..total).ok_or(Error::Truncated { needed: total, available: bytes.len() })?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[SIGNED_LEN..HEADER_LEN]);
        Ok(Package { header, signature, payload })
    }

    /// Header plus payload length in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Checks the header's signature with `key` (the key the header's `key_id` names).
    pub fn verify_signature(&self, key: &p256::ecdsa::VerifyingKey) -> Result<(), Error> {
        use p256::ecdsa::signature::Verifier;
        let signature =
            p256::ecdsa::Signature::from_slice(&self.signature).map_err(|_| Error::BadSignature)?;
        key.verify(&self.header.encode_signed(), &signature).map_err(|_| Error::BadSignature)
    }

    /// Checks the payload against the SHA-256 in the header.
    pub fn verify_payload(&self) -> Result<(), Error> {
        self.verify_copy(self.payload)
    }

    /// Checks `copy` (the payload as loaded somewhere else) against the SHA-256 in the header.
    pub fn verify_copy(&self, copy: &[u8]) -> Result<(), Error> {
        let digest: [u8; 32] = Sha256::digest(copy).into();
        if digest == self.header.payload_sha256 { Ok(()) } else { Err(Error::PayloadHashMismatch) }
    }

    /// SHA-256 of the whole header, signature included: what a slot manifest lists
    /// ([`crate::slot`]).
    pub fn header_digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.header.encode_signed());
        hasher.update(self.signature);
        hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn packed(kind: Kind, payload: &[u8]) -> Vec<u8> {
        let mut v = Header::for_payload(kind, [7; 16], 3, payload, [1; 8]).encode(&[0; 64]).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn round_trip() {
        let bytes = packed(Kind::Kernel, b"kernel code");
        let p = Package::parse(&bytes).unwrap();
        assert_eq!(p.header.kind, Kind::Kernel);
        assert_eq!(p.header.component_id, [7; 16]);
        assert_eq!(p.header.security_version, 3);
        assert_eq!(p.payload, b"kernel code");
        assert_eq!(p.encoded_len(), bytes.len());
        p.verify_payload().unwrap();
    }

    #[test]
    fn flipped_payload_byte_fails_hash() {
        let mut bytes = packed(Kind::App, b"app payload");
        *bytes.last_mut().unwrap() ^= 1;
        let p = Package::parse(&bytes).unwrap();
        assert_eq!(p.verify_payload(), Err(Error::PayloadHashMismatch));
    }

    #[test]
    fn header_errors_are_reported() {
        let good = packed(Kind::Monitor, b"m");
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Package::parse(&bad).unwrap_err(), Error::BadMagic);
        let mut bad = good.clone();
        bad[4] = 9;
        assert_eq!(Package::parse(&bad).unwrap_err(), Error::UnsupportedFormat(9));
        let mut bad = good.clone();
        bad[6] = 0;
        assert_eq!(Package::parse(&bad).unwrap_err(), Error::UnknownKind(0));
        let mut bad = good.clone();
        bad[6] = 77;
        assert_eq!(Package::parse(&bad).unwrap_err(), Error::UnknownKind(77));
    }

    #[test]
    fn payload_length_beyond_the_bytes_is_truncated_not_read() {
        let mut bytes = packed(Kind::Kernel, b"abc");
        bytes[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Package::parse(&bytes), Err(Error::Truncated { .. })));
        bytes[28..32].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(Package::parse(&bytes), Err(Error::Truncated { .. })));
    }

    #[test]
    fn every_truncation_and_random_input_is_an_error_not_a_panic() {
        let bytes = packed(Kind::App, &[0x5a; 100]);
        for len in 0..bytes.len() {
            assert!(Package::parse(&bytes[..len]).is_err(), "len {len}");
        }
        // A small xorshift generator: deterministic garbage, some of it with a valid magic.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2000 {
            let mut buf = [0u8; 160];
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            if round % 2 == 0 {
                buf[..8].copy_from_slice(&bytes[..8]);
            }
            if let Ok(p) = Package::parse(&buf) {
                assert!(p.encoded_len() <= buf.len());
            }
        }
    }
}

#[cfg(test)]
mod signature_tests {
    extern crate std;
    use super::*;
    use p256::ecdsa::{SigningKey, signature::Signer};
    use std::vec::Vec;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn signed(key: &SigningKey, payload: &[u8]) -> Vec<u8> {
        let header = Header::for_payload(Kind::App, [2; 16], 1, payload, [3; 8]);
        let signature: p256::ecdsa::Signature = key.sign(&header.encode_signed());
        let mut v = header.encode(&signature.to_bytes().into()).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn signature_verifies_with_the_signing_key_only() {
        let bytes = signed(&key(1), b"payload");
        let package = Package::parse(&bytes).unwrap();
        package.verify_signature(key(1).verifying_key()).unwrap();
        assert_eq!(package.verify_signature(key(2).verifying_key()), Err(Error::BadSignature));
    }

    #[test]
    fn any_flipped_header_or_signature_byte_fails() {
        let bytes = signed(&key(1), b"payload");
        for at in (0..HEADER_LEN).filter(|&at| !(4..8).contains(&at) && at != 28) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            if let Ok(package) = Package::parse(&bad) {
                assert!(package.verify_signature(key(1).verifying_key()).is_err(), "byte {at}");
            }
        }
    }
}
