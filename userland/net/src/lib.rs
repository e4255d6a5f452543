//! The network service's socket table over smoltcp ([`service`]), kept apart from the
//! syscalls so it runs on the host in unit tests.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod service;
