//! Update bundles: a signed header naming a slot image and its components' security
//! versions, followed by that slot image.
//!
//! Header (little-endian), [`header_len`]`(n)` = 116 + 20·n bytes:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `SBND` |
//! | 4 | 2 | format version ([`FORMAT_VERSION`]) |
//! | 6 | 2 | n, the number of packages in the slot image (≤ [`MAX_COMPONENTS`]) |
//! | 8 | 4 | length of the slot image |
//! | 12 | 8 | id of the OEM key that signed the header |
//! | 20 | 32 | SHA-256 of the slot image |
//! | 52 | 20·n | per package: component id (16), security version (4) |
//! | 52 + 20·n | 64 | ECDSA P-256 / SHA-256 signature (r ‖ s) of the bytes before it |
//!
//! The monitor checks a bundle in two steps: the header when the update begins
//! ([`Header::parse`] and [`Header::verify_signature`]), and the received slot image at commit
//! ([`check_image`]): its hash, the slot exactly as the loader will check it at boot
//! ([`crate::verify`]: the signed slot manifest, every package header against it, keys,
//! security versions at least the minimum, one monitor and one kernel), every payload's
//! hash (at boot the loader and the kernel check those as they load them), and that the
//! packages are the ones the header names. Two signature checks per update, whatever the
//! number of packages: the header's and the slot manifest's.

use crate::fuses::{Fuses, KeyError};
use crate::verify;
use core::fmt;
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 4] = *b"SBND";
pub const FORMAT_VERSION: u16 = 1;
pub const MAX_COMPONENTS: usize = 24;
const FIXED: usize = 52;
const ENTRY: usize = 20;
const SIGNATURE: usize = 64;

/// The header length for `n` packages.
pub const fn header_len(n: usize) -> usize {
    FIXED + ENTRY * n + SIGNATURE
}

/// The longest header.
pub const HEADER_MAX: usize = header_len(MAX_COMPONENTS);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    BadMagic,
    UnsupportedFormat(u16),
    TooManyComponents(usize),
    Truncated,
    UnknownKey([u8; 8]),
    RevokedKey([u8; 8]),
    BadSignature,
    /// The received slot image is not as long as the header says.
    WrongLength {
        expected: usize,
        received: usize,
    },
    /// The slot image does not hash to the header's value.
    WrongDigest,
    /// The slot image is refused as the loader would refuse it.
    Slot(verify::Error),
    /// Package `index` is not the component and version the header names.
    NotInHeader {
        index: usize,
    },
    /// The slot image holds another number of packages than the header names.
    WrongCount {
        header: usize,
        image: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = |f: &mut fmt::Formatter<'_>, id: &[u8; 8]| id.iter().try_for_each(|b| write!(f, "{b:02x}"));
        match self {
            Error::BadMagic => write!(f, "not an update bundle (bad magic)"),
            Error::UnsupportedFormat(v) => write!(f, "unsupported bundle format {v}"),
            Error::TooManyComponents(n) => write!(f, "{n} packages; a bundle holds at most {MAX_COMPONENTS}"),
            Error::Truncated => write!(f, "the bundle is truncated"),
            Error::UnknownKey(id) => {
                write!(f, "signed by an unknown key (")?;
                hex(f, id)?;
                write!(f, ")")
            }
            Error::RevokedKey(id) => {
                write!(f, "signed by a revoked key (")?;
                hex(f, id)?;
                write!(f, ")")
            }
            Error::BadSignature => write!(f, "the bundle signature does not verify"),
            Error::WrongLength { expected, received } => {
                write!(f, "received {received} bytes of a {expected}-byte slot image")
            }
            Error::WrongDigest => write!(f, "the slot image does not match the signed hash"),
            Error::Slot(e) => write!(f, "{e}"),
            Error::NotInHeader { index } => write!(f, "package {index} is not named by the bundle header"),
            Error::WrongCount { header, image } => {
                write!(f, "the header names {header} packages, the slot image holds {image}")
            }
        }
    }
}

/// A bundle header whose layout is valid (its signature is checked separately).
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    bytes: &'a [u8],
    count: usize,
    pub image_len: usize,
    pub key_id: [u8; 8],
    pub digest: [u8; 32],
}

