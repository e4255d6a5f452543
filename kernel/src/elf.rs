//! App ELF files: the checks an app image passes before the kernel copies a byte of it.
//!
//! The kernel trusts nothing in an image. [`parse`] reads the ELF header and every program
//! header with bounds-checked little-endian reads and checked arithmetic, and accepts only a
//! 32-bit little-endian ARM executable whose loadable segments are page aligned, lie inside
//! the app's part of the address space and inside the file, do not overlap, are never both
//! writable and executable, and whose entry point is in an executable segment. The result
//! is a [`Program`]: the segments to map and the entry point. Errors are values naming the
//! program header at fault.

use core::fmt;
use core::ops::Range;

pub const PAGE_SIZE: u32 = 4096;
pub const MAX_SEGMENTS: usize = 8;

const ELF_HEADER_LEN: usize = 52;
const PROGRAM_HEADER_LEN: usize = 32;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const ET_EXEC: u16 = 2;
const EM_ARM: u16 = 40;

/// One loadable segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Page-aligned start address.
    pub vaddr: u32,
    pub mem_size: u32,
    pub file_offset: u32,
    /// At most `mem_size`; the rest of the segment is zero.
    pub file_size: u32,
    pub writable: bool,
    pub executable: bool,
}

/// A checked executable: what to map and where to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub entry: u32,
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
}

impl Program {
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    Truncated,
    BadMagic,
    NotElf32,
    NotLittleEndian,
    BadVersion,
    NotExecutable,
    WrongMachine,
    BadProgramHeaderTable,
    NoSegments,
    TooManySegments,
    SegmentOutsideFile { index: usize },
    FileSizeExceedsMemSize { index: usize },
    SegmentOutsideUserRange { index: usize },
    MisalignedSegment { index: usize },
    WritableAndExecutable { index: usize },
    OverlappingSegments { index: usize },
    EntryNotExecutable,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Truncated => write!(f, "shorter than an ELF header"),
            ElfError::BadMagic => write!(f, "not an ELF file"),
            ElfError::NotElf32 => write!(f, "not a 32-bit ELF file"),
            ElfError::NotLittleEndian => write!(f, "not little-endian"),
            ElfError::BadVersion => write!(f, "unknown ELF version"),
            ElfError::NotExecutable => write!(f, "not an executable"),
            ElfError::WrongMachine => write!(f, "not an ARM executable"),
            ElfError::BadProgramHeaderTable => {
                write!(f, "program header table malformed or outside the file")
            }
            ElfError::NoSegments => write!(f, "no loadable segment"),
            ElfError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            ElfError::SegmentOutsideFile { index } => {
                write!(f, "segment {index} lies outside the file")
            }
            ElfError::FileSizeExceedsMemSize { index } => {
                write!(f, "segment {index} has more file bytes than memory")
            }
            ElfError::SegmentOutsideUserRange { index } => {
                write!(f, "segment {index} lies outside the app's address range")
            }
            ElfError::MisalignedSegment { index } => {
                write!(f, "segment {index} is not page aligned")
            }
            ElfError::WritableAndExecutable { index } => {
                write!(f, "segment {index} is both writable and executable")
            }
            ElfError::OverlappingSegments { index } => {
                write!(f, "segment {index} overlaps an earlier segment")
            }
            ElfError::EntryNotExecutable => {
                write!(f, "entry point is not in an executable segment")
            }
        }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Checks `image` and returns what to load. `user` is the range the app may occupy.
