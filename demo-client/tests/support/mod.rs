//! Runs the real demo-server and demo-client binaries against volumes
//! written like kubelet writes them.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use podtls::test_util::{AtomicWriter, CertAuthority, Issued, LeafSpec};

pub const SERVER_DNS: &str = "server.demo.svc";
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/demo/sa/server";
pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/demo/sa/client";

/// The demo-client binary (this package's).
pub fn client_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_demo-client"))
}

/// The demo-server binary, next to ours in the target directory. It is
/// (re)built once per test process so it is never stale (a no-op when
/// `cargo test --workspace` already built it).
pub fn server_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = client_bin().parent().unwrap().to_path_buf();
            let bin = dir.join("demo-server");
            let mut cargo = Command::new(env!("CARGO"));
            cargo.args(["build", "-p", "demo-server"]);
            if dir.ends_with("release") {
                cargo.arg("--release");
            }
            let status = cargo
                .env(
                    "CARGO_TARGET_DIR",
                    client_bin().parent().unwrap().parent().unwrap(),
                )
                .status()
                .expect("run cargo build -p demo-server");
            assert!(status.success(), "cargo build -p demo-server failed");
            assert!(
                bin.exists(),
                "demo-server binary not found at {}",
                bin.display()
            );
            bin
        })
        .clone()
}

pub fn one(name: &str, content: impl Into<Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([(name.to_string(), content.into())])
}

/// Two signers' CAs and the volumes of a server pod and a client pod.
pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub dns_ca: CertAuthority,
    pub spiffe_ca: CertAuthority,
    pub server_dns_creds: AtomicWriter,
    pub server_spiffe_creds: AtomicWriter,
    pub client_creds: AtomicWriter,
    pub trust: AtomicWriter,
}

impl Cluster {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let w = |p: &str| AtomicWriter::new(tmp.path().join(p)).unwrap();
        let c = Cluster {
            dns_ca: CertAuthority::new("service-dns CA"),
            spiffe_ca: CertAuthority::new("spiffe CA"),
            server_dns_creds: w("server/dns-creds"),
            server_spiffe_creds: w("server/spiffe-creds"),
            client_creds: w("client/creds"),
            trust: w("trust"),
            tmp,
        };
        c.rotate_server_dns(&c.dns_ca);
        c.rotate_server_spiffe(&c.spiffe_ca);
        c.rotate_client(&c.spiffe_ca);
        c.write_trust(&[&c.dns_ca], &[&c.spiffe_ca]);
        c
    }

    pub fn rotate_server_dns(&self, ca: &CertAuthority) -> Issued {
        let i = ca.issue(&LeafSpec::dns(&[SERVER_DNS]));
        self.server_dns_creds
            .write(&one("credentialbundle.pem", i.bundle_pem()))
            .unwrap();
        i
    }

    pub fn rotate_server_spiffe(&self, ca: &CertAuthority) -> Issued {
        let i = ca.issue(&LeafSpec::spiffe(SERVER_ID));
        self.server_spiffe_creds
            .write(&one("credentialbundle.pem", i.bundle_pem()))
            .unwrap();
        i
    }

    pub fn rotate_client(&self, ca: &CertAuthority) -> Issued {
        let i = ca.issue(&LeafSpec::spiffe(CLIENT_ID));
        self.client_creds
            .write(&one("credentialbundle.pem", i.bundle_pem()))
            .unwrap();
        i
    }

    pub fn write_trust(&self, dns: &[&CertAuthority], spiffe: &[&CertAuthority]) {
        let pem = |cas: &[&CertAuthority]| {
            cas.iter()
                .map(|c| c.cert_pem().to_string())
                .collect::<String>()
        };
        let mut files = one("service-dns.pem", pem(dns));
        files.insert("spiffe.pem".into(), pem(spiffe).into_bytes());
        self.trust.write(&files).unwrap();
    }

    pub fn server_dns_bundle(&self) -> PathBuf {
        self.server_dns_creds.path("credentialbundle.pem")
    }
    pub fn server_spiffe_bundle(&self) -> PathBuf {
        self.server_spiffe_creds.path("credentialbundle.pem")
    }
    pub fn client_bundle(&self) -> PathBuf {
        self.client_creds.path("credentialbundle.pem")
    }
    pub fn dns_trust(&self) -> PathBuf {
        self.trust.path("service-dns.pem")
    }
    pub fn spiffe_trust(&self) -> PathBuf {
        self.trust.path("spiffe.pem")
    }
}

/// A running demo-server; killed on drop.
pub struct Server {
    pub child: Child,
    pub https: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// Every stderr line, as it is written.
    pub logs: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Forwards a child's stderr lines to a channel and collects them.
pub fn stream_lines(
    stderr: impl std::io::Read + Send + 'static,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            s.push_str(&line);
            s.push('\n');
            let _ = tx.send(line);
        }
        s
    });
    (rx, handle)
}

/// Waits until a JSON log line from `logs` has `message` and every
/// `(field, value)` in `fields`.
pub fn wait_log(logs: &std::sync::mpsc::Receiver<String>, message: &str, fields: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = logs
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line {message:?} {fields:?} within 20s"));
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let f = &v["fields"];
        let field_matches = |k: &str, want: &str| match &f[k] {
            serde_json::Value::String(s) => s == want,
            other => other.to_string().as_str() == want,
        };
        if f["message"] == message && fields.iter().all(|(k, want)| field_matches(k, want)) {
            return;
        }
    }
}

impl Server {
    /// Starts demo-server with `args` (plus listen addresses on 127.0.0.1:0)
    /// and waits for its LISTENING line.
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(server_bin())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn demo-server");
        let (logs, stderr) = stream_lines(child.stderr.take().unwrap());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = match lines.next() {
            Some(Ok(l)) => l,
            _ => {
                let _ = child.wait();
                drop(logs);
                panic!("demo-server did not start: {}", stderr.join().unwrap());
            }
        };
        let listening = podtls_bin_support::protocol::Listening::parse(&line)
            .unwrap_or_else(|| panic!("not a LISTENING line: {line:?}"));
        Server {
            https: listening.https,
            admin: listening.admin,
            logs,
            child,
            stderr: Some(stderr),
        }
    }

    pub fn resolve(&self) -> String {
        format!("{SERVER_DNS}:{}:127.0.0.1", self.https.port())
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{SERVER_DNS}:{}{path}", self.https.port())
    }

    /// Sends SIGTERM and returns (exit success, stderr).
    pub fn terminate(mut self) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "demo-server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = self.stderr.take().unwrap().join().unwrap();
        (status.success(), err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs demo-client to completion.
pub fn client(args: &[&str]) -> Output {
    Command::new(client_bin())
        .args(args)
        .output()
        .expect("run demo-client")
}

pub fn text(out: &Output) -> String {
    format!(
        "status={:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A plain HTTP GET against the admin listener.
pub fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}
