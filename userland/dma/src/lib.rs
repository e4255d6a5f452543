//! A driver's DMA pool: the one physically contiguous region the device may be told about.
//!
//! The kernel grants the driver a pool (`dma-kib`) and tells it the pool's virtual and
//! physical base. Queue memory is carved from its front a page at a time
//! ([`Pool::alloc_pages`], never returned: the queues live as long as the driver). Buffers
//! already inside the pool translate directly ([`Pool::translate`]); any other buffer (the
//! virtio crate passes stack buffers too) is bounced through one of the fixed slots at the
//! pool's end ([`Pool::bounce`], [`Pool::unbounce`]). Every address the device is given
//! lies inside the pool.

#![no_std]
#![forbid(unsafe_code)]

/// Size of a page and of a bounce slot.
pub const PAGE: usize = 4096;
pub const SLOT: usize = 2048;
/// The most bounce slots (a bit set).
pub const MAX_SLOTS: usize = 32;

#[derive(Debug)]
pub struct Pool {
    virt: usize,
    phys: u64,
    len: usize,
    /// The first byte not yet handed out by `alloc_pages`.
    next: usize,
    /// Where the bounce slots start, and how many there are.
    slots_at: usize,
    slots: usize,
    used: u32,
}

/// A bounced buffer: which slot, and the slot's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounce {
    pub slot: usize,
    pub phys: u64,
    pub virt: usize,
}

impl Pool {
    /// A pool of `len` bytes at `virt`/`phys`, with `slots` bounce slots at its end.
    pub fn new(virt: usize, phys: u64, len: usize, slots: usize) -> Option<Pool> {
        let slots_len = slots.checked_mul(SLOT)?;
        if slots > MAX_SLOTS
            || slots_len > len
            || !virt.is_multiple_of(PAGE)
            || !phys.is_multiple_of(PAGE as u64)
        {
            return None;
        }
        let slots_at = (len - slots_len) / PAGE * PAGE;
        Some(Pool { virt, phys, len, next: 0, slots_at, slots, used: 0 })
    }

    /// `pages` zeroed pages for the device's queues (the kernel zeroed the pool): physical
    /// and virtual address. `None` when the pool is used up.
    pub fn alloc_pages(&mut self, pages: usize) -> Option<(u64, usize)> {
        let len = pages.checked_mul(PAGE)?;
        let end = self.next.checked_add(len)?;
        if pages == 0 || end > self.slots_at {
            return None;
        }
        let at = self.next;
        self.next = end;
        Some((self.phys + at as u64, self.virt + at))
    }

    /// The physical address of `[virt, virt + len)` if it lies wholly inside the pool.
    pub fn translate(&self, virt: usize, len: usize) -> Option<u64> {
        let offset = virt.checked_sub(self.virt)?;
        (offset.checked_add(len)? <= self.len).then(|| self.phys + offset as u64)
    }

    /// Takes a bounce slot for a buffer of `len` bytes.
    pub fn bounce(&mut self, len: usize) -> Option<Bounce> {
        if len > SLOT {
            return None;
        }
        let slot = (0..self.slots).find(|s| self.used & (1 << s) == 0)?;
        self.used |= 1 << slot;
        let at = self.slots_at + slot * SLOT;
        Some(Bounce { slot, phys: self.phys + at as u64, virt: self.virt + at })
    }

    /// Gives back the slot at physical address `phys`; returns it, or `None` if `phys` is
    /// not a slot in use.
    pub fn unbounce(&mut self, phys: u64) -> Option<Bounce> {
        let offset = phys.checked_sub(self.phys + self.slots_at as u64)? as usize;
        let slot = offset / SLOT;
        if !offset.is_multiple_of(SLOT) || slot >= self.slots || self.used & (1 << slot) == 0 {
            return None;
        }
        self.used &= !(1 << slot);
        Some(Bounce { slot, phys, virt: self.virt + self.slots_at + offset })
    }

    /// Bounce slots in use.
    pub fn slots_in_use(&self) -> u32 {
        self.used.count_ones()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRT: usize = 0x1800_0000;
    const PHYS: u64 = 0x4800_0000;

    fn pool() -> Pool {
        Pool::new(VIRT, PHYS, 16 * PAGE, 4).unwrap()
    }

    #[test]
    fn pages_come_from_the_front_until_the_slots() {
        let mut p = pool();
        assert_eq!(p.alloc_pages(2), Some((PHYS, VIRT)));
        assert_eq!(p.alloc_pages(1), Some((PHYS + 2 * PAGE as u64, VIRT + 2 * PAGE)));
        // 4 slots of 2 KiB take the last 2 pages: 11 pages remain before them.
        assert_eq!(p.alloc_pages(12), None);
        assert!(p.alloc_pages(11).is_some());
        assert_eq!(p.alloc_pages(1), None);
        assert_eq!(p.alloc_pages(0), None);
        assert_eq!(p.alloc_pages(usize::MAX), None, "no overflow");
    }

    #[test]
    fn only_buffers_inside_the_pool_translate() {
        let p = pool();
        assert_eq!(p.translate(VIRT + 100, 50), Some(PHYS + 100));
        assert_eq!(p.translate(VIRT + 16 * PAGE - 10, 10), Some(PHYS + 16 * PAGE as u64 - 10));
        assert_eq!(p.translate(VIRT + 16 * PAGE - 10, 11), None, "runs past the end");
        assert_eq!(p.translate(VIRT - 1, 4), None, "starts before");
        assert_eq!(p.translate(usize::MAX, 2), None, "wraps");
    }

    #[test]
    fn bounce_slots_are_handed_out_once_and_returned() {
        let mut p = pool();
        let slots: [Bounce; 4] = core::array::from_fn(|_| p.bounce(100).unwrap());
        assert_eq!(p.bounce(1), None, "all in use");
        assert_eq!(slots[1].phys, slots[0].phys + SLOT as u64);
        assert_eq!(p.translate(slots[3].virt, SLOT), Some(slots[3].phys), "slots lie in the pool");
        assert_eq!(p.unbounce(slots[2].phys), Some(slots[2]));
        assert_eq!(p.unbounce(slots[2].phys), None, "returned twice");
        assert_eq!(p.unbounce(slots[0].phys + 1), None, "not a slot start");
        assert_eq!(p.unbounce(PHYS), None, "queue memory is not a slot");
        assert_eq!(p.bounce(10).map(|b| b.slot), Some(2), "the freed slot is reused");
        assert_eq!(p.bounce(SLOT + 1), None, "too large for a slot");
        assert_eq!(p.slots_in_use(), 4);
    }

    #[test]
    fn bad_geometry_is_refused() {
        assert!(Pool::new(VIRT + 1, PHYS, PAGE, 1).is_none());
        assert!(Pool::new(VIRT, PHYS, PAGE, 3).is_none(), "slots larger than the pool");
        assert!(Pool::new(VIRT, PHYS, 64 * PAGE, MAX_SLOTS + 1).is_none());
    }
}
