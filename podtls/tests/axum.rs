//! An axum `Router` served through podtls (`http::serve_service`): the
//! verified client reaches the handler through the `VerifiedPeer`
//! extractor, rotations under load fail no request, and every way of not
//! being a verified client is answered 401 with its reason.

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mesh::*;
use podtls::axum::VerifiedPeer;
use podtls::http::{serve_service, HttpsConnector, RemoteAddr, ServerInfo};
use podtls::test_util::{CertAuthority, LeafSpec};
use podtls::{ClientTls, PeerAuth};
use tokio::net::TcpListener;

async fn whoami(peer: VerifiedPeer) -> String {
    peer.certificate.serial.clone()
}

async fn maybe(peer: Option<VerifiedPeer>, Extension(remote): Extension<RemoteAddr>) -> String {
    match peer {
        Some(p) => format!("verified {:?} from {}", p.spiffe_id(), remote.0.ip()),
        None => format!("anonymous from {}", remote.0.ip()),
    }
}

async fn verdict(Extension(auth): Extension<PeerAuth>) -> String {
    match auth {
        PeerAuth::Verified(_) => "verified".into(),
        PeerAuth::Anonymous => "anonymous".into(),
        PeerAuth::Rejected(e) => format!("rejected: {e}"),
    }
}

fn app() -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/maybe", get(maybe))
        .route("/verdict", get(verdict))
}

type HttpClient = Client<HttpsConnector, Empty<Bytes>>;

