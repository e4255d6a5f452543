//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) loads every page
//! of a simulated fleet; each page's screenshot is checked (size, not blank) and its DOM for
//! what a person should see there.

mod common;

use common::{Db, Fixture, Service};
use septa_abi::report::{EndKind, Event, Record};
use septa_service::sim::measurements_of;
use serde_json::json;
use std::path::Path;
use std::process::Command;

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;

fn chromium(args: &[String]) -> std::process::Output {
    let profile = common::temp_dir("chromium-profile");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("running chromium (cargo xtask test installs Debian's chromium)");
    let _ = std::fs::remove_dir_all(profile);
    output
}

/// Decodes the PNG and checks it is a real rendering: the window's size, and content beyond
/// a background (many colours, a fair share of non-background pixels).
fn check_screenshot(path: &Path) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("the screenshot exists"));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT), "{}", path.display());
    let channels = info.color_type.samples();
    let mut counts = std::collections::HashMap::<&[u8], usize>::new();
    for pixel in pixels[..info.buffer_size()].chunks(channels) {
        *counts.entry(pixel).or_default() += 1;
    }
    let total = (info.width * info.height) as usize;
    let background = counts.values().copied().max().unwrap();
    assert!(counts.len() >= 16, "{}: only {} colours", path.display(), counts.len());
    assert!(total - background > total / 50, "{}: almost blank", path.display());
}

async fn fleet(service: &Service, fixture: &Fixture) -> (String, String) {
    service.setup_product(fixture).await;
    let client = service.device_client();
    let mut devices = Vec::new();
    for _ in 0..6 {
        let d = service.claimed_device(&fixture.v1).await;
        client.checkin(&d).await.unwrap();
        devices.push(d);
    }
    let stranger = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    devices[5].boot(measurements_of(&common::bundle(&stranger, 1, 9)).unwrap());
    client.checkin(&devices[5]).await.unwrap();
    let (status, _) = service.upload(&service.token, "sensor", "v2", false, &fixture.v2).await;
    assert_eq!(status, 200);
    let body = json!({ "release": "v2", "group": "field", "phases": "50,100", "threshold_percent": 40 });
    let deployment =
        service.ok("POST", "/api/v1/deployments", Some(body)).await["id"].as_str().unwrap().to_string();
    let mut updated = false;
    for d in devices.iter_mut() {
        if let Some(offer) = client.checkin(d).await.unwrap().offer {
            client.download(d, &offer.ticket, 1 << 20).await.unwrap();
            let booted = !updated;
            if booted {
                d.boot(measurements_of(&fixture.v2).unwrap());
                updated = true;
            }
            client.checkin(d).await.unwrap();
            if booted {
                client.confirm_update(d).await.unwrap();
            }
        }
    }
    let record = |pc| {
        Event::App(Record {
            component_id: common::APP_ID,
            name: *b"sensor-app\0\0\0\0\0\0",
            kind: EndKind::DataAbort,
            pc,
            address: 4,
            exit_code: 0,
            time_ms: 100,
            restart_count: 0,
        })
    };
    for (i, d) in devices.iter().enumerate().take(4) {
        client.report_counts(d, &[d.report(0, &[record(0x100cc), record(0x2000 + i as u32)])]).await.unwrap();
    }
    (devices[0].id_hex(), deployment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_page_renders_in_chromium() {
    let fixture = Fixture::new();
    let service = Service::start(Db::sqlite()).await;
    let (device, _deployment) = fleet(&service, &fixture).await;
    let dir = common::temp_dir("screenshots");
    let pages = [
        ("fleet", "/".to_string(), vec!["Fleet", "untrusted", &device, "v2"]),
        ("device", format!("/devices/{device}"), vec!["Attestations", "trusted", "data abort", "sensor-app"]),
        ("rollouts", "/rollouts".to_string(), vec!["Rollouts", "v2", "field", "halted"]),
        (
            "issues",
            "/issues".to_string(),
            vec!["Failure issues", "sensor-app", "0x000100cc", "counts per day"],
        ),
    ];
    for (name, path, expected) in &pages {
        let url = format!("{}/login?token={}&next={path}", service.base, service.token);
        let file = dir.join(format!("{name}.png"));
        let out = chromium(&[
            format!("--screenshot={}", file.display()),
            format!("--window-size={WIDTH},{HEIGHT}"),
            url.clone(),
        ]);
        assert!(file.exists(), "no screenshot of {path}: {}", String::from_utf8_lossy(&out.stderr));
        check_screenshot(&file);
        let dom = chromium(&["--dump-dom".into(), url]);
        let dom = String::from_utf8_lossy(&dom.stdout);
        for text in expected {
            assert!(dom.contains(text), "{path}: {text:?} not on the page:\n{dom}");
        }
        assert!(!dom.contains("Sign in"), "{path} asked to sign in");
    }
    if let Ok(keep) = std::env::var("SEPTA_KEEP_SCREENSHOTS") {
        for (name, ..) in &pages {
            let _ =
                std::fs::copy(dir.join(format!("{name}.png")), Path::new(&keep).join(format!("{name}.png")));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn pages_need_a_valid_token() {
    let service = Service::start(Db::sqlite()).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = http.get(format!("{}/rollouts", service.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/login");
    let response = http.get(format!("{}/login?token=septa_bad&next=/", service.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // No open redirect: only paths of this site.
    let response = http
        .get(format!("{}/login?token={}&next=//evil.example", service.base, service.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "/");
    let response = http
        .get(format!("{}/login?token={}&next=/issues", service.base, service.token))
        .send()
        .await
        .unwrap();
    assert!(response.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly"));
    assert_eq!(response.headers()["location"], "/issues");
}
