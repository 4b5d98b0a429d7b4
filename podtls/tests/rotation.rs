//! Rotation under continuous traffic: server certificate, client
//! certificate and trust anchors (CA1 -> CA1+CA2 -> CA2) rotated through the
//! kubelet-style atomic writer while a client keeps connecting. Zero failed
//! handshakes, and new connections show each rotation.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use podtls::test_util::CertAuthority;
use podtls::{Authorizer, ClientAuth, ClientTls, PodTls, ServerAuth, ServerTls};

struct Traffic {
    results: Arc<Mutex<Vec<Result<Seen, String>>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(addr: std::net::SocketAddr, cfg: podtls::ClientTls, workers: usize) -> Self {
        let results = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|_| {
                let (results, stop, cfg) = (results.clone(), stop.clone(), cfg.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let r = connect(addr, cfg.clone(), "server").await;
                        results.lock().unwrap().push(r);
                    }
                })
            })
            .collect();
        Traffic {
            results,
            stop,
            tasks,
        }
    }

    /// Waits until a connection made after this call satisfies `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Seen) -> bool) {
        let start = self.results.lock().unwrap().len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            {
                let r = self.results.lock().unwrap();
                if r[start..].iter().any(|x| x.as_ref().is_ok_and(&pred)) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn finish(self) -> Vec<Result<Seen, String>> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.results).unwrap().into_inner().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_under_traffic_never_fail_a_handshake() {
    let ca1 = CertAuthority::new("ca1");
    let ca2 = CertAuthority::new("ca2");
    let server_vol = Volume::new();
    let client_vol = Volume::new();
    server_vol.write_creds(&spiffe_leaf(&ca1, "/ns/s/sa/server"));
    server_vol.write_trust(&[&ca1]);
    client_vol.write_creds(&spiffe_leaf(&ca1, "/ns/c/sa/client"));
    client_vol.write_trust(&[&ca1]);

    let start = |vol: &Volume| {
        PodTls::builder()
            .credential_bundle(vol.bundle_path())
            .require_spiffe_svid()
            .spiffe_bundle(td(), vol.spiffe_path())
            .timing(fast_timing())
            .start()
            .unwrap()
    };
    let server_pod = start(&server_vol);
    let client_pod = start(&client_vol);
    let tls = ServerTls::builder(server_pod.credentials().unwrap().clone())
        .client_auth(ClientAuth::required(
            server_pod.spiffe_bundles().clone(),
            Authorizer::member_of([td()]),
        ))
        .build()
        .unwrap();
    let srv = TestServer::start_with(tls, describe_full).await;
    // Resumption off: every connection is a full handshake that shows the
    // certificates actually being served.
    let cfg = ClientTls::builder(ServerAuth::Spiffe(
        client_pod.spiffe_bundles().clone(),
        Authorizer::member_of([td()]),
    ))
    .client_credentials(client_pod.credentials().unwrap().clone())
    .resumption(false)
    .build()
    .unwrap();
    let traffic = Traffic::start(srv.addr, cfg, 2);
    traffic.wait_for("first connection", |_| true).await;

    // Server and client certificates, three times each.
    for round in 0..3 {
        let s = spiffe_leaf(&ca1, "/ns/s/sa/server");
        server_vol.write_creds(&s);
        traffic
            .wait_for(&format!("server serial, round {round}"), |seen| {
                seen.server_serial == s.serial
            })
            .await;
        let c = spiffe_leaf(&ca1, "/ns/c/sa/client");
        client_vol.write_creds(&c);
        let want = format!("serial={}", c.serial);
        traffic
            .wait_for(&format!("client serial, round {round}"), |seen| {
                seen.line.ends_with(&want)
            })
            .await;
    }

    // Trust anchors: CA1 -> CA1+CA2 on both sides.
    server_vol.write_trust(&[&ca1, &ca2]);
    client_vol.write_trust(&[&ca1, &ca2]);
    for pod in [&server_pod, &client_pod] {
        let store = pod.spiffe_bundles().store(&td()).unwrap().clone();
        wait_status(&store, "CA1+CA2", |s| {
            s.summary == Some(podtls::Summary::TrustBundle { authorities: 2 })
        })
        .await;
    }
    // Leaves from CA2.
    let s2 = spiffe_leaf(&ca2, "/ns/s/sa/server");
    let c2 = spiffe_leaf(&ca2, "/ns/c/sa/client");
    server_vol.write_creds(&s2);
    client_vol.write_creds(&c2);
    let want = format!("serial={}", c2.serial);
    traffic
        .wait_for("both leaves from CA2", |seen| {
            seen.server_serial == s2.serial && seen.line.ends_with(&want)
        })
        .await;
    // CA1 retired.
    server_vol.write_trust(&[&ca2]);
    client_vol.write_trust(&[&ca2]);
    for pod in [&server_pod, &client_pod] {
        let store = pod.spiffe_bundles().store(&td()).unwrap().clone();
        wait_status(&store, "CA2 only", |s| s.generation == 3).await;
    }
    traffic
        .wait_for("traffic after CA1 retired", |seen| {
            seen.server_serial == s2.serial
        })
        .await;

    let results = traffic.finish().await;
    let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(results.len() > 20, "enough traffic: {}", results.len());
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:?}",
        failures.len(),
        results.len(),
        failures
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_certificate_from_a_retired_ca_is_rejected() {
    let ca1 = CertAuthority::new("ca1");
    let ca2 = CertAuthority::new("ca2");
    let server_vol = Volume::new();
    server_vol.write_creds(&spiffe_leaf(&ca2, "/ns/s/sa/server"));
    server_vol.write_trust(&[&ca1, &ca2]);
    let server_pod = PodTls::builder()
        .credential_bundle(server_vol.bundle_path())
        .spiffe_bundle(td(), server_vol.spiffe_path())
        .timing(fast_timing())
        .start()
        .unwrap();
    let tls = ServerTls::builder(server_pod.credentials().unwrap().clone())
        .client_auth(ClientAuth::optional(
            server_pod.spiffe_bundles().clone(),
            Authorizer::any(),
        ))
        .build()
        .unwrap();
    let srv = TestServer::start(tls).await;
    let old_client = ClientTls::builder(ServerAuth::Spiffe(
        server_pod.spiffe_bundles().clone(),
        Authorizer::any(),
    ))
    .client_credentials(podtls::Store::fixed(
        "old",
        podtls::Credentials::from_bundle_pem(
            spiffe_leaf(&ca1, "/ns/c/sa/old").bundle_pem().as_bytes(),
            &podtls::Origin::memory("old"),
            podtls::LeafKind::SpiffeSvid,
            std::time::SystemTime::now(),
        )
        .unwrap(),
    ))
    .resumption(false)
    .build()
    .unwrap();
    let seen = connect(srv.addr, old_client.clone(), "x").await.unwrap();
    assert!(seen.line.starts_with("verified"), "{}", seen.line);
    server_vol.write_trust(&[&ca2]);
    let store = server_pod.spiffe_bundles().store(&td()).unwrap().clone();
    wait_status(&store, "CA2 only", |s| s.generation == 2).await;
    let seen = connect(srv.addr, old_client, "x").await.unwrap();
    assert!(seen.line.starts_with("rejected"), "{}", seen.line);
    srv.stop().await;
}
