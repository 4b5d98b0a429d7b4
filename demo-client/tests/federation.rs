//! demo-server and demo-client in two SPIFFE trust domains, each reading a
//! credential folder written like kubelet writes one: they talk while
//! federated, report each other's trust domain, and the server refuses the
//! client once its bundle is removed from the server's folder.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use podtls::test_util::{AtomicWriter, CertAuthority, LeafSpec};
use support::*;

const SERVER_A: &str = "spiffe://a.example/ns/demo/sa/server";
const CLIENT_B: &str = "spiffe://b.example/ns/demo/sa/client";

fn folder(
    writer: &AtomicWriter,
    creds: &podtls::test_util::Issued,
    bundles: &[(&str, &CertAuthority)],
) {
    let mut files = BTreeMap::new();
    files.insert(
        "credential-bundle.private-key.x509.pem".to_string(),
        creds.bundle_pem().into_bytes(),
    );
    for (td, ca) in bundles {
        files.insert(
            format!("{td}.spiffe-trust-bundle.x509.pem"),
            ca.cert_pem().as_bytes().to_vec(),
        );
    }
    writer.write(&files).unwrap();
}

#[test]
fn federated_pair_across_trust_domains_and_de_federation() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca_a, ca_b) = (CertAuthority::new("a"), CertAuthority::new("b"));
    let server_leaf = ca_a.issue(&LeafSpec::spiffe(SERVER_A));
    let client_leaf = ca_b.issue(&LeafSpec::spiffe(CLIENT_B));
    let server_dir = AtomicWriter::new(tmp.path().join("server")).unwrap();
    let client_dir = AtomicWriter::new(tmp.path().join("client")).unwrap();
    folder(
        &server_dir,
        &server_leaf,
        &[("a.example", &ca_a), ("b.example", &ca_b)],
    );
    folder(
        &client_dir,
        &client_leaf,
        &[("b.example", &ca_b), ("a.example", &ca_a)],
    );

    let srv = Server::start(&[
        "--credential-folder",
        path(server_dir.dir()),
        "--require-spiffe-client",
        "--allow-trust-domain",
        "a.example",
        "--allow-trust-domain",
        "b.example",
        "--log-format",
        "json",
    ]);
    let fetch = || {
        Command::new(client_bin())
            .env("SPIFFE_CREDENTIAL_FOLDER", client_dir.dir())
            .args([
                "--fetch-url",
                &srv.url("/spiffe-echo"),
                "--server-trust-domain",
                "a.example",
                "--resolve",
                &srv.resolve(),
                "--count",
                "1",
            ])
            .output()
            .expect("run demo-client")
    };
    let out = fetch();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap_or_default();
    assert!(
        line.contains(" 200 ")
            && line.contains(" server_trust_domain=a.example ")
            && line.ends_with(&format!("Client Identity: {CLIENT_B}")),
        "{}",
        text(&out)
    );
    let admin = srv.admin.unwrap();
    let (_, metrics) = admin_get(admin, "/metrics");
    for want in [
        r#"podtls_trust_domain_loaded{trust_domain="a.example",own="true"} 1"#,
        r#"podtls_trust_domain_loaded{trust_domain="b.example",own="false"} 1"#,
        r#"podtls_trust_domain_de_federated{trust_domain="b.example",own="false"} 0"#,
    ] {
        assert!(metrics.contains(want), "{want} in\n{metrics}");
    }

    // De-federation: the server's folder loses b.example's bundle.
    folder(&server_dir, &server_leaf, &[("a.example", &ca_a)]);
    let want = r#"podtls_trust_domain_de_federated{trust_domain="b.example",own="false"} 1"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = admin_get(admin, "/metrics");
        if metrics.contains(want) {
            break;
        }
        assert!(Instant::now() < deadline, "never de-federated:\n{metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = fetch();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (code, ready) = admin_get(admin, "/readyz");
    assert_eq!(
        code, 200,
        "a peer trust domain going away is not unreadiness: {ready}"
    );
    assert!(
        ready.contains("trust domain b.example: de-federated"),
        "{ready}"
    );
    let (ok, logs) = srv.terminate();
    assert!(ok);
    assert!(
        logs.contains("de-federated") && logs.contains("b.example"),
        "the server logs the refusal and the de-federation:\n{logs}"
    );
}
