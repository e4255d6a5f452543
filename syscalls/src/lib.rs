//! The syscall ABI shared by the kernel and apps, and the safe API apps are written against.
//!
//! ABI: `svc #0` with the syscall number in r7 and arguments in r0–r5; the result comes back
//! as a status in r0 — 0, or a negative [`Error`] code — and a value in r1 (0 after an
//! error), so no value can be mistaken for an error ([`Error::result`]). The table of numbers in
//! [`Syscall`] is the only one: the kernel dispatches on it and this crate calls through it.
//!
//! IPC (`call`, `recv`, `reply`, `reply_recv`) carries small messages in registers: r1 holds
//! the two lengths ([`lengths`]: what is sent, and how much the caller can take back), a
//! message of at most [`REGISTER_MESSAGE`] bytes travels in r2–r5 (a longer one is in memory,
//! its address in r2), r8 is the buffer for what comes back when that is longer, and a
//! received message of at most 16 bytes comes back in r2–r5, with the caller's badge in
//! r7–r10. So the common small call touches no memory in the kernel at all.
//!
//! App authors use the safe wrappers: [`log!`], [`sleep`], [`yield_now`], [`exit`] and
//! [`info`]. Every pointer an app passes is checked by the kernel against the app's own
//! mappings; a bad one is refused with [`Error::Fault`] and changes nothing.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_arch = "arm")]
mod api;
#[cfg(target_arch = "arm")]
pub use api::*;
#[cfg(target_arch = "arm")]
pub mod monitor;
pub mod net;
pub mod request;

/// Syscall numbers (r7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Syscall {
    /// `exit(code)`: ends the calling app. Does not return.
    Exit = 0,
    /// `yield()`: lets other apps of the same priority run.
    Yield = 1,
    /// `sleep(ms)`: blocks for at least `ms` milliseconds.
    Sleep = 2,
    /// `log(ptr, len)`: prints one line on the console, tagged with the app's name.
    Log = 3,
    /// `info(ptr)`: fills an [`Info`] at `ptr`.
    Info = 4,
    /// `lookup(kind, name_ptr, name_len) -> handle`: finds one of the caller's own
    /// capabilities by the name its manifest uses ([`HandleKind`]).
    Lookup = 5,
    /// `call(handle, lengths(msg_len, reply_len), message, .. r8 = reply_ptr) -> reply
    /// length`: sends a message of at most [`MESSAGE_MAX`] bytes (in r2–r5, or at the address
    /// in r2 when longer than [`REGISTER_MESSAGE`]) to the endpoint's server and waits for
    /// the reply (in r2–r5, or written at `reply_ptr` when more than 16 bytes of it fit).
    Call = 6,
    /// `recv(handle, lengths(0, buf_len), .. r8 = buf_ptr) -> message length`: waits for a
    /// call on an endpoint the caller serves; the message comes like a reply to `call`, the
    /// caller's 16-byte component id (its badge) in r7–r10.
    Recv = 7,
    /// `reply(_, lengths(msg_len, 0), message)`: answers the call received last.
    Reply = 8,
    /// `notify(handle, bits)`: sets notification bits of the server of a callable endpoint.
    Notify = 9,
    /// `wait(mask, timeout_ms) -> bits`: waits until a notification bit in `mask` is set;
    /// returns and clears those bits. With a `timeout_ms` other than 0, returns 0 once that
    /// long has passed.
    Wait = 10,
    /// `map_device(handle) -> address`: maps a granted device into the caller.
    MapDevice = 11,
    /// `irq_ack(handle)`: re-enables a granted device's interrupt after it was delivered.
    IrqAck = 12,
    /// `gpio_set(handle, pins, values)`: drives granted GPIO pins (bit sets).
    GpioSet = 13,
    /// `monitor_call(handle, service, request_ptr, request_len, response_ptr, response_len)
    /// -> response length`: a security-monitor service the manifest grants
    /// (`septa_abi::monitor`).
    MonitorCall = 14,
    /// `reply_recv(handle, lengths(msg_len, buf_len), message, .. r8 = buf_ptr) -> message
    /// length`: a server's loop in one syscall — `reply(msg)`, then `recv` on `handle`. A
    /// reply whose caller died meanwhile is dropped; the receive still happens.
    ReplyRecv = 15,
    /// `dma_pool(ptr)`: fills a [`DmaPool`] at `ptr` describing the caller's DMA pool
    /// (`dma-kib`); `EACCES` without one.
    DmaPool = 16,
    /// `notify_client(handle, badge_ptr, bits)`: the server of a served endpoint sets
    /// notification bits of its client whose calls carry the 16-byte `badge` (a live app
    /// holding a call capability to that endpoint); `ENOENT` if there is none.
    NotifyClient = 17,
}

impl Syscall {
    /// How many numbers there are: they run from 0 to `COUNT - 1`.
    pub const COUNT: u32 = 18;

