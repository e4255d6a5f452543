//! What the monitor keeps in flash: the boot state (flash 0), and in flash 1 the update
//! staging area and image slots, app storage, the failure-report ring and the device
//! certificates.
//!
//! The monitor is the only writer of either flash once the loader has handed over. Updates
//! arrive in three steps from an app holding the `update` capability: `UpdateBegin` checks
//! the bundle header's signature at once (a bundle from a stranger is refused before a
//! byte is staged) and erases the staging area; `UpdateWrite` programs the slot image into
//! staging strictly in order; `UpdateCommit` checks the whole image exactly as the loader
//! will, copies it into the inactive slot, reads the copy back, and only then marks the slot
//! pending in the boot state. The active slot is never written, so a refused bundle or a
//! power cut at any point leaves the device booting what it booted before.

use crate::services::State;
use crate::storage::Store;
use core::fmt::Write;
use septa_abi::boot_state::{self, BootState, RollbackReason, StageError};
use septa_abi::bundle::{self, HEADER_MAX, Header};
use septa_abi::device_auth;
use septa_abi::flash::Flash;
use septa_abi::journal::{Journal, Mode};
use septa_abi::monitor::{
    ALREADY_INSTALLED, BAD_REQUEST, BUSY, FAILED, NOT_FOUND, REFUSED, TOO_LARGE, UPDATE_CHUNK_MAX,
};
use septa_abi::report::{self, Batch, Event};
use septa_targets::board;

/// A line for the console, which the entry code prints after the call.
pub type Message = heapless::String<160>;

/// Offsets in flash 1 of the board's regions.
const fn in_flash1(region: septa_targets::Region) -> usize {
    region.base - board::FLASH1.base
}

const STAGING: usize = in_flash1(board::STAGING);

/// An update being received.
struct Session {
    header: heapless::Vec<u8, HEADER_MAX>,
    received: usize,
}

/// The flashes and what the monitor keeps in them.
pub struct Persistent<F: Flash> {
    flash0: F,
    flash1: F,
    boot_journal: Journal,
    pub boot: BootState,
    /// The security versions this boot's packages were verified at.
    booted_versions: heapless::Vec<([u8; 16], u32), { septa_abi::handoff::MAX_RECORDS }>,
    session: Option<Session>,
    storage: Journal,
    reports: Journal,
    certificates: Journal,
    /// Sequence number of the next report event this boot.
    sequence: u64,
    /// What the console should show about the last call.
    pub message: Option<Message>,
}

fn message(args: core::fmt::Arguments<'_>) -> Option<Message> {
    let mut text = Message::new();
    let _ = text.write_fmt(args);
    Some(text)
}

impl<F: Flash> Persistent<F> {
    /// Takes the flashes.
    pub const fn new(flash0: F, flash1: F) -> Self {
        const fn sectors(region: septa_targets::Region) -> usize {
            region.size / board::FLASH_SECTOR
        }
        Persistent {
            flash0,
            flash1,
            boot_journal: BootState::journal(board::BOOT_STATE.base - board::FLASH0.base, 2),
            boot: BootState::factory(),
            booted_versions: heapless::Vec::new(),
            session: None,
            storage: crate::storage::journal(in_flash1(board::STORAGE), sectors(board::STORAGE)),
            reports: Journal::new(in_flash1(board::REPORTS), sectors(board::REPORTS), Mode::Ring),
            certificates: device_auth::journal(in_flash1(board::DEVICE_CERTS), sectors(board::DEVICE_CERTS)),
            sequence: 0,
            message: None,
        }
    }

    /// Reads the boot state the loader stored and notes the versions this boot verified.
    pub fn start(&mut self, booted_versions: impl IntoIterator<Item = ([u8; 16], u32)>) {
        self.boot = BootState::load(&self.flash0, &self.boot_journal);
        self.booted_versions = booted_versions.into_iter().collect();
    }

    fn save(&mut self) -> Result<(), u32> {
        self.boot.store(&mut self.flash0, &self.boot_journal).map_err(|_| FAILED)
    }

