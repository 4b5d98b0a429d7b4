//! The tokio accept loop: slow clients, handshake deadlines, handshake
//! failures never stop it (descriptor exhaustion: `emfile.rs`).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use podtls::test_util::CertAuthority;
use podtls::{ClientTls, Origin, ServerAuth, Store, TrustBundle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_neither_blocks_others_nor_outlives_the_handshake_deadline() {
    let f = fixture(Duration::from_millis(300)).await;
    let mut silent = TcpStream::connect(f.addr).await.unwrap();
    // Others are served while the silent client holds its connection.
    for _ in 0..3 {
        let seen = connect(f.addr, f.client.clone(), "echo.demo.svc")
            .await
            .unwrap();
        assert_eq!(seen.line, "hello");
    }
    // The server drops the silent connection at the deadline.
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("server closed the silent connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(f.stats.handshake_timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(f.stats.handshakes.load(Ordering::Relaxed), 3);
    f.stop.send(()).unwrap();
    f.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failures_are_counted_and_survived() {
    let f = fixture(Duration::from_secs(5)).await;
    let mut junk = TcpStream::connect(f.addr).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = junk.read_to_end(&mut sink).await;
    let wrong_ca = ClientTls::builder(ServerAuth::Dns(Store::fixed(
        "other",
        TrustBundle::from_pem(
            CertAuthority::new("other").cert_pem().as_bytes(),
            &Origin::memory("other"),
        )
        .unwrap(),
    )))
    .build()
    .unwrap();
    assert!(connect(f.addr, wrong_ca, "echo.demo.svc").await.is_err());
    let seen = connect(f.addr, f.client.clone(), "echo.demo.svc")
        .await
        .unwrap();
    assert_eq!(seen.line, "hello");
    assert_eq!(f.stats.handshake_failures.load(Ordering::Relaxed), 2);
    f.stop.send(()).unwrap();
    f.task.await.unwrap();
}
