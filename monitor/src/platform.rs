//! The `qemu-virt` hardware the monitor drives besides the CPU: the GIC's security
//! configuration, the secure watchdog's interrupt, the reset line and the two CFI flash
//! banks, and the wall clock. (Entropy is in `entropy`.) Everything board-specific in the monitor is here or
//! there; `main` only calls these functions.

use septa_armv7::cfi_flash::CfiFlash;
use septa_armv7::regs;
use septa_targets::board;

/// The flash type of this board (counted for tests that cut the power, in `powercut` builds).
#[cfg(not(feature = "powercut"))]
pub type Flash = CfiFlash;
#[cfg(feature = "powercut")]
pub type Flash = crate::powercut::CutFlash<CfiFlash>;

#[cfg(not(feature = "powercut"))]
const fn counted(_bank: u8, flash: CfiFlash) -> Flash {
    flash
}

#[cfg(feature = "powercut")]
const fn counted(bank: u8, flash: CfiFlash) -> Flash {
    crate::powercut::CutFlash::new(bank, flash)
}

/// The secure physical timer's interrupt (PPI 13).
const WATCHDOG_IRQ: u32 = 29;
const GICD_CTLR: usize = 0x000;
const GICD_TYPER: usize = 0x004;
const GICD_IGROUPR: usize = 0x080;
const GICD_ISENABLER: usize = 0x100;
const GICD_IPRIORITYR: usize = 0x400;
const GICC_CTLR: usize = 0x000;
const GICC_PMR: usize = 0x004;
const GICC_IAR: usize = 0x00c;
const GICC_EOIR: usize = 0x010;

/// Wall-clock time: seconds since 1970 from the PL031's data register.
pub fn wall_clock() -> Option<u64> {
    // SAFETY: RTC is the board's PL031; its data register at offset 0 is read-only and
    // reading it has no side effect. The MMU is off in the secure world.
    Some(unsafe { core::ptr::read_volatile(board::RTC as *const u32) } as u64)
}

/// Flash 0: boot ROM, fuses, boot state.
pub const fn flash0() -> Flash {
    // SAFETY: flash 0 is the board's secure CFI bank; once the loader has entered the
    // monitor only the monitor drives it, from secure RAM.
    let flash = unsafe {
        CfiFlash::new(board::FLASH0.base, board::FLASH0.size, board::FLASH_SECTOR, board::FLASH_WRITE_BUFFER)
    };
    counted(0, flash)
}

/// Flash 1: slots, staging, storage, reports.
pub const fn flash1() -> Flash {
    // SAFETY: flash 1 is the board's other CFI bank; only the monitor issues commands to it
    // (the kernel maps it read-only, apps not at all), from secure RAM.
    let flash = unsafe {
        CfiFlash::new(board::FLASH1.base, board::FLASH1.size, board::FLASH_SECTOR, board::FLASH_WRITE_BUFFER)
    };
    counted(1, flash)
}

/// Puts every interrupt in Group 1 (non-secure) and opens the priority mask: the secure
/// world takes no interrupts, and only the secure world can write GICD_IGROUPR or lower
/// the mask out of the secure range (the normal world's writes to GICC_PMR are ignored
/// while it is below 0x80). The kernel enables and prioritises its interrupts itself.
pub fn give_interrupts_to_normal_world() {
    // SAFETY: GICD and GICC are the board's GIC distributor and CPU interface; TYPER is
    // read-only, IGROUPR only selects the group of each implemented interrupt line, and
    // PMR only sets the priority threshold.
    unsafe {
        let typer = core::ptr::read_volatile((board::GICD + GICD_TYPER) as *const u32);
        let words = (typer & 0x1f) as usize + 1;
        for word in 0..words {
            let igroupr = (board::GICD + GICD_IGROUPR + 4 * word) as *mut u32;
            core::ptr::write_volatile(igroupr, u32::MAX);
        }
        core::ptr::write_volatile((board::GICC + GICC_PMR) as *mut u32, 0xff);
    }
}

/// Makes the secure timer's interrupt a Group 0 interrupt at the highest priority, which the
/// GIC signals as an FIQ.
pub fn route_watchdog_to_monitor() {
    let bit = 1u32 << WATCHDOG_IRQ;
    // SAFETY: GICD and GICC are the board's GIC; from the secure world these writes only put
    // the watchdog's line into Group 0 at the highest priority, enable it, and enable Group 0
    // (as FIQ) in the distributor and the CPU interface, leaving Group 1 as it is.
    unsafe {
        let group = (board::GICD + GICD_IGROUPR) as *mut u32;
        core::ptr::write_volatile(group, core::ptr::read_volatile(group) & !bit);
        core::ptr::write_volatile((board::GICD + GICD_IPRIORITYR + WATCHDOG_IRQ as usize) as *mut u8, 0);
        core::ptr::write_volatile((board::GICD + GICD_ISENABLER) as *mut u32, bit);
        let dctlr = (board::GICD + GICD_CTLR) as *mut u32;
        core::ptr::write_volatile(dctlr, core::ptr::read_volatile(dctlr) | 1);
        let cctlr = (board::GICC + GICC_CTLR) as *mut u32;
        core::ptr::write_volatile(cctlr, core::ptr::read_volatile(cctlr) | 1 | (1 << 3));
    }
}

/// An acknowledged FIQ.
#[derive(Clone, Copy)]
pub struct Fiq(u32);

impl Fiq {
    pub fn is_watchdog(self) -> bool {
        self.0 == WATCHDOG_IRQ
    }
}

/// Acknowledges the pending Group 0 interrupt, if there is one.
pub fn acknowledge_fiq() -> Option<Fiq> {
    // SAFETY: reading the secure GICC_IAR acknowledges the highest-priority Group 0
    // interrupt; `end_fiq` ends it.
    let id = unsafe { core::ptr::read_volatile((board::GICC + GICC_IAR) as *const u32) } & 0x3ff;
    (id < 1020).then_some(Fiq(id))
}

pub fn end_fiq(fiq: Fiq) {
    // SAFETY: EOIR takes the id `acknowledge_fiq` read.
    unsafe { core::ptr::write_volatile((board::GICC + GICC_EOIR) as *mut u32, fiq.0) };
}

/// Resets the board by raising the secure GPIO line QEMU wires to its reset request.
///
/// The power-off line sits next to it and input pins read as pulled up, so both lines are
/// made outputs driven low first; only then is the reset line raised.
pub fn reset() -> ! {
    const GPIODIR: usize = 0x400;
    let data = |mask: u32| (board::SECURE_GPIO + ((mask as usize) << 2)) as *mut u32;
    let reset = 1u32 << board::SECURE_GPIO_RESET_PIN;
    let lines = reset | 1 << board::SECURE_GPIO_POWEROFF_PIN;
    // SAFETY: SECURE_GPIO is the board's secure PL061. A write to the data register at
    // offset (mask << 2) changes only the pins in `mask`; GPIODIR selects outputs.
    unsafe {
        core::ptr::write_volatile(data(lines), 0);
        core::ptr::write_volatile((board::SECURE_GPIO + GPIODIR) as *mut u32, lines);
        core::ptr::write_volatile(data(reset), reset);
    }
    loop {
        regs::wait_for_interrupt();
    }
}
