//! The security monitor's logic, separate from its entry points so it runs in host tests.
//!
//! The binary (`main.rs`) owns the Monitor-mode vectors, the switch to the non-secure world
//! and the hardware side of power control; everything it decides is decided here.

#![no_std]
#![forbid(unsafe_code)]

pub mod persist;
pub mod services;
pub mod smc;
pub mod storage;
