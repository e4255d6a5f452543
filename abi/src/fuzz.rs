//! Bounded randomized tests of every parser of untrusted bytes in this crate: manifests and
//! app payloads, packages, slots, bundles, journals, failure reports and attestation tokens.
//!
//! Each test starts from a valid encoding and feeds the parser thousands of mutations of it
//! (flipped bytes, overwritten runs, truncations, random lengths) plus random bytes, from a
//! fixed seed, so a failure is reproducible. The parsers must never panic, and whatever a
//! signature or hash covers must never verify once it changed. `SEPTA_FUZZ_ROUNDS`
//! multiplies the rounds (`cargo xtask fuzz` runs them longer).

extern crate std;

use crate::{app, attest, bundle, journal, package, report, slot};
use alloc::vec::Vec;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// `valid` with a few random changes, or random bytes.
    fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut bytes = valid.to_vec();
        match self.below(8) {
            0 => bytes.truncate(self.below(valid.len() + 1)),
            1 => return (0..self.below(2 * valid.len() + 8)).map(|_| self.next() as u8).collect(),
            2 => {
                let at = self.below(bytes.len());
                let run = self.below(16).min(bytes.len() - at);
                let fill = self.next() as u8;
                bytes[at..at + run].fill(fill);
            }
            3 => bytes.extend((0..self.below(64)).map(|_| self.next() as u8)),
            _ => {
                for _ in 0..1 + self.below(4) {
                    let at = self.below(bytes.len());
                    bytes[at] ^= 1 << self.below(8);
                }
            }
        }
        bytes
    }
}

fn encode(value: &impl serde::Serialize) -> Vec<u8> {
    let mut buffer = [0u8; 4096];
    postcard::to_slice(value, &mut buffer).unwrap().to_vec()
}

fn rounds(base: usize) -> usize {
    let factor = std::env::var("SEPTA_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    base * factor
}

fn manifest() -> app::Manifest<'static> {
    app::Manifest {
        name: "fuzzed",
        component_id: [7; 16],
        version: 1,
        priority: 3,
        memory_kib: 96,
        restart: app::Restart::OnFailure,
        serve: Some("svc"),
        call: heapless::Vec::from_slice(&["logger", "net"]).unwrap(),
        devices: heapless::Vec::from_slice(&["rtc"]).unwrap(),
        gpio: heapless::Vec::from_slice(&[3, 4]).unwrap(),
        monitor: heapless::Vec::from_slice(&["random", "storage"]).unwrap(),
        storage_kib: 4,
        connect: heapless::Vec::from_slice(&["devhost:7"]).unwrap(),
        dma_kib: 0,
        stack_kib: 16,
        cpu_budget_ms: 50,
        cpu_period_ms: 100,
    }
}

