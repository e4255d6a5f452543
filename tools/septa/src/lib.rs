//! Host-side image tooling: from built ELF files to the board's flash images.
//!
//! Everything the device later checks is written here with the same `septa-abi` code the
//! loader reads it with. Outputs are written to a temporary file and renamed into place, so
//! a failed run never leaves a partly written image behind.

#![forbid(unsafe_code)]

pub mod attest;
pub mod devfleet;
pub mod device_cert;
pub mod elf;
pub mod image;
pub mod keys;
pub mod manifest;
pub mod netpolicy;
pub mod new;
pub mod relay;
pub mod report;
pub mod service;
