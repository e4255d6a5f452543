//! The ARMv7-A shell of the kernel: the only place with assembly and coprocessor registers.
//!
//! - [`entry`]: the vector table, saving a process's registers into its [`Context`] on any
//!   exception from user mode, and the return to user mode;
//! - [`mmu`]: the kernel's translation tables, turning the MMU on, switching TTBR0/ASID;
//! - [`gic`] and [`timer`]: the interrupt controller and the tick.

pub mod entry;
pub mod gic;
pub mod mmu;
pub mod timer;

pub use entry::Context;
