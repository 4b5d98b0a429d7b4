//! Shared helpers for podtls' integration tests.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use podtls::test_util::{AtomicWriter, CertAuthority, Issued, LeafSpec};
use podtls::{
    parse_trust_domain, reload::ReloadTiming, reload::Status, Accepted, PeerAuth, ServeOptions,
    ServerTls, Store, TrustDomain,
};
use podtls::{ClientTls, Credentials, LeafKind, Origin, ServeStats, ServerAuth, TrustBundle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TD: &str = "cluster.local";

pub fn td() -> TrustDomain {
    parse_trust_domain(TD).unwrap()
}

/// Event-driven only: the periodic re-read is pushed out of every test's
/// lifetime, so a test passes only if file events drive the reload.
pub fn fast_timing() -> ReloadTiming {
    ReloadTiming {
        poll_interval: Duration::from_secs(3600),
        settle: Duration::from_millis(50),
        ..ReloadTiming::default()
    }
}

/// A pod's projected volume: `creds/credentialbundle.pem` and
/// `trust/spiffe.pem` (and `trust/roots.pem`), written like kubelet does.
pub struct Volume {
    pub _tmp: tempfile::TempDir,
    pub creds: AtomicWriter,
    pub trust: AtomicWriter,
}

impl Volume {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let creds = AtomicWriter::new(tmp.path().join("creds")).unwrap();
        let trust = AtomicWriter::new(tmp.path().join("trust")).unwrap();
        Volume {
            _tmp: tmp,
            creds,
            trust,
        }
    }

    pub fn bundle_path(&self) -> PathBuf {
        self.creds.path("credentialbundle.pem")
    }

    pub fn spiffe_path(&self) -> PathBuf {
        self.trust.path("spiffe.pem")
    }

    pub fn roots_path(&self) -> PathBuf {
        self.trust.path("roots.pem")
    }

    pub fn write_creds(&self, issued: &Issued) {
        self.creds
            .write(&one("credentialbundle.pem", issued.bundle_pem()))
            .unwrap();
    }

    pub fn write_trust(&self, cas: &[&CertAuthority]) {
        let pem: String = cas.iter().map(|c| c.cert_pem().to_string()).collect();
        let mut files = one("spiffe.pem", pem.clone());
        files.insert("roots.pem".into(), pem.into_bytes());
        self.trust.write(&files).unwrap();
    }
}

pub fn one(name: &str, content: impl Into<Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([(name.to_string(), content.into())])
}

pub fn spiffe_leaf(ca: &CertAuthority, path: &str) -> Issued {
    ca.issue(&LeafSpec::spiffe(&format!("spiffe://{TD}{path}")))
}