    /// Signs `batch` (stamped with this boot's count and the monitor's sequence numbers),
    /// appends the report to the ring and writes it into `out`.
    pub fn store_report(
        &mut self,
        state: &mut State,
        mut batch: Batch,
        out: &mut [u8],
    ) -> Result<usize, u32> {
        batch.boot_count = self.boot.boot_count;
        batch.first = self.sequence;
        self.sequence += batch.events.len() as u64;
        let report = state.sign_report(batch)?;
        let len = postcard::to_slice(&report, out).map_err(|_| TOO_LARGE)?.len();
        self.reports.append(&mut self.flash1, report::RING_TAG, &out[..len]).map_err(|_| FAILED)?;
        Ok(len)
    }

    /// `ReportRead`: a copy of the oldest signed report of the ring whose batch comes after
    /// `after` (boot count, first sequence number). Only intact records that decode as a
    /// report count; the agent gets nothing but the bytes the monitor signed and stored.
    pub fn read_report(&self, after: Option<(u32, u64)>, out: &mut [u8]) -> Result<usize, u32> {
        let mut found: Option<((u32, u64), usize)> = None;
        self.reports.read(&self.flash1, |entry| {
            if entry.tag != report::RING_TAG || !entry.intact {
                return;
            }
            let Ok(report) = postcard::from_bytes::<report::Report>(entry.payload) else { return };
            let key = (report.batch.boot_count, report.batch.first);
            let newer = after.is_none_or(|after| key > after);
            if newer && found.is_none_or(|(best, _)| key < best) {
                found = Some((key, entry.offset));
            }
        });
        let (_, offset) = found.ok_or(NOT_FOUND)?;
        let mut record = [0u8; septa_abi::journal::RECORD_MAX];
        let (_, len) = self.reports.read_at(&self.flash1, offset, &mut record).ok_or(FAILED)?;
        out.get_mut(..len).ok_or(TOO_LARGE)?.copy_from_slice(&record[..len]);
        Ok(len)
    }

    /// Puts an update outcome the boot state still holds into the report ring.
    pub fn report_update_event(&mut self, state: &mut State, time_ms: u64) {
        let Some(event) = self.boot.unreported else { return };
        let batch = Batch {
            first: 0,
            boot_count: 0,
            events: heapless::Vec::from_slice(&[Event::Update { event, time_ms }]).expect("one event"),
        };
        let mut out = [0u8; 512];
        if self.store_report(state, batch, &mut out).is_ok() {
            self.boot.unreported = None;
            let _ = self.save();
        }
    }

    /// `CONFIRM_BOOT`: ends a trial; the minimums rise to the booted versions.
    pub fn confirm(&mut self, state: &mut State, time_ms: u64) -> bool {
        let versions = self.booted_versions.clone();
        if !self.boot.confirm(versions) {
            return false;
        }
        if self.save().is_err() {
            self.message = message(format_args!("cannot record the confirmation in flash"));
            return false;
        }
        if let Some(event) = self.boot.unreported {
            self.message = message(format_args!("{event}; minimum security versions raised"));
        }
        self.report_update_event(state, time_ms);
        true
    }

    /// `TRIAL_FAILED` or the watchdog: records why the trial ends; the caller resets. False
    /// if no trial runs.
    pub fn end_trial(&mut self, reason: RollbackReason) -> bool {
        if !self.boot.abandon_trial(reason) {
            return false;
        }
        let _ = self.save();
        if let Some(event) = self.boot.unreported {
            self.message = message(format_args!("{event}; resetting into the previous slot"));
        }
        true
    }

    /// `UpdateBegin`: checks the header and prepares the staging area.
    pub fn update_begin(&mut self, state: &State, header: &[u8]) -> Result<usize, u32> {
        self.session = None;
        let parsed = Header::parse(header).map_err(|e| self.refuse(e))?;
        if parsed.len() != header.len() {
            return Err(BAD_REQUEST);
        }
        let trust = state.trust().ok_or(FAILED)?;
        parsed.verify_signature(trust).map_err(|e| self.refuse(e))?;
        if parsed.image_len > board::STAGING.size || parsed.image_len > board::SLOT_A.size {
            return Err(self.refuse(bundle::Error::Truncated));
        }
        match self.boot.clone().prepare_stage(&parsed.digest) {
            Err(StageError::TrialRunning) => return Err(BUSY),
            Err(StageError::AlreadyInstalled) => return Err(ALREADY_INSTALLED),
            Err(StageError::RolledBack) => {
                self.message = message(format_args!("update refused: it was rolled back before"));
                return Err(REFUSED);
            }
            Ok(_) => {}
        }
        erase(&mut self.flash1, STAGING, parsed.image_len)?;
        self.session = Some(Session {
            header: heapless::Vec::from_slice(header).map_err(|_| BAD_REQUEST)?,
            received: 0,
        });
        Ok(0)
    }

