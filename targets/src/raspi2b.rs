//! The dev kit: Raspberry Pi 2 Model B (BCM2836, Cortex-A7), and QEMU's `raspi2b`.
//!
//! There is no flash and no TrustZone address-space controller. The firmware (or QEMU's
//! `-kernel` for an ELF) starts the loader in Secure SVC from RAM; the fuse area, the boot
//! state and the image slots arrive as one *boot payload* file that the firmware (or
//! `-device loader`) puts at [`FLASH0`]'s address, and they stay in RAM: nothing written to
//! them survives a power cycle. The "secure RAM" below is secure by convention only — the
//! kernel never maps it and apps cannot reach it, but the hardware does not stop the normal
//! world. RAM is split at 512 MiB: below is the user range of every process (and the
//! secure stages), above it the kernel's identity-mapped RAM.

use crate::{Device, Region, StageMemory, Window, WindowKind};

pub const NAME: &str = "raspi2b";

// ---- physical memory map --------------------------------------------------------------

/// Where the firmware or QEMU loads the loader image.
pub const LOADER_ROM: Region = Region::new(0x0f00_0000, 1 << 20);
/// Secure by convention: the monitor, the handoff, the loader's RAM.
pub const SECURE_RAM: Region = Region::new(0x1000_0000, 16 << 20);
/// The kernel's RAM, identity-mapped above the user range.
pub const RAM: Region = Region::new(0x2000_0000, 0x1800_0000);
// The kernel's RAM must lie above the user range (which ends at 512 MiB).
const _: () = assert!(RAM.base >= 0x2000_0000);

/// Kept free below the kernel, as the device tree is on `qemu-virt`.
pub const DTB: Region = Region::new(RAM.base, 1 << 20);

/// The emulated boot ROM: fuse area and boot state, from the boot payload.
pub const FLASH0: Region = Region::new(0x3800_0000, 2 << 20);
/// The emulated slot flash: slot A from the boot payload, then slot B, staging, storage and
/// the report ring.
pub const FLASH1: Region = Region::new(FLASH0.end(), 0x3c00_0000 - FLASH0.end());
/// The journals' erase unit (RAM, but the same layout as a flash).
pub const FLASH_SECTOR: usize = 256 << 10;

/// PL011 UART 0, the console of every stage (the UART pins 8 and 10 of the header).
pub const UART0: usize = 0x3f20_1000;
/// BCM2835 GPIO controller; apps get pins through `gpio = [...]`.
pub const GPIO: usize = 0x3f20_0000;
pub const GPIO_PINS: u8 = 32;
/// BCM2835 random number generator (the monitor's entropy source).
pub const RNG: usize = 0x3f10_4000;
/// BCM2835 power management: its watchdog resets the board.
pub const POWER_MANAGEMENT: usize = 0x3f10_0000;
/// BCM2836 per-core interrupt controller ("local peripherals").
pub const LOCAL_INTC: usize = 0x4000_0000;
/// The crystal the ARM generic timer counts from on a real board (QEMU's counts 62.5 MHz
/// and sets CNTFRQ itself).
pub const TIMER_CRYSTAL_HZ: u32 = 19_200_000;
/// The non-secure physical timer's bit in core 0's interrupt source register.
pub const TIMER_IRQ: u32 = 1;

/// The kernel maps its windows at a fixed virtual base + (physical address − this base).
pub const KERNEL_WINDOW_BASE: usize = FLASH0.base;

/// What the kernel maps besides RAM: the slots (read-only), the UART's and GPIO's MiB, and
/// the local interrupt controller.
pub const KERNEL_WINDOWS: &[Window] = &[
    Window { region: FLASH1, kind: WindowKind::ReadOnly },
    Window { region: Region::new(UART0 & !0xf_ffff, 1 << 20), kind: WindowKind::Device },
    Window { region: Region::new(LOCAL_INTC, 1 << 20), kind: WindowKind::Device },
];

