//! The service's decisions, as plain functions over values: which release a set of
//! measurements is, whether an uploaded bundle is genuine, how a phased rollout proceeds,
//! what a deployment target's status becomes after an attestation, and how failure records
//! group into issues. Nothing here touches the database or the network, so every rule is
//! host-tested on its own.

use p256::ecdsa::VerifyingKey;
use septa_abi::attest::{self, Claims, Measurement, Token};
use septa_abi::bundle;
use septa_abi::fuses::Fuses;
use septa_abi::report::{EndKind, Event};
use septa_abi::slot::Slot;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The loader's measurement kind: the boot ROM is not part of a release (bundles never
/// replace it), so it does not take part in matching.
const LOADER: u8 = 0;

/// The fingerprint of a set of measurements: SHA-256 over the sorted (component id, digest)
/// pairs of everything but the loader. A token and a release match when their fingerprints
/// are equal: the device booted exactly the packages of that release.
pub fn fingerprint(measurements: impl IntoIterator<Item = ([u8; 16], [u8; 32])>) -> String {
    let mut pairs: Vec<_> = measurements.into_iter().collect();
    pairs.sort();
    let mut hash = Sha256::new_with_prefix(b"septa release fingerprint");
    for (id, digest) in pairs {
        hash.update(id);
        hash.update(digest);
    }
    hex::encode(hash.finalize())
}

/// The fingerprint of what a token says the device booted.
pub fn token_fingerprint(measurements: &[Measurement]) -> String {
    fingerprint(measurements.iter().filter(|m| m.kind != LOADER).map(|m| (m.component_id, m.digest)))
}

/// Checks an attestation token's signatures as `septa_abi::attest::verify` does — the
/// token's device key is `device_key` (SEC1), the device key certifies the attestation key,
/// the attestation key signed the claims — with ring's P-256, which is several times
/// faster than the portable `p256` crate on the service's CPU (docs/performance.md). The
/// nonce is not compared here: the caller consumes the claims' nonce from the database,
/// which is what makes it single-use. A test holds this to the same verdicts as the `abi`
/// function on every altered byte.
pub fn verify_token(token: &[u8], device_key: &[u8]) -> Result<Claims, attest::Error> {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    let token: Token = postcard::from_bytes(token).map_err(|_| attest::Error::Undecodable)?;
    let claims = token.claims;
    if claims.device_key.as_slice() != device_key {
        return Err(attest::Error::WrongDeviceKey);
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, device_key)
        .verify(&attest::certificate_message(&claims.attestation_key), &claims.certificate)
        .map_err(|_| attest::Error::BadCertificate)?;
    let digest = attest::claims_digest(&claims).ok_or(attest::Error::Undecodable)?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, claims.attestation_key.as_slice())
        .verify(&digest, &token.signature)
        .map_err(|_| attest::Error::BadSignature)?;
    Ok(claims)
}

/// A nonce for `device_id`, valid until `expires_at`: 16 random bytes, the expiry, and a MAC
/// under the service's nonce key binding both to the device. The service keeps no state
/// for an issued nonce; the check-in that uses one records it, once (storage).
pub fn make_nonce(key: &[u8; 32], device_id: &[u8; 8], random: [u8; 16], expires_at: i64) -> [u8; 32] {
    let mut nonce = [0u8; 32];
    nonce[..16].copy_from_slice(&random);
    nonce[16..24].copy_from_slice(&expires_at.to_le_bytes());
    let mac = septa_abi::keys::hmac(key, &[b"septa nonce", device_id, &nonce[..24]]);
    nonce[24..].copy_from_slice(&mac[..8]);
    nonce
}

/// Checks that `nonce` was made by this service for `device_id` and is still valid; its
/// expiry.
pub fn check_nonce(key: &[u8; 32], device_id: &[u8; 8], nonce: &[u8], now: i64) -> Option<i64> {
    let nonce: &[u8; 32] = nonce.try_into().ok()?;
    let expires_at = i64::from_le_bytes(nonce[16..24].try_into().expect("8 bytes"));
    let expected = make_nonce(key, device_id, nonce[..16].try_into().expect("16 bytes"), expires_at);
    // Not secret-dependent timing that matters: the MAC covers public values only.
    (expected == *nonce && expires_at >= now).then_some(expires_at)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("the tenant has no OEM key registered; add one first")]
    NoKeys,
    #[error("bundle refused: {0}")]
    Invalid(String),
}

