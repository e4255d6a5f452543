//! A development `septa-service` beside a QEMU device: what `cargo xtask run` and the
//! end-to-end tests start. It runs the real service binary on `127.0.0.1` (ports the system
//! picks) with its SQLite database in a directory of the caller's: the management API and
//! dashboard on plain HTTP, and the mutual-TLS device port with the development server
//! certificate for `devhost` — from the development service CA the images embed as their
//! trust anchor — accepting the development device CA's factory certificates besides the
//! service's own. Development devices check in every [`CHECK_IN_INTERVAL_S`]. It enrolls the
//! development device — the development OEM key, a product and group, the claim of the
//! device key, the factory release — each step idempotent, so the next start keeps the
//! device's history.

use crate::service::Api;
use anyhow::{Context, Result, bail};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The development tenant, product and group.
pub const TENANT: &str = "dev";
pub const PRODUCT: &str = "septa-dev";
pub const GROUP: &str = "dev";
/// The file in the data directory that keeps the tenant's admin token.
const TOKEN_FILE: &str = "admin.token";
/// The service's console output, in the data directory.
pub const LOG_FILE: &str = "service.log";
/// Seconds between a development device's check-ins (a product's would be about a day).
pub const CHECK_IN_INTERVAL_S: u32 = 5;

/// A running service; dropping it stops the process.
pub struct DevService {
    child: Child,
    /// The management API and dashboard (plain HTTP).
    pub address: SocketAddr,
    /// The device port (mutual TLS), which QEMU forwards `devhost:443` to.
    pub device_address: SocketAddr,
    pub token: String,
    pub data: PathBuf,
}

impl DevService {
    /// Starts `binary` with its SQLite database in `data`, or on the PostgreSQL database
    /// `postgres` names (the tenant is created on first use; its token, the service's log
    /// are in `data` either way) and waits until it listens. `listen` and `device_listen` are
    /// the addresses to bind (`127.0.0.1:0`: any port); `keys` is the board's development key
    /// folder (`keys/`, with `service-ca/` and `device-ca/`).
    pub fn start(
        binary: &Path,
        data: &Path,
        postgres: Option<&str>,
        listen: SocketAddr,
        device_listen: SocketAddr,
        keys: &Path,
    ) -> Result<DevService> {
        for address in [listen, device_listen] {
            if !address.ip().is_loopback() {
                bail!("the development service listens on loopback only, not {address}");
            }
        }
        let (server_cert, server_key) =
            crate::device_cert::development_server_identity(&keys.join("service-ca"))?;
        let device_ca = keys.join("device-ca").join(crate::device_cert::CA_CERT_DER_FILE);
        if !device_ca.exists() {
            bail!("{} is missing: build the images first (cargo xtask build)", device_ca.display());
        }
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let database: Vec<std::ffi::OsString> = match postgres {
            Some(url) => vec!["--database".into(), url.into()],
            None => vec!["--data".into(), data.into()],
        };
        let token_file = data.join(TOKEN_FILE);
        let token = if token_file.exists() {
            std::fs::read_to_string(&token_file)?.trim().to_string()
        } else {
            let output = Command::new(binary)
                .args(&database)
                .args(["create-tenant", TENANT])
                .output()
                .with_context(|| format!("running {}", binary.display()))?;
            if !output.status.success() {
                bail!("creating the development tenant: {}", String::from_utf8_lossy(&output.stderr).trim());
            }
            let token = String::from_utf8(output.stdout)?.trim().to_string();
            std::fs::write(&token_file, &token)?;
            token
        };
        let log_path = data.join(LOG_FILE);
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let mut child = Command::new(binary)
            .args(&database)
            .args(["--listen", &listen.to_string(), "--device-listen", &device_listen.to_string()])
            .arg("--tls-cert")
            .arg(&server_cert)
            .arg("--tls-key")
            .arg(&server_key)
            .arg("--device-ca")
            .arg(&device_ca)
            .args(["--check-in-interval", &CHECK_IN_INTERVAL_S.to_string(), "--sweep-ms", "200"])
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped"));
        // "septa-service: management API and dashboard on http://ADDR (SQLite)", then
        // "septa-service: device protocol over TLS on ADDR".
        let mut address = None;
        let mut device_address = None;
        let mut last = String::new();
        while address.is_none() || device_address.is_none() {
            last.clear();
            if lines.read_line(&mut last)? == 0 {
                break;
            }
            let _ = log.write_all(last.as_bytes());
            if let Some(rest) = last.split("http://").nth(1) {
                address = rest.split_whitespace().next().and_then(|a| a.parse::<SocketAddr>().ok());
            }
            if let Some(rest) = last.trim().strip_prefix("septa-service: device protocol over TLS on ") {
                device_address = rest.parse::<SocketAddr>().ok();
            }
        }
        let (Some(address), Some(device_address)) = (address, device_address) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("septa-service did not start (see {}): {}", log_path.display(), last.trim());
        };
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
            }
        });
        Ok(DevService { child, address, device_address, token, data: data.to_path_buf() })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The service CA's certificate (DER): the issuer of the device certificates the service
    /// hands out, which the device then authenticates with to any server.
    pub fn ca_certificate_der(&self) -> Result<Vec<u8>> {
        let url = format!("{}/api/v1/ca", self.url());
        let text = reqwest::blocking::get(&url)
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.text())
            .with_context(|| format!("GET {url}"))?;
        Ok(pem::parse(text).context("the service CA is not PEM")?.into_contents())
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url(), &self.token)
    }

    /// Enrolls the development device: OEM key, product, group, claim, and the factory
    /// release (named by its bundle's hash, so a rebuilt image gets a release of its own).
    pub fn enroll(&self, oem_key: &Path, device_key: &Path, factory: &Path) -> Result<()> {
        let api = self.api();
        let key = crate::service::key_text(oem_key)?;
        idempotent(api.post("/api/v1/oem-keys", json!({ "public_key": key })))?;
        idempotent(api.post("/api/v1/products", json!({ "name": PRODUCT })))?;
        idempotent(api.post("/api/v1/groups", json!({ "product": PRODUCT, "name": GROUP })))?;
        let device = crate::service::key_text(device_key)?;
        idempotent(api.post("/api/v1/devices", crate::service::claim_body(PRODUCT, Some(GROUP), &device)))?;
        idempotent(api.upload_release(PRODUCT, &release_name("factory", factory)?, false, factory))?;
        Ok(())
    }

    /// Stops the service (as dropping it does).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DevService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `<prefix>-<first 8 hex digits of the bundle's SHA-256>`.
pub fn release_name(prefix: &str, bundle: &Path) -> Result<String> {
    let bytes = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    Ok(format!("{prefix}-{}", &hex::encode(Sha256::digest(&bytes))[..8]))
}

/// A creation that finds its object already there counts as done.
fn idempotent(result: Result<serde_json::Value>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(error) if format!("{error:#}").contains("409") => Ok(()),
        Err(error) => Err(error),
    }
}
