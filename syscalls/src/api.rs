//! The raw `svc` calls and the safe wrappers over them.

use crate::{BADGE_LEN, DmaPool, Error, HandleKind, Info, LOG_MAX, REGISTER_MESSAGE, Syscall};
use core::arch::asm;

/// Issues syscall `number` with three arguments; returns its value or error.
#[inline(always)]
pub fn raw_syscall(number: u32, a0: u32, a1: u32, a2: u32) -> Result<u32, Error> {
    raw_syscall5(number, [a0, a1, a2, 0, 0])
}

/// Issues syscall `number` with five arguments; returns its value or error.
#[inline(always)]
pub fn raw_syscall5(number: u32, args: [u32; 5]) -> Result<u32, Error> {
    raw_syscall6(number, [args[0], args[1], args[2], args[3], args[4], 0])
}

/// Issues syscall `number` with six arguments; returns its value (r1) or the error its
/// status (r0) names.
#[inline(always)]
pub fn raw_syscall6(number: u32, args: [u32; 6]) -> Result<u32, Error> {
    let (status, value): (u32, u32);
    // SAFETY: `svc #0` enters the kernel, which validates every argument against this
    // app's own mappings before using it and changes no app register except r0 and r1.
    unsafe {
        asm!("svc #0",
            inlateout("r0") args[0] => status, inlateout("r1") args[1] => value, in("r2") args[2],
            in("r3") args[3], in("r4") args[4], in("r5") args[5], in("r7") number,
            options(nostack));
    }
    Error::result(status, value)
}

/// [`raw_syscall6`] with a seventh argument in r8 (what IPC calls the buffer).
#[inline(always)]
pub fn raw_syscall7(number: u32, args: [u32; 6], r8: u32) -> Result<u32, Error> {
    let (status, value): (u32, u32);
    // SAFETY: as in `raw_syscall6`: the kernel validates every argument, r8 included, and
    // changes no app register except r0 and r1.
    unsafe {
        asm!("svc #0",
            inlateout("r0") args[0] => status, inlateout("r1") args[1] => value, in("r2") args[2],
            in("r3") args[3], in("r4") args[4], in("r5") args[5], in("r7") number, in("r8") r8,
            options(nostack));
    }
    Error::result(status, value)
}

/// A capability handle, found with [`lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle(pub u32);

/// Finds the caller's capability of `kind` named `name` in its manifest.
pub fn lookup(kind: HandleKind, name: &str) -> Result<Handle, Error> {
    raw_syscall(Syscall::Lookup as u32, kind as u32, name.as_ptr() as u32, name.len() as u32).map(Handle)
}

/// What an IPC syscall left in the registers: status, value (a length), r2–r5 (a message of
/// at most 16 bytes) and r7–r10 (the badge of a received call).
pub struct IpcRegisters {
    pub status: u32,
    pub value: u32,
    pub words: [u32; 4],
    pub badge: [u32; 4],
}

/// Issues IPC syscall `number` with the handle (r0), lengths word (r1), message registers
/// (r2–r5) and buffer address (r8) of the ABI ([`crate::lengths`]).
#[inline(always)]
pub fn raw_ipc(number: u32, handle: u32, lengths: u32, words: [u32; 4], buffer: u32) -> IpcRegisters {
    let (status, value): (u32, u32);
    let (mut out, mut badge) = ([0u32; 4], [0u32; 4]);
    // SAFETY: `svc #0` enters the kernel, which validates every argument against this
    // app's own mappings before using it and changes no app register but r0–r5 and r7–r10.
    unsafe {
        asm!("svc #0",
            inlateout("r0") handle => status, inlateout("r1") lengths => value,
            inlateout("r2") words[0] => out[0], inlateout("r3") words[1] => out[1],
            inlateout("r4") words[2] => out[2], inlateout("r5") words[3] => out[3],
            inlateout("r7") number => badge[0], inlateout("r8") buffer => badge[1],
            lateout("r9") badge[2], lateout("r10") badge[3],
            options(nostack));
    }
    IpcRegisters { status, value, words: out, badge }
}

/// The registers that carry `message`: its bytes when it fits, else its address.
#[inline(always)]
fn message_registers(message: &[u8]) -> [u32; 4] {
    if message.len() <= REGISTER_MESSAGE {
        crate::message_words(message)
    } else {
        [message.as_ptr() as u32, 0, 0, 0]
    }
}

/// The length a call or receive returned; what fits in registers is stored into `buffer`
/// here (the kernel wrote a longer one into `buffer` itself).
#[inline(always)]
fn take_message(out: &IpcRegisters, buffer: &mut [u8]) -> Result<usize, Error> {
    let len = Error::result(out.status, out.value)? as usize;
    let got = len.min(buffer.len());
    if got == REGISTER_MESSAGE {
        buffer[..REGISTER_MESSAGE].copy_from_slice(&crate::bytes_of(out.words)); // no variable-length copy
    } else if got < REGISTER_MESSAGE {
        buffer[..got].copy_from_slice(&crate::bytes_of(out.words)[..got]);
    }
    Ok(len)
}

/// Sends `message` to the server of `endpoint` and waits for its reply, written into
/// `reply`; returns the reply's length.
#[inline]
pub fn call(endpoint: Handle, message: &[u8], reply: &mut [u8]) -> Result<usize, Error> {
    let lengths = crate::lengths(message.len(), reply.len());
    let out = raw_ipc(
        Syscall::Call as u32,
        endpoint.0,
        lengths,
        message_registers(message),
        reply.as_mut_ptr() as u32,
    );
    take_message(&out, reply)
}

