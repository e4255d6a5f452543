//! ARMv7 short-descriptor translation tables, built by plain safe Rust.
//!
//! TTBCR.N = 3: TTBR0 covers each process's user range `0..USER_END` (512 MiB) with the
//! first 512 entries of a 1024-entry level-1 table; the kernel's TTBR1 table covers the
//! rest. (Boards whose RAM starts at 0 keep their kernel RAM above 512 MiB.) A process's tables are one fixed
//! 8 KiB block ([`UserTables`]): the level-1 table and four level-2 tables of 256 small-page
//! entries, each covering 1 MiB. That bounds a process's table memory; a mapping that would
//! need a fifth MiB fails with [`MapError::NoTableSpace`] and changes nothing.
//!
//! Every user page is non-global (tagged with the process's ASID) and privileged-execute-
//! never (PXN lives in the level-1 page-table descriptor, so every one this module writes
//! sets it); nothing is ever both writable and executable. The descriptors follow the ARM
//! ARM B3.5.1 with TEX remap off and the access flag unused (AP[0] is a permission bit).
//! Which L2 slot serves which MiB is read back from the level-1 entries themselves, so the
//! tables are the only record.

use core::fmt;

pub const PAGE_SIZE: u32 = 4096;
pub const USER_END: u32 = 0x2000_0000;
pub const L1_ENTRIES: usize = 1024;
pub const L2_ENTRIES: usize = 256;
pub const L2_TABLES: usize = 4;
const MIB: u32 = 1 << 20;
const L2_TABLE_BYTES: u32 = L2_ENTRIES as u32 * 4;

/// What kind of memory a mapping is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Write-back write-allocate cacheable, shareable.
    Normal,
    /// Shareable device memory; never executable.
    Device,
}

/// A user page's permissions; user pages are always readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagePerms {
    pub writable: bool,
    pub executable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    Misaligned,
    OutsideUserRange,
    AlreadyMapped,
    NotMapped,
    NoTableSpace,
    WritableAndExecutable,
    ExecutableDevice,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapError::Misaligned => "address not page aligned",
            MapError::OutsideUserRange => "address outside the user range",
            MapError::AlreadyMapped => "page already mapped",
            MapError::NotMapped => "page not mapped",
            MapError::NoTableSpace => "no level-2 table left (more than 4 MiB regions)",
            MapError::WritableAndExecutable => "writable and executable",
            MapError::ExecutableDevice => "executable device memory",
        })
    }
}

// Level-1 descriptors.
const L1_PAGE_TABLE: u32 = 0b01;
const L1_PXN: u32 = 1 << 2;
const L1_SECTION: u32 = 0b10;
const SECTION_PXN: u32 = 1 << 0;
const SECTION_B: u32 = 1 << 2;
const SECTION_C: u32 = 1 << 3;
const SECTION_XN: u32 = 1 << 4;
const SECTION_AP_SHIFT: u32 = 10;
const SECTION_TEX_SHIFT: u32 = 12;
const SECTION_AP2: u32 = 1 << 15;
const SECTION_S: u32 = 1 << 16;
// Level-2 small-page descriptors.
const PAGE_XN: u32 = 1 << 0;
const PAGE_SMALL: u32 = 1 << 1;
const PAGE_B: u32 = 1 << 2;
const PAGE_C: u32 = 1 << 3;
const PAGE_AP_SHIFT: u32 = 4;
const PAGE_TEX_SHIFT: u32 = 6;
const PAGE_AP2: u32 = 1 << 9;
const PAGE_S: u32 = 1 << 10;
const PAGE_NG: u32 = 1 << 11;
// AP[1:0] values: privileged only, or full (user) access.
const AP_PRIVILEGED: u32 = 0b01;
const AP_USER_RW: u32 = 0b11;
const AP_USER_RO: u32 = 0b10;

/// A process's translation tables, as laid out in physical memory.
#[repr(C, align(8192))]
pub struct UserTables {
    pub l1: [u32; L1_ENTRIES],
    pub l2: [[u32; L2_ENTRIES]; L2_TABLES],
}

