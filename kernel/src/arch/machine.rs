//! The ARMv7 board as the kernel's [`Machine`]: each method is one call into the shell
//! (timer, interrupt and GPIO controllers, MMU, frames, the SMC). Physical memory is mapped
//! one-to-one, so a physical address is where the kernel reads and writes it; every access
//! the library asks for is checked to lie in the frame region (where every app page, table
//! and DMA pool comes from), so a kernel bug there cannot reach the kernel's own memory.

use super::{GPIO, GpioController, IRQS, InterruptController, copy, mmu, timer};
use crate::console::console;
use crate::frames;
use core::sync::atomic::{AtomicUsize, Ordering};
use septa_abi::slot::{self, Slot};
use septa_kernel::machine::{Machine, SharedPage};
use septa_kernel::mm::pagetable::UserTables;
use septa_targets::board;

pub struct Armv7;

/// The slot this boot runs, as the monitor reported it at boot (0 = A, 1 = B).
pub static BOOTED_SLOT: AtomicUsize = AtomicUsize::new(0);

/// Panics (a kernel bug: the library passed an address it did not get from a page table or
/// the frame allocator) unless `[phys, phys + len)` lies in the frame region.
#[inline(always)]
fn frame_range(phys: u32, len: usize) -> usize {
    let (start, end) = (phys as usize, phys as usize + len);
    let inside = start >= board::FRAMES.base && end <= board::FRAMES.end();
    assert!(inside || len == 0, "physical access outside the frames");
    start
}

impl Machine for Armv7 {
    fn now(&self) -> u64 {
        timer::now()
    }

    fn frequency(&self) -> u64 {
        timer::frequency()
    }

    fn arm_timer(&mut self) {
        timer::arm();
    }

    fn enable_irq(&mut self, irq: u32) {
        IRQS.enable(irq);
    }

    fn disable_irq(&mut self, irq: u32) {
        IRQS.disable(irq);
    }

    fn acknowledge_irq(&mut self) -> Option<(u32, u32)> {
        IRQS.acknowledge()
    }

    fn end_irq(&mut self, token: u32) {
        IRQS.end(token);
    }

    fn gpio_set(&mut self, pins: u32, values: u32) {
        GPIO.set(pins, values);
    }

    fn switch_address_space(&mut self, tables: Option<u32>, asid: u8) {
        mmu::switch_address_space(tables.unwrap_or_else(mmu::no_process_tables), asid);
    }

    fn flush_asid(&mut self, asid: u8) {
        mmu::flush_asid(asid);
    }

    fn sync_instructions(&mut self, phys: u32, len: u32) {
        mmu::sync_instructions(frame_range(phys, len as usize), len as usize);
    }

    fn alloc_frames(&mut self, count: usize) -> Option<u32> {
        frames::alloc(count)
    }

    fn free_frames(&mut self, phys: u32, count: usize) {
        frames::free(phys, count);
    }

    fn tables(&self, phys: u32) -> &UserTables {
        let at = frame_range(phys, size_of::<UserTables>());
        assert!(at.is_multiple_of(align_of::<UserTables>()));
        // SAFETY: an aligned block in the frame region, one-to-one mapped; the library names
        // only blocks it allocated for tables. The borrow of `self` keeps a `&mut` from
        // `tables_mut` from existing at the same time.
        unsafe { &*(at as *const UserTables) }
    }

    fn tables_mut(&mut self, phys: u32) -> &mut UserTables {
        let at = frame_range(phys, size_of::<UserTables>());
        assert!(at.is_multiple_of(align_of::<UserTables>()));
        // SAFETY: as in `tables`; `&mut self` makes this the only reference to any tables.
        unsafe { &mut *(at as *mut UserTables) }
    }

    fn read_phys(&self, phys: u32, out: &mut [u8]) {
        let at = frame_range(phys, out.len());
        // SAFETY: the range lies in one-to-one mapped frames (checked above), which no
        // Rust reference covers (so `out` cannot overlap it): they are only reached through
        // these methods.
        unsafe { copy::copy(at as *const u8, out.as_mut_ptr(), out.len()) };
    }

    fn write_phys(&mut self, phys: u32, bytes: &[u8]) {
        let at = frame_range(phys, bytes.len());
        // SAFETY: as in `read_phys`.
        unsafe { copy::copy(bytes.as_ptr(), at as *mut u8, bytes.len()) };
    }

    #[inline(always)] // on the fast path of IPC messages in memory
    fn copy_phys(&mut self, from: u32, to: u32, len: u32) {
        let (from, to) = (frame_range(from, len as usize), frame_range(to, len as usize));
        if from.abs_diff(to) < len as usize {
            // SAFETY: both ranges lie in one-to-one mapped frames (checked above); `ptr::copy`
            // allows them to overlap (frames of different processes never do).
            unsafe { core::ptr::copy(from as *const u8, to as *mut u8, len as usize) };
            return;
        }
        // SAFETY: both ranges lie in one-to-one mapped frames (checked above) and do not
        // overlap (checked just now).
        unsafe { copy::copy(from as *const u8, to as *mut u8, len as usize) };
    }

    fn smc(&mut self, function: u32, args: [u32; 3], _page: &mut SharedPage) -> [u32; 4] {
        crate::monitor::call(function, args)
    }

    fn slot(&self) -> Result<Slot<'static>, slot::Error> {
        let region = board::SLOTS[BOOTED_SLOT.load(Ordering::Relaxed) % board::SLOTS.len()];
        let window = mmu::device_va(region.base);
        // SAFETY: the slot lies in flash 1, which `mmu::enable` mapped read-only at `window`
        // for the kernel's lifetime; the monitor writes only the other slot, staging,
        // storage and reports there, and returns the flash to read mode before the kernel
        // runs again.
        let flash = unsafe { core::slice::from_raw_parts(window as *const u8, region.size) };
        Slot::parse(flash)
    }

    fn print(&self, args: core::fmt::Arguments<'_>) {
        let _ = core::fmt::Write::write_fmt(&mut console(), args);
    }
}
