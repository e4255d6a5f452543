//! The one check of an image slot, shared by the loader (before every boot) and the monitor
//! (before it installs an update), so the two cannot disagree on what may run.
//!
//! [`verify`] takes a slot as it lies in flash, the fuses and the anti-rollback minimums the
//! boot state has raised, and accepts the slot only if
//!
//! 1. it parses: slot header, manifest, every package header, each component once;
//! 2. its manifest ([`crate::slot`]) is signed by a provisioned, unrevoked OEM key and the
//!    signature verifies — the one ECDSA verification of a boot;
//! 3. every package header is the one the manifest lists (SHA-256 of the whole header);
//! 4. every package names a provisioned, unrevoked signing key, so a package signed with a
//!    key since revoked stays refused even inside a freshly signed slot;
//! 5. every security version is at least the minimum: the fuses' or the boot state's,
//!    whichever is higher;
//! 6. it holds exactly one monitor and one kernel.
//!
//! Payloads are bound by their header's hash. Who checks them is decided by who uses them,
//! so each byte is hashed once: at boot the loader hashes its own copies of the monitor and
//! the kernel ([`VerifiedPackage::check_copy`]: what is checked is what runs) and the kernel
//! hashes each app when it starts it; the monitor, before it installs an update, hashes
//! every payload ([`VerifiedSlot::check_payloads`]). The fuses' keys are decoded once per
//! call, whatever the number of packages.

use crate::fuses::{Fuses, KeyError};
use crate::keys;
use crate::package::{Kind, Package};
use crate::slot::{self, MAX_PACKAGES, Slot};
use core::fmt;
use p256::ecdsa::VerifyingKey;

/// Why a slot is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Slot(slot::Error),
    /// The manifest names a key the fuses do not accept.
    ManifestKey {
        id: [u8; 8],
        error: KeyError,
    },
    ManifestSignature,
    /// Package `index`'s header is not the one the manifest lists.
    NotInManifest {
        index: usize,
        kind: Kind,
    },
    /// Package `index` names a signing key the fuses do not accept.
    Key {
        index: usize,
        kind: Kind,
        id: [u8; 8],
        error: KeyError,
    },
    Rollback {
        index: usize,
        kind: Kind,
        version: u32,
        minimum: u32,
    },
    /// The payload does not hash to the value in the (manifest-covered) header.
    Hash {
        index: usize,
        kind: Kind,
    },
    Duplicate {
        index: usize,
        kind: Kind,
    },
    Missing(Kind),
}

fn write_key(f: &mut fmt::Formatter<'_>, error: &KeyError, id: &[u8; 8]) -> fmt::Result {
    let what = match error {
        KeyError::Unknown => "an unknown key",
        KeyError::Revoked => "a revoked key",
    };
    write!(f, "signed by {what} (key id ")?;
    id.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
    write!(f, ")")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Slot(e) => write!(f, "{e}"),
            Error::ManifestKey { id, error } => {
                write!(f, "the slot manifest is ")?;
                write_key(f, error, id)
            }
            Error::ManifestSignature => {
                write!(f, "the slot manifest's signature does not verify (tampered slot header or manifest)")
            }
            Error::NotInManifest { index, kind } => write!(
                f,
                "package {index} ({}): its header is not the one the signed slot manifest lists (tampered header or signature)",
                kind.name()
            ),
            Error::Key { index, kind, id, error } => {
                write!(f, "package {index} ({}): ", kind.name())?;
                write_key(f, error, id)
            }
            Error::Rollback { index, kind, version, minimum } => write!(
                f,
                "package {index} ({}): security version {version} is below the minimum {minimum} (rollback)",
                kind.name()
            ),
            Error::Hash { index, kind } => write!(
                f,
                "package {index} ({}): payload SHA-256 does not match the header (corrupt image)",
                kind.name()
            ),
            Error::Duplicate { index, kind } => {
                write!(f, "package {index}: a second {} package", kind.name())
            }
            Error::Missing(kind) => write!(f, "no {} package in the slot", kind.name()),
        }
    }
}

/// A package of a verified slot: its header is the one the signed manifest lists.
#[derive(Debug)]
pub struct VerifiedPackage<'a> {
    /// Its place in the slot, from 0.
    pub index: usize,
    pub package: Package<'a>,
    /// What the boot log records for it ([`crate::package::Header::measurement`]).
    pub measurement: [u8; 32],
}

impl VerifiedPackage<'_> {
    /// Checks `copy`, the payload where it was loaded to, against the header's hash.
    pub fn check_copy(&self, copy: &[u8]) -> Result<(), Error> {
        let (index, kind) = (self.index, self.package.header.kind);
        self.package.verify_copy(copy).map_err(|_| Error::Hash { index, kind })
    }
}

