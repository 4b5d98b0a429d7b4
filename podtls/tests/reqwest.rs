//! reqwest over podtls' client configuration (`ClientTls::owned_config`):
//! what reqwest accepts, and that a long-lived reqwest client picks up
//! rotations of both certificates once its pooled connections pass the idle
//! timeout, and not before.

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use mesh::*;
use podtls::http::{peer_auth, serve_http};
use podtls::{certificate::CertInfo, ClientTls};
use tokio::net::TcpListener;

struct Server {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Answers with the serial of the verified client certificate. Default
/// options: connections live up to an hour, so only the client's pool
/// decides when a new connection (and handshake) is made.
async fn start(mesh: &Mesh) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = stopper();
    let task = tokio::spawn(serve_http(
        listener,
        mesh.server_tls(false, &[b"h2", b"http/1.1"]),
        Default::default(),
        stopped,
        |req| async move {
            let serial = peer_auth(&req)
                .identity()
                .map(|id| id.certificate.serial.clone())
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(serial))))
        },
    ));
    Server { addr, stop, task }
}

/// The documented set-up: an owned copy of podtls' configuration (ALPN to
/// match reqwest's features) and an idle timeout for the pool.
fn reqwest_client(tls: &ClientTls, addr: std::net::SocketAddr, idle: Duration) -> reqwest::Client {
    let config = tls.clone().with_alpn(&[b"h2", b"http/1.1"]).owned_config();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .pool_idle_timeout(idle)
        .tls_info(true)
        .resolve("server.svc", addr)
        .build()
        .unwrap()
}

async fn call(client: &reqwest::Client, port: u16) -> Result<Obs, String> {
    let resp = client
        .get(format!("https://server.svc:{port}/"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    if !resp.status().is_success() {
        return Err(resp.status().to_string());
    }
    let server_serial = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .and_then(|der| CertInfo::from_der(der).ok())
        .map(|c| c.serial);
    let client_serial = resp.text().await.map_err(|e| format!("{e:?}"))?;
    Ok(Obs {
        server_serial,
        client_serial,
    })
}

#[tokio::test]
async fn reqwest_takes_the_owned_config_and_refuses_the_shared_one() {
    let mesh = Mesh::new().await;
    let tls = mesh.client_tls();
    // The trap the docs warn about: it compiles, then `build` fails.
    let err = reqwest::Client::builder()
        .tls_backend_preconfigured(tls.config().clone())
        .build()
        .unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    let server = start(&mesh).await;
    let client = reqwest_client(&tls, server.addr, Duration::from_secs(90));
    let seen = call(&client, server.addr.port()).await.unwrap();
    let presented = common::serial_of(&mesh.client_pod.credentials().unwrap().status());
    assert_eq!(Some(seen.client_serial), presented);
    server.stop.send(()).unwrap();
    server.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_reqwest_client_picks_up_rotations_after_its_idle_timeout() {
    let mesh = Mesh::new().await;
    let server = start(&mesh).await;
    let port = server.addr.port();
    let client = reqwest_client(&mesh.client_tls(), server.addr, Duration::from_millis(100));
    let load = Load::start(move || {
        let client = client.clone();
        async move {
            let seen = call(&client, port).await;
            // The workload: a request every 250 ms, so the pooled connection
            // is idle past the 100 ms timeout before each request.
            tokio::time::sleep(Duration::from_millis(250)).await;
            seen
        }
    });
    let requests = rotate_under_load(&mesh, load, 2, true).await;
    assert!(requests >= 4, "{requests}");
    server.stop.send(()).unwrap();
    server.task.await.unwrap();
}

#[tokio::test]
async fn without_an_idle_timeout_the_pooled_connection_keeps_the_old_certificates() {
    let mesh = Mesh::new().await;
    let server = start(&mesh).await;
    let port = server.addr.port();
    let client = reqwest_client(&mesh.client_tls(), server.addr, Duration::from_secs(90));
    let before = call(&client, port).await.unwrap();
    let new_server = mesh.rotate_server().await;
    let new_client = mesh.rotate_client().await;
    for _ in 0..5 {
        let seen = call(&client, port).await.unwrap();
        assert_eq!(seen, before, "the pooled connection was replaced");
    }
    // A new client (new pool, new connection) sees both rotations.
    let fresh = reqwest_client(&mesh.client_tls(), server.addr, Duration::from_secs(90));
    let seen = call(&fresh, port).await.unwrap();
    assert_eq!(seen.server_serial.as_deref(), Some(new_server.as_str()));
    assert_eq!(seen.client_serial, new_client);
    server.stop.send(()).unwrap();
    server.task.await.unwrap();
}
