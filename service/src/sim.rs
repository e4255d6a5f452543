//! A simulated device: the keys and tokens of a real one, derived exactly as the loader and
//! monitor derive them (device secret → identity key; measurements → CDI → attestation key),
//! and a client for the device protocol. Installing a bundle changes the measurements and so
//! the attestation key, as on the device. Used by the tests and the load generator.

use anyhow::{Context, Result, bail};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use septa_abi::attest::{self, Claims, Measurement, Token};
use septa_abi::keys;
use septa_abi::report::{Batch, Event, Report};
use septa_abi::service::{
    AttestRequest, AttestResponse, DeviceId, NonceRequest, NonceResponse, ReportResponse, ReportUpload,
};
use septa_abi::slot::Slot;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The loader's measurement, the same on every simulated device.
const LOADER: Measurement =
    Measurement { kind: 0, component_id: [0; 16], security_version: 1, digest: [0x5e; 32] };

pub struct Device {
    secret: [u8; 32],
    identity: SigningKey,
    measurements: Vec<Measurement>,
    /// Attestation key and its certificate by the identity key, for the current software.
    attestation: (SigningKey, Vec<u8>),
    boot_count: u32,
}

/// The measurements a device gets from booting the slot image of `bundle`.
pub fn measurements_of(bundle: &[u8]) -> Result<Vec<Measurement>> {
    let header = septa_abi::bundle::Header::parse(bundle).map_err(|e| anyhow::anyhow!("{e}"))?;
    let slot = Slot::parse(&bundle[header.len()..]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = vec![LOADER];
    for entry in slot.packages() {
        let (_, p) = entry.map_err(|e| anyhow::anyhow!("{e}"))?;
        out.push(Measurement {
            kind: p.header.kind as u8,
            component_id: p.header.component_id,
            security_version: p.header.security_version,
            digest: p.header.measurement(),
        });
    }
    Ok(out)
}

impl Device {
    pub fn new(secret: [u8; 32], measurements: Vec<Measurement>) -> Device {
        let identity = keys::device_identity_key(&keys::identity_seed(&secret));
        let attestation = Self::attestation_for(&secret, &identity, &measurements);
        Device { secret, identity, measurements, attestation, boot_count: 1 }
    }

    fn attestation_for(
        secret: &[u8; 32],
        identity: &SigningKey,
        measurements: &[Measurement],
    ) -> (SigningKey, Vec<u8>) {
        let digests: Vec<[u8; 32]> = measurements.iter().map(|m| m.digest).collect();
        let cdi = keys::compound_device_id(secret, &digests);
        let key = keys::derive_key(&cdi, keys::ATTESTATION, b"");
        let public = key.verifying_key().to_encoded_point(false);
        let certificate: Signature = identity.sign(&attest::certificate_message(public.as_bytes()));
        (key, certificate.to_bytes().to_vec())
    }

    /// Boots other software: new measurements, new CDI, new attestation key.
    pub fn boot(&mut self, measurements: Vec<Measurement>) {
        self.attestation = Self::attestation_for(&self.secret, &self.identity, &measurements);
        self.measurements = measurements;
        self.boot_count += 1;
    }

    pub fn public_key(&self) -> VerifyingKey {
        *self.identity.verifying_key()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key().to_encoded_point(false).as_bytes())
    }

    pub fn id(&self) -> DeviceId {
        keys::key_id(&self.public_key())
    }

    pub fn id_hex(&self) -> String {
        hex::encode(self.id())
    }

    /// A token answering `nonce`, as the monitor builds it.
    pub fn token(&self, nonce: &[u8]) -> Vec<u8> {
        let (key, certificate) = &self.attestation;
        let claims = Claims {
            device_key: heapless::Vec::from_slice(self.public_key().to_encoded_point(false).as_bytes())
                .expect("65"),
            attestation_key: heapless::Vec::from_slice(
                key.verifying_key().to_encoded_point(false).as_bytes(),
            )
            .expect("65"),
            certificate: heapless::Vec::from_slice(certificate).expect("64"),
            nonce: heapless::Vec::from_slice(nonce).expect("nonce fits"),
            measurements: self.measurements.iter().copied().collect(),
        };
        let signature: Signature = key.sign(&attest::claims_digest(&claims).expect("claims encode"));
        let token =
            Token { claims, signature: heapless::Vec::from_slice(&signature.to_bytes()).expect("64") };
        postcard::to_allocvec(&token).expect("token encodes")
    }

    /// A signed report of `events`, as the monitor signs it.
    pub fn report(&self, first: u64, events: &[Event]) -> Vec<u8> {
        let batch = Batch { first, boot_count: self.boot_count, events: events.iter().copied().collect() };
        let signature: Signature =
            self.identity.sign(&septa_abi::report::digest(&batch).expect("batch encodes"));
        let report =
            Report { batch, signature: heapless::Vec::from_slice(&signature.to_bytes()).expect("64") };
        postcard::to_allocvec(&report).expect("report encodes")
    }
}

