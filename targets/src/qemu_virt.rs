//! QEMU `virt` with `secure=on` and a Cortex-A7: the reference board.
//!
//! Physical map (QEMU 7.2 `hw/arm/virt.c`): flash 0 is visible to the secure world only and
//! holds the boot ROM (loader, fuse area, boot state); flash 1 holds the image slots, the
//! update staging area, app storage and the failure-report ring, and is readable from both
//! worlds; secure RAM at `0x0e00_0000` is secure-only. The non-secure RAM at `0x4000_0000`
//! starts with QEMU's device tree, so the kernel is loaded 1 MiB above it. Both flashes are
//! CFI parallel flash (Intel command set) with 256 KiB erase sectors, and only the secure
//! world writes them.

use crate::{Device, Region, StageMemory, Window, WindowKind};

pub const NAME: &str = "qemu-virt";

// ---- physical memory map --------------------------------------------------------------

/// Secure flash 0: the boot ROM. 64 MiB, mapped at 0 in the secure address space only.
pub const FLASH0: Region = Region::new(0x0000_0000, 64 << 20);
/// Flash 1: image slots, staging, storage and reports. 64 MiB, readable from both worlds.
pub const FLASH1: Region = Region::new(0x0400_0000, 64 << 20);
/// The erase sector of both flashes.
pub const FLASH_SECTOR: usize = 256 << 10;
/// Bytes one buffered program writes (QEMU's write block is 4 KiB: two 2 KiB devices).
pub const FLASH_WRITE_BUFFER: usize = 1024;
/// Secure-only RAM.
pub const SECURE_RAM: Region = Region::new(0x0e00_0000, 16 << 20);
/// Non-secure RAM, as sized by the QEMU command line (`-m 128M`).
pub const RAM: Region = Region::new(0x4000_0000, 128 << 20);
/// The RAM QEMU fills with the device tree; never handed out.
pub const DTB: Region = Region::new(0x4000_0000, 1 << 20);

/// PL011 UART 0, the console of every stage.
pub const UART0: usize = 0x0900_0000;
/// The PL031 real-time clock (wall-clock seconds; QEMU starts it at the host's time).
pub const RTC: usize = 0x0901_0000;
/// GICv2 distributor and CPU interface.
pub const GICD: usize = 0x0800_0000;
pub const GICC: usize = 0x0801_0000;
/// The interrupt (PPI) of the non-secure physical generic timer.
pub const TIMER_IRQ: u32 = 30;
/// Secure-only PL061 GPIO wired to QEMU's `gpio-pwr` (device tree: gpio-restart on pin 1, gpio-poweroff on pin 0).
pub const SECURE_GPIO: usize = 0x090b_0000;
pub const SECURE_GPIO_RESET_PIN: u32 = 1;
pub const SECURE_GPIO_POWEROFF_PIN: u32 = 0;

/// The PL061 GPIO controller whose pins apps get through `gpio = [...]` in their manifest.
/// The kernel owns the controller and drives only the pins an app holds.
pub const GPIO: usize = 0x0903_0000;
pub const GPIO_PINS: u8 = 8;

/// The kernel maps its windows at a fixed virtual base + (physical address − this base); the
/// windows must lie within 256 MiB above it.
pub const KERNEL_WINDOW_BASE: usize = 0;

/// What the kernel maps besides RAM: the UART's MiB (which also holds the RTC and the
/// GPIO controller), the GIC's MiB, and flash 1 with the image slots, read-only.
pub const KERNEL_WINDOWS: &[Window] = &[
    Window { region: Region::new(UART0 & !0xf_ffff, 1 << 20), kind: WindowKind::Device },
    Window { region: Region::new(GICD & !0xf_ffff, 1 << 20), kind: WindowKind::Device },
    Window { region: FLASH1, kind: WindowKind::ReadOnly },
];

/// Devices an app may be granted whole (`devices = [...]`): mapped into the app with
/// `map_device`, their interrupt delivered to it as a notification.
/// The `inbox` is RAM that development runs fill with an update bundle from the host
/// (`cargo xtask run --bundle`); the `updater` app reads it.
pub const DEVICES: &[Device] = &[
    Device { name: "rtc", region: Region::new(RTC, 0x1000), irq: Some(34) },
    Device { name: "inbox", region: UPDATE_INBOX, irq: None },
    Device { name: "virtio-net", region: VIRTIO_NET, irq: Some(VIRTIO_NET_IRQ) },
];

/// The network card: virtio-mmio transport 0 (`bus=virtio-mmio-bus.0`), alone on its page
/// (the monitor's virtio-rng is transport 31, on the last page), and its interrupt (SPI 16).
pub const VIRTIO_NET: Region = Region::new(0x0a00_0000, 0x1000);
pub const VIRTIO_NET_IRQ: u32 = 48;

// ---- boot ROM (flash 0) -----------------------------------------------------------------

/// The loader is executed in place from the start of flash 0.
pub const LOADER_ROM: Region = Region::new(FLASH0.base, 1 << 20);
/// The fuse area: device secret, OEM public key and anti-rollback minimums, written by
/// `septa provision`. Secure-only because flash 0 is.
pub const FUSES: Region = Region::new(FLASH0.base + (1 << 20), 4 << 10);
/// The boot state journal (`septa_abi::boot_state`): which slot is active, pending or on
/// trial, the boot count and the raised anti-rollback minimums. Two sectors, secure-only.
pub const BOOT_STATE: Region = Region::new(FLASH0.base + (1 << 20) + FLASH_SECTOR, 2 * FLASH_SECTOR);
/// The loader runs from the top 1 MiB of secure RAM: it copies itself there at reset so it
/// can write flash 0 (a CFI flash answers reads with status while it programs).
pub const LOADER_RAM: Region = Region::new(SECURE_RAM.end() - (1 << 20), 1 << 20);

