//! The syscall ABI shared by the kernel and apps (filled by the kernel-core work).
#![no_std]