    /// `UpdateWrite`: the next chunk of the slot image.
    pub fn update_write(&mut self, offset: u32, data: &[u8]) -> Result<usize, u32> {
        let session = self.session.as_mut().ok_or(BUSY)?;
        let header = Header::parse(&session.header).map_err(|_| FAILED)?;
        let end = session.received + data.len();
        let last = end == header.image_len;
        if offset as usize != session.received
            || data.len() > UPDATE_CHUNK_MAX
            || end > header.image_len
            || (!last && !data.len().is_multiple_of(4))
        {
            return Err(BAD_REQUEST);
        }
        // The last chunk is padded with erased bytes to whole words.
        let mut words = [0xffu8; UPDATE_CHUNK_MAX + 3];
        words[..data.len()].copy_from_slice(data);
        let len = data.len().div_ceil(4) * 4;
        self.flash1.program(STAGING + session.received, &words[..len]).map_err(|_| FAILED)?;
        session.received = end;
        Ok(0)
    }

    /// `UpdateCommit`: checks the staged bundle and installs it into the inactive slot as
    /// pending. On success the caller resets the device.
    pub fn update_commit(&mut self, state: &State) -> Result<usize, u32> {
        let session = self.session.take().ok_or(BUSY)?;
        let header = Header::parse(&session.header).map_err(|_| FAILED)?;
        let trust = state.trust().ok_or(FAILED)?;
        let image = self.flash1.slice(STAGING, session.received).map_err(|_| FAILED)?;
        let boot = &self.boot;
        let checked = bundle::check_image(&header, image, trust, |id| boot.minimum(id));
        if let Err(error) = checked {
            return Err(self.refuse(error));
        }
        let slot = self.boot.prepare_stage(&header.digest).map_err(|_| BUSY)?;
        // From here until `stage`, the boot state names no pending slot: a cut while the
        // slot is written leaves nothing half-written to try.
        self.save()?;
        let target = in_flash1(board::SLOTS[slot as usize]);
        erase(&mut self.flash1, target, header.image_len)?;
        let mut chunk = [0u8; 4096];
        for at in (0..header.image_len).step_by(chunk.len()) {
            let len = chunk.len().min(header.image_len - at);
            let words = len.div_ceil(4) * 4;
            chunk[..words].fill(0xff);
            self.flash1.read(STAGING + at, &mut chunk[..len]).map_err(|_| FAILED)?;
            self.flash1.program(target + at, &chunk[..words]).map_err(|_| FAILED)?;
        }
        let staged = self.flash1.slice(STAGING, header.image_len).map_err(|_| FAILED)?;
        if self.flash1.slice(target, header.image_len).map_err(|_| FAILED)? != staged {
            self.message =
                message(format_args!("update refused: slot {} did not read back", boot_state::name(slot)));
            return Err(FAILED);
        }
        self.boot.stage(header.digest);
        self.save()?;
        self.message = message(format_args!(
            "update verified and installed in slot {}; it boots on trial after the reset",
            boot_state::name(slot)
        ));
        Ok(0)
    }

    fn refuse(&mut self, error: bundle::Error) -> u32 {
        self.message = message(format_args!("update refused: {error}"));
        REFUSED
    }