// ---- flash 1 ----------------------------------------------------------------------------

/// Image slots A and B: a slot header followed by packages (see `septa_abi::slot`).
pub const SLOT_A: Region = Region::new(FLASH1.base, 16 << 20);
pub const SLOT_B: Region = Region::new(SLOT_A.end(), 16 << 20);
pub const SLOTS: [Region; 2] = [SLOT_A, SLOT_B];
/// Where an update bundle is received before the monitor checks it.
pub const STAGING: Region = Region::new(SLOT_B.end(), 16 << 20);
/// The journal of app storage (two sectors, one live at a time).
pub const STORAGE: Region = Region::new(STAGING.end(), 2 * FLASH_SECTOR);
/// The failure-report ring: the oldest sector is erased when the ring is full.
pub const REPORTS: Region = Region::new(STORAGE.end(), 4 * FLASH_SECTOR);
/// The device certificates: a rewrite journal whose newest record is the device's
/// certificate (see `septa_abi::device_auth`).
pub const DEVICE_CERTS: Region = Region::new(REPORTS.end(), 2 * FLASH_SECTOR);

// ---- where the loader places the stages -------------------------------------------------

/// The monitor's image, bss and stacks, at the bottom of secure RAM.
pub const MONITOR_RAM: Region = Region::new(SECURE_RAM.base, 2 << 20);
/// Where the loader leaves the monitor its handoff (CDI, identity seed, boot log).
pub const HANDOFF: Region = Region::new(MONITOR_RAM.end(), 4096);
/// The kernel's image, bss and boot stacks, above the device tree.
pub const KERNEL_RAM: Region = Region::new(DTB.end(), 4 << 20);
/// Non-secure pages the monitor uses: the page `monitor_call` requests travel through, then
/// the virtqueue and buffer of the virtio entropy device (QEMU's virtio devices reach only
/// non-secure memory).
pub const MONITOR_SHARED: Region = Region::new(KERNEL_RAM.end(), 4096);
pub const ENTROPY_QUEUE: Region = Region::new(MONITOR_SHARED.end(), 3 * 4096);
/// The virtio-mmio transports, each 0x200 bytes.
pub const VIRTIO_MMIO: Region = Region::new(0x0a00_0000, 32 * 0x200);

/// Test builds only: a word that tests set with QEMU's `-device loader` to choose what a
/// probe kernel does, followed by a word the probe keeps across a reset. The last page of
/// RAM, which nothing else uses before the kernel's frame allocator runs.
pub const TEST_BOOT_ARG: usize = RAM.end() - 0x1000;
/// Test builds only: the word a monitor built with `powercut` reads at its start to learn
/// where to cut the power (`monitor/src/powercut.rs`), after the probe's two.
pub const TEST_POWER_CUT: usize = TEST_BOOT_ARG + 8;

pub const LOADER_MEMORY: StageMemory = &[("ROM", LOADER_ROM), ("RAM", LOADER_RAM)];
pub const MONITOR_MEMORY: StageMemory = &[("RAM", MONITOR_RAM)];
pub const KERNEL_MEMORY: StageMemory = &[("RAM", KERNEL_RAM)];

/// RAM for an update bundle loaded by the host, below the last page.
pub const UPDATE_INBOX: Region = Region::new(RAM.end() - 4096 - (2 << 20), 2 << 20);
/// The frames the kernel hands to apps and page tables: RAM between its own regions and
/// the inbox.
pub const FRAMES: Region = Region::new(ENTROPY_QUEUE.end(), UPDATE_INBOX.base - ENTROPY_QUEUE.end());

/// The QEMU machine arguments for this board (without the flash drives).
pub const QEMU_MACHINE: &[&str] =
    &["-M", "virt,secure=on", "-cpu", "cortex-a7", "-m", "128M", "-device", "virtio-rng-device"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_regions_are_disjoint_and_inside_their_memories() {
        assert!(SECURE_RAM.contains_range(MONITOR_RAM.base, MONITOR_RAM.size));
        assert!(SECURE_RAM.contains_range(LOADER_RAM.base, LOADER_RAM.size));
        assert!(MONITOR_RAM.end() <= LOADER_RAM.base);
        assert!(RAM.contains_range(KERNEL_RAM.base, KERNEL_RAM.size));
        assert!(KERNEL_RAM.base >= DTB.end());
        assert!(FLASH0.contains_range(FUSES.base, FUSES.size));
        assert!(LOADER_ROM.end() <= FUSES.base);
        assert!(FLASH0.contains_range(BOOT_STATE.base, BOOT_STATE.size));
        assert!(BOOT_STATE.base >= FUSES.end() && BOOT_STATE.base.is_multiple_of(FLASH_SECTOR));
        for region in [SLOT_A, SLOT_B, STAGING, STORAGE, REPORTS, DEVICE_CERTS] {
            assert!(FLASH1.contains_range(region.base, region.size));
            assert!(region.base.is_multiple_of(FLASH_SECTOR));
        }
        assert!(SLOT_A.end() <= SLOT_B.base && SLOT_B.end() <= STAGING.base);
        assert!(STAGING.end() <= STORAGE.base && STORAGE.end() <= REPORTS.base);
        assert!(REPORTS.end() <= DEVICE_CERTS.base && DEVICE_CERTS.end() <= FLASH1.end());
        assert!(RAM.contains_range(UPDATE_INBOX.base, UPDATE_INBOX.size + 4096));
        assert!(FRAMES.end() <= UPDATE_INBOX.base);
        // The windows start at or above the base (0 here) and fit 256 MiB above it.
        for window in KERNEL_WINDOWS {
            assert!(window.region.end() <= KERNEL_WINDOW_BASE + (256 << 20));
        }
    }
}
