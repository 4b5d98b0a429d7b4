//! demo-server throughput and memory, measured with the real binaries.
//!
//! Run: `cargo bench -p demo-client --bench demo_server` (DURATION=5s each).
//!
//! Mutual TLS throughout: demo-server requires a SPIFFE client certificate;
//! demo-client verifies the server by DNS name and presents its SPIFFE
//! certificate (ECDSA P-256). For each concurrency, keep-alive and a new
//! connection (full handshake) per request. Then demo-server's RSS idle and
//! with 1,000 open idle TLS connections (opened by this process).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use podtls::test_util::{AtomicWriter, CertAuthority, LeafSpec};

fn bins() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf(); // target/<profile>
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "-p", "demo-server", "-p", "demo-client"]);
    if dir.ends_with("release") {
        cargo.arg("--release");
    }
    cargo.env("CARGO_TARGET_DIR", dir.parent().unwrap());
    assert!(
        cargo.status().unwrap().success(),
        "building the demo binaries"
    );
    dir
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn write(w: &AtomicWriter, name: &str, content: String) -> PathBuf {
    w.write(&BTreeMap::from([(name.to_string(), content.into_bytes())]))
        .unwrap();
    w.path(name)
}

fn main() {
    let duration = std::env::var("DURATION").unwrap_or_else(|_| "5s".into());
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(65_536), hard).unwrap();
    let dir = bins();
    let tmp = tempfile::tempdir().unwrap();
    let w = |p: &str| AtomicWriter::new(tmp.path().join(p)).unwrap();
    let dns_ca = CertAuthority::new("service-dns CA");
    let spiffe_ca = CertAuthority::new("spiffe CA");
    let server_bundle = write(
        &w("server"),
        "bundle.pem",
        dns_ca
            .issue(&LeafSpec::dns(&["server.bench.svc"]))
            .bundle_pem(),
    );
    let client_leaf = spiffe_ca.issue(&LeafSpec::spiffe(
        "spiffe://cluster.local/ns/bench/sa/client",
    ));
    let client_bundle = write(&w("client"), "bundle.pem", client_leaf.bundle_pem());
    let trust = w("trust");
    trust
        .write(&BTreeMap::from([
            ("dns.pem".to_string(), dns_ca.cert_pem().as_bytes().to_vec()),
            (
                "spiffe.pem".to_string(),
                spiffe_ca.cert_pem().as_bytes().to_vec(),
            ),
        ]))
        .unwrap();

    let mut server = Command::new(dir.join("demo-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--require-spiffe-client",
        ])
        .arg("--server-creds")
        .arg(&server_bundle)
        .arg("--spiffe-trust-bundle")
        .arg(trust.path("spiffe.pem"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = podtls_bin_support::protocol::Listening::parse(line.trim_end())
        .expect("a LISTENING line")
        .https;
    let url = format!("https://server.bench.svc:{}/spiffe-echo", addr.port());
    let resolve = format!("server.bench.svc:{}:127.0.0.1", addr.port());
    let load = |duration: &str, extra: &[&str]| -> serde_json::Value {
        let out = Command::new(dir.join("demo-client"))
            .args(["--fetch-url", &url, "--resolve", &resolve])
            .arg("--server-trust-bundle")
            .arg(trust.path("dns.pem"))
            .arg("--client-cred-bundle")
            .arg(&client_bundle)
            .args([
                "load",
                "--duration",
                duration,
                "--output",
                "json",
                "--quiet",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    load("1s", &["--concurrency", "1"]); // warm-up
    let idle_rss = rss_kib(server.id());

    println!("demo-server, mutual TLS (ECDSA P-256), {duration} per row, client and server on the same 2 cores");
    println!(
        "| connections | concurrency | requests/s | handshakes/s | p50 ms | p99 ms | failed |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for new_conn in [false, true] {
        for c in ["1", "16", "256"] {
            let mut args = vec!["--concurrency", c];
            if new_conn {
                args.push("--new-connection-per-request");
            }
            let s = load(&duration, &args);
            println!(
                "| {} | {c} | {:.0} | {:.0} | {:.2} | {:.2} | {} |",
                if new_conn {
                    "new per request"
                } else {
                    "keep-alive"
                },
                s["requests_per_sec"].as_f64().unwrap(),
                s["handshakes_per_sec"].as_f64().unwrap(),
                s["latency_ms"]["p50"].as_f64().unwrap(),
                s["latency_ms"]["p99"].as_f64().unwrap(),
                s["failed"]
            );
        }
    }

    // 1,000 idle TLS connections held open by this process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let held = rt.block_on(hold_connections(
        addr,
        &trust.path("dns.pem"),
        &client_bundle,
        1000,
    ));
    let busy_rss = rss_kib(server.id());
    println!();
    println!("| demo-server RSS | KiB |");
    println!("|---|---:|");
    println!("| idle (after warm-up) | {idle_rss} |");
    println!(
        "| with {} open idle TLS connections | {busy_rss} |",
        held.len()
    );
    println!(
        "| per idle connection | {:.1} |",
        (busy_rss.saturating_sub(idle_rss)) as f64 / held.len() as f64
    );
    drop(held);
    let _ = server.kill();
    let _ = server.wait();
}

async fn hold_connections(
    addr: std::net::SocketAddr,
    roots: &Path,
    creds: &Path,
    n: usize,
) -> Vec<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let pod = podtls::PodTls::builder()
        .roots(roots)
        .credential_bundle(creds)
        .start()
        .unwrap();
    let cfg: Arc<rustls::ClientConfig> =
        podtls::ClientTls::builder(podtls::ServerAuth::Dns(pod.roots().unwrap().clone()))
            .client_credentials(pod.credentials().unwrap().clone())
            .resumption(false)
            .build()
            .unwrap()
            .config()
            .clone();
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("server.bench.svc").unwrap();
        held.push(connector.connect(name, tcp).await.unwrap());
    }
    // Let the server finish its side of every handshake.
    tokio::time::sleep(Duration::from_millis(500)).await;
    held
}
