//! Entropy from QEMU's virtio entropy device (`-device virtio-rng-device`), the legacy
//! virtio-mmio interface, polled: one 32-byte read to seed the DRBG. The read is started at
//! boot and collected when the first random bytes are asked for, so boot never waits for
//! the host (and its length in instructions does not depend on how fast the host answers).
//!
//! QEMU's virtio devices can only reach non-secure memory, so the virtqueue and buffer sit
//! in a non-secure page the board reserves for the monitor ([`board::ENTROPY_QUEUE`]); the
//! DRBG mixes what arrives with the CDI, so the normal world alone cannot choose its seed.

use core::ptr::{read_volatile, write_volatile};
use septa_targets::board;

const MAGIC: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
const GUEST_PAGE_SIZE: usize = 0x028;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM_MAX: usize = 0x034;
const QUEUE_NUM: usize = 0x038;
const QUEUE_ALIGN: usize = 0x03c;
const QUEUE_PFN: usize = 0x040;
const QUEUE_NOTIFY: usize = 0x050;
const STATUS: usize = 0x070;
const ENTROPY_DEVICE: u32 = 4;
const QUEUE_SIZE: u32 = 4;
const PAGE: usize = 4096;

fn read(base: usize, offset: usize) -> u32 {
    // SAFETY: `base` is one of the board's virtio-mmio transports; `offset` one of its
    // registers.
    unsafe { read_volatile((base + offset) as *const u32) }
}

fn write(base: usize, offset: usize, value: u32) {
    // SAFETY: as in `read`.
    unsafe { write_volatile((base + offset) as *mut u32, value) }
}

/// A 32-byte read the entropy device was asked for.
pub struct Pending {
    base: usize,
}

/// Asks the virtio entropy device, if there is one, for 32 bytes.
pub fn request() -> Option<Pending> {
    let base = (board::VIRTIO_MMIO.base..board::VIRTIO_MMIO.end()).step_by(0x200).find(|&b| {
        read(b, MAGIC) == 0x7472_6976 && read(b, DEVICE_ID) == ENTROPY_DEVICE && read(b, VERSION) == 1
    })?;
    let queue = board::ENTROPY_QUEUE.base;
    let buffer = queue + 2 * PAGE;
    // SAFETY: ENTROPY_QUEUE is three non-secure pages the board reserves for this driver;
    // nothing else in the secure world uses them and the kernel leaves them out of its frames.
    unsafe { core::ptr::write_bytes(queue as *mut u8, 0, 3 * PAGE) };
    write(base, STATUS, 0);
    write(base, STATUS, 1 | 2); // acknowledge, driver
    write(base, GUEST_PAGE_SIZE, PAGE as u32);
    write(base, QUEUE_SEL, 0);
    if read(base, QUEUE_NUM_MAX) < QUEUE_SIZE {
        return None;
    }
    write(base, QUEUE_NUM, QUEUE_SIZE);
    write(base, QUEUE_ALIGN, PAGE as u32);
    write(base, QUEUE_PFN, (queue / PAGE) as u32);
    write(base, STATUS, 1 | 2 | 4); // driver ok

    // Legacy split virtqueue: descriptors, then the available ring; the used ring on the
    // next page (QueueAlign), where `collect` looks.
    let available = queue + 16 * QUEUE_SIZE as usize;
    // SAFETY: all addresses lie in the zeroed queue pages laid out as the virtio 1.0 legacy
    // interface describes; the device writes only the buffer and the used ring.
    unsafe {
        write_volatile(queue as *mut u64, buffer as u64);
        write_volatile((queue + 8) as *mut u32, 32);
        write_volatile((queue + 12) as *mut u16, 2); // device writes
        write_volatile((available + 4) as *mut u16, 0); // ring[0] = descriptor 0
        core::arch::asm!("dsb");
        write_volatile((available + 2) as *mut u16, 1); // idx
        core::arch::asm!("dsb");
    }
    write(base, QUEUE_NOTIFY, 0);
    Some(Pending { base })
}

/// Waits for the device's answer to `pending`: the 32 bytes, or `None` if it gave none.
pub fn collect(pending: Pending) -> Option<[u8; 32]> {
    let base = pending.base;
    let used = board::ENTROPY_QUEUE.base + PAGE;
    let buffer = board::ENTROPY_QUEUE.base + 2 * PAGE;
    // SAFETY: the queue pages `request` set up; polling the used ring's index.
    let done = (0..10_000_000).any(|_| unsafe { read_volatile((used + 2) as *const u16) } == 1);
    // SAFETY: as above; the used element's length says how much was written.
    let len = unsafe { read_volatile((used + 8) as *const u32) };
    write(base, STATUS, 0);
    if !done || len < 32 {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        // SAFETY: the device wrote `len` ≥ 32 bytes into the buffer page.
        *byte = unsafe { read_volatile((buffer + i) as *const u8) };
    }
    Some(seed)
}
