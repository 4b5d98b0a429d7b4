//! A resumed session is never worth more than a full handshake now.
//!
//! The property, as a table: for each (side verified, TLS version, what
//! changed since the session was made), a connection through podtls'
//! handshake path (which resumes when it can) ends exactly as a full
//! handshake made at the same moment does. Then the attacks the table
//! abstracts: late session tickets after an anchor rotation, a raw rustls
//! configuration that would resume without verification.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use podtls::test_util::{CertAuthority, Issued, LeafSpec};
use podtls::{
    error::ChainFailure, Authorizer, ClientAuth, ClientTls, Credentials, HandshakeError, LeafKind,
    Origin, PodTls, ServerAuth, ServerTls, SpiffeBundles, Store, VerifyError,
};
use rustls::SupportedProtocolVersion;

/// What changes between the session's handshake and the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Nothing,
    /// The verifying side's bundle gains CA2 (CA1 stays).
    AnchorAdded,
    /// The verifying side's bundle becomes CA2 only: the peer's CA1 retired.
    AnchorRetired,
    /// The peer's leaf expires (the peer keeps presenting it).
    PeerExpired,
    /// The verifying side's authorizer stops allowing the peer.
    AuthorizerChanged,
}

/// Which side verifies the peer that the change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The server verifies the client (required client auth).
    ServerRequired,
    /// The server verifies the client (optional: verdict reported).
    ServerOptional,
    /// The client verifies the server.
    Client,
}

const CHANGES: [Change; 5] = [
    Change::Nothing,
    Change::AnchorAdded,
    Change::AnchorRetired,
    Change::PeerExpired,
    Change::AuthorizerChanged,
];
const SIDES: [Side; 3] = [Side::ServerRequired, Side::ServerOptional, Side::Client];

fn versions() -> [(&'static str, &'static SupportedProtocolVersion); 2] {
    [
        ("TLS 1.2", &rustls::version::TLS12),
        ("TLS 1.3", &rustls::version::TLS13),
    ]
}

/// How a connection ended, in terms comparable across full and resumed
/// handshakes (a refusal is a refusal, whichever message carried it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Served; the server's verdict on the client (`verified …`,
    /// `anonymous`, `rejected`).
    Served(String),
    Refused,
}

fn outcome(r: Result<Seen, String>) -> (Outcome, bool) {
    match r {
        Ok(seen) => {
            // Compare the verdict, not the wording of a rejection reason.
            let verdict = match seen.line.split_once(' ') {
                Some(("rejected", _)) => "rejected".to_string(),
                _ => seen.line.clone(),
            };
            (Outcome::Served(verdict), seen.resumed)
        }
        Err(_) => (Outcome::Refused, false),
    }
}

fn fixed_creds(issued: &Issued) -> Store<Credentials> {
    Store::fixed(
        "creds",
        Credentials::from_bundle_pem(
            issued.bundle_pem().as_bytes(),
            &Origin::memory("creds"),
            LeafKind::SpiffeSvid,
            SystemTime::now(),
        )
        .unwrap(),
    )
}

/// A live trust bundle for `cluster.local`, written through kubelet's
/// atomic writer so the test can rotate it.
struct LiveBundle {
    vol: Volume,
    pod: PodTls,
}

impl LiveBundle {
    fn new(cas: &[&CertAuthority]) -> Self {
        let vol = Volume::new();
        vol.write_trust(cas);
        let pod = PodTls::builder()
            .spiffe_bundle(td(), vol.spiffe_path())
            .timing(fast_timing())
            .start()
            .unwrap();
        LiveBundle { vol, pod }
    }

    fn bundles(&self) -> SpiffeBundles {
        self.pod.spiffe_bundles().clone()
    }

    async fn ready(&self) {
        let store = self.pod.spiffe_bundles().store(&td()).unwrap().clone();
        wait_status(&store, "bundle loaded", |s| s.generation >= 1).await;
    }

    async fn rotate(&self, cas: &[&CertAuthority]) {
        let store = self.pod.spiffe_bundles().store(&td()).unwrap().clone();
        let before = store.generation();
        self.vol.write_trust(cas);
        wait_status(&store, "bundle rotated", |s| s.generation > before).await;
    }
}

