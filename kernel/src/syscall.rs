//! The syscalls: decoding the registers of an `svc #0` and carrying the call out.
//!
//! Arguments are untrusted. Every pointer is a claim checked with `mm::user` against the
//! caller's own page table before a byte moves; a refused call returns an error in r0 and
//! changes nothing else. Unknown numbers return `ENOSYS`.

use crate::arch::timer;
use crate::console::console;
use crate::system::{Ending, Kernel};
use core::fmt::Write;
use septa_kernel::mm::user::{self, Access, UserRange};
use septa_syscalls::{Error, Info, LOG_MAX, Syscall};

/// What the trap code does after a syscall.
pub enum After {
    /// Return to the caller (or a more urgent process).
    Continue,
    /// The caller gave up the CPU (yield, sleep, exit): pick the next process.
    Reschedule,
}

impl Kernel {
    /// Carries out syscall `number` for the current process `pid`.
    pub fn syscall(&mut self, pid: usize, number: u32, args: [u32; 3]) -> After {
        let result = match Syscall::from_u32(number) {
            Some(Syscall::Exit) => {
                self.end(pid, Ending::Exit(args[0] as i32));
                return After::Reschedule;
            }
            Some(Syscall::Yield) => {
                self.set_result(pid, Ok(0));
                return After::Reschedule;
            }
            Some(Syscall::Sleep) => {
                let until = timer::now() + timer::ms_to_ticks(args[0] as u64);
                self.set_result(pid, Ok(0));
                self.sleep_current(until);
                return After::Reschedule;
            }
            Some(Syscall::Log) => self.log(pid, args[0], args[1]),
            Some(Syscall::Info) => self.info(pid, args[0]),
            None => Err(Error::NoSys),
        };
        self.set_result(pid, result);
        After::Continue
    }

    fn set_result(&mut self, pid: usize, result: Result<u32, Error>) {
        self.processes[pid].context.r[0] = match result {
            Ok(value) => value,
            Err(error) => error as i32 as u32,
        };
    }

    fn log(&mut self, pid: usize, address: u32, len: u32) -> Result<u32, Error> {
        if len as usize > LOG_MAX {
            return Err(Error::Invalid);
        }
        let mut line = [0u8; LOG_MAX];
        let line = &mut line[..len as usize];
        self.copy_from_user(pid, address, line)?;
        let mut out = console();
        let _ = write!(out, "[{}] ", self.processes[pid].name());
        for &byte in line.iter() {
            // One line of plain text: control characters and non-ASCII bytes cannot reach
            // the terminal.
            let shown = match byte {
                b' '..=b'~' => byte,
                b'\t' | b'\n' | b'\r' => b' ',
                _ => b'?',
            };
            out.write_byte(shown);
        }
        let _ = writeln!(out);
        Ok(0)
    }

    fn info(&mut self, pid: usize, address: u32) -> Result<u32, Error> {
        let info = Info {
            pid: pid as u32,
            uptime_ms: self.uptime_ms() as u32,
            name: self.processes[pid].name_bytes(),
        };
        let bytes: [u8; size_of::<Info>()] = {
            let mut out = [0u8; size_of::<Info>()];
            out[0..4].copy_from_slice(&info.pid.to_ne_bytes());
            out[4..8].copy_from_slice(&info.uptime_ms.to_ne_bytes());
            out[8..].copy_from_slice(&info.name);
            out
        };
        self.copy_to_user(pid, address, &bytes)?;
        Ok(0)
    }

    /// Copies `out.len()` bytes from the process's memory at `address`.
    fn copy_from_user(&self, pid: usize, address: u32, out: &mut [u8]) -> Result<(), Error> {
        let process = &self.processes[pid];
        let range = UserRange::new(address, out.len() as u32).map_err(|_| Error::Fault)?;
        user::check(range, Access::Read, |va| process.lookup(va)).map_err(|_| Error::Fault)?;
        let mut done = 0;
        for (va, len) in user::pages(range) {
            let page = process.lookup(va & !0xfff).ok_or(Error::Fault)?;
            let source = page.phys + (va & 0xfff);
            // SAFETY: `check` found this page mapped readable for the process; its frame
            // is one-to-one mapped in the kernel and `len` stays inside the page.
            let bytes = unsafe { core::slice::from_raw_parts(source as *const u8, len as usize) };
            out[done..done + len as usize].copy_from_slice(bytes);
            done += len as usize;
        }
        Ok(())
    }

    /// Copies `bytes` into the process's memory at `address`, which must be writable.
    fn copy_to_user(&self, pid: usize, address: u32, bytes: &[u8]) -> Result<(), Error> {
        let process = &self.processes[pid];
        let range = UserRange::new(address, bytes.len() as u32).map_err(|_| Error::Fault)?;
        user::check(range, Access::Write, |va| process.lookup(va)).map_err(|_| Error::Fault)?;
        let mut done = 0;
        for (va, len) in user::pages(range) {
            let page = process.lookup(va & !0xfff).ok_or(Error::Fault)?;
            let target = page.phys + (va & 0xfff);
            // SAFETY: `check` found this page mapped writable for the process; its frame
            // is one-to-one mapped in the kernel and `len` stays inside the page.
            let slot = unsafe { core::slice::from_raw_parts_mut(target as *mut u8, len as usize) };
            slot.copy_from_slice(&bytes[done..done + len as usize]);
            done += len as usize;
        }
        Ok(())
    }
}
