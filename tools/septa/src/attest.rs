//! Checking what a verified attestation token says against a known-good flash image.

use anyhow::{Context, Result, bail};
use septa_abi::attest::Claims;
use septa_abi::slot::Slot;
use septa_targets::qemu_virt as board;
use std::path::Path;

/// Requires every package of `image` (slot A) to appear in the token's measurements with
/// the same digest: the device booted exactly that software.
pub fn check_against_image(claims: &Claims, image: &Path) -> Result<()> {
    let flash = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let at = board::SLOT_A.base - board::FLASH1.base;
    let region = flash.get(at..at + board::SLOT_A.size).context("the image is smaller than slot A")?;
    let slot = Slot::parse(region).map_err(|e| anyhow::anyhow!("{}: slot A: {e}", image.display()))?;
    for entry in slot.packages() {
        let (_, package) = entry.map_err(|e| anyhow::anyhow!("{}: {e}", image.display()))?;
        let header = &package.header;
        let expected = header.measurement();
        let found = claims.measurements.iter().find(|m| m.component_id == header.component_id);
        match found {
            Some(m) if m.digest == expected => {}
            Some(_) => bail!(
                "the device booted a different {} than {} (measurement differs)",
                header.kind.name(),
                image.display()
            ),
            None => bail!("the device did not boot the {} of {}", header.kind.name(), image.display()),
        }
    }
    Ok(())
}
