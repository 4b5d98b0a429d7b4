//! Clients nobody here wrote: curl and `openssl s_client` against demo-server.

mod support;

use std::process::{Command, Stdio};

use podtls::test_util::LeafSpec;
use support::*;

fn tool(name: &str) -> Command {
    let probe = if name == "openssl" {
        "version"
    } else {
        "--version"
    };
    assert!(
        Command::new(name)
            .arg(probe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok(),
        "{name} is not installed (.ci/run installs it)"
    );
    Command::new(name)
}

#[test]
fn curl_talks_to_demo_server_with_and_without_a_client_certificate() {
    let c = Cluster::new();
    let srv = Server::start(&[
        "--server-creds",
        path(&c.server_dns_bundle()),
        "--enable-spiffe-client-support",
        "--spiffe-trust-bundle",
        path(&c.spiffe_trust()),
    ]);
    let resolve = format!("{SERVER_DNS}:{}:127.0.0.1", srv.https.port());
    let out = tool("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "--cacert",
            path(&c.dns_trust()),
            "--resolve",
            &resolve,
            &srv.url("/healthz"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK");

    // curl takes the key and the chain as separate files.
    let leaf = c.spiffe_ca.issue(&LeafSpec::spiffe(CLIENT_ID));
    let key = c.tmp.path().join("curl.key");
    let chain = c.tmp.path().join("curl.crt");
    std::fs::write(&key, &leaf.key_pem).unwrap();
    std::fs::write(&chain, &leaf.chain_pem).unwrap();
    let out = tool("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "--http2",
            "--cacert",
            path(&c.dns_trust()),
            "--cert",
            path(&chain),
            "--key",
            path(&key),
            "--resolve",
            &resolve,
            &srv.url("/spiffe-echo"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Client Identity: {CLIENT_ID}")
    );

    let out = tool("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            path(&c.dns_trust()),
            "--resolve",
            &resolve,
            &srv.url("/spiffe-echo"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "401",
        "{}",
        text(&out)
    );
}

#[test]
fn openssl_s_client_shows_the_served_chain_and_verifies_it() {
    let c = Cluster::new();
    let root = podtls::test_util::CertAuthority::new("service-dns root");
    let inter = root.intermediate("service-dns intermediate");
    let leaf = inter.issue(&LeafSpec::dns(&[SERVER_DNS]));
    c.server_dns_creds
        .write(&one("credentialbundle.pem", leaf.bundle_pem()))
        .unwrap();
    let roots = c.tmp.path().join("root.pem");
    std::fs::write(&roots, root.cert_pem()).unwrap();
    let srv = Server::start(&["--server-creds", path(&c.server_dns_bundle())]);
    let out = tool("openssl")
        .args([
            "s_client",
            "-connect",
            &srv.https.to_string(),
            "-servername",
            SERVER_DNS,
            "-verify_hostname",
            SERVER_DNS,
            "-CAfile",
            path(&roots),
            "-showcerts",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("Verify return code: 0 (ok)"), "{}", text(&out));
    assert!(
        s.contains("i:CN = service-dns intermediate")
            || s.contains("i:CN=service-dns intermediate"),
        "{s}"
    );
    assert!(
        s.contains("s:CN = service-dns intermediate")
            || s.contains("s:CN=service-dns intermediate"),
        "chain includes the intermediate: {s}"
    );
    assert_eq!(
        s.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "leaf + intermediate, no root: {s}"
    );
}
