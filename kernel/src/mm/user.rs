//! Memory named by an app: pointers and lengths from syscall arguments.
//!
//! An app's pointer is only a claim: "I may read (or write) these bytes". [`UserRange::new`]
//! rejects claims that wrap around or leave the user half of the address space; [`check`]
//! then asks the app's own page table about every page the range touches and refuses the
//! whole range if any page is missing or lacks the access — before the kernel touches a
//! byte, so a refused call has no partial effect. Only then does the kernel copy, page by
//! page, through [`pages`].

use super::pagetable::USER_END;

/// The page size the checks work in.
const PAGE: u32 = 4096;

/// The access a syscall needs to a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A claimed range is not the caller's to use this way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

/// What the app's page table says about one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageAccess {
    /// Physical address of the page (page aligned).
    pub phys: u32,
    pub writable: bool,
}

/// A range of user addresses, known not to wrap and to lie below [`USER_END`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRange {
    addr: u32,
    len: u32,
}

impl UserRange {
    pub fn new(addr: u32, len: u32) -> Result<UserRange, Fault> {
        let end = addr.checked_add(len).ok_or(Fault)?;
        if end > USER_END {
            return Err(Fault);
        }
        Ok(UserRange { addr, len })
    }

    pub fn addr(&self) -> u32 {
        self.addr
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where a user range of at most a page is in physical memory: `(address, length)` pieces,
/// the second empty unless the range crosses a page boundary.
pub type Pieces = [(u32, u32); 2];

/// Checks that every page of `range` (at most one page long) is mapped with `access`, using
/// `lookup` (the app's page table: the page's physical address and writability, or `None`
/// if unmapped or not ordinary memory), and says where its bytes are: two physical pieces
/// `(address, length)`, the second empty unless the range crosses a page boundary. One
/// page-table lookup per page, so a copy needs no second pass.
#[inline(always)]
pub fn locate(
    range: UserRange,
    access: Access,
    lookup: impl Fn(u32) -> Option<PageAccess>,
) -> Result<Pieces, Fault> {
    if range.len > PAGE {
        return Err(Fault);
    }
    let mut pieces = [(0, 0); 2];
    for (piece, (va, len)) in pieces.iter_mut().zip(pages(range)) {
        let page = lookup(va & !(PAGE - 1)).ok_or(Fault)?;
        if access == Access::Write && !page.writable {
            return Err(Fault);
        }
        *piece = (page.phys + (va & (PAGE - 1)), len);
    }
    Ok(pieces)
}

/// How to copy the first `len` bytes of the physical pieces `from` into the pieces `to` (both
/// from [`locate`]): at most three `(from, to, length)` runs, since each side breaks at most
/// once. `None` if either side holds fewer than `len` bytes — the copy must not start then.
pub fn copy_plan(from: Pieces, to: Pieces, len: u32) -> Option<impl Iterator<Item = (u32, u32, u32)>> {
    let total = |pieces: Pieces| pieces[0].1 as u64 + pieces[1].1 as u64;
    if total(from) < len as u64 || total(to) < len as u64 {
        return None;
    }
    let mut runs = [(0, 0, 0); 3];
    let mut count = 0;
    let (mut sources, mut targets) =
        (from.into_iter().filter(|p| p.1 > 0), to.into_iter().filter(|p| p.1 > 0));
    let (mut source, mut target) = ((0, 0), (0, 0));
    let mut left = len;
    while left > 0 {
        // Both sides hold at least `left` more bytes (checked above), so neither runs dry.
        if source.1 == 0 {
            source = sources.next()?;
        }
        if target.1 == 0 {
            target = targets.next()?;
        }
        let n = left.min(source.1).min(target.1);
        runs[count] = (source.0, target.0, n);
        count += 1;
        (source, target, left) = ((source.0 + n, source.1 - n), (target.0 + n, target.1 - n), left - n);
    }
    Some(runs.into_iter().take(count))
}

/// The range cut at page boundaries: `(virtual address, length)` pieces, in order.
pub fn pages(range: UserRange) -> impl Iterator<Item = (u32, u32)> {
    let end = range.addr + range.len; // cannot overflow: checked in `UserRange::new`
    let mut at = range.addr;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let page_end = (at & !(PAGE - 1)).saturating_add(PAGE).min(end);
        let piece = (at, page_end - at);
        at = page_end;
        Some(piece)
    })
}

#[cfg(test)]
mod copy_tests {
    use super::*;

    #[test]
    fn a_copy_longer_than_its_pieces_is_refused_not_looped_on() {
        // Before the fix, `copy_into` spun forever (interrupts masked) on this.
        assert!(copy_plan([(0x1000, 8), (0, 0)], [(0x9000, 16), (0, 0)], 16).is_none());
        assert!(copy_plan([(0x1000, 16), (0, 0)], [(0x9000, 8), (0, 0)], 16).is_none());
    }

