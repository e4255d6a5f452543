//! App storage: a key-value store per app, sealed to the device and the app, in a journal
//! in flash 1.
//!
//! Each app's values are encrypted and authenticated with ChaCha20-Poly1305 under a key
//! derived from the sealing CDI and the app's component id — which the kernel supplies, so
//! an app can only ever name its own data. Nothing readable identifies an app or a key in
//! flash: a record carries an owner tag and a key tag (both MACs under the app's key), a
//! random nonce and the sealed value; the tags are also the authenticated data, so a value
//! moved to another key or app fails to open. A put appends a record, a delete appends a
//! tombstone; the newest record of a key wins, and a power cut leaves the previous value in
//! force (see [`septa_abi::journal`]). When the sector fills, the live records are copied
//! into the other sector.
//!
//! Flash 1 is outside the secure world, so a whole older copy of the store (or of one record)
//! could be put back. The store therefore keeps a digest of its live records in secure flash
//! (an [`Anchor`]: the boot state in flash 0): the XOR of one keyed hash per live record,
//! changed with every put and delete. A put first records the digest it is about to reach,
//! then appends, then commits it, so a power cut in between leaves one of two digests that
//! both count. On first use the store recomputes the digest from flash; if it matches
//! neither, the store was rolled back or altered and every request is refused.
//!
//! Every value costs its length plus [`ENTRY_COST`] bytes of the app's quota (the manifest's
//! `storage-kib`); a put beyond it fails and changes nothing. The quotas of an image add up
//! to less than a sector, so compaction always has room.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use septa_abi::flash::Flash;
use septa_abi::journal::{Journal, JournalError, Mode, RECORD_MAX};
use septa_abi::keys;
use septa_abi::monitor::{FAILED, KEY_MAX, NOT_FOUND, QUOTA_EXCEEDED, REFUSED, VALUE_MAX};

/// Where the digest of the store's live records is kept, out of an attacker's reach.
pub trait Anchor {
    /// The committed digest and the one a write in progress is about to reach.
    fn digests(&self) -> ([u8; 32], Option<[u8; 32]>);
    /// Notes `next` as the digest a write is about to reach.
    fn begin(&mut self, next: [u8; 32]) -> Result<(), u32>;
    /// Makes `digest` the committed digest, with no write in progress.
    fn commit(&mut self, digest: [u8; 32]) -> Result<(), u32>;
}

/// A record's share of the store digest.
fn record_hash(seal_cdi: &[u8; 32], payload: &[u8]) -> [u8; 32] {
    let key = keys::hmac(seal_cdi, &[b"septa storage digest"]);
    keys::hmac(&key, &[payload])
}

fn xor(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
    core::array::from_fn(|i| a[i] ^ b[i])
}

/// Quota bytes a value costs beyond its own length (tags, nonce, record header, key).
pub const ENTRY_COST: usize = 64;
/// The most live values in the store: all quotas together, at the smallest value size.
pub const MAX_ENTRIES: usize = septa_abi::app::STORAGE_KIB_TOTAL as usize * 1024 / ENTRY_COST;
const PUT: u16 = 2;
const DELETE: u16 = 3;
const TAGS: usize = 8 + 16;
const NONCE: usize = 12;
const MAC: usize = 16;

/// One live value: whose, which key, where its record is and what it costs.
#[derive(Clone, Copy)]
struct Entry {
    owner: [u8; 8],
    key: [u8; 16],
    offset: usize,
    cost: usize,
}

/// An app's view of the store: its sealing key and the tags derived from it.
struct Sealed {
    cipher: ChaCha20Poly1305,
    owner: [u8; 8],
    key: [u8; 16],
}

impl Sealed {
    fn new(seal_cdi: &[u8; 32], component: &[u8; 16], key: &[u8]) -> Sealed {
        let app_key = keys::hmac(seal_cdi, &[b"septa storage", component]);
        let owner = keys::hmac(&app_key, &[b"owner"]);
        let tag = keys::hmac(&app_key, &[b"key", key]);
        Sealed {
            cipher: ChaCha20Poly1305::new((&app_key).into()),
            owner: owner[..8].try_into().expect("8 bytes"),
            key: tag[..16].try_into().expect("16 bytes"),
        }
    }

