//! The Septa kernel's logic: every decision the kernel makes — syscalls, IPC delivery,
//! processes, granting at boot, ending a process, scheduling — as safe Rust generic over a
//! [`machine::Machine`], with host unit tests that run it over a simulated machine.
//!
//! The device binary (`main.rs`, `trap.rs` and `arch/`) is the thin shell around it:
//! exception entry, context switch, and the [`machine::Machine`] of the ARMv7 board
//! (MMU, interrupt controller, timer, frames, the SMC).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod boot;
pub mod cap;
pub mod elf;
pub mod fastpath;
pub mod ipc;
pub mod machine;
pub mod mm;
pub mod process;
pub mod ratelimit;
pub mod sched;
#[cfg(test)]
mod sim;
pub mod supervisor;
pub mod syscall;
pub mod system;
#[cfg(test)]
mod tests;
