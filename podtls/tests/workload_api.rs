//! `WorkloadApiSource` against a Workload API server nobody here wrote the
//! protocol of: `e2e/spiffe-interop workload-api`, a Go program serving
//! go-spiffe's generated Workload API protos with google.golang.org/grpc.
//!
//! A server (cluster.local) and a client (partner.example), each fed by its
//! own Workload API socket, talk mTLS continuously while the Go server rotates
//! both SVIDs: no request may fail and the new serials must be served; expired
//! SVIDs over the stream are refused and the last good ones stay served. Then
//! the Go server drops partner.example from the server's federated bundles:
//! the server refuses the client (`VerifyError::DeFederated`) until it is
//! added back. Last, the Workload API goes away: the last good material stays
//! served and the status says why, until a new server on the same sockets
//! is picked up.
//!
//! Needs `go` (CI installs it; the test fails rather than skips without it).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use podtls::{
    connect_tcp, parse_spiffe_id, parse_trust_domain, Authorizer, ClientAuth, ClientTls,
    HandshakeError, PeerAuth, PodTls, ServerAuth, ServerTls, VerifyError, WorkloadApiSource,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const SERVER_ID: &str = "spiffe://cluster.local/ns/demo/sa/server";
const CLIENT_ID: &str = "spiffe://partner.example/ns/demo/sa/client";

fn interop_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/spiffe-interop");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spiffe-interop-wl");
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&src)
            .status()
            .expect("running `go build` (the Workload API test needs Go, as CI has)");
        assert!(status.success(), "go build of e2e/spiffe-interop failed");
        out
    })
    .clone()
}

