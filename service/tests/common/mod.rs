//! What the end-to-end tests share: a database (a fresh SQLite file, or a fresh database on
//! the PostgreSQL that `SEPTA_TEST_POSTGRES_URL` names), the real `septa-service` binary on
//! loopback ports, API calls with a tenant's token, real signed bundles and simulated
//! devices.

#![allow(dead_code)]

use p256::ecdsa::SigningKey;
use septa_abi::package::Kind;
use septa_service::sim::{self, Client, Device};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const POSTGRES_ENV: &str = "SEPTA_TEST_POSTGRES_URL";

/// Where the service keeps its data in one test.
pub enum Db {
    Sqlite(PathBuf),
    Postgres { url: String, admin_url: String, name: String },
}

pub fn temp_dir(label: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("septa-service-test-{label}-{}", septa_service::storage::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite(temp_dir("data"))
    }

    /// A new, empty database on the test PostgreSQL; `None` (and a line saying so) without
    /// the URL.
    pub async fn postgres(test: &str) -> Option<Db> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            println!("SKIPPED {test} on PostgreSQL: {POSTGRES_ENV} is not set (.ci/run sets it)");
            return None;
        };
        let name = format!("septa_t_{}", &septa_service::storage::new_id()[..12]);
        let mut conn = sqlx_connect(&admin_url).await;
        use sqlx::Executor;
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("CREATE DATABASE");
        let (base, _) = admin_url.rsplit_once('/').expect("URL ends in /database");
        Some(Db::Postgres { url: format!("{base}/{name}"), admin_url, name })
    }

    fn args(&self) -> Vec<String> {
        match self {
            Db::Sqlite(dir) => vec!["--data".into(), dir.display().to_string()],
            Db::Postgres { url, .. } => vec!["--database".into(), url.clone()],
        }
    }
}

async fn sqlx_connect(url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await.expect("connecting to the test PostgreSQL")
}

impl Drop for Db {
    fn drop(&mut self) {
        match self {
            Db::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Db::Postgres { admin_url, name, .. } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Best effort, on a runtime of its own (Drop may run inside another one).
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async {
                        use sqlx::Executor;
                        let mut conn = sqlx_connect(&admin_url).await;
                        let _ = conn
                            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                            .await;
                    });
                })
                .join();
            }
        }
    }
}

/// The real service binary, running until dropped.
pub struct Service {
    child: Child,
    pub base: String,
    /// The mutual-TLS device port (`https://localhost:PORT`).
    pub tls: String,
    /// The service CA (PEM), the devices' anchor for the device port.
    pub ca_pem: String,
    /// The factory CA whose device certificates the device port accepts (`--device-ca`).
    pub factory: std::sync::Arc<septa_service::ca::Ca>,
    factory_dir: PathBuf,
    pub token: String,
    pub db: Db,
    http: reqwest::Client,
}

/// The `septa` host tool: `SEPTA_TOOL` (set by `cargo xtask test`), or the workspace's
/// debug build.
pub fn septa_tool() -> PathBuf {
    if let Ok(path) = std::env::var("SEPTA_TOOL") {
        return path.into();
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/septa");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p septa-tool` (cargo xtask test does)",
        path.display()
    );
    path
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_septa-service")
}

impl Service {
    pub async fn start(db: Db) -> Service {
        Self::start_with(db, &[]).await
    }

