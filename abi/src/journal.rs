//! The journal: append-only records in flash sectors that survive a power cut at any word.
//!
//! Every persistent thing the secure world keeps — the boot state, app storage, the report
//! ring — is a journal over a few erase sectors. A sector starts with a 16-byte header
//! (magic `SJNL`, generation, inverted generation, reserved); records follow, each
//! `[payload length: u16][tag: u16][check: u32][payload, padded to 4]`, where the check is
//! FNV-1a over length, tag and payload. Flash is programmed in order, so a record cut short
//! by a power loss fails its check and is skipped, and the record before it stays in force.
//! A sector counts only with a complete header; the highest generation is the newest.
//!
//! Space comes back in one of two ways, fixed per journal ([`Mode`]):
//! - [`Mode::Rewrite`] (boot state, storage): only the newest sector is live. When it is
//!   full the live records are copied into another, freshly erased sector whose header is
//!   written last — until that moment the old sector stays the newest, so a cut during the
//!   copy loses nothing.
//! - [`Mode::Ring`] (reports): every sector is live, oldest first; when the newest is full
//!   the oldest is erased and reused.
//!
//! The check detects torn writes, not tampering: what needs integrity against an attacker
//! carries its own signature or authentication tag.

use crate::flash::{Error, Flash};
use core::fmt;

pub const MAGIC: [u8; 4] = *b"SJNL";
pub const SECTOR_HEADER: usize = 16;
pub const RECORD_HEADER: usize = 8;
/// The longest record payload.
pub const RECORD_MAX: usize = 1024;
/// The most sectors one journal spans.
pub const MAX_SECTORS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Rewrite,
    Ring,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalError {
    /// The newest sector has no room; a rewrite journal must be compacted.
    Full,
    /// The payload is longer than [`RECORD_MAX`].
    TooLarge,
    Flash(Error),
}

impl From<Error> for JournalError {
    fn from(error: Error) -> Self {
        JournalError::Flash(error)
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Full => write!(f, "the journal is full"),
            JournalError::TooLarge => write!(f, "record longer than {RECORD_MAX} bytes"),
            JournalError::Flash(e) => write!(f, "{e}"),
        }
    }
}

/// One record as read back.
pub struct Entry<'a> {
    pub tag: u16,
    /// Offset of the record in the flash.
    pub offset: usize,
    pub payload: &'a [u8],
    /// Whether the check matched: false for a record cut short or altered.
    pub intact: bool,
}

/// A journal over `sectors` erase sectors starting at `base` (a sector boundary).
#[derive(Clone, Copy, Debug)]
pub struct Journal {
    base: usize,
    sectors: usize,
    mode: Mode,
}

fn check(len: u16, tag: u16, payload: &[u8]) -> u32 {
    let mut hash = 0x811c_9dc5u32;
    for byte in len.to_le_bytes().iter().chain(&tag.to_le_bytes()).chain(payload) {
        hash = (hash ^ *byte as u32).wrapping_mul(0x0100_0193);
    }
    hash
}

const fn padded(len: usize) -> usize {
    len.div_ceil(4) * 4
}

impl Journal {
    pub const fn new(base: usize, sectors: usize, mode: Mode) -> Journal {
        assert!(sectors >= 2 && sectors <= MAX_SECTORS);
        Journal { base, sectors, mode }
    }

    fn start(&self, flash: &impl Flash, index: usize) -> usize {
        self.base + index * flash.sector_size()
    }

    fn generation(&self, flash: &impl Flash, index: usize) -> Option<u32> {
        let mut header = [0u8; SECTOR_HEADER];
        flash.read(self.start(flash, index), &mut header).ok()?;
        let word =
            |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        (header[..4] == MAGIC && word(4) == !word(8)).then(|| word(4))
    }

