//! `septa-load`: a fleet of simulated devices against a running septa-service, for
//! `cargo xtask bench --service`. It registers an OEM key, a product and a release, claims
//! N devices, then has every device check in once (nonce + attestation + certificate) with
//! C in flight, and prints `BENCH` lines: check-ins per second, p50/p99 latency, and the cost
//! of the ECDSA P-256 operations a check-in needs on this CPU. Devices check in over the
//! service's mutual-TLS device port, each with a client certificate from a factory CA the
//! service was started with (`septa-load --write-factory-ca FILE` makes one: `FILE.json`
//! for this tool, `FILE.der` for the service's `--device-ca`).

use anyhow::{Context, Result, bail};
use clap::Parser;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey};
use septa_service::sim::{self, Client, Device};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Only write a new factory CA to FILE.json and FILE.der, and exit.
    #[arg(long, value_name = "FILE")]
    write_factory_ca: Option<std::path::PathBuf>,
    /// The service's management URL.
    #[arg(long, required_unless_present = "write_factory_ca")]
    url: Option<String>,
    /// The service's device port (https://localhost:PORT).
    #[arg(long, required_unless_present = "write_factory_ca")]
    device_url: Option<String>,
    /// The factory CA (FILE.json from --write-factory-ca) the service accepts devices of.
    #[arg(long, required_unless_present = "write_factory_ca")]
    factory_ca: Option<std::path::PathBuf>,
    /// An admin token of a tenant made for this run.
    #[arg(long, required_unless_present = "write_factory_ca")]
    token: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Check-ins in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Prefix of the BENCH metric names (e.g. `service_sqlite`).
    #[arg(long, default_value = "service")]
    label: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(file) = &args.write_factory_ca {
        let stored = septa_service::ca::Ca::new_stored();
        let ca = septa_service::ca::Ca::from_stored(&stored)?;
        std::fs::write(file.with_extension("json"), &stored)?;
        std::fs::write(file.with_extension("der"), ca.certificate_der())?;
        return Ok(());
    }
    let (Some(url), Some(device_url), Some(factory), Some(token)) =
        (&args.url, &args.device_url, &args.factory_ca, &args.token)
    else {
        bail!("give --url, --device-url, --factory-ca and --token");
    };
    let factory = Arc::new(septa_service::ca::Ca::from_stored(&std::fs::read_to_string(factory)?)?);
    crypto_costs();
    let http = reqwest::Client::new();
    let api =
        |method: reqwest::Method, path: &str| http.request(method, format!("{url}{path}")).bearer_auth(token);
    let oem = SigningKey::random(&mut rand_core::OsRng);
    let bundle = sim::bundle(&oem, 1, 1);
    let key = hex::encode(oem.verifying_key().to_encoded_point(false).as_bytes());
    for (path, body) in [
        ("/api/v1/oem-keys", json!({ "public_key": key })),
        ("/api/v1/products", json!({ "name": "loadtest" })),
        ("/api/v1/groups", json!({ "product": "loadtest", "name": "fleet" })),
    ] {
        let response = api(reqwest::Method::POST, path).json(&body).send().await?;
        if !response.status().is_success() {
            bail!("{path}: {}", response.text().await?);
        }
    }
    let response = api(reqwest::Method::POST, "/api/v1/releases?product=loadtest&name=v1")
        .body(bundle.clone())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("release: {}", response.text().await?);
    }

    let measurements = sim::measurements_of(&bundle)?;
    let seed: [u8; 32] =
        rand_core::RngCore::next_u64(&mut rand_core::OsRng).to_le_bytes().repeat(4).try_into().unwrap();
    let devices: Vec<Arc<Device>> = (0..args.devices)
        .map(|i| {
            Arc::new(Device::new(
                septa_abi::keys::hmac(&seed, &[&(i as u64).to_le_bytes()]),
                measurements.clone(),
            ))
        })
        .collect();
    eprintln!("septa-load: claiming {} devices", devices.len());
    let started = Instant::now();
    run_all(&devices, args.concurrency, |device| {
        let request = api(reqwest::Method::POST, "/api/v1/devices")
            .json(&json!({ "product": "loadtest", "group": "fleet", "public_key": device.public_key_hex() }));
        async move {
            let response = request.send().await?;
            if !response.status().is_success() {
                bail!("claim: {}", response.text().await?);
            }
            Ok(())
        }
    })
    .await?;
    eprintln!("septa-load: claimed in {:.1} s; checking in", started.elapsed().as_secs_f64());

    let ca = http.get(format!("{url}/api/v1/ca")).send().await?.text().await?;
    let client = Client::new(device_url, &ca, factory);
    let started = Instant::now();
    let mut latencies = run_all(&devices, args.concurrency, |device| {
        let client = client.clone();
        async move {
            let response = client.checkin(&device).await?;
            if response.verdict != septa_abi::service::Verdict::Trusted || response.certificate.is_empty() {
                bail!("device {} was not trusted", device.id_hex());
            }
            Ok(())
        }
    })
    .await?;
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let label = &args.label;
    println!("BENCH {label}_devices {} devices", devices.len());
    println!("BENCH {label}_checkins_per_s {:.0} check-ins/s", devices.len() as f64 / elapsed.as_secs_f64());
    println!("BENCH {label}_p50_us {} us", percentile(0.50).as_micros());
    println!("BENCH {label}_p99_us {} us", percentile(0.99).as_micros());
    Ok(())
}

/// Runs `job` for every device with `concurrency` in flight; the latency of each.
async fn run_all<F, Fut>(devices: &[Arc<Device>], concurrency: usize, job: F) -> Result<Vec<Duration>>
where
    F: Fn(Arc<Device>) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(devices.len());
    for device in devices {
        let permit = semaphore.clone().acquire_owned().await?;
        let future = job(device.clone());
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let result = future.await;
            drop(permit);
            result.map(|()| start.elapsed())
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.context("a simulated device task failed")??);
    }
    Ok(out)
}

/// What bounds a check-in: the service verifies two ECDSA signatures (the device key's
/// certificate of the attestation key, and the token; with ring) and signs one
/// certificate; the simulated device signs its token (with `p256`, as the monitor does).
/// Measured here with the same crates.
fn crypto_costs() {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let message = [7u8; 32];
    let rounds = 200;
    let start = Instant::now();
    let mut signature: Signature = key.sign(&message);
    for _ in 0..rounds {
        signature = key.sign(&message);
    }
    let sign = start.elapsed() / rounds;
    let start = Instant::now();
    for _ in 0..rounds {
        key.verifying_key().verify(&message, &signature).expect("verifies");
    }
    let verify = start.elapsed() / rounds;
    let public = key.verifying_key().to_encoded_point(false);
    let ring_key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, public.as_bytes());
    let start = Instant::now();
    for _ in 0..rounds {
        ring_key.verify(&message, &signature.to_bytes()).expect("verifies");
    }
    let ring_verify = start.elapsed() / rounds;
    let ca = septa_service::ca::Ca::from_stored(&septa_service::ca::Ca::new_stored()).expect("CA");
    let start = Instant::now();
    for _ in 0..rounds {
        ca.issue_device("0011223344556677", key.verifying_key(), 1_800_000_000).expect("certificate");
    }
    let certificate = start.elapsed() / rounds;
    println!("BENCH p256_sign_us {} us", sign.as_micros());
    println!("BENCH p256_verify_us {} us", verify.as_micros());
    println!("BENCH ring_p256_verify_us {} us", ring_verify.as_micros());
    println!("BENCH device_certificate_us {} us", certificate.as_micros());
}
