//! The mutual-TLS demo service `cargo xtask run` starts on the host's loopback: a rustls
//! TLS 1.3 server with a certificate for `devhost` from the development service CA, which
//! accepts only clients with a certificate from the development device CA (or from the CAs
//! it is given: `cargo xtask run` adds septa-service's, whose certificates the agent
//! installs). It answers each
//! client's first line, naming the device whose certificate it verified.

use anyhow::{Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use septa_tool::device_cert::{CA_CERT_DER_FILE, ServiceCa};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

/// Starts the service for the keys in `keys` (the board's `keys/` folder), trusting
/// `client_cas` (DER) for clients besides the development device CA.
pub fn start(keys: &Path, client_cas: &[Vec<u8>]) -> Result<SocketAddr> {
    let service_ca = ServiceCa::load_or_create(&keys.join("service-ca"))?;
    let now = time::OffsetDateTime::now_utc();
    let (certificate, key) = service_ca.issue_server(
        &["devhost"],
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    )?;
    let device_ca_path = keys.join("device-ca").join(CA_CERT_DER_FILE);
    let device_ca =
        std::fs::read(&device_ca_path).with_context(|| format!("reading {}", device_ca_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(device_ca)).context("the device CA certificate")?;
    for ca in client_cas {
        roots.add(CertificateDer::from(ca.clone())).context("a client CA certificate")?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .context("the client verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(certificate)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .context("the server certificate")?;
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the TLS demo service")?;
    let address = listener.local_addr()?;
    std::thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let Ok(connection) = rustls::ServerConnection::new(config) else { return };
                let mut stream = rustls::StreamOwned::new(connection, socket);
                let mut line = String::new();
                if BufReader::new(&mut stream).read_line(&mut line).is_err() {
                    return;
                }
                let device = stream
                    .conn
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map_or_else(|| "an unknown device".to_string(), |c| device_name(c));
                let _ = writeln!(stream, "hello {device}, you said {:?}", line.trim_end());
                let _ = stream.flush();
                stream.conn.send_close_notify();
                let _ = stream.conn.complete_io(&mut stream.sock);
            });
        }
    });
    Ok(address)
}

/// The device name in a device certificate's common name (`septa device <key id>`).
fn device_name(certificate: &[u8]) -> String {
    let marker = b"septa device ";
    certificate
        .windows(marker.len() + 16)
        .find(|w| w.starts_with(marker))
        .map_or_else(|| "a device".to_string(), |w| String::from_utf8_lossy(w).into_owned())
}