    pub fn from_u32(number: u32) -> Option<Syscall> {
        Some(match number {
            0 => Syscall::Exit,
            1 => Syscall::Yield,
            2 => Syscall::Sleep,
            3 => Syscall::Log,
            4 => Syscall::Info,
            5 => Syscall::Lookup,
            6 => Syscall::Call,
            7 => Syscall::Recv,
            8 => Syscall::Reply,
            9 => Syscall::Notify,
            10 => Syscall::Wait,
            11 => Syscall::MapDevice,
            12 => Syscall::IrqAck,
            13 => Syscall::GpioSet,
            14 => Syscall::MonitorCall,
            15 => Syscall::ReplyRecv,
            16 => Syscall::DmaPool,
            17 => Syscall::NotifyClient,
            _ => return None,
        })
    }
}

/// Errors a syscall returns, as negative status values in r0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Error {
    /// A malformed argument.
    Invalid = -1,
    /// A pointer or length outside the caller's own memory, or without the needed access.
    Fault = -2,
    /// No capability for this.
    Access = -3,
    /// Out of memory (the caller's quota or the system's).
    NoMemory = -4,
    /// No such syscall.
    NoSys = -5,
    /// The object is busy.
    Busy = -6,
    /// The other side is gone (a dead server, or a caller that died before the reply).
    Pipe = -7,
    /// Nothing stored under that key.
    NotFound = -8,
    /// The app's storage quota would be exceeded; nothing was changed.
    NoSpace = -9,
    /// The security monitor refused the request (an update bundle that fails a check).
    Refused = -10,
    /// It is already there (an update the device already runs).
    Exists = -11,
    /// The secure world could not do it (a flash error, no entropy).
    Io = -12,
    /// The peer refused the connection (a reset in answer to the connect).
    ConnectionRefused = -13,
    /// No answer in time (connect, read or write past its deadline).
    TimedOut = -14,
    /// The connection was reset (by the peer, or the network driver restarted).
    ConnectionReset = -15,
    /// Not ready yet: no data to read or no room to write. The blocking calls wait instead.
    WouldBlock = -16,
    /// The socket is not connected (closed, or never connected).
    NotConnected = -17,
}

impl Error {
    pub fn from_i32(value: i32) -> Option<Error> {
        Some(match value {
            -1 => Error::Invalid,
            -2 => Error::Fault,
            -3 => Error::Access,
            -4 => Error::NoMemory,
            -5 => Error::NoSys,
            -6 => Error::Busy,
            -7 => Error::Pipe,
            -8 => Error::NotFound,
            -9 => Error::NoSpace,
            -10 => Error::Refused,
            -11 => Error::Exists,
            -12 => Error::Io,
            -13 => Error::ConnectionRefused,
            -14 => Error::TimedOut,
            -15 => Error::ConnectionReset,
            -16 => Error::WouldBlock,
            -17 => Error::NotConnected,
            _ => return None,
        })
    }

    /// The conventional name (`EFAULT`, …), as logs and docs use it.
    pub fn name(self) -> &'static str {
        match self {
            Error::Invalid => "EINVAL",
            Error::Fault => "EFAULT",
            Error::Access => "EACCES",
            Error::NoMemory => "ENOMEM",
            Error::NoSys => "ENOSYS",
            Error::Busy => "EBUSY",
            Error::Pipe => "EPIPE",
            Error::NotFound => "ENOENT",
            Error::NoSpace => "ENOSPC",
            Error::Refused => "EPERM",
            Error::Exists => "EEXIST",
            Error::Io => "EIO",
            Error::ConnectionRefused => "ECONNREFUSED",
            Error::TimedOut => "ETIMEDOUT",
            Error::ConnectionReset => "ECONNRESET",
            Error::WouldBlock => "EAGAIN",
            Error::NotConnected => "ENOTCONN",
        }
    }

    /// A syscall's result from its status (r0) and value (r1): status 0 is success with
    /// the value, anything else the error it names (`EIO` for a code no kernel returns).
    pub fn result(status: u32, value: u32) -> Result<u32, Error> {
        match status {
            0 => Ok(value),
            _ => Err(Error::from_i32(status as i32).unwrap_or(Error::Io)),
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `lookup` looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum HandleKind {
    /// An endpoint named in the manifest's `call`.
    Call = 0,
    /// The endpoint named in `serve`.
    Serve = 1,
    /// A device named in `devices`.
    Device = 2,
    /// The GPIO pins in `gpio` (name `"gpio"`).
    Gpio = 3,
    /// The monitor services in `monitor` (name `"monitor"`).
    Monitor = 4,
}

/// Bytes as lowercase hex, for logs: `log!("{}", Hex(&key))`.
pub struct Hex<'a>(pub &'a [u8]);

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The longest IPC message: an Ethernet frame and a small header fit, so a network driver
/// hands a frame over in one call. The kernel copies a message at most once, user to user.
pub const MESSAGE_MAX: usize = 2048;
/// The length of a badge: the caller's component id.
pub const BADGE_LEN: usize = 16;
/// IPC messages up to this long travel in registers r2–r5, never through memory.
pub const REGISTER_MESSAGE: usize = 16;

/// The lengths word (r1) of an IPC syscall: the bytes sent (low half) and the room for what
/// comes back (high half), each capped at what 16 bits hold (the kernel refuses a message
/// longer than [`MESSAGE_MAX`] and never uses more room than that).
pub fn lengths(send: usize, room: usize) -> u32 {
    (send.min(0xffff) as u32) | (room.min(0xffff) as u32) << 16
}

/// The two halves of a lengths word; the room capped at [`MESSAGE_MAX`].
pub fn split_lengths(lengths: u32) -> (u32, u32) {
    (lengths & 0xffff, (lengths >> 16).min(MESSAGE_MAX as u32))
}

/// The first `len` bytes (at most 16) of a message as the four words of r2–r5, the rest zero.
#[inline(always)]
pub fn message_words(message: &[u8]) -> [u32; 4] {
    if let Ok(full) = <[u8; REGISTER_MESSAGE]>::try_from(message) {
        return words_of(full); // the common full-size case, without a variable-length copy
    }
    let mut bytes = [0u8; REGISTER_MESSAGE];
    let len = message.len().min(REGISTER_MESSAGE);
    bytes[..len].copy_from_slice(&message[..len]);
    words_of(bytes)
}

/// The 16 bytes of four registers, in memory order.
#[inline(always)]
pub fn bytes_of(words: [u32; 4]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    bytes
}

/// Four registers holding 16 bytes, in memory order.
#[inline(always)]
pub fn words_of(bytes: [u8; 16]) -> [u32; 4] {
    core::array::from_fn(|i| {
        u32::from_ne_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]])
    })
}

