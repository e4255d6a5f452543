//! The ARMv7-A shell of the kernel: the only place with assembly and coprocessor registers.
//!
//! - [`entry`]: the vector table, saving a process's registers into its [`Context`] on any
//!   exception from user mode, and the return to user mode;
//! - [`mmu`]: the kernel's translation tables, turning the MMU on, switching TTBR0/ASID;
//! - [`copy`]: copies of physical memory, word-aligned ones with `ldm`/`stm`;
//! - [`timer`]: the tick (the ARM generic timer, the same on every board);
//! - the board's interrupt and GPIO controllers behind [`InterruptController`] and
//!   [`GpioController`]: the GIC and the PL061 on `qemu-virt`, the BCM2836 local
//!   controller and the BCM2835 GPIO on the Raspberry Pi 2B.

#[cfg(feature = "raspi2b")]
pub mod bcm2835_gpio;
#[cfg(feature = "raspi2b")]
pub mod bcm2836;
pub mod copy;
pub mod entry;
#[cfg(not(feature = "raspi2b"))]
pub mod gic;
pub mod machine;
pub mod mmu;
#[cfg(not(feature = "raspi2b"))]
pub mod pl061;
pub mod timer;

pub use septa_kernel::machine::Context;

/// What the kernel needs from a board's interrupt controller. The kernel runs with IRQs
/// masked and polls it on each interrupt exception.
pub trait InterruptController {
    /// Starts forwarding interrupts to this CPU (each line stays masked until enabled).
    fn init(&self);
    fn enable(&self, irq: u32);
    fn disable(&self, irq: u32);
    /// The next pending interrupt, acknowledged: its number and the token [`end`] takes.
    ///
    /// [`end`]: InterruptController::end
    fn acknowledge(&self) -> Option<(u32, u32)>;
    /// Ends the handling of an acknowledged interrupt.
    fn end(&self, token: u32);
}

/// The board's interrupt controller.
#[cfg(not(feature = "raspi2b"))]
pub static IRQS: gic::Gic = gic::Gic;
#[cfg(feature = "raspi2b")]
pub static IRQS: bcm2836::Bcm2836 = bcm2836::Bcm2836;

/// What the kernel needs from a board's GPIO controller.
pub trait GpioController {
    /// Makes `pins` outputs and drives them to the matching bits of `values`, leaving every
    /// other pin as it is.
    fn set(&self, pins: u32, values: u32);
}

/// The board's GPIO controller.
#[cfg(not(feature = "raspi2b"))]
pub static GPIO: pl061::Pl061 = pl061::Pl061;
#[cfg(feature = "raspi2b")]
pub static GPIO: bcm2835_gpio::Bcm2835Gpio = bcm2835_gpio::Bcm2835Gpio;

/// Benchmark builds only: starts the PMU cycle counter and lets user mode read it and the
/// virtual counter, so benchmark apps can time themselves.
#[cfg(feature = "bench")]
pub fn enable_user_counters() {
    // SAFETY: PMCR.E|C starts (and resets) the cycle counter, PMCNTENSET bit 31 enables it,
    // PMUSERENR.EN and CNTKCTL.PL0VCTEN only grant user-mode reads of counters. None of it
    // touches memory; it is compiled into benchmark builds only.
    unsafe {
        core::arch::asm!(
            "mcr p15, 0, {pmcr}, c9, c12, 0",
            "mcr p15, 0, {enable}, c9, c12, 1",
            "mcr p15, 0, {one}, c9, c14, 0",
            "mcr p15, 0, {cntkctl}, c14, c1, 0",
            pmcr = in(reg) 0b101u32,
            enable = in(reg) 1u32 << 31,
            one = in(reg) 1u32,
            cntkctl = in(reg) 0b11u32,
            options(nostack)
        );
    }
}