/// A bundle that an OEM key of the tenant signed, with its packages checked as the device's
/// monitor will check them.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub fingerprint: String,
    pub sha256: String,
    /// (component id, security version) of each package.
    pub components: Vec<([u8; 16], u32)>,
}

/// Checks a `septa bundle` file against the tenant's OEM keys.
pub fn verify_bundle(bytes: &[u8], oem_keys: &[VerifyingKey]) -> Result<VerifiedBundle, BundleError> {
    if oem_keys.is_empty() {
        return Err(BundleError::NoKeys);
    }
    let invalid = |e: bundle::Error| BundleError::Invalid(e.to_string());
    let mut fuses = Fuses {
        device_secret: [0; 32],
        oem_keys: heapless::Vec::new(),
        revoked: heapless::Vec::new(),
        minimum_versions: heapless::Vec::new(),
    };
    let header = bundle::Header::parse(bytes).map_err(invalid)?;
    // The header names its key; only that one needs to be in the fuses' short list.
    let signer = oem_keys
        .iter()
        .find(|k| septa_abi::keys::key_id(k) == header.key_id)
        .ok_or(BundleError::Invalid(bundle::Error::UnknownKey(header.key_id).to_string()))?;
    let point = signer.to_encoded_point(false);
    fuses
        .oem_keys
        .push(heapless::Vec::from_slice(point.as_bytes()).expect("65 bytes"))
        .expect("room for one");
    header.verify_signature(&fuses).map_err(invalid)?;
    let image = &bytes[header.len()..];
    bundle::check_image(&header, image, &fuses, |_| 0).map_err(invalid)?;
    let slot = Slot::parse(image).map_err(|e| BundleError::Invalid(e.to_string()))?;
    let mut measured = Vec::new();
    for entry in slot.packages() {
        let (_, package) = entry.map_err(|e| BundleError::Invalid(e.to_string()))?;
        measured.push((package.header.component_id, package.header.measurement()));
    }
    Ok(VerifiedBundle {
        fingerprint: fingerprint(measured),
        sha256: hex::encode(Sha256::digest(bytes)),
        components: header.components().collect(),
    })
}

/// Where a deployment target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStatus {
    /// Not yet in an open phase.
    Pending,
    /// Offered the release at a check-in; not yet downloaded all of it.
    Offered,
    /// Downloaded the whole bundle; its next attestation decides.
    Downloaded,
    /// Attested the release's measurements after downloading it: it runs the release on
    /// trial, which may still fail and roll back.
    OnTrial,
    /// Runs the release, confirmed: it attested the release's measurements and reported,
    /// signed, that the update confirmed itself (or it ran the release without downloading
    /// it from this deployment).
    Updated,
    /// Attested its old measurements after downloading, or reported a signed roll-back.
    RolledBack,
    /// Did not attest the release before the deadline.
    TimedOut,
}

impl TargetStatus {
    pub const ALL: [TargetStatus; 7] = [
        TargetStatus::Pending,
        TargetStatus::Offered,
        TargetStatus::Downloaded,
        TargetStatus::OnTrial,
        TargetStatus::Updated,
        TargetStatus::RolledBack,
        TargetStatus::TimedOut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TargetStatus::Pending => "pending",
            TargetStatus::Offered => "offered",
            TargetStatus::Downloaded => "downloaded",
            TargetStatus::OnTrial => "on trial",
            TargetStatus::Updated => "updated",
            TargetStatus::RolledBack => "rolled back",
            TargetStatus::TimedOut => "timed out",
        }
    }

    pub fn parse(name: &str) -> Option<TargetStatus> {
        TargetStatus::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Decided: it no longer changes.
    pub fn is_final(self) -> bool {
        matches!(self, TargetStatus::Updated | TargetStatus::RolledBack | TargetStatus::TimedOut)
    }
}

