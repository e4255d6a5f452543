//! The BCM2836 per-core ("local") interrupt controller: the dev kit's
//! [`InterruptController`]. The kernel's only interrupt is core 0's non-secure physical
//! timer, which this controller routes directly; the BCM2835 controller behind it serves
//! peripherals no app is granted yet.

use super::InterruptController;
use super::mmu::device_va;
use core::ptr::{read_volatile, write_volatile};
use septa_targets::board;

const CORE0_TIMER_CONTROL: usize = 0x40;
const CORE0_IRQ_SOURCE: usize = 0x60;

fn register(offset: usize) -> *mut u32 {
    device_va(board::LOCAL_INTC + offset) as *mut u32
}

/// The board's local interrupt controller. Interrupt numbers are bits of core 0's IRQ
/// source register (1: the non-secure physical timer).
pub struct Bcm2836;

impl InterruptController for Bcm2836 {
    fn init(&self) {}

    fn enable(&self, irq: u32) {
        if irq == board::TIMER_IRQ {
            // SAFETY: the local controller is in the kernel's device window; this adds the
            // timer's IRQ enable for core 0.
            unsafe {
                let control = register(CORE0_TIMER_CONTROL);
                write_volatile(control, read_volatile(control) | (1 << irq));
            }
        }
    }

    fn disable(&self, irq: u32) {
        if irq == board::TIMER_IRQ {
            // SAFETY: as in `enable`; removes the enable bit.
            unsafe {
                let control = register(CORE0_TIMER_CONTROL);
                write_volatile(control, read_volatile(control) & !(1 << irq));
            }
        }
    }

    fn acknowledge(&self) -> Option<(u32, u32)> {
        // SAFETY: reading the IRQ source register has no side effect; only sources enabled
        // in `enable` can be pending there, and the timer's clears when it is re-armed.
        let source = unsafe { read_volatile(register(CORE0_IRQ_SOURCE)) } & (1 << board::TIMER_IRQ);
        (source != 0).then_some((board::TIMER_IRQ, 0))
    }

    fn end(&self, _token: u32) {}
}