/// Runs one row of the table; returns (resumed outcome, full outcome,
/// whether the podtls connection resumed).
async fn row(side: Side, version: &'static SupportedProtocolVersion, change: Change) -> String {
    let ca1 = CertAuthority::new("ca1");
    let ca2 = CertAuthority::new("ca2");
    let now = SystemTime::now();
    // The peer whose verification the row is about; short-lived when it
    // is to expire.
    let peer_spec = |path: &str| {
        let spec = LeafSpec::spiffe(&format!("spiffe://{TD}{path}"));
        if change == Change::PeerExpired {
            spec.validity(now - Duration::from_secs(60), now + Duration::from_secs(3))
        } else {
            spec
        }
    };
    let allow = Arc::new(AtomicBool::new(true));
    let a = allow.clone();
    let authorizer = Authorizer::custom(move |_| a.load(Ordering::SeqCst));
    // The verifying side's live bundle, and the other side's fixed one.
    let live = LiveBundle::new(&[&ca1]);
    live.ready().await;
    let fixed = SpiffeBundles::new([(td(), bundle_store(&[&ca1]))]);

    let server_leaf;
    let client_leaf;
    let (server, client_auth_bundles, client_authorizer) = match side {
        Side::ServerRequired | Side::ServerOptional => {
            server_leaf = ca1.issue(&LeafSpec::spiffe(&format!("spiffe://{TD}/ns/s/sa/server")));
            client_leaf = ca1.issue(&peer_spec("/ns/c/sa/client"));
            let auth = if side == Side::ServerRequired {
                ClientAuth::required(live.bundles(), authorizer)
            } else {
                ClientAuth::optional(live.bundles(), authorizer)
            };
            (
                ServerTls::builder(fixed_creds(&server_leaf)).client_auth(auth),
                fixed.clone(),
                Authorizer::any(),
            )
        }
        Side::Client => {
            server_leaf = ca1.issue(&peer_spec("/ns/s/sa/server"));
            client_leaf = ca1.issue(&LeafSpec::spiffe(&format!("spiffe://{TD}/ns/c/sa/client")));
            (
                ServerTls::builder(fixed_creds(&server_leaf))
                    .client_auth(ClientAuth::required(fixed.clone(), Authorizer::any())),
                live.bundles(),
                authorizer,
            )
        }
    };
    let srv = TestServer::start(server.protocol_versions(&[version]).build().unwrap()).await;
    let client_creds = fixed_creds(&client_leaf);
    let client = |resumption: bool| {
        ClientTls::builder(ServerAuth::Spiffe(
            client_auth_bundles.clone(),
            client_authorizer.clone(),
        ))
        .client_credentials(client_creds.clone())
        .protocol_versions(&[version])
        .resumption(resumption)
        .build()
        .unwrap()
    };
    let podtls_client = client(true);

    // A session exists and resumes before anything changes.
    let first = connect(srv.addr, podtls_client.clone(), "server").await;
    assert!(first.is_ok(), "first handshake: {first:?}");
    let (before, resumed) = outcome(connect(srv.addr, podtls_client.clone(), "server").await);
    assert!(
        resumed,
        "{side:?} {change:?}: the session resumes before the change"
    );
    assert!(matches!(before, Outcome::Served(_)), "{before:?}");

    match change {
        Change::Nothing => {}
        Change::AnchorAdded => live.rotate(&[&ca1, &ca2]).await,
        Change::AnchorRetired => live.rotate(&[&ca2]).await,
        Change::PeerExpired => {
            // Validity is checked to the second: wait until it is over.
            let peer = if side == Side::Client {
                &server_leaf
            } else {
                &client_leaf
            };
            let not_after = podtls::certificate::CertInfo::from_der(&peer.leaf_der)
                .unwrap()
                .not_after;
            while SystemTime::now() <= not_after + Duration::from_secs(1) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Change::AuthorizerChanged => allow.store(false, Ordering::SeqCst),
    }

    let (resumed_outcome, resumed) =
        outcome(connect(srv.addr, podtls_client.clone(), "server").await);
    let (full_outcome, full_resumed) = outcome(connect(srv.addr, client(false), "server").await);
    assert!(!full_resumed);
    srv.stop().await;
    assert_eq!(
        resumed_outcome, full_outcome,
        "{side:?} {version:?} {change:?}: a connection that could resume (resumed: {resumed}) \
         ends as a full handshake does now"
    );
    if change == Change::Nothing {
        assert!(
            resumed,
            "{side:?} {change:?}: nothing changed, so it resumed"
        );
    }
    format!(
        "{side:?} {:?} {change:?}: {full_outcome:?} (resumed: {resumed})",
        version.version
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resumed_outcome_equals_full_handshake_outcome_in_every_row() {
    let mut rows = tokio::task::JoinSet::new();
    for side in SIDES {
        for (_, version) in versions() {
            for change in CHANGES {
                rows.spawn(row(side, version, change));
            }
        }
    }
    let mut done = Vec::new();
    while let Some(r) = rows.join_next().await {
        done.push(r.unwrap());
    }
    done.sort();
    assert_eq!(done.len(), SIDES.len() * 2 * CHANGES.len());
    // The table itself, for whoever reads the test output.
    for line in &done {
        println!("{line}");
    }
    // The rows that must refuse do refuse (the table is not vacuous).
    for line in &done {
        let refuses = line.contains("AnchorRetired")
            || line.contains("PeerExpired")
            || line.contains("AuthorizerChanged");
        let optional = line.starts_with("ServerOptional");
        if refuses && !optional {
            assert!(line.contains("Refused"), "{line}");
        }
        if refuses && optional {
            assert!(line.contains("Served(\"rejected\")"), "{line}");
        }
    }
}

/// A server (an attacker's, whose leaf chains to a CA the client is about to
/// retire) that completes the handshake, then holds its session tickets back
/// until told to release them, then answers `hello` and closes.
mod late_tickets {
    use std::io::Write;
    use std::net::{SocketAddr, TcpListener};
    use std::sync::mpsc;
    use std::sync::Arc;

    use rustls::ServerConnection;

    pub struct Server {
        pub addr: SocketAddr,
        release: mpsc::Sender<()>,
        handshaken: tokio::sync::mpsc::UnboundedReceiver<()>,
    }

    impl Server {
        pub fn start(config: Arc<rustls::ServerConfig>, hold_first: bool) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (release, released) = mpsc::channel::<()>();
            let (handshaken_tx, handshaken) = tokio::sync::mpsc::unbounded_channel();
            std::thread::spawn(move || {
                let mut first = hold_first;
                for sock in listener.incoming() {
                    let Ok(mut sock) = sock else { return };
                    let mut conn = ServerConnection::new(config.clone()).unwrap();
                    // Handshake, flushing everything until it completes.
                    let ok = (|| -> std::io::Result<()> {
                        while conn.is_handshaking() {
                            while conn.wants_write() {
                                conn.write_tls(&mut sock)?;
                            }
                            if conn.read_tls(&mut sock)? == 0 {
                                return Err(std::io::ErrorKind::UnexpectedEof.into());
                            }
                            conn.process_new_packets().map_err(std::io::Error::other)?;
                        }
                        Ok(())
                    })();
                    if ok.is_err() {
                        continue;
                    }
                    // The server finishes last: the client has verified it.
                    let _ = handshaken_tx.send(());
                    // What is queued now is the session tickets.
                    let mut held = Vec::new();
                    while conn.wants_write() {
                        conn.write_tls(&mut held).unwrap();
                    }
                    if first {
                        first = false;
                        if released.recv().is_err() {
                            return;
                        }
                    }
                    let _ = sock.write_all(&held);
                    let _ = conn.writer().write_all(b"hello");
                    conn.send_close_notify();
                    while conn.wants_write() {
                        if conn.write_tls(&mut sock).is_err() {
                            break;
                        }
                    }
                }
            });
            Server {
                addr,
                release,
                handshaken,
            }
        }

        /// Waits until a connection's handshake completed on both sides.
        pub async fn handshaken(&mut self) {
            self.handshaken.recv().await.unwrap();
        }

        pub fn release(&self) {
            self.release.send(()).unwrap();
        }
    }
}

fn attacker_config(leaf: &Issued) -> Arc<rustls::ServerConfig> {
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf.key_der.clone()).unwrap();
    // Plain rustls: stateful sessions, tickets after the handshake.
    let config = rustls::ServerConfig::builder_with_provider(podtls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain_der.clone(), key)
        .unwrap();
    Arc::new(config)
}

/// Connects in a task of its own (the held connection blocks until released).
fn spawn_connect(
    addr: std::net::SocketAddr,
    tls: ClientTls,
) -> tokio::task::JoinHandle<Result<Seen, String>> {
    tokio::spawn(async move { connect(addr, tls, "server").await })
}

#[tokio::test]
async fn late_tickets_released_after_an_anchor_rotation_never_resume() {
    let ca1 = CertAuthority::new("ca1");
    let ca2 = CertAuthority::new("ca2");
    let leaf = spiffe_leaf(&ca1, "/ns/s/sa/server");
    let mut attacker = late_tickets::Server::start(attacker_config(&leaf), true);
    let live = LiveBundle::new(&[&ca1]);
    live.ready().await;
    let client = ClientTls::builder(ServerAuth::Spiffe(live.bundles(), Authorizer::any()))
        .build()
        .unwrap();

    // Opened while CA1 is trusted: verified; the tickets are held back.
    let held = spawn_connect(attacker.addr, client.clone());
    attacker.handshaken().await;
    // The client's trust rotates to CA2 only, then the tickets arrive on the
    // connection opened before.
    live.rotate(&[&ca2]).await;
    attacker.release();
    let first = held.await.unwrap().expect("the held connection completes");
    assert!(!first.resumed);

    // A full handshake with this server is refused now...
    let err = connect(attacker.addr, client.clone(), "server")
        .await
        .unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("UnknownCA") || err.contains("issuer"),
        "{err}"
    );
    // ...and so is every later attempt: no late ticket resumes it.
    for _ in 0..3 {
        let tcp = tokio::net::TcpStream::connect(attacker.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("server").unwrap();
        match client.connect(name, tcp).await {
            Ok(s) => panic!(
                "connected (resumed: {:?}) to a server of a retired CA",
                s.get_ref().1.handshake_kind()
            ),
            Err(HandshakeError::Rejected(e)) => assert!(
                matches!(
                    &*e,
                    VerifyError::Chain {
                        failure: ChainFailure::UnknownIssuer,
                        ..
                    }
                ),
                "{e}"
            ),
            Err(e) => panic!("a full handshake's rejection, not {e}"),
        }
    }
}

#[tokio::test]
async fn late_tickets_do_resume_when_nothing_changed() {
    // The positive control of the attack above: the same held tickets, no
    // rotation, and the next connection resumes. The attack setup works.
    let ca1 = CertAuthority::new("ca1");
    let leaf = spiffe_leaf(&ca1, "/ns/s/sa/server");
    let server = late_tickets::Server::start(attacker_config(&leaf), true);
    let live = LiveBundle::new(&[&ca1]);
    live.ready().await;
    let client = ClientTls::builder(ServerAuth::Spiffe(live.bundles(), Authorizer::any()))
        .build()
        .unwrap();
    let held = spawn_connect(server.addr, client.clone());
    server.release();
    held.await.unwrap().unwrap();
    let next = connect(server.addr, client, "server").await.unwrap();
    assert!(next.resumed, "held tickets are used once released");
    assert_eq!(next.line, "hello");
}

#[tokio::test]
async fn configurations_for_other_clients_and_acceptors_never_resume() {
    // `ClientTls::config` / `ServerTls::config` go to code podtls does not
    // run (reqwest, tonic, a plain acceptor) where nothing would verify a
    // resumed peer again: resumption is off there, on both sides.
    let ca = CertAuthority::new("ca");
    let server = ServerTls::builder(fixed_creds(&spiffe_leaf(&ca, "/ns/s/sa/server")))
        .client_auth(ClientAuth::required(
            SpiffeBundles::new([(td(), bundle_store(&[&ca]))]),
            Authorizer::any(),
        ))
        .build()
        .unwrap();
    let client = ClientTls::builder(ServerAuth::Spiffe(
        SpiffeBundles::new([(td(), bundle_store(&[&ca]))]),
        Authorizer::any(),
    ))
    .client_credentials(fixed_creds(&spiffe_leaf(&ca, "/ns/c/sa/client")))
    .build()
    .unwrap();
    assert_eq!(server.config().send_tls13_tickets, 0);
    assert!(!server.config().session_storage.can_cache());
    // A plain acceptor over `ServerTls::config`, a podtls client: no resumption.
    let plain = plain_acceptor(server.config().clone()).await;
    for _ in 0..3 {
        let seen = connect(plain, client.clone(), "server").await.unwrap();
        assert!(!seen.resumed);
    }
    // A plain connector over `ClientTls::config`, a podtls server: no resumption.
    let srv = TestServer::start(server).await;
    for _ in 0..3 {
        let seen = connect_raw(srv.addr, client.config().clone(), "server")
            .await
            .unwrap();
        assert!(!seen.resumed);
    }
    srv.stop().await;
}

async fn plain_acceptor(config: Arc<rustls::ServerConfig>) -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(mut s) = acceptor.accept(tcp).await {
                let _ = s.write_all(b"plain").await;
                let _ = s.shutdown().await;
            }
        }
    });
    addr
}