    /// The valid sectors as `(generation, index)`, oldest first.
    fn valid(&self, flash: &impl Flash) -> heapless::Vec<(u32, usize), MAX_SECTORS> {
        let mut valid: heapless::Vec<(u32, usize), MAX_SECTORS> =
            (0..self.sectors).filter_map(|i| self.generation(flash, i).map(|g| (g, i))).collect();
        // An insertion sort: there are at most MAX_SECTORS entries, and `sort_unstable`
        // would add about 9 KB of code to the loader and the monitor, which the loader
        // copies and hashes at every boot.
        for i in 1..valid.len() {
            let mut j = i;
            while j > 0 && valid[j - 1] > valid[j] {
                valid.swap(j - 1, j);
                j -= 1;
            }
        }
        valid
    }

    /// Visits the records of sector `index`, returning the offset after the last one.
    fn scan(
        &self,
        flash: &impl Flash,
        index: usize,
        buffer: &mut [u8; RECORD_MAX],
        visit: &mut impl FnMut(Entry<'_>),
    ) -> usize {
        let sector = flash.sector_size();
        let start = self.start(flash, index);
        let mut at = SECTOR_HEADER;
        while at + RECORD_HEADER <= sector {
            let mut header = [0u8; RECORD_HEADER];
            if flash.read(start + at, &mut header).is_err() {
                break;
            }
            let len = u16::from_le_bytes([header[0], header[1]]);
            if len == 0xffff {
                break;
            }
            let size = RECORD_HEADER + padded(len as usize);
            if len as usize > RECORD_MAX || at + size > sector {
                // A damaged length: nothing after it can be trusted, and nothing is added.
                return sector;
            }
            let tag = u16::from_le_bytes([header[2], header[3]]);
            let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let payload = &mut buffer[..len as usize];
            if flash.read(start + at + RECORD_HEADER, payload).is_ok() {
                let intact = check(len, tag, payload) == stored;
                visit(Entry { tag, offset: start + at, payload, intact });
            }
            at += size;
        }
        at
    }

    /// Visits every live record in order: the newest sector's (rewrite) or every sector's,
    /// oldest first (ring).
    pub fn read(&self, flash: &impl Flash, mut visit: impl FnMut(Entry<'_>)) {
        let mut buffer = [0u8; RECORD_MAX];
        let valid = self.valid(flash);
        let live = match self.mode {
            Mode::Rewrite => &valid[valid.len().saturating_sub(1)..],
            Mode::Ring => &valid[..],
        };
        for &(_, index) in live {
            self.scan(flash, index, &mut buffer, &mut visit);
        }
    }

    /// Reads the intact record at `offset` (as given by [`Entry::offset`]) into `out`;
    /// returns its tag and length.
    pub fn read_at(&self, flash: &impl Flash, offset: usize, out: &mut [u8]) -> Option<(u16, usize)> {
        let mut header = [0u8; RECORD_HEADER];
        flash.read(offset, &mut header).ok()?;
        let len = u16::from_le_bytes([header[0], header[1]]);
        let tag = u16::from_le_bytes([header[2], header[3]]);
        let payload = out.get_mut(..len as usize)?;
        flash.read(offset + RECORD_HEADER, payload).ok()?;
        let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        (check(len, tag, payload) == stored).then_some((tag, len as usize))
    }

    fn write_header(&self, flash: &mut impl Flash, index: usize, generation: u32) -> Result<(), Error> {
        let mut header = [0xffu8; SECTOR_HEADER];
        header[..4].copy_from_slice(&MAGIC);
        header[4..8].copy_from_slice(&generation.to_le_bytes());
        header[8..12].copy_from_slice(&(!generation).to_le_bytes());
        // The reserved word stays erased: the inverted generation, written last, commits.
        flash.program(self.start(flash, index), &header[..12])
    }

    fn write_record(flash: &mut impl Flash, offset: usize, tag: u16, payload: &[u8]) -> Result<(), Error> {
        let mut record = [0xffu8; RECORD_HEADER + RECORD_MAX];
        let len = payload.len() as u16;
        record[..2].copy_from_slice(&len.to_le_bytes());
        record[2..4].copy_from_slice(&tag.to_le_bytes());
        record[4..8].copy_from_slice(&check(len, tag, payload).to_le_bytes());
        record[RECORD_HEADER..RECORD_HEADER + payload.len()].copy_from_slice(payload);
        flash.program(offset, &record[..RECORD_HEADER + padded(payload.len())])
    }

    /// Appends a record. A ring reuses its oldest sector when the newest is full; a rewrite
    /// journal returns [`JournalError::Full`] and must be compacted with [`Journal::rewrite`].
    pub fn append(&self, flash: &mut impl Flash, tag: u16, payload: &[u8]) -> Result<usize, JournalError> {
        if payload.len() > RECORD_MAX {
            return Err(JournalError::TooLarge);
        }
        let size = RECORD_HEADER + padded(payload.len());
        let (generation, index) = match self.valid(flash).last() {
            Some(&newest) => newest,
            None => {
                // A journal never written: start it in its first sector.
                flash.erase(self.start(flash, 0))?;
                self.write_header(flash, 0, 1)?;
                (1, 0)
            }
        };
        let mut buffer = [0u8; RECORD_MAX];
        let mut end = self.scan(flash, index, &mut buffer, &mut |_| {});
        let mut index = index;
        if end + size > flash.sector_size() {
            if self.mode == Mode::Rewrite {
                return Err(JournalError::Full);
            }
            index = (index + 1) % self.sectors;
            flash.erase(self.start(flash, index))?;
            self.write_header(flash, index, generation.wrapping_add(1))?;
            end = SECTOR_HEADER;
        }
        let offset = self.start(flash, index) + end;
        Self::write_record(flash, offset, tag, payload)?;
        Ok(offset)
    }

    /// Appends a record that supersedes every earlier one (a rewrite journal whose newest
    /// record is its whole state): when the sector is full, a fresh one starts with it.
    pub fn append_latest(
        &self,
        flash: &mut impl Flash,
        tag: u16,
        payload: &[u8],
    ) -> Result<(), JournalError> {
        match self.append(flash, tag, payload) {
            Err(JournalError::Full) => {
                let mut rewrite = self.rewrite(flash)?;
                rewrite.push(flash, tag, payload)?;
                rewrite.finish(flash)
            }
            other => other.map(|_| ()),
        }
    }

    /// Starts copying the live records into a fresh sector (rewrite journals).
    pub fn rewrite(&self, flash: &mut impl Flash) -> Result<Rewrite, JournalError> {
        let (generation, index) = match self.valid(flash).last() {
            Some(&(generation, index)) => (generation.wrapping_add(1), (index + 1) % self.sectors),
            None => (1, 0),
        };
        flash.erase(self.start(flash, index))?;
        Ok(Rewrite { journal: *self, index, generation, end: SECTOR_HEADER })
    }
}

/// A sector being filled by [`Journal::rewrite`]; it becomes the newest only at
/// [`Rewrite::finish`].
pub struct Rewrite {
    journal: Journal,
    index: usize,
    generation: u32,
    end: usize,
}

impl Rewrite {
    pub fn push(&mut self, flash: &mut impl Flash, tag: u16, payload: &[u8]) -> Result<usize, JournalError> {
        if payload.len() > RECORD_MAX {
            return Err(JournalError::TooLarge);
        }
        let size = RECORD_HEADER + padded(payload.len());
        if self.end + size > flash.sector_size() {
            return Err(JournalError::Full);
        }
        let offset = self.journal.start(flash, self.index) + self.end;
        Journal::write_record(flash, offset, tag, payload)?;
        self.end += size;
        Ok(offset)
    }

    /// Writes the header: from now on this sector is the newest.
    pub fn finish(self, flash: &mut impl Flash) -> Result<(), JournalError> {
        Ok(self.journal.write_header(flash, self.index, self.generation)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::MemFlash;
    use alloc::vec::Vec;

    const SECTOR: usize = 256;

    fn entries(journal: &Journal, flash: &MemFlash) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        journal.read(flash, |e| {
            if e.intact {
                out.push((e.tag, e.payload.to_vec()))
            }
        });
        out
    }

    #[test]
    fn records_come_back_in_order() {
        let mut flash = MemFlash::blank(4, SECTOR);
        let journal = Journal::new(SECTOR, 2, Mode::Rewrite);
        assert!(entries(&journal, &flash).is_empty());
        journal.append(&mut flash, 1, b"one").unwrap();
        journal.append(&mut flash, 2, b"").unwrap();
        journal.append(&mut flash, 3, b"three").unwrap();
        assert_eq!(
            entries(&journal, &flash),
            [(1, b"one".to_vec()), (2, Vec::new()), (3, b"three".to_vec())]
        );
        // The first sector of the flash is not the journal's.
        assert!(flash.bytes[..SECTOR].iter().all(|&b| b == 0xff));
    }

    #[test]
    fn a_full_rewrite_journal_is_compacted_into_the_other_sector() {
        let mut flash = MemFlash::blank(2, SECTOR);
        let journal = Journal::new(0, 2, Mode::Rewrite);
        while journal.append(&mut flash, 1, &[7; 40]).is_ok() {}
        assert_eq!(journal.append(&mut flash, 1, &[7; 40]), Err(JournalError::Full));
        let mut rewrite = journal.rewrite(&mut flash).unwrap();
        rewrite.push(&mut flash, 9, b"live").unwrap();
        // Until the new header is written, the full sector is still in force.
        assert_eq!(entries(&journal, &flash).len(), 5);
        rewrite.finish(&mut flash).unwrap();
        assert_eq!(entries(&journal, &flash), [(9, b"live".to_vec())]);
        journal.append(&mut flash, 2, b"more").unwrap();
        assert_eq!(entries(&journal, &flash).len(), 2);
    }

    #[test]
    fn a_ring_drops_its_oldest_sector() {
        let mut flash = MemFlash::blank(2, SECTOR);
        let journal = Journal::new(0, 2, Mode::Ring);
        for n in 0..20u8 {
            journal.append(&mut flash, 1, &[n; 40]).unwrap();
        }
        let kept: Vec<u8> = entries(&journal, &flash).iter().map(|(_, p)| p[0]).collect();
        // Five 48-byte records fit a sector: the last sectors' records survive, in order.
        assert_eq!(kept, [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    }

    #[test]
    fn a_power_cut_at_any_word_keeps_every_complete_record() {
        let journal = Journal::new(0, 2, Mode::Rewrite);
        for cut in 0..200 {
            let mut flash = MemFlash::blank(2, SECTOR);
            flash.budget = Some(cut);
            let mut written = 0;
            for n in 0..12u8 {
                if journal.append_latest(&mut flash, 1, &[n; 30]).is_err() {
                    break;
                }
                written = n as usize + 1;
            }
            flash.budget = None;
            let found = entries(&journal, &flash);
            // The newest completed record is always the last one visible.
            if written > 0 {
                assert_eq!(found.last().unwrap().1[0] as usize, written - 1, "cut after {cut} writes");
            }
            // And the journal keeps working after the cut.
            journal.append_latest(&mut flash, 2, b"after").unwrap();
            assert_eq!(entries(&journal, &flash).last().unwrap().1, b"after");
        }
    }

    #[test]
    fn altered_records_are_flagged_and_damaged_lengths_end_the_scan() {
        let mut flash = MemFlash::blank(2, SECTOR);
        let journal = Journal::new(0, 2, Mode::Ring);
        let first = journal.append(&mut flash, 1, b"abcd").unwrap();
        journal.append(&mut flash, 1, b"efgh").unwrap();
        flash.bytes[first + RECORD_HEADER] ^= 1;
        let mut intact = Vec::new();
        journal.read(&flash, |e| intact.push(e.intact));
        assert_eq!(intact, [false, true]);
        flash.bytes[first] = 0xfe; // length 0x00fe + padding runs past the next record
        flash.bytes[first + 1] = 0x7f;
        let mut count = 0;
        journal.read(&flash, |_| count += 1);
        assert_eq!(count, 0);
        let mut out = [0u8; 8];
        assert_eq!(journal.read_at(&flash, first, &mut out), None);
    }
}
