//! `serve_http` gives every phase of a connection a deadline: silent and
//! stalling peers (after the handshake, in the HTTP/2 preface, between
//! requests) are closed and free their connection slot; connections close
//! gracefully at their maximum age and when the client certificate they
//! authenticated with expires; in-flight requests survive those closes.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{describe, td, TD};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use podtls::http::{peer_auth, serve_http, HttpOptions};
use podtls::test_util::{CertAuthority, LeafSpec};
use podtls::{
    certificate::CertInfo, Authorizer, ClientAuth, ClientTls, Credentials, LeafKind, Origin,
    ServeOptions, ServeStats, ServerAuth, ServerTls, SpiffeBundles, Store, TrustBundle,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Generous bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(5);

type Client = tokio_rustls::client::TlsStream<TcpStream>;

/// A `serve_http` server with a SPIFFE CA, optional client auth, ALPN h2 and
/// http/1.1. `/hold` answers only once the test calls `release`.
struct Server {
    addr: SocketAddr,
    stats: Arc<ServeStats>,
    ca: CertAuthority,
    held: Arc<Notify>,
    release: Arc<Notify>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn bundles(ca: &CertAuthority) -> SpiffeBundles {
    let bundle = TrustBundle::from_pem(ca.cert_pem().as_bytes(), &Origin::memory("ca")).unwrap();
    SpiffeBundles::new([(td(), Store::fixed("ca", bundle))])
}

fn creds(ca: &CertAuthority, spec: &LeafSpec) -> Store<Credentials> {
    creds_of(&ca.issue(spec))
}

fn creds_of(leaf: &podtls::test_util::Issued) -> Store<Credentials> {
    let creds = Credentials::from_bundle_pem(
        leaf.bundle_pem().as_bytes(),
        &Origin::memory("leaf"),
        LeafKind::Any,
        SystemTime::now(),
    )
    .unwrap();
    Store::fixed("creds", creds)
}

fn spiffe(path: &str) -> LeafSpec {
    LeafSpec::spiffe(&format!("spiffe://{TD}{path}"))
}

impl Server {
    async fn start(options: HttpOptions) -> Server {
        let ca = CertAuthority::new("ca");
        let tls = ServerTls::builder(creds(&ca, &spiffe("/ns/s/sa/server")))
            .client_auth(ClientAuth::optional(bundles(&ca), Authorizer::any()))
            .alpn(&[b"h2", b"http/1.1"])
            .build()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = options.serve.stats.clone();
        let held = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler = {
            let (held, release) = (held.clone(), release.clone());
            move |req: Request<hyper::body::Incoming>| {
                let (held, release) = (held.clone(), release.clone());
                async move {
                    if req.uri().path() == "/hold" {
                        held.notify_one();
                        release.notified().await;
                    }
                    let body = format!("{:?} {}", req.version(), describe(&peer_auth(&req)));
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                }
            }
        };
        let task = tokio::spawn(serve_http(
            listener,
            tls,
            options,
            async move {
                let _ = stopped.await;
            },
            handler,
        ));
        Server {
            addr,
            stats,
            ca,
            held,
            release,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A client configuration presenting a SPIFFE client certificate and
    /// offering `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        self.client_with(spiffe("/ns/c/sa/client"), alpn).0
    }

    /// A client configuration presenting a leaf made from `spec`, and that leaf.
    fn client_with(&self, spec: LeafSpec, alpn: &[&[u8]]) -> (Arc<rustls::ClientConfig>, CertInfo) {
        let leaf = self.ca.issue(&spec);
        let cfg = ClientTls::builder(ServerAuth::Spiffe(bundles(&self.ca), Authorizer::any()))
            .client_credentials(creds_of(&leaf))
            .build()
            .unwrap();
        let mut cfg = (**cfg.config()).clone();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        (Arc::new(cfg), CertInfo::from_der(&leaf.leaf_der).unwrap())
    }

    fn count(&self, counter: fn(&ServeStats) -> &std::sync::atomic::AtomicU64) -> u64 {
        counter(&self.stats).load(Ordering::Relaxed)
    }

    /// Waits (bounded) for a `/hold` request to reach the handler; `held`
    /// must have been created before the request was sent.
    async fn until_held(&self, held: tokio::sync::futures::Notified<'_>) {
        tokio::time::timeout(SOON, held)
            .await
            .expect("the /hold request reached the handler");
    }

    /// Waits until no connection is left, so the counters are final.
    async fn settled(&self) {
        eventually("all connections to end", || self.count(|s| &s.active) == 0).await;
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(SOON, self.task.take().unwrap())
            .await
            .expect("server stopped")
            .unwrap();
    }
}

fn options(f: impl FnOnce(&mut HttpOptions)) -> HttpOptions {
    let mut o = HttpOptions {
        serve: ServeOptions {
            stats: Arc::default(),
            ..ServeOptions::default()
        },
        ..HttpOptions::default()
    };
    f(&mut o);
    o
}

/// TCP connect + TLS handshake; the server has completed its side too once
/// the client reads anything, but holds its connection slot from the TCP
/// accept on.
async fn tls(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Client {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("server.svc").unwrap();
    tokio::time::timeout(
        SOON,
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .unwrap()
}

/// Reads (and discards) until the server closes the connection; panics if
/// it does not within `SOON`.
async fn wait_closed(mut stream: Client, what: &str) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(SOON, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server did not close the {what} connection"));
}

type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;
type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type ConnTask = tokio::task::JoinHandle<Result<(), hyper::Error>>;

async fn h2(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> (H2, ConnTask) {
    let io = TokioIo::new(tls(addr, cfg).await);
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

async fn h1(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> (H1, ConnTask) {
    let io = TokioIo::new(tls(addr, cfg).await);
    let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    (send, tokio::spawn(conn))
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("https://server.svc{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The response's `Connection` header and body.
async fn body(resp: Response<hyper::body::Incoming>) -> (Option<String>, String) {
    let connection = resp
        .headers()
        .get(http::header::CONNECTION)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (connection, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The hyper client connection ends (the server closed it) within `SOON`.
async fn conn_ends(task: ConnTask, what: &str) -> Result<(), hyper::Error> {
    tokio::time::timeout(SOON, task)
        .await
        .unwrap_or_else(|_| panic!("the server did not close the {what} connection"))
        .unwrap()
}

/// Polls `cond` every 10 ms until it holds; panics after `SOON`.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + SOON;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// Silent and stalling peers after the handshake.

const HEAD: Duration = Duration::from_millis(300);

/// With two connection slots, two clients complete the TLS handshake with
/// `alpn`, send `prefix` and go silent. The server must close both (after
/// at least the header deadline if `waits`; a prefix that cannot be a
/// request is refused at once) and then serve a third client, which until
/// then waits for a slot.
async fn silent_clients_are_closed_and_free_their_slots(
    alpn: &[&[u8]],
    prefix: &[u8],
    waits: bool,
) -> Server {
    let server = Server::start(options(|o| {
        o.serve.max_connections = 2;
        o.serve.drain_timeout = HEAD;
        o.header_read_timeout = HEAD;
        o.idle_timeout = HEAD;
    }))
    .await;
    let silent_cfg = server.client(alpn);
    let mut silent = Vec::new();
    for _ in 0..2 {
        let mut s = tls(server.addr, silent_cfg.clone()).await;
        s.write_all(prefix).await.unwrap();
        s.flush().await.unwrap();
        silent.push(s);
    }
    let t0 = Instant::now();
    let third = {
        let cfg = server.client(&[b"http/1.1"]);
        let addr = server.addr;
        tokio::spawn(async move {
            let (mut send, _conn) = h1(addr, cfg).await;
            let resp = send.send_request(get("/")).await.unwrap();
            body(resp).await.1
        })
    };
    for s in silent {
        wait_closed(s, "silent").await;
    }
    if waits {
        let waited = t0.elapsed();
        assert!(
            waited >= HEAD - Duration::from_millis(50),
            "closed too early: {waited:?}"
        );
    }
    let answer = tokio::time::timeout(SOON, third)
        .await
        .expect("the third client was served once the slots were freed")
        .unwrap();
    assert!(
        answer.contains("verified spiffe://cluster.local/ns/c/sa/client"),
        "{answer}"
    );
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_http1_clients_are_closed_at_the_header_deadline_and_free_their_slots() {
    let server = silent_clients_are_closed_and_free_their_slots(&[b"http/1.1"], b"", true).await;
    server.settled().await;
    assert_eq!(server.count(|s| &s.header_timeouts), 2);
    assert_eq!(server.count(|s| &s.drain_aborted), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_h2_clients_are_closed_without_a_first_request_and_free_their_slots() {
    let server = silent_clients_are_closed_and_free_their_slots(&[b"h2"], b"", true).await;
    server.settled().await;
    assert_eq!(server.count(|s| &s.closed_idle), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stalling_in_the_h2_preface_are_closed_and_free_their_slots() {
    let server =
        silent_clients_are_closed_and_free_their_slots(&[b"h2"], b"PRI * HTTP/2.0\r\n", true).await;
    server.settled().await;
    assert_eq!(server.count(|s| &s.closed_idle), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_alpn_stalling_in_an_h2_preface_are_closed_and_free_their_slots() {
    // No ALPN means HTTP/1.1: no sniffing read waits for the rest.
    let server =
        silent_clients_are_closed_and_free_their_slots(&[], b"PRI * HTTP/2.0\r\n", false).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_header_deadline_covers_the_idle_keep_alive_wait() {
    let server = Server::start(options(|o| o.header_read_timeout = HEAD)).await;
    let (mut send, conn) = h1(server.addr, server.client(&[b"http/1.1"])).await;
    let (connection, answer) = body(send.send_request(get("/")).await.unwrap()).await;
    assert_eq!(connection, None, "kept alive");
    assert!(answer.starts_with("HTTP/1.1 verified"), "{answer}");
    let t0 = Instant::now();
    // hyper drops the connection at the deadline (no TLS close_notify).
    let _ = conn_ends(conn, "idle keep-alive").await;
    assert!(
        t0.elapsed() >= HEAD - Duration::from_millis(50),
        "{:?}",
        t0.elapsed()
    );
    server.settled().await;
    assert_eq!(server.count(|s| &s.header_timeouts), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_header_deadline_is_not_extended_by_a_dribbled_head() {
    let server = Server::start(options(|o| o.header_read_timeout = HEAD)).await;
    let mut s = tls(server.addr, server.client(&[b"http/1.1"])).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: server.svc\r\n")
        .await
        .unwrap();
    let t0 = Instant::now();
    // One header line every 20 ms (the pace of the attack, not a
    // synchronisation); each line is progress, none completes the head.
    let closed = tokio::time::timeout(SOON, async {
        let mut buf = [0u8; 256];
        for i in 0u32.. {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    if s.write_all(format!("x-drip-{i}: 1\r\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a dribbling client kept its connection");
    assert!(
        t0.elapsed() >= HEAD - Duration::from_millis(50),
        "{:?}",
        t0.elapsed()
    );
    server.settled().await;
    assert_eq!(server.count(|s| &s.header_timeouts), 1);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// HTTP/2 idle connections.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_without_open_streams_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(400);
    let server = Server::start(options(|o| o.idle_timeout = idle)).await;
    let (mut send, conn) = h2(server.addr, server.client(&[b"h2"])).await;
    let (_, answer) = body(send.send_request(get("/")).await.unwrap()).await;
    assert!(answer.starts_with("HTTP/2.0 verified"), "{answer}");
    let t0 = Instant::now();
    conn_ends(conn, "idle h2")
        .await
        .expect("graceful close (GOAWAY), not an error");
    assert!(
        t0.elapsed() >= idle - Duration::from_millis(50),
        "{:?}",
        t0.elapsed()
    );
    server.settled().await;
    assert_eq!(server.count(|s| &s.closed_idle), 1);
    assert_eq!(server.count(|s| &s.drain_aborted), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_stream_open_longer_than_the_idle_timeout_is_not_cut() {
    let idle = Duration::from_millis(200);
    let server = Server::start(options(|o| o.idle_timeout = idle)).await;
    let (mut send, conn) = h2(server.addr, server.client(&[b"h2"])).await;
    let held = server.held.notified();
    let slow = tokio::spawn(send.send_request(get("/hold")));
    server.until_held(held).await;
    // The stream stays open for five idle timeouts: the time passing is the
    // scenario, not a synchronisation.
    tokio::time::sleep(5 * idle).await;
    assert!(
        !conn.is_finished(),
        "connection closed under an open stream"
    );
    assert_eq!(server.count(|s| &s.closed_idle), 0);
    server.release.notify_one();
    let (_, answer) = body(slow.await.unwrap().unwrap()).await;
    assert!(answer.starts_with("HTTP/2.0 verified"), "{answer}");
    // Idle once the response is done.
    conn_ends(conn, "idle h2").await.unwrap();
    server.settled().await;
    assert_eq!(server.count(|s| &s.closed_idle), 1);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Maximum connection age.

/// Long enough for the handshake and a request to reach the handler on a
/// loaded machine; tests that need a request in flight at the deadline
/// check that it was.
const AGE: Duration = Duration::from_secs(1);

fn aged(o: &mut HttpOptions) {
    o.serve.max_connection_age = AGE;
    o.serve.connection_age_jitter = 0.0;
    o.serve.drain_timeout = Duration::from_secs(10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_past_max_age_gets_goaway_after_its_in_flight_request_completes() {
    let server = Server::start(options(aged)).await;
    let (mut send, conn) = h2(server.addr, server.client(&[b"h2"])).await;
    let held = server.held.notified();
    let in_flight = tokio::spawn(send.send_request(get("/hold")));
    server.until_held(held).await;
    assert_eq!(
        server.count(|s| &s.closed_max_age),
        0,
        "in flight before the max age"
    );
    eventually("the max age", || server.count(|s| &s.closed_max_age) == 1).await;
    assert!(!conn.is_finished(), "closed under an in-flight request");
    server.release.notify_one();
    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request succeeds");
    let (_, answer) = body(resp).await;
    assert!(answer.starts_with("HTTP/2.0 verified"), "{answer}");
    conn_ends(conn, "aged h2")
        .await
        .expect("graceful close (GOAWAY), not an error");
    server.settled().await;
    assert_eq!(server.count(|s| &s.drain_aborted), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_connection_past_max_age_answers_in_flight_request_with_connection_close() {
    let server = Server::start(options(aged)).await;
    let (mut send, conn) = h1(server.addr, server.client(&[b"http/1.1"])).await;
    let held = server.held.notified();
    let in_flight = tokio::spawn(send.send_request(get("/hold")));
    server.until_held(held).await;
    assert_eq!(
        server.count(|s| &s.closed_max_age),
        0,
        "in flight before the max age"
    );
    eventually("the max age", || server.count(|s| &s.closed_max_age) == 1).await;
    server.release.notify_one();
    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request succeeds");
    let (connection, answer) = body(resp).await;
    assert_eq!(connection.as_deref(), Some("close"));
    assert!(answer.starts_with("HTTP/1.1 verified"), "{answer}");
    conn_ends(conn, "aged HTTP/1.1").await.unwrap();
    server.settled().await;
    assert_eq!(server.count(|s| &s.drain_aborted), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http1_keep_alive_connection_is_closed_at_max_age() {
    // The header deadline (10 s) is far; the age closes it.
    let server = Server::start(options(aged)).await;
    let t0 = Instant::now();
    let (mut send, conn) = h1(server.addr, server.client(&[b"http/1.1"])).await;
    body(send.send_request(get("/")).await.unwrap()).await;
    conn_ends(conn, "aged idle HTTP/1.1").await.unwrap();
    assert!(t0.elapsed() >= AGE, "{:?}", t0.elapsed());
    server.settled().await;
    assert_eq!(server.count(|s| &s.closed_max_age), 1);
    assert_eq!(server.count(|s| &s.header_timeouts), 0);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Client certificate expiry.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_when_the_client_certificate_expires() {
    let server = Server::start(options(|o| {
        o.serve.drain_timeout = Duration::from_secs(10);
    }))
    .await;
    let now = SystemTime::now();
    let short = spiffe("/ns/c/sa/client")
        .validity(now - Duration::from_secs(60), now + Duration::from_secs(3));
    let (cfg, leaf) = server.client_with(short, &[b"h2"]);
    let (mut send, conn) = h2(server.addr, cfg).await;
    let (_, answer) = body(send.send_request(get("/")).await.unwrap()).await;
    assert!(answer.contains("verified"), "{answer}");
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the server closed the connection of an expired client")
        .unwrap();
    let closed_at = SystemTime::now();
    ended.expect("graceful close (GOAWAY), not an error");
    assert!(
        closed_at >= leaf.not_after,
        "closed {:?} before the certificate expired",
        leaf.not_after.duration_since(closed_at).unwrap_or_default()
    );
    server.settled().await;
    assert_eq!(server.count(|s| &s.closed_peer_expired), 1);
    assert_eq!(server.count(|s| &s.closed_max_age), 0);
    server.stop().await;
}