fn client(tls: ClientTls, addr: std::net::SocketAddr) -> HttpClient {
    let connector = HttpsConnector::new(tls).resolve("server.svc", addr.port(), addr);
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn get_text(
    client: &HttpClient,
    port: u16,
    path: &str,
) -> Result<(StatusCode, Option<String>, String), String> {
    let resp = client
        .request(
            Request::get(format!("https://server.svc:{port}{path}"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .map_err(|e| describe_error(&e))?;
    let status = resp.status();
    let server = resp
        .extensions()
        .get::<ServerInfo>()
        .and_then(|i| i.certificate.as_ref())
        .map(|c| c.serial.clone());
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        server,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_router_serves_through_rotations_without_a_failed_request() {
    let mesh = Mesh::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = stopper();
    // Connections recycle every 300 ms, as a busy client's pooled
    // connection must for it to see a rotated server certificate.
    let options = recycling(Duration::from_millis(300));
    let stats = options.serve.stats.clone();
    let server = tokio::spawn(serve_service(
        listener,
        mesh.server_tls(false, &[b"h2", b"http/1.1"]),
        options,
        stopped,
        app(),
    ));
    let http = client(mesh.client_tls(), addr);
    let retries = Arc::new(AtomicUsize::new(0));
    let load = Load::start({
        let retries = retries.clone();
        move || {
            let (http, retries) = (http.clone(), retries.clone());
            async move {
                // hyper's HTTP/2 client fails a request that races the GOAWAY of
                // a connection closing at its maximum age (hyperium/hyper#2500)
                // instead of sending it on a new connection. The stream was
                // refused, never processed: retried once, as RFC 9113 6.8 allows.
                let mut attempt = get_text(&http, addr.port(), "/whoami").await;
                if attempt.as_ref().is_err_and(|e| e.starts_with(NEVER_SENT)) {
                    retries.fetch_add(1, Ordering::Relaxed);
                    attempt = get_text(&http, addr.port(), "/whoami").await;
                }
                let (status, server_serial, body) = attempt?;
                if status != StatusCode::OK {
                    return Err(format!("{status}: {body}"));
                }
                Ok(Obs {
                    server_serial,
                    client_serial: body,
                })
            }
        }
    });
    let requests = rotate_under_load(&mesh, load, 2, true).await;
    assert!(requests > 4, "{requests}");
    eprintln!(
        "{requests} requests, {} retried (unsent on a closing connection)",
        retries.load(Ordering::Relaxed)
    );
    stop.send(()).unwrap();
    server.await.unwrap();
    // The accept loop's accounting ran: connections were recycled at their age.
    let s = &stats;
    assert!(s.handshakes.load(Ordering::Relaxed) >= 2);
    assert!(s.closed_max_age.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn the_extractor_answers_401_with_the_reason_for_anonymous_and_rejected_clients() {
    let mesh = Mesh::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = stopper();
    let server = tokio::spawn(serve_service(
        listener,
        mesh.server_tls(true, &[b"h2", b"http/1.1"]),
        Default::default(),
        stopped,
        app(),
    ));
    let port = addr.port();

    // Verified.
    let ok = client(mesh.client_tls(), addr);
    let (status, _, body) = get_text(&ok, port, "/whoami").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, body) = get_text(&ok, port, "/maybe").await.unwrap();
    assert!(
        body.starts_with("verified Some(") && body.ends_with("from 127.0.0.1"),
        "{body}"
    );

    // No certificate: 401 from the extractor, `None` from `Option<_>`.
    let anon = client(mesh.anonymous_client_tls(), addr);
    let (status, _, body) = get_text(&anon, port, "/whoami").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "client certificate required");
    let (status, _, body) = get_text(&anon, port, "/maybe").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "anonymous from 127.0.0.1")
    );

    // A certificate from another CA claiming the client's ID: 401 with the
    // chain failure, from the extractor and from `Option<_>` alike.
    let rogue = CertAuthority::new("rogue");
    let forged = rogue.issue(&LeafSpec::spiffe(&format!(
        "spiffe://{}{CLIENT_ID}",
        common::TD
    )));
    let forged_tls = ClientTls::builder(mesh.server_auth())
        .client_credentials(common::bundle_creds(&forged))
        .build()
        .unwrap();
    let rogue_client = client(forged_tls, addr);
    for path in ["/whoami", "/maybe"] {
        let (status, _, body) = get_text(&rogue_client, port, path).await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            body.starts_with("client certificate rejected:") && body.contains(&forged.serial),
            "{path}: {body}"
        );
    }
    let (_, _, body) = get_text(&rogue_client, port, "/verdict").await.unwrap();
    assert!(body.starts_with("rejected: "), "{body}");

    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_router_not_served_through_podtls_never_treats_the_caller_as_anonymous() {
    use tower_service::Service;
    let mut router = app();
    let req = Request::get("/maybe")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = router.call(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("not served through podtls"));
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_axum_request() {
    use std::sync::Arc;
    use tokio::sync::Notify;
    let mesh = Mesh::new().await;
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let app = Router::new().route(
        "/slow",
        get({
            let (entered, release) = (entered.clone(), release.clone());
            move |peer: VerifiedPeer| async move {
                entered.notify_one();
                release.notified().await;
                peer.certificate.serial.clone()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = stopper();
    let options = podtls::http::HttpOptions::default();
    let stats = options.serve.stats.clone();
    let server = tokio::spawn(serve_service(
        listener,
        mesh.server_tls(false, &[b"h2", b"http/1.1"]),
        options,
        stopped,
        app,
    ));
    let http = client(mesh.client_tls(), addr);
    let request = tokio::spawn(async move { get_text(&http, addr.port(), "/slow").await });
    entered.notified().await;
    assert_eq!(stats.active.load(Ordering::Relaxed), 1);
    // Shutdown while the request is in the handler: the server keeps
    // serving it, and returns only once it is done.
    stop.send(()).unwrap();
    tokio::task::yield_now().await;
    assert!(!server.is_finished());
    release.notify_one();
    let (status, _, body) = request.await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(!body.is_empty());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server returns after the drain")
        .unwrap();
    assert_eq!(stats.active.load(Ordering::Relaxed), 0);
    assert_eq!(stats.drain_aborted.load(Ordering::Relaxed), 0);
}