/// A target's status after it attested `attested` (a fingerprint): evidence only. The
/// release's measurements after downloading the bundle put it on trial (the trial may still
/// fail: only the device's signed word that the update confirmed itself, [`status_after_applied`],
/// makes it updated); without a download from this deployment they make it updated (it
/// runs the release already). Its old measurements after it downloaded the whole bundle, or
/// while on trial, make it rolled back; anything else leaves it.
pub fn status_after_attestation(
    status: TargetStatus,
    attested: &str,
    release: &str,
    before: &str,
) -> TargetStatus {
    use TargetStatus::*;
    match status {
        Updated | RolledBack | TimedOut => status,
        Downloaded | OnTrial if attested == release => OnTrial,
        Downloaded | OnTrial if attested == before => RolledBack,
        _ if attested == release => Updated,
        _ => status,
    }
}

/// A target's status after the device reported, signed, that an update confirmed itself,
/// when its latest attestation was `attested`: a target on trial of that release is updated.
pub fn status_after_applied(status: TargetStatus, attested: &str, release: &str) -> TargetStatus {
    if status == TargetStatus::OnTrial && attested == release { TargetStatus::Updated } else { status }
}

/// Whether a target whose status after this attestation is `status` is offered the release:
/// while undecided and not already running it (a device on trial attests the release's
/// measurements and must not fetch it again).
pub fn is_offered(status: TargetStatus, attested: &str, release: &str) -> bool {
    !status.is_final() && attested != release
}

/// The rank of a device in a deployment's order: a hash of both ids, so each deployment
/// picks its first 1 % differently and nobody can choose to be first.
pub fn rank(deployment_id: &str, device_id: &str) -> i64 {
    let digest =
        Sha256::new_with_prefix(deployment_id.as_bytes()).chain_update(device_id.as_bytes()).finalize();
    (u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 1) as i64
}

/// How many of `total` targets phase `percent` % covers (at least one once a phase opens).
pub fn phase_size(total: usize, percent: u32) -> usize {
    let size = (total * percent.min(100) as usize).div_ceil(100);
    size.max(1).min(total)
}

/// Parses phases like `1,10,100`: rising percentages ending at 100.
pub fn parse_phases(text: &str) -> Option<Vec<u32>> {
    let phases: Vec<u32> = text.split(',').map(|p| p.trim().parse().ok()).collect::<Option<_>>()?;
    let rising = phases.windows(2).all(|w| w[0] < w[1]);
    (rising && phases.first().is_some_and(|&p| p > 0) && phases.last() == Some(&100)).then_some(phases)
}

/// Counts of a deployment's targets in its open phases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub in_phase: usize,
    pub updated: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep going in this phase.
    Wait,
    /// Open the next phase.
    Advance,
    /// Failures crossed the threshold: stop offering the release.
    Halt,
    /// The last phase is decided.
    Complete,
}

/// What a rollout does next. Failures (rolled back or timed out) are counted against the
/// decided targets; crossing `threshold_percent` halts at once, even mid-phase. A phase
/// moves on when every target in it is decided.
pub fn decide(progress: Progress, threshold_percent: u32, last_phase: bool) -> Decision {
    let decided = progress.updated + progress.failed;
    if decided > 0 && progress.failed * 100 > threshold_percent as usize * decided {
        return Decision::Halt;
    }
    if decided < progress.in_phase {
        return Decision::Wait;
    }
    if last_phase { Decision::Complete } else { Decision::Advance }
}

/// What groups failure records: the app, how it ended and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueKey {
    pub component_id: String,
    pub app: String,
    pub kind: &'static str,
    pub pc: u32,
}

/// The issue an event belongs to; `None` for a clean exit and for update events.
pub fn issue_key(event: &Event) -> Option<IssueKey> {
    let Event::App(record) = event else { return None };
    if record.kind == EndKind::Exit && record.exit_code == 0 {
        return None;
    }
    Some(IssueKey {
        component_id: hex::encode(record.component_id),
        app: septa_abi::report::Name(&record.name).to_string(),
        kind: record.kind.name(),
        pc: record.pc,
    })
}

/// An issue fixed as of the release uploaded at `fixed_at` reopens when it is seen in a
/// release uploaded later.
pub fn reopens(fixed_at: Option<i64>, seen_in_release_at: Option<i64>) -> bool {
    matches!((fixed_at, seen_in_release_at), (Some(fixed), Some(seen)) if seen > fixed)
}

/// A bearer token's stored form: only its SHA-256 is kept.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::new_with_prefix(b"septa api token").chain_update(token.as_bytes()).finalize())
}

/// Roles, from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Deployer,
    Admin,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "deployer" => Some(Role::Deployer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }
}