/// `words` with every byte from `len` on cleared: a receiver sees exactly the bytes sent.
#[inline(always)]
pub fn keep_first(mut words: [u32; 4], len: usize) -> [u32; 4] {
    if len >= REGISTER_MESSAGE {
        return words; // the common full-size message: nothing to clear
    }
    for (i, word) in words.iter_mut().enumerate() {
        let keep = len.saturating_sub(4 * i);
        if keep < 4 {
            // The first `keep` bytes of the word in memory order.
            let bits = 8 * keep as u32;
            *word &= if cfg!(target_endian = "little") { (1u32 << bits) - 1 } else { !(u32::MAX >> bits) };
        }
    }
    words
}
/// A device's interrupt arrives as notification bit `1 << handle`.
pub fn irq_bit(device_handle: u32) -> u32 {
    1 << device_handle
}

/// The longest line `log` prints; longer input is refused with [`Error::Invalid`].
pub const LOG_MAX: usize = 240;
/// The longest app name.
pub const NAME_MAX: usize = 16;

/// A driver's DMA pool: physically contiguous, mapped at `virt` in the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DmaPool {
    pub virt: u32,
    pub phys: u32,
    pub len: u32,
}

/// What `info` tells an app about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Info {
    /// The app's process id (its slot in the kernel's process table).
    pub pid: u32,
    /// Milliseconds since the kernel started scheduling.
    pub uptime_ms: u32,
    /// The syscalls the app made since it started, this `info` included.
    pub syscalls: u32,
    /// The app's name from its manifest, NUL-padded.
    pub name: [u8; NAME_MAX],
}

impl Info {
    pub fn name(&self) -> &str {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_MAX);
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_says_error_and_the_value_is_never_one() {
        assert_eq!(Error::result(0, 5), Ok(5));
        assert_eq!(Error::result(-2i32 as u32, 0), Err(Error::Fault));
        assert_eq!(Error::result(-5i32 as u32, 0), Err(Error::NoSys));
        // A value with every bit set (a full notification mask) is a value, not EINVAL.
        assert_eq!(Error::result(0, Error::Invalid as i32 as u32), Ok(0xffff_ffff));
        assert_eq!(Error::result(0x1234, 0), Err(Error::Io));
        assert_eq!(Syscall::from_u32(4), Some(Syscall::Info));
        assert_eq!(Syscall::from_u32(999), None);
    }

    #[test]
    fn the_numbers_are_exactly_those_below_count() {
        // The kernel's entry code routes by a table of `COUNT` entries.
        for number in 0..Syscall::COUNT + 8 {
            let syscall = Syscall::from_u32(number);
            assert_eq!(syscall.is_some(), number < Syscall::COUNT, "{number}");
            assert!(syscall.is_none_or(|s| s as u32 == number), "{number}");
        }
    }

    #[test]
    fn lengths_split_back_with_the_room_capped() {
        assert_eq!(split_lengths(lengths(16, 64)), (16, 64));
        assert_eq!(split_lengths(lengths(3, 100_000)), (3, MESSAGE_MAX as u32));
        assert_eq!(split_lengths(lengths(100_000, 0)), (0xffff, 0), "too long: the kernel refuses it");
    }

    #[test]
    fn a_message_in_registers_keeps_exactly_its_bytes() {
        let message: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
        let words = message_words(&message);
        assert_eq!(bytes_of(words), message);
        for len in 0..=16 {
            let kept = bytes_of(keep_first(words, len));
            assert_eq!(&kept[..len], &message[..len]);
            assert!(kept[len..].iter().all(|&b| b == 0), "len {len}: {kept:?}");
            assert_eq!(bytes_of(message_words(&message[..len])), kept, "a short message is zero-padded");
        }
    }
}
