//! Composing the board images: the boot ROM (flash 0) and the slot flash (flash 1).

use anyhow::{Context, Result, bail};
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use septa_abi::fuses::Fuses;
use septa_abi::keys::key_id;
use septa_abi::package::Package;
use septa_abi::package::{Header, Kind};
use septa_abi::{bundle, slot};
use septa_targets::qemu_virt as board;
use std::fs;
use std::io::Write;
use std::path::Path;

/// One package to put into a slot.
pub struct PackageSpec {
    pub kind: Kind,
    pub component_id: [u8; 16],
    pub security_version: u32,
    pub payload: Vec<u8>,
}

impl PackageSpec {
    /// The signed package: header, signature by `key`, payload.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        let id = key_id(key.verifying_key());
        let header =
            Header::for_payload(self.kind, self.component_id, self.security_version, &self.payload, id);
        let signature: Signature = key.sign(&header.encode_signed());
        let mut bytes = header.encode(&signature.to_bytes().into()).to_vec();
        bytes.extend_from_slice(&self.payload);
        bytes
    }
}

/// The boot ROM: the loader at the start of flash 0; the fuse area stays blank until
/// [`provision`] writes it.
pub fn compose_rom(loader: &[u8]) -> Result<Vec<u8>> {
    if loader.len() > board::LOADER_ROM.size {
        bail!("the loader is {} bytes; the boot ROM holds {}", loader.len(), board::LOADER_ROM.size);
    }
    let mut rom = vec![0u8; board::FLASH0.size];
    rom[..loader.len()].copy_from_slice(loader);
    Ok(rom)
}

/// Writes `fuses` into the fuse area of a boot ROM image.
pub fn provision(rom: &mut [u8], fuses: &Fuses) -> Result<()> {
    let at = board::FUSES.base - board::FLASH0.base;
    let area =
        rom.get_mut(at..at + board::FUSES.size).context("the ROM image is too small for the fuse area")?;
    area.fill(0);
    fuses.encode_into(area).map_err(|e| anyhow::anyhow!("encoding the fuses: {e}"))
}

/// The slot image of `packages` (already signed), in order, with its manifest signed by
/// `key`.
pub fn compose_slot(packages: &[Vec<u8>], key: &SigningKey) -> Result<Vec<u8>> {
    if packages.len() > slot::MAX_PACKAGES {
        bail!("{} packages; a slot holds at most {}", packages.len(), slot::MAX_PACKAGES);
    }
    for (index, bytes) in packages.iter().enumerate() {
        Package::parse(bytes).map_err(|e| anyhow::anyhow!("package {index}: {e}"))?;
    }
    Ok(slot::compose(packages, key))
}

/// Flash 1 with slot A holding `packages` (already signed), its manifest signed by `key`.
pub fn compose_flash(packages: &[Vec<u8>], key: &SigningKey) -> Result<Vec<u8>> {
    let slot = compose_slot(packages, key)?;
    if slot.len() > board::SLOT_A.size {
        bail!("slot A needs {} bytes; the board gives it {}", slot.len(), board::SLOT_A.size);
    }
    let mut flash = vec![0u8; board::FLASH1.size];
    let at = board::SLOT_A.base - board::FLASH1.base;
    flash[at..at + slot.len()].copy_from_slice(&slot);
    Ok(flash)
}

/// An update bundle: a header naming each package's component and security version and the
/// hash of the slot image, signed by `key`, followed by the slot image of `packages` (its
/// manifest signed by `key` too).
pub fn bundle(packages: &[Vec<u8>], key: &SigningKey) -> Result<Vec<u8>> {
    if packages.len() > bundle::MAX_COMPONENTS {
        bail!("{} packages; a bundle holds at most {}", packages.len(), bundle::MAX_COMPONENTS);
    }
    let mut components = Vec::new();
    for (index, bytes) in packages.iter().enumerate() {
        let package = Package::parse(bytes).map_err(|e| anyhow::anyhow!("package {index}: {e}"))?;
        components.push((package.header.component_id, package.header.security_version));
    }
    let image = compose_slot(packages, key)?;
    if image.len() > board::SLOT_A.size.min(board::STAGING.size) {
        bail!("the slot image needs {} bytes; a slot holds {}", image.len(), board::SLOT_A.size);
    }
    let mut out = bundle::encode_signed_part(&image, key_id(key.verifying_key()), &components);
    let signature: Signature = key.sign(&out);
    out.extend_from_slice(&signature.to_bytes());
    out.extend_from_slice(&image);
    Ok(out)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, so `path` is
/// either the old file or the complete new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use septa_abi::slot::Slot;

    #[test]
    fn flash_holds_a_parsable_slot() {
        let key = SigningKey::from_slice(&[3; 32]).unwrap();
        let packages = [
            PackageSpec {
                kind: Kind::Monitor,
                component_id: [1; 16],
                security_version: 1,
                payload: vec![1; 10],
            },
            PackageSpec {
                kind: Kind::Kernel,
                component_id: [2; 16],
                security_version: 1,
                payload: vec![2; 20],
            },
        ]
        .map(|p| p.sign(&key));
        let flash = compose_flash(&packages, &key).unwrap();
        assert_eq!(flash.len(), board::FLASH1.size);
        let slot = Slot::parse(&flash[..board::SLOT_A.size]).unwrap();
        let kinds: Vec<_> = slot.packages().map(|p| p.unwrap().1.header.kind).collect();
        assert_eq!(kinds, [Kind::Monitor, Kind::Kernel]);
        // What the tool writes is what the loader accepts.
        let point = key.verifying_key().to_encoded_point(false);
        let fuses = Fuses {
            device_secret: [0; 32],
            oem_keys: heapless::Vec::from_slice(&[heapless::Vec::from_slice(point.as_bytes()).unwrap()])
                .unwrap(),
            revoked: heapless::Vec::new(),
            minimum_versions: heapless::Vec::new(),
        };
        let verified = septa_abi::verify::verify(&flash[..board::SLOT_A.size], &fuses, |_| 0).unwrap();
        verified.check_payloads().unwrap();
        let bundle = bundle(&packages, &key).unwrap();
        let header = bundle::Header::parse(&bundle).unwrap();
        header.verify_signature(&fuses).unwrap();
        bundle::check_image(&header, &bundle[header.len()..], &fuses, |_| 0).unwrap();
    }

    #[test]
    fn a_package_that_is_not_one_is_refused() {
        let key = SigningKey::from_slice(&[3; 32]).unwrap();
        let error = compose_flash(&[vec![0; 10]], &key).unwrap_err();
        assert!(format!("{error}").starts_with("package 0: truncated"), "{error}");
    }

    #[test]
    fn oversized_loader_is_refused() {
        assert!(compose_rom(&vec![0; board::LOADER_ROM.size + 1]).is_err());
    }
}
