//! End to end: tenant isolation, token roles and revocation, the `septa service` CLI, and
//! bad input of every kind — each refused with a clear status, changing nothing.

mod common;

use common::{Db, Fixture, Service};
use serde_json::{Value, json};

async fn tenants_are_isolated_and_tokens_scoped(db: Db) {
    let fixture = Fixture::new();
    let service = Service::start(db).await;
    service.setup_product(&fixture).await;
    let device = service.claimed_device(&fixture.v1).await;
    service.device_client().checkin(&device).await.unwrap();
    let other = service.create_tenant("globex");
    // The other tenant sees none of acme's things and cannot touch them.
    let (status, devices) = service.call_as(&other, "GET", "/api/v1/devices", None).await;
    assert_eq!((status, devices), (200, json!([])));
    let (status, _) =
        service.call_as(&other, "GET", &format!("/api/v1/devices/{}", device.id_hex()), None).await;
    assert_eq!(status, 404);
    for path in ["/api/v1/releases", "/api/v1/deployments", "/api/v1/issues"] {
        assert_eq!(service.call_as(&other, "GET", path, None).await.1, json!([]), "{path}");
    }
    service.call_as(&other, "POST", "/api/v1/products", Some(json!({ "name": "sensor" }))).await;
    let claim = json!({ "product": "sensor", "public_key": device.public_key_hex() });
    assert_eq!(
        service.call_as(&other, "POST", "/api/v1/devices", Some(claim)).await.0,
        409,
        "claimed by acme"
    );
    let (status, _) = service.upload(&other, "sensor", "v9", false, &fixture.v1).await;
    assert_eq!(status, 422, "globex has no OEM key; acme's is not theirs");
    let deploy = json!({ "release": "v1", "group": "field" });
    assert_eq!(service.call_as(&other, "POST", "/api/v1/deployments", Some(deploy)).await.0, 404);
    let audit = service.call_as(&other, "GET", "/api/v1/audit", None).await.1;
    assert_eq!(audit["untrusted"], json!([]));

    // Roles, through the CLI.
    let out = service.septa(&service.token, &["token-create", "--name", "ci", "--role", "viewer"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let viewer = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = service.septa(&service.token, &["token-create", "--name", "release-bot", "--role", "deployer"]);
    let deployer = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = service.septa(&viewer, &["devices"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&device.id_hex()));
    let out = service.septa(&viewer, &["product", "lamp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        service.call_as(&deployer, "POST", "/api/v1/products", Some(json!({"name": "lamp"}))).await.0,
        403
    );
    let (status, _) = service.upload(&viewer, "sensor", "v2", false, &fixture.v2).await;
    assert_eq!(status, 403);
    let (status, _) = service.upload(&deployer, "sensor", "v2", false, &fixture.v2).await;
    assert_eq!(status, 200);
    // Claiming through the CLI with a device key file.
    let dir = common::temp_dir("cli");
    let new = common::new_device(&fixture.v1);
    let key = dir.join("device.pub.pem");
    septa_tool::keys::write_public_key(&key, &new.public_key()).unwrap();
    let out = service.septa(
        &service.token,
        &["claim", "--product", "sensor", "--group", "field", "--device-key", key.to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&new.id_hex()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
    // Revoked tokens stop working; unknown and missing tokens never work.
    let tokens = service.ok("GET", "/api/v1/tokens", None).await;
    let viewer_id = tokens.as_array().unwrap().iter().find(|t| t["name"] == "ci").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = service.septa(&service.token, &["token-revoke", &viewer_id]);
    assert!(out.status.success());
    assert_eq!(service.call_as(&viewer, "GET", "/api/v1/devices", None).await.0, 401);
    assert_eq!(service.call_as("septa_0000", "GET", "/api/v1/devices", None).await.0, 401);
    assert_eq!(service.call_as("", "GET", "/api/v1/devices", None).await.0, 401);
}
on_both_databases!(tenants_are_isolated_and_tokens_scoped);

async fn snapshot(service: &Service) -> Value {
    json!([
        service.ok("GET", "/api/v1/devices", None).await,
        service.ok("GET", "/api/v1/releases", None).await,
        service.ok("GET", "/api/v1/deployments", None).await,
        service.ok("GET", "/api/v1/issues", None).await,
    ])
}

async fn bad_input_is_refused_and_changes_nothing(db: Db) {
    let fixture = Fixture::new();
    let service = Service::start(db).await;
    service.setup_product(&fixture).await;
    let device = service.claimed_device(&fixture.v1).await;
    let client = service.device_client();
    client.checkin(&device).await.unwrap();
    let before = snapshot(&service).await;

    // Device protocol: oversized, malformed, trailing bytes, bad tickets and ranges.
    assert_eq!(client.post(&device, "/device/v1/attest", vec![0; 9000]).await.unwrap().status, 413);
    assert_eq!(client.post(&device, "/device/v1/reports", vec![0; 20000]).await.unwrap().status, 413);
    assert_eq!(client.post(&device, "/device/v1/attest", vec![0xff; 100]).await.unwrap().status, 400);
    assert_eq!(client.post(&device, "/device/v1/nonce", vec![]).await.unwrap().status, 400);
    let mut nonce_request =
        postcard::to_allocvec(&septa_abi::service::NonceRequest { device_id: device.id() }).unwrap();
    nonce_request.push(0);
    assert_eq!(client.post(&device, "/device/v1/nonce", nonce_request).await.unwrap().status, 400);
    assert_eq!(client.attest_raw(&device, vec![1, 2, 3]).await.unwrap().status, 400);
    assert_eq!(client.get(&device, "/device/v1/bundle/zz", None).await.unwrap().status, 400);
    assert_eq!(
        client.get(&device, &format!("/device/v1/bundle/{}", "0".repeat(32)), None).await.unwrap().status,
        404
    );
    let garbage_report = client.upload_reports(&device, &[vec![9; 50]]).await.unwrap();
    assert_eq!(garbage_report.status, 401, "{}", garbage_report.text());

    // Management API: SQL-looking and path-looking names, bad keys, ids and bundles.
    for name in ["x'); DROP TABLE devices;--", "../../etc/passwd", "a/b", "<script>", ""] {
        let (status, body) = service.call("POST", "/api/v1/products", Some(json!({ "name": name }))).await;
        assert_eq!(status, 400, "{name:?}: {body}");
        let (status, _) =
            service.call("POST", "/api/v1/groups", Some(json!({ "product": "sensor", "name": name }))).await;
        assert_eq!(status, 400, "{name:?}");
        let (status, _) =
            service.upload(&service.token, "sensor", &urlencode(name), false, &fixture.v2).await;
        assert_eq!(status, 400, "{name:?}");
    }
    for path in
        ["/api/v1/devices/..%2F..%2Fetc", "/api/v1/devices/1'%20OR%20'1'='1", "/api/v1/deployments/x/targets"]
    {
        assert_eq!(service.call("GET", path, None).await.0, 400, "{path}");
    }
    let (status, _) = service
        .call("POST", "/api/v1/devices", Some(json!({ "product": "sensor", "public_key": "04abcd" })))
        .await;
    assert_eq!(status, 400);
    let (status, _) = service.call("POST", "/api/v1/devices", Some(json!({ "product": "sensor" }))).await;
    assert_eq!(status, 422, "a missing field");
    let (status, _) = service
        .call("POST", "/api/v1/oem-keys", Some(json!({ "public_key": "-----BEGIN PUBLIC KEY-----" })))
        .await;
    assert_eq!(status, 400);
    let stranger = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let (status, body) =
        service.upload(&service.token, "sensor", "v3", false, &common::bundle(&stranger, 3, 7)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.as_str().unwrap().contains("unknown key"), "{body}");
    let (status, _) =
        service.upload(&service.token, "sensor", "v3", false, &fixture.v2[..fixture.v2.len() - 10]).await;
    assert_eq!(status, 422);
    let mut tampered = fixture.v2.clone();
    let last = tampered.len() - 100;
    tampered[last] ^= 1;
    assert_eq!(service.upload(&service.token, "sensor", "v3", false, &tampered).await.0, 422);
    assert_eq!(service.upload(&service.token, "sensor", "v3", false, b"not a bundle").await.0, 422);
    let (status, _) = service.upload(&service.token, "sensor", "v1", false, &fixture.v1).await;
    assert_eq!(status, 409, "release names are unique per product");
    for phases in ["100,10", "1,10", "abc"] {
        let body = json!({ "release": "v1", "group": "field", "phases": phases });
        assert_eq!(service.call("POST", "/api/v1/deployments", Some(body)).await.0, 400, "{phases}");
    }
    let body = json!({ "release": "v1", "group": "field", "threshold_percent": 500 });
    assert_eq!(service.call("POST", "/api/v1/deployments", Some(body)).await.0, 400);
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/products", service.base))
        .bearer_auth(&service.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/products", service.base))
        .bearer_auth(&service.token)
        .header("content-type", "application/json")
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);

    assert_eq!(snapshot(&service).await, before, "nothing changed");
    // And the service still serves the device.
    assert_eq!(client.checkin(&device).await.unwrap().verdict, septa_abi::service::Verdict::Trusted);
}
on_both_databases!(bad_input_is_refused_and_changes_nothing);

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