/// What a request to the service returned: status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A device-protocol client for one service's mutual-TLS device port. Each simulated
/// device connects with a client certificate of its own: one the factory CA issues for its
/// key (as a real device leaves the factory with one), or one given with
/// [`Client::with_certificate`].
#[derive(Clone)]
pub struct Client {
    base: String,
    /// The service CA (PEM), the only anchor for the service's certificate.
    ca_pem: String,
    /// Issues each device's first client certificate.
    factory: Option<Arc<crate::ca::Ca>>,
    /// One HTTP client (and so one TLS identity) per device.
    devices: Arc<Mutex<HashMap<DeviceId, reqwest::Client>>>,
}

impl Client {
    /// Mutual TLS to `base` (`https://...`), trusting only the service CA `ca_pem`; each
    /// device presents a certificate from `factory`.
    pub fn new(base: &str, ca_pem: &str, factory: Arc<crate::ca::Ca>) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            ca_pem: ca_pem.to_string(),
            factory: Some(factory),
            devices: Default::default(),
        }
    }

    /// Mutual TLS as above for `device` alone, presenting `certificate` (DER) for its
    /// identity key. (A real device's key never leaves its monitor; the simulator holds it.)
    pub fn with_certificate(base: &str, ca_pem: &str, device: &Device, certificate: &[u8]) -> Result<Client> {
        let client = Client {
            base: base.trim_end_matches('/').to_string(),
            ca_pem: ca_pem.to_string(),
            factory: None,
            devices: Default::default(),
        };
        let http = client.http_client(device, Some(certificate))?;
        client.devices.lock().expect("not poisoned").insert(device.id(), http);
        Ok(client)
    }

    /// TLS to `base` without any client certificate (which the device port refuses).
    pub fn anonymous(base: &str, ca_pem: &str) -> Result<(reqwest::Client, String)> {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())?;
        let http = reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).build()?;
        Ok((http, base.trim_end_matches('/').to_string()))
    }

    fn http_client(&self, device: &Device, certificate: Option<&[u8]>) -> Result<reqwest::Client> {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let issued;
        let certificate = match (certificate, &self.factory) {
            (Some(c), _) => c,
            (None, Some(factory)) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
                issued = factory.issue_device(&device.id_hex(), &device.public_key(), now as i64)?.0;
                &issued
            }
            (None, None) => bail!("this client has no certificate for device {}", device.id_hex()),
        };
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes())?;
        let key = device.identity.to_pkcs8_pem(LineEnding::LF)?;
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", certificate.to_vec()));
        let identity = reqwest::Identity::from_pem(format!("{cert}{}", key.as_str()).as_bytes())?;
        Ok(reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).identity(identity).build()?)
    }

    /// The HTTP client that speaks for `device`.
    fn http(&self, device: &Device) -> Result<reqwest::Client> {
        if let Some(http) = self.devices.lock().expect("not poisoned").get(&device.id()) {
            return Ok(http.clone());
        }
        let http = self.http_client(device, None)?;
        self.devices.lock().expect("not poisoned").insert(device.id(), http.clone());
        Ok(http)
    }

    /// `POST path` with `body`, as `device`.
    pub async fn post(&self, device: &Device, path: &str, body: Vec<u8>) -> Result<Reply> {
        let response = self
            .http(device)?
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        Ok(Reply { status, body: response.bytes().await?.to_vec() })
    }

    /// `GET path`, as `device`.
    pub async fn get(&self, device: &Device, path: &str, range: Option<&str>) -> Result<Reply> {
        let mut request = self.http(device)?.get(format!("{}{path}", self.base));
        if let Some(range) = range {
            request = request.header("range", range);
        }
        let response = request.send().await.with_context(|| format!("GET {path}"))?;
        let status = response.status().as_u16();
        Ok(Reply { status, body: response.bytes().await?.to_vec() })
    }

    pub async fn nonce(&self, device: &Device) -> Result<[u8; 32]> {
        let reply = self
            .post(
                device,
                "/device/v1/nonce",
                postcard::to_allocvec(&NonceRequest { device_id: device.id() })?,
            )
            .await?;
        if reply.status != 200 {
            bail!("nonce: {} {}", reply.status, reply.text());
        }
        Ok(postcard::from_bytes::<NonceResponse>(&reply.body)?.nonce)
    }

    /// Sends a token; the reply as it came.
    pub async fn attest_raw(&self, device: &Device, token: Vec<u8>) -> Result<Reply> {
        let request = AttestRequest {
            device_id: device.id(),
            token: heapless::Vec::from_slice(&token).map_err(|_| anyhow::anyhow!("token too long"))?,
        };
        self.post(device, "/device/v1/attest", postcard::to_allocvec(&request)?).await
    }

    /// One check-in: nonce, token, verdict (and certificate and offer).
    pub async fn checkin(&self, device: &Device) -> Result<AttestResponse> {
        let nonce = self.nonce(device).await?;
        let reply = self.attest_raw(device, device.token(&nonce)).await?;
        if reply.status != 200 {
            bail!("attest: {} {}", reply.status, reply.text());
        }
        Ok(postcard::from_bytes(&reply.body)?)
    }

    /// Downloads an offered bundle in pieces of `chunk` bytes, resuming with ranges.
    pub async fn download(&self, device: &Device, ticket: &[u8], chunk: usize) -> Result<Vec<u8>> {
        let path = format!("/device/v1/bundle/{}", hex::encode(ticket));
        let mut out = Vec::new();
        loop {
            let range = format!("bytes={}-{}", out.len(), out.len() + chunk - 1);
            let reply = self.get(device, &path, Some(&range)).await?;
            match reply.status {
                206 => out.extend_from_slice(&reply.body),
                416 if !out.is_empty() => return Ok(out),
                _ => bail!("bundle: {} {}", reply.status, reply.text()),
            }
            if reply.body.len() < chunk {
                return Ok(out);
            }
        }
    }

    pub async fn upload_reports(&self, device: &Device, reports: &[Vec<u8>]) -> Result<Reply> {
        let mut list = heapless::Vec::new();
        for r in reports {
            list.push(heapless::Vec::from_slice(r).map_err(|_| anyhow::anyhow!("report too long"))?)
                .map_err(|_| anyhow::anyhow!("too many reports"))?;
        }
        self.post(
            device,
            "/device/v1/reports",
            postcard::to_allocvec(&ReportUpload { device_id: device.id(), reports: list })?,
        )
        .await
    }

    /// Uploads what the monitor signs when an update confirms itself on trial (the
    /// `Applied` event), as the device's agent does after its check-in.
    pub async fn confirm_update(&self, device: &Device) -> Result<()> {
        let applied =
            Event::Update { event: septa_abi::report::UpdateEvent::Applied { slot: 1 }, time_ms: 2000 };
        // The supervisor's record of this boot: sequence numbers far from the tests' own.
        self.report_counts(device, &[device.report(1 << 20, &[applied])]).await.map(|_| ())
    }

    pub async fn report_counts(&self, device: &Device, reports: &[Vec<u8>]) -> Result<ReportResponse> {
        let reply = self.upload_reports(device, reports).await?;
        if reply.status != 200 {
            bail!("reports: {} {}", reply.status, reply.text());
        }
        Ok(postcard::from_bytes(&reply.body)?)
    }
}

