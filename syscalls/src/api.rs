//! The raw `svc` calls and the safe wrappers over them.

use crate::{Error, Info, LOG_MAX, Syscall};
use core::arch::asm;

/// Issues syscall `number` with three arguments; returns r0.
#[inline(always)]
pub fn raw_syscall(number: u32, a0: u32, a1: u32, a2: u32) -> u32 {
    let result: u32;
    // SAFETY: `svc #0` enters the kernel, which validates every argument against this
    // app's own mappings before using it and changes no app register except r0 and r1.
    unsafe {
        asm!("svc #0",
            inlateout("r0") a0 => result, inlateout("r1") a1 => _, in("r2") a2, in("r7") number,
            options(nostack));
    }
    result
}

/// Ends the app with `code` (0 = success).
pub fn exit(code: i32) -> ! {
    raw_syscall(Syscall::Exit as u32, code as u32, 0, 0);
    // The kernel never returns from exit; should it ever, give the CPU away for good.
    loop {
        yield_now();
    }
}

/// Lets other apps of the same priority run first.
pub fn yield_now() {
    raw_syscall(Syscall::Yield as u32, 0, 0, 0);
}

/// Blocks for at least `ms` milliseconds.
pub fn sleep(ms: u32) {
    raw_syscall(Syscall::Sleep as u32, ms, 0, 0);
}

/// Prints `bytes` as one console line tagged with the app's name.
pub fn log_bytes(bytes: &[u8]) -> Result<(), Error> {
    Error::check(raw_syscall(
        Syscall::Log as u32,
        bytes.as_ptr() as u32,
        bytes.len() as u32,
        0,
    ))
    .map(drop)
}

/// The app's id, uptime and name.
pub fn info() -> Info {
    let mut info = Info::default();
    // Cannot fail: `info` is a valid, writable local.
    raw_syscall(Syscall::Info as u32, &mut info as *mut Info as u32, 0, 0);
    info
}

/// A fixed buffer that `log!` formats into, then hands to `log` in one call.
pub struct LineBuffer {
    bytes: [u8; LOG_MAX],
    len: usize,
}

impl LineBuffer {
    pub const fn new() -> Self {
        LineBuffer {
            bytes: [0; LOG_MAX],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Write for LineBuffer {
    /// Keeps what fits and drops the rest: a log line is cut, never an error.
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let take = s.len().min(LOG_MAX - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Formats and logs one line: `syscalls::log!("count {}", n)`.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        let mut line = $crate::LineBuffer::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!($($arg)*));
        let _ = $crate::log_bytes(line.as_bytes());
    }};
}
