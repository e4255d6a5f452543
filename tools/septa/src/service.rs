//! `septa service ...`: the admin side of septa-service, over its management API (JSON,
//! bearer token). The URL and token come from `--url`/`--token` or `SEPTA_SERVICE_URL` and
//! `SEPTA_SERVICE_TOKEN`. Every command prints what the service answered; a refusal is an
//! error naming the service's reason.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;

pub struct Api {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            http: reqwest::blocking::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token: token.into(),
        }
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder, what: &str) -> Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .with_context(|| format!("{what}: reaching {}", self.base))?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        if !status.is_success() {
            bail!("{what}: the service answered {status}: {}", text.trim());
        }
        if text.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_str(&text).with_context(|| format!("{what}: not JSON"))
        }
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)), &format!("GET {path}"))
    }

    pub fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body), &format!("POST {path}"))
    }

    pub fn put(&self, path: &str, body: Value) -> Result<Value> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(&body), &format!("PUT {path}"))
    }

    pub fn delete(&self, path: &str) -> Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base)), &format!("DELETE {path}"))
    }

    /// Uploads a bundle file as a release of `product`.
    pub fn upload_release(&self, product: &str, name: &str, recovery: bool, bundle: &Path) -> Result<Value> {
        let bytes = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
        let request = self
            .http
            .post(format!("{}/api/v1/releases", self.base))
            .query(&[
                ("product", product),
                ("name", name),
                ("recovery", if recovery { "true" } else { "false" }),
            ])
            .header("content-type", "application/octet-stream")
            .body(bytes);
        self.send(request, "uploading the release")
    }
}

/// A public key file (PEM) as the API takes it.
pub fn key_text(path: &Path) -> Result<String> {
    let key = crate::keys::load_verifying_key(path)?;
    Ok(hex::encode(key.to_encoded_point(false).as_bytes()))
}

/// A device's stored reports as hex lines, which `septa report verify` reads.
pub fn reports_as_hex_lines(device: &Value) -> String {
    let mut out = String::new();
    for report in device["reports"].as_array().into_iter().flatten() {
        if let Some(raw) = report["raw"].as_str() {
            out.push_str(raw);
            out.push('\n');
        }
    }
    out
}

/// Prints a JSON answer readably.
pub fn print(value: &Value) {
    match value {
        Value::Null => {}
        v => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}

pub fn claim_body(product: &str, group: Option<&str>, key: &str) -> Value {
    json!({ "product": product, "group": group, "public_key": key })
}
