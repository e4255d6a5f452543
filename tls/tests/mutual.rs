//! `septa-tls` against a real rustls TLS server on loopback that requires client
//! certificates from the device CA. The client's key is held by a host signer that stands
//! in for the monitor: it gets only the transcript hash and signs the same RFC 8446 content
//! the monitor builds (`septa_abi::device_auth::client_certificate_verify`). The device
//! certificate is issued by the provisioning code of `septa provision`.

use embedded_io_adapters::std::FromStd;
use embedded_tls::TlsError;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer as RustlsCert, PrivateKeyDer, PrivatePkcs8KeyDer};
use septa_tls::{
    Buffers, CertificateDer, CertificateError, CertificateVerifySigner, ClientIdentity, Error, ServerCheck,
    SignError, TrustAnchors,
};
use septa_tool::device_cert::DeviceCa;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

const NAME: &str = "service.septa.test";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A CA with its key.
struct Ca {
    key: KeyPair,
    cert: rcgen::Certificate,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let cert = params.self_signed(&key).unwrap();
    Ca { key, cert }
}

/// A server leaf (and its key) for `names`, issued by `issuer`, valid in `[from, until]`.
fn leaf(
    issuer: &Ca,
    names: &[&str],
    from: OffsetDateTime,
    until: OffsetDateTime,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = from;
    params.not_after = until;
    (params.signed_by(&key, &issuer.cert, &issuer.key).unwrap(), key)
}

fn valid_leaf(issuer: &Ca, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
    let now = OffsetDateTime::now_utc();
    leaf(issuer, names, now - time::Duration::days(1), now + time::Duration::days(30))
}

/// What the test server saw.
#[derive(Debug)]
struct Seen {
    /// The client certificate (DER), once the handshake completed.
    client_certificate: Option<Vec<u8>>,
    /// Application data received.
    received: Vec<u8>,
    error: Option<String>,
}

/// A rustls server on 127.0.0.1:0 that requires TLS 1.3 (or only 1.2 when `tls12_only`) and a
/// client certificate from `client_ca`; it answers one line with `reply`.
fn server(
    chain: Vec<rcgen::Certificate>,
    key: &KeyPair,
    client_ca: &[u8],
    tls12_only: bool,
) -> (u16, JoinHandle<Seen>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(RustlsCert::from(client_ca.to_vec())).unwrap();
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
            chain.iter().map(|c| c.der().clone()).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let connection = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, socket);
        let mut seen = Seen { client_certificate: None, received: Vec::new(), error: None };
        while stream.conn.is_handshaking() {
            if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
                seen.error = Some(e.to_string());
                return seen;
            }
        }
        seen.client_certificate = stream.conn.peer_certificates().map(|c| c[0].to_vec());
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => seen.received.push(byte[0]),
                Ok(_) => break,
                Err(e) => {
                    seen.error = Some(e.to_string());
                    return seen;
                }
            }
        }
        let reply = format!("hello {}, from the service\n", String::from_utf8_lossy(&seen.received));
        if let Err(e) = stream.write_all(reply.as_bytes()).and_then(|_| stream.flush()) {
            seen.error = Some(e.to_string());
        }
        stream.conn.send_close_notify();
        let _ = stream.conn.complete_io(&mut stream.sock);
        seen
    });
    (port, handle)
}

/// Stands in for the monitor's `device-auth`: holds the device key, signs only the content
/// built from a transcript hash.
struct HostSigner {
    key: SigningKey,
    calls: usize,
}

impl CertificateVerifySigner for HostSigner {
    fn sign_certificate_verify(&mut self, transcript_hash: &[u8; 32]) -> Result<[u8; 64], SignError> {
        self.calls += 1;
        let content = septa_abi::device_auth::client_certificate_verify(transcript_hash);
        let signature: Signature = self.key.sign(&content);
        Ok(signature.to_bytes().into())
    }
}

/// A signer that fails as the monitor does for an app without the capability, or on error.
struct FailingSigner(SignError);

impl CertificateVerifySigner for FailingSigner {
    fn sign_certificate_verify(&mut self, _: &[u8; 32]) -> Result<[u8; 64], SignError> {
        Err(self.0)
    }
}

/// The device: its key (held by the stand-in signer) and the certificate `septa provision`
/// issues for its public key from the device CA in `dir`.
struct Device {
    key: SigningKey,
    certificate: Vec<u8>,
    ca_der: Vec<u8>,
}

