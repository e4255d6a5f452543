//! The GICv2 as the non-secure world sees it.
//!
//! The monitor has already put every interrupt in Group 1; the kernel enables Group 1
//! forwarding, unmasks the priorities it uses and acknowledges interrupts by polling the
//! CPU interface (the kernel itself runs with IRQs masked).

use super::mmu::device_va;
use core::ptr::{read_volatile, write_volatile};
use septa_targets::qemu_virt as board;

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

/// Enables Group 1 interrupts in the distributor and this CPU's interface.
pub fn init() {
    // SAFETY: the GIC registers are mapped as device memory by `mmu::enable`; these writes
    // only enable forwarding of the non-secure group and open the priority mask.
    unsafe {
        write_volatile(distributor(GICD_CTLR), 1);
        write_volatile(cpu_interface(GICC_PMR), 0xf0);
        write_volatile(cpu_interface(GICC_CTLR), 1);
    }
}

/// Enables interrupt `irq` at a middle priority.
pub fn enable(irq: u32) {
    let irq = irq as usize;
    // SAFETY: as in `init`; IPRIORITYR is byte-accessible, ISENABLER bits only enable.
    unsafe {
        write_volatile(distributor(GICD_IPRIORITYR + irq) as *mut u8, 0xa0);
        write_volatile(distributor(GICD_ISENABLER + 4 * (irq / 32)), 1 << (irq % 32));
    }
}

/// Masks interrupt `irq` in the distributor.
pub fn disable(irq: u32) {
    let irq = irq as usize;
    // SAFETY: as in `init`; ICENABLER bits only disable.
    unsafe { write_volatile(distributor(GICD_ICENABLER + 4 * (irq / 32)), 1 << (irq % 32)) };
}

/// Acknowledges the highest-priority pending interrupt, if any: its IAR value.
pub fn acknowledge() -> Option<u32> {
    // SAFETY: reading IAR acknowledges the interrupt; the caller ends it with `end`.
    let iar = unsafe { read_volatile(cpu_interface(GICC_IAR)) };
    (iar & 0x3ff != SPURIOUS).then_some(iar)
}

/// The interrupt number of an IAR value.
pub fn irq_number(iar: u32) -> u32 {
    iar & 0x3ff
}

/// Signals the end of handling for an acknowledged interrupt.
pub fn end(iar: u32) {
    // SAFETY: `iar` came from `acknowledge`; EOIR takes exactly that value.
    unsafe { write_volatile(cpu_interface(GICC_EOIR), iar) };
}