/// A slot that passed [`verify`] (payloads not yet hashed, see the module documentation).
#[derive(Debug)]
pub struct VerifiedSlot<'a> {
    packages: heapless::Vec<VerifiedPackage<'a>, MAX_PACKAGES>,
    monitor: usize,
    kernel: usize,
    manifest_key_id: [u8; 8],
}

impl<'a> VerifiedSlot<'a> {
    /// Every package, in slot order.
    pub fn packages(&self) -> &[VerifiedPackage<'a>] {
        &self.packages
    }

    pub fn monitor(&self) -> &VerifiedPackage<'a> {
        &self.packages[self.monitor]
    }

    pub fn kernel(&self) -> &VerifiedPackage<'a> {
        &self.packages[self.kernel]
    }

    /// The OEM key that signed the slot manifest.
    pub fn manifest_key_id(&self) -> [u8; 8] {
        self.manifest_key_id
    }

    /// Hashes every payload where it lies (the monitor, before installing an update).
    pub fn check_payloads(&self) -> Result<(), Error> {
        self.packages.iter().try_for_each(|p| p.check_copy(p.package.payload))
    }
}

/// The fuses' accepted keys, decoded once.
struct Keys<'f> {
    fuses: &'f Fuses,
    keys: heapless::Vec<([u8; 8], VerifyingKey), { crate::fuses::MAX_KEYS }>,
}