fn device(tag: &str) -> Device {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("septa-tls-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = DeviceCa::create(&dir).unwrap();
    let key = SigningKey::random(&mut rand_core::OsRng);
    let certificate =
        ca.issue(key.verifying_key(), OffsetDateTime::now_utc() - time::Duration::hours(1), 1).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    Device { key, certificate, ca_der: ca.certificate_der().to_vec() }
}

/// Connects as `device` to the server on `port`, trusting `anchor`, and exchanges a line.
fn exchange<S: CertificateVerifySigner>(
    port: u16,
    anchor: &[u8],
    name: &str,
    now_unix: u64,
    certificate: &[u8],
    signer: S,
) -> Result<Vec<u8>, Error> {
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let anchors = [CertificateDer::from(anchor)];
    let anchors = TrustAnchors::new(&anchors)?;
    let server = ServerCheck { anchors: &anchors, name, now_unix };
    let mut identity = ClientIdentity { certificate, signer };
    let mut buffers = Box::new(Buffers::new());
    let mut session = septa_tls::connect(
        FromStd::new(socket),
        &mut buffers,
        &server,
        &mut identity,
        &mut rand_core::OsRng,
    )?;
    session.write_all(b"device\n")?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while !reply.ends_with(b"\n") {
        match session.read(&mut buf)? {
            0 => break,
            n => reply.extend_from_slice(&buf[..n]),
        }
    }
    Ok(reply)
}

#[test]
fn mutual_tls_13_succeeds_and_the_server_sees_the_device_certificate() {
    let server_ca = ca("Septa test service CA");
    let (cert, key) = valid_leaf(&server_ca, &[NAME]);
    let device = device("ok");
    let (port, handle) = server(vec![cert], &key, &device.ca_der, false);
    let mut signer = HostSigner { key: device.key.clone(), calls: 0 };
    let reply = exchange(port, server_ca.cert.der(), NAME, now(), &device.certificate, &mut signer).unwrap();
    assert_eq!(reply, b"hello device, from the service\n");
    assert_eq!(signer.calls, 1, "one CertificateVerify signature per handshake");
    let seen = handle.join().unwrap();
    assert_eq!(seen.error, None);
    assert_eq!(seen.received, b"device");
    let presented = seen.client_certificate.expect("the server saw a client certificate");
    assert_eq!(presented, device.certificate);
    let point: [u8; 65] = device.key.verifying_key().to_encoded_point(false).as_bytes().try_into().unwrap();
    assert!(septa_abi::device_auth::is_certificate_for(&presented, &point), "it carries the device key");
}

/// Runs a refused handshake: the client must fail with `expected` and the server must see
/// no application data.
fn refused(chain: Vec<rcgen::Certificate>, key: &KeyPair, anchor: &[u8], name: &str, now_unix: u64) -> Error {
    let device = device("refused");
    let (port, handle) = server(chain, key, &device.ca_der, false);
    let error =
        exchange(port, anchor, name, now_unix, &device.certificate, HostSigner { key: device.key, calls: 0 })
            .expect_err("the handshake must be refused");
    let seen = handle.join().unwrap();
    assert!(seen.received.is_empty(), "no application data reached the server");
    assert!(seen.error.is_some(), "the server saw the handshake fail");
    error
}

#[test]
fn a_server_certificate_from_an_unknown_ca_is_refused() {
    let stranger = ca("Some other CA");
    let trusted = ca("Septa test service CA");
    let (cert, key) = valid_leaf(&stranger, &[NAME]);
    let error = refused(vec![cert], &key, trusted.cert.der(), NAME, now());
    assert!(matches!(error, Error::ServerCertificate(CertificateError::UnknownIssuer)), "{error:?}");
}

#[test]
fn an_expired_server_certificate_is_refused() {
    let server_ca = ca("Septa test service CA");
    let now_time = OffsetDateTime::now_utc();
    let (cert, key) =
        leaf(&server_ca, &[NAME], now_time - time::Duration::days(30), now_time - time::Duration::days(1));
    let error = refused(vec![cert], &key, server_ca.cert.der(), NAME, now());
    assert!(matches!(error, Error::ServerCertificate(CertificateError::Expired)), "{error:?}");
}

#[test]
fn a_device_clock_before_the_validity_period_refuses_the_certificate() {
    let server_ca = ca("Septa test service CA");
    let (cert, key) = valid_leaf(&server_ca, &[NAME]);
    // An RTC that was never set reads 1970.
    let error = refused(vec![cert], &key, server_ca.cert.der(), NAME, 0);
    assert!(matches!(error, Error::ServerCertificate(CertificateError::NotYetValid)), "{error:?}");
}

#[test]
fn a_chain_through_a_non_ca_intermediate_is_refused() {
    let root = ca("Septa test service CA");
    // An end-entity certificate of the trusted CA, used as if it were an intermediate CA.
    let not_ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "not a CA");
    params.is_ca = IsCa::ExplicitNoCa;
    let not_ca = Ca { cert: params.signed_by(&not_ca_key, &root.cert, &root.key).unwrap(), key: not_ca_key };
    let (cert, key) = valid_leaf(&not_ca, &[NAME]);
    let error = refused(vec![cert, not_ca.cert], &key, root.cert.der(), NAME, now());
    assert!(matches!(error, Error::ServerCertificate(CertificateError::NotACa)), "{error:?}");
}

