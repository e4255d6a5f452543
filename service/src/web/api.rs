//! The management API (JSON, `Authorization: Bearer <token>`), scoped to the token's tenant:
//! every query names the caller's tenant, so no call reaches another tenant's devices,
//! releases, deployments or reports. Roles: viewers read, deployers upload releases and
//! deploy them, admins manage keys, products, groups, devices and tokens.

use super::{AppState, Caller, Error, Result, now, parse_device_id};
use crate::policy::{self, Role};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use serde_json::{Value, json};

/// The largest bundle accepted (a whole slot image and its header).
pub const BUNDLE_MAX: usize = 64 << 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ca", get(ca))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/tokens", post(create_token).get(tokens))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/oem-keys", post(add_oem_key))
        .route("/api/v1/products", post(create_product))
        .route("/api/v1/groups", post(create_group))
        .route("/api/v1/devices", post(claim).get(devices))
        .route("/api/v1/devices/{id}", get(device))
        .route("/api/v1/devices/{id}/group", put(set_group))
        .route(
            "/api/v1/releases",
            post(upload_release).get(releases).layer(DefaultBodyLimit::max(BUNDLE_MAX)),
        )
        .route("/api/v1/deployments", post(deploy).get(deployments))
        .route("/api/v1/deployments/{id}/targets", get(targets))
        .route("/api/v1/issues", get(issues))
        .route("/api/v1/issues/{id}/fixed", post(fix_issue))
        .route("/api/v1/audit", get(audit))
        .layer(DefaultBodyLimit::max(64 << 10))
}

fn name(field: &str, value: &str) -> Result<()> {
    if policy::valid_name(value) {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "{field} {value:?} is not a valid name: 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

fn id(value: &str) -> Result<()> {
    if value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Error::bad_request("an id is 32 hex digits"))
    }
}

/// A P-256 public key: PEM (SubjectPublicKeyInfo) or hex of the SEC1 encoding.
fn public_key(text: &str) -> Result<VerifyingKey> {
    let text = text.trim();
    if let Ok(key) = VerifyingKey::from_public_key_pem(text) {
        return Ok(key);
    }
    hex::decode(text)
        .ok()
        .and_then(|b| VerifyingKey::from_sec1_bytes(&b).ok())
        .ok_or_else(|| Error::bad_request("not a P-256 public key (PEM or SEC1 hex)"))
}

async fn ca(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], state.ca.certificate_pem())
}

async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({ "tenant": caller.tenant, "role": caller.role.name() }))
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    role: String,
}

async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewToken>,
) -> Result<Json<Value>> {
    caller.require(Role::Admin)?;
    name("token name", &body.name)?;
    let role =
        Role::parse(&body.role).ok_or_else(|| Error::bad_request("role is admin, deployer or viewer"))?;
    let token = crate::new_token();
    let id = state
        .storage
        .create_token(&caller.tenant, role, &body.name, &policy::token_hash(&token), now())
        .await?;
    Ok(Json(json!({ "id": id, "token": token, "role": role.name() })))
}

async fn tokens(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    caller.require(Role::Admin)?;
    Ok(Json(json!(state.storage.tokens(&caller.tenant).await?)))
}

async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<StatusCode> {
    caller.require(Role::Admin)?;
    id(&token)?;
    state.storage.revoke_token(&caller.tenant, &token, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct NewKey {
    public_key: String,
}

async fn add_oem_key(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewKey>,
) -> Result<Json<Value>> {
    caller.require(Role::Admin)?;
    let key = public_key(&body.public_key)?;
    let key_id = hex::encode(septa_abi::keys::key_id(&key));
    state.storage.add_oem_key(&caller.tenant, &key_id, key.to_encoded_point(false).as_bytes()).await?;
    Ok(Json(json!({ "key_id": key_id })))
}

#[derive(Deserialize)]
struct NewProduct {
    name: String,
}

async fn create_product(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewProduct>,
) -> Result<Json<Value>> {
    caller.require(Role::Admin)?;
    name("product", &body.name)?;
    let id = state.storage.create_product(&caller.tenant, &body.name).await?;
    Ok(Json(json!({ "id": id })))
}

#[derive(Deserialize)]
struct NewGroup {
    product: String,
    name: String,
}

async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewGroup>,
) -> Result<Json<Value>> {
    caller.require(Role::Admin)?;
    name("product", &body.product)?;
    name("group", &body.name)?;
    let id = state.storage.create_group(&caller.tenant, &body.product, &body.name).await?;
    Ok(Json(json!({ "id": id })))
}

#[derive(Deserialize)]
struct Claim {
    product: String,
    group: Option<String>,
    public_key: String,
}

async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Claim>,
) -> Result<Json<Value>> {
    caller.require(Role::Admin)?;
    name("product", &body.product)?;
    if let Some(group) = &body.group {
        name("group", group)?;
    }
    let key = public_key(&body.public_key)?;
    let device_id = hex::encode(septa_abi::keys::key_id(&key));
    state
        .storage
        .claim(
            &caller.tenant,
            &body.product,
            body.group.as_deref(),
            &device_id,
            key.to_encoded_point(false).as_bytes(),
            now(),
        )
        .await?;
    Ok(Json(json!({ "device_id": device_id })))
}