/// A received call: its length and the caller's badge (component id).
#[derive(Debug)]
pub struct Received {
    pub len: usize,
    pub badge: [u8; BADGE_LEN],
}

#[inline(always)]
fn received(out: IpcRegisters, buffer: &mut [u8]) -> Result<Received, Error> {
    let len = take_message(&out, buffer)?;
    Ok(Received { len, badge: crate::bytes_of(out.badge) })
}

/// Waits for a call on `endpoint` (served by the caller); the message goes into `buffer`.
pub fn recv(endpoint: Handle, buffer: &mut [u8]) -> Result<Received, Error> {
    let lengths = crate::lengths(0, buffer.len());
    received(raw_ipc(Syscall::Recv as u32, endpoint.0, lengths, [0; 4], buffer.as_mut_ptr() as u32), buffer)
}

/// Answers the call received last.
pub fn reply(message: &[u8]) -> Result<(), Error> {
    let lengths = crate::lengths(message.len(), 0);
    let out = raw_ipc(Syscall::Reply as u32, 0, lengths, message_registers(message), 0);
    Error::result(out.status, out.value).map(drop)
}

/// Answers the call received last with `message`, then waits for the next call like
/// [`recv`] — one syscall instead of two, the fast path of a server loop.
#[inline]
pub fn reply_recv(endpoint: Handle, message: &[u8], buffer: &mut [u8]) -> Result<Received, Error> {
    let lengths = crate::lengths(message.len(), buffer.len());
    let out = raw_ipc(
        Syscall::ReplyRecv as u32,
        endpoint.0,
        lengths,
        message_registers(message),
        buffer.as_mut_ptr() as u32,
    );
    received(out, buffer)
}

/// Sets `bits` in the notifications of `endpoint`'s server.
pub fn notify(endpoint: Handle, bits: u32) -> Result<(), Error> {
    raw_syscall(Syscall::Notify as u32, endpoint.0, bits, 0).map(drop)
}

/// Waits for any notification bit in `mask`; returns (and clears) the bits that were set.
/// An empty `mask` is `EINVAL`.
pub fn wait(mask: u32) -> Result<u32, Error> {
    raw_syscall(Syscall::Wait as u32, mask, 0, 0)
}

/// Waits for any notification bit in `mask`, at most `timeout_ms` (≥ 1) milliseconds;
/// returns (and clears) the bits that were set, 0 if the time passed first.
pub fn wait_timeout(mask: u32, timeout_ms: u32) -> Result<u32, Error> {
    raw_syscall(Syscall::Wait as u32, mask, timeout_ms.max(1), 0)
}

/// Sets notification `bits` of the client whose calls on `endpoint` (a served endpoint)
/// carry `badge`.
pub fn notify_client(endpoint: Handle, badge: &[u8; 16], bits: u32) -> Result<(), Error> {
    raw_syscall(Syscall::NotifyClient as u32, endpoint.0, badge.as_ptr() as u32, bits).map(drop)
}

/// Maps a granted device; returns the address of its registers.
pub fn map_device(device: Handle) -> Result<usize, Error> {
    raw_syscall(Syscall::MapDevice as u32, device.0, 0, 0).map(|a| a as usize)
}

/// Where the caller's DMA pool is (`dma-kib` in its manifest).
pub fn dma_pool() -> Result<DmaPool, Error> {
    let mut pool = DmaPool::default();
    raw_syscall(Syscall::DmaPool as u32, &mut pool as *mut DmaPool as u32, 0, 0).map(|_| pool)
}

/// Re-enables a device's interrupt after handling it.
pub fn irq_ack(device: Handle) -> Result<(), Error> {
    raw_syscall(Syscall::IrqAck as u32, device.0, 0, 0).map(drop)
}

/// Drives the GPIO `pins` (a bit set within the granted pins) to `values`.
pub fn gpio_set(gpio: Handle, pins: u32, values: u32) -> Result<(), Error> {
    raw_syscall(Syscall::GpioSet as u32, gpio.0, pins, values).map(drop)
}

/// Ends the app with `code` (0 = success).
pub fn exit(code: i32) -> ! {
    let _ = raw_syscall(Syscall::Exit as u32, code as u32, 0, 0);
    // The kernel never returns from exit; should it ever, give the CPU away for good.
    loop {
        yield_now();
    }
}

/// Lets other apps of the same priority run first.
pub fn yield_now() {
    let _ = raw_syscall(Syscall::Yield as u32, 0, 0, 0);
}

/// Blocks for at least `ms` milliseconds.
pub fn sleep(ms: u32) {
    let _ = raw_syscall(Syscall::Sleep as u32, ms, 0, 0);
}

/// Prints `bytes` as one console line tagged with the app's name.
pub fn log_bytes(bytes: &[u8]) -> Result<(), Error> {
    raw_syscall(Syscall::Log as u32, bytes.as_ptr() as u32, bytes.len() as u32, 0).map(drop)
}

/// The app's id, uptime and name.
pub fn info() -> Info {
    let mut info = Info::default();
    // Cannot fail: `info` is a valid, writable local.
    let _ = raw_syscall(Syscall::Info as u32, &mut info as *mut Info as u32, 0, 0);
    info
}

/// A fixed buffer that `log!` formats into, then hands to `log` in one call.
pub struct LineBuffer {
    bytes: [u8; LOG_MAX],
    len: usize,
}

impl LineBuffer {
    pub const fn new() -> Self {
        LineBuffer { bytes: [0; LOG_MAX], len: 0 }
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
