//! The image slot: the set of packages one boot uses, as laid out in flash.
//!
//! A slot starts with a [`HEADER_LEN`]-byte header (little-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `SSLT` |
//! | 4 | 2 | format version ([`FORMAT_VERSION`]) |
//! | 6 | 2 | number of packages |
//! | 8 | 4 | bytes used by the slot, header included |
//! | 12 | 4 | reserved, zero |
//!
//! The signed slot manifest follows at once, n being the number of packages:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 16 | 8 | id of the OEM key that signed the manifest |
//! | 24 | 32·n | per package, in slot order: SHA-256 of its whole header ([`package::HEADER_LEN`] bytes) |
//! | 24 + 32·n | 64 | ECDSA P-256 / SHA-256 signature (r ‖ s) of bytes 0..24 + 32·n |
//!
//! The manifest is what makes one signature check enough for a boot: it covers the slot
//! header (so the package count and length) and every package header, and each package
//! header covers its payload through the payload's SHA-256. [`crate::verify`] checks it.
//!
//! Packages follow, each starting at a multiple of [`PACKAGE_ALIGN`] from the slot start.
//! [`Slot::parse`] bounds the slot to the bytes it says it uses (which must fit in the
//! flash region given) and finds the manifest, and [`Slot::packages`] yields every package
//! or the first error. A
//! slot holds each component once: a package whose component id an earlier package already
//! has is an error ([`Error::SameComponent`]), so no consumer of a slot — loader, monitor,
//! kernel, host tool — can run two copies of one signed app under one identity.

use crate::package::{self, Package};
use core::fmt;

pub const MAGIC: [u8; 4] = *b"SSLT";
pub const FORMAT_VERSION: u16 = 2;
pub const HEADER_LEN: usize = 16;
/// Length of a package entry in the manifest: a SHA-256.
pub const MANIFEST_ENTRY_LEN: usize = 32;
pub const SIGNATURE_LEN: usize = 64;

/// Where the manifest's signature starts in a slot of `n` packages (the length of the
/// signed part).
pub const fn signed_len(n: usize) -> usize {
    HEADER_LEN + 8 + MANIFEST_ENTRY_LEN * n
}
/// Packages start on 4 KiB boundaries so that offsets read well in `septa inspect`.
pub const PACKAGE_ALIGN: usize = 4096;
/// More packages than this in one slot is refused.
pub const MAX_PACKAGES: usize = 32;
// The manifest of the largest slot fits before the first package.
const _: () = assert!(signed_len(MAX_PACKAGES) + SIGNATURE_LEN <= PACKAGE_ALIGN);

/// Why a slot was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    BadMagic,
    UnsupportedFormat(u16),
    /// The header claims more bytes than the slot region holds, or fewer than its header
    /// and manifest need.
    BadLength {
        claimed: usize,
        region: usize,
    },
    TooManyPackages(usize),
    /// Package number `index` (from 0) is malformed.
    Package {
        index: usize,
        error: package::Error,
    },
    /// Package `index` has the component id of package `first`.
    SameComponent {
        first: usize,
        index: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadMagic => write!(f, "bad slot magic (no Septa slot here)"),
            Error::UnsupportedFormat(v) => write!(f, "unsupported slot format version {v}"),
            Error::BadLength { claimed, region } => {
                write!(
                    f,
                    "slot length {claimed} does not hold its manifest or is beyond the {region}-byte region"
                )
            }
            Error::TooManyPackages(n) => {
                write!(f, "slot lists {n} packages, at most {MAX_PACKAGES} allowed")
            }
            Error::Package { index, error } => write!(f, "package {index}: {error}"),
            Error::SameComponent { first, index } => write!(
                f,
                "package {index}: its component id is also package {first}'s (a slot holds each component once)"
            ),
        }
    }
}

/// A slot whose header is valid.
#[derive(Clone, Copy, Debug)]
pub struct Slot<'a> {
    count: usize,
    bytes: &'a [u8],
}

impl<'a> Slot<'a> {
    /// Parses the slot header at the start of `region` (the whole flash region of the slot).
    pub fn parse(region: &'a [u8]) -> Result<Slot<'a>, Error> {
        let header =
            region.get(..HEADER_LEN).ok_or(Error::BadLength { claimed: HEADER_LEN, region: region.len() })?;
        if header[0..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        let format = u16::from_le_bytes([header[4], header[5]]);
        if format != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat(format));
        }
        let count = u16::from_le_bytes([header[6], header[7]]) as usize;
        if count > MAX_PACKAGES {
            return Err(Error::TooManyPackages(count));
        }
        let used = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        let bytes = region
            .get(..used)
            .filter(|b| b.len() >= signed_len(count) + SIGNATURE_LEN)
            .ok_or(Error::BadLength { claimed: used, region: region.len() })?;
        Ok(Slot { count, bytes })
    }