async fn devices(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    Ok(Json(json!(state.storage.devices(&caller.tenant).await?)))
}

async fn device(
    State(state): State<AppState>,
    caller: Caller,
    Path(device): Path<String>,
) -> Result<Json<Value>> {
    let device = hex::encode(parse_device_id(&device)?);
    let info = state.storage.device(&caller.tenant, &device).await?;
    let attestations = state.storage.attestations(&caller.tenant, &device, 50).await?;
    let reports = state.storage.reports(&caller.tenant, &device).await?;
    Ok(Json(json!({ "device": info, "attestations": attestations, "reports": reports })))
}

#[derive(Deserialize)]
struct SetGroup {
    group: String,
}

async fn set_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(device): Path<String>,
    Json(body): Json<SetGroup>,
) -> Result<StatusCode> {
    caller.require(Role::Deployer)?;
    let device = hex::encode(parse_device_id(&device)?);
    name("group", &body.group)?;
    state.storage.set_group(&caller.tenant, &device, &body.group).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ReleaseQuery {
    product: String,
    name: String,
    #[serde(default)]
    recovery: bool,
}

async fn upload_release(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ReleaseQuery>,
    body: Bytes,
) -> Result<Json<Value>> {
    caller.require(Role::Deployer)?;
    name("product", &query.product)?;
    name("release", &query.name)?;
    let keys: Vec<VerifyingKey> = state
        .storage
        .oem_keys(&caller.tenant)
        .await?
        .iter()
        .filter_map(|k| VerifyingKey::from_sec1_bytes(k).ok())
        .collect();
    let verified = policy::verify_bundle(&body, &keys)
        .map_err(|e| Error::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let id = state
        .storage
        .create_release(&caller.tenant, &query.product, &query.name, query.recovery, &verified, &body, now())
        .await?;
    Ok(Json(json!({ "id": id, "fingerprint": verified.fingerprint, "sha256": verified.sha256 })))
}

async fn releases(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    Ok(Json(json!(state.storage.releases(&caller.tenant).await?)))
}

#[derive(Deserialize)]
struct Deploy {
    release: String,
    group: String,
    #[serde(default = "default_phases")]
    phases: String,
    #[serde(default = "default_threshold")]
    threshold_percent: u32,
    #[serde(default = "default_deadline")]
    deadline_s: u32,
}

fn default_phases() -> String {
    "1,10,100".into()
}
fn default_threshold() -> u32 {
    10
}
fn default_deadline() -> u32 {
    86_400
}

async fn deploy(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Deploy>,
) -> Result<Json<Value>> {
    caller.require(Role::Deployer)?;
    name("release", &body.release)?;
    name("group", &body.group)?;
    let phases = policy::parse_phases(&body.phases)
        .ok_or_else(|| Error::bad_request("phases are rising percentages ending at 100, e.g. 1,10,100"))?;
    if body.threshold_percent > 100 || body.deadline_s == 0 {
        return Err(Error::bad_request("threshold_percent is 0-100 and deadline_s at least 1"));
    }
    let phases = phases.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let id = state
        .storage
        .create_deployment(
            &caller.tenant,
            &body.release,
            &body.group,
            &phases,
            body.threshold_percent,
            body.deadline_s,
            now(),
        )
        .await?;
    Ok(Json(json!({ "id": id })))
}

async fn deployments(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    state.storage.sweep(now()).await?;
    Ok(Json(json!(state.storage.deployments(&caller.tenant).await?)))
}

async fn targets(
    State(state): State<AppState>,
    caller: Caller,
    Path(deployment): Path<String>,
) -> Result<Json<Value>> {
    id(&deployment)?;
    state.storage.sweep(now()).await?;
    let targets = state.storage.targets(&caller.tenant, &deployment).await?;
    Ok(Json(json!(targets.into_iter().map(|(d, s)| json!({"device": d, "status": s})).collect::<Vec<_>>())))
}

async fn issues(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>> {
    Ok(Json(json!(state.storage.issues(&caller.tenant).await?)))
}

async fn fix_issue(
    State(state): State<AppState>,
    caller: Caller,
    Path(issue): Path<String>,
) -> Result<StatusCode> {
    caller.require(Role::Deployer)?;
    id(&issue)?;
    state.storage.fix_issue(&caller.tenant, &issue).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default = "default_silent")]
    silent_days: u32,
    #[serde(default = "default_expiring")]
    expiring_hours: u32,
}

fn default_silent() -> u32 {
    7
}
fn default_expiring() -> u32 {
    2
}

async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>> {
    state.storage.sweep(now()).await?;
    let audit = state
        .storage
        .audit(&caller.tenant, now(), query.silent_days as i64, query.expiring_hours as i64 * 3600)
        .await?;
    Ok(Json(json!(audit)))
}
