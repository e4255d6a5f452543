//! The device-auth service and the device certificate, end to end under QEMU: the app
//! `devauth` gets the certificate `cargo xtask build` provisioned (issued by the development
//! device CA for the device key), checks its chain on the device at the RTC's time, and has
//! the monitor sign a TLS 1.3 client CertificateVerify, which verifies here under the
//! device key — and only as that. The same app without the capability (`noauth`) is refused
//! by the kernel at every step.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use septa_abi::device_auth;
use septa_tests::{Boot, images_dir, variant_images};

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex {text:?}");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

struct Console(String);

impl Console {
    fn value(&self, app: &str, prefix: &str) -> String {
        let prefix = format!("[{app}] {prefix}");
        let line = self.0.lines().find_map(|l| l.strip_prefix(&prefix));
        line.unwrap_or_else(|| panic!("no {prefix:?} line:\n{}", self.0)).trim().to_string()
    }

    fn certificate(&self) -> Vec<u8> {
        let lines = self.0.lines().filter_map(|l| l.strip_prefix("[devauth] certificate "));
        // `certificate <i>/<n> <hex>` (other lines start with `certificate verify`, `… body`).
        lines
            .filter_map(|l| l.split_once(' '))
            .filter(|(place, _)| place.contains('/'))
            .flat_map(|(_, h)| hex(h.trim()))
            .collect()
    }
}

/// One boot serves every test of this file.
fn boot() -> &'static Console {
    static CONSOLE: std::sync::OnceLock<Console> = std::sync::OnceLock::new();
    CONSOLE.get_or_init(|| {
        let mut qemu = Boot::new(variant_images("devauth")).spawn();
        qemu.wait_for("[devauth] done");
        qemu.wait_for("[noauth] done");
        Console(qemu.console())
    })
}

fn device_key() -> VerifyingKey {
    septa_tool::keys::load_verifying_key(&images_dir().join("keys/device.pub.pem")).unwrap()
}

#[test]
fn an_app_with_device_auth_gets_a_certificate_verify_signature_by_the_device_key_and_nothing_else() {
    let console = boot();
    let device = device_key();
    let hash: [u8; 32] = hex(&console.value("devauth", "transcript hash ")).try_into().unwrap();
    let signature =
        Signature::from_slice(&hex(&console.value("devauth", "certificate verify signature "))).unwrap();
    let content = device_auth::client_certificate_verify(&hash);
    assert!(device.verify(&content, &signature).is_ok(), "signed by the device key over the TLS 1.3 content");
    assert!(device.verify(&hash, &signature).is_err(), "not a signature over the bare hash");
    let mut server = content;
    server[64..97].copy_from_slice(b"TLS 1.3, server CertificateVerify");
    assert!(device.verify(&server, &signature).is_err(), "not usable as a server's signature");
    // A general signing request under device-auth's number is refused by the monitor.
    assert_eq!(console.value("devauth", "certificate body under device-auth -> "), "Err(Invalid)");
}

#[test]
fn the_device_hands_out_its_provisioned_certificate_which_chains_to_the_device_ca_at_rtc_time() {
    let console = boot();
    let certificate = console.certificate();
    let flash = std::fs::read(variant_images("devauth").flash).unwrap();
    assert_eq!(
        Some(certificate.clone()),
        septa_tool::device_cert::stored(&flash),
        "the provisioned certificate"
    );
    let point: [u8; 65] = device_key().to_encoded_point(false).as_bytes().try_into().unwrap();
    assert!(
        device_auth::is_certificate_for(&certificate, &point),
        "for the device key of `septa device-key`"
    );
    let line = console.value("devauth", "chain to the device CA at rtc time ");
    let (time, result) = line.split_once(": ").unwrap();
    let rtc: u64 = time.parse().unwrap();
    let host = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(rtc.abs_diff(host) < 3600, "the PL031 gives wall-clock time: {rtc} vs {host}");
    assert_eq!(result, "Ok(())");
    assert_eq!(console.value("devauth", "chain to the device CA in 1970: "), "Err(NotYetValid)");
    // A certificate for another key is refused; the current one is accepted again.
    assert_eq!(console.value("devauth", "install foreign certificate -> "), "Err(Refused)");
    assert_eq!(console.value("devauth", "install certificate -> "), "Ok(())");
}

#[test]
fn an_app_without_device_auth_is_refused_by_the_kernel() {
    let console = boot();
    assert_eq!(console.value("noauth", "certificate -> "), "Err(Access)");
    assert_eq!(console.value("noauth", "sign -> "), "Err(Access)");
    assert_eq!(console.value("noauth", "certificate body under device-auth -> "), "Err(Access)");
    assert!(!console.0.contains("[noauth] certificate verify signature"));
}