impl<'f> Keys<'f> {
    fn new(fuses: &'f Fuses) -> Keys<'f> {
        let keys = fuses
            .oem_keys
            .iter()
            .filter_map(|bytes| VerifyingKey::from_sec1_bytes(bytes).ok())
            .map(|key| (keys::key_id(&key), key))
            .collect();
        Keys { fuses, keys }
    }

    fn get(&self, id: &[u8; 8]) -> Result<&VerifyingKey, KeyError> {
        if self.fuses.revoked.contains(id) {
            return Err(KeyError::Revoked);
        }
        self.keys.iter().find(|(known, _)| known == id).map(|(_, key)| key).ok_or(KeyError::Unknown)
    }
}

/// Checks `region` (a slot as it lies in flash) against `fuses` and the boot state's
/// anti-rollback `minimum` per component id; see the module documentation for the rules.
pub fn verify<'a>(
    region: &'a [u8],
    fuses: &Fuses,
    minimum: impl Fn(&[u8; 16]) -> u32,
) -> Result<VerifiedSlot<'a>, Error> {
    let slot = Slot::parse(region).map_err(Error::Slot)?;
    let keys = Keys::new(fuses);
    let manifest_key_id = slot.manifest_key_id();
    let key =
        keys.get(&manifest_key_id).map_err(|error| Error::ManifestKey { id: manifest_key_id, error })?;
    if !slot.manifest_signed_by(key) {
        return Err(Error::ManifestSignature);
    }

    let mut packages = heapless::Vec::new();
    let (mut monitor, mut kernel) = (None, None);
    for (index, entry) in slot.packages().enumerate() {
        let (_, package) = entry.map_err(Error::Slot)?;
        let header = &package.header;
        let kind = header.kind;
        keys.get(&header.key_id).map_err(|error| Error::Key { index, kind, id: header.key_id, error })?;
        if slot.manifest_entry(index) != Some(package.header_digest()) {
            return Err(Error::NotInManifest { index, kind });
        }
        let minimum = fuses.minimum_version(&header.component_id).max(minimum(&header.component_id));
        if header.security_version < minimum {
            return Err(Error::Rollback { index, kind, version: header.security_version, minimum });
        }
        let seen = match kind {
            Kind::Monitor => Some(&mut monitor),
            Kind::Kernel => Some(&mut kernel),
            Kind::App => None,
        };
        if let Some(seen) = seen
            && seen.replace(index).is_some()
        {
            return Err(Error::Duplicate { index, kind });
        }
        let measurement = header.measurement();
        // `Slot::parse` allows at most MAX_PACKAGES packages: there is room.
        let _ = packages.push(VerifiedPackage { index, package, measurement });
    }
    let monitor = monitor.ok_or(Error::Missing(Kind::Monitor))?;
    let kernel = kernel.ok_or(Error::Missing(Kind::Kernel))?;
    Ok(VerifiedSlot { packages, monitor, kernel, manifest_key_id })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::package::{HEADER_LEN, Header};
    use alloc::vec::Vec;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    /// Fuses that provision `keys` and nothing else.
    pub(crate) fn fuses(keys: &[&SigningKey]) -> Fuses {
        let mut oem_keys = heapless::Vec::new();
        for key in keys {
            let point = key.verifying_key().to_encoded_point(false);
            oem_keys.push(heapless::Vec::from_slice(point.as_bytes()).unwrap()).unwrap();
        }
        Fuses {
            device_secret: [0; 32],
            oem_keys,
            revoked: heapless::Vec::new(),
            minimum_versions: heapless::Vec::new(),
        }
    }

    fn package(kind: Kind, id: u8, version: u32, key: &SigningKey) -> Vec<u8> {
        let payload = [id; 300];
        let header =
            Header::for_payload(kind, [id; 16], version, &payload, keys::key_id(key.verifying_key()));
        let signature: Signature = key.sign(&header.encode_signed());
        let mut bytes = header.encode(&signature.to_bytes().into()).to_vec();
        bytes.extend_from_slice(&payload);
        bytes
    }

    fn three(key: &SigningKey) -> Vec<Vec<u8>> {
        alloc::vec![
            package(Kind::Monitor, 1, 1, key),
            package(Kind::Kernel, 2, 1, key),
            package(Kind::App, 3, 1, key),
        ]
    }

    /// Where package `index` starts in a slot composed from 300-byte payloads.
    fn at(index: usize) -> usize {
        slot::PACKAGE_ALIGN * (index + 1)
    }

    fn refusal(slot: &[u8], fuses: &Fuses) -> Error {
        verify(slot, fuses, |_| 0).unwrap_err()
    }

    #[test]
    fn a_good_slot_is_accepted_with_one_key_decode_and_its_measurements() {
        let oem = key(1);
        let slot = slot::compose(&three(&oem), &oem);
        let verified = verify(&slot, &fuses(&[&oem]), |_| 0).unwrap();
        assert_eq!(verified.packages().len(), 3);
        assert_eq!(verified.monitor().package.header.kind, Kind::Monitor);
        assert_eq!(verified.kernel().index, 1);
        assert_eq!(verified.manifest_key_id(), keys::key_id(oem.verifying_key()));
        for p in verified.packages() {
            assert_eq!(p.measurement, p.package.header.measurement());
        }
        verified.check_payloads().unwrap();
        // A second provisioned key does not get in the way.
        verify(&slot, &fuses(&[&key(7), &oem]), |_| 0).unwrap();
    }

    #[test]
    fn a_manifest_from_an_unknown_or_revoked_key_is_refused() {
        let (oem, stranger) = (key(1), key(2));
        let id = keys::key_id(stranger.verifying_key());
        let foreign = slot::compose(&three(&oem), &stranger);
        assert_eq!(refusal(&foreign, &fuses(&[&oem])), Error::ManifestKey { id, error: KeyError::Unknown });
        let slot = slot::compose(&three(&oem), &oem);
        let mut revoked = fuses(&[&oem]);
        revoked.revoked.push(keys::key_id(oem.verifying_key())).unwrap();
        assert!(matches!(refusal(&slot, &revoked), Error::ManifestKey { error: KeyError::Revoked, .. }));
    }

    #[test]
    fn any_change_to_the_slot_header_or_manifest_fails_the_signature() {
        let oem = key(1);
        let good = slot::compose(&three(&oem), &oem);
        let fuses = fuses(&[&oem]);
        // Every signed byte except the key id (refused as an unknown key), and the
        // signature itself; the used length and count only where the slot still parses.
        for at in (12..slot::signed_len(3) + slot::SIGNATURE_LEN).filter(|a| !(16..24).contains(a)) {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            assert_eq!(refusal(&bad, &fuses), Error::ManifestSignature, "byte {at}");
        }
        // One package fewer, with the count lowered to match: the signed count is 3.
        let mut fewer = good.clone();
        fewer[6] = 2;
        assert_eq!(refusal(&fewer, &fuses), Error::ManifestSignature);
    }

    #[test]
    fn a_package_header_not_in_the_manifest_is_refused() {
        let oem = key(1);
        let good = slot::compose(&three(&oem), &oem);
        let fuses = fuses(&[&oem]);
        // A header byte (the security version) and a signature byte of the kernel.
        for offset in [24, HEADER_LEN - 1] {
            let mut bad = good.clone();
            bad[at(1) + offset] ^= 0x02;
            assert_eq!(refusal(&bad, &fuses), Error::NotInManifest { index: 1, kind: Kind::Kernel });
        }
        // Another valid package, signed by the OEM, in the app's place.
        let mut swapped = good.clone();
        let other = package(Kind::App, 3, 2, &oem);
        swapped[at(2)..at(2) + other.len()].copy_from_slice(&other);
        assert_eq!(refusal(&swapped, &fuses), Error::NotInManifest { index: 2, kind: Kind::App });
    }

    #[test]
    fn a_missing_package_is_refused() {
        let oem = key(1);
        let good = slot::compose(&three(&oem), &oem);
        let fuses = fuses(&[&oem]);
        // The app's bytes erased, the signed count still 3.
        let mut erased = good.clone();
        erased[at(2)..].fill(0xff);
        assert!(matches!(refusal(&erased, &fuses), Error::Slot(slot::Error::Package { index: 2, .. })));
        // The slot cut short before the app.
        let mut short = good.clone();
        short.truncate(at(2));
        assert!(matches!(refusal(&short, &fuses), Error::Slot(slot::Error::BadLength { .. })));
        // A validly signed slot without a kernel.
        let no_kernel = [package(Kind::Monitor, 1, 1, &oem), package(Kind::App, 3, 1, &oem)];
        assert_eq!(refusal(&slot::compose(&no_kernel, &oem), &fuses), Error::Missing(Kind::Kernel));
        let no_monitor = [package(Kind::Kernel, 2, 1, &oem)];
        assert_eq!(refusal(&slot::compose(&no_monitor, &oem), &fuses), Error::Missing(Kind::Monitor));
    }

    #[test]
    fn a_second_monitor_is_refused() {
        let oem = key(1);
        let mut packages = three(&oem);
        packages.push(package(Kind::Monitor, 4, 1, &oem));
        let slot = slot::compose(&packages, &oem);
        assert_eq!(refusal(&slot, &fuses(&[&oem])), Error::Duplicate { index: 3, kind: Kind::Monitor });
    }

    #[test]
    fn a_package_signed_by_an_unknown_or_revoked_key_is_refused_inside_a_signed_slot() {
        let (oem, old) = (key(1), key(3));
        let mut packages = three(&oem);
        packages[2] = package(Kind::App, 3, 1, &old);
        let slot = slot::compose(&packages, &oem);
        let id = keys::key_id(old.verifying_key());
        let unknown = Error::Key { index: 2, kind: Kind::App, id, error: KeyError::Unknown };
        assert_eq!(refusal(&slot, &fuses(&[&oem])), unknown);
        let mut revoked = fuses(&[&oem, &old]);
        verify(&slot, &revoked, |_| 0).unwrap();
        revoked.revoked.push(id).unwrap();
        let error = Error::Key { index: 2, kind: Kind::App, id, error: KeyError::Revoked };
        assert_eq!(refusal(&slot, &revoked), error);
    }

    #[test]
    fn the_higher_of_the_fuse_and_boot_state_minimums_applies() {
        let oem = key(1);
        let slot = slot::compose(&three(&oem), &oem);
        let mut fuses = fuses(&[&oem]);
        let rollback = |minimum| Error::Rollback { index: 1, kind: Kind::Kernel, version: 1, minimum };
        let state = |id: &[u8; 16]| if *id == [2; 16] { 2 } else { 0 };
        assert_eq!(verify(&slot, &fuses, state).unwrap_err(), rollback(2));
        fuses.minimum_versions.push(([2; 16], 3)).unwrap();
        assert_eq!(verify(&slot, &fuses, state).unwrap_err(), rollback(3));
        assert_eq!(verify(&slot, &fuses, |_| 0).unwrap_err(), rollback(3));
        fuses.minimum_versions[0].1 = 1;
        verify(&slot, &fuses, |_| 1).unwrap();
    }

    #[test]
    fn payloads_are_checked_by_whoever_uses_them() {
        let oem = key(1);
        let mut slot = slot::compose(&three(&oem), &oem);
        let fuses = fuses(&[&oem]);
        slot[at(2) + HEADER_LEN + 10] ^= 1; // an app payload byte
        {
            // The header is still the manifest's: the boot check leaves the app to the kernel.
            let verified = verify(&slot, &fuses, |_| 0).unwrap();
            assert_eq!(verified.check_payloads(), Err(Error::Hash { index: 2, kind: Kind::App }));
            let kernel = verified.kernel();
            kernel.check_copy(kernel.package.payload).unwrap();
            let mut copy = kernel.package.payload.to_vec();
            copy[0] ^= 1;
            assert_eq!(kernel.check_copy(&copy), Err(Error::Hash { index: 1, kind: Kind::Kernel }));
        }
    }

    #[test]
    fn refusals_read_well() {
        use alloc::string::ToString;
        let e = Error::Key { index: 1, kind: Kind::Kernel, id: [0xab; 8], error: KeyError::Unknown };
        assert_eq!(e.to_string(), "package 1 (kernel): signed by an unknown key (key id abababababababab)");
        let e = Error::ManifestKey { id: [1; 8], error: KeyError::Revoked };
        assert_eq!(e.to_string(), "the slot manifest is signed by a revoked key (key id 0101010101010101)");
    }
}
