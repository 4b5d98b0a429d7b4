//! Rotation under continuous traffic: server certificate, client
//! certificate and trust anchors (CA1 -> CA1+CA2 -> CA2) rotated through the
//! kubelet-style atomic writer while a client keeps connecting. Zero failed
//! handshakes, and new connections show each rotation.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use podtls::test_util::CertAuthority;
use podtls::{Authorizer, ClientAuth, ClientTls, PodTls, ServerAuth, ServerTls};

/// One connection a worker made: which worker, when it started (before the
/// TCP connect), and what it saw.
struct Outcome {
    worker: usize,
    started: Instant,
    result: Result<Seen, String>,
}

struct Traffic {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    workers: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// `workers` tasks, each making one connection at a time, back to back.
    fn start(addr: std::net::SocketAddr, cfg: podtls::ClientTls, workers: usize) -> Self {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|worker| {
                let (outcomes, stop, cfg) = (outcomes.clone(), stop.clone(), cfg.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let result = connect(addr, cfg.clone(), "server").await;
                        outcomes.lock().unwrap().push(Outcome {
                            worker,
                            started,
                            result,
                        });
                    }
                })
            })
            .collect();
        Traffic {
            outcomes,
            stop,
            workers,
            tasks,
        }
    }

    /// Waits until a connection made after this call satisfies `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Seen) -> bool) {
        let start = self.outcomes.lock().unwrap().len();
        self.poll_until(what, |outcomes| {
            outcomes[start..]
                .iter()
                .any(|o| o.result.as_ref().is_ok_and(&pred))
        })
        .await;
    }

    /// Waits until *every* worker has completed a successful connection that
    /// started at or after `since` and satisfies `pred`. A worker makes one
    /// connection at a time, so afterwards no connection that started before
    /// `since` is still in flight.
    async fn wait_each_worker_since(
        &self,
        what: &str,
        since: Instant,
        pred: impl Fn(&Seen) -> bool,
    ) {
        let workers = self.workers;
        self.poll_until(what, |outcomes| {
            (0..workers).all(|w| {
                outcomes.iter().any(|o| {
                    o.worker == w && o.started >= since && o.result.as_ref().is_ok_and(&pred)
                })
            })
        })
        .await;
    }

    /// Polls the recorded outcomes until `done` holds, or panics at a deadline.
    async fn poll_until(&self, what: &str, done: impl Fn(&[Outcome]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if done(&self.outcomes.lock().unwrap()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.outcomes)
            .unwrap_or_else(|_| panic!("workers stopped"))
            .into_inner()
            .unwrap()
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
            s.summary == Some(podtls::reload::Summary::TrustBundle { authorities: 2 })
        })
        .await;
    }
    // Leaves from CA2.
    let s2 = spiffe_leaf(&ca2, "/ns/s/sa/server");
    let c2 = spiffe_leaf(&ca2, "/ns/c/sa/client");
    server_vol.write_creds(&s2);
    client_vol.write_creds(&c2);
    wait_status(
        server_pod.credentials().unwrap(),
        "server leaf from CA2",
        |s| serial_of(s).as_deref() == Some(s2.serial.as_str()),
    )
    .await;
    wait_status(
        client_pod.credentials().unwrap(),
        "client leaf from CA2",
        |s| serial_of(s).as_deref() == Some(c2.serial.as_str()),
    )
    .await;
    let leaves_loaded = Instant::now();
    // Before CA1 can be retired, every handshake that began under a CA1 leaf
    // must be over: a connection that started before the swap may still
    // present (or be checked against) CA1 material. Wait until each worker has
    // finished a connection that started after both new leaves were published
    // (and saw them); the same condition a rollout waits for before it
    // retires an anchor.
    let want = format!("serial={}", c2.serial);
    traffic
        .wait_each_worker_since(
            "every worker on both leaves from CA2",
            leaves_loaded,
            |seen| seen.server_serial == s2.serial && seen.line.ends_with(&want),
        )
        .await;
    // CA1 retired.
    let retired = Instant::now();
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

    let outcomes = traffic.finish().await;
    let since = |t: Instant, mark: Instant| {
        if t >= mark {
            format!("+{:?}", t - mark)
        } else {
            format!("-{:?}", mark - t)
        }
    };
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.result.as_ref().err().map(|e| {
                format!(
                    "worker {} started {} after leaves loaded, {} after CA1 retired: {e}",
                    o.worker,
                    since(o.started, leaves_loaded),
                    since(o.started, retired)
                )
            })
        })
        .collect();
    assert!(outcomes.len() > 20, "enough traffic: {}", outcomes.len());
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:#?}",
        failures.len(),
        outcomes.len(),
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
