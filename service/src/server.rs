//! Starting the service: open the storage, load (or on the first start create) the CA,
//! listen for management and dashboard requests on plain HTTP and for devices on a mutual
//! TLS port (rustls), and sweep deadlines in the background. Replicas hold no state of their
//! own: everything is in the database, so any number can run against one PostgreSQL.

use crate::ca::Ca;
use crate::storage::Storage;
use crate::web::{self, AppState};
use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub struct Options {
    pub database_url: String,
    pub listen: SocketAddr,
    /// The TLS device port, if any.
    pub device_listen: Option<SocketAddr>,
    /// Names the device port's certificate is for (when the service CA issues it).
    pub tls_names: Vec<String>,
    /// The device port's certificate chain and key (PEM files), instead of a certificate
    /// from the service CA: for a fleet whose images trust another CA for the service.
    pub tls_identity: Option<(PathBuf, PathBuf)>,
    /// Factory device CAs (PEM or DER files): client certificates they issued are accepted
    /// on the device port besides the service CA's own, for a device's first check-in.
    pub device_cas: Vec<PathBuf>,
    pub sweep_interval: Duration,
    pub nonce_ttl_s: i64,
    /// Seconds between a device's check-ins, told to it in every check-in.
    pub check_in_interval_s: u32,
}

pub async fn state(database_url: &str, nonce_ttl_s: i64) -> Result<AppState> {
    let storage = Storage::open(database_url).await.with_context(|| "opening the database")?;
    let stored = storage.setting_or_insert("ca", Ca::new_stored).await?;
    let ca = Ca::from_stored(&stored)?;
    let nonce_key = storage.setting_or_insert("nonce_key", || hex::encode(random_key())).await?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(&nonce_key, &mut key).context("the stored nonce key is not 32 bytes of hex")?;
    Ok(AppState::new(storage, ca, key, nonce_ttl_s))
}

fn random_key() -> [u8; 32] {
    use rand_core::RngCore;
    let mut key = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut key);
    key
}

pub async fn run(options: Options) -> Result<()> {
    let mut state = state(&options.database_url, options.nonce_ttl_s).await?;
    state.check_in_interval_s = options.check_in_interval_s;
    let listener =
        TcpListener::bind(options.listen).await.with_context(|| format!("binding {}", options.listen))?;
    println!(
        "septa-service: management API and dashboard on http://{} ({})",
        listener.local_addr()?,
        if state.storage.is_postgres() { "PostgreSQL" } else { "SQLite" }
    );
    if let Some(addr) = options.device_listen {
        let tls = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let acceptor = acceptor(&state.ca, &options)?;
        println!("septa-service: device protocol over TLS on {}", tls.local_addr()?);
        tokio::spawn(serve_tls(tls, acceptor, web::device_router(state.clone())));
    }
    let sweeper = state.storage.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(options.sweep_interval).await;
            if let Err(e) = sweeper.sweep(web::now()).await {
                tracing::warn!("sweep: {e}");
            }
        }
    });
    use std::io::Write;
    let _ = std::io::stdout().flush();
    axum::serve(listener, web::router(state)).await?;
    Ok(())
}

/// TLS 1.3/1.2 with the device port's certificate (issued by the service CA unless the
/// options name one). Every client must present a certificate issued by the service CA or
/// by one of the factory device CAs (expired or not: [`ExpiredAccepted`]); a client without
/// one is refused in the handshake. The
/// handlers then hold each request to the device whose key that certificate carries.
fn acceptor(ca: &Ca, options: &Options) -> Result<TlsAcceptor> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key) = match &options.tls_identity {
        Some((cert, key)) => read_identity(cert, key)?,
        None => {
            let (cert, key) = ca.issue_server(options.tls_names.clone(), web::now())?;
            (
                vec![CertificateDer::from(cert), CertificateDer::from(ca.certificate_der())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.certificate_der()))?;
    for file in &options.device_cas {
        for der in read_certificates(file)? {
            roots.add(der).with_context(|| format!("{}: not a usable CA certificate", file.display()))?;
        }
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(ExpiredAccepted(verifier)))
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The client verifier of the device port: a chain the inner verifier accepts, or one it
/// refuses only because the certificate has expired. A device whose 24-hour certificate ran
/// out while it was offline — or which is untrusted, so it got no new one, and needs the
/// recovery release — must still be able to check in: the check-in proves it afresh
/// (attestation over a new nonce), and the certificate only names the key the handshake
/// proved. Every other check (issuer, signatures, client-auth usage) stands.
#[derive(Debug)]
struct ExpiredAccepted(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl rustls::server::danger::ClientCertVerifier for ExpiredAccepted {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        match self.0.verify_client_cert(end_entity, intermediates, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
                not_after,
                ..
            })) => self.0.verify_client_cert(end_entity, intermediates, not_after),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The certificates of a PEM file (or the one certificate of a DER file).
fn read_certificates(file: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if !bytes.starts_with(b"-----") {
        return Ok(vec![bytes.into()]);
    }
    let blocks = pem::parse_many(&bytes).with_context(|| format!("{}: not PEM", file.display()))?;
    let certificates: Vec<_> =
        blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| b.into_contents().into()).collect();
    if certificates.is_empty() {
        anyhow::bail!("{}: no certificate in it", file.display());
    }
    Ok(certificates)
}

/// A certificate chain (PEM) and its PKCS#8 private key (PEM).
fn read_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<rustls::pki_types::CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>)> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let chain = read_certificates(cert)?;
    let text = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let block = pem::parse(&text).with_context(|| format!("{}: not PEM", key.display()))?;
    if block.tag() != "PRIVATE KEY" {
        anyhow::bail!("{}: not a PKCS#8 private key (PRIVATE KEY)", key.display());
    }
    Ok((chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(block.into_contents()))))
}

async fn serve_tls(listener: TcpListener, acceptor: TlsAcceptor, router: axum::Router) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            // The verifier admitted only clients with a valid certificate: its key is the
            // client's, for every request on this connection.
            let Some(peer) =
                tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(web::Peer::of)
            else {
                return;
            };
            let router = router.layer(axum::Extension(peer));
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