/// A signed update bundle of a monitor, a kernel and one app with synthetic payloads,
/// made with the same `abi` code as `septa bundle` (for the load generator, which has no
/// ELF files to pack).
pub fn bundle(key: &SigningKey, version: u32, tag: u8) -> Vec<u8> {
    use septa_abi::package::{Header, Kind};
    let package = |kind, component_id, payload: Vec<u8>| {
        let header =
            Header::for_payload(kind, component_id, version, &payload, keys::key_id(key.verifying_key()));
        let signature: Signature = key.sign(&header.encode_signed());
        let mut bytes = header.encode(&signature.to_bytes().into()).to_vec();
        bytes.extend_from_slice(&payload);
        bytes
    };
    let packages = [
        package(Kind::Monitor, septa_abi::package::MONITOR_COMPONENT_ID, vec![tag; 3000]),
        package(Kind::Kernel, septa_abi::package::KERNEL_COMPONENT_ID, vec![tag ^ 0x55; 9000]),
        package(Kind::App, [0xa1; 16], vec![tag ^ 0xaa; 5000]),
    ];
    let image = septa_abi::slot::compose(&packages, key);
    let components: Vec<([u8; 16], u32)> = packages
        .iter()
        .map(|p| {
            let h = septa_abi::package::Package::parse(p).expect("just made").header;
            (h.component_id, h.security_version)
        })
        .collect();
    let mut out =
        septa_abi::bundle::encode_signed_part(&image, keys::key_id(key.verifying_key()), &components);
    let signature: Signature = key.sign(&out);
    out.extend_from_slice(&signature.to_bytes());
    out.extend_from_slice(&image);
    out
}
