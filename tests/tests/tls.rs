//! Mutual TLS 1.3 from the device: `tlshello` reaches rustls servers on the host's loopback
//! (forwarded as `devhost:8443`-`8448`) through the network service. The good server requires a
//! client certificate from the device CA and sees the device certificate for the device key;
//! the others present a certificate from an unknown CA, an expired one, one for another
//! name, a chain through a non-CA, or speak only TLS 1.2 — each refused on the device with
//! its reason, and none receives application data. The same app without `device-auth`
//! cannot authenticate at all.

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use septa_qemu::Network;
use septa_tests::{Boot, images_dir, septa_path, variant_images};
use septa_tool::device_cert::{CA_CERT_DER_FILE, ServiceCa};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// What one server saw.
#[derive(Default, Debug)]
struct Seen {
    client_certificate: Option<Vec<u8>>,
    received: Vec<u8>,
    errors: Vec<String>,
}

fn server(chain: Vec<Vec<u8>>, key: Vec<u8>, tls12_only: bool) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let device_ca = std::fs::read(images_dir().join("keys/device-ca").join(CA_CERT_DER_FILE)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(device_ca)).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls12_only { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13] };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            chain.into_iter().map(CertificateDer::from).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = Arc::clone(&seen);
    std::thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            let connection = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut stream = rustls::StreamOwned::new(connection, socket);
            let mut line = String::new();
            let read = BufReader::new(&mut stream).read_line(&mut line);
            let mut seen = shared.lock().unwrap();
            if let Err(error) = read {
                seen.errors.push(error.to_string());
                continue;
            }
            seen.client_certificate = stream.conn.peer_certificates().map(|c| c[0].to_vec());
            seen.received.extend_from_slice(line.as_bytes());
            let _ = writeln!(stream, "welcome, device");
            let _ = stream.flush();
            stream.conn.send_close_notify();
            let _ = stream.conn.complete_io(&mut stream.sock);
        }
    });
    (address, seen)
}

fn key_der() -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = key.serialize_der();
    (key, der)
}

#[test]
fn the_device_runs_mutual_tls_13_with_a_host_service_and_refuses_untrusted_servers() {
    let service_ca = ServiceCa::load_or_create(&images_dir().join("keys/service-ca")).unwrap();
    let now = OffsetDateTime::now_utc();
    let valid = (now - Duration::hours(1), now + Duration::days(1));
    let (good_cert, good_key) = service_ca.issue_server(&["devhost"], valid.0, valid.1).unwrap();
    let (expired_cert, expired_key) =
        service_ca.issue_server(&["devhost"], now - Duration::days(10), now - Duration::days(1)).unwrap();
    let (other_name_cert, other_name_key) =
        service_ca.issue_server(&["elsewhere"], valid.0, valid.1).unwrap();
    let (tls12_cert, tls12_key) = service_ca.issue_server(&["devhost"], valid.0, valid.1).unwrap();
    // A server certificate from a CA the device does not trust.
    let (stranger_key, _) = key_der();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "Septa development service CA");
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let stranger = params.self_signed(&stranger_key).unwrap();
    let (leaf_key, leaf_key_der) = key_der();
    let mut params = CertificateParams::new(vec!["devhost".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let unknown_ca_cert = params.signed_by(&leaf_key, &stranger, &stranger_key).unwrap().der().to_vec();
    // A chain through an end-entity certificate of the trusted CA used as an intermediate.
    let (not_ca_cert, not_ca_key_der) = service_ca.issue_server(&["not-a-ca"], valid.0, valid.1).unwrap();
    let not_ca_key = KeyPair::try_from(not_ca_key_der.as_slice()).unwrap();
    // rcgen signs with an issuer object: one with the same name and key stands in for it.
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "not-a-ca");
    let not_ca = params.self_signed(&not_ca_key).unwrap();
    let (chain_key, chain_key_der) = key_der();
    let mut params = CertificateParams::new(vec!["devhost".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let chain_leaf = params.signed_by(&chain_key, &not_ca, &not_ca_key).unwrap().der().to_vec();

    let servers = [
        (8443, server(vec![good_cert], good_key, false)),
        (8444, server(vec![unknown_ca_cert], leaf_key_der, false)),
        (8445, server(vec![expired_cert], expired_key, false)),
        (8446, server(vec![other_name_cert], other_name_key, false)),
        (8447, server(vec![tls12_cert], tls12_key, true)),
        (8448, server(vec![chain_leaf, not_ca_cert], chain_key_der, false)),
    ];
    let mut network = Network::default();
    for (port, (address, _)) in &servers {
        network = network.relay(*port, &septa_path(), *address);
    }
    let mut qemu = Boot::new(variant_images("tls")).network(network).spawn();
    qemu.wait_for("[tlshello] done");
    qemu.wait_for("[tls-noauth] ");
    let console = qemu.console();
    let line = |port: u16| {
        let prefix = format!("[tlshello] devhost:{port}: ");
        console
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no line for port {port}:\n{console}"))
            .to_string()
    };
    assert_eq!(
        line(8443),
        "mutual TLS 1.3 session; the service says: welcome, device",
        "application data both ways"
    );
    assert_eq!(line(8444), "refused: server certificate refused: not issued by a trusted CA");
    assert_eq!(line(8445), "refused: server certificate refused: expired");
    assert_eq!(line(8446), "refused: server certificate refused: not valid for the server's name");
    assert_eq!(line(8447), "refused: the server does not speak TLS 1.3 (alert 70, protocol version)");
    assert_eq!(line(8448), "refused: server certificate refused: a certificate in the chain is not a CA");

    let good = servers[0].1.1.lock().unwrap();
    assert_eq!(good.received, b"hello from tlshello\n");
    let presented = good.client_certificate.clone().expect("the server saw the device certificate");
    let device = septa_tool::keys::load_verifying_key(&images_dir().join("keys/device.pub.pem")).unwrap();
    let point: [u8; 65] = device.to_encoded_point(false).as_bytes().try_into().unwrap();
    assert!(septa_abi::device_auth::is_certificate_for(&presented, &point), "for the device key");
    for (port, (_, seen)) in &servers[1..] {
        let seen = seen.lock().unwrap();
        assert!(seen.received.is_empty() && seen.client_certificate.is_none(), "port {port}: {seen:?}");
    }
    // Without device-auth the app cannot even present a certificate.
    assert!(console.contains("[tls-noauth] no device certificate: EACCES"), "{console}");
}
