//! Entropy from the BCM2835 hardware random number generator (the dev kit's `entropy`):
//! started at boot, read when the first random bytes are needed. The RNG is reachable from
//! both worlds on this board; the DRBG mixes its output with the CDI, so the normal world
//! alone cannot choose the seed.

use core::ptr::{read_volatile, write_volatile};
use septa_targets::board;

const CTRL: usize = 0x0;
const STATUS: usize = 0x4;
const DATA: usize = 0x8;
/// Words generated and thrown away after enabling, before the first word is read.
const WARM_UP: u32 = 0x40000;

/// The RNG, started.
pub struct Pending;

/// Starts the generator.
pub fn request() -> Option<Pending> {
    // SAFETY: RNG is the board's BCM2835 RNG; STATUS sets the warm-up count, CTRL enables it.
    unsafe {
        write_volatile((board::RNG + STATUS) as *mut u32, WARM_UP);
        write_volatile((board::RNG + CTRL) as *mut u32, 1);
    }
    Some(Pending)
}

/// 32 bytes from the generator (waiting for each word).
pub fn collect(_: Pending) -> Option<[u8; 32]> {
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_exact_mut(4) {
        // SAFETY: as in `request`; STATUS bits 31..24 count the words ready in DATA.
        let word = unsafe {
            while read_volatile((board::RNG + STATUS) as *const u32) >> 24 == 0 {}
            read_volatile((board::RNG + DATA) as *const u32)
        };
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Some(seed)
}
