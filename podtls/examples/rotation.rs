//! Watch podtls rotate certificates under traffic, locally, with no cluster.
//!
//! Usage: `cargo run --release -p podtls --features test-util --example rotation [SECONDS]`
//!
//! A stand-in for kubelet writes a server pod's and a client pod's volumes
//! with kubelet's atomic-writer layout, reissuing both certificates every
//! second and rotating the trust anchor once (CA1 -> CA1+CA2 -> CA2). An
//! HTTPS server (SPIFFE client auth) and a client (full SPIFFE server
//! verification) built on podtls talk continuously; every second a line shows
//! the serials in use and the request count. It exits non-zero if any
//! request failed.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use podtls::http::{peer_auth, serve_http, HttpOptions, HttpsConnector};
use podtls::test_util::{AtomicWriter, CertAuthority, LeafSpec};
use podtls::{
    parse_trust_domain, reload::ReloadTiming, reload::Summary, Authorizer, ClientAuth, ClientTls,
    PodTls, ServerAuth, ServerTls,
};

const TD: &str = "cluster.local";

struct Pod {
    creds: AtomicWriter,
    trust: AtomicWriter,
    id: String,
}

impl Pod {
    fn new(root: &std::path::Path, name: &str, id: &str) -> Pod {
        Pod {
            creds: AtomicWriter::new(root.join(name).join("creds")).expect("volume dir"),
            trust: AtomicWriter::new(root.join(name).join("trust")).expect("volume dir"),
            id: id.to_string(),
        }
    }

    fn issue(&self, ca: &CertAuthority) {
        let now = std::time::SystemTime::now();
        let leaf = ca.issue(
            &LeafSpec::spiffe(&self.id)
                .validity(now - Duration::from_secs(60), now + Duration::from_secs(30)),
        );
        let files = BTreeMap::from([(
            "credentialbundle.pem".to_string(),
            leaf.bundle_pem().into_bytes(),
        )]);
        self.creds.write(&files).expect("write credentials");
    }

    fn trust(&self, cas: &[&CertAuthority]) {
        let pem: String = cas.iter().map(|c| c.cert_pem().to_string()).collect();
        let files = BTreeMap::from([("spiffe.pem".to_string(), pem.into_bytes())]);
        self.trust.write(&files).expect("write trust bundle");
    }

    fn start(&self) -> PodTls {
        PodTls::builder()
            .credential_bundle(self.creds.path("credentialbundle.pem"))
            .require_spiffe_svid()
            .spiffe_bundle(
                parse_trust_domain(TD).expect("trust domain"),
                self.trust.path("spiffe.pem"),
            )
            .timing(ReloadTiming::default())
            .start()
            .expect("start podtls")
    }
}

fn serial(pod: &PodTls) -> String {
    match pod.credentials().and_then(|c| c.status().summary) {
        Some(Summary::Certificate(c)) => c.serial[c.serial.len().saturating_sub(8)..].to_string(),
        _ => "-".into(),
    }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let tmp = tempfile::tempdir().expect("temp dir");
    let ca1 = CertAuthority::new("CA1");
    let ca2 = CertAuthority::new("CA2");
    let server = Pod::new(
        tmp.path(),
        "server",
        "spiffe://cluster.local/ns/demo/sa/server",
    );
    let client = Pod::new(
        tmp.path(),
        "client",
        "spiffe://cluster.local/ns/demo/sa/client",
    );
    for p in [&server, &client] {
        p.issue(&ca1);
        p.trust(&[&ca1]);
    }
    let (server_pod, client_pod) = (server.start(), client.start());
    let td = parse_trust_domain(TD).expect("trust domain");

    let tls = ServerTls::builder(server_pod.credentials().expect("creds").clone())
        .client_auth(ClientAuth::required(
            server_pod.spiffe_bundles().clone(),
            Authorizer::member_of([td.clone()]),
        ))
        .alpn(&[b"h2", b"http/1.1"])
        .build()
        .expect("server config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(serve_http(
        listener,
        tls,
        HttpOptions::default(),
        async move {
            let _ = stop_rx.await;
        },
        |req: Request<hyper::body::Incoming>| async move {
            let who = peer_auth(&req)
                .identity()
                .and_then(|i| i.spiffe_id().map(|s| s.to_string()))
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                "Client Identity: {who}"
            )))))
        },
    ));
    let cfg = ClientTls::builder(ServerAuth::Spiffe(
        client_pod.spiffe_bundles().clone(),
        Authorizer::exact(podtls::parse_spiffe_id(&server.id).expect("id")),
    ))
    .client_credentials(client_pod.credentials().expect("creds").clone())
    .build()
    .expect("client config");
    let http = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_millis(500))
        .build(HttpsConnector::new(cfg).resolve("server.demo.svc", 8443, addr));

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let load = {
        let (ok, failed) = (ok.clone(), failed.clone());
        tokio::spawn(async move {
            loop {
                let req = Request::get("https://server.demo.svc:8443/spiffe-echo")
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let res = match http.request(req).await {
                    Ok(resp) => resp.into_body().collect().await.map(|b| b.to_bytes()).ok(),
                    Err(_) => None,
                };
                match res {
                    Some(body) if body.starts_with(b"Client Identity: spiffe://") => {
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    println!("podtls rotation demo: {seconds}s, certificates reissued every second, CA1 -> CA1+CA2 -> CA2");
    println!(
        "{:>4}  {:>10}  {:>10}  {:>14}  {:>6}  {:>6}",
        "t", "server", "client", "trust anchors", "ok", "failed"
    );
    let start = Instant::now();
    let mut anchors = "CA1";
    for t in 1..=seconds {
        tokio::time::sleep_until((start + Duration::from_secs(t)).into()).await;
        let third = seconds / 3;
        let issuer = if t > 2 * third { &ca2 } else { &ca1 };
        if t == third {
            for p in [&server, &client] {
                p.trust(&[&ca1, &ca2]);
            }
            anchors = "CA1+CA2";
        }
        if t == 2 * third + 2 {
            for p in [&server, &client] {
                p.trust(&[&ca2]);
            }
            anchors = "CA2";
        }
        for p in [&server, &client] {
            p.issue(issuer);
        }
        println!(
            "{:>3}s  {:>10}  {:>10}  {:>14}  {:>6}  {:>6}",
            t,
            serial(&server_pod),
            serial(&client_pod),
            anchors,
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
    }
    load.abort();
    let _ = stop_tx.send(());
    let _ = server_task.await;
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("summary: {ok} requests ok, {failed} failed");
    if failed > 0 || ok == 0 {
        std::process::exit(1);
    }
}
