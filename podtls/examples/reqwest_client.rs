//! A long-lived reqwest client on podtls' client configuration, calling a
//! podtls server while certificates rotate every second.
//!
//! Usage: `cargo run -p podtls --features test-util --example reqwest_client [SECONDS]`
//!
//! The glue: `ClientTls::owned_config()` handed to
//! `ClientBuilder::tls_backend_preconfigured` (an owned `rustls::ClientConfig`:
//! reqwest does not recognise `Arc<ClientConfig>` and `build()` fails with
//! "builder error"), ALPN set to what reqwest's features speak, and a pool
//! idle timeout: new connections use the current certificates at once,
//! pooled ones keep theirs until they are dropped. Exits non-zero if a
//! request failed or the server never saw a rotated client certificate.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use podtls::http::{peer_auth, serve_http, HttpOptions};
use podtls::{Authorizer, ClientAuth, ClientTls, ServerAuth, ServerTls};

#[tokio::main]
async fn main() {
    let kubelet = support::Kubelet::new();
    let (server_pod, client_pod) = kubelet.pods().await;

    // A podtls server answering with the verified client's certificate.
    let tls = ServerTls::builder(server_pod.credentials().expect("credentials").clone())
        .client_auth(ClientAuth::required(
            server_pod.spiffe_bundles().clone(),
            Authorizer::member_of([support::td()]),
        ))
        .alpn(&[b"h2", b"http/1.1"])
        .build()
        .expect("server TLS");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_http(
        listener,
        tls,
        HttpOptions::default(),
        async move {
            let _ = stopped.await;
        },
        |req| async move {
            let who = peer_auth(&req)
                .identity()
                .map(|id| id.certificate.serial.clone())
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(who))))
        },
    ));

    // Client glue: podtls' live configuration, owned, for reqwest.
    let client_tls = ClientTls::builder(ServerAuth::Spiffe(
        client_pod.spiffe_bundles().clone(),
        Authorizer::exact(podtls::parse_spiffe_id(support::SERVER_ID).expect("ID")),
    ))
    .client_credentials(client_pod.credentials().expect("credentials").clone())
    .alpn(&[b"h2", b"http/1.1"])
    .build()
    .expect("client TLS");
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls.owned_config())
        .pool_idle_timeout(Duration::from_millis(50))
        .resolve("server.demo.svc", addr)
        .build()
        .expect("reqwest client");

    let rotation = kubelet.rotate_every(Duration::from_secs(1));
    let (mut ok, mut failed, mut serials) = (0, 0, BTreeSet::new());
    let end = Instant::now() + support::seconds();
    let url = format!("https://server.demo.svc:{}/", addr.port());
    while Instant::now() < end {
        match client.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => match resp.text().await {
                Ok(serial) if !serial.is_empty() => {
                    ok += 1;
                    serials.insert(serial);
                }
                other => {
                    eprintln!("{other:?}");
                    failed += 1;
                }
            },
            other => {
                eprintln!("{other:?}");
                failed += 1;
            }
        }
        // Requests 100 ms apart: past the 50 ms idle timeout, so each one
        // is a new connection with the current certificates.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rotation.abort();
    let _ = stop.send(());
    server.await.expect("server");
    support::report("reqwest", ok, failed, serials.len());
}