impl<'a> Header<'a> {
    /// Parses the header at the start of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Header<'a>, Error> {
        let fixed = bytes.get(..FIXED).ok_or(Error::Truncated)?;
        if fixed[..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        let format = u16::from_le_bytes([fixed[4], fixed[5]]);
        if format != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat(format));
        }
        let count = u16::from_le_bytes([fixed[6], fixed[7]]) as usize;
        if count > MAX_COMPONENTS {
            return Err(Error::TooManyComponents(count));
        }
        let bytes = bytes.get(..header_len(count)).ok_or(Error::Truncated)?;
        Ok(Header {
            bytes,
            count,
            image_len: u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]) as usize,
            key_id: fixed[12..20].try_into().expect("8 bytes"),
            digest: fixed[20..52].try_into().expect("32 bytes"),
        })
    }

    /// The header's length in bytes; the slot image follows it.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The packages the header names: component id and security version.
    pub fn components(&self) -> impl Iterator<Item = ([u8; 16], u32)> + 'a {
        let table = &self.bytes[FIXED..FIXED + ENTRY * self.count];
        table.chunks(ENTRY).map(|e| {
            (e[..16].try_into().expect("16 bytes"), u32::from_le_bytes([e[16], e[17], e[18], e[19]]))
        })
    }

    /// The bytes the signature covers.
    pub fn signed_part(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len() - SIGNATURE]
    }

    /// Checks the signature with the OEM key the header names.
    pub fn verify_signature(&self, fuses: &Fuses) -> Result<(), Error> {
        let key = fuses.signing_key(&self.key_id).map_err(|e| match e {
            KeyError::Unknown => Error::UnknownKey(self.key_id),
            KeyError::Revoked => Error::RevokedKey(self.key_id),
        })?;
        let signature = Signature::from_slice(&self.bytes[self.bytes.len() - SIGNATURE..])
            .map_err(|_| Error::BadSignature)?;
        key.verify(self.signed_part(), &signature).map_err(|_| Error::BadSignature)
    }
}

/// Encodes the signed part of a header (the host signs it and appends the signature).
#[cfg(any(test, feature = "alloc"))]
pub fn encode_signed_part(
    image: &[u8],
    key_id: [u8; 8],
    components: &[([u8; 16], u32)],
) -> alloc::vec::Vec<u8> {
    let mut out = alloc::vec::Vec::with_capacity(header_len(components.len()));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(components.len() as u16).to_le_bytes());
    out.extend_from_slice(&(image.len() as u32).to_le_bytes());
    out.extend_from_slice(&key_id);
    out.extend_from_slice(&Sha256::digest(image));
    for (id, version) in components {
        out.extend_from_slice(id);
        out.extend_from_slice(&version.to_le_bytes());
    }
    out
}

