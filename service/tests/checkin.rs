//! End to end: claim, check-in over mutual TLS with attestation and certificate, clients
//! without a valid certificate or with another device's refused, replays and forgeries refused, untrusted measurements, on the real
//! service binary with simulated devices.

mod common;

use common::{Db, Fixture, Service, new_device};
use septa_abi::service::{AttestResponse, Verdict};
use septa_service::sim::Client;
use serde_json::json;

fn verify_device_certificate(der: &[u8], ca_pem: &str, device: &septa_service::sim::Device) {
    let ca_der = pem_body(ca_pem);
    let ca = rustls::pki_types::CertificateDer::from(ca_der);
    let anchors = [webpki::anchor_from_trusted_cert(&ca).unwrap()];
    let cert = rustls::pki_types::CertificateDer::from(der.to_vec());
    let end_entity = webpki::EndEntityCert::try_from(&cert).unwrap();
    let now = rustls::pki_types::UnixTime::now();
    end_entity
        .verify_for_usage(
            &[webpki::ring::ECDSA_P256_SHA256],
            &anchors,
            &[],
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .expect("the device certificate chains to the service CA for client authentication");
    // The certificate is for the device's own key.
    let point = device.public_key().to_encoded_point(false);
    assert!(der.windows(65).any(|w| w == point.as_bytes()), "certificate carries the device key");
    // ... and expires in 24 hours, not later.
    let in_25h = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        now.as_secs() + 25 * 3600,
    ));
    assert!(
        end_entity
            .verify_for_usage(
                &[webpki::ring::ECDSA_P256_SHA256],
                &anchors,
                &[],
                in_25h,
                webpki::KeyUsage::client_auth(),
                None,
                None
            )
            .is_err()
    );
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64_decode::decode;
    decode(&pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
}

/// Minimal base64 for the test's PEM reading.
mod base64_decode {
    pub fn decode(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
        let mut out = Vec::new();
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, v) in chunk.iter().enumerate() {
                n |= (*v as u32) << (18 - 6 * i);
            }
            out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
        }
        out
    }
}