    pub async fn start_with(db: Db, extra: &[&str]) -> Service {
        let output = Command::new(binary())
            .args(db.args())
            .args(["create-tenant", "acme"])
            .output()
            .expect("running septa-service create-tenant");
        assert!(output.status.success(), "create-tenant: {}", String::from_utf8_lossy(&output.stderr));
        let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
        let output =
            Command::new(binary()).args(db.args()).arg("ca-cert").output().expect("septa-service ca-cert");
        let ca_pem = String::from_utf8(output.stdout).unwrap();
        let factory_dir = temp_dir("factory");
        let stored = septa_service::ca::Ca::new_stored();
        let factory = septa_service::ca::Ca::from_stored(&stored).unwrap();
        std::fs::write(factory_dir.join("factory-ca.der"), factory.certificate_der()).unwrap();
        let mut child = Command::new(binary())
            .args(db.args())
            .args(["--listen", "127.0.0.1:0", "--device-listen", "127.0.0.1:0", "--sweep-ms", "100"])
            .arg("--device-ca")
            .arg(factory_dir.join("factory-ca.der"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting septa-service");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut base = None;
        let mut tls = None;
        while base.is_none() || tls.is_none() {
            let line = lines.next().expect("the service printed its addresses").unwrap();
            if let Some(rest) = line.split("on http://").nth(1) {
                base = Some(format!("http://{}", rest.split(' ').next().unwrap()));
            }
            if let Some(rest) = line.strip_prefix("septa-service: device protocol over TLS on ") {
                tls = Some(format!("https://{}", rest.trim().replace("127.0.0.1", "localhost")));
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Service {
            child,
            base: base.unwrap(),
            tls: tls.unwrap(),
            ca_pem,
            factory: std::sync::Arc::new(factory),
            factory_dir,
            token,
            db,
            http: reqwest::Client::new(),
        }
    }

    /// A second service process on the same database: (process, base URL, device port URL).
    /// Dropping the child handle does not stop it; the caller kills it.
    pub fn replica(&self) -> (Child, String, String) {
        let mut child = Command::new(binary())
            .args(self.db.args())
            .args(["--listen", "127.0.0.1:0", "--device-listen", "127.0.0.1:0", "--device-ca"])
            .arg(self.factory_dir.join("factory-ca.der"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting a replica");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("the replica printed its address").unwrap();
        let base = format!("http://{}", line.split("on http://").nth(1).unwrap().split(' ').next().unwrap());
        let line = lines.next().expect("the replica printed its device port").unwrap();
        let tls = line.strip_prefix("septa-service: device protocol over TLS on ").unwrap().trim();
        let tls = format!("https://{}", tls.replace("127.0.0.1", "localhost"));
        std::thread::spawn(move || for _ in lines {});
        (child, base, tls)
    }

    /// Another tenant in the same database; its first admin token.
    pub fn create_tenant(&self, name: &str) -> String {
        let output =
            Command::new(binary()).args(self.db.args()).args(["create-tenant", name]).output().unwrap();
        assert!(output.status.success(), "create-tenant: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// Runs the `septa` CLI against this service with `token`.
    pub fn septa(&self, token: &str, args: &[&str]) -> std::process::Output {
        Command::new(septa_tool())
            .arg("service")
            .args(args)
            .env("SEPTA_SERVICE_URL", &self.base)
            .env("SEPTA_SERVICE_TOKEN", token)
            .output()
            .expect("running septa")
    }

    /// A device-protocol client on the device port; each device presents a certificate
    /// from the factory CA.
    pub fn device_client(&self) -> Client {
        Client::new(&self.tls, &self.ca_pem, self.factory.clone())
    }

    /// A management call with `token`: (status, JSON or text).
    pub async fn call_as(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "GET" => self.http.get(url),
            "POST" => self.http.post(url),
            "PUT" => self.http.put(url),
            "DELETE" => self.http.delete(url),
            _ => panic!("method {method}"),
        };
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// A call that must succeed.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {value}");
        value
    }

    pub async fn upload(
        &self,
        token: &str,
        product: &str,
        name: &str,
        recovery: bool,
        bundle: &[u8],
    ) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/api/v1/releases?product={product}&name={name}&recovery={recovery}", self.base))
            .bearer_auth(token)
            .body(bundle.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Product `sensor`, group `field`, the OEM key, and release `v1` (the factory software).
    pub async fn setup_product(&self, fixture: &Fixture) {
        self.ok("POST", "/api/v1/oem-keys", Some(json!({ "public_key": fixture.oem_public_hex() }))).await;
        self.ok("POST", "/api/v1/products", Some(json!({ "name": "sensor" }))).await;
        self.ok("POST", "/api/v1/groups", Some(json!({ "product": "sensor", "name": "field" }))).await;
        let (status, body) = self.upload(&self.token, "sensor", "v1", false, &fixture.v1).await;
        assert_eq!(status, 200, "{body}");
    }

    /// A new device running `bundle`, claimed into `sensor`/`field`.
    pub async fn claimed_device(&self, bundle: &[u8]) -> Device {
        let device = new_device(bundle);
        let body = json!({ "product": "sensor", "group": "field", "public_key": device.public_key_hex() });
        self.ok("POST", "/api/v1/devices", Some(body)).await;
        device
    }

    pub async fn deployment(&self, id: &str) -> Value {
        let all = self.ok("GET", "/api/v1/deployments", None).await;
        all.as_array().unwrap().iter().find(|d| d["id"] == id).cloned().expect("deployment listed")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.factory_dir);
    }
}

pub fn new_device(bundle: &[u8]) -> Device {
    use rand_core::RngCore;
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    Device::new(secret, sim::measurements_of(bundle).unwrap())
}

/// An OEM key and bundles signed with it: `v1` (factory), `v2` (the update), `recovery`.
pub struct Fixture {
    pub oem: SigningKey,
    pub v1: Vec<u8>,
    pub v2: Vec<u8>,
    pub recovery: Vec<u8>,
}

pub const APP_ID: [u8; 16] = [0xa1; 16];

pub fn bundle(key: &SigningKey, app_version: u32, tag: u8) -> Vec<u8> {
    use septa_tool::image::PackageSpec;
    let spec = |kind, component_id, payload: Vec<u8>| PackageSpec {
        kind,
        component_id,
        security_version: app_version,
        payload,
    };
    let packages = [
        spec(Kind::Monitor, septa_abi::package::MONITOR_COMPONENT_ID, vec![tag; 3000]),
        spec(Kind::Kernel, septa_abi::package::KERNEL_COMPONENT_ID, vec![tag ^ 0x55; 9000]),
        spec(Kind::App, APP_ID, vec![tag ^ 0xaa; 5000]),
    ];
    let signed: Vec<Vec<u8>> = packages.iter().map(|p| p.sign(key)).collect();
    septa_tool::image::bundle(&signed, key).unwrap()
}

impl Fixture {
    pub fn new() -> Fixture {
        let oem = SigningKey::random(&mut rand_core::OsRng);
        Fixture { v1: bundle(&oem, 1, 1), v2: bundle(&oem, 2, 2), recovery: bundle(&oem, 3, 3), oem }
    }

    pub fn oem_public_hex(&self) -> String {
        hex::encode(self.oem.verifying_key().to_encoded_point(false).as_bytes())
    }
}

/// Runs a scenario on SQLite and on PostgreSQL (when the URL is set).
#[macro_export]
macro_rules! on_both_databases {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::common::Db::sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::common::Db::postgres(stringify!($scenario)).await {
                    super::$scenario(db).await;
                }
            }
        }
    };
}