    pub fn package_count(&self) -> usize {
        self.count
    }

    /// The id of the key the manifest names as its signer.
    pub fn manifest_key_id(&self) -> [u8; 8] {
        self.bytes[HEADER_LEN..HEADER_LEN + 8].try_into().expect("8 bytes")
    }

    /// The manifest's hash of package `index`'s header, if the slot has that package.
    pub fn manifest_entry(&self, index: usize) -> Option<[u8; 32]> {
        if index >= self.count {
            return None;
        }
        let at = HEADER_LEN + 8 + MANIFEST_ENTRY_LEN * index;
        self.bytes[at..at + MANIFEST_ENTRY_LEN].try_into().ok()
    }

    /// The bytes the manifest's signature covers: slot header, key id and entries.
    pub fn signed_part(&self) -> &'a [u8] {
        &self.bytes[..signed_len(self.count)]
    }

    /// The manifest's signature (r ‖ s).
    pub fn manifest_signature(&self) -> &'a [u8] {
        let at = signed_len(self.count);
        &self.bytes[at..at + SIGNATURE_LEN]
    }

    /// Whether `key` (the key [`Slot::manifest_key_id`] names) made the manifest's signature.
    pub fn manifest_signed_by(&self, key: &p256::ecdsa::VerifyingKey) -> bool {
        use p256::ecdsa::signature::Verifier;
        p256::ecdsa::Signature::from_slice(self.manifest_signature())
            .is_ok_and(|signature| key.verify(self.signed_part(), &signature).is_ok())
    }

    /// The packages with their offsets from the slot start, in slot order. Stops after the
    /// first error.
    pub fn packages(&self) -> Packages<'a> {
        Packages { slot: *self, index: 0, offset: PACKAGE_ALIGN, failed: false, seen: heapless::Vec::new() }
    }
}

/// Iterator over a slot's packages: `(offset, package)` or the error that stopped it.
pub struct Packages<'a> {
    slot: Slot<'a>,
    index: usize,
    offset: usize,
    failed: bool,
    /// The component ids of the packages yielded so far.
    seen: heapless::Vec<[u8; 16], MAX_PACKAGES>,
}

impl<'a> Iterator for Packages<'a> {
    type Item = Result<(usize, Package<'a>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.index >= self.slot.count {
            return None;
        }
        let index = self.index;
        let fail = |error| Error::Package { index, error };
        let rest = self.slot.bytes.get(self.offset..).unwrap_or(&[]);
        let result = Package::parse(rest).map_err(fail).and_then(|package| {
            let id = package.header.component_id;
            if let Some(first) = self.seen.iter().position(|seen| *seen == id) {
                return Err(Error::SameComponent { first, index });
            }
            // `count` is at most MAX_PACKAGES, so there is room.
            let _ = self.seen.push(id);
            let at = self.offset;
            self.offset = align_up(at + package.encoded_len());
            Ok((at, package))
        });
        self.failed = result.is_err();
        self.index += 1;
        Some(result)
    }
}

const fn align_up(n: usize) -> usize {
    n.div_ceil(PACKAGE_ALIGN) * PACKAGE_ALIGN
}