pub fn parse(image: &[u8], user: Range<u32>) -> Result<Program, ElfError> {
    let header = image.get(..ELF_HEADER_LEN).ok_or(ElfError::Truncated)?;
    if header[0..4] != *b"\x7fELF" {
        return Err(ElfError::BadMagic);
    }
    if header[4] != 1 {
        return Err(ElfError::NotElf32);
    }
    if header[5] != 1 {
        return Err(ElfError::NotLittleEndian);
    }
    let field16 = |at| u16_at(header, at).ok_or(ElfError::Truncated);
    let field32 = |at| u32_at(header, at).ok_or(ElfError::Truncated);
    if header[6] != 1 || field32(20)? != 1 {
        return Err(ElfError::BadVersion);
    }
    if field16(16)? != ET_EXEC {
        return Err(ElfError::NotExecutable);
    }
    if field16(18)? != EM_ARM {
        return Err(ElfError::WrongMachine);
    }
    let entry = field32(24)?;
    let table_offset = field32(28)? as usize;
    let entry_size = field16(42)? as usize;
    let entry_count = field16(44)? as usize;
    if entry_size != PROGRAM_HEADER_LEN {
        return Err(ElfError::BadProgramHeaderTable);
    }
    let table = entry_count
        .checked_mul(PROGRAM_HEADER_LEN)
        .and_then(|len| table_offset.checked_add(len))
        .and_then(|end| image.get(table_offset..end))
        .ok_or(ElfError::BadProgramHeaderTable)?;

    let mut program = Program { entry, segments: [Segment::default(); MAX_SEGMENTS], count: 0 };
    for (index, raw) in table.chunks_exact(PROGRAM_HEADER_LEN).enumerate() {
        let word = |at| u32_at(raw, at).ok_or(ElfError::BadProgramHeaderTable);
        let (kind, offset, vaddr, file_size, mem_size, flags) =
            (word(0)?, word(4)?, word(8)?, word(16)?, word(20)?, word(24)?);
        if kind != PT_LOAD || mem_size == 0 {
            continue;
        }
        let segment = Segment {
            vaddr,
            mem_size,
            file_offset: offset,
            file_size,
            writable: flags & PF_W != 0,
            executable: flags & PF_X != 0,
        };
        check_segment(&segment, index, image.len(), &user)?;
        let earlier = &program.segments[..program.count];
        if earlier.iter().any(|other| overlaps(other, &segment)) {
            return Err(ElfError::OverlappingSegments { index });
        }
        let slot = program.segments.get_mut(program.count).ok_or(ElfError::TooManySegments)?;
        *slot = segment;
        program.count += 1;
    }
    if program.count == 0 {
        return Err(ElfError::NoSegments);
    }
    let entry_ok =
        program.segments().iter().any(|s| s.executable && entry >= s.vaddr && entry - s.vaddr < s.mem_size);
    if !entry_ok {
        return Err(ElfError::EntryNotExecutable);
    }
    Ok(program)
}

fn check_segment(s: &Segment, index: usize, file_len: usize, user: &Range<u32>) -> Result<(), ElfError> {
    let file_end = (s.file_offset as usize).checked_add(s.file_size as usize);
    if file_end.is_none_or(|end| end > file_len) {
        return Err(ElfError::SegmentOutsideFile { index });
    }
    if s.file_size > s.mem_size {
        return Err(ElfError::FileSizeExceedsMemSize { index });
    }
    if !s.vaddr.is_multiple_of(PAGE_SIZE) {
        return Err(ElfError::MisalignedSegment { index });
    }
    let inside = page_end(s).is_some_and(|end| s.vaddr >= user.start && end <= user.end);
    if !inside {
        return Err(ElfError::SegmentOutsideUserRange { index });
    }
    if s.writable && s.executable {
        return Err(ElfError::WritableAndExecutable { index });
    }
    Ok(())
}

/// The end of the segment's last page.
fn page_end(s: &Segment) -> Option<u32> {
    s.vaddr.checked_add(s.mem_size)?.checked_next_multiple_of(PAGE_SIZE)
}