    /// Serves an app's request for one of the services that use flash
    /// ([`Service::uses_flash`]): `caller` is its component id, `quota` its storage quota in
    /// bytes; `store` is the index of app storage.
    ///
    /// [`Service::uses_flash`]: septa_abi::monitor::Service::uses_flash
    #[allow(clippy::too_many_arguments)]
    pub fn serve(
        &mut self,
        state: &mut State,
        store: &mut Store,
        service: u32,
        caller: &[u8; 16],
        quota: usize,
        request: &[u8],
        out: &mut [u8],
    ) -> Result<usize, u32> {
        use septa_abi::monitor::Request;
        match crate::services::decode(service, request)? {
            Request::UpdateBegin { header } => self.update_begin(state, header),
            Request::UpdateWrite { offset, data } => self.update_write(offset, data),
            Request::UpdateCommit => self.update_commit(state),
            request @ (Request::StorageGet { .. }
            | Request::StoragePut { .. }
            | Request::StorageDelete { .. }) => self.storage(state, store, caller, quota, request, out),
            Request::ReportRead { after } => self.read_report(after, out),
            Request::DeviceCertificate => {
                device_auth::current(&self.flash1, &self.certificates, out).ok_or(NOT_FOUND)
            }
            Request::DeviceCertificateInstall { certificate } => {
                if !device_auth::is_certificate_for(certificate, &state.device_public_key()) {
                    self.message = message(format_args!(
                        "septa: monitor: refused a device certificate that is not for the device key"
                    ));
                    return Err(REFUSED);
                }
                device_auth::install(&mut self.flash1, &self.certificates, certificate)
                    .map_err(|_| FAILED)?;
                self.message = message(format_args!("septa: monitor: installed a new device certificate"));
                Ok(0)
            }
            // The other services keep nothing in flash: `State::handle` serves them.
            _ => Err(BAD_REQUEST),
        }
    }
}

impl<F: Flash> Persistent<F> {
    /// Serves a storage request, anchored to the digest in the boot state; says so on the
    /// console when the store is found rolled back or altered.
    fn storage(
        &mut self,
        state: &mut State,
        store: &mut Store,
        caller: &[u8; 16],
        quota: usize,
        request: septa_abi::monitor::Request<'_>,
        out: &mut [u8],
    ) -> Result<usize, u32> {
        use septa_abi::monitor::Request;
        let seal = *state.seal_cdi();
        let was_refused = store.refused();
        let mut anchor =
            BootAnchor { boot: &mut self.boot, flash0: &mut self.flash0, journal: &self.boot_journal };
        let (flash, journal) = (&mut self.flash1, &self.storage);
        let result = match request {
            Request::StorageGet { key } => store.get(flash, journal, &seal, &mut anchor, caller, key, out),
            Request::StoragePut { key, value } => {
                let nonce = state.nonce()?;
                store.put(flash, journal, &seal, &mut anchor, caller, quota, key, value, nonce).map(|_| 0)
            }
            Request::StorageDelete { key } => {
                store.delete(flash, journal, &seal, &mut anchor, caller, key).map(|_| 0)
            }
            _ => Err(BAD_REQUEST),
        };
        if store.refused() && !was_refused {
            self.message = message(format_args!(
                "app storage refused: it does not match its digest in secure flash (an older or altered copy)"
            ));
        }
        result
    }
}

/// App storage's digest in the boot state, in secure flash 0.
struct BootAnchor<'a, F: Flash> {
    boot: &'a mut BootState,
    flash0: &'a mut F,
    journal: &'a Journal,
}

impl<F: Flash> crate::storage::Anchor for BootAnchor<'_, F> {
    fn digests(&self) -> ([u8; 32], Option<[u8; 32]>) {
        (self.boot.storage_digest, self.boot.storage_pending)
    }

    fn begin(&mut self, next: [u8; 32]) -> Result<(), u32> {
        self.boot.storage_pending = Some(next);
        self.boot.store(self.flash0, self.journal).map_err(|_| FAILED)
    }

    fn commit(&mut self, digest: [u8; 32]) -> Result<(), u32> {
        (self.boot.storage_digest, self.boot.storage_pending) = (digest, None);
        self.boot.store(self.flash0, self.journal).map_err(|_| FAILED)
    }
}