    #[test]
    fn copies_split_where_either_side_crosses_a_page() {
        let runs: [_; 3] = {
            let mut it = copy_plan([(0x1ffe, 2), (0x5000, 6)], [(0x9000, 5), (0xa000, 3)], 8).unwrap();
            core::array::from_fn(|_| it.next().unwrap())
        };
        assert_eq!(runs, [(0x1ffe, 0x9000, 2), (0x5000, 0x9002, 3), (0x5003, 0xa000, 3)]);
        let mut short = copy_plan([(0x1000, 8), (0, 0)], [(0x9000, 8), (0, 0)], 4).unwrap();
        assert_eq!(short.next(), Some((0x1000, 0x9000, 4)));
        assert_eq!(short.next(), None);
        assert_eq!(copy_plan([(0, 0); 2], [(0, 0); 2], 0).unwrap().count(), 0);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// Pages 0x10000 (read-only) and 0x11000 (writable) are mapped; nothing else.
    fn lookup(va: u32) -> Option<PageAccess> {
        match va {
            0x10000 => Some(PageAccess { phys: 0x4100_0000, writable: false }),
            0x11000 => Some(PageAccess { phys: 0x4200_0000, writable: true }),
            _ => None,
        }
    }

    fn claim(addr: u32, len: u32, access: Access) -> Result<(), Fault> {
        locate(UserRange::new(addr, len)?, access, lookup).map(drop)
    }

    #[test]
    fn mapped_ranges_pass_with_the_right_access() {
        assert_eq!(claim(0x10010, 100, Access::Read), Ok(()));
        assert_eq!(claim(0x10ff0, 0x20, Access::Read), Ok(()), "straddles two readable pages");
        assert_eq!(claim(0x11000, 0x1000, Access::Write), Ok(()));
    }

    #[test]
    fn a_claim_keeps_exactly_the_pieces_located_for_it() {
        use crate::process::Claim;
        for (addr, len) in
            [(0x10010, 16), (0x10ff8, 16), (0x10ff8, 8), (0x11000, 0), (0x10000, 0x1000), (0x10001, 0x1000)]
        {
            let pieces = locate(UserRange::new(addr, len).unwrap(), Access::Read, |va| {
                lookup(va).or(Some(PageAccess { phys: 0x4300_0000, writable: true }))
            })
            .unwrap();
            let claim = Claim::located(addr, len, pieces);
            assert_eq!(claim.pieces(), pieces, "{addr:#x} + {len}");
            assert_eq!(claim.in_one_page(), (pieces[1].1 == 0).then_some(pieces[0].0), "{addr:#x} + {len}");
        }
    }

    #[test]
    fn read_only_page_cannot_be_a_write_target() {
        assert_eq!(claim(0x10000, 4, Access::Write), Err(Fault));
        assert_eq!(claim(0x10ff0, 0x20, Access::Write), Err(Fault), "straddles RO and RW");
    }

    #[test]
    fn unmapped_kernel_wrapping_and_straddling_ranges_fault() {
        assert_eq!(claim(0x12000, 1, Access::Read), Err(Fault), "unmapped");
        assert_eq!(claim(0x11ff0, 0x20, Access::Read), Err(Fault), "runs into an unmapped page");
        assert_eq!(claim(0x4010_0000, 4, Access::Read), Err(Fault), "kernel address");
        assert_eq!(claim(0x1fff_fffc, 8, Access::Read), Err(Fault), "crosses into the kernel half");
        assert_eq!(claim(0xffff_f000, 0x2000, Access::Read), Err(Fault), "wraps around");
    }

    #[test]
    fn locate_gives_the_physical_pieces_or_refuses_the_whole_range() {
        let locate = |addr, len, access| locate(UserRange::new(addr, len)?, access, lookup);
        assert_eq!(locate(0x10010, 16, Access::Read), Ok([(0x4100_0010, 16), (0, 0)]));
        assert_eq!(locate(0x10ff8, 16, Access::Read), Ok([(0x4100_0ff8, 8), (0x4200_0000, 8)]));
        assert_eq!(locate(0x11000, 0, Access::Write), Ok([(0, 0), (0, 0)]));
        assert_eq!(locate(0x10ff8, 16, Access::Write), Err(Fault), "first page read-only");
        assert_eq!(locate(0x11ff8, 16, Access::Read), Err(Fault), "second page unmapped");
        assert_eq!(locate(0x10000, 0x1001, Access::Read), Err(Fault), "longer than a page");
    }

    #[test]
    fn pages_split_at_boundaries() {
        let range = UserRange::new(0x10ff0, 0x1020).unwrap();
        let pieces: Vec<_> = pages(range).collect();
        assert_eq!(pieces, [(0x10ff0, 0x10), (0x11000, 0x1000), (0x12000, 0x10)]);
        assert_eq!(pages(UserRange::new(0x10000, 0).unwrap()).count(), 0);
    }
}
