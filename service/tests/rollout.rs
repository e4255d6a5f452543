//! End to end: releases, deployments and phased rollouts whose per-device status comes
//! from the next attestation: updated, rolled back (old measurements after a complete
//! download, or a signed roll-back report), timed out; the halt on the failure threshold.

mod common;

use common::{Db, Fixture, Service};
use septa_abi::boot_state::{RollbackReason, UpdateEvent};
use septa_abi::report::Event;
use septa_service::sim::{Device, measurements_of};
use serde_json::json;

async fn offered(service: &Service, devices: &[Device]) -> Vec<usize> {
    let client = service.device_client();
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        if client.checkin(d).await.unwrap().offer.is_some() {
            out.push(i);
        }
    }
    out
}

async fn phased_rollout_updates_then_halts_on_roll_backs(db: Db) {
    let fixture = Fixture::new();
    let service = Service::start(db).await;
    service.setup_product(&fixture).await;
    let mut devices = Vec::new();
    for _ in 0..20 {
        devices.push(service.claimed_device(&fixture.v1).await);
    }
    let client = service.device_client();
    for d in &devices {
        assert!(client.checkin(d).await.unwrap().offer.is_none());
    }
    let (status, body) = service.upload(&service.token, "sensor", "v2", false, &fixture.v2).await;
    assert_eq!(status, 200, "{body}");
    let body = json!({ "release": "v2", "group": "field", "phases": "10,50,100", "threshold_percent": 40, "deadline_s": 3600 });
    let id = service.ok("POST", "/api/v1/deployments", Some(body)).await["id"].as_str().unwrap().to_string();

    // Phase 1: 10 % of 20 devices.
    let first = offered(&service, &devices).await;
    assert_eq!(first.len(), 2, "{first:?}");
    let v2 = measurements_of(&fixture.v2).unwrap();
    for &i in &first {
        let offer = client.checkin(&devices[i]).await.unwrap().offer.unwrap();
        // A download cut short resumes where it stopped.
        let bytes = client.download(&devices[i], &offer.ticket, 5000).await.unwrap();
        assert_eq!(bytes, fixture.v2);
        devices[i].boot(v2.clone());
        let after = client.checkin(&devices[i]).await.unwrap();
        assert!(after.offer.is_none(), "a device on trial is not offered the release again");
        // On trial until the device says, signed, that the update confirmed itself.
        let targets = service.ok("GET", &format!("/api/v1/deployments/{id}/targets"), None).await;
        let status = targets.as_array().unwrap().iter().find(|t| t["device"] == devices[i].id_hex()).unwrap()
            ["status"]
            .clone();
        assert_eq!(status, "on trial");
        // Still on trial at the next check-in (the confirmation not yet sent): no offer either.
        let again = client.checkin(&devices[i]).await.unwrap();
        assert!(again.offer.is_none(), "a device on trial is offered the release it runs");
        client.confirm_update(&devices[i]).await.unwrap();
    }
    let deployment = service.deployment(&id).await;
    assert_eq!(deployment["counts"]["updated"], 2, "{deployment}");
    assert_eq!(deployment["phase"], 1, "phase 2 opened: {deployment}");

    // Phase 2: 50 % = 10 devices, the 2 updated among them.
    let second = offered(&service, &devices).await;
    assert_eq!(second.len(), 8, "{second:?}");
    // Two download the release and come back with the old software: 1 of 3 decided failed
    // (33 %, under 40 %), then 2 of 4 (50 %): halted mid-phase.
    for (n, &i) in second[..2].iter().enumerate() {
        let offer = client.checkin(&devices[i]).await.unwrap().offer.unwrap();
        client.download(&devices[i], &offer.ticket, 1 << 20).await.unwrap();
        client.checkin(&devices[i]).await.unwrap();
        let state = service.deployment(&id).await["state"].clone();
        assert_eq!(state, if n == 0 { "active" } else { "halted" });
    }
    let deployment = service.deployment(&id).await;
    assert_eq!(deployment["counts"]["rolled back"], 2, "{deployment}");
    assert_eq!(deployment["state"], "halted", "{deployment}");
    assert!(deployment["reason"].as_str().unwrap().contains("2 of 4"), "{deployment}");
    // Halted: nobody is offered the release any more.
    assert!(offered(&service, &devices).await.is_empty());
    let audit = service.ok("GET", "/api/v1/audit", None).await;
    assert_eq!(audit["halted"], json!([id]));
    let targets = service.ok("GET", &format!("/api/v1/deployments/{id}/targets"), None).await;
    let updated: Vec<_> = targets.as_array().unwrap().iter().filter(|t| t["status"] == "updated").collect();
    assert_eq!(updated.len(), 2);
}
on_both_databases!(phased_rollout_updates_then_halts_on_roll_backs);

async fn silent_devices_time_out_and_signed_roll_backs_count(db: Db) {
    let fixture = Fixture::new();
    let service = Service::start(db).await;
    service.setup_product(&fixture).await;
    let devices = [service.claimed_device(&fixture.v1).await, service.claimed_device(&fixture.v1).await];
    let client = service.device_client();
    let (status, _) = service.upload(&service.token, "sensor", "v2", false, &fixture.v2).await;
    assert_eq!(status, 200);
    let body = json!({ "release": "v2", "group": "field", "phases": "100", "threshold_percent": 100, "deadline_s": 2 });
    let id = service.ok("POST", "/api/v1/deployments", Some(body)).await["id"].as_str().unwrap().to_string();
    // Device 0 says, in a report signed by its own key, that the update rolled back.
    let offer = client.checkin(&devices[0]).await.unwrap().offer.unwrap();
    client.download(&devices[0], &offer.ticket, 1 << 20).await.unwrap();
    let rolled_back = Event::Update {
        event: UpdateEvent::RolledBack { slot: 1, reason: RollbackReason::Watchdog },
        time_ms: 900,
    };
    let counts = client.report_counts(&devices[0], &[devices[0].report(0, &[rolled_back])]).await.unwrap();
    assert_eq!(counts.stored, 1);
    // Device 1 takes the offer and goes silent.
    assert!(client.checkin(&devices[1]).await.unwrap().offer.is_some());
    let targets = service.ok("GET", &format!("/api/v1/deployments/{id}/targets"), None).await;
    let status_of = |targets: &serde_json::Value, d: &Device| {
        targets.as_array().unwrap().iter().find(|t| t["device"] == d.id_hex()).unwrap()["status"].clone()
    };
    assert_eq!(status_of(&targets, &devices[0]), "rolled back");
    assert_eq!(status_of(&targets, &devices[1]), "offered");
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let targets = service.ok("GET", &format!("/api/v1/deployments/{id}/targets"), None).await;
    assert_eq!(status_of(&targets, &devices[1]), "timed out");
    // A late attestation of the release does not undo the verdict.
    let mut late = devices;
    late[1].boot(measurements_of(&fixture.v2).unwrap());
    client.checkin(&late[1]).await.unwrap();
    let targets = service.ok("GET", &format!("/api/v1/deployments/{id}/targets"), None).await;
    assert_eq!(status_of(&targets, &late[1]), "timed out");
    let deployment = service.deployment(&id).await;
    assert_eq!(deployment["state"], "complete", "threshold 100 %: {deployment}");
    assert_eq!(deployment["counts"]["timed out"], 1);
}
on_both_databases!(silent_devices_time_out_and_signed_roll_backs_count);