/// Names of tenants, products, groups and releases: 1-64 characters of letters, digits,
/// `-`, `_` and `.` (not starting with `.`), so a name is never a path, markup or SQL.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use septa_abi::report::Record;

    fn m(kind: u8, id: u8, digest: u8) -> Measurement {
        Measurement { kind, component_id: [id; 16], security_version: 1, digest: [digest; 32] }
    }

    #[test]
    fn fingerprints_ignore_order_and_the_loader_but_not_any_package() {
        let a = token_fingerprint(&[m(0, 0, 9), m(1, 1, 1), m(2, 2, 2)]);
        assert_eq!(a, token_fingerprint(&[m(2, 2, 2), m(1, 1, 1), m(0, 0, 7)]));
        assert_ne!(a, token_fingerprint(&[m(1, 1, 1), m(2, 2, 3)]));
        assert_ne!(a, token_fingerprint(&[m(1, 1, 1)]));
        assert_eq!(a, fingerprint([([1; 16], [1; 32]), ([2; 16], [2; 32])]));
    }

    #[test]
    fn token_verification_agrees_with_the_abi_on_every_altered_byte() {
        let mut secret = [0u8; 32];
        secret[0] = 42;
        let device = crate::sim::Device::new(secret, vec![m(0, 0, 1), m(1, 1, 2), m(2, 2, 3), m(3, 3, 4)]);
        let key = device.public_key();
        let sec1 = key.to_encoded_point(false);
        let token = device.token(&[9; 32]);
        let abi = |bytes: &[u8]| {
            let nonce = postcard::from_bytes::<Token>(bytes).map(|t| t.claims.nonce).unwrap_or_default();
            attest::verify(bytes, &key, &nonce)
        };
        assert_eq!(verify_token(&token, sec1.as_bytes()), abi(&token));
        assert!(verify_token(&token, sec1.as_bytes()).is_ok());
        for at in 0..token.len() {
            let mut bad = token.clone();
            bad[at] ^= 0x01;
            assert_eq!(verify_token(&bad, sec1.as_bytes()), abi(&bad), "byte {at}");
        }
        let other = crate::sim::Device::new([7; 32], vec![m(1, 1, 2)]);
        let other_key = other.public_key().to_encoded_point(false);
        assert_eq!(verify_token(&token, other_key.as_bytes()), Err(attest::Error::WrongDeviceKey));
        assert_eq!(verify_token(&token[..10], sec1.as_bytes()), Err(attest::Error::Undecodable));
    }

    #[test]
    fn nonces_are_bound_to_the_device_and_expire() {
        let key = [3u8; 32];
        let nonce = make_nonce(&key, &[1; 8], [9; 16], 1000);
        assert_eq!(check_nonce(&key, &[1; 8], &nonce, 999), Some(1000));
        assert_eq!(check_nonce(&key, &[1; 8], &nonce, 1000), Some(1000));
        assert_eq!(check_nonce(&key, &[1; 8], &nonce, 1001), None, "expired");
        assert_eq!(check_nonce(&key, &[2; 8], &nonce, 999), None, "another device's");
        assert_eq!(check_nonce(&[4; 32], &[1; 8], &nonce, 999), None, "another service's");
        assert_eq!(check_nonce(&key, &[1; 8], &nonce[..31], 999), None);
        for at in 0..32 {
            let mut bad = nonce;
            bad[at] ^= 1;
            assert_eq!(check_nonce(&key, &[1; 8], &bad, 0), None, "byte {at}");
        }
    }

    #[test]
    fn status_comes_from_evidence_only() {
        use TargetStatus::*;
        assert_eq!(status_after_attestation(Offered, "new", "new", "old"), Updated);
        assert_eq!(status_after_attestation(Downloaded, "old", "new", "old"), RolledBack);
        // Booting the release after downloading it is a trial, not yet an update: only the
        // signed confirmation makes it one, and a trial can still roll back.
        assert_eq!(status_after_attestation(Downloaded, "new", "new", "old"), OnTrial);
        assert_eq!(status_after_attestation(OnTrial, "new", "new", "old"), OnTrial);
        assert_eq!(status_after_attestation(OnTrial, "old", "new", "old"), RolledBack);
        assert_eq!(status_after_applied(OnTrial, "new", "new"), Updated);
        assert_eq!(status_after_applied(OnTrial, "old", "new"), OnTrial);
        assert_eq!(status_after_applied(Downloaded, "new", "new"), Downloaded);
        assert_eq!(status_after_applied(RolledBack, "new", "new"), RolledBack);
        // Attesting the old software before downloading is no roll-back.
        assert_eq!(status_after_attestation(Offered, "old", "new", "old"), Offered);
        assert_eq!(status_after_attestation(Downloaded, "other", "new", "old"), Downloaded);
        assert_eq!(status_after_attestation(TimedOut, "new", "new", "old"), TimedOut);
        assert_eq!(status_after_attestation(RolledBack, "new", "new", "old"), RolledBack);
    }

    #[test]
    fn only_a_device_not_yet_running_the_release_is_offered_it() {
        use TargetStatus::*;
        assert!(is_offered(Pending, "old", "new"));
        assert!(is_offered(Offered, "old", "new"));
        assert!(is_offered(Downloaded, "other", "new"));
        assert!(!is_offered(OnTrial, "new", "new"), "on trial: it runs the release");
        for done in [Updated, RolledBack, TimedOut] {
            assert!(!is_offered(done, "old", "new"), "{done:?}");
        }
    }

    #[test]
    fn phases_open_at_least_one_device_and_never_more_than_all() {
        assert_eq!(phase_size(100, 1), 1);
        assert_eq!(phase_size(1000, 1), 10);
        assert_eq!(phase_size(5, 10), 1);
        assert_eq!(phase_size(5, 100), 5);
        assert_eq!(phase_size(201, 10), 21);
        assert_eq!(parse_phases("1, 10,100"), Some(vec![1, 10, 100]));
        for bad in ["", "10,1,100", "1,10", "0,100", "1,x,100", "50,50,100"] {
            assert_eq!(parse_phases(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rollouts_advance_complete_and_halt_on_the_threshold() {
        let p = |in_phase, updated, failed| Progress { in_phase, updated, failed };
        assert_eq!(decide(p(10, 5, 0), 20, false), Decision::Wait);
        assert_eq!(decide(p(10, 10, 0), 20, false), Decision::Advance);
        assert_eq!(decide(p(10, 10, 0), 20, true), Decision::Complete);
        assert_eq!(decide(p(10, 8, 2), 20, false), Decision::Advance); // 20 % is not above 20 %
        assert_eq!(decide(p(10, 7, 3), 20, false), Decision::Halt);
        assert_eq!(decide(p(100, 1, 1), 20, false), Decision::Halt); // mid-phase
        assert_eq!(decide(p(1, 0, 1), 0, false), Decision::Halt);
    }

    #[test]
    fn ranks_differ_per_deployment() {
        assert_ne!(rank("d1", "dev"), rank("d2", "dev"));
        assert_eq!(rank("d1", "dev"), rank("d1", "dev"));
        assert!(rank("d1", "dev") >= 0);
    }

    #[test]
    fn issues_group_faults_and_failed_exits_only() {
        let mut record = Record {
            component_id: [3; 16],
            name: *b"crasher\0\0\0\0\0\0\0\0\0",
            kind: EndKind::DataAbort,
            pc: 0x100cc,
            address: 0,
            exit_code: 0,
            time_ms: 5,
            restart_count: 0,
        };
        let key = issue_key(&Event::App(record)).unwrap();
        assert_eq!((key.app.as_str(), key.kind, key.pc), ("crasher", "data abort", 0x100cc));
        record.kind = EndKind::Exit;
        assert_eq!(issue_key(&Event::App(record)), None);
        record.exit_code = 3;
        assert_eq!(issue_key(&Event::App(record)).unwrap().kind, "exit");
        assert!(reopens(Some(10), Some(11)));
        assert!(!reopens(Some(10), Some(10)));
        assert!(!reopens(None, Some(11)));
        assert!(!reopens(Some(10), None));
    }

    #[test]
    fn names_are_never_paths_markup_or_sql() {
        assert!(valid_name("sensor-v2.1_beta"));
        for bad in ["", "../etc", "a/b", "x'; DROP TABLE devices;--", "<b>", ".hidden", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert!(Role::Admin > Role::Deployer && Role::Deployer > Role::Viewer);
        assert_eq!(Role::parse("root"), None);
    }
}
