//! The monitor's services for apps: randomness, hashing, per-app keys, signatures,
//! attestation and the device's TLS client signature; and the device-key signature of
//! failure reports.
//!
//! Keys are derived, never stored: an app's key from the CDI and the app's component id
//! (which the kernel supplies and the app cannot choose), so two apps never share a key and
//! the same software gets the same key on every boot; the device identity key from the
//! identity seed; the attestation key from the CDI. Each key is derived at most once per
//! boot and kept in secure memory. Every request is decoded and bounds-checked here again:
//! the monitor trusts nothing the normal world sends.

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};
use septa_abi::attest::{self, Claims, Measurement, Token};
use septa_abi::handoff::Handoff;
use septa_abi::monitor::{BAD_REQUEST, FAILED, NONCE_MAX, RANDOM_MAX, Request, Service, TOO_LARGE};
use septa_abi::{device_auth, keys, report};
use sha2::{Digest, Sha256};

/// App keys kept per boot.
const KEY_CACHE: usize = 16;

/// What the monitor holds for the services.
pub struct State {
    cdi: [u8; 32],
    seal_cdi: [u8; 32],
    /// The fuses' OEM keys and revocations, for update bundles.
    trust: Option<septa_abi::fuses::Fuses>,
    identity_seed: [u8; 32],
    measurements: heapless::Vec<Measurement, { attest::MAX_RECORDS }>,
    rng: Option<ChaCha12Rng>,
    app_keys: heapless::Vec<([u8; 16], SigningKey), KEY_CACHE>,
    /// Device public key, attestation key and the certificate, once derived.
    attestation: Option<(heapless::Vec<u8, 65>, SigningKey, heapless::Vec<u8, 64>)>,
    /// The device identity key, once derived.
    device_key: Option<SigningKey>,
}

impl State {
    pub fn new(handoff: &Handoff) -> State {
        State {
            cdi: handoff.cdi,
            seal_cdi: handoff.seal_cdi,
            trust: handoff.trust(),
            identity_seed: handoff.identity_seed,
            measurements: handoff.records().iter().map(Measurement::from).collect(),
            rng: None,
            app_keys: heapless::Vec::new(),
            attestation: None,
            device_key: None,
        }
    }

    /// Seeds the DRBG from `entropy` (32 bytes from the hardware source), mixed with the CDI
    /// so that a weak source alone does not decide the output. The DRBG is ChaCha with 12
    /// rounds (what the `rand` crate's standard generator uses; the best published attacks
    /// reach 7): 40 % less work per byte than ChaCha20 on the path of every `random` call.
    pub fn seed(&mut self, entropy: &[u8; 32]) {
        let seed = keys::hmac(&self.cdi, &[b"septa drbg", entropy]);
        self.rng = Some(ChaCha12Rng::from_seed(seed));
    }

    /// Whether [`State::seed`] has run.
    pub fn seeded(&self) -> bool {
        self.rng.is_some()
    }

    pub fn seal_cdi(&self) -> &[u8; 32] {
        &self.seal_cdi
    }

    pub fn trust(&self) -> Option<&septa_abi::fuses::Fuses> {
        self.trust.as_ref()
    }

    /// A fresh nonce from the DRBG.
    pub fn nonce(&mut self) -> Result<[u8; 12], u32> {
        let mut nonce = [0u8; 12];
        self.rng.as_mut().ok_or(FAILED)?.fill_bytes(&mut nonce);
        Ok(nonce)
    }

    fn app_key(&mut self, component_id: &[u8; 16]) -> &SigningKey {
        if let Some(index) = self.app_keys.iter().position(|(id, _)| id == component_id) {
            return &self.app_keys[index].1;
        }
        let key = keys::derive_key(&self.cdi, keys::APP_KEY, component_id);
        if self.app_keys.is_full() {
            self.app_keys.remove(0);
        }
        let _ = self.app_keys.push((*component_id, key));
        &self.app_keys.last().expect("just pushed").1
    }

