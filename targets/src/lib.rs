//! Board definitions: the single source of truth for every address Septa uses.
//!
//! Each board is one module with its memory map, the regions the boot stages are linked
//! and loaded into, and the layout of its flash. The device crates use these constants
//! directly; their build scripts turn [`StageMemory`] into the `MEMORY` block that the
//! static linker scripts in `targets/<board>/` include, so an address is written down
//! exactly once. Host tools read the same constants to compose flash images.

#![cfg_attr(not(feature = "build"), no_std)]
#![forbid(unsafe_code)]

pub mod qemu_virt;
pub mod raspi2b;

/// The board the device crates (loader, monitor, kernel) are built for: `qemu-virt`, or
/// the Raspberry Pi 2B with the `raspi2b` feature. Device code names addresses only
/// through this alias.
#[cfg(not(feature = "raspi2b"))]
pub use qemu_virt as board;
#[cfg(feature = "raspi2b")]
pub use raspi2b as board;

/// A region of the physical address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: usize,
    pub size: usize,
}

impl Region {
    pub const fn new(base: usize, size: usize) -> Self {
        Region { base, size }
    }

    pub const fn end(&self) -> usize {
        self.base + self.size
    }

    /// Whether `[addr, addr + len)` lies wholly inside this region (no wrap-around).
    pub const fn contains_range(&self, addr: usize, len: usize) -> bool {
        match addr.checked_add(len) {
            Some(end) => addr >= self.base && end <= self.end(),
            None => false,
        }
    }
}

/// How the kernel maps a window of the physical address space it needs besides RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Device registers: read-write, device memory.
    Device,
    /// Memory the kernel only reads (the flash holding the image slots).
    ReadOnly,
}

/// A window the kernel maps (whole MiBs) at its device window address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub region: Region,
    pub kind: WindowKind,
}

/// A device an app can be granted: its registers and its interrupt (GIC id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: &'static str,
    pub region: Region,
    pub irq: Option<u32>,
}

/// The memory regions one boot stage is linked against: named regions in the order its
/// linker script expects them (`ROM` and `RAM` for the loader, `RAM` for the others).
pub type StageMemory = &'static [(&'static str, Region)];

/// Formats a stage's memory regions as a linker-script `MEMORY` block.
pub fn write_memory_x(out: &mut impl core::fmt::Write, memory: StageMemory) -> core::fmt::Result {
    writeln!(out, "MEMORY\n{{")?;
    for (name, region) in memory {
        writeln!(out, "    {name} : ORIGIN = {:#010x}, LENGTH = {:#x}", region.base, region.size)?;
    }
    writeln!(out, "}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_range_rejects_wrap_and_straddle() {
        let r = Region::new(0x1000, 0x1000);
        assert!(r.contains_range(0x1000, 0x1000));
        assert!(r.contains_range(0x1800, 0));
        assert!(!r.contains_range(0x1800, 0x801));
        assert!(!r.contains_range(0xfff, 1));
        assert!(!r.contains_range(usize::MAX, 2));
    }
}

/// Build-script support: links the stage being built with the board's linker script.
#[cfg(feature = "build")]
pub mod build {
    use crate::StageMemory;
    use std::path::PathBuf;
    use std::{env, fs};

    /// Writes `memory.x` for `memory` into `OUT_DIR` and links the binaries of the calling
    /// crate with `targets/<board>/<script>` — only when building for the device, so host
    /// unit tests of the same crate are unaffected.
    pub fn link_stage(board: &str, script: &str, memory: StageMemory) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(board);
        let script = dir.join(script);
        println!("cargo:rerun-if-changed={}", script.display());
        if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
            return;
        }
        let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
        let mut text = String::new();
        crate::write_memory_x(&mut text, memory).expect("formatting into a String");
        fs::write(out.join("memory.x"), text).expect("writing memory.x into OUT_DIR");
        println!("cargo:rustc-link-search={}", out.display());
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
}
