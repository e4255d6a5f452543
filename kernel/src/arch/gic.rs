//! The GICv2 as the non-secure world sees it: `qemu-virt`'s [`InterruptController`].
//!
//! The monitor has already put every interrupt in Group 1; the kernel enables Group 1
//! forwarding, unmasks the priorities it uses and acknowledges interrupts by polling the
//! CPU interface (the kernel itself runs with IRQs masked).

use super::InterruptController;
use super::mmu::device_va;
use core::ptr::{read_volatile, write_volatile};
use septa_targets::board;

const GICD_CTLR: usize = 0x000;
const GICD_ISENABLER: usize = 0x100;
const GICD_ICENABLER: usize = 0x180;
const GICD_IPRIORITYR: usize = 0x400;
const GICC_CTLR: usize = 0x000;
const GICC_PMR: usize = 0x004;
const GICC_IAR: usize = 0x00c;
const GICC_EOIR: usize = 0x010;
const SPURIOUS: u32 = 1023;

fn distributor(offset: usize) -> *mut u32 {
    device_va(board::GICD + offset) as *mut u32
}

fn cpu_interface(offset: usize) -> *mut u32 {
    device_va(board::GICC + offset) as *mut u32
}

/// The board's GIC.
pub struct Gic;

impl InterruptController for Gic {
    /// Enables Group 1 interrupts in the distributor and this CPU's interface.
    fn init(&self) {
        // SAFETY: the GIC registers are mapped as device memory by `mmu::enable`; these
        // writes only enable forwarding of the non-secure group and open the priority mask.
        unsafe {
            write_volatile(distributor(GICD_CTLR), 1);
            write_volatile(cpu_interface(GICC_PMR), 0xf0);
            write_volatile(cpu_interface(GICC_CTLR), 1);
        }
    }

    /// Enables interrupt `irq` at a middle priority.
    fn enable(&self, irq: u32) {
        let irq = irq as usize;
        // SAFETY: as in `init`; IPRIORITYR is byte-accessible, ISENABLER bits only enable.
        unsafe {
            write_volatile(distributor(GICD_IPRIORITYR + irq) as *mut u8, 0xa0);
            write_volatile(distributor(GICD_ISENABLER + 4 * (irq / 32)), 1 << (irq % 32));
        }
    }

    fn disable(&self, irq: u32) {
        let irq = irq as usize;
        // SAFETY: as in `init`; ICENABLER bits only disable.
        unsafe { write_volatile(distributor(GICD_ICENABLER + 4 * (irq / 32)), 1 << (irq % 32)) };
    }

    /// The IAR value is the token: `end` writes it back to EOIR.
    fn acknowledge(&self) -> Option<(u32, u32)> {
        // SAFETY: reading IAR acknowledges the interrupt; the caller ends it with `end`.
        let iar = unsafe { read_volatile(cpu_interface(GICC_IAR)) };
        (iar & 0x3ff != SPURIOUS).then_some((iar & 0x3ff, iar))
    }

    fn end(&self, token: u32) {
        // SAFETY: `token` is an IAR value from `acknowledge`; EOIR takes exactly that value.
        unsafe { write_volatile(cpu_interface(GICC_EOIR), token) };
    }
}