    /// Handles one request for service number `service` from app `caller`; writes the
    /// response into `out` and returns its length, or a status code.
    pub fn handle(
        &mut self,
        service: u32,
        caller: &[u8; 16],
        request: &[u8],
        out: &mut [u8],
    ) -> Result<usize, u32> {
        match decode(service, request)? {
            Request::Random { len } => {
                let len = len as usize;
                if len > RANDOM_MAX {
                    return Err(BAD_REQUEST);
                }
                let target = out.get_mut(..len).ok_or(TOO_LARGE)?;
                self.rng.as_mut().ok_or(FAILED)?.fill_bytes(target);
                Ok(len)
            }
            Request::Sha256 { data } => put(out, &Sha256::digest(data)),
            Request::PublicKey => {
                let key = self.app_key(caller).verifying_key().to_encoded_point(false);
                put(out, key.as_bytes())
            }
            Request::Sign { message } => {
                let signature: Signature = self.app_key(caller).sign(message);
                put(out, &signature.to_bytes())
            }
            Request::Verify { public_key, message, signature } => {
                let key = VerifyingKey::from_sec1_bytes(public_key).map_err(|_| BAD_REQUEST)?;
                let signature = Signature::from_slice(signature).map_err(|_| BAD_REQUEST)?;
                put(out, &[key.verify(message, &signature).is_ok() as u8])
            }
            Request::Attest { nonce } => {
                if nonce.len() > NONCE_MAX {
                    return Err(BAD_REQUEST);
                }
                let token = self.token(nonce).ok_or(FAILED)?;
                let len = postcard::to_slice(&token, out).map_err(|_| TOO_LARGE)?.len();
                Ok(len)
            }
            Request::DeviceAuthSign { transcript_hash } => {
                // The content is built here from the hash alone: the capability signs TLS 1.3
                // client CertificateVerify messages and nothing else.
                let content = device_auth::client_certificate_verify(&transcript_hash);
                let signature: Signature = self.device_key().sign(&content);
                put(out, &signature.to_bytes())
            }
            _ => Err(BAD_REQUEST),
        }
    }

    fn device_key(&mut self) -> &SigningKey {
        self.device_key.get_or_insert_with(|| keys::device_identity_key(&self.identity_seed))
    }

    /// The device identity public key (SEC1 uncompressed).
    pub fn device_public_key(&mut self) -> [u8; 65] {
        let point = self.device_key().verifying_key().to_encoded_point(false);
        let mut key = [0u8; 65];
        key.copy_from_slice(point.as_bytes());
        key
    }

    /// Signs a batch of report events with the device identity key.
    pub fn sign_report(&mut self, batch: report::Batch) -> Result<report::Report, u32> {
        let digest = report::digest(&batch).ok_or(BAD_REQUEST)?;
        let signature: Signature = self.device_key().sign(&digest);
        Ok(report::Report {
            batch,
            signature: heapless::Vec::from_slice(&signature.to_bytes()).map_err(|_| FAILED)?,
        })
    }

    fn token(&mut self, nonce: &[u8]) -> Option<Token> {
        let (device_key, attestation_key, certificate) = match &self.attestation {
            Some(keys) => keys.clone(),
            None => {
                let device = self.device_key().clone();
                let attestation = keys::derive_key(&self.cdi, keys::ATTESTATION, b"");
                let public = attestation.verifying_key().to_encoded_point(false);
                let certificate: Signature = device.sign(&attest::certificate_message(public.as_bytes()));
                let keys = (
                    heapless::Vec::from_slice(device.verifying_key().to_encoded_point(false).as_bytes())
                        .ok()?,
                    attestation,
                    heapless::Vec::from_slice(&certificate.to_bytes()).ok()?,
                );
                self.attestation = Some(keys.clone());
                keys
            }
        };
        let claims = Claims {
            device_key,
            attestation_key: heapless::Vec::from_slice(
                attestation_key.verifying_key().to_encoded_point(false).as_bytes(),
            )
            .ok()?,
            certificate,
            nonce: heapless::Vec::from_slice(nonce).ok()?,
            measurements: self.measurements.clone(),
        };
        let signature: Signature = attestation_key.sign(&attest::claims_digest(&claims)?);
        Some(Token { claims, signature: heapless::Vec::from_slice(&signature.to_bytes()).ok()? })
    }
}