/// The Go Workload API server: commands on its stdin, answers on a channel.
struct GoServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl GoServer {
    fn start(dir: &Path) -> GoServer {
        let mut child = Command::new(interop_binary())
            .arg("workload-api")
            .arg("-workload")
            .arg(format!("{SERVER_ID}={}", dir.join("server.sock").display()))
            .arg("-workload")
            .arg(format!("{CLIENT_ID}={}", dir.join("client.sock").display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        GoServer {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(60), self.lines.recv())
            .await
            .expect("the Go server answers within 60 s")
            .expect("the Go server is running")
    }

    /// Sends a command; returns its answer line.
    async fn command(&mut self, cmd: &str) -> String {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        let line = self.line().await;
        assert!(!line.starts_with("ERROR"), "{cmd}: {line}");
        line
    }

    /// Closes its stdin: it exits, closing every stream.
    fn stop(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serials compare without leading zeros (Go prints the big-endian integer,
/// podtls the DER bytes).
fn norm(serial: &str) -> String {
    serial.trim_start_matches('0').to_ascii_lowercase()
}

/// The serial of `id` in a "ROTATED id=serial ..." line.
fn serial_in(line: &str, id: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{id}=")))
        .map(norm)
        .unwrap_or_else(|| panic!("no serial of {id} in {line:?}"))
}

/// Counters of the request loops.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
    /// (server serial, client serial) of the latest successful request.
    last: Mutex<(String, String)>,
    stop: AtomicBool,
}

async fn request(client: &ClientTls, addr: SocketAddr) -> Result<(String, String), String> {
    let (mut stream, server) = connect_tcp(client, addr, "server.demo")
        .await
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    stream
        .read_to_string(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    let client_serial = line
        .strip_prefix("client serial=")
        .ok_or_else(|| format!("unexpected answer {line:?}"))?;
    Ok((norm(&server.certificate.serial), norm(client_serial)))
}

/// Waits until `cond` holds for the pod, checking on every change of any
/// store (a poll every 20 ms covers stores created later).
async fn wait_pod(pod: &PodTls, what: &str, cond: impl Fn(&PodTls) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond(pod) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            pod.statuses()
        );
        let mut rx = pod.credentials().unwrap().subscribe();
        let _ = tokio::time::timeout(Duration::from_millis(20), rx.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotates_without_a_failed_request_and_de_federates_from_a_go_workload_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut go = GoServer::start(dir.path());
    assert_eq!(go.line().await, "READY");

    // Both endpoint spellings; a short backoff for the reconnect below.
    let source = |endpoint: String| {
        WorkloadApiSource::new(endpoint)
            .backoff(Duration::from_millis(20), Duration::from_millis(200))
            .start()
            .unwrap()
    };
    let server_pod = source(format!("unix:{}", dir.path().join("server.sock").display()));
    let client_pod = source(format!(
        "unix://{}",
        dir.path().join("client.sock").display()
    ));
    server_pod.ready(Duration::from_secs(30)).await.unwrap();
    client_pod.ready(Duration::from_secs(30)).await.unwrap();
    let partner = parse_trust_domain("partner.example").unwrap();
    let cluster = parse_trust_domain("cluster.local").unwrap();
    assert_eq!(server_pod.own_trust_domain(), Some(cluster.clone()));
    assert_eq!(client_pod.own_trust_domain(), Some(partner.clone()));
    assert!(
        server_pod.spiffe_bundles().current(&partner).is_ok(),
        "federated"
    );

    let server_tls = ServerTls::builder(server_pod.credentials().unwrap().clone())
        .client_auth(ClientAuth::required(
            server_pod.spiffe_bundles().clone(),
            Authorizer::exact(parse_spiffe_id(CLIENT_ID).unwrap()),
        ))
        .build()
        .unwrap();
    let client_tls = ClientTls::builder(ServerAuth::Spiffe(
        client_pod.spiffe_bundles().clone(),
        Authorizer::exact(parse_spiffe_id(SERVER_ID).unwrap()),
    ))
    .client_credentials(client_pod.credentials().unwrap().clone())
    .build()
    .unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (refused_tx, mut refused) = mpsc::unbounded_channel::<HandshakeError>();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (tls, tx) = (server_tls.clone(), refused_tx.clone());
            tokio::spawn(async move {
                match tls.accept(tcp).await {
                    Ok((mut stream, PeerAuth::Verified(peer))) => {
                        let line = format!("client serial={}", peer.certificate.serial);
                        let _ = stream.write_all(line.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                    Ok((_, other)) => panic!("client auth is required, got {other:?}"),
                    Err(e) => {
                        let _ = tx.send(e);
                    }
                }
            });
        }
    });

    // Continuous mTLS requests (two loops) while both SVIDs rotate.
    let first = go.command("serials").await;
    let load = Arc::new(Load::default());
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let (load, client) = (load.clone(), client_tls.clone());
            tokio::spawn(async move {
                while !load.stop.load(Ordering::Relaxed) {
                    match request(&client, addr).await {
                        Ok(seen) => {
                            load.ok.fetch_add(1, Ordering::Relaxed);
                            *load.last.lock().unwrap() = seen;
                        }
                        Err(e) => {
                            load.failed.fetch_add(1, Ordering::Relaxed);
                            load.errors.lock().unwrap().push(e);
                        }
                    }
                }
            })
        })
        .collect();
    let mut served = vec![(serial_in(&first, SERVER_ID), serial_in(&first, CLIENT_ID))];
    for _ in 0..3 {
        let rotated = go.command("rotate").await;
        assert!(rotated.starts_with("ROTATED"), "{rotated}");
        let want = (
            serial_in(&rotated, SERVER_ID),
            serial_in(&rotated, CLIENT_ID),
        );
        assert!(!served.contains(&want), "new serials");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let before = load.ok.load(Ordering::Relaxed);
        // Until requests show both new serials, and a few more after that.
        while *load.last.lock().unwrap() != want || load.ok.load(Ordering::Relaxed) < before + 20 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "rotation to {want:?} not seen; last {:?}",
                load.last.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        served.push(want);
    }

    // Expired SVIDs over the same stream: refused by name (`Error::Expired`
    // in both statuses), the last good ones stay served, no request fails.
    let expired = go.command("expire").await;
    assert!(expired.starts_with("EXPIRED"), "{expired}");
    for pod in [&server_pod, &client_pod] {
        wait_pod(pod, "the expired SVID refused", |p| {
            p.credentials()
                .unwrap()
                .status()
                .last_error
                .is_some_and(|e| matches!(*e, podtls::Error::Expired { .. }))
        })
        .await;
        assert!(pod.is_ready(), "still serving the last good SVID");
    }
    let before = load.ok.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while load.ok.load(Ordering::Relaxed) < before + 20 {
        assert!(tokio::time::Instant::now() < deadline, "no requests");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *load.last.lock().unwrap(),
        *served.last().unwrap(),
        "the last good SVIDs are served"
    );
    load.stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    let (ok, failed) = (
        load.ok.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    eprintln!("requests during 3 rotations and an expired update: {ok} ok, {failed} failed");
    assert_eq!(
        failed,
        0,
        "failed requests: {:?}",
        load.errors.lock().unwrap()
    );
    assert!(ok >= 60, "{ok}");

    // De-federation: partner.example leaves the server's federated bundles.
    assert_eq!(
        go.command("drop partner.example").await,
        "DROPPED partner.example"
    );
    wait_pod(&server_pod, "partner.example de-federated", |p| {
        p.spiffe_bundles().de_federated_since(&partner).is_some()
    })
    .await;
    assert!(server_pod.is_ready(), "a peer trust domain does not count");
    assert!(request(&client_tls, addr).await.is_err());
    // The server's own rejection (not, say, a client that went away).
    let error = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let error = refused.recv().await.unwrap();
            if error.rejection().is_some() {
                return error;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(error.rejection(), Some(VerifyError::DeFederated { trust_domain }) if trust_domain == "partner.example"),
        "{error}"
    );
    // The client side is untouched: its own trust domain stays.
    assert!(client_pod.spiffe_bundles().current(&partner).is_ok());
    assert_eq!(
        go.command("add partner.example").await,
        "ADDED partner.example"
    );
    wait_pod(&server_pod, "partner.example federated again", |p| {
        p.spiffe_bundles().current(&partner).is_ok()
    })
    .await;
    request(&client_tls, addr).await.unwrap();

    // The Workload API goes away: last good kept, the status says why.
    go.stop();
    wait_pod(&server_pod, "the stream error in the status", |p| {
        p.credentials()
            .unwrap()
            .status()
            .last_error
            .is_some_and(|e| e.to_string().contains("SPIFFE Workload API"))
    })
    .await;
    assert!(server_pod.is_ready());
    let (server_serial, _) = request(&client_tls, addr).await.unwrap();
    assert_eq!(server_serial, served.last().unwrap().0);

    // It comes back (another Go server on the same sockets, with new CAs):
    // the sources reconnect, and its material is served, errors cleared.
    let mut go = GoServer::start(dir.path());
    assert_eq!(go.line().await, "READY");
    let now_serving = go.command("serials").await;
    let want = (
        serial_in(&now_serving, SERVER_ID),
        serial_in(&now_serving, CLIENT_ID),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match request(&client_tls, addr).await {
            Ok(seen) if seen == want => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "not reconnected: {other:?}; {:?}",
                server_pod.statuses()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for pod in [&server_pod, &client_pod] {
        wait_pod(pod, "errors cleared", |p| {
            p.statuses().iter().all(|s| s.last_error.is_none())
        })
        .await;
    }
}

#[tokio::test]
async fn an_unreachable_workload_api_fails_closed_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let pod = WorkloadApiSource::new(format!("unix:{}", socket.display()))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .start()
        .unwrap();
    let error = pod.ready(Duration::from_millis(500)).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, podtls::Error::NotReady { .. }) && message.contains("nobody.sock"),
        "{message}"
    );
    assert!(!pod.is_ready());
    assert!(pod.credentials().unwrap().current().is_none(), "closed");
    let status = pod.credentials().unwrap().status();
    assert!(
        matches!(
            status.last_error.as_deref(),
            Some(podtls::Error::SourceFailed { what, .. }) if what.contains("nobody.sock")
        ),
        "{status:?}"
    );
}