fn signed_package(key: &SigningKey, kind: package::Kind, id: u8, payload: &[u8]) -> Vec<u8> {
    let key_id = crate::keys::key_id(key.verifying_key());
    let header = package::Header::for_payload(kind, [id; 16], 1, payload, key_id);
    let signature: Signature = key.sign(&header.encode_signed());
    let mut bytes = header.encode(&signature.to_bytes().into()).to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn app_payloads_never_panic_and_what_decodes_is_valid() {
    let valid = app::encode_payload(&manifest(), b"\x7fELF and the rest");
    let mut rng = Rng(1);
    for _ in 0..rounds(20_000) {
        let bytes = rng.mutate(&valid);
        if let Ok((manifest, _)) = app::parse_payload(&bytes) {
            assert_eq!(manifest.validate(), Ok(()));
        }
    }
}

#[test]
fn packages_and_slots_never_panic_and_changed_bytes_never_verify() {
    let key = SigningKey::from_slice(&[3; 32]).unwrap();
    let app = signed_package(&key, package::Kind::App, 3, &app::encode_payload(&manifest(), b"elf"));
    let valid_slot = slot::compose(
        &[
            signed_package(&key, package::Kind::Monitor, 1, &[1; 300]),
            signed_package(&key, package::Kind::Kernel, 2, &[2; 200]),
            app.clone(),
        ],
        &key,
    );
    let mut rng = Rng(2);
    for round in 0..rounds(2_000) {
        let bytes = rng.mutate(&app);
        if let Ok(parsed) = package::Package::parse(&bytes) {
            // Signature checks are slow in a debug build: only some of the mutations.
            let signed = round % 16 == 0 && parsed.verify_signature(key.verifying_key()).is_ok();
            let intact = (round % 16 != 0 || signed) && parsed.verify_payload().is_ok();
            let same_payload = parsed.payload == &app[package::HEADER_LEN..];
            assert!(!intact || same_payload, "a changed payload verified");
            assert!(
                !signed || bytes[..package::HEADER_LEN] == app[..package::HEADER_LEN],
                "a changed header verified"
            );
        }
    }
    let fuses = crate::verify::tests::fuses(&[&key]);
    for round in 0..rounds(5_000) {
        // Change bytes of the slot header and manifest or of one package's header.
        let mut bytes = valid_slot.clone();
        let region = [0, slot::PACKAGE_ALIGN, 3 * slot::PACKAGE_ALIGN][rng.below(3)];
        let window = rng.mutate(&bytes[region..region + package::HEADER_LEN]);
        let end = (region + window.len()).min(bytes.len());
        bytes[region..end].copy_from_slice(&window[..end - region]);
        if let Ok(parsed) = slot::Slot::parse(&bytes) {
            for (_, package) in parsed.packages().flatten() {
                let _ = package.verify_payload();
            }
        }
        // The slot check verifies a signature: only some of the mutations. It covers headers
        // and manifest; payloads are hashed by whoever loads them.
        if round % 32 == 0 && crate::verify::verify(&bytes, &fuses, |_| 0).is_ok() {
            let covered = region..end.min(region + package::HEADER_LEN);
            assert_eq!(bytes[covered.clone()], valid_slot[covered], "a changed slot verified");
        }
    }
}

#[test]
fn bundle_headers_and_images_never_panic() {
    let key = SigningKey::from_slice(&[4; 32]).unwrap();
    let image = slot::compose(
        &[
            signed_package(&key, package::Kind::Monitor, 1, &[1; 100]),
            signed_package(&key, package::Kind::Kernel, 2, &[2; 100]),
        ],
        &key,
    );
    let key_id = crate::keys::key_id(key.verifying_key());
    let mut valid = bundle::encode_signed_part(&image, key_id, &[([1; 16], 1), ([2; 16], 1)]);
    let signature: Signature = key.sign(&valid);
    valid.extend_from_slice(&signature.to_bytes());
    let fuses = crate::verify::tests::fuses(&[&key]);
    let mut rng = Rng(3);
    for round in 0..rounds(3_000) {
        let bytes = rng.mutate(&valid);
        if let Ok(header) = bundle::Header::parse(&bytes) {
            // Signature checks are slow in a debug build: only some of the headers.
            if round % 64 == 0 && header.verify_signature(&fuses).is_ok() {
                assert_eq!(&bytes[..header.len()], &valid[..], "a changed bundle header verified");
            }
            let image = rng.mutate(&image);
            let _ = bundle::check_image(&header, &image, &fuses, |_| 0);
        }
    }
}

#[test]
fn journals_in_random_flash_never_panic() {
    let mut rng = Rng(4);
    let sector = 1024;
    for _ in 0..rounds(2_000) {
        let mut flash = crate::flash::MemFlash::blank(2, sector);
        let journal = journal::Journal::new(0, 2, journal::Mode::Rewrite);
        for _ in 0..rng.below(8) {
            let payload: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
            let _ = journal.append(&mut flash, rng.below(4) as u16, &payload);
        }
        // An attacker's edits: random bytes anywhere, headers included.
        let bytes = rng.mutate(&flash.bytes);
        let mut flash = crate::flash::MemFlash::new(bytes, sector);
        flash.bytes.resize(2 * sector, 0xff);
        let mut seen = 0;
        journal.read(&flash, |entry| seen += entry.payload.len());
        let mut out = [0u8; journal::RECORD_MAX];
        for _ in 0..8 {
            let _ = journal.read_at(&flash, rng.below(3 * sector), &mut out);
        }
        let _ = crate::boot_state::BootState::load(&flash, &journal);
    }
}

#[test]
fn reports_and_attestation_tokens_never_panic_and_changed_ones_never_verify() {
    let device = SigningKey::from_slice(&[5; 32]).unwrap();
    let attestation = SigningKey::from_slice(&[6; 32]).unwrap();
    let record = report::Record {
        component_id: [1; 16],
        name: *b"fuzzed\0\0\0\0\0\0\0\0\0\0",
        kind: report::EndKind::DataAbort,
        pc: 0x10000,
        address: 0,
        exit_code: 0,
        time_ms: 5,
        restart_count: 1,
    };
    let batch = report::Batch {
        first: 0,
        boot_count: 1,
        events: heapless::Vec::from_slice(&[report::Event::App(record)]).unwrap(),
    };
    let signature: Signature = device.sign(&report::digest(&batch).unwrap());
    let signed =
        report::Report { batch, signature: heapless::Vec::from_slice(&signature.to_bytes()).unwrap() };
    let valid_report = encode(&signed);

    let attestation_key = attestation.verifying_key().to_encoded_point(false);
    let certificate: Signature = device.sign(&attest::certificate_message(attestation_key.as_bytes()));
    let claims = attest::Claims {
        device_key: heapless::Vec::from_slice(device.verifying_key().to_encoded_point(false).as_bytes())
            .unwrap(),
        attestation_key: heapless::Vec::from_slice(attestation_key.as_bytes()).unwrap(),
        certificate: heapless::Vec::from_slice(&certificate.to_bytes()).unwrap(),
        nonce: heapless::Vec::from_slice(&[9; 32]).unwrap(),
        measurements: heapless::Vec::new(),
    };
    let signature: Signature = attestation.sign(&attest::claims_digest(&claims).unwrap());
    let token =
        attest::Token { claims, signature: heapless::Vec::from_slice(&signature.to_bytes()).unwrap() };
    let valid_token = encode(&token);
    assert!(report::verify(&valid_report, device.verifying_key()).is_ok());
    assert!(attest::verify(&valid_token, device.verifying_key(), &[9; 32]).is_ok());

    let mut rng = Rng(5);
    // Each verification that gets as far as a signature costs milliseconds in a debug build.
    for _ in 0..rounds(100) {
        let bytes = rng.mutate(&valid_report);
        if report::verify(&bytes, device.verifying_key()).is_ok() {
            let decoded: report::Report = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(decoded, signed, "a changed report verified");
        }
        let bytes = rng.mutate(&valid_token);
        if attest::verify(&bytes, device.verifying_key(), &[9; 32]).is_ok() {
            let decoded: attest::Token = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(decoded, token, "a changed token verified");
        }
    }
}
