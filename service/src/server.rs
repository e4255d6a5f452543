//! Starting the service: open the storage, load (or on the first start create) the CA,
//! listen for management and dashboard requests on plain HTTP and, when asked, for devices
//! on a rustls port, and sweep deadlines in the background. Replicas hold no state of their
//! own: everything is in the database, so any number can run against one PostgreSQL.

use crate::ca::Ca;
use crate::storage::Storage;
use crate::web::{self, AppState};
use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub struct Options {
    pub database_url: String,
    pub listen: SocketAddr,
    /// The TLS device port, if any.
    pub device_listen: Option<SocketAddr>,
    /// Names the device port's certificate is for.
    pub tls_names: Vec<String>,
    pub sweep_interval: Duration,
    pub nonce_ttl_s: i64,
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
    let state = state(&options.database_url, options.nonce_ttl_s).await?;
    let listener =
        TcpListener::bind(options.listen).await.with_context(|| format!("binding {}", options.listen))?;
    println!(
        "septa-service: management API, dashboard and device protocol on http://{} ({})",
        listener.local_addr()?,
        if state.storage.is_postgres() { "PostgreSQL" } else { "SQLite" }
    );
    if let Some(addr) = options.device_listen {
        let tls = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        println!("septa-service: device protocol over TLS on {}", tls.local_addr()?);
        let acceptor = acceptor(&state.ca, options.tls_names.clone())?;
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

/// TLS 1.3/1.2 with the CA-issued server certificate. Client certificates issued by the CA
/// are requested and verified when presented; in protocol v1 they are optional, because a
/// device proves itself with its attestation token.
fn acceptor(ca: &Ca, names: Vec<String>) -> Result<TlsAcceptor> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert, key) = ca.issue_server(names, web::now())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.certificate_der()))?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert), CertificateDer::from(ca.certificate_der())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )?;
    Ok(TlsAcceptor::from(Arc::new(config)))
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
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