    fn tags(&self) -> [u8; TAGS] {
        let mut tags = [0u8; TAGS];
        tags[..8].copy_from_slice(&self.owner);
        tags[8..].copy_from_slice(&self.key);
        tags
    }
}

/// The journal of a store in `sectors` erase sectors from `base`.
pub const fn journal(base: usize, sectors: usize) -> Journal {
    Journal::new(base, sectors, Mode::Rewrite)
}

/// A store's index of the live values in its journal, built on first use. (The index is
/// large: it starts zeroed — in `.bss`, not in the monitor's image — and is only ever
/// changed in place, never moved or copied.)
pub struct Store {
    index: heapless::Vec<Entry, MAX_ENTRIES>,
    indexed: bool,
    /// The digest of the live records, once checked against the anchor.
    digest: [u8; 32],
    trusted: Trust,
}

/// Whether the store matched its anchor. `Unchecked` is the all-zero value, so a `Store::new()`
/// static lands in `.bss` and not in the monitor's image, which the loader hashes at every boot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    Unchecked = 0,
    Trusted,
    /// It did not match (an older or altered copy): the store is refused.
    Refused,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub const fn new() -> Store {
        Store { index: heapless::Vec::new(), indexed: false, digest: [0; 32], trusted: Trust::Unchecked }
    }

    /// Indexes the store and checks it against `anchor` on first use.
    fn open(
        &mut self,
        flash: &impl Flash,
        journal: &Journal,
        seal_cdi: &[u8; 32],
        anchor: &mut impl Anchor,
    ) -> Result<(), u32> {
        if self.trusted == Trust::Unchecked {
            let mut digest = [0u8; 32];
            let mut record = [0u8; RECORD_MAX];
            for entry in self.index(flash, journal).iter() {
                let (_, len) = journal.read_at(flash, entry.offset, &mut record).ok_or(FAILED)?;
                digest = xor(digest, record_hash(seal_cdi, &record[..len]));
            }
            let (committed, pending) = anchor.digests();
            let trusted = digest == committed || Some(digest) == pending;
            if trusted && digest != committed {
                anchor.commit(digest)?;
            }
            self.digest = digest;
            self.trusted = if trusted { Trust::Trusted } else { Trust::Refused };
        }
        if self.trusted == Trust::Trusted { Ok(()) } else { Err(REFUSED) }
    }

    /// Whether the store was found rolled back or altered.
    pub fn refused(&self) -> bool {
        self.trusted == Trust::Refused
    }

    fn index(&mut self, flash: &impl Flash, journal: &Journal) -> &mut heapless::Vec<Entry, MAX_ENTRIES> {
        if !self.indexed {
            self.indexed = true;
            let index = &mut self.index;
            index.clear();
            journal.read(flash, |record| {
                if !record.intact || record.payload.len() < TAGS {
                    return;
                }
                let owner: [u8; 8] = record.payload[..8].try_into().expect("8 bytes");
                let key: [u8; 16] = record.payload[8..TAGS].try_into().expect("16 bytes");
                index.retain(|e: &Entry| (e.owner, e.key) != (owner, key));
                if record.tag == PUT && record.payload.len() >= TAGS + NONCE + MAC {
                    let cost = record.payload.len() - TAGS - NONCE - MAC + ENTRY_COST;
                    let _ = index.push(Entry { owner, key, offset: record.offset, cost });
                }
            });
        }
        &mut self.index
    }

    /// The caller's value under `key`, written into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn get(
        &mut self,
        flash: &impl Flash,
        journal: &Journal,
        seal_cdi: &[u8; 32],
        anchor: &mut impl Anchor,
        component: &[u8; 16],
        key: &[u8],
        out: &mut [u8],
    ) -> Result<usize, u32> {
        self.open(flash, journal, seal_cdi, anchor)?;
        let sealed = Sealed::new(seal_cdi, component, key);
        let entry = *self
            .index(flash, journal)
            .iter()
            .find(|e| (e.owner, e.key) == (sealed.owner, sealed.key))
            .ok_or(NOT_FOUND)?;
        let mut record = [0u8; RECORD_MAX];
        let (_, len) = journal.read_at(flash, entry.offset, &mut record).ok_or(FAILED)?;
        let record = &mut record[..len];
        if len < TAGS + NONCE + MAC || record[..TAGS] != sealed.tags() {
            return Err(FAILED);
        }
        let (tags, rest) = record.split_at_mut(TAGS);
        let (nonce, rest) = rest.split_at_mut(NONCE);
        let (value, mac) = rest.split_at_mut(rest.len() - MAC);
        sealed
            .cipher
            .decrypt_in_place_detached(Nonce::from_slice(nonce), tags, value, Tag::from_slice(mac))
            .map_err(|_| FAILED)?;
        let target = out.get_mut(..value.len()).ok_or(septa_abi::monitor::TOO_LARGE)?;
        target.copy_from_slice(value);
        Ok(value.len())
    }

    /// Stores `value` under the caller's `key` within `quota` bytes; `nonce` must be fresh.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        flash: &mut impl Flash,
        journal: &Journal,
        seal_cdi: &[u8; 32],
        anchor: &mut impl Anchor,
        component: &[u8; 16],
        quota: usize,
        key: &[u8],
        value: &[u8],
        nonce: [u8; NONCE],
    ) -> Result<(), u32> {
        self.open(flash, journal, seal_cdi, anchor)?;
        if key.is_empty() || key.len() > KEY_MAX || value.len() > VALUE_MAX {
            return Err(septa_abi::monitor::BAD_REQUEST);
        }
        let sealed = Sealed::new(seal_cdi, component, key);
        let used: usize = self
            .index(flash, journal)
            .iter()
            .filter(|e| e.owner == sealed.owner && e.key != sealed.key)
            .map(|e| e.cost)
            .sum();
        let cost = value.len() + ENTRY_COST;
        if used + cost > quota {
            return Err(QUOTA_EXCEEDED);
        }
        let mut record = [0u8; TAGS + NONCE + VALUE_MAX + MAC];
        let len = TAGS + NONCE + value.len() + MAC;
        record[..TAGS].copy_from_slice(&sealed.tags());
        record[TAGS..TAGS + NONCE].copy_from_slice(&nonce);
        let (head, rest) = record.split_at_mut(TAGS + NONCE);
        let sealed_value = &mut rest[..value.len()];
        sealed_value.copy_from_slice(value);
        let mac = sealed
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &head[..TAGS], sealed_value)
            .map_err(|_| FAILED)?;
        rest[value.len()..value.len() + MAC].copy_from_slice(&mac);
        let added = record_hash(seal_cdi, &record[..len]);
        self.anchored_write(
            flash,
            journal,
            seal_cdi,
            anchor,
            PUT,
            &record[..len],
            (sealed.owner, sealed.key),
            added,
        )
    }

    /// Deletes the caller's `key`.
    pub fn delete(
        &mut self,
        flash: &mut impl Flash,
        journal: &Journal,
        seal_cdi: &[u8; 32],
        anchor: &mut impl Anchor,
        component: &[u8; 16],
        key: &[u8],
    ) -> Result<(), u32> {
        self.open(flash, journal, seal_cdi, anchor)?;
        let sealed = Sealed::new(seal_cdi, component, key);
        if !self.index(flash, journal).iter().any(|e| (e.owner, e.key) == (sealed.owner, sealed.key)) {
            return Err(NOT_FOUND);
        }
        let id = (sealed.owner, sealed.key);
        self.anchored_write(flash, journal, seal_cdi, anchor, DELETE, &sealed.tags(), id, [0; 32])
    }

    /// [`Store::write`] between announcing and committing the digest it leads to: the
    /// record being replaced (if any) leaves the digest, `added` (a put's hash) joins it.
    #[allow(clippy::too_many_arguments)]
    fn anchored_write(
        &mut self,
        flash: &mut impl Flash,
        journal: &Journal,
        seal_cdi: &[u8; 32],
        anchor: &mut impl Anchor,
        tag: u16,
        record: &[u8],
        id: ([u8; 8], [u8; 16]),
        added: [u8; 32],
    ) -> Result<(), u32> {
        let mut next = xor(self.digest, added);
        if let Some(old) = self.index(flash, journal).iter().find(|e| (e.owner, e.key) == id).copied() {
            let mut bytes = [0u8; RECORD_MAX];
            let (_, len) = journal.read_at(flash, old.offset, &mut bytes).ok_or(FAILED)?;
            next = xor(next, record_hash(seal_cdi, &bytes[..len]));
        }
        anchor.begin(next)?;
        self.write(flash, journal, tag, record, id)?;
        self.digest = next;
        anchor.commit(next)
    }

    /// Appends a record for `id`, compacting first when the sector is full.
    fn write(
        &mut self,
        flash: &mut impl Flash,
        journal: &Journal,
        tag: u16,
        record: &[u8],
        id: ([u8; 8], [u8; 16]),
    ) -> Result<(), u32> {
        match journal.append(flash, tag, record) {
            Ok(offset) => {
                let index = self.index(flash, journal);
                index.retain(|e| (e.owner, e.key) != id);
                if tag == PUT {
                    let cost = record.len() - TAGS - NONCE - MAC + ENTRY_COST;
                    index.push(Entry { owner: id.0, key: id.1, offset, cost }).map_err(|_| FAILED)?;
                }
                Ok(())
            }
            Err(JournalError::Full) => {
                self.compact(flash, journal).map_err(|_| FAILED)?;
                self.write(flash, journal, tag, record, id)
            }
            Err(_) => Err(FAILED),
        }
    }

    /// Copies every live record into a fresh sector, then re-reads the index. (The value
    /// about to be replaced is copied too: until its successor is written, it is the one in
    /// force.)
    fn compact(&mut self, flash: &mut impl Flash, journal: &Journal) -> Result<(), JournalError> {
        self.index(flash, journal);
        self.indexed = false;
        let mut rewrite = journal.rewrite(flash)?;
        let mut record = [0u8; RECORD_MAX];
        for entry in &self.index {
            let Some((tag, len)) = journal.read_at(flash, entry.offset, &mut record) else { continue };
            rewrite.push(flash, tag, &record[..len])?;
        }
        rewrite.finish(flash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use septa_abi::flash::MemFlash;
    extern crate std;
    use std::vec::Vec;

    const SECTOR: usize = 8192;
    const J: Journal = journal(0, 2);
    const SEAL: [u8; 32] = [4; 32];
    const APP: [u8; 16] = [1; 16];
    const OTHER: [u8; 16] = [2; 16];

    /// The boot state's part, in memory.
    #[derive(Default)]
    struct MemAnchor {
        committed: [u8; 32],
        pending: Option<[u8; 32]>,
    }

    impl Anchor for MemAnchor {
        fn digests(&self) -> ([u8; 32], Option<[u8; 32]>) {
            (self.committed, self.pending)
        }
        fn begin(&mut self, next: [u8; 32]) -> Result<(), u32> {
            self.pending = Some(next);
            Ok(())
        }
        fn commit(&mut self, digest: [u8; 32]) -> Result<(), u32> {
            (self.committed, self.pending) = (digest, None);
            Ok(())
        }
    }

    fn get(
        store: &mut Store,
        flash: &MemFlash,
        anchor: &mut MemAnchor,
        app: &[u8; 16],
        key: &[u8],
    ) -> Result<Vec<u8>, u32> {
        let mut out = [0u8; VALUE_MAX];
        let len = store.get(flash, &J, &SEAL, anchor, app, key, &mut out)?;
        Ok(out[..len].to_vec())
    }

    #[test]
    fn values_round_trip_and_survive_a_reload() {
        let mut flash = MemFlash::blank(2, SECTOR);
        let mut anchor = MemAnchor::default();
        let mut store = Store::new();
        store.put(&mut flash, &J, &SEAL, &mut anchor, &APP, 1024, b"greeting", b"hello", [1; 12]).unwrap();
        store
            .put(&mut flash, &J, &SEAL, &mut anchor, &APP, 1024, b"greeting", b"hello again", [2; 12])
            .unwrap();
        assert_eq!(get(&mut store, &flash, &mut anchor, &APP, b"greeting").unwrap(), b"hello again");
        let mut reloaded = Store::new();
        assert_eq!(get(&mut reloaded, &flash, &mut anchor, &APP, b"greeting").unwrap(), b"hello again");
        // Neither the key nor the value is readable in flash.
        let bytes = &flash.bytes;
        assert!(!bytes.windows(5).any(|w| w == b"hello" || w == b"greet"));
        store.delete(&mut flash, &J, &SEAL, &mut anchor, &APP, b"greeting").unwrap();
        assert_eq!(get(&mut store, &flash, &mut anchor, &APP, b"greeting"), Err(NOT_FOUND));
        assert_eq!(store.delete(&mut flash, &J, &SEAL, &mut anchor, &APP, b"greeting"), Err(NOT_FOUND));
    }

    #[test]
    fn apps_and_devices_cannot_read_each_others_values() {
        let mut flash = MemFlash::blank(2, SECTOR);
        let mut anchor = MemAnchor::default();
        let mut store = Store::new();
        store.put(&mut flash, &J, &SEAL, &mut anchor, &APP, 1024, b"secret", b"mine", [1; 12]).unwrap();
        assert_eq!(get(&mut store, &flash, &mut anchor, &OTHER, b"secret"), Err(NOT_FOUND));
        let mut out = [0u8; 16];
        // Another device's store digest does not match this flash at all.
        let other_device =
            Store::new().get(&flash, &J, &[5; 32], &mut MemAnchor::default(), &APP, b"secret", &mut out);
        assert_eq!(other_device, Err(REFUSED));
    }

    #[test]
    fn tampered_values_fail_to_open() {
        let mut flash = MemFlash::blank(2, SECTOR);
        let mut anchor = MemAnchor::default();
        let mut store = Store::new();
        store.put(&mut flash, &J, &SEAL, &mut anchor, &APP, 1024, b"k", b"value", [1; 12]).unwrap();
        // Flip a byte of the sealed value and fix up the journal's (non-secret) check, as an
        // attacker writing flash would.
        let record = 16;
        flash.bytes[record + 8 + TAGS + NONCE] ^= 1;
        let payload = flash.bytes[record + 8..record + 8 + TAGS + NONCE + 5 + MAC].to_vec();
        let check = {
            let mut hash = 0x811c_9dc5u32;
            let len = (payload.len() as u16).to_le_bytes();
            for b in len.iter().chain(&PUT.to_le_bytes()).chain(&payload) {
                hash = (hash ^ *b as u32).wrapping_mul(0x0100_0193);
            }
            hash
        };
        flash.bytes[record + 4..record + 8].copy_from_slice(&check.to_le_bytes());
        assert_eq!(get(&mut Store::new(), &flash, &mut anchor, &APP, b"k"), Err(REFUSED));
    }

    #[test]
    fn a_store_put_back_from_an_older_copy_of_flash_is_refused() {
        let mut flash = MemFlash::blank(2, SECTOR);
        let mut anchor = MemAnchor::default();
        let mut store = Store::new();
        store.put(&mut flash, &J, &SEAL, &mut anchor, &APP, 1024, b"boots", b"1", [1; 12]).unwrap();
        let older = flash.bytes.clone();
        store.put(&mut flash, &J, &SEAL, &mut anchor, &APP, 1024, b"boots", b"2", [2; 12]).unwrap();
        store.put(&mut flash, &J, &SEAL, &mut anchor, &OTHER, 1024, b"x", b"y", [3; 12]).unwrap();
        assert_eq!(get(&mut Store::new(), &flash, &mut anchor, &APP, b"boots").unwrap(), b"2");
        let current = flash.bytes.clone();
        flash.bytes = older;
        let mut replayed = Store::new();
        assert_eq!(get(&mut replayed, &flash, &mut anchor, &APP, b"boots"), Err(REFUSED));
        assert!(replayed.refused());
        let put = replayed.put(&mut flash, &J, &SEAL, &mut anchor, &APP, 1024, b"boots", b"9", [4; 12]);
        assert_eq!(put, Err(REFUSED));
        // The current store still opens, and a delete moves the digest too.
        flash.bytes = current;
        let mut store = Store::new();
        store.delete(&mut flash, &J, &SEAL, &mut anchor, &OTHER, b"x").unwrap();
        assert_eq!(get(&mut Store::new(), &flash, &mut anchor, &OTHER, b"x"), Err(NOT_FOUND));
    }

    #[test]
    fn the_quota_is_enforced_and_a_refused_put_changes_nothing() {
        let mut flash = MemFlash::blank(2, SECTOR);
        let mut anchor = MemAnchor::default();
        let mut store = Store::new();
        let quota = 2 * (100 + ENTRY_COST);
        store.put(&mut flash, &J, &SEAL, &mut anchor, &APP, quota, b"a", &[1; 100], [1; 12]).unwrap();
        store.put(&mut flash, &J, &SEAL, &mut anchor, &APP, quota, b"b", &[2; 100], [2; 12]).unwrap();
        assert_eq!(
            store.put(&mut flash, &J, &SEAL, &mut anchor, &APP, quota, b"c", &[3; 1], [3; 12]),
            Err(QUOTA_EXCEEDED)
        );
        // Replacing a value counts only the new size.
        store.put(&mut flash, &J, &SEAL, &mut anchor, &APP, quota, b"b", &[4; 100], [4; 12]).unwrap();
        assert_eq!(get(&mut store, &flash, &mut anchor, &APP, b"b").unwrap(), [4; 100]);
        assert_eq!(get(&mut store, &flash, &mut anchor, &APP, b"c"), Err(NOT_FOUND));
        // Another app has its own quota.
        store.put(&mut flash, &J, &SEAL, &mut anchor, &OTHER, quota, b"a", &[5; 100], [5; 12]).unwrap();
    }

    #[test]
    fn compaction_keeps_every_live_value_and_a_cut_anywhere_keeps_the_old_value() {
        for cut in (0..3000).step_by(37) {
            let mut flash = MemFlash::blank(2, SECTOR);
            let mut anchor = MemAnchor::default();
            let mut store = Store::new();
            store.put(&mut flash, &J, &SEAL, &mut anchor, &OTHER, 4096, b"other", b"kept", [9; 12]).unwrap();
            flash.budget = Some(cut);
            let mut last = None;
            for n in 0..200u32 {
                let value = n.to_le_bytes().repeat(16);
                let nonce = [n as u8; 12];
                if store
                    .put(&mut flash, &J, &SEAL, &mut anchor, &APP, 4096, b"counter", &value, nonce)
                    .is_err()
                {
                    break;
                }
                last = Some(value);
            }
            flash.budget = None;
            let mut reloaded = Store::new();
            let found = get(&mut reloaded, &flash, &mut anchor, &APP, b"counter").ok();
            // Either the last acknowledged value, or the one being written when the power
            // went (its record was complete).
            match (&last, &found) {
                (Some(last), Some(found)) => {
                    let n = u32::from_le_bytes(last[..4].try_into().unwrap());
                    let f = u32::from_le_bytes(found[..4].try_into().unwrap());
                    assert!(f == n || f == n + 1, "cut {cut}: found {f}, last {n}");
                }
                (None, found) => assert!(found.as_ref().is_none_or(|f| f[..4] == [0, 0, 0, 0])),
                (Some(_), None) => panic!("cut {cut}: the value is gone"),
            }
            assert_eq!(
                get(&mut reloaded, &flash, &mut anchor, &OTHER, b"other").unwrap(),
                b"kept",
                "cut {cut}"
            );
        }
    }
}