/// Erases the sectors holding `len` bytes from `offset`.
fn erase(flash: &mut impl Flash, offset: usize, len: usize) -> Result<(), u32> {
    let sector = flash.sector_size();
    for at in (offset..offset + len).step_by(sector) {
        flash.erase(at).map_err(|_| FAILED)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use septa_abi::flash::MemFlash;
    use septa_abi::handoff::Handoff;
    use septa_abi::report::{EndKind, Record, Report};
    use std::vec::Vec;

    fn flashes() -> Persistent<MemFlash> {
        let flash = |size| MemFlash::new(std::vec![0xff; size], board::FLASH_SECTOR);
        Persistent::new(flash(board::FLASH0.size), flash(board::FLASH1.size))
    }

    fn state() -> State {
        let mut handoff = Handoff::empty();
        handoff.cdi = [1; 32];
        handoff.identity_seed = [2; 32];
        let mut state = State::new(&handoff);
        state.seed(&[5; 32]);
        state
    }

    fn exit(code: i32) -> Batch {
        let record = Record {
            component_id: [3; 16],
            name: [b'x'; 16],
            kind: EndKind::Exit,
            pc: 0,
            address: 0,
            exit_code: code,
            time_ms: 10,
            restart_count: 0,
        };
        Batch { first: 0, boot_count: 0, events: heapless::Vec::from_slice(&[Event::App(record)]).unwrap() }
    }

    fn read(p: &Persistent<MemFlash>, after: Option<(u32, u64)>) -> Result<Report, u32> {
        let mut out = [0u8; 1024];
        let len = p.read_report(after, &mut out)?;
        Ok(postcard::from_bytes(&out[..len]).unwrap())
    }

    #[test]
    fn reports_are_read_in_order_after_a_cursor_and_the_ring_is_left_alone() {
        let (mut p, mut s) = (flashes(), state());
        assert_eq!(read(&p, None).err(), Some(NOT_FOUND));
        let mut stored = Vec::new();
        for (boot, code) in [(1, 1), (1, 2), (2, 3)] {
            p.boot.boot_count = boot;
            if boot == 2 {
                p.sequence = 0; // a new boot numbers its events from 0 again
            }
            let mut out = [0u8; 1024];
            let len = p.store_report(&mut s, exit(code), &mut out).unwrap();
            stored.push(out[..len].to_vec());
        }
        let mut cursor = None;
        for expected in &stored {
            let mut out = [0u8; 1024];
            let len = p.read_report(cursor, &mut out).unwrap();
            assert_eq!(&out[..len], &expected[..], "a byte-for-byte copy of the signed record");
            let report: Report = postcard::from_bytes(&out[..len]).unwrap();
            cursor = Some((report.batch.boot_count, report.batch.first));
        }
        assert_eq!(read(&p, cursor).err(), Some(NOT_FOUND));
        // Reading moved nothing: from the start, the first report again.
        assert_eq!(read(&p, None).unwrap().batch.boot_count, 1);
        let mut small = [0u8; 8];
        assert_eq!(p.read_report(None, &mut small), Err(TOO_LARGE));
    }

    mod power_cuts {
        //! The update protocol (`UpdateBegin`, `UpdateWrite`, `UpdateCommit`) with the power
        //! cut after every single flash operation — each programmed word and each erased
        //! sector — followed by what the loader does at the next reset.

        use super::*;
        use p256::ecdsa::SigningKey;
        use p256::ecdsa::signature::Signer;
        use septa_abi::fuses::Fuses;
        use septa_abi::package::{Header as PackageHeader, Kind};
        use septa_abi::{keys, slot, verify};

        fn oem() -> SigningKey {
            SigningKey::from_slice(&[7; 32]).unwrap()
        }

        fn fuses() -> Fuses {
            let point = oem().verifying_key().to_encoded_point(false);
            Fuses {
                device_secret: [0; 32],
                oem_keys: heapless::Vec::from_slice(&[heapless::Vec::from_slice(point.as_bytes()).unwrap()])
                    .unwrap(),
                revoked: heapless::Vec::new(),
                minimum_versions: heapless::Vec::new(),
            }
        }

        fn trusted_state() -> State {
            let mut handoff = Handoff::empty();
            handoff.cdi = [1; 32];
            let len = postcard::to_slice(&fuses(), &mut handoff.trust).unwrap().len();
            handoff.trust_len = len as u32;
            let mut state = State::new(&handoff);
            state.seed(&[5; 32]);
            state
        }

        /// A slot image of a monitor, a kernel and an app, all at `version`.
        fn slot_image(version: u32) -> Vec<u8> {
            let key = oem();
            let package = |kind, id: u8, len| {
                let payload = std::vec![id ^ version as u8; len];
                let kid = keys::key_id(key.verifying_key());
                let header = PackageHeader::for_payload(kind, [id; 16], version, &payload, kid);
                let signature: p256::ecdsa::Signature = key.sign(&header.encode_signed());
                let mut bytes = header.encode(&signature.to_bytes().into()).to_vec();
                bytes.extend_from_slice(&payload);
                bytes
            };
            slot::compose(
                &[
                    package(Kind::Monitor, 1, 3000),
                    package(Kind::Kernel, 2, 2000),
                    package(Kind::App, 3, 500),
                ],
                &key,
            )
        }

        /// Slot A as the factory wrote it (made once: signing is slow in a test build).
        fn factory_image() -> &'static [u8] {
            static IMAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            IMAGE.get_or_init(|| slot_image(1))
        }

        fn bundle(version: u32) -> Vec<u8> {
            let image = slot_image(version);
            let components = [([1; 16], version), ([2; 16], version), ([3; 16], version)];
            let key = oem();
            let mut out = bundle::encode_signed_part(&image, keys::key_id(key.verifying_key()), &components);
            let signature: p256::ecdsa::Signature = key.sign(&out);
            out.extend_from_slice(&signature.to_bytes());
            out.extend_from_slice(&image);
            out
        }

        /// A factory-new device: slot A holds version 1, every other region is erased.
        fn device() -> Persistent<MemFlash> {
            let mut p = flashes();
            let image = factory_image();
            let at = in_flash1(board::SLOT_A);
            p.flash1.bytes[at..at + image.len()].copy_from_slice(image);
            p
        }

        /// Back to the factory state: the regions an update writes erased again.
        fn factory_reset(p: &mut Persistent<MemFlash>) {
            let boot = board::BOOT_STATE.base - board::FLASH0.base;
            p.flash0.bytes[boot..boot + board::BOOT_STATE.size].fill(0xff);
            for region in [board::STAGING, board::SLOT_B] {
                let at = in_flash1(region);
                p.flash1.bytes[at..at + board::FLASH_SECTOR].fill(0xff);
            }
            (p.flash0.budget, p.flash1.budget) = (None, None);
            p.boot = BootState::factory();
            p.session = None;
        }

        /// Flash operations (words programmed, sectors erased) of flash 0 and flash 1 since
        /// both budgets were set to `start`.
        fn spent(p: &Persistent<MemFlash>, start: usize) -> (usize, usize) {
            (start - p.flash0.budget.unwrap(), start - p.flash1.budget.unwrap())
        }

        /// The whole update through the monitor's three calls, as the updater app sends it.
        fn update(p: &mut Persistent<MemFlash>, state: &State, bundle: &[u8]) -> Result<(), u32> {
            let header_len = Header::parse(bundle).unwrap().len();
            p.update_begin(state, &bundle[..header_len])?;
            let image = &bundle[header_len..];
            for (index, chunk) in image.chunks(UPDATE_CHUNK_MAX & !3).enumerate() {
                p.update_write((index * (UPDATE_CHUNK_MAX & !3)) as u32, chunk)?;
            }
            p.update_commit(state).map(|_| ())
        }

        /// A reset: the loader's decision, recorded as the loader records it, then the check of
        /// the slot it boots (slot A, never written, by comparison with the factory image).
        /// Returns the slot and whether it runs on trial.
        fn reset(p: &mut Persistent<MemFlash>) -> (u8, bool) {
            (p.flash0.budget, p.flash1.budget) = (None, None);
            p.session = None;
            let mut boot = BootState::load(&p.flash0, &p.boot_journal);
            let slot = boot.next_boot();
            boot.store(&mut p.flash0, &p.boot_journal).unwrap();
            let region = in_flash1(board::SLOTS[slot as usize]);
            let flash = p.flash1.slice(region, board::SLOT_A.size).unwrap();
            if slot == 0 {
                let factory = factory_image();
                assert_eq!(&flash[..factory.len()], factory, "slot A changed");
                p.start(core::iter::empty());
                return (slot, boot.trying.is_some());
            }
            let version = {
                let verified = verify::verify(flash, &fuses(), |id| boot.minimum(id))
                    .unwrap_or_else(|e| panic!("slot {} does not boot: {e}", boot_state::name(slot)));
                verified.check_payloads().unwrap();
                verified.kernel().package.header.security_version
            };
            assert_eq!(version, if slot == 0 { 1 } else { 2 }, "slot {slot} holds version {version}");
            p.start(core::iter::empty());
            (slot, boot.trying.is_some())
        }

        #[test]
        fn a_power_cut_at_every_flash_word_leaves_a_device_that_boots_and_can_update_again() {
            let state = trusted_state();
            let bundle = bundle(2);
            let header_len = Header::parse(&bundle).unwrap().len();
            let image_words = (bundle.len() - header_len).div_ceil(4);
            let mut p = device();
            let factory = p.flash1.slice(in_flash1(board::SLOT_A), board::SLOT_A.size).unwrap();
            verify::verify(factory, &fuses(), |_| 0).unwrap().check_payloads().unwrap();

            // Uninterrupted, counting the flash operations.
            const PLENTY: usize = usize::MAX / 2;
            (p.flash0.budget, p.flash1.budget) = (Some(PLENTY), Some(PLENTY));
            update(&mut p, &state, &bundle).unwrap();
            let (ops0, ops1) = spent(&p, PLENTY);
            assert_eq!(reset(&mut p), (1, true), "the whole update boots slot B on trial");
            // Flash 1: staging erased (one sector), every word staged, slot B erased, every
            // word copied. Flash 0: two boot-state records (no pending slot; slot B pending).
            assert_eq!(ops1, 2 * (1 + image_words), "flash 1 operations");
            assert!(ops0 >= 2, "flash 0 operations: {ops0}");

            // Any flash error ends the call that met it, as the power cut would end everything:
            // cutting each flash after each of its operations covers every cut point.
            let mut phases = std::collections::BTreeMap::new();
            for (bank, ops) in [(1, ops1), (0, ops0)] {
                for cut in 0..ops {
                    factory_reset(&mut p);
                    if bank == 0 {
                        p.flash0.budget = Some(cut);
                    } else {
                        p.flash1.budget = Some(cut);
                    }
                    let result = update(&mut p, &state, &bundle);
                    let phase = match (bank, cut) {
                        (1, 0) => "erasing staging",
                        (1, c) if c <= image_words => "staging the image",
                        (1, c) if c == image_words + 1 => "erasing slot B",
                        (1, _) => "copying into slot B",
                        _ => "writing the boot state",
                    };
                    *phases.entry(phase).or_insert(0) += 1;
                    assert_eq!(result, Err(FAILED), "flash {bank}, cut {cut} ({phase})");
                    // The last word of the last boot-state record is the last write of the
                    // update: every cut before it boots slot A, exactly as before.
                    assert_eq!(reset(&mut p), (0, false), "flash {bank}, cut {cut} ({phase})");
                    // And the same update goes through from the start (checked at the edges
                    // of each phase, for every boot-state word and for every 61st word).
                    let edge = bank == 0
                        || cut % 61 == 0
                        || [1, image_words, image_words + 1, image_words + 2]
                            .iter()
                            .any(|e| cut.abs_diff(*e) <= 1);
                    if !edge {
                        continue;
                    }
                    update(&mut p, &state, &bundle)
                        .unwrap_or_else(|e| panic!("flash {bank}, cut {cut} ({phase}): retry: {e}"));
                    assert_eq!(
                        reset(&mut p),
                        (1, true),
                        "flash {bank}, cut {cut} ({phase}): after the retry"
                    );
                }
            }
            let expected = [
                ("copying into slot B", image_words),
                ("erasing slot B", 1),
                ("erasing staging", 1),
                ("staging the image", image_words),
                ("writing the boot state", ops0),
            ];
            assert_eq!(phases.into_iter().collect::<Vec<_>>(), expected);
        }
    }
}