#[test]
fn a_server_certificate_for_another_name_is_refused() {
    let server_ca = ca("Septa test service CA");
    let (cert, key) = valid_leaf(&server_ca, &["other.septa.test"]);
    let error = refused(vec![cert], &key, server_ca.cert.der(), NAME, now());
    assert!(matches!(error, Error::ServerCertificate(CertificateError::WrongName)), "{error:?}");
}

#[test]
fn a_server_with_only_tls_12_is_refused() {
    let server_ca = ca("Septa test service CA");
    let (cert, key) = valid_leaf(&server_ca, &[NAME]);
    let device = device("tls12");
    let (port, handle) = server(vec![cert], &key, &device.ca_der, true);
    let error = exchange(
        port,
        server_ca.cert.der(),
        NAME,
        now(),
        &device.certificate,
        HostSigner { key: device.key, calls: 0 },
    )
    .unwrap_err();
    assert!(matches!(error, Error::Alert(70)), "{error:?}");
    assert!(error.to_string().contains("TLS 1.3"), "{error}");
    assert!(handle.join().unwrap().received.is_empty());
}

#[test]
fn the_server_refuses_a_client_certificate_from_another_ca() {
    let server_ca = ca("Septa test service CA");
    let (cert, key) = valid_leaf(&server_ca, &[NAME]);
    let device = device("client");
    let impostor = device_from_another_ca();
    let (port, handle) = server(vec![cert], &key, &device.ca_der, false);
    let result = exchange(
        port,
        server_ca.cert.der(),
        NAME,
        now(),
        &impostor.certificate,
        HostSigner { key: impostor.key, calls: 0 },
    );
    // TLS 1.3 clients finish first; the server's refusal arrives as an alert on the next read.
    // Which call sees it depends on timing: during the handshake's last read it is an
    // `Alert`; after the handshake embedded-tls 0.19 reports any alert other than
    // close_notify as `InternalError` (the description is dropped); a closed socket is
    // `Transport`. Each is a refusal: the server-side checks below are what matter.
    assert!(
        matches!(result, Err(Error::Alert(_) | Error::Transport | Error::Protocol(TlsError::InternalError))),
        "{result:?}"
    );
    let seen = handle.join().unwrap();
    assert!(seen.client_certificate.is_none() && seen.received.is_empty(), "{seen:?}");
    let reason = seen.error.unwrap();
    // Both device CAs have the same name, so the server finds the issuer by name and the
    // signature does not verify.
    assert!(reason.contains("invalid peer certificate"), "the server refused the certificate: {reason}");
}

fn device_from_another_ca() -> Device {
    device("impostor")
}

#[test]
fn a_signer_failure_is_a_handshake_error_and_sends_no_certificate_verify() {
    let server_ca = ca("Septa test service CA");
    for failure in [SignError::Denied, SignError::Failed] {
        let (cert, key) = valid_leaf(&server_ca, &[NAME]);
        let device = device("signer");
        let (port, handle) = server(vec![cert], &key, &device.ca_der, false);
        let error =
            exchange(port, server_ca.cert.der(), NAME, now(), &device.certificate, FailingSigner(failure))
                .unwrap_err();
        assert!(matches!(error, Error::Signer(e) if e == failure), "{error:?}");
        let seen = handle.join().unwrap();
        assert!(seen.client_certificate.is_none(), "the server never completed the handshake");
        assert!(seen.received.is_empty());
    }
}

#[test]
fn no_trust_anchor_no_connection() {
    assert!(matches!(TrustAnchors::new(&[]), Err(Error::NoTrustAnchor)));
    let not_a_certificate = [CertificateDer::from(&b"not a certificate"[..])];
    assert!(matches!(TrustAnchors::new(&not_a_certificate), Err(Error::BadTrustAnchor)));
}
