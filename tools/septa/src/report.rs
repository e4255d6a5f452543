//! Reading signed failure reports off the device: from console lines, or from the report
//! ring in a flash image file.

use anyhow::{Context, Result, bail};
use septa_abi::flash::MemFlash;
use septa_abi::journal::{Journal, Mode};
use septa_abi::report::RING_TAG;
use septa_targets::qemu_virt as board;
use std::fs;
use std::path::Path;

/// Reports as `(where it came from, bytes)`.
pub type Reports = Vec<(String, Vec<u8>)>;

/// Hex reports, one per line: `septa: supervisor: signed report <hex>` or bare hex.
pub fn from_hex_lines(path: &Path) -> Result<Reports> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut reports = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let place = format!("{} line {}", path.display(), number + 1);
        let hex_text = line.trim().rsplit(' ').next().unwrap_or_default();
        reports.push((place.clone(), hex::decode(hex_text).with_context(|| format!("{place}: not hex"))?));
    }
    Ok(reports)
}

/// Every record of the report ring in a flash 1 image, oldest first. A record that is cut
/// short or altered is returned too: its signature check names it.
pub fn from_flash(path: &Path) -> Result<Reports> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() != board::FLASH1.size {
        bail!(
            "{}: {} bytes, but a flash 1 image of the {} board has {} (is this the flash.img of an image set?)",
            path.display(),
            bytes.len(),
            board::NAME,
            board::FLASH1.size
        );
    }
    let flash = MemFlash::new(bytes, board::FLASH_SECTOR);
    let ring = Journal::new(
        board::REPORTS.base - board::FLASH1.base,
        board::REPORTS.size / board::FLASH_SECTOR,
        Mode::Ring,
    );
    let mut reports = Vec::new();
    ring.read(&flash, |entry| {
        if entry.tag == RING_TAG {
            let place = format!("{} report ring at offset {:#x}", path.display(), entry.offset);
            reports.push((place, entry.payload.to_vec()));
        }
    });
    Ok(reports)
}