impl UserTables {
    pub const fn new() -> Self {
        UserTables { l1: [0; L1_ENTRIES], l2: [[0; L2_ENTRIES]; L2_TABLES] }
    }
}

impl Default for UserTables {
    fn default() -> Self {
        Self::new()
    }
}

/// One process's tables, with the physical address they live at.
pub struct UserPageTable<'a> {
    tables: &'a mut UserTables,
    tables_phys: u32,
}

impl<'a> UserPageTable<'a> {
    pub fn new(tables: &'a mut UserTables, tables_phys: u32) -> Result<Self, MapError> {
        if !tables_phys.is_multiple_of(2 * PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        Ok(UserPageTable { tables, tables_phys })
    }

    fn l2_phys(&self, slot: usize) -> u32 {
        l2_phys(self.tables_phys, slot)
    }

    fn slot_of(&self, va: u32) -> Option<usize> {
        slot_of(self.tables, self.tables_phys, va)
    }

    fn check_va(va: u32) -> Result<(), MapError> {
        if !va.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        if va >= USER_END {
            return Err(MapError::OutsideUserRange);
        }
        Ok(())
    }

    pub fn map_page(&mut self, va: u32, pa: u32, perms: PagePerms, kind: MemoryKind) -> Result<(), MapError> {
        Self::check_va(va)?;
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        let descriptor = user_page(pa, perms, kind)?;
        let slot = match self.slot_of(va) {
            Some(slot) => slot,
            None => {
                let used: [bool; L2_TABLES] = core::array::from_fn(|slot| {
                    self.tables
                        .l1
                        .iter()
                        .any(|&e| e & 0b11 == L1_PAGE_TABLE && e & !0x3ff == self.l2_phys(slot))
                });
                let slot = used.iter().position(|&u| !u).ok_or(MapError::NoTableSpace)?;
                self.tables.l2[slot] = [0; L2_ENTRIES];
                self.tables.l1[(va / MIB) as usize] = self.l2_phys(slot) | L1_PXN | L1_PAGE_TABLE;
                slot
            }
        };
        let entry = &mut self.tables.l2[slot][((va % MIB) / PAGE_SIZE) as usize];
        if *entry != 0 {
            return Err(MapError::AlreadyMapped);
        }
        *entry = descriptor;
        Ok(())
    }

    pub fn unmap_page(&mut self, va: u32) -> Result<u32, MapError> {
        Self::check_va(va)?;
        let slot = self.slot_of(va).ok_or(MapError::NotMapped)?;
        let table = &mut self.tables.l2[slot];
        let entry = &mut table[((va % MIB) / PAGE_SIZE) as usize];
        if *entry == 0 {
            return Err(MapError::NotMapped);
        }
        let pa = *entry & !(PAGE_SIZE - 1);
        *entry = 0;
        if table.iter().all(|&e| e == 0) {
            self.tables.l1[(va / MIB) as usize] = 0;
        }
        Ok(pa)
    }

    pub fn translate(&self, va: u32) -> Option<(u32, PagePerms, MemoryKind)> {
        translate(self.tables, self.tables_phys, va)
    }

    pub fn mapped_pages(&self) -> usize {
        (0..L2_TABLES)
            .filter(|&slot| {
                self.tables.l1.iter().any(|&e| e & 0b11 == L1_PAGE_TABLE && e & !0x3ff == self.l2_phys(slot))
            })
            .map(|slot| self.tables.l2[slot].iter().filter(|&&e| e != 0).count())
            .sum()
    }
}

fn l2_phys(tables_phys: u32, slot: usize) -> u32 {
    tables_phys + PAGE_SIZE + (slot * L2_ENTRIES * 4) as u32
}

/// The L2 slot the level-1 entry for `va`'s MiB points at, if any.
fn slot_of(tables: &UserTables, tables_phys: u32, va: u32) -> Option<usize> {
    let entry = tables.l1[(va / MIB) as usize];
    if entry & 0b11 != L1_PAGE_TABLE {
        return None;
    }
    // The L2 tables lie back to back after the L1 table: the entry's address says which.
    let offset = (entry & !0x3ff).wrapping_sub(l2_phys(tables_phys, 0));
    let slot = (offset / L2_TABLE_BYTES) as usize;
    (offset.is_multiple_of(L2_TABLE_BYTES) && slot < L2_TABLES).then_some(slot)
}

/// What `tables` (at `tables_phys`) map at `va`: the physical address, permissions and kind.
/// Reads only, so a shared borrow of the tables is enough.
pub fn translate(tables: &UserTables, tables_phys: u32, va: u32) -> Option<(u32, PagePerms, MemoryKind)> {
    if va >= USER_END {
        return None;
    }
    let entry = tables.l2[slot_of(tables, tables_phys, va)?][((va % MIB) / PAGE_SIZE) as usize];
    if entry & PAGE_SMALL == 0 {
        return None;
    }
    let perms = PagePerms { writable: entry & PAGE_AP2 == 0, executable: entry & PAGE_XN == 0 };
    let kind = if entry & PAGE_C != 0 { MemoryKind::Normal } else { MemoryKind::Device };
    Some(((entry & !(PAGE_SIZE - 1)) | (va % PAGE_SIZE), perms, kind))
}

/// The (TEX, C, B) attributes of a memory kind.
fn attributes(kind: MemoryKind) -> (u32, bool, bool) {
    match kind {
        MemoryKind::Normal => (0b001, true, true),
        MemoryKind::Device => (0b000, false, true),
    }
}

fn check_perms(writable: bool, executable: bool, kind: MemoryKind) -> Result<(), MapError> {
    if writable && executable {
        return Err(MapError::WritableAndExecutable);
    }
    if executable && kind == MemoryKind::Device {
        return Err(MapError::ExecutableDevice);
    }
    Ok(())
}

fn user_page(pa: u32, perms: PagePerms, kind: MemoryKind) -> Result<u32, MapError> {
    check_perms(perms.writable, perms.executable, kind)?;
    let (tex, c, b) = attributes(kind);
    let ap = if perms.writable { AP_USER_RW } else { AP_USER_RO | (PAGE_AP2 >> PAGE_AP_SHIFT) };
    Ok(small_page(pa, ap, !perms.executable, tex, c, b) | PAGE_NG)
}

/// Encodes a small page; `ap` carries AP[1:0] in bits 1..0 and AP[2] in bit 5.
fn small_page(pa: u32, ap: u32, xn: bool, tex: u32, c: bool, b: bool) -> u32 {
    (pa & !(PAGE_SIZE - 1))
        | PAGE_SMALL
        | PAGE_S
        | ((ap & 0b11) << PAGE_AP_SHIFT)
        | if ap & (PAGE_AP2 >> PAGE_AP_SHIFT) != 0 { PAGE_AP2 } else { 0 }
        | (tex << PAGE_TEX_SHIFT)
        | if c { PAGE_C } else { 0 }
        | if b { PAGE_B } else { 0 }
        | if xn { PAGE_XN } else { 0 }
}

/// A level-1 section (1 MiB) for the kernel: global, privileged-only.
pub fn kernel_section(pa: u32, writable: bool, executable: bool, kind: MemoryKind) -> Result<u32, MapError> {
    check_perms(writable, executable, kind)?;
    if !pa.is_multiple_of(MIB) {
        return Err(MapError::Misaligned);
    }
    let (tex, c, b) = attributes(kind);
    Ok(pa
        | L1_SECTION
        | SECTION_S
        | (AP_PRIVILEGED << SECTION_AP_SHIFT)
        | if writable { 0 } else { SECTION_AP2 }
        | (tex << SECTION_TEX_SHIFT)
        | if c { SECTION_C } else { 0 }
        | if b { SECTION_B } else { 0 }
        | if executable { 0 } else { SECTION_XN | SECTION_PXN })
}

/// A level-1 descriptor pointing at a kernel level-2 table (1 KiB aligned).
pub fn kernel_l2_table(l2_phys: u32) -> Result<u32, MapError> {
    if !l2_phys.is_multiple_of(1024) {
        return Err(MapError::Misaligned);
    }
    Ok(l2_phys | L1_PAGE_TABLE)
}

/// A level-2 small page for the kernel: global, privileged-only.
pub fn kernel_page(pa: u32, writable: bool, executable: bool, kind: MemoryKind) -> Result<u32, MapError> {
    check_perms(writable, executable, kind)?;
    if !pa.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Misaligned);
    }
    let (tex, c, b) = attributes(kind);
    let ap = AP_PRIVILEGED | if writable { 0 } else { PAGE_AP2 >> PAGE_AP_SHIFT };
    Ok(small_page(pa, ap, !executable, tex, c, b))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::collections::BTreeMap;

    const PHYS: u32 = 0x4400_0000;
    const RX: PagePerms = PagePerms { writable: false, executable: true };
    const RW: PagePerms = PagePerms { writable: true, executable: false };
    const RO: PagePerms = PagePerms { writable: false, executable: false };

    fn tables() -> Box<UserTables> {
        Box::new(UserTables::new())
    }

    #[test]
    fn user_descriptors_have_exactly_the_expected_bits() {
        let mut t = tables();
        let mut pt = UserPageTable::new(&mut t, PHYS).unwrap();
        pt.map_page(0x10000, 0x4500_0000, RX, MemoryKind::Normal).unwrap();
        pt.map_page(0x11000, 0x4500_1000, RW, MemoryKind::Normal).unwrap();
        pt.map_page(0x12000, 0x0903_0000, RW, MemoryKind::Device).unwrap();
        // nG | S | AP2=1,AP=10 | TEX=001 | C | B | small, no XN
        assert_eq!(t.l2[0][0x10], 0x4500_0000 | 0xe6e);
        // nG | S | AP=11 | TEX=001 | C | B | small | XN
        assert_eq!(t.l2[0][0x11], 0x4500_1000 | 0xc7f);
        // nG | S | AP=11 | TEX=000 | B | small | XN
        assert_eq!(t.l2[0][0x12], 0x0903_0000 | 0xc37);
        assert_eq!(t.l1[0], (PHYS + 0x1000) | L1_PXN | L1_PAGE_TABLE, "PXN and the first L2");
    }

    #[test]
    fn translate_round_trips_with_offset() {
        let mut t = tables();
        let mut pt = UserPageTable::new(&mut t, PHYS).unwrap();
        pt.map_page(0x1fff_e000, 0x4700_0000, RO, MemoryKind::Normal).unwrap();
        assert_eq!(pt.translate(0x1fff_e123), Some((0x4700_0123, RO, MemoryKind::Normal)));
        assert_eq!(pt.translate(0x1fff_f000), None);
        assert_eq!(pt.translate(0x4000_0000), None);
    }

    #[test]
    fn unmapping_frees_the_l2_slot_for_another_mib() {
        let mut t = tables();
        let mut pt = UserPageTable::new(&mut t, PHYS).unwrap();
        for mib in 0..4 {
            pt.map_page(mib * MIB, 0x4500_0000, RO, MemoryKind::Normal).unwrap();
        }
        assert_eq!(pt.map_page(4 * MIB, 0x4500_0000, RO, MemoryKind::Normal), Err(MapError::NoTableSpace));
        assert_eq!(pt.unmap_page(2 * MIB), Ok(0x4500_0000));
        assert_eq!(pt.translate(2 * MIB), None);
        pt.map_page(9 * MIB, 0x4600_0000, RO, MemoryKind::Normal).unwrap();
        assert_eq!(pt.mapped_pages(), 4);
        assert_eq!(t.l1[2], 0, "fault entry restored");
    }

    #[test]
    fn errors_change_nothing() {
        let mut t = tables();
        let mut pt = UserPageTable::new(&mut t, PHYS).unwrap();
        for mib in 0..4 {
            pt.map_page(mib * MIB, 0x4500_0000, RO, MemoryKind::Normal).unwrap();
        }
        let cases = [
            (0x10004, 0x4500_0000, RO, MemoryKind::Normal, MapError::Misaligned),
            (0x10000, 0x4500_0004, RO, MemoryKind::Normal, MapError::Misaligned),
            (USER_END, 0x4500_0000, RO, MemoryKind::Normal, MapError::OutsideUserRange),
            (0xffff_f000, 0x4500_0000, RO, MemoryKind::Normal, MapError::OutsideUserRange),
            (0, 0x4500_0000, RO, MemoryKind::Normal, MapError::AlreadyMapped),
            (
                0x1000,
                0x4500_0000,
                PagePerms { writable: true, executable: true },
                MemoryKind::Normal,
                MapError::WritableAndExecutable,
            ),
            (0x1000, 0x0903_0000, RX, MemoryKind::Device, MapError::ExecutableDevice),
            (5 * MIB, 0x4500_0000, RO, MemoryKind::Normal, MapError::NoTableSpace),
        ];
        for (va, pa, perms, kind, error) in cases {
            let before = (pt.tables.l1, pt.tables.l2);
            assert_eq!(pt.map_page(va, pa, perms, kind), Err(error), "{va:#x}");
            assert!(before == (pt.tables.l1, pt.tables.l2), "{va:#x} changed the tables");
        }
        assert_eq!(pt.unmap_page(0x5000), Err(MapError::NotMapped));
        assert_eq!(pt.unmap_page(7 * MIB), Err(MapError::NotMapped));
        assert!(UserPageTable::new(&mut UserTables::new(), PHYS + 0x1000).is_err());
    }

    #[test]
    fn kernel_encoders() {
        // Section: S | TEX=001 | AP=01 | C | B | XN | PXN, read-write
        assert_eq!(kernel_section(0x4000_0000, true, false, MemoryKind::Normal), Ok(0x4000_0000 | 0x1_141f));
        // Device section, read-write: S | AP=01 | B | XN | PXN
        assert_eq!(kernel_section(0x0900_0000, true, false, MemoryKind::Device), Ok(0x0900_0000 | 0x1_0417));
        // Text page: S | AP2 | AP=01 | TEX=001 | C | B | small
        assert_eq!(kernel_page(0x4010_0000, false, true, MemoryKind::Normal), Ok(0x4010_0000 | 0x65e));
        assert_eq!(
            kernel_page(0x4010_0000, true, true, MemoryKind::Normal),
            Err(MapError::WritableAndExecutable)
        );
        assert_eq!(kernel_l2_table(0x4010_0400), Ok(0x4010_0401));
        assert_eq!(kernel_l2_table(0x4010_0200), Err(MapError::Misaligned));
    }

    #[test]
    fn random_map_unmap_sequences_match_a_model() {
        let mut t = tables();
        let mut pt = UserPageTable::new(&mut t, PHYS).unwrap();
        let mut model = BTreeMap::new();
        let mut state = 0x1234_5678_9abc_def1u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // 6 MiB of candidate pages, so table space runs out now and then.
            let va = ((state >> 8) % (6 * 256)) as u32 * PAGE_SIZE;
            let pa = 0x4500_0000 + ((state >> 24) % 1024) as u32 * PAGE_SIZE;
            if state.is_multiple_of(3) {
                assert_eq!(pt.unmap_page(va).ok(), model.remove(&va));
            } else {
                let mibs: std::collections::BTreeSet<u32> = model.keys().map(|v| v / MIB).collect();
                let result = pt.map_page(va, pa, RW, MemoryKind::Normal);
                let full = !mibs.contains(&(va / MIB)) && mibs.len() == L2_TABLES;
                let expected = match model.entry(va) {
                    std::collections::btree_map::Entry::Occupied(_) => Err(MapError::AlreadyMapped),
                    std::collections::btree_map::Entry::Vacant(_) if full => Err(MapError::NoTableSpace),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(pa);
                        Ok(())
                    }
                };
                assert_eq!(result, expected);
            }
            assert_eq!(pt.translate(va).map(|(p, ..)| p), model.get(&va).copied());
            assert_eq!(pt.mapped_pages(), model.len());
        }
    }
}