/// Devices an app may be granted whole: the update inbox.
pub const DEVICES: &[Device] = &[Device { name: "inbox", region: UPDATE_INBOX, irq: None }];

// ---- boot ROM (flash 0) ---------------------------------------------------------------

/// The fuse area, at the same offset in flash 0 as on `qemu-virt`.
pub const FUSES: Region = Region::new(FLASH0.base + (1 << 20), 4 << 10);
pub const BOOT_STATE: Region = Region::new(FLASH0.base + (1 << 20) + FLASH_SECTOR, 2 * FLASH_SECTOR);
/// The loader's data, bss and stack: the top 1 MiB of secure RAM.
pub const LOADER_RAM: Region = Region::new(SECURE_RAM.end() - (1 << 20), 1 << 20);

// ---- flash 1 --------------------------------------------------------------------------

pub const SLOT_A: Region = Region::new(FLASH1.base, 16 << 20);
pub const SLOT_B: Region = Region::new(SLOT_A.end(), 16 << 20);
pub const SLOTS: [Region; 2] = [SLOT_A, SLOT_B];
pub const STAGING: Region = Region::new(SLOT_B.end(), 16 << 20);
pub const STORAGE: Region = Region::new(STAGING.end(), 2 * FLASH_SECTOR);
pub const REPORTS: Region = Region::new(STORAGE.end(), 4 * FLASH_SECTOR);
pub const DEVICE_CERTS: Region = Region::new(REPORTS.end(), 2 * FLASH_SECTOR);

// ---- where the loader places the stages -------------------------------------------------

pub const MONITOR_RAM: Region = Region::new(SECURE_RAM.base, 2 << 20);
pub const HANDOFF: Region = Region::new(MONITOR_RAM.end(), 4096);
pub const KERNEL_RAM: Region = Region::new(DTB.end(), 4 << 20);
pub const MONITOR_SHARED: Region = Region::new(KERNEL_RAM.end(), 4096);
/// Unused on this board (the RNG needs no buffers); kept so the RAM layout matches.
pub const ENTROPY_QUEUE: Region = Region::new(MONITOR_SHARED.end(), 3 * 4096);

/// Test builds only: the word tests set with `-device loader` (see `qemu_virt`).
pub const TEST_BOOT_ARG: usize = RAM.end() - 0x1000;

pub const LOADER_MEMORY: StageMemory = &[("ROM", LOADER_ROM), ("RAM", LOADER_RAM)];
pub const MONITOR_MEMORY: StageMemory = &[("RAM", MONITOR_RAM)];
pub const KERNEL_MEMORY: StageMemory = &[("RAM", KERNEL_RAM)];

pub const UPDATE_INBOX: Region = Region::new(RAM.end() - 4096 - (2 << 20), 2 << 20);
pub const FRAMES: Region = Region::new(ENTROPY_QUEUE.end(), UPDATE_INBOX.base - ENTROPY_QUEUE.end());

/// The QEMU machine arguments for this board (the loader comes with `-kernel`).
pub const QEMU_MACHINE: &[&str] = &["-M", "raspi2b"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_disjoint_and_the_kernel_stays_above_the_user_range() {
        assert!(LOADER_ROM.end() <= SECURE_RAM.base && SECURE_RAM.end() <= RAM.base);
        assert!(RAM.end() <= FLASH0.base && FLASH1.end() <= 0x3c00_0000);
        assert!(MONITOR_RAM.end() <= LOADER_RAM.base);
        assert!(DEVICE_CERTS.end() <= FLASH1.end());
        for window in KERNEL_WINDOWS {
            assert!(window.region.base >= KERNEL_WINDOW_BASE);
            assert!(window.region.end() <= KERNEL_WINDOW_BASE + (256 << 20));
        }
        assert!(FRAMES.end() <= UPDATE_INBOX.base);
    }
}
