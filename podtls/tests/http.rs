//! hyper integration: requests carry the verified peer; the connector speaks
//! h2 or HTTP/1.1 by ALPN; shutdown is graceful.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use podtls::http::{peer_auth, serve_http, HttpOptions, HttpsConnector};
use podtls::test_util::CertAuthority;
use podtls::{Authorizer, ClientAuth, ClientTls, PodTls, ServerAuth, ServerTls};
use tokio::net::TcpListener;

static SLOW_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

async fn handler(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/slow" {
        SLOW_STARTED.notify_one();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let body = format!("{:?} {}", req.version(), describe(&peer_auth(&req)));
    Ok(Response::new(Full::new(Bytes::from(body))))
}

struct Setup {
    _server_vol: Volume,
    _client_vol: Volume,
    _pods: (PodTls, PodTls),
    server_tls: ServerTls,
    client_cfg: ClientTls,
}

fn setup(alpn: &[&[u8]]) -> Setup {
    let ca = CertAuthority::new("ca");
    let server_vol = Volume::new();
    let client_vol = Volume::new();
    server_vol.write_creds(&spiffe_leaf(&ca, "/ns/s/sa/server"));
    server_vol.write_trust(&[&ca]);
    client_vol.write_creds(&spiffe_leaf(&ca, "/ns/c/sa/client"));
    client_vol.write_trust(&[&ca]);
    let pod = |vol: &Volume| {
        PodTls::builder()
            .credential_bundle(vol.bundle_path())
            .spiffe_bundle(td(), vol.spiffe_path())
            .timing(fast_timing())
            .start()
            .unwrap()
    };
    let (sp, cp) = (pod(&server_vol), pod(&client_vol));
    let server_tls = ServerTls::builder(sp.credentials().unwrap().clone())
        .client_auth(ClientAuth::optional(
            sp.spiffe_bundles().clone(),
            Authorizer::any(),
        ))
        .alpn(alpn)
        .build()
        .unwrap();
    let client_cfg = ClientTls::builder(ServerAuth::Spiffe(
        cp.spiffe_bundles().clone(),
        Authorizer::any(),
    ))
    .client_credentials(cp.credentials().unwrap().clone())
    .build()
    .unwrap();
    Setup {
        _server_vol: server_vol,
        _client_vol: client_vol,
        _pods: (sp, cp),
        server_tls,
        client_cfg,
    }
}

async fn get(client: &Client<HttpsConnector, Full<Bytes>>, url: &str) -> Result<String, String> {
    let resp = client
        .request(Request::get(url).body(Full::new(Bytes::new())).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8(body.to_bytes().to_vec()).unwrap())
}

#[tokio::test]
async fn requests_carry_the_verified_client_over_h2_and_http1() {
    for (alpn, version) in [
        (&[b"h2".as_slice(), b"http/1.1"][..], "HTTP/2.0"),
        (&[b"http/1.1".as_slice()][..], "HTTP/1.1"),
    ] {
        let s = setup(alpn);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_http(
            listener,
            s.server_tls.clone(),
            HttpOptions::default(),
            async move {
                let _ = stop_rx.await;
            },
            handler,
        ));
        let connector =
            HttpsConnector::new(s.client_cfg.clone()).resolve("echo.demo.svc", 8443, addr);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let body = get(&client, "https://echo.demo.svc:8443/").await.unwrap();
        assert_eq!(
            body,
            format!("{version} verified spiffe://cluster.local/ns/c/sa/client")
        );
        drop(client);
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let s = setup(&[b"h2", b"http/1.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_http(
        listener,
        s.server_tls.clone(),
        HttpOptions::default(),
        async move {
            let _ = stop_rx.await;
        },
        handler,
    ));
    let connector = HttpsConnector::new(s.client_cfg.clone()).resolve("x.svc", 1, addr);
    let client = Client::builder(TokioExecutor::new()).build(connector);
    // Warm the connection so the slow request is in flight when we stop.
    get(&client, "https://x.svc:1/").await.unwrap();
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, "https://x.svc:1/slow").await })
    };
    SLOW_STARTED.notified().await;
    stop_tx.send(()).unwrap();
    let body = slow.await.unwrap().unwrap();
    assert!(body.contains("verified"), "{body}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    // New connections are refused after shutdown.
    let fresh = Client::builder(TokioExecutor::new())
        .build(HttpsConnector::new(s.client_cfg.clone()).resolve("x.svc", 1, addr));
    assert!(get(&fresh, "https://x.svc:1/").await.is_err());
}
