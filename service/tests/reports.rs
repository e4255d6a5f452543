//! End to end: signed failure reports — verified, stored as received (so `septa report
//! verify` still checks them offline), de-duplicated, grouped into issues by app, kind and
//! pc with counts per release, reopened when seen in a newer release — driven partly
//! through the `septa` CLI.

mod common;

use common::{APP_ID, Db, Fixture, Service};
use septa_abi::report::{EndKind, Event, Record};
use septa_service::sim::measurements_of;

fn fault(pc: u32, time_ms: u64) -> Event {
    Event::App(Record {
        component_id: APP_ID,
        name: *b"sensor-app\0\0\0\0\0\0",
        kind: EndKind::DataAbort,
        pc,
        address: 0,
        exit_code: 0,
        time_ms,
        restart_count: 1,
    })
}

async fn reports_are_verified_deduplicated_grouped_and_reopened(db: Db) {
    let fixture = Fixture::new();
    let service = Service::start(db).await;
    service.setup_product(&fixture).await;
    let mut a = service.claimed_device(&fixture.v1).await;
    let b = service.claimed_device(&fixture.v1).await;
    let client = service.device_client();
    client.checkin(&a).await.unwrap();
    client.checkin(&b).await.unwrap();

    let first = a.report(0, &[fault(0x100cc, 10), fault(0x2000, 20)]);
    let counts = client.report_counts(&a, std::slice::from_ref(&first)).await.unwrap();
    assert_eq!((counts.stored, counts.duplicates), (1, 0));
    // The same upload again: nothing new.
    let counts = client.report_counts(&a, std::slice::from_ref(&first)).await.unwrap();
    assert_eq!((counts.stored, counts.duplicates), (0, 1));
    client.report_counts(&b, &[b.report(0, &[fault(0x100cc, 15)])]).await.unwrap();
    // A report signed by device b, uploaded as device a's: refused, nothing stored.
    let reply = client.upload_reports(&a, &[b.report(5, &[fault(0x9999, 1)])]).await.unwrap();
    assert_eq!(reply.status, 401, "{}", reply.text());
    // A clean exit is no failure.
    let mut clean = match fault(0x3000, 1) {
        Event::App(r) => r,
        _ => unreachable!(),
    };
    clean.kind = EndKind::Exit;
    client.report_counts(&a, &[a.report(9, &[Event::App(clean)])]).await.unwrap();

    let issues = service.ok("GET", "/api/v1/issues", None).await;
    let issues = issues.as_array().unwrap();
    assert_eq!(issues.len(), 2, "{issues:?}");
    let top = &issues[0];
    assert_eq!((top["pc"].as_i64(), top["count"].as_i64()), (Some(0x100cc), Some(2)));
    assert_eq!(top["app"], "sensor-app");
    assert_eq!(top["kind"], "data abort");
    assert_eq!(top["history"][0][0], "v1");

    // Fixed as of v1 ...
    let id = top["id"].as_str().unwrap().to_string();
    let out = service.septa(&service.token, &["fix", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // ... still fixed when a v1 device reports it again ...
    client.report_counts(&b, &[b.report(1, &[fault(0x100cc, 30)])]).await.unwrap();
    let state = |issues: &serde_json::Value| {
        issues.as_array().unwrap().iter().find(|i| i["id"] == id.as_str()).unwrap()["state"].clone()
    };
    assert_eq!(state(&service.ok("GET", "/api/v1/issues", None).await), "fixed");
    // ... and open again when it shows up in the newer release v2.
    let (status, _) = service.upload(&service.token, "sensor", "v2", false, &fixture.v2).await;
    assert_eq!(status, 200);
    a.boot(measurements_of(&fixture.v2).unwrap());
    client.checkin(&a).await.unwrap();
    client.report_counts(&a, &[a.report(0, &[fault(0x100cc, 5)])]).await.unwrap();
    let issues = service.ok("GET", "/api/v1/issues", None).await;
    assert_eq!(state(&issues), "open");
    let top = issues.as_array().unwrap().iter().find(|i| i["id"] == id.as_str()).unwrap().clone();
    assert_eq!(top["count"], 4);
    let releases: Vec<_> =
        top["history"].as_array().unwrap().iter().map(|h| h[0].as_str().unwrap().to_string()).collect();
    assert!(releases.contains(&"v2".to_string()), "{releases:?}");

    // Stored as received: the CLI exports them and `septa report verify` checks them offline.
    let dir = common::temp_dir("reports");
    let file = dir.join("reports.hex");
    let out = service.septa(&service.token, &["reports", &a.id_hex(), "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = dir.join("device.pub.pem");
    septa_tool::keys::write_public_key(&key, &a.public_key()).unwrap();
    let out = std::process::Command::new(common::septa_tool())
        .args(["report", "verify", "--device-key", key.to_str().unwrap(), file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("4 events in 3 reports"), "{text}");
    assert!(text.contains("data abort"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}
on_both_databases!(reports_are_verified_deduplicated_grouped_and_reopened);