/// Decodes a request and checks it is for service number `service`.
pub fn decode(service: u32, request: &[u8]) -> Result<Request<'_>, u32> {
    let request: Request<'_> = postcard::from_bytes(request).map_err(|_| BAD_REQUEST)?;
    if Service::from_u32(service) != Some(request.service()) {
        return Err(BAD_REQUEST);
    }
    Ok(request)
}

fn put(out: &mut [u8], bytes: &[u8]) -> Result<usize, u32> {
    out.get_mut(..bytes.len()).ok_or(TOO_LARGE)?.copy_from_slice(bytes);
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use septa_abi::handoff::BootRecord;

    fn state() -> State {
        let mut handoff = Handoff::empty();
        handoff.cdi = [1; 32];
        handoff.identity_seed = [2; 32];
        handoff.record_count = 2;
        handoff.records[1] =
            BootRecord { kind: 2, component_id: [3; 16], security_version: 1, measurement: [4; 32] };
        let mut state = State::new(&handoff);
        state.seed(&[5; 32]);
        state
    }

    fn call(state: &mut State, request: &Request<'_>, caller: u8) -> Result<std::vec::Vec<u8>, u32> {
        let mut encoded = [0u8; 512];
        let encoded = postcard::to_slice(request, &mut encoded).unwrap();
        let mut out = [0u8; 3072];
        let len = state.handle(request.service() as u32, &[caller; 16], encoded, &mut out)?;
        Ok(out[..len].to_vec())
    }

    extern crate std;

    #[test]
    fn random_bytes_differ_between_calls() {
        let mut s = state();
        let a = call(&mut s, &Request::Random { len: 16 }, 1).unwrap();
        let b = call(&mut s, &Request::Random { len: 16 }, 1).unwrap();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert_eq!(call(&mut s, &Request::Random { len: 257 }, 1), Err(BAD_REQUEST));
    }

    #[test]
    fn app_keys_differ_between_apps_and_sign_verifiably() {
        let mut s = state();
        let a = call(&mut s, &Request::PublicKey, 1).unwrap();
        let b = call(&mut s, &Request::PublicKey, 2).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, call(&mut s, &Request::PublicKey, 1).unwrap(), "stable");
        let signature = call(&mut s, &Request::Sign { message: b"hello" }, 1).unwrap();
        let verify = |s: &mut State, key: &[u8], message: &[u8]| {
            call(s, &Request::Verify { public_key: key, message, signature: &signature }, 3).unwrap()
        };
        assert_eq!(verify(&mut s, &a, b"hello"), [1]);
        assert_eq!(verify(&mut s, &a, b"hellO"), [0]);
        assert_eq!(verify(&mut s, &b, b"hello"), [0]);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let mut s = state();
        let mut out = [0u8; 64];
        assert_eq!(s.handle(0, &[0; 16], &[0xff, 0xff, 0xff], &mut out), Err(BAD_REQUEST));
        // A valid request under the wrong service number.
        let mut encoded = [0u8; 16];
        let encoded = postcard::to_slice(&Request::Random { len: 4 }, &mut encoded).unwrap();
        assert_eq!(s.handle(Service::Sign as u32, &[0; 16], encoded, &mut out), Err(BAD_REQUEST));
        assert_eq!(s.handle(99, &[0; 16], encoded, &mut out), Err(BAD_REQUEST));
        let bad_key = Request::Verify { public_key: &[4; 10], message: b"", signature: &[0; 64] };
        assert_eq!(call(&mut s, &bad_key, 1), Err(BAD_REQUEST));
    }

    #[test]
    fn failure_reports_are_signed_with_the_device_key() {
        let mut s = state();
        let record = report::Record {
            component_id: [7; 16],
            name: *b"crasher\0\0\0\0\0\0\0\0\0",
            kind: report::EndKind::DataAbort,
            pc: 0x100cc,
            address: 0,
            exit_code: 0,
            time_ms: 42,
            restart_count: 1,
        };
        let batch = report::Batch {
            first: 0,
            boot_count: 3,
            events: heapless::Vec::from_slice(&[report::Event::App(record)]).unwrap(),
        };
        let signed = s.sign_report(batch.clone()).unwrap();
        let mut out = [0u8; 512];
        let encoded = postcard::to_slice(&signed, &mut out).unwrap();
        let device = *keys::device_identity_key(&[2; 32]).verifying_key();
        assert_eq!(report::verify(encoded, &device).unwrap(), batch);
        let mut bad = encoded.to_vec();
        bad[20] ^= 1;
        assert!(report::verify(&bad, &device).is_err());
    }

    #[test]
    fn device_auth_signs_only_a_client_certificate_verify_with_the_device_key() {
        let mut s = state();
        let hash = [0x5a; 32];
        let signature = call(&mut s, &Request::DeviceAuthSign { transcript_hash: hash }, 1).unwrap();
        let signature = Signature::from_slice(&signature).unwrap();
        let device = *keys::device_identity_key(&[2; 32]).verifying_key();
        let content = device_auth::client_certificate_verify(&hash);
        assert!(device.verify(&content, &signature).is_ok());
        // Not a signature over the bare hash, nor one with the server's context string.
        assert!(device.verify(&hash, &signature).is_err());
        let mut server = content;
        server[64..97].copy_from_slice(b"TLS 1.3, server CertificateVerify");
        assert!(device.verify(&server, &signature).is_err());
        // Same key for every caller: it is the device's, not the app's.
        let other = call(&mut s, &Request::DeviceAuthSign { transcript_hash: hash }, 9).unwrap();
        assert!(device.verify(&content, &Signature::from_slice(&other).unwrap()).is_ok());
        assert_eq!(s.device_public_key()[..], device.to_encoded_point(false).as_bytes()[..]);
    }

    #[test]
    fn device_auth_requests_with_a_short_hash_do_not_decode() {
        let mut s = state();
        let mut encoded = [0u8; 64];
        let encoded = postcard::to_slice(&Request::DeviceAuthSign { transcript_hash: [1; 32] }, &mut encoded)
            .unwrap()
            .to_vec();
        let mut out = [0u8; 64];
        let service = Service::DeviceAuthSign as u32;
        assert!(s.handle(service, &[0; 16], &encoded, &mut out).is_ok());
        assert_eq!(s.handle(service, &[0; 16], &encoded[..20], &mut out), Err(BAD_REQUEST));
        let sign = Request::Sign { message: b"x" };
        let mut other = [0u8; 16];
        let other = postcard::to_slice(&sign, &mut other).unwrap();
        assert_eq!(s.handle(service, &[0; 16], other, &mut out), Err(BAD_REQUEST));
    }

    #[test]
    fn attestation_tokens_verify_and_bind_the_nonce() {
        let mut s = state();
        let token = call(&mut s, &Request::Attest { nonce: b"fresh nonce" }, 1).unwrap();
        let device = *keys::device_identity_key(&[2; 32]).verifying_key();
        let claims = attest::verify(&token, &device, b"fresh nonce").unwrap();
        assert_eq!(claims.measurements[1].digest, [4; 32]);
        assert_eq!(attest::verify(&token, &device, b"other"), Err(attest::Error::WrongNonce));
        let stranger = *keys::device_identity_key(&[9; 32]).verifying_key();
        assert_eq!(attest::verify(&token, &stranger, b"fresh nonce"), Err(attest::Error::WrongDeviceKey));
        for at in [10, token.len() / 2, token.len() - 3] {
            let mut bad = token.clone();
            bad[at] ^= 1;
            assert!(attest::verify(&bad, &device, b"fresh nonce").is_err(), "byte {at}");
        }
    }
}
