//! The Septa kernel's logic: everything the kernel decides that can be decided without
//! touching hardware, as plain safe Rust with host unit tests.
//!
//! The device binary (`main.rs` and `arch/`) is the thin shell around it: exception
//! entry, context switch, page-table install, interrupt controller and timer.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cap;
pub mod elf;
pub mod ipc;
pub mod mm;
pub mod ratelimit;
pub mod sched;
pub mod supervisor;