fn overlaps(a: &Segment, b: &Segment) -> bool {
    // Both ends exist: checked when each segment was accepted.
    let (a_end, b_end) = (page_end(a).unwrap_or(u32::MAX), page_end(b).unwrap_or(u32::MAX));
    a.vaddr < b_end && b.vaddr < a_end
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    const USER: Range<u32> = 0x1000..0x2000_0000;

    /// A header: (type, offset, vaddr, filesz, memsz, flags).
    pub(crate) type Ph = (u32, u32, u32, u32, u32, u32);

    pub(crate) fn build(headers: &[Ph], entry: u32, file_len: usize) -> Vec<u8> {
        let mut elf = std::vec![0u8; file_len.max(ELF_HEADER_LEN + headers.len() * PROGRAM_HEADER_LEN)];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 1;
        elf[5] = 1;
        elf[6] = 1;
        elf[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        elf[18..20].copy_from_slice(&EM_ARM.to_le_bytes());
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[24..28].copy_from_slice(&entry.to_le_bytes());
        elf[28..32].copy_from_slice(&(ELF_HEADER_LEN as u32).to_le_bytes());
        elf[42..44].copy_from_slice(&(PROGRAM_HEADER_LEN as u16).to_le_bytes());
        elf[44..46].copy_from_slice(&(headers.len() as u16).to_le_bytes());
        for (i, h) in headers.iter().enumerate() {
            let at = ELF_HEADER_LEN + i * PROGRAM_HEADER_LEN;
            for (field, value) in [(0, h.0), (4, h.1), (8, h.2), (12, h.2), (16, h.3), (20, h.4), (24, h.5)] {
                elf[at + field..at + field + 4].copy_from_slice(&value.to_le_bytes());
            }
        }
        elf
    }

    pub(crate) const TEXT: Ph = (PT_LOAD, 0x100, 0x10000, 0x200, 0x200, 5);
    pub(crate) const DATA: Ph = (PT_LOAD, 0x300, 0x11000, 0x20, 0x800, 6);

    fn valid() -> Vec<u8> {
        build(&[TEXT, DATA, (0x6474_e551, 0, 0, 0, 0, 6)], 0x10000, 0x320)
    }

    fn with(headers: &[Ph]) -> Result<Program, ElfError> {
        parse(&build(headers, 0x10000, 0x400), USER)
    }

    #[test]
    fn valid_executable_parses() {
        let program = parse(&valid(), USER).unwrap();
        assert_eq!(program.entry, 0x10000);
        let s = program.segments();
        assert_eq!(s.len(), 2, "non-load headers are ignored");
        assert_eq!(
            s[0],
            Segment {
                vaddr: 0x10000,
                mem_size: 0x200,
                file_offset: 0x100,
                file_size: 0x200,
                writable: false,
                executable: true
            }
        );
        assert!(s[1].writable && !s[1].executable && s[1].mem_size == 0x800);
    }

    /// Random changes to a valid ELF (a fixed seed; `SEPTA_FUZZ_ROUNDS` runs more): parsing
    /// never panics, and whatever parses keeps every promise the loader relies on.
    #[test]
    fn mutated_executables_never_break_the_parsers_promises() {
        let valid = valid();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let factor: usize = std::env::var("SEPTA_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        for _ in 0..20_000 * factor {
            let mut elf = valid.clone();
            for _ in 0..1 + next() % 4 {
                // Mostly the headers, where the fields are.
                let at = (next() as usize) % (ELF_HEADER_LEN + 3 * PROGRAM_HEADER_LEN);
                elf[at] = if next() % 2 == 0 { next() as u8 } else { elf[at] ^ (1 << (next() % 8)) };
            }
            elf.truncate(elf.len() - (next() as usize % 3) * (next() as usize % elf.len()) / 2);
            let Ok(program) = parse(&elf, USER) else { continue };
            let segments = program.segments();
            for (i, s) in segments.iter().enumerate() {
                let end = s.vaddr as u64 + s.mem_size as u64;
                assert!(s.vaddr.is_multiple_of(PAGE_SIZE) && s.vaddr >= USER.start && end <= USER.end as u64);
                assert!(
                    s.file_offset as usize + s.file_size as usize <= elf.len() && s.file_size <= s.mem_size
                );
                assert!(!(s.writable && s.executable));
                for other in &segments[..i] {
                    let other_end = other.vaddr as u64 + other.mem_size as u64;
                    assert!(end <= other.vaddr as u64 || other_end <= s.vaddr as u64, "overlap");
                }
            }
            let entry = program.entry;
            assert!(
                segments.iter().any(|s| s.executable && entry >= s.vaddr && entry - s.vaddr < s.mem_size)
            );
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let elf = valid();
        for len in 0..elf.len() {
            assert!(parse(&elf[..len], USER).is_err(), "len {len}");
        }
    }

    #[test]
    fn header_fields_are_checked() {
        for (at, value, error) in [
            (0, 0u8, ElfError::BadMagic),
            (4, 2, ElfError::NotElf32),
            (5, 2, ElfError::NotLittleEndian),
            (6, 0, ElfError::BadVersion),
            (16, 3, ElfError::NotExecutable),
            (18, 3, ElfError::WrongMachine),
            (42, 33, ElfError::BadProgramHeaderTable),
        ] {
            let mut elf = valid();
            elf[at] = value;
            assert_eq!(parse(&elf, USER), Err(error), "byte {at}");
        }
    }

    #[test]
    fn program_header_table_outside_the_file_is_refused() {
        let mut elf = valid();
        elf[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&elf, USER), Err(ElfError::BadProgramHeaderTable));
        let mut elf = valid();
        elf[44..46].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(parse(&elf, USER), Err(ElfError::BadProgramHeaderTable));
    }

    #[test]
    fn writable_and_executable_segment_is_refused() {
        assert_eq!(
            with(&[(PT_LOAD, 0x100, 0x10000, 0x10, 0x10, 7)]),
            Err(ElfError::WritableAndExecutable { index: 0 })
        );
    }

    #[test]
    fn segment_outside_the_file_is_refused() {
        assert_eq!(
            with(&[TEXT, (PT_LOAD, 0x3f0, 0x11000, 0x20, 0x20, 6)]),
            Err(ElfError::SegmentOutsideFile { index: 1 })
        );
        assert_eq!(
            with(&[(PT_LOAD, u32::MAX, 0x10000, 2, 2, 5)]),
            Err(ElfError::SegmentOutsideFile { index: 0 })
        );
    }

    #[test]
    fn file_size_beyond_memory_size_is_refused() {
        assert_eq!(
            with(&[(PT_LOAD, 0x100, 0x10000, 0x20, 0x10, 5)]),
            Err(ElfError::FileSizeExceedsMemSize { index: 0 })
        );
    }

    #[test]
    fn segments_must_stay_inside_the_user_range() {
        let end = USER.end;
        assert!(with(&[TEXT, (PT_LOAD, 0, end - 0x1000, 0, 0x1000, 6)]).is_ok(), "reaching the end exactly");
        assert_eq!(
            with(&[TEXT, (PT_LOAD, 0, end - 0x1000, 0, 0x1001, 6)]),
            Err(ElfError::SegmentOutsideUserRange { index: 1 })
        );
        assert_eq!(
            with(&[TEXT, (PT_LOAD, 0, 0x4010_0000, 0, 0x10, 6)]),
            Err(ElfError::SegmentOutsideUserRange { index: 1 }),
            "kernel address"
        );
        assert_eq!(
            with(&[TEXT, (PT_LOAD, 0, 0xffff_f000, 0, 0x2000, 6)]),
            Err(ElfError::SegmentOutsideUserRange { index: 1 }),
            "wraps"
        );
        assert_eq!(
            with(&[TEXT, (PT_LOAD, 0, 0, 0, 0x10, 6)]),
            Err(ElfError::SegmentOutsideUserRange { index: 1 }),
            "null page"
        );
    }

    #[test]
    fn misaligned_segment_is_refused() {
        assert_eq!(
            with(&[TEXT, (PT_LOAD, 0x300, 0x11004, 0x10, 0x10, 6)]),
            Err(ElfError::MisalignedSegment { index: 1 })
        );
    }

    #[test]
    fn overlapping_segments_are_refused_at_page_granularity() {
        assert_eq!(
            with(&[TEXT, (PT_LOAD, 0x300, 0x10000, 0x10, 0x10, 6)]),
            Err(ElfError::OverlappingSegments { index: 1 })
        );
    }

    #[test]
    fn too_many_or_no_segments_are_refused() {
        let many: Vec<Ph> = (0..9).map(|i| (PT_LOAD, 0x100, 0x10000 + i * 0x1000, 0x10, 0x10, 5)).collect();
        assert_eq!(with(&many), Err(ElfError::TooManySegments));
        assert_eq!(with(&[(0x7000_0001, 0, 0, 0, 0, 4)]), Err(ElfError::NoSegments));
        assert_eq!(
            with(&[(PT_LOAD, 0, 0x10000, 0, 0, 5)]),
            Err(ElfError::NoSegments),
            "empty segments are ignored"
        );
    }

    #[test]
    fn entry_must_be_in_an_executable_segment() {
        assert_eq!(parse(&build(&[TEXT, DATA], 0x11000, 0x400), USER), Err(ElfError::EntryNotExecutable));
        assert_eq!(parse(&build(&[TEXT, DATA], 0x10200, 0x400), USER), Err(ElfError::EntryNotExecutable));
    }

    #[test]
    fn random_mutations_never_panic_and_results_hold_the_invariants() {
        let base = valid();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut elf = base.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % elf.len() as u64) as usize;
                elf[at] = next() as u8;
            }
            if let Ok(program) = parse(&elf, USER) {
                for (i, s) in program.segments().iter().enumerate() {
                    assert!(s.vaddr.is_multiple_of(PAGE_SIZE) && s.vaddr >= USER.start);
                    assert!(page_end(s).is_some_and(|end| end <= USER.end));
                    assert!(!(s.writable && s.executable));
                    assert!(s.file_offset as usize + s.file_size as usize <= elf.len());
                    for other in &program.segments()[..i] {
                        assert!(!overlaps(other, s));
                    }
                }
            }
        }
    }
}
