//! Storage: the one module that holds SQL. Everything the service keeps is here, on SQLite
//! (one file under the data directory) or PostgreSQL, through one schema and the same
//! statements (`$n` placeholders, `ON CONFLICT` upserts and plain types both understand;
//! only the binary column's type name differs).
//!
//! Migrations run at start-up, in one transaction (on PostgreSQL under an advisory lock, so
//! replicas starting together migrate once). Every write that matters — a claim, a check-in,
//! a deployment, a report — is one transaction: committed whole or not at all, so a crash
//! never leaves half a state. Identifiers are random hex strings made by the service, never
//! database sequences, so both databases agree.

use crate::policy::{self, Decision, Progress, Role, TargetStatus};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The request's proof is no good (a used or unknown nonce).
    #[error("{0}")]
    Refused(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Schema versions, in order; a released version is never edited, only followed by another.
/// `{blob}` is the binary column type of the database. Version 2: nonces are stateless
/// (MACed), only used ones are recorded.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL);
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), role TEXT NOT NULL,
    name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, revoked_at BIGINT);
CREATE TABLE oem_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants(id), key_id TEXT NOT NULL, public_key {blob} NOT NULL,
    PRIMARY KEY (tenant_id, key_id));
CREATE TABLE products (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), name TEXT NOT NULL,
    UNIQUE (tenant_id, name));
CREATE TABLE device_groups (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
    product_id TEXT NOT NULL REFERENCES products(id), name TEXT NOT NULL, UNIQUE (tenant_id, name));
CREATE TABLE devices (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
    product_id TEXT NOT NULL REFERENCES products(id), group_id TEXT REFERENCES device_groups(id),
    public_key {blob} NOT NULL UNIQUE, claimed_at BIGINT NOT NULL, last_seen BIGINT,
    trusted BIGINT, fingerprint TEXT, release_id TEXT, attestation_key {blob}, cert_not_after BIGINT);
CREATE INDEX devices_tenant ON devices (tenant_id);
CREATE TABLE nonces (nonce TEXT PRIMARY KEY, device_id TEXT NOT NULL, expires_at BIGINT NOT NULL);
CREATE TABLE attestations (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, device_id TEXT NOT NULL, at BIGINT NOT NULL,
    fingerprint TEXT NOT NULL, release_id TEXT, trusted BIGINT NOT NULL, attestation_key {blob} NOT NULL);
CREATE INDEX attestations_device ON attestations (device_id, at);
CREATE INDEX attestations_key ON attestations (attestation_key);
CREATE TABLE releases (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
    product_id TEXT NOT NULL REFERENCES products(id), name TEXT NOT NULL, recovery BIGINT NOT NULL,
    fingerprint TEXT NOT NULL, bundle_sha256 TEXT NOT NULL, bundle_len BIGINT NOT NULL,
    bundle {blob} NOT NULL, created_at BIGINT NOT NULL, seq BIGINT NOT NULL, UNIQUE (product_id, name));
CREATE INDEX releases_fingerprint ON releases (product_id, fingerprint);
CREATE TABLE deployments (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
    release_id TEXT NOT NULL REFERENCES releases(id), group_id TEXT NOT NULL REFERENCES device_groups(id),
    phases TEXT NOT NULL, phase BIGINT NOT NULL, threshold_percent BIGINT NOT NULL,
    deadline_s BIGINT NOT NULL, state TEXT NOT NULL, reason TEXT, created_at BIGINT NOT NULL);
CREATE TABLE deployment_targets (
    deployment_id TEXT NOT NULL REFERENCES deployments(id), device_id TEXT NOT NULL REFERENCES devices(id),
    rank BIGINT NOT NULL, status TEXT NOT NULL, before_fingerprint TEXT NOT NULL,
    opened_at BIGINT, offered_at BIGINT, decided_at BIGINT, PRIMARY KEY (deployment_id, device_id));
CREATE INDEX targets_device ON deployment_targets (device_id);
CREATE TABLE tickets (
    hash TEXT PRIMARY KEY, device_id TEXT NOT NULL, release_id TEXT NOT NULL, deployment_id TEXT,
    expires_at BIGINT NOT NULL);
CREATE TABLE reports (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, device_id TEXT NOT NULL, digest TEXT NOT NULL,
    raw {blob} NOT NULL, received_at BIGINT NOT NULL, release_id TEXT, UNIQUE (device_id, digest));
CREATE TABLE issues (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, product_id TEXT NOT NULL, component_id TEXT NOT NULL,
    app TEXT NOT NULL, kind TEXT NOT NULL, pc BIGINT NOT NULL, state TEXT NOT NULL, fixed_seq BIGINT,
    first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL, count BIGINT NOT NULL,
    UNIQUE (tenant_id, product_id, component_id, kind, pc));
CREATE TABLE issue_counts (
    issue_id TEXT NOT NULL REFERENCES issues(id), release_id TEXT NOT NULL, day BIGINT NOT NULL,
    count BIGINT NOT NULL, PRIMARY KEY (issue_id, release_id, day));
"#,
    r#"
DROP TABLE nonces;
CREATE TABLE used_nonces (nonce TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
"#,
];

/// A tenant's view of a device.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    pub id: String,
    pub product: String,
    pub group: Option<String>,
    pub claimed_at: i64,
    pub last_seen: Option<i64>,
    pub trusted: Option<bool>,
    pub release: Option<String>,
    pub cert_not_after: Option<i64>,
}