/// Polls `cond` on every status change of `store` until it holds, or panics
/// at the deadline.
pub async fn wait_status<T: podtls::reload::Material>(
    store: &Store<T>,
    what: &str,
    cond: impl Fn(&Status) -> bool,
) -> Status {
    let mut rx = store.subscribe();
    let res = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            {
                let s = rx.borrow_and_update().clone();
                if cond(&s) {
                    return s;
                }
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    match res {
        Ok(s) => s,
        Err(_) => panic!("timed out waiting for {what}; status: {:?}", store.status()),
    }
}

pub fn serial_of(status: &Status) -> Option<String> {
    match &status.summary {
        Some(podtls::reload::Summary::Certificate(c)) => Some(c.serial.clone()),
        _ => None,
    }
}

/// A TLS echo-identity server: for each connection it writes one line
/// describing the client (`verified <id>`, `anonymous`, `rejected <why>`).
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(tls: ServerTls) -> Self {
        Self::start_with(tls, describe).await
    }

    pub async fn start_with(tls: ServerTls, describe: fn(&PeerAuth) -> String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(podtls::serve(
            listener,
            tls,
            ServeOptions::default(),
            async move {
                let _ = stopped.await;
            },
            move |mut a: Accepted| async move {
                let line = describe(&a.peer);
                let _ = a.stream.write_all(line.as_bytes()).await;
                let _ = a.stream.shutdown().await;
            },
        ));
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

/// `describe` plus the client certificate's serial.
pub fn describe_full(peer: &PeerAuth) -> String {
    match peer {
        PeerAuth::Verified(id) => format!("{} serial={}", describe(peer), id.certificate.serial),
        _ => describe(peer),
    }
}

pub fn describe(peer: &PeerAuth) -> String {
    match peer {
        PeerAuth::Anonymous => "anonymous".into(),
        PeerAuth::Verified(id) => format!(
            "verified {}",
            id.spiffe_id().map(|i| i.to_string()).unwrap_or_default()
        ),
        // (The serial of the client certificate is reported by `describe_full`.)
        PeerAuth::Rejected(e) => format!("rejected {e}"),
    }
}

/// What a client saw of one connection.
#[derive(Debug)]
pub struct Seen {
    pub server_serial: String,
    pub line: String,
    pub resumed: bool,
}

/// Connects through podtls' handshake path (`ClientTls::connect`),
/// handshakes, reads the server's line.
pub async fn connect(addr: SocketAddr, tls: ClientTls, server_name: &str) -> Result<Seen, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
    read_line(stream).await
}

/// Connects with a plain tokio-rustls connector over `config`.
pub async fn connect_raw(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<Seen, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    read_line(stream).await
}

async fn read_line(mut tls: tokio_rustls::client::TlsStream<TcpStream>) -> Result<Seen, String> {
    let (_, conn) = tls.get_ref();
    let server_serial = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| podtls::certificate::CertInfo::from_der(c).unwrap().serial)
        .unwrap_or_default();
    let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let mut line = String::new();
    tls.read_to_string(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    if line.is_empty() {
        // TLS 1.3: a client-certificate rejection arrives after the client
        // finished its side of the handshake, as an alert on the first read.
        return Err("server closed without answering".into());
    }
    Ok(Seen {
        server_serial,
        line,
        resumed,
    })
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A plain TLS server on 127.0.0.1 answering `hello`, with its counters.
pub struct Fixture {
    pub addr: std::net::SocketAddr,
    pub stats: Arc<ServeStats>,
    pub client: ClientTls,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn fixture(handshake_timeout: Duration) -> Fixture {
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
        handshake_timeout,
        stats: stats.clone(),
        ..ServeOptions::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(podtls::serve(
        listener,
        tls,
        options,
        async move {
            let _ = stopped.await;
        },
        |mut a| async move {
            let _ = a.stream.write_all(b"hello").await;
            let _ = a.stream.shutdown().await;
        },
    ));
    let roots = Store::fixed(
        "roots",
        TrustBundle::from_pem(ca.cert_pem().as_bytes(), &Origin::memory("ca")).unwrap(),
    );
    let client = ClientTls::builder(ServerAuth::Dns(roots)).build().unwrap();
    Fixture {
        addr,
        stats,
        client,
        stop,
        task,
    }
}

/// A fixed trust bundle of these CAs.
pub fn bundle_store(cas: &[&CertAuthority]) -> Store<TrustBundle> {
    let pem: String = cas.iter().map(|c| c.cert_pem().to_string()).collect();
    Store::fixed(
        "bundle",
        TrustBundle::from_pem(pem.as_bytes(), &Origin::memory("bundle")).unwrap(),
    )
}

/// Fixed credentials from an issued leaf (loaded as of now).
pub fn bundle_creds(issued: &Issued) -> Store<podtls::Credentials> {
    Store::fixed(
        "creds",
        podtls::Credentials::from_bundle_pem(
            issued.bundle_pem().as_bytes(),
            &Origin::memory("creds"),
            LeafKind::Any,
            std::time::SystemTime::now(),
        )
        .unwrap(),
    )
}