/// Checks a received slot image against its (signature-checked) header, the fuses' keys
/// and the current minimum security versions.
pub fn check_image(
    header: &Header<'_>,
    image: &[u8],
    fuses: &Fuses,
    minimum: impl Fn(&[u8; 16]) -> u32,
) -> Result<(), Error> {
    if image.len() != header.image_len {
        return Err(Error::WrongLength { expected: header.image_len, received: image.len() });
    }
    if Sha256::digest(image).as_slice() != header.digest {
        return Err(Error::WrongDigest);
    }
    let slot = verify::verify(image, fuses, minimum).map_err(Error::Slot)?;
    slot.check_payloads().map_err(Error::Slot)?;
    if slot.packages().len() != header.count {
        return Err(Error::WrongCount { header: header.count, image: slot.packages().len() });
    }
    for verified in slot.packages() {
        let h = &verified.package.header;
        if !header.components().any(|c| c == (h.component_id, h.security_version)) {
            return Err(Error::NotInHeader { index: verified.index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{Header as PackageHeader, Kind};
    use crate::slot;
    use crate::verify::tests::{fuses, key};
    use alloc::vec::Vec;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;

    fn package(kind: Kind, id: u8, version: u32, key: &SigningKey) -> Vec<u8> {
        let payload = [id; 100];
        let kid = crate::keys::key_id(key.verifying_key());
        let header = PackageHeader::for_payload(kind, [id; 16], version, &payload, kid);
        let signature: Signature = key.sign(&header.encode_signed());
        let mut bytes = header.encode(&signature.to_bytes().into()).to_vec();
        bytes.extend_from_slice(&payload);
        bytes
    }

    fn bundle(key: &SigningKey, app_version: u32) -> Vec<u8> {
        let packages = [
            package(Kind::Monitor, 1, 1, key),
            package(Kind::Kernel, 2, 1, key),
            package(Kind::App, 3, app_version, key),
        ];
        let components = [([1; 16], 1), ([2; 16], 1), ([3; 16], app_version)];
        signed_bundle(key, &slot::compose(&packages, key), &components)
    }

    fn signed_bundle(key: &SigningKey, image: &[u8], components: &[([u8; 16], u32)]) -> Vec<u8> {
        let mut out = encode_signed_part(image, crate::keys::key_id(key.verifying_key()), components);
        let signature: Signature = key.sign(&out);
        out.extend_from_slice(&signature.to_bytes());
        out.extend_from_slice(image);
        out
    }

    fn check(bytes: &[u8], fuses: &Fuses, minimum: u32) -> Result<(), Error> {
        let header = Header::parse(bytes)?;
        header.verify_signature(fuses)?;
        check_image(&header, &bytes[header.len()..], fuses, |id| if *id == [3; 16] { minimum } else { 0 })
    }

    #[test]
    fn a_good_bundle_passes() {
        let oem = key(1);
        let bytes = bundle(&oem, 2);
        let header = Header::parse(&bytes).unwrap();
        assert_eq!(header.components().count(), 3);
        assert_eq!(check(&bytes, &fuses(&[&oem]), 2), Ok(()));
    }

    #[test]
    fn bad_bundles_are_refused_with_the_reason() {
        let oem = key(1);
        let good = bundle(&oem, 2);
        let fuses = fuses(&[&oem]);
        assert!(matches!(check(&bundle(&key(2), 2), &fuses, 0), Err(Error::UnknownKey(_))));
        let rollback = verify::Error::Rollback { index: 2, kind: Kind::App, version: 2, minimum: 3 };
        assert_eq!(check(&good, &fuses, 3), Err(Error::Slot(rollback)));
        let mut bad = good.clone();
        bad[30] ^= 1; // the signed digest
        assert_eq!(check(&bad, &fuses, 0), Err(Error::BadSignature));
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last - 4096] ^= 1; // a payload byte of the image
        assert_eq!(check(&bad, &fuses, 0), Err(Error::WrongDigest));
        for len in [10, 60, header_len(3) + 100, good.len() - 1] {
            assert!(check(&good[..len], &fuses, 0).is_err(), "truncated to {len}");
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(check(&bad, &fuses, 0), Err(Error::BadMagic));
    }

    #[test]
    fn a_signed_bundle_of_a_slot_the_loader_would_refuse_is_refused() {
        let oem = key(1);
        let fuses = fuses(&[&oem]);
        let packages = [
            package(Kind::Monitor, 1, 1, &oem),
            package(Kind::Kernel, 2, 1, &oem),
            package(Kind::App, 3, 1, &oem),
        ];
        let components = [([1; 16], 1), ([2; 16], 1), ([3; 16], 1)];
        // A corrupt app payload, under a bundle header signed over the corrupt image: the
        // loader would boot it and the kernel refuse the app; the monitor refuses it now.
        let mut image = slot::compose(&packages, &oem);
        let last = image.len() - 4096 + 200;
        image[last] ^= 1;
        let hash = verify::Error::Hash { index: 2, kind: Kind::App };
        assert_eq!(check(&signed_bundle(&oem, &image, &components), &fuses, 0), Err(Error::Slot(hash)));
        // The slot manifest signed by a stranger, the bundle header by the OEM.
        let stranger = key(2);
        let image = slot::compose(&packages, &stranger);
        let bad = check(&signed_bundle(&oem, &image, &components), &fuses, 0);
        assert!(matches!(bad, Err(Error::Slot(verify::Error::ManifestKey { .. }))), "{bad:?}");
        // A header naming other versions or another number of packages.
        let image = slot::compose(&packages, &oem);
        let other = [([1; 16], 1), ([2; 16], 2), ([3; 16], 1)];
        assert_eq!(
            check(&signed_bundle(&oem, &image, &other), &fuses, 0),
            Err(Error::NotInHeader { index: 1 })
        );
        let fewer = check(&signed_bundle(&oem, &image, &components[..2]), &fuses, 0);
        assert_eq!(fewer, Err(Error::WrongCount { header: 2, image: 3 }));
    }
}
