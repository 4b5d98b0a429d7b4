//! An axum `Router` served through podtls, with the verified client in the
//! handler, while certificates rotate every second.
//!
//! Usage: `cargo run -p podtls --features axum,test-util --example axum_server [SECONDS]`
//!
//! The glue (what a service adds to its axum app): a `ServerTls` over the
//! pod's live credentials with SPIFFE client auth, `http::serve_service`
//! instead of `axum::serve`, and the `VerifiedPeer` extractor. The client
//! half is hyper-util's client over podtls' `HttpsConnector`. Exits non-zero
//! if a request failed or the server never saw a rotated client certificate.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use podtls::axum::VerifiedPeer;
use podtls::http::{serve_service, HttpOptions, HttpsConnector};
use podtls::{Authorizer, ClientAuth, ClientTls, ServerAuth, ServerTls};

/// Any handler can take the verified client; a client without a valid
/// certificate gets 401 with the reason before the handler runs.
async fn whoami(peer: VerifiedPeer) -> String {
    format!(
        "{} {}",
        peer.spiffe_id()
            .map(|id| id.to_string())
            .unwrap_or_default(),
        peer.certificate.serial
    )
}

#[tokio::main]
async fn main() {
    let kubelet = support::Kubelet::new();
    let (server_pod, client_pod) = kubelet.pods().await;

    // Server glue: live credentials, SPIFFE client auth, the Router as is.
    let tls = ServerTls::builder(server_pod.credentials().expect("credentials").clone())
        .client_auth(ClientAuth::required(
            server_pod.spiffe_bundles().clone(),
            Authorizer::member_of([support::td()]),
        ))
        .alpn(&[b"h2", b"http/1.1"])
        .build()
        .expect("server TLS");
    let app = Router::new().route("/whoami", get(whoami));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_service(
        listener,
        tls,
        HttpOptions::default(),
        async move {
            let _ = stopped.await;
        },
        app,
    ));

    // Client: hyper-util over podtls' connector. Pooled connections keep
    // the certificates they were made with; an idle timeout below the
    // request interval makes every request show the current ones.
    let client_tls = ClientTls::builder(ServerAuth::Spiffe(
        client_pod.spiffe_bundles().clone(),
        Authorizer::exact(podtls::parse_spiffe_id(support::SERVER_ID).expect("ID")),
    ))
    .client_credentials(client_pod.credentials().expect("credentials").clone())
    .build()
    .expect("client TLS");
    let http: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_millis(50))
        .build(HttpsConnector::new(client_tls).resolve("server.demo.svc", 8443, addr));

    let rotation = kubelet.rotate_every(Duration::from_secs(1));
    let (mut ok, mut failed, mut serials) = (0, 0, BTreeSet::new());
    let end = Instant::now() + support::seconds();
    while Instant::now() < end {
        let uri = "https://server.demo.svc:8443/whoami";
        let body = match http.get(uri.parse().expect("URI")).await {
            Ok(resp) if resp.status().is_success() => resp.into_body().collect().await.ok(),
            Ok(resp) => {
                eprintln!("{}", resp.status());
                None
            }
            Err(e) => {
                eprintln!("{e:?}");
                None
            }
        };
        match body.map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned()) {
            Some(line) if line.starts_with(support::CLIENT_ID) => {
                ok += 1;
                serials.insert(line);
            }
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rotation.abort();
    let _ = stop.send(());
    server.await.expect("server");
    support::report("axum", ok, failed, serials.len());
}