/// Splits a client's TLS 1.2 second flight before its ChangeCipherSpec
/// record: what comes before carries the certificate and its proof, what
/// comes after finishes the handshake.
fn split_before_ccs(flight: &[u8]) -> usize {
    let mut at = 0;
    while at + 5 <= flight.len() {
        if flight[at] == 20 {
            return at;
        }
        let len = u16::from_be_bytes([flight[at + 3], flight[at + 4]]) as usize;
        at += 5 + len;
    }
    panic!("no ChangeCipherSpec in the client's flight");
}

#[tokio::test]
async fn a_tls12_handshake_stalled_across_an_anchor_retirement_leaves_no_resumable_session() {
    use std::io::{Read, Write};
    let ca1 = CertAuthority::new("ca1");
    let ca2 = CertAuthority::new("ca2");
    // The server signals each time it has verified a client chain.
    let (verified_tx, mut verified) = tokio::sync::mpsc::unbounded_channel::<()>();
    let live = LiveBundle::new(&[&ca1]);
    live.ready().await;
    let server = ServerTls::builder(fixed_creds(&spiffe_leaf(&ca1, "/ns/s/sa/server")))
        .client_auth(ClientAuth::required(
            live.bundles(),
            Authorizer::custom(move |_| {
                let _ = verified_tx.send(());
                true
            }),
        ))
        .protocol_versions(&[&rustls::version::TLS12])
        .build()
        .unwrap();
    let srv = TestServer::start(server).await;

    // The attacker: a client of CA1, the CA about to be retired, with a
    // plain rustls client that resumes whatever it can.
    let mut attacker = (**ClientTls::builder(ServerAuth::Spiffe(
        SpiffeBundles::new([(td(), bundle_store(&[&ca1]))]),
        Authorizer::any(),
    ))
    .client_credentials(fixed_creds(&spiffe_leaf(&ca1, "/ns/c/sa/attacker")))
    .protocol_versions(&[&rustls::version::TLS12])
    .build()
    .unwrap()
    .config())
    .clone();
    attacker.resumption = rustls::client::Resumption::in_memory_sessions(16);
    let attacker = Arc::new(attacker);

    let (go_tx, go) = std::sync::mpsc::channel::<()>();
    let addr = srv.addr;
    let cfg = attacker.clone();
    let stalled = std::thread::spawn(move || -> Result<String, String> {
        let mut sock = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("server").unwrap();
        let mut conn = rustls::ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
        let io = |e: std::io::Error| e.to_string();
        // ClientHello out; read until the client has its second flight.
        while conn.wants_write() {
            conn.write_tls(&mut sock).map_err(io)?;
        }
        while !conn.wants_write() {
            if conn.read_tls(&mut sock).map_err(io)? == 0 {
                return Err("server closed".into());
            }
            conn.process_new_packets().map_err(|e| e.to_string())?;
        }
        let mut flight = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut flight).map_err(io)?;
        }
        let split = split_before_ccs(&flight);
        sock.write_all(&flight[..split]).map_err(io)?;
        // Stalled: certificate verified, ChangeCipherSpec + Finished held.
        go.recv().map_err(|e| e.to_string())?;
        sock.write_all(&flight[split..]).map_err(io)?;
        let mut line = String::new();
        while conn.is_handshaking() {
            if conn.read_tls(&mut sock).map_err(io)? == 0 {
                return Err("server closed during the handshake".into());
            }
            conn.process_new_packets().map_err(|e| e.to_string())?;
        }
        let _ = conn.complete_io(&mut sock);
        let _ = conn.reader().read_to_string(&mut line);
        Ok(line)
    });

    tokio::time::timeout(Duration::from_secs(10), verified.recv())
        .await
        .expect("the server verifies the stalled client's chain")
        .unwrap();
    // CA1 is retired while the handshake is stalled, then it completes.
    live.rotate(&[&ca2]).await;
    go_tx.send(()).unwrap();
    let first = tokio::task::spawn_blocking(move || stalled.join().unwrap())
        .await
        .unwrap();
    assert!(
        first.is_ok(),
        "the stalled handshake itself was verified before the retirement: {first:?}"
    );

    // Its session must not let a client of the retired CA back in.
    for _ in 0..3 {
        let seen = connect_raw(srv.addr, attacker.clone(), "server").await;
        assert!(
            seen.is_err(),
            "a client of a retired CA was served (resumed: {:?})",
            seen.map(|s| s.resumed)
        );
    }
    srv.stop().await;
}