/// What a check-in needs to know about the device that claims to be checking in.
pub struct DeviceKey {
    pub tenant_id: String,
    pub product_id: String,
    pub public_key: Vec<u8>,
}

/// The release a device is offered, and where to fetch it.
pub struct Offer {
    pub ticket_hash: String,
    pub bundle_len: i64,
    pub bundle_sha256: String,
}

/// A verified attestation, ready to record.
pub struct Checkin<'a> {
    pub device_id: &'a str,
    /// The nonce the token answers (hex, already checked to be this device's and live):
    /// used up by this check-in.
    pub nonce: &'a str,
    pub nonce_expires: i64,
    pub key: &'a DeviceKey,
    pub fingerprint: &'a str,
    pub attestation_key: &'a [u8],
    pub cert_not_after: Option<i64>,
    pub now: i64,
    /// A fresh ticket's hash, used if the device is offered a release.
    pub ticket_hash: &'a str,
    pub ticket_expires: i64,
}

pub struct CheckinResult {
    pub trusted: bool,
    pub offer: Option<Offer>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Release {
    pub id: String,
    pub product: String,
    pub name: String,
    pub recovery: bool,
    pub fingerprint: String,
    pub bundle_sha256: String,
    pub bundle_len: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Deployment {
    pub id: String,
    pub release: String,
    pub group: String,
    pub phases: String,
    pub phase: i64,
    pub threshold_percent: i64,
    pub deadline_s: i64,
    pub state: String,
    pub reason: Option<String>,
    pub created_at: i64,
    /// Targets per status name.
    pub counts: std::collections::BTreeMap<String, i64>,
    pub total: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Issue {
    pub id: String,
    pub product: String,
    pub component_id: String,
    pub app: String,
    pub kind: String,
    pub pc: i64,
    pub state: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: i64,
    /// (release name or "", day number since the epoch, count).
    pub history: Vec<(String, i64, i64)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Attestation {
    pub at: i64,
    pub trusted: bool,
    pub release: Option<String>,
    pub fingerprint: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredReport {
    pub digest: String,
    pub received_at: i64,
    pub release: Option<String>,
    pub raw: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub revoked: bool,
}

/// The fleet audit: what needs attention.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Audit {
    pub untrusted: Vec<String>,
    /// Attestation keys (hex) seen under more than one device id, with those ids.
    pub shared_keys: Vec<(String, Vec<String>)>,
    pub silent: Vec<String>,
    pub never_seen: Vec<String>,
    pub expiring: Vec<String>,
    pub halted: Vec<String>,
}

/// A new random identifier: 16 bytes in hex.
pub fn new_id() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[derive(Clone)]
pub struct Storage {
    pool: AnyPool,
    postgres: bool,
}

impl Storage {
    /// Connects and migrates. `url` is `sqlite://FILE` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Storage> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres:") || url.starts_with("postgresql:");
        let pool = if postgres {
            AnyPoolOptions::new().max_connections(16).connect(url).await?
        } else {
            // One writer at a time is SQLite's model: one connection avoids lock upgrades
            // between pooled connections. WAL keeps every committed transaction across a
            // crash of the service.
            AnyPoolOptions::new()
                .max_connections(1)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        Ok(())
                    })
                })
                .connect(&format!("{url}?mode=rwc"))
                .await?
        };
        let storage = Storage { pool, postgres };
        storage.migrate().await?;
        Ok(storage)
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if self.postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7431)").execute(&mut *tx).await?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS septa_schema (version BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let version: Option<i64> =
            sqlx::query("SELECT MAX(version) FROM septa_schema").fetch_one(&mut *tx).await?.try_get(0)?;
        let blob = if self.postgres { "BYTEA" } else { "BLOB" };
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version.unwrap_or(0) as usize) {
            for statement in migration.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(&statement.replace("{blob}", blob)).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO septa_schema (version) VALUES ($1)")
                .bind(index as i64 + 1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    // --- settings ---

    /// The value of setting `name`, storing `make()` first if there is none (first start).
    /// Replicas starting together agree: the first insert wins and everyone reads it back.
    pub async fn setting_or_insert(&self, name: &str, make: impl FnOnce() -> String) -> Result<String> {
        if let Some(row) = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(row.try_get(0)?);
        }
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(make())
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    // --- tenants and tokens ---

    /// Creates a tenant and its first admin token (stored as `token_hash`).
    pub async fn create_tenant(&self, name: &str, token_hash: &str, now: i64) -> Result<String> {
        let mut tx = self.pool.begin().await?;
        let id = new_id();
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&id)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StorageError::Conflict(format!("tenant {name} exists")));
        }
        insert_token(&mut tx, &id, Role::Admin, "first admin", token_hash, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn create_token(
        &self,
        tenant: &str,
        role: Role,
        name: &str,
        hash: &str,
        now: i64,
    ) -> Result<String> {
        let mut tx = self.pool.begin().await?;
        let id = insert_token(&mut tx, tenant, role, name, hash, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The tenant and role of an unrevoked token.
    pub async fn token(&self, hash: &str) -> Result<Option<(String, Role)>> {
        let row =
            sqlx::query("SELECT tenant_id, role FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(row) => {
                let role: String = row.try_get(1)?;
                Role::parse(&role).map(|r| Ok::<_, sqlx::Error>((row.try_get(0)?, r))).transpose()?
            }
            None => None,
        })
    }

    pub async fn revoke_token(&self, tenant: &str, id: &str, now: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(tenant)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(format!("no active token {id}")));
        }
        Ok(())
    }

    pub async fn tokens(&self, tenant: &str) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at, revoked_at FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiToken {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    role: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    revoked: r.try_get::<Option<i64>, _>(4)?.is_some(),
                })
            })
            .collect()
    }

    // --- keys, products, groups ---

    pub async fn add_oem_key(&self, tenant: &str, key_id: &str, public_key: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO oem_keys (tenant_id, key_id, public_key) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, key_id) DO NOTHING",
        )
        .bind(tenant)
        .bind(key_id)
        .bind(public_key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn oem_keys(&self, tenant: &str) -> Result<Vec<Vec<u8>>> {
        let rows = sqlx::query("SELECT public_key FROM oem_keys WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub async fn create_product(&self, tenant: &str, name: &str) -> Result<String> {
        let id = new_id();
        let done = sqlx::query(
            "INSERT INTO products (id, tenant_id, name) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .bind(&id)
        .bind(tenant)
        .bind(name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::Conflict(format!("product {name} exists")));
        }
        Ok(id)
    }

    async fn product_id(&self, tenant: &str, name: &str) -> Result<String> {
        sqlx::query("SELECT id FROM products WHERE tenant_id = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .ok_or_else(|| StorageError::NotFound(format!("no product {name}")))
    }

    pub async fn create_group(&self, tenant: &str, product: &str, name: &str) -> Result<String> {
        let product_id = self.product_id(tenant, product).await?;
        let id = new_id();
        let done = sqlx::query(
            "INSERT INTO device_groups (id, tenant_id, product_id, name) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .bind(&id)
        .bind(tenant)
        .bind(&product_id)
        .bind(name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::Conflict(format!("group {name} exists")));
        }
        Ok(id)
    }

    /// (group id, product id) of a tenant's group.
    async fn group(&self, tenant: &str, name: &str) -> Result<(String, String)> {
        let row = sqlx::query("SELECT id, product_id FROM device_groups WHERE tenant_id = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("no group {name}")))?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    // --- devices ---

    /// Claims a device into a product (and optionally a group). One-way: a device claimed
    /// once, by this tenant or another, cannot be claimed again.
    pub async fn claim(
        &self,
        tenant: &str,
        product: &str,
        group: Option<&str>,
        device_id: &str,
        public_key: &[u8],
        now: i64,
    ) -> Result<()> {
        let product_id = self.product_id(tenant, product).await?;
        let group_id = match group {
            Some(name) => {
                let (id, group_product) = self.group(tenant, name).await?;
                if group_product != product_id {
                    return Err(StorageError::Conflict(format!("group {name} belongs to another product")));
                }
                Some(id)
            }
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO devices (id, tenant_id, product_id, group_id, public_key, claimed_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(device_id)
        .bind(tenant)
        .bind(&product_id)
        .bind(group_id)
        .bind(public_key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::Conflict(format!("device {device_id} is already claimed")));
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_group(&self, tenant: &str, device_id: &str, group: &str) -> Result<()> {
        let (group_id, product_id) = self.group(tenant, group).await?;
        let done = sqlx::query(
            "UPDATE devices SET group_id = $1 WHERE tenant_id = $2 AND id = $3 AND product_id = $4",
        )
        .bind(group_id)
        .bind(tenant)
        .bind(device_id)
        .bind(product_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(format!("no device {device_id} in the group's product")));
        }
        Ok(())
    }

    /// The key of a claimed device (any tenant: the device protocol is not tenant-scoped).
    pub async fn device_key(&self, device_id: &str) -> Result<Option<DeviceKey>> {
        let row = sqlx::query("SELECT tenant_id, product_id, public_key FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(DeviceKey { tenant_id: r.try_get(0)?, product_id: r.try_get(1)?, public_key: r.try_get(2)? })
        })
        .transpose()
    }

    const DEVICE_COLUMNS: &'static str = "d.id, p.name, g.name, d.claimed_at, d.last_seen, d.trusted, r.name, d.cert_not_after \
        FROM devices d JOIN products p ON p.id = d.product_id LEFT JOIN device_groups g ON g.id = d.group_id \
        LEFT JOIN releases r ON r.id = d.release_id";

    pub async fn devices(&self, tenant: &str) -> Result<Vec<Device>> {
        let sql = format!("SELECT {} WHERE d.tenant_id = $1 ORDER BY d.id", Self::DEVICE_COLUMNS);
        let rows = sqlx::query(&sql).bind(tenant).fetch_all(&self.pool).await?;
        rows.iter().map(device_row).collect()
    }

    pub async fn device(&self, tenant: &str, id: &str) -> Result<Device> {
        let sql = format!("SELECT {} WHERE d.tenant_id = $1 AND d.id = $2", Self::DEVICE_COLUMNS);
        let row = sqlx::query(&sql).bind(tenant).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref()
            .map(device_row)
            .transpose()?
            .ok_or_else(|| StorageError::NotFound(format!("no device {id}")))
    }

    pub async fn attestations(&self, tenant: &str, device: &str, limit: i64) -> Result<Vec<Attestation>> {
        let rows = sqlx::query(
            "SELECT a.at, a.trusted, r.name, a.fingerprint FROM attestations a LEFT JOIN releases r ON r.id = a.release_id \
             WHERE a.tenant_id = $1 AND a.device_id = $2 ORDER BY a.at DESC, a.id LIMIT $3",
        )
        .bind(tenant)
        .bind(device)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Attestation {
                    at: r.try_get(0)?,
                    trusted: r.try_get::<i64, _>(1)? != 0,
                    release: r.try_get(2)?,
                    fingerprint: r.try_get(3)?,
                })
            })
            .collect()
    }

    // --- check-in ---

    /// Records a verified attestation in one transaction: the nonce used up (once: a second
    /// use finds it recorded), the history row, the device's state, its
    /// deployment targets' status from this evidence, and the release it is offered (a
    /// deployment's, or the recovery release for an untrusted device).
    pub async fn checkin(&self, c: &Checkin<'_>) -> Result<CheckinResult> {
        let mut tx = self.pool.begin().await?;
        let used = sqlx::query(
            "INSERT INTO used_nonces (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(c.nonce)
        .bind(c.nonce_expires)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            tx.rollback().await?;
            return Err(StorageError::Refused(
                "attestation refused: the nonce was already used (replay)".into(),
            ));
        }
        let release: Option<String> = sqlx::query(
            "SELECT id FROM releases WHERE product_id = $1 AND fingerprint = $2 ORDER BY seq LIMIT 1",
        )
        .bind(&c.key.product_id)
        .bind(c.fingerprint)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        let trusted = release.is_some();
        sqlx::query(
            "INSERT INTO attestations (id, tenant_id, device_id, at, fingerprint, release_id, trusted, attestation_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_id())
        .bind(&c.key.tenant_id)
        .bind(c.device_id)
        .bind(c.now)
        .bind(c.fingerprint)
        .bind(&release)
        .bind(trusted as i64)
        .bind(c.attestation_key)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE devices SET last_seen = $1, trusted = $2, fingerprint = $3, release_id = $4, attestation_key = $5, \
             cert_not_after = COALESCE($6, cert_not_after) WHERE id = $7",
        )
        .bind(c.now)
        .bind(trusted as i64)
        .bind(c.fingerprint)
        .bind(&release)
        .bind(c.attestation_key)
        .bind(c.cert_not_after)
        .bind(c.device_id)
        .execute(&mut *tx)
        .await?;

        let mut offer_release: Option<(String, Option<String>)> = None;
        if trusted {
            // Evidence for every open target of this device, then maybe an offer.
            let rows = sqlx::query(
                "SELECT t.deployment_id, t.status, t.before_fingerprint, r.fingerprint, t.opened_at, d.release_id \
                 FROM deployment_targets t JOIN deployments d ON d.id = t.deployment_id \
                 JOIN releases r ON r.id = d.release_id WHERE t.device_id = $1 AND d.state = 'active'",
            )
            .bind(c.device_id)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let deployment: String = row.try_get(0)?;
                let status = parse_status(&row.try_get::<String, _>(1)?);
                let before: String = row.try_get(2)?;
                let target: String = row.try_get(3)?;
                let opened: Option<i64> = row.try_get(4)?;
                let next = policy::status_after_attestation(status, c.fingerprint, &target, &before);
                if next != status {
                    set_status(&mut tx, &deployment, c.device_id, next, c.now).await?;
                    evaluate(&mut tx, &deployment, c.now).await?;
                } else if opened.is_some()
                    && policy::is_offered(next, c.fingerprint, &target)
                    && offer_release.is_none()
                {
                    if next == TargetStatus::Pending {
                        sqlx::query(
                            "UPDATE deployment_targets SET status = $1, offered_at = $2 WHERE deployment_id = $3 AND device_id = $4",
                        )
                        .bind(TargetStatus::Offered.name())
                        .bind(c.now)
                        .bind(&deployment)
                        .bind(c.device_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    offer_release = Some((row.try_get(5)?, Some(deployment)));
                }
            }
        } else {
            let recovery: Option<String> = sqlx::query(
                "SELECT id FROM releases WHERE product_id = $1 AND recovery = 1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(&c.key.product_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
            offer_release = recovery.map(|id| (id, None));
        }

        let offer = match offer_release {
            Some((release_id, deployment)) => {
                let row = sqlx::query("SELECT bundle_len, bundle_sha256 FROM releases WHERE id = $1")
                    .bind(&release_id)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO tickets (hash, device_id, release_id, deployment_id, expires_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(c.ticket_hash)
                .bind(c.device_id)
                .bind(&release_id)
                .bind(deployment)
                .bind(c.ticket_expires)
                .execute(&mut *tx)
                .await?;
                Some(Offer {
                    ticket_hash: c.ticket_hash.to_string(),
                    bundle_len: row.try_get(0)?,
                    bundle_sha256: row.try_get(1)?,
                })
            }
            None => None,
        };
        tx.commit().await?;
        Ok(CheckinResult { trusted, offer })
    }

    /// The bundle a live ticket names: (bytes, deployment id).
    pub async fn ticket_bundle(
        &self,
        ticket_hash: &str,
        now: i64,
    ) -> Result<Option<(Vec<u8>, Option<String>, String)>> {
        let row = sqlx::query(
            "SELECT r.bundle, t.deployment_id, t.device_id FROM tickets t JOIN releases r ON r.id = t.release_id \
             WHERE t.hash = $1 AND t.expires_at >= $2",
        )
        .bind(ticket_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).transpose()
    }

    /// The device has fetched the last byte of its offered bundle.
    pub async fn mark_downloaded(&self, deployment: &str, device_id: &str, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE deployment_targets SET status = $1, decided_at = NULL WHERE deployment_id = $2 AND device_id = $3 AND status = $4",
        )
        .bind(TargetStatus::Downloaded.name())
        .bind(deployment)
        .bind(device_id)
        .bind(TargetStatus::Offered.name())
        .execute(&mut *tx)
        .await?;
        evaluate(&mut tx, deployment, now).await?;
        tx.commit().await?;
        Ok(())
    }

    // --- releases and deployments ---

    #[allow(clippy::too_many_arguments)]
    pub async fn create_release(
        &self,
        tenant: &str,
        product: &str,
        name: &str,
        recovery: bool,
        verified: &policy::VerifiedBundle,
        bundle: &[u8],
        now: i64,
    ) -> Result<String> {
        let product_id = self.product_id(tenant, product).await?;
        let mut tx = self.pool.begin().await?;
        let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 FROM releases WHERE product_id = $1")
            .bind(&product_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let id = new_id();
        let done = sqlx::query(
            "INSERT INTO releases (id, tenant_id, product_id, name, recovery, fingerprint, bundle_sha256, bundle_len, bundle, created_at, seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (product_id, name) DO NOTHING",
        )
        .bind(&id)
        .bind(tenant)
        .bind(&product_id)
        .bind(name)
        .bind(recovery as i64)
        .bind(&verified.fingerprint)
        .bind(&verified.sha256)
        .bind(bundle.len() as i64)
        .bind(bundle)
        .bind(now)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::Conflict(format!("release {name} exists")));
        }
        tx.commit().await?;
        Ok(id)
    }

    pub async fn releases(&self, tenant: &str) -> Result<Vec<Release>> {
        let rows = sqlx::query(
            "SELECT r.id, p.name, r.name, r.recovery, r.fingerprint, r.bundle_sha256, r.bundle_len, r.created_at \
             FROM releases r JOIN products p ON p.id = r.product_id WHERE r.tenant_id = $1 ORDER BY p.name, r.seq",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Release {
                    id: r.try_get(0)?,
                    product: r.try_get(1)?,
                    name: r.try_get(2)?,
                    recovery: r.try_get::<i64, _>(3)? != 0,
                    fingerprint: r.try_get(4)?,
                    bundle_sha256: r.try_get(5)?,
                    bundle_len: r.try_get(6)?,
                    created_at: r.try_get(7)?,
                })
            })
            .collect()
    }

    /// Deploys a release to a group: every device of the group becomes a target, ordered by
    /// rank, and the first phase opens.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_deployment(
        &self,
        tenant: &str,
        release: &str,
        group: &str,
        phases: &str,
        threshold_percent: u32,
        deadline_s: u32,
        now: i64,
    ) -> Result<String> {
        let (group_id, group_product) = self.group(tenant, group).await?;
        let row = sqlx::query(
            "SELECT r.id, r.product_id FROM releases r JOIN products p ON p.id = r.product_id \
             WHERE r.tenant_id = $1 AND r.name = $2 AND r.product_id = $3",
        )
        .bind(tenant)
        .bind(release)
        .bind(&group_product)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StorageError::NotFound(format!("no release {release} for the group's product")))?;
        let release_id: String = row.try_get(0)?;
        let mut tx = self.pool.begin().await?;
        let active: i64 =
            sqlx::query("SELECT COUNT(*) FROM deployments WHERE group_id = $1 AND state = 'active'")
                .bind(&group_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        if active > 0 {
            return Err(StorageError::Conflict(format!("group {group} already has an active deployment")));
        }
        let id = new_id();
        sqlx::query(
            "INSERT INTO deployments (id, tenant_id, release_id, group_id, phases, phase, threshold_percent, deadline_s, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, 'active', $8)",
        )
        .bind(&id)
        .bind(tenant)
        .bind(&release_id)
        .bind(&group_id)
        .bind(phases)
        .bind(threshold_percent as i64)
        .bind(deadline_s as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let devices = sqlx::query("SELECT id, COALESCE(fingerprint, '') FROM devices WHERE group_id = $1")
            .bind(&group_id)
            .fetch_all(&mut *tx)
            .await?;
        for device in &devices {
            let device_id: String = device.try_get(0)?;
            sqlx::query(
                "INSERT INTO deployment_targets (deployment_id, device_id, rank, status, before_fingerprint) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(&device_id)
            .bind(policy::rank(&id, &device_id))
            .bind(TargetStatus::Pending.name())
            .bind(device.try_get::<String, _>(1)?)
            .execute(&mut *tx)
            .await?;
        }
        open_phase(&mut tx, &id, 0, now).await?;
        evaluate(&mut tx, &id, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Marks targets that missed their deadline as timed out and re-evaluates the active
    /// deployments.
    pub async fn sweep(&self, now: i64) -> Result<()> {
        let ids: Vec<String> = sqlx::query("SELECT id FROM deployments WHERE state = 'active'")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        for id in ids {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE deployment_targets SET status = $1, decided_at = $2 WHERE deployment_id = $3 \
                 AND opened_at IS NOT NULL AND status IN ('pending', 'offered', 'downloaded', 'on trial') \
                 AND opened_at + (SELECT deadline_s FROM deployments WHERE id = $4) < $5",
            )
            .bind(TargetStatus::TimedOut.name())
            .bind(now)
            .bind(&id)
            .bind(&id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            evaluate(&mut tx, &id, now).await?;
            tx.commit().await?;
        }
        sqlx::query("DELETE FROM used_nonces WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
        sqlx::query("DELETE FROM tickets WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn deployments(&self, tenant: &str) -> Result<Vec<Deployment>> {
        let rows = sqlx::query(
            "SELECT d.id, r.name, g.name, d.phases, d.phase, d.threshold_percent, d.deadline_s, d.state, d.reason, d.created_at \
             FROM deployments d JOIN releases r ON r.id = d.release_id JOIN device_groups g ON g.id = d.group_id \
             WHERE d.tenant_id = $1 ORDER BY d.created_at DESC, d.id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: String = r.try_get(0)?;
            let mut counts = std::collections::BTreeMap::new();
            let mut total = 0;
            for row in sqlx::query(
                "SELECT status, COUNT(*) FROM deployment_targets WHERE deployment_id = $1 GROUP BY status",
            )
            .bind(&id)
            .fetch_all(&self.pool)
            .await?
            {
                let n: i64 = row.try_get(1)?;
                total += n;
                counts.insert(row.try_get(0)?, n);
            }
            out.push(Deployment {
                id,
                release: r.try_get(1)?,
                group: r.try_get(2)?,
                phases: r.try_get(3)?,
                phase: r.try_get(4)?,
                threshold_percent: r.try_get(5)?,
                deadline_s: r.try_get(6)?,
                state: r.try_get(7)?,
                reason: r.try_get(8)?,
                created_at: r.try_get(9)?,
                counts,
                total,
            });
        }
        Ok(out)
    }

    /// Per-device status of one deployment: (device id, status).
    pub async fn targets(&self, tenant: &str, deployment: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT t.device_id, t.status FROM deployment_targets t JOIN deployments d ON d.id = t.deployment_id \
             WHERE d.tenant_id = $1 AND d.id = $2 ORDER BY t.rank",
        )
        .bind(tenant)
        .bind(deployment)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    // --- reports and issues ---

    /// Stores one verified report as received and files its events into issues; `false` if
    /// the service already had it.
    pub async fn store_report(
        &self,
        key: &DeviceKey,
        device_id: &str,
        raw: &[u8],
        events: &[septa_abi::report::Event],
        now: i64,
    ) -> Result<bool> {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(raw));
        let mut tx = self.pool.begin().await?;
        let release: Option<(String, i64)> = sqlx::query(
            "SELECT r.id, r.seq FROM devices d JOIN releases r ON r.id = d.release_id WHERE d.id = $1",
        )
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?;
        let done = sqlx::query(
            "INSERT INTO reports (id, tenant_id, device_id, digest, raw, received_at, release_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (device_id, digest) DO NOTHING",
        )
        .bind(new_id())
        .bind(&key.tenant_id)
        .bind(device_id)
        .bind(&digest)
        .bind(raw)
        .bind(now)
        .bind(release.as_ref().map(|r| r.0.clone()))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let day = now.div_euclid(86_400);
        for event in events {
            use septa_abi::report::{Event, UpdateEvent};
            if let Event::Update { event: UpdateEvent::RolledBack { .. }, .. } = event {
                // Signed by the device: its open targets rolled back.
                let open = sqlx::query(
                    "SELECT t.deployment_id FROM deployment_targets t JOIN deployments d ON d.id = t.deployment_id \
                     WHERE t.device_id = $1 AND d.state = 'active' AND t.status IN ('offered', 'downloaded', 'on trial')",
                )
                .bind(device_id)
                .fetch_all(&mut *tx)
                .await?;
                for row in open {
                    let deployment: String = row.try_get(0)?;
                    set_status(&mut tx, &deployment, device_id, TargetStatus::RolledBack, now).await?;
                    evaluate(&mut tx, &deployment, now).await?;
                }
            }
            if let Event::Update { event: UpdateEvent::Applied { .. }, .. } = event {
                // Signed by the device: the update it runs on trial confirmed itself. The
                // agent attests before it uploads, so the device's latest fingerprint is
                // what this boot runs.
                let trials = sqlx::query(
                    "SELECT t.deployment_id, r.fingerprint, v.fingerprint FROM deployment_targets t \
                     JOIN deployments d ON d.id = t.deployment_id JOIN releases r ON r.id = d.release_id \
                     JOIN devices v ON v.id = t.device_id \
                     WHERE t.device_id = $1 AND d.state = 'active' AND t.status = 'on trial'",
                )
                .bind(device_id)
                .fetch_all(&mut *tx)
                .await?;
                for row in trials {
                    let deployment: String = row.try_get(0)?;
                    let release: String = row.try_get(1)?;
                    let attested: Option<String> = row.try_get(2)?;
                    let next = policy::status_after_applied(
                        TargetStatus::OnTrial,
                        attested.as_deref().unwrap_or_default(),
                        &release,
                    );
                    if next != TargetStatus::OnTrial {
                        set_status(&mut tx, &deployment, device_id, next, now).await?;
                        evaluate(&mut tx, &deployment, now).await?;
                    }
                }
            }
            let Some(issue) = policy::issue_key(event) else { continue };
            let id = new_id();
            sqlx::query(
                "INSERT INTO issues (id, tenant_id, product_id, component_id, app, kind, pc, state, first_seen, last_seen, count) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, 1) \
                 ON CONFLICT (tenant_id, product_id, component_id, kind, pc) DO UPDATE SET last_seen = $10, count = issues.count + 1",
            )
            .bind(&id)
            .bind(&key.tenant_id)
            .bind(&key.product_id)
            .bind(&issue.component_id)
            .bind(&issue.app)
            .bind(issue.kind)
            .bind(issue.pc as i64)
            .bind(now)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(
                "SELECT id, fixed_seq FROM issues WHERE tenant_id = $1 AND product_id = $2 AND component_id = $3 AND kind = $4 AND pc = $5",
            )
            .bind(&key.tenant_id)
            .bind(&key.product_id)
            .bind(&issue.component_id)
            .bind(issue.kind)
            .bind(issue.pc as i64)
            .fetch_one(&mut *tx)
            .await?;
            let issue_id: String = row.try_get(0)?;
            let fixed_seq: Option<i64> = row.try_get(1)?;
            if policy::reopens(fixed_seq, release.as_ref().map(|r| r.1)) {
                sqlx::query("UPDATE issues SET state = 'open', fixed_seq = NULL WHERE id = $1")
                    .bind(&issue_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO issue_counts (issue_id, release_id, day, count) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (issue_id, release_id, day) DO UPDATE SET count = issue_counts.count + 1",
            )
            .bind(&issue_id)
            .bind(release.as_ref().map_or(String::new(), |r| r.0.clone()))
            .bind(day)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn reports(&self, tenant: &str, device: &str) -> Result<Vec<StoredReport>> {
        let rows = sqlx::query(
            "SELECT s.digest, s.received_at, r.name, s.raw FROM reports s LEFT JOIN releases r ON r.id = s.release_id \
             WHERE s.tenant_id = $1 AND s.device_id = $2 ORDER BY s.received_at, s.id",
        )
        .bind(tenant)
        .bind(device)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredReport {
                    digest: r.try_get(0)?,
                    received_at: r.try_get(1)?,
                    release: r.try_get(2)?,
                    raw: hex::encode(r.try_get::<Vec<u8>, _>(3)?),
                })
            })
            .collect()
    }

    pub async fn issues(&self, tenant: &str) -> Result<Vec<Issue>> {
        let rows = sqlx::query(
            "SELECT i.id, p.name, i.component_id, i.app, i.kind, i.pc, i.state, i.first_seen, i.last_seen, i.count \
             FROM issues i JOIN products p ON p.id = i.product_id WHERE i.tenant_id = $1 ORDER BY i.count DESC, i.id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: String = r.try_get(0)?;
            let history = sqlx::query(
                "SELECT COALESCE(r.name, ''), c.day, c.count FROM issue_counts c LEFT JOIN releases r ON r.id = c.release_id \
                 WHERE c.issue_id = $1 ORDER BY c.day, r.name",
            )
            .bind(&id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|h| Ok((h.try_get(0)?, h.try_get(1)?, h.try_get(2)?)))
            .collect::<Result<_>>()?;
            out.push(Issue {
                id,
                product: r.try_get(1)?,
                component_id: r.try_get(2)?,
                app: r.try_get(3)?,
                kind: r.try_get(4)?,
                pc: r.try_get(5)?,
                state: r.try_get(6)?,
                first_seen: r.try_get(7)?,
                last_seen: r.try_get(8)?,
                count: r.try_get(9)?,
                history,
            });
        }
        Ok(out)
    }

    /// Marks an issue fixed as of the newest release of its product.
    pub async fn fix_issue(&self, tenant: &str, id: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE issues SET state = 'fixed', fixed_seq = (SELECT COALESCE(MAX(seq), 0) FROM releases r WHERE r.product_id = issues.product_id) \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(format!("no issue {id}")));
        }
        Ok(())
    }

    // --- audit ---

    pub async fn audit(&self, tenant: &str, now: i64, silent_days: i64, expiring_s: i64) -> Result<Audit> {
        let ids = |rows: Vec<AnyRow>| {
            rows.iter().map(|r| r.try_get(0)).collect::<std::result::Result<Vec<String>, _>>()
        };
        let untrusted =
            ids(sqlx::query("SELECT id FROM devices WHERE tenant_id = $1 AND trusted = 0 ORDER BY id")
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?)?;
        let silent =
            ids(sqlx::query("SELECT id FROM devices WHERE tenant_id = $1 AND last_seen < $2 ORDER BY id")
                .bind(tenant)
                .bind(now - silent_days * 86_400)
                .fetch_all(&self.pool)
                .await?)?;
        let never_seen = ids(sqlx::query(
            "SELECT id FROM devices WHERE tenant_id = $1 AND last_seen IS NULL ORDER BY id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)?;
        let expiring = ids(sqlx::query(
            "SELECT id FROM devices WHERE tenant_id = $1 AND cert_not_after IS NOT NULL AND cert_not_after < $2 ORDER BY id",
        )
        .bind(tenant)
        .bind(now + expiring_s)
        .fetch_all(&self.pool)
        .await?)?;
        let halted = ids(sqlx::query(
            "SELECT id FROM deployments WHERE tenant_id = $1 AND state = 'halted' ORDER BY id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?)?;
        let mut shared_keys = Vec::new();
        for row in sqlx::query(
            "SELECT attestation_key FROM attestations WHERE tenant_id = $1 GROUP BY attestation_key HAVING COUNT(DISTINCT device_id) > 1",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?
        {
            let key: Vec<u8> = row.try_get(0)?;
            let devices = ids(sqlx::query(
                "SELECT DISTINCT device_id FROM attestations WHERE tenant_id = $1 AND attestation_key = $2 ORDER BY device_id",
            )
            .bind(tenant)
            .bind(&key)
            .fetch_all(&self.pool)
            .await?)?;
            shared_keys.push((hex::encode(key), devices));
        }
        Ok(Audit { untrusted, shared_keys, silent, never_seen, expiring, halted })
    }
}

async fn insert_token(
    tx: &mut Transaction<'_, Any>,
    tenant: &str,
    role: Role,
    name: &str,
    hash: &str,
    now: i64,
) -> Result<String> {
    let id = new_id();
    sqlx::query("INSERT INTO api_tokens (id, tenant_id, role, name, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&id)
        .bind(tenant)
        .bind(role.name())
        .bind(name)
        .bind(hash)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

fn device_row(r: &AnyRow) -> Result<Device> {
    Ok(Device {
        id: r.try_get(0)?,
        product: r.try_get(1)?,
        group: r.try_get(2)?,
        claimed_at: r.try_get(3)?,
        last_seen: r.try_get(4)?,
        trusted: r.try_get::<Option<i64>, _>(5)?.map(|t| t != 0),
        release: r.try_get(6)?,
        cert_not_after: r.try_get(7)?,
    })
}

fn parse_status(name: &str) -> TargetStatus {
    // Only this module writes the column, always with a `TargetStatus::name`.
    TargetStatus::parse(name).unwrap_or(TargetStatus::Pending)
}

async fn set_status(
    tx: &mut Transaction<'_, Any>,
    deployment: &str,
    device: &str,
    status: TargetStatus,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE deployment_targets SET status = $1, decided_at = $2 WHERE deployment_id = $3 AND device_id = $4")
        .bind(status.name())
        .bind(status.is_final().then_some(now))
        .bind(deployment)
        .bind(device)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Opens phase `phase`: its targets (the first `phase_size` by rank) get their clock.
async fn open_phase(tx: &mut Transaction<'_, Any>, deployment: &str, phase: usize, now: i64) -> Result<()> {
    let phases: String = sqlx::query("SELECT phases FROM deployments WHERE id = $1")
        .bind(deployment)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    let phases = policy::parse_phases(&phases).unwrap_or_else(|| vec![100]);
    sqlx::query("UPDATE deployments SET phase = $1 WHERE id = $2")
        .bind(phase as i64)
        .bind(deployment)
        .execute(&mut **tx)
        .await?;
    let total: i64 = sqlx::query("SELECT COUNT(*) FROM deployment_targets WHERE deployment_id = $1")
        .bind(deployment)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    if total == 0 {
        return Ok(());
    }
    let size = policy::phase_size(total as usize, phases[phase.min(phases.len() - 1)]);
    let cutoff: i64 = sqlx::query(
        "SELECT rank FROM deployment_targets WHERE deployment_id = $1 ORDER BY rank LIMIT 1 OFFSET $2",
    )
    .bind(deployment)
    .bind(size as i64 - 1)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    sqlx::query("UPDATE deployment_targets SET opened_at = $1 WHERE deployment_id = $2 AND rank <= $3 AND opened_at IS NULL")
        .bind(now)
        .bind(deployment)
        .bind(cutoff)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Applies the rollout policy to a deployment's open targets.
async fn evaluate(tx: &mut Transaction<'_, Any>, deployment: &str, now: i64) -> Result<()> {
    loop {
        let row =
            sqlx::query("SELECT phases, phase, threshold_percent, state FROM deployments WHERE id = $1")
                .bind(deployment)
                .fetch_one(&mut **tx)
                .await?;
        let state: String = row.try_get(3)?;
        if state != "active" {
            return Ok(());
        }
        let phases = policy::parse_phases(&row.try_get::<String, _>(0)?).unwrap_or_else(|| vec![100]);
        let phase = row.try_get::<i64, _>(1)? as usize;
        let threshold = row.try_get::<i64, _>(2)? as u32;
        let mut progress = Progress::default();
        for r in sqlx::query(
            "SELECT status, COUNT(*) FROM deployment_targets WHERE deployment_id = $1 AND opened_at IS NOT NULL GROUP BY status",
        )
        .bind(deployment)
        .fetch_all(&mut **tx)
        .await?
        {
            let n = r.try_get::<i64, _>(1)? as usize;
            progress.in_phase += n;
            match parse_status(&r.try_get::<String, _>(0)?) {
                TargetStatus::Updated => progress.updated += n,
                TargetStatus::RolledBack | TargetStatus::TimedOut => progress.failed += n,
                _ => {}
            }
        }
        let last = phase + 1 >= phases.len();
        let (state, reason) = match policy::decide(progress, threshold, last) {
            Decision::Wait => return Ok(()),
            Decision::Advance => {
                open_phase(tx, deployment, phase + 1, now).await?;
                continue;
            }
            Decision::Complete => ("complete", None),
            Decision::Halt => (
                "halted",
                Some(format!(
                    "{} of {} decided devices failed (rolled back or timed out), above the {threshold} % threshold",
                    progress.failed,
                    progress.updated + progress.failed
                )),
            ),
        };
        sqlx::query("UPDATE deployments SET state = $1, reason = $2 WHERE id = $3")
            .bind(state)
            .bind(reason)
            .bind(deployment)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
}
