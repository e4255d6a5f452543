//! The logic of Septa's network apps, kept apart from the syscalls so it runs on the host
//! in unit tests: the driver's DMA pool and bounce buffers ([`pool`]) and the network
//! service's socket table ([`service`]).

#![no_std]

extern crate alloc;

pub mod pool;
pub mod service;
