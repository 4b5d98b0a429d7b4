//! The tokio accept loop: slow clients, handshake deadlines, handshake
//! failures never stop it (descriptor exhaustion: `emfile.rs`); handlers
//! get a connection deadline and are aborted a drain timeout after it.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use podtls::test_util::{CertAuthority, LeafSpec};
use podtls::{
    Accepted, ClientTls, CloseReason, ConnectionDeadline, Credentials, LeafKind, Origin,
    ServeOptions, ServeStats, ServerAuth, ServerTls, Store, TrustBundle,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

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

const AGE: Duration = Duration::from_millis(300);
const DRAIN: Duration = Duration::from_millis(300);

/// A DNS-named server whose handler reports each connection's deadline on
/// the returned channel, then runs `behave`.
async fn aged_server<Fut>(
    behave: fn(Accepted) -> Fut,
) -> (
    SocketAddr,
    Arc<ServeStats>,
    Arc<rustls::ClientConfig>,
    mpsc::UnboundedReceiver<(ConnectionDeadline, Instant)>,
)
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let ca = CertAuthority::new("ca");
    let leaf = ca.issue(&LeafSpec::dns(&["echo.demo.svc"]));
    let creds = Credentials::from_bundle_pem(
        leaf.bundle_pem().as_bytes(),
        &Origin::memory("leaf"),
        LeafKind::Any,
        std::time::SystemTime::now(),
    )
    .unwrap();
    let tls = ServerTls::builder(Store::fixed("creds", creds))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ServeStats::default());
    let options = ServeOptions {
        max_connection_age: AGE,
        connection_age_jitter: 0.0,
        drain_timeout: DRAIN,
        stats: stats.clone(),
        ..ServeOptions::default()
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(podtls::serve(
        listener,
        tls,
        options,
        std::future::pending(),
        move |a: Accepted| {
            let _ = tx.send((a.deadline, Instant::now()));
            behave(a)
        },
    ));
    let roots = Store::fixed(
        "roots",
        TrustBundle::from_pem(ca.cert_pem().as_bytes(), &Origin::memory("ca")).unwrap(),
    );
    let client = ClientTls::builder(ServerAuth::Dns(roots))
        .build()
        .unwrap()
        .config()
        .clone();
    (addr, stats, client, rx)
}

/// Polls until no connection task is left (the counters are final then).
async fn connections_ended(stats: &ServeStats) {
    let active = async {
        while stats.active.load(Ordering::Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), active)
        .await
        .expect("the connection task ended");
}

async fn tls_client(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("echo.demo.svc").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_ignores_its_deadline_is_aborted_after_the_drain_timeout() {
    let (addr, stats, client, mut deadlines) = aged_server(|a| async move {
        // Holds the connection forever.
        let _stream = a.stream;
        std::future::pending::<()>().await;
    })
    .await;
    let mut conn = tls_client(addr, client).await;
    let (deadline, handed_at) = deadlines.recv().await.unwrap();
    assert_eq!(deadline.reason, CloseReason::MaxAge);
    // The age counts from the TCP accept, before the handler ran.
    assert!(deadline.at <= handed_at + AGE, "{deadline:?}");
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut sink))
        .await
        .expect("the server dropped the connection of a handler past its deadline");
    // Dropped, not closed: no close_notify.
    assert!(read.is_err(), "{read:?}");
    let closed = Instant::now();
    assert!(
        closed >= deadline.at + DRAIN,
        "aborted {:?} early",
        deadline.at + DRAIN - closed
    );
    connections_ended(&stats).await;
    assert_eq!(stats.closed_max_age.load(Ordering::Relaxed), 1);
    assert_eq!(stats.drain_aborted.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_honours_its_deadline_closes_gracefully_and_is_not_aborted() {
    let (addr, stats, client, mut deadlines) = aged_server(|mut a| async move {
        a.deadline.reached().await;
        let _ = a.stream.write_all(b"bye").await;
        let _ = a.stream.shutdown().await;
    })
    .await;
    let mut conn = tls_client(addr, client).await;
    let (deadline, _) = deadlines.recv().await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut line))
        .await
        .expect("closed at the deadline")
        .expect("a clean TLS close");
    assert_eq!(line, "bye");
    assert!(Instant::now() >= deadline.at);
    connections_ended(&stats).await;
    assert_eq!(stats.closed_max_age.load(Ordering::Relaxed), 1);
    assert_eq!(stats.drain_aborted.load(Ordering::Relaxed), 0);
}
