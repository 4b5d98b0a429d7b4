//! A server pod and a client pod whose credentials rotate through the
//! kubelet-style atomic writer, and a load loop that records what every
//! request saw: the integration tests' shared harness.
#![allow(dead_code, missing_docs)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use podtls::test_util::CertAuthority;
use podtls::{Authorizer, ClientAuth, ClientTls, PodTls, ServerAuth, ServerTls};
use tokio::sync::watch;

use crate::common::{fast_timing, serial_of, spiffe_leaf, td, wait_status, Volume};

pub const SERVER_ID: &str = "/ns/s/sa/server";
pub const CLIENT_ID: &str = "/ns/c/sa/client";

/// Two pods of one trust domain, both started and ready.
pub struct Mesh {
    pub ca: CertAuthority,
    pub server_vol: Volume,
    pub client_vol: Volume,
    pub server_pod: PodTls,
    pub client_pod: PodTls,
}

impl Mesh {
    pub async fn new() -> Self {
        let ca = CertAuthority::new("ca");
        let server_vol = Volume::new();
        let client_vol = Volume::new();
        for (vol, id) in [(&server_vol, SERVER_ID), (&client_vol, CLIENT_ID)] {
            vol.write_creds(&spiffe_leaf(&ca, id));
            vol.write_trust(&[&ca]);
        }
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
        server_pod.ready(Duration::from_secs(10)).await.unwrap();
        client_pod.ready(Duration::from_secs(10)).await.unwrap();
        Mesh {
            ca,
            server_vol,
            client_vol,
            server_pod,
            client_pod,
        }
    }

    /// Required (or optional) SPIFFE client auth, any member of the trust domain.
    pub fn server_tls(&self, optional: bool, alpn: &[&[u8]]) -> ServerTls {
        let bundles = self.server_pod.spiffe_bundles().clone();
        let policy = Authorizer::member_of([td()]);
        let auth = if optional {
            ClientAuth::optional(bundles, policy)
        } else {
            ClientAuth::required(bundles, policy)
        };
        ServerTls::builder(self.server_pod.credentials().unwrap().clone())
            .client_auth(auth)
            .alpn(alpn)
            .build()
            .unwrap()
    }

    /// Full SPIFFE verification of the server, presenting the client pod's
    /// credentials.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls::builder(self.server_auth())
            .client_credentials(self.client_pod.credentials().unwrap().clone())
            .build()
            .unwrap()
    }

    /// Verifies the server but presents no certificate.
    pub fn anonymous_client_tls(&self) -> ClientTls {
        ClientTls::builder(self.server_auth()).build().unwrap()
    }

    pub fn server_auth(&self) -> ServerAuth {
        ServerAuth::Spiffe(
            self.client_pod.spiffe_bundles().clone(),
            Authorizer::member_of([td()]),
        )
    }

    /// Writes a new server leaf; returns its serial once the server pod
    /// serves it.
    pub async fn rotate_server(&self) -> String {
        let leaf = spiffe_leaf(&self.ca, SERVER_ID);
        self.server_vol.write_creds(&leaf);
        let store = self.server_pod.credentials().unwrap();
        wait_status(store, "rotated server leaf", |s| {
            serial_of(s).as_deref() == Some(leaf.serial.as_str())
        })
        .await;
        leaf.serial
    }

    /// Writes a new client leaf; returns its serial once the client pod
    /// presents it.
    pub async fn rotate_client(&self) -> String {
        let leaf = spiffe_leaf(&self.ca, CLIENT_ID);
        self.client_vol.write_creds(&leaf);
        let store = self.client_pod.credentials().unwrap();
        wait_status(store, "rotated client leaf", |s| {
            serial_of(s).as_deref() == Some(leaf.serial.as_str())
        })
        .await;
        leaf.serial
    }
}

/// What one request saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obs {
    /// The serial of the server certificate of the request's connection,
    /// when the client library exposes it.
    pub server_serial: Option<String>,
    /// The serial of the client certificate the server verified.
    pub client_serial: String,
}

/// Requests made back to back by one task, each result recorded.
pub struct Load {
    results: watch::Sender<Vec<Result<Obs, String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub fn start<F, Fut>(request: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Obs, String>> + Send,
    {
        let results = watch::Sender::new(Vec::new());
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (results, stop) = (results.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = request().await;
                    results.send_modify(|v| v.push(r));
                }
            }
        });
        Load {
            results,
            stop,
            task,
        }
    }

    /// Waits (event-driven, 20 s deadline) until a request that *ends*
    /// after this call saw `pred`.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Obs) -> bool) {
        let mut rx = self.results.subscribe();
        let from = rx.borrow_and_update().len();
        let found = tokio::time::timeout(
            Duration::from_secs(20),
            rx.wait_for(|v| v[from..].iter().any(|r| r.as_ref().is_ok_and(&pred))),
        )
        .await;
        if found.is_err() {
            let v = self.results.borrow();
            panic!(
                "timed out waiting for {what}; last results: {:?}",
                &v[v.len().saturating_sub(5)..]
            );
        }
    }

    /// Stops the load; every result.
    pub async fn finish(self) -> Vec<Result<Obs, String>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.results.borrow().clone()
    }
}

/// Rotates the server's and the client's certificates `rounds` times under
/// `load`, waiting each time until a request shows the new one (the server
/// one only when `server_visible`), then asserts that no request failed.
/// Returns how many requests were made.
pub async fn rotate_under_load(
    mesh: &Mesh,
    load: Load,
    rounds: usize,
    server_visible: bool,
) -> usize {
    load.wait_for("a first request", |_| true).await;
    for round in 0..rounds {
        let s = mesh.rotate_server().await;
        if server_visible {
            load.wait_for(&format!("server serial {s}, round {round}"), |o| {
                o.server_serial.as_deref() == Some(s.as_str())
            })
            .await;
        }
        let c = mesh.rotate_client().await;
        load.wait_for(&format!("client serial {c}, round {round}"), |o| {
            o.client_serial == c
        })
        .await;
    }
    let results = load.finish().await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );
    results.len()
}

/// A stop signal for a server task.
pub fn stopper() -> (tokio::sync::oneshot::Sender<()>, impl Future<Output = ()>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

/// HTTP options whose connections recycle every `age` (no jitter), so a
/// busy client's long-lived connections pick up rotations.
pub fn recycling(age: Duration) -> podtls::http::HttpOptions {
    podtls::http::HttpOptions {
        serve: podtls::ServeOptions {
            max_connection_age: age,
            connection_age_jitter: 0.0,
            drain_timeout: Duration::from_secs(10),
            ..podtls::ServeOptions::default()
        },
        ..podtls::http::HttpOptions::default()
    }
}

/// The prefix [`describe_error`] gives requests that were never sent.
pub const NEVER_SENT: &str = "never sent: ";

/// A request error as the load records it; marked when
/// `podtls::http::never_sent` says the request never reached the server (a
/// request racing the graceful close of its connection, which hyper's
/// HTTP/2 client fails instead of resending: hyperium/hyper#2500).
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    if podtls::http::never_sent(error) {
        format!("{NEVER_SENT}{error:?}")
    } else {
        format!("{error:?}")
    }
}