async fn claimed_device_checks_in_and_gets_a_certificate(db: Db) {
    let fixture = Fixture::new();
    let service = Service::start(db).await;
    service.setup_product(&fixture).await;
    let device = service.claimed_device(&fixture.v1).await;
    // Over the mutual-TLS device port, trusting only the service CA, with the factory
    // certificate.
    let client = service.device_client();
    let response = client.checkin(&device).await.unwrap();
    assert_eq!(response.verdict, Verdict::Trusted);
    assert!(response.offer.is_none());
    let ca = reqwest::get(format!("{}/api/v1/ca", service.base)).await.unwrap().text().await.unwrap();
    assert_eq!(ca, service.ca_pem);
    verify_device_certificate(&response.certificate, &ca, &device);
    let info = service.ok("GET", &format!("/api/v1/devices/{}", device.id_hex()), None).await;
    assert_eq!(info["device"]["trusted"], true);
    assert_eq!(info["device"]["release"], "v1");
    assert_eq!(info["attestations"].as_array().unwrap().len(), 1);

    // The certificate the service issued is good for the next check-in.
    let renewed = Client::with_certificate(&service.tls, &ca, &device, &response.certificate).unwrap();
    assert_eq!(renewed.checkin(&device).await.unwrap().verdict, Verdict::Trusted);
    // A certificate that expired while the device was offline still lets it check in (the
    // check-in proves it afresh), and it gets a new one.
    let now = septa_service::web::now();
    let (expired, _) =
        service.factory.issue_device(&device.id_hex(), &device.public_key(), now - 3 * 86_400).unwrap();
    let late = Client::with_certificate(&service.tls, &ca, &device, &expired).unwrap();
    let response = late.checkin(&device).await.unwrap();
    assert_eq!(response.verdict, Verdict::Trusted);
    verify_device_certificate(&response.certificate, &ca, &device);
    // A client without a certificate, or with one from a CA the service does not know, is
    // refused in the handshake, expired or not.
    let (anonymous, base) = Client::anonymous(&service.tls, &ca).unwrap();
    assert!(anonymous.post(format!("{base}/device/v1/nonce")).send().await.is_err(), "no certificate");
    let other_ca = septa_service::ca::Ca::from_stored(&septa_service::ca::Ca::new_stored()).unwrap();
    let (forged, _) =
        other_ca.issue_device(&device.id_hex(), &device.public_key(), septa_service::web::now()).unwrap();
    let impostor = Client::with_certificate(&service.tls, &ca, &device, &forged).unwrap();
    assert!(impostor.checkin(&device).await.is_err(), "a certificate from another CA is refused");
    let (forged, _) =
        other_ca.issue_device(&device.id_hex(), &device.public_key(), now - 3 * 86_400).unwrap();
    let impostor = Client::with_certificate(&service.tls, &ca, &device, &forged).unwrap();
    assert!(impostor.checkin(&device).await.is_err(), "an expired one from another CA too");
    // A valid certificate speaks only for its own device: another device's check-in,
    // nonce or reports over it are refused.
    let other = service.claimed_device(&fixture.v1).await;
    let nonce = septa_abi::service::NonceRequest { device_id: other.id() };
    let reply =
        renewed.post(&device, "/device/v1/nonce", postcard::to_allocvec(&nonce).unwrap()).await.unwrap();
    assert_eq!(reply.status, 403, "{}", reply.text());
    let upload = septa_abi::service::ReportUpload {
        device_id: other.id(),
        reports: heapless::Vec::from_slice(&[heapless::Vec::from_slice(&other.report(0, &[])).unwrap()])
            .unwrap(),
    };
    let reply =
        renewed.post(&device, "/device/v1/reports", postcard::to_allocvec(&upload).unwrap()).await.unwrap();
    assert_eq!(reply.status, 403, "{}", reply.text());
    // The plain HTTP listener serves no device protocol.
    let plain =
        reqwest::Client::new().post(format!("{}/device/v1/nonce", service.base)).send().await.unwrap();
    assert_eq!(plain.status(), 404);
    // A second claim of the same device, by anyone, is refused.
    let body = json!({ "product": "sensor", "public_key": device.public_key_hex() });
    let (status, _) = service.call("POST", "/api/v1/devices", Some(body)).await;
    assert_eq!(status, 409);
}
on_both_databases!(claimed_device_checks_in_and_gets_a_certificate);

async fn replayed_and_forged_tokens_are_refused(db: Db) {
    let fixture = Fixture::new();
    let service = Service::start(db).await;
    service.setup_product(&fixture).await;
    let device = service.claimed_device(&fixture.v1).await;
    let other = service.claimed_device(&fixture.v1).await;
    let client = service.device_client();

    let nonce = client.nonce(&device).await.unwrap();
    let token = device.token(&nonce);
    assert_eq!(client.attest_raw(&device, token.clone()).await.unwrap().status, 200);
    let replay = client.attest_raw(&device, token).await.unwrap();
    assert_eq!(replay.status, 401);
    assert!(replay.text().contains("already used"), "{}", replay.text());

    // A nonce that was never issued.
    let made_up = client.attest_raw(&device, device.token(&[7; 32])).await.unwrap();
    assert_eq!(made_up.status, 401);
    // A nonce issued to another device.
    let theirs = client.nonce(&other).await.unwrap();
    assert_eq!(client.attest_raw(&device, device.token(&theirs)).await.unwrap().status, 401);
    // Another device's token sent under this device's id.
    let nonce = client.nonce(&device).await.unwrap();
    let wrong = client.attest_raw(&device, other.token(&nonce)).await.unwrap();
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("another device"), "{}", wrong.text());
    // Every byte of a token matters: flip one in the signed part.
    let mut forged = device.token(&nonce);
    let at = forged.len() / 2;
    forged[at] ^= 1;
    let reply = client.attest_raw(&device, forged).await.unwrap();
    assert!(reply.status == 401 || reply.status == 400, "{} {}", reply.status, reply.text());
    // The nonce survived the forgeries (a forged token cannot burn it): the real token passes.
    assert_eq!(client.attest_raw(&device, device.token(&nonce)).await.unwrap().status, 200);
    // An unclaimed device gets nothing.
    let stranger = new_device(&fixture.v1);
    let reply = client
        .post(
            &stranger,
            "/device/v1/nonce",
            postcard::to_allocvec(&septa_abi::service::NonceRequest { device_id: stranger.id() }).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 404);

    let info = service.ok("GET", &format!("/api/v1/devices/{}", device.id_hex()), None).await;
    assert_eq!(
        info["attestations"].as_array().unwrap().len(),
        2,
        "only the two real check-ins were recorded"
    );
}
on_both_databases!(replayed_and_forged_tokens_are_refused);