/// Builds a slot from encoded packages (header + payload each), in the order given, with
/// its manifest signed by `key`. Panics on more than [`MAX_PACKAGES`] packages or a package
/// shorter than its header (the host tools check both first).
#[cfg(any(test, feature = "alloc"))]
pub fn compose(packages: &[alloc::vec::Vec<u8>], key: &p256::ecdsa::SigningKey) -> alloc::vec::Vec<u8> {
    use p256::ecdsa::signature::Signer;
    use sha2::{Digest, Sha256};
    assert!(packages.len() <= MAX_PACKAGES, "{} packages; a slot holds {MAX_PACKAGES}", packages.len());
    let mut out = alloc::vec![0u8; PACKAGE_ALIGN];
    for package in packages {
        out.extend_from_slice(package);
        out.resize(align_up(out.len()), 0);
    }
    let count = packages.len() as u16;
    let used = u32::try_from(out.len()).expect("slot larger than 4 GiB");
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&count.to_le_bytes());
    out[8..12].copy_from_slice(&used.to_le_bytes());
    out[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&crate::keys::key_id(key.verifying_key()));
    for (index, package) in packages.iter().enumerate() {
        let at = HEADER_LEN + 8 + MANIFEST_ENTRY_LEN * index;
        out[at..at + MANIFEST_ENTRY_LEN].copy_from_slice(&Sha256::digest(&package[..package::HEADER_LEN]));
    }
    let signed = signed_len(packages.len());
    let signature: p256::ecdsa::Signature = key.sign(&out[..signed]);
    out[signed..signed + SIGNATURE_LEN].copy_from_slice(&signature.to_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{Header, Kind};
    use alloc::vec::Vec;

    fn pkg(kind: Kind, payload: &[u8]) -> Vec<u8> {
        let id = [kind as u8; 16];
        let mut v = Header::for_payload(kind, id, 1, payload, [0; 8]).encode(&[0; 64]).to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap()
    }

    fn two_package_slot() -> Vec<u8> {
        compose(&[pkg(Kind::Monitor, &[1; 5000]), pkg(Kind::Kernel, b"kernel")], &key())
    }

    #[test]
    fn packages_are_found_at_aligned_offsets() {
        let bytes = two_package_slot();
        let slot = Slot::parse(&bytes).unwrap();
        let found: Vec<_> = slot.packages().map(|p| p.unwrap()).collect();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].0, PACKAGE_ALIGN);
        assert_eq!(found[0].1.header.kind, Kind::Monitor);
        assert_eq!(found[1].0, 3 * PACKAGE_ALIGN);
        assert_eq!(found[1].1.payload, b"kernel");
    }

    #[test]
    fn slot_longer_than_its_region_is_refused() {
        let bytes = two_package_slot();
        assert!(matches!(Slot::parse(&bytes[..bytes.len() - 1]), Err(Error::BadLength { .. })));
    }

    #[test]
    fn package_past_the_used_length_is_an_error() {
        let mut bytes = two_package_slot();
        // Claim one more package than the slot holds.
        bytes[6] = 3;
        let slot = Slot::parse(&bytes).unwrap();
        let last = slot.packages().last().unwrap();
        assert!(matches!(last, Err(Error::Package { index: 2, .. })));
    }

    #[test]
    fn corrupt_package_header_names_its_index() {
        let mut bytes = two_package_slot();
        bytes[3 * PACKAGE_ALIGN] ^= 0xff;
        let slot = Slot::parse(&bytes).unwrap();
        let errors: Vec<_> = slot.packages().filter_map(|p| p.err()).collect();
        assert_eq!(errors, [Error::Package { index: 1, error: package::Error::BadMagic }]);
    }

    #[test]
    fn a_second_package_of_one_component_is_refused() {
        let app = pkg(Kind::App, b"app");
        let bytes = compose(&[pkg(Kind::Monitor, b"m"), app.clone(), pkg(Kind::Kernel, b"k"), app], &key());
        let slot = Slot::parse(&bytes).unwrap();
        let results: Vec<_> = slot.packages().collect();
        assert_eq!(results.len(), 4);
        assert!(results[..3].iter().all(Result::is_ok));
        assert_eq!(results[3].as_ref().unwrap_err(), &Error::SameComponent { first: 1, index: 3 });
    }

    #[test]
    fn header_errors() {
        let good = two_package_slot();
        let mut bad = good.clone();
        bad[1] = 0;
        assert_eq!(Slot::parse(&bad).unwrap_err(), Error::BadMagic);
        let mut bad = good.clone();
        bad[4] = 1;
        assert_eq!(Slot::parse(&bad).unwrap_err(), Error::UnsupportedFormat(1));
        let mut bad = good.clone();
        bad[6] = 200;
        assert_eq!(Slot::parse(&bad).unwrap_err(), Error::TooManyPackages(200));
        assert!(Slot::parse(&good[..8]).is_err());
        // A length too short for the manifest of its packages.
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&(signed_len(2) as u32).to_le_bytes());
        assert!(matches!(Slot::parse(&bad), Err(Error::BadLength { .. })));
    }

    #[test]
    fn the_manifest_lists_every_package_header_and_is_signed() {
        use p256::ecdsa::signature::Verifier;
        use sha2::{Digest, Sha256};
        let bytes = two_package_slot();
        let slot = Slot::parse(&bytes).unwrap();
        assert_eq!(slot.manifest_key_id(), crate::keys::key_id(key().verifying_key()));
        for (index, found) in slot.packages().enumerate() {
            let (at, _) = found.unwrap();
            let header: [u8; 32] = Sha256::digest(&bytes[at..at + package::HEADER_LEN]).into();
            assert_eq!(slot.manifest_entry(index), Some(header));
        }
        assert_eq!(slot.manifest_entry(2), None);
        let signature = p256::ecdsa::Signature::from_slice(slot.manifest_signature()).unwrap();
        key().verifying_key().verify(slot.signed_part(), &signature).unwrap();
    }
}
