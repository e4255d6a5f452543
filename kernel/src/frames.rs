//! Physical frames: the buddy allocator over the RAM nothing else uses, and the kernel heap.
//!
//! Frames are 4 KiB; a request for `n` frames returns a block aligned to `n` rounded up to a
//! power of two (which the 8 KiB table blocks rely on). RAM is mapped one-to-one, so a
//! frame's physical address is also where the kernel reads and writes it.
//!
//! No frame carries one owner's bytes to the next: [`alloc`] hands out frames zeroed, so
//! whatever a process gets mapped (code, data, `.bss`, stack, tables) holds only zeros
//! until the kernel copies the app's file bytes in, and [`free`] scrubs frames before they
//! go back, so an ended app's data does not stay in free RAM either.

use buddy_system_allocator::FrameAllocator;
use linked_list_allocator::LockedHeap;
use septa_targets::board;

const PAGE: usize = 4096;
const HEAP_SIZE: usize = 256 * 1024;

static FRAMES: spin::Mutex<FrameAllocator<16>> = spin::Mutex::new(FrameAllocator::new());

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

static mut HEAP_AREA: [u8; HEAP_SIZE] = [0; HEAP_SIZE];

/// Hands the allocator the board's frame region (RAM outside the device tree, the kernel,
/// the monitor's shared pages, the update inbox and the last page), and gives the heap its
/// area.
pub fn init() {
    // SAFETY: HEAP_AREA is used by nothing but the heap, which gets it once, here, for the
    // lifetime of the kernel; no reference to the static is created.
    unsafe { HEAP.lock().init((&raw mut HEAP_AREA).cast(), HEAP_SIZE) };
    // The frame allocator keeps its free lists on the heap.
    let start = board::FRAMES.base / PAGE;
    let end = board::FRAMES.end() / PAGE;
    FRAMES.lock().add_frame(start, end);
}

/// Bytes of the kernel heap in use (benchmark builds report it).
#[cfg(feature = "bench")]
pub fn heap_used() -> usize {
    HEAP.lock().used()
}

/// Allocates `count` contiguous zeroed frames; returns the physical address of the first.
pub fn alloc(count: usize) -> Option<u32> {
    let address = (FRAMES.lock().alloc(count)? * PAGE) as u32;
    zero(address, count);
    Some(address)
}

/// Scrubs and returns frames obtained from [`alloc`], which nothing maps any more.
pub fn free(address: u32, count: usize) {
    zero(address, count);
    FRAMES.lock().dealloc(address as usize / PAGE, count);
}

fn zero(address: u32, count: usize) {
    // SAFETY: the frames lie in the allocator's region of one-to-one mapped RAM and belong
    // to the caller alone: just allocated, or being freed after every mapping of them went.
    unsafe { core::ptr::write_bytes(address as *mut u8, 0, count * PAGE) };
}
