//! The HTTPS connector never hangs and never keeps using a server
//! certificate past its expiry; the handshake paths on both sides have a
//! deadline a silent peer cannot escape.

mod common;

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use podtls::http::{serve_http, HttpOptions, HttpsConnector, ServerInfo};
use podtls::test_util::{CertAuthority, LeafSpec};
use podtls::{ClientTls, HandshakeError, PodTls, ServerAuth, ServerTls};
use tokio::net::TcpListener;

/// A TCP server that accepts and then never says a word.
async fn silent_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    addr
}

fn dns_client(ca: &CertAuthority) -> ClientTls {
    ClientTls::builder(ServerAuth::Dns(bundle_store(&[ca])))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_request_to_a_server_that_never_answers_the_handshake_fails_at_the_deadline() {
    let addr = silent_server().await;
    let connector = HttpsConnector::new(dns_client(&CertAuthority::new("ca")))
        .handshake_timeout(Duration::from_millis(300))
        .resolve("silent.svc", 443, addr);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = client.request(
        Request::get("https://silent.svc/")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    );
    // Without a handshake deadline this never completes.
    let result = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("the request ends at the handshake deadline");
    let err = result.unwrap_err();
    assert!(format!("{err:?}").contains("TimedOut"), "{err:?}");
}

#[tokio::test]
async fn both_handshake_paths_end_a_silent_peer_at_the_deadline() {
    let ca = CertAuthority::new("ca");
    // Client side: ClientTls::connect against a silent server.
    let addr = silent_server().await;
    let client = dns_client(&ca).with_handshake_timeout(Duration::from_millis(200));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("silent.svc").unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), client.connect(name, tcp))
        .await
        .expect("connect ends at its deadline");
    assert!(
        matches!(outcome, Err(HandshakeError::TimedOut(_))),
        "{outcome:?}"
    );

    // Server side: ServerTls::accept with a client that connects and says nothing.
    let server = ServerTls::builder(bundle_creds(&ca.issue(&LeafSpec::dns(&["s.svc"]))))
        .handshake_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _silent_client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), server.accept(tcp))
        .await
        .expect("accept ends at its deadline");
    assert!(
        matches!(outcome, Err(HandshakeError::TimedOut(_))),
        "{:?}",
        outcome.map(|_| ())
    );
}

async fn serial_of_response(
    client: &Client<HttpsConnector, Full<Bytes>>,
) -> Result<String, String> {
    let resp = client
        .request(
            Request::get("https://server.svc/")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
    let serial = resp
        .extensions()
        .get::<ServerInfo>()
        .and_then(|i| i.certificate.as_ref())
        .map(|c| c.serial.clone())
        .unwrap_or_default();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(serial)
}

#[tokio::test]
async fn a_pooled_connection_is_not_used_past_its_server_certificates_expiry() {
    let ca = CertAuthority::new("ca");
    let now = SystemTime::now();
    let short = ca.issue(
        &LeafSpec::dns(&["server.svc"])
            .validity(now - Duration::from_secs(60), now + Duration::from_secs(2)),
    );
    let vol = Volume::new();
    vol.write_creds(&short);
    let pod = PodTls::builder()
        .credential_bundle(vol.bundle_path())
        .timing(fast_timing())
        .start()
        .unwrap();
    let creds = pod.credentials().unwrap().clone();
    wait_status(&creds, "short-lived leaf", |s| s.generation >= 1).await;
    let tls = ServerTls::builder(creds.clone())
        .alpn(&[b"h2", b"http/1.1"])
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_http(
        listener,
        tls,
        HttpOptions::default(),
        async move {
            let _ = stopped.await;
        },
        |_req| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok")))) },
    ));
    let connector = HttpsConnector::new(dns_client(&ca)).resolve("server.svc", 443, addr);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);

    // A kept-alive connection with the short-lived certificate.
    assert_eq!(serial_of_response(&client).await.unwrap(), short.serial);
    assert_eq!(
        serial_of_response(&client).await.unwrap(),
        short.serial,
        "reused"
    );
    // The server rotates; the pooled connection still has the old certificate.
    let long = ca.issue(&LeafSpec::dns(&["server.svc"]));
    vol.write_creds(&long);
    wait_status(&creds, "rotated", |s| s.generation >= 2).await;
    assert_eq!(
        serial_of_response(&client).await.unwrap(),
        short.serial,
        "still pooled"
    );
    // Once that certificate has expired, no request goes over its connection.
    let not_after = podtls::certificate::CertInfo::from_der(&short.leaf_der)
        .unwrap()
        .not_after;
    while SystemTime::now() <= not_after + Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        assert_eq!(serial_of_response(&client).await.unwrap(), long.serial);
    }
    stop.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
