//! `HttpsConnector` never opens a plaintext connection: `http://` URIs are
//! refused before any dial unless explicitly opted in, and with the opt-in
//! the first bytes on the wire are a TLS ClientHello, also towards a server
//! that speaks plain HTTP.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use podtls::http::HttpsConnector;
use podtls::test_util::CertAuthority;
use podtls::{ClientTls, ServerAuth};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn tls() -> ClientTls {
    ClientTls::builder(ServerAuth::Dns(bundle_store(&[&CertAuthority::new("ca")])))
        .build()
        .unwrap()
}

/// A plain-HTTP server that records the first bytes of every connection and
/// answers `200 OK` in plaintext, as a downgrade target would.
async fn plaintext_server() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut first = vec![0u8; 5];
                if tcp.read_exact(&mut first).await.is_ok() {
                    let _ = tx.send(first);
                }
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    (addr, rx)
}

async fn get(connector: HttpsConnector, uri: &str) -> Result<hyper::StatusCode, String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(Request::get(uri).body(Empty::new()).unwrap()),
    )
    .await
    .expect("the request ends")
    .map_err(|e| format!("{e:?}"))?;
    Ok(resp.status())
}

#[tokio::test]
async fn an_http_uri_is_refused_before_dialing_without_the_opt_in() {
    let (addr, mut first_bytes) = plaintext_server().await;
    let connector = HttpsConnector::new(tls()).resolve("plain.svc", addr.port(), addr);
    let err = get(connector, &format!("http://plain.svc:{}/", addr.port()))
        .await
        .unwrap_err();
    assert!(err.contains("tls_for_http_uris"), "{err}");
    // Nothing reached the server in plaintext: an https request made after
    // the refusal is the first (and only) connection the server recorded.
    let connector = HttpsConnector::new(tls()).resolve("plain.svc", addr.port(), addr);
    let _ = get(connector, &format!("https://plain.svc:{}/", addr.port())).await;
    let seen = first_bytes.recv().await.unwrap();
    assert_eq!(
        seen[0], 0x16,
        "the only connection is the https one: {seen:?}"
    );
    assert!(
        first_bytes.try_recv().is_err(),
        "a second connection was made"
    );
}

#[tokio::test]
async fn an_http_uri_with_the_opt_in_is_tls_and_fails_against_a_plaintext_server() {
    let (addr, mut first_bytes) = plaintext_server().await;
    let connector = HttpsConnector::new(tls())
        .tls_for_http_uris()
        .handshake_timeout(Duration::from_secs(5))
        .resolve("plain.svc", addr.port(), addr);
    let outcome = get(connector, &format!("http://plain.svc:{}/", addr.port())).await;
    // A plaintext answer is not TLS: the handshake fails, no response.
    assert!(outcome.is_err(), "got a plaintext response: {outcome:?}");
    let seen = first_bytes.recv().await.unwrap();
    // A TLS handshake record (content type 22, version 3.x), not "GET /".
    assert_eq!(&seen[..2], &[0x16, 0x03], "{seen:?}");
}

#[tokio::test]
async fn other_schemes_are_refused_even_with_the_opt_in() {
    let (addr, _first_bytes) = plaintext_server().await;
    for scheme in ["ws", "ftp"] {
        let connector =
            HttpsConnector::new(tls())
                .tls_for_http_uris()
                .resolve("plain.svc", addr.port(), addr);
        let err = get(connector, &format!("{scheme}://plain.svc:{}/", addr.port()))
            .await
            .unwrap_err();
        assert!(err.contains("only https://"), "{scheme}: {err}");
    }
}