async fn untrusted_device_gets_no_certificate_and_only_recovery(db: Db) {
    let fixture = Fixture::new();
    let service = Service::start(db).await;
    service.setup_product(&fixture).await;
    // Software signed by someone else: measurements of no release.
    let rogue = septa_service::sim::measurements_of(&common::bundle(
        &p256::ecdsa::SigningKey::random(&mut rand_core::OsRng),
        1,
        9,
    ))
    .unwrap();
    let mut device = service.claimed_device(&fixture.v1).await;
    device.boot(rogue);
    let client = service.device_client();
    let response: AttestResponse = client.checkin(&device).await.unwrap();
    assert_eq!(response.verdict, Verdict::Untrusted);
    assert!(response.certificate.is_empty());
    assert!(response.offer.is_none(), "no recovery release yet");

    let (status, body) = service.upload(&service.token, "sensor", "rescue", true, &fixture.recovery).await;
    assert_eq!(status, 200, "{body}");
    let response = client.checkin(&device).await.unwrap();
    assert_eq!(response.verdict, Verdict::Untrusted);
    let offer = response.offer.expect("the recovery release is offered");
    let bytes = client.download(&device, &offer.ticket, 4096).await.unwrap();
    assert_eq!(bytes, fixture.recovery);
    use sha2::Digest;
    assert_eq!(sha2::Sha256::digest(&bytes).as_slice(), offer.bundle_sha256);

    let audit = service.ok("GET", "/api/v1/audit", None).await;
    assert_eq!(audit["untrusted"], json!([device.id_hex()]));
    // After installing the recovery release it is trusted again.
    device.boot(septa_service::sim::measurements_of(&fixture.recovery).unwrap());
    assert_eq!(client.checkin(&device).await.unwrap().verdict, Verdict::Trusted);
    let audit = service.ok("GET", "/api/v1/audit", None).await;
    assert_eq!(audit["untrusted"], json!([]));
}
on_both_databases!(untrusted_device_gets_no_certificate_and_only_recovery);

/// Two replicas on one PostgreSQL: a nonce from one is good at the other, once; both issue
/// under the same CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_postgres_share_nonces_and_the_ca() {
    let Some(db) = Db::postgres("replicas_on_one_postgres_share_nonces_and_the_ca").await else { return };
    let fixture = Fixture::new();
    let service = Service::start(db).await;
    service.setup_product(&fixture).await;
    let device = service.claimed_device(&fixture.v1).await;
    let (mut replica, base, tls) = service.replica();
    let (a, b) = (service.device_client(), Client::new(&tls, &service.ca_pem, service.factory.clone()));
    let nonce = a.nonce(&device).await.unwrap();
    let token = device.token(&nonce);
    let reply = b.attest_raw(&device, token.clone()).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(a.attest_raw(&device, token).await.unwrap().status, 401, "replayed at the other replica");
    let response: AttestResponse = postcard::from_bytes(&reply.body).unwrap();
    let ca = reqwest::get(format!("{}/api/v1/ca", service.base)).await.unwrap().text().await.unwrap();
    let ca_b = reqwest::get(format!("{base}/api/v1/ca")).await.unwrap().text().await.unwrap();
    assert_eq!(ca, ca_b);
    verify_device_certificate(&response.certificate, &ca, &device);
    let _ = replica.kill();
    let _ = replica.wait();
}
