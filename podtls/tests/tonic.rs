//! A real gRPC service (tonic, prost messages; the service glue is written
//! out as tonic-build would generate it, so no `protoc` is needed) served
//! through podtls (`http::serve_service` on tonic's `Routes`) and called
//! through a tonic `Channel` over podtls' `HttpsConnector`, with `https://`
//! and with `http://` URIs. Rotations under load fail no call; the handler
//! sees the verified client; an anonymous client gets UNAUTHENTICATED.

mod common;
#[path = "common/mesh.rs"]
mod mesh;
#[path = "../examples/support/whoami_grpc.rs"]
mod whoami_grpc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mesh::*;
use podtls::http::{serve_service, HttpsConnector};
use podtls::ClientTls;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use whoami_grpc::{ask, WhoAmIServer};

struct Server {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(mesh: &Mesh, optional: bool, options: podtls::http::HttpOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = stopper();
    let routes = tonic::service::Routes::new(WhoAmIServer);
    let task = tokio::spawn(serve_service(
        listener,
        mesh.server_tls(optional, &[b"h2"]),
        options,
        stopped,
        routes,
    ));
    Server { addr, stop, task }
}

/// A channel to the server through podtls' connector; `scheme` is `https`
/// or `http` (the latter with the explicit opt-in).
async fn channel(tls: ClientTls, addr: std::net::SocketAddr, scheme: &str) -> Channel {
    let mut connector =
        HttpsConnector::new(tls.with_alpn(&[b"h2"])).resolve("greeter.svc", addr.port(), addr);
    if scheme == "http" {
        connector = connector.tls_for_http_uris();
    }
    Endpoint::from_shared(format!("{scheme}://greeter.svc:{}", addr.port()))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_over_both_uri_schemes_survive_rotations_without_a_failure() {
    let mesh = Mesh::new().await;
    // Connections recycle every 300 ms so the long-lived channels pick up
    // the rotated certificates.
    let server = start(&mesh, false, recycling(Duration::from_millis(300))).await;
    for scheme in ["https", "http"] {
        let channel = channel(mesh.client_tls(), server.addr, scheme).await;
        let retries = Arc::new(AtomicUsize::new(0));
        let load = Load::start({
            let retries = retries.clone();
            move || {
                let (channel, retries) = (channel.clone(), retries.clone());
                async move {
                    // tonic's channel is hyper's HTTP/2 client: a call racing
                    // the close of a recycled connection fails unsent
                    // (refused by GOAWAY or cancelled; hyperium/hyper#2500).
                    // Never processed, so retried once.
                    let mut attempt = ask(channel.clone(), "hi").await;
                    if attempt.as_ref().is_err_and(|s| podtls::http::never_sent(s)) {
                        retries.fetch_add(1, Ordering::Relaxed);
                        attempt = ask(channel, "hi").await;
                    }
                    let reply = attempt.map_err(|s| format!("{s:?}"))?;
                    if reply.note != "hi" || !reply.client_id.ends_with(CLIENT_ID) {
                        return Err(format!("unexpected reply {reply:?}"));
                    }
                    Ok(Obs {
                        server_serial: None,
                        client_serial: reply.client_serial,
                    })
                }
            }
        });
        // tonic does not expose the server certificate; the client
        // certificate the server verified shows each rotation.
        let calls = rotate_under_load(&mesh, load, 2, false).await;
        assert!(calls > 4, "{scheme}: {calls}");
        eprintln!(
            "{scheme}://: {calls} calls, {} retried (unsent on a closing connection)",
            retries.load(Ordering::Relaxed)
        );
    }
    server.stop.send(()).unwrap();
    server.task.await.unwrap();
}

#[tokio::test]
async fn an_anonymous_grpc_client_is_unauthenticated_with_the_reason() {
    let mesh = Mesh::new().await;
    let server = start(&mesh, true, Default::default()).await;
    let anonymous = channel(mesh.anonymous_client_tls(), server.addr, "https").await;
    let status = ask(anonymous, "hi").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "client certificate required");
    let verified = channel(mesh.client_tls(), server.addr, "https").await;
    let reply = ask(verified, "hi").await.unwrap();
    assert!(reply.client_id.ends_with(CLIENT_ID), "{reply:?}");
    server.stop.send(()).unwrap();
    server.task.await.unwrap();
}
