//! Formats that the device and the host must agree on, defined once.
//!
//! Everything here is `no_std` and free of `unsafe`: the loader parses flash with the same
//! code the host tools use to write it, and the host unit tests exercise that code with
//! hostile inputs. Parsing is total — every length and offset is checked and a bad input is
//! an error value, never a panic or an out-of-bounds read.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;

pub mod app;
pub mod attest;
pub mod boot_state;
pub mod bundle;
pub mod device_auth;
pub mod exit;
pub mod flash;
pub mod fuses;
pub mod handoff;
pub mod journal;
pub mod keys;
pub mod monitor;
pub mod net;
pub mod package;
pub mod report;
pub mod service;
pub mod slot;
pub mod smc;
pub mod verify;

#[cfg(test)]
mod fuzz;
