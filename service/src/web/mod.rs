//! The web layer: thin axum handlers over the policy and storage layers. `device` serves the
//! device protocol (postcard bodies, docs/protocol.md), `api` the management API (JSON,
//! bearer tokens), `pages` the server-rendered dashboard. Every handler validates what it
//! is sent, and [`Error`] turns what went wrong into a status and a message a client can act
//! on; nothing a client sends can make a handler panic.

mod api;
mod device;
mod pages;

use crate::ca::Ca;
use crate::policy::{self, Role};
use crate::storage::{Storage, StorageError};
use axum::Router;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    pub ca: Arc<Ca>,
    /// Seconds a nonce stays valid.
    pub nonce_ttl_s: i64,
    /// The key nonces are MACed with (shared by replicas through the database).
    pub nonce_key: [u8; 32],
    /// Seconds between a device's check-ins, told to it in every check-in.
    pub check_in_interval_s: u32,
    /// Claimed devices' keys, by device id. A claim never changes or ends, so a cached key
    /// is never stale, on any replica; this saves a query per request.
    pub device_keys: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<crate::storage::DeviceKey>>>>,
}

/// A day less four hours (as Azure Sphere's ~20 h): production devices check in about daily.
pub const DEFAULT_CHECK_IN_INTERVAL_S: u32 = 20 * 3600;

/// The client on a device-port connection: the public key (SEC1 uncompressed) of the
/// certificate it authenticated with in the TLS handshake.
#[derive(Clone, Debug)]
pub struct Peer {
    pub public_key: Vec<u8>,
}

impl Peer {
    /// The peer of a client certificate the TLS verifier accepted; `None` when its key is
    /// not a P-256 key (no device has another).
    pub fn of(certificate: &rustls::pki_types::CertificateDer<'_>) -> Option<Peer> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::DecodePublicKey;
        let cert = webpki::EndEntityCert::try_from(certificate).ok()?;
        let key = p256::PublicKey::from_public_key_der(&cert.subject_public_key_info()).ok()?;
        Some(Peer { public_key: key.to_encoded_point(false).as_bytes().to_vec() })
    }
}

/// Cached device keys at most (then the cache starts over).
const DEVICE_KEY_CACHE: usize = 200_000;

impl AppState {
    pub fn new(storage: Storage, ca: Ca, nonce_key: [u8; 32], nonce_ttl_s: i64) -> AppState {
        AppState {
            storage,
            ca: Arc::new(ca),
            nonce_ttl_s,
            nonce_key,
            check_in_interval_s: DEFAULT_CHECK_IN_INTERVAL_S,
            device_keys: Default::default(),
        }
    }

    /// The key of a claimed device, or `None` if it is not claimed.
    pub async fn device_key(&self, device_id: &str) -> Result<Option<Arc<crate::storage::DeviceKey>>> {
        if let Some(key) = self.device_keys.lock().ok().and_then(|c| c.get(device_id).cloned()) {
            return Ok(Some(key));
        }
        let Some(key) = self.storage.device_key(device_id).await? else { return Ok(None) };
        let key = Arc::new(key);
        if let Ok(mut cache) = self.device_keys.lock() {
            if cache.len() >= DEVICE_KEY_CACHE {
                cache.clear();
            }
            cache.insert(device_id.to_string(), key.clone());
        }
        Ok(Some(key))
    }
}

/// An error a client is told about.
#[derive(Debug)]
pub struct Error {
    pub status: StatusCode,
    pub message: String,
}

impl Error {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Error {
        match e {
            StorageError::Conflict(m) => Error::new(StatusCode::CONFLICT, m),
            StorageError::NotFound(m) => Error::new(StatusCode::NOT_FOUND, m),
            StorageError::Refused(m) => Error::new(StatusCode::UNAUTHORIZED, m),
            StorageError::Database(e) => {
                tracing::error!("database: {e}");
                Error::new(StatusCode::SERVICE_UNAVAILABLE, "the database failed; retry later")
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", self.message))
            .into_response()
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The caller of a management request: a tenant and a role, from an unrevoked API token
/// (`Authorization: Bearer`, or the dashboard's cookie).
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub role: Role,
}

impl Caller {
    pub fn require(&self, role: Role) -> Result<()> {
        if self.role < role {
            return Err(Error::new(
                StatusCode::FORBIDDEN,
                format!("this needs the {} role; the token has {}", role.name(), self.role.name()),
            ));
        }
        Ok(())
    }
}

/// The cookie the dashboard keeps the token in.
pub const COOKIE: &str = "septa_token";

fn token_of(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return value.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    let cookies = parts.headers.get(header::COOKIE).and_then(|v| v.to_str().ok())?;
    cookies.split(';').find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}="))).map(str::to_string)
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller> {
        let state = AppState::from_ref(state);
        let token = token_of(parts).filter(|t| !t.is_empty() && t.len() <= 128).ok_or_else(|| {
            Error::new(StatusCode::UNAUTHORIZED, "no API token (Authorization: Bearer <token>)")
        })?;
        match state.storage.token(&policy::token_hash(&token)).await? {
            Some((tenant, role)) => Ok(Caller { tenant, role }),
            None => Err(Error::new(StatusCode::UNAUTHORIZED, "unknown or revoked API token")),
        }
    }
}

/// The management API and the dashboard (plain HTTP, for the operator).
pub fn router(state: AppState) -> Router {
    Router::new().merge(api::routes()).merge(pages::routes()).with_state(state)
}

/// The device protocol (the mutual-TLS device port; each connection carries its [`Peer`]).
pub fn device_router(state: AppState) -> Router {
    device::routes().with_state(state)
}

/// A device id from text: 16 hex digits.
pub fn parse_device_id(text: &str) -> Result<[u8; 8]> {
    let mut id = [0u8; 8];
    hex::decode_to_slice(text, &mut id).map_err(|_| Error::bad_request("a device id is 16 hex digits"))?;
    Ok(id)
}
