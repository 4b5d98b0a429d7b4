//! A refused handshake is visible: one warning per rejected peer with the
//! reason, the peer's address, its SPIFFE ID and serial, rate-limited so a
//! flood of bad clients cannot flood the log. (Its own test binary: the
//! rate limit is process-wide.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use podtls::test_util::CertAuthority;
use podtls::{Authorizer, ClientAuth, ClientTls, ServerAuth, ServerTls, SpiffeBundles};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn rejections_are_logged_at_warn_with_who_and_why_and_rate_limited() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let ca = CertAuthority::new("ca");
    let server = ServerTls::builder(bundle_creds(&spiffe_leaf(&ca, "/ns/s/sa/server")))
        .client_auth(ClientAuth::required(
            SpiffeBundles::new([(td(), bundle_store(&[&ca]))]),
            Authorizer::path_prefix(td(), "/ns/allowed"),
        ))
        .build()
        .unwrap();
    let srv = TestServer::start(server).await;
    let intruder = spiffe_leaf(&ca, "/ns/intruder/sa/x");
    let client = ClientTls::builder(ServerAuth::Spiffe(
        SpiffeBundles::new([(td(), bundle_store(&[&ca]))]),
        Authorizer::any(),
    ))
    .client_credentials(bundle_creds(&intruder))
    .resumption(false)
    .build()
    .unwrap();
    for _ in 0..30 {
        assert!(connect(srv.addr, client.clone(), "server").await.is_err());
    }
    srv.stop().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("peer certificate rejected"))
        .collect();
    assert!(!lines.is_empty(), "no warning logged:\n{log}");
    assert!(
        lines.len() <= 10,
        "30 rejections, {} warnings: not rate-limited",
        lines.len()
    );
    let first = lines[0];
    assert!(first.contains("WARN"), "{first}");
    assert!(first.contains("remote=127.0.0.1:"), "{first}");
    assert!(
        first.contains("spiffe_id=spiffe://cluster.local/ns/intruder/sa/x"),
        "{first}"
    );
    assert!(first.contains("not authorized"), "{first}");
    let serial = podtls::certificate::CertInfo::from_der(&intruder.leaf_der)
        .unwrap()
        .serial;
    assert!(first.contains(&format!("serial={serial}")), "{first}");
}
