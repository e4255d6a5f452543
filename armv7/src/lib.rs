//! ARMv7-A support shared by the loader, the monitor and the kernel.
//!
//! The register accessors, the console driver and the semihosting exit are the only
//! `unsafe` code here; each stage keeps its own vector table and mode switches. The
//! decoding of modes and fault status registers and the crash-report text are plain Rust
//! with host unit tests. (`aarch32-cpu` 0.4 has no accessors for the Security Extensions
//! registers — SCR, NSACR, MVBAR — nor TTBR1/TTBCR, so all CP15 access goes through the one
//! macro in [`regs`] rather than through two styles.)

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_arch = "arm")]
pub mod cfi_flash;
pub mod crash;
pub mod fault;
#[cfg(target_arch = "arm")]
mod mapped;
pub mod mode;
#[cfg(target_arch = "arm")]
pub mod pl011;
#[cfg(target_arch = "arm")]
pub mod ram_flash;
#[cfg(target_arch = "arm")]
pub mod regs;
#[cfg(target_arch = "arm")]
pub mod semihosting;
