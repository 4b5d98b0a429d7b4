//! The three example pairs, run as real processes on 127.0.0.1.

mod support;

use support::*;

#[test]
fn service_dns_server_with_unauthenticated_client() {
    let c = Cluster::new();
    let srv = Server::start(&["--server-creds", path(&c.server_dns_bundle())]);
    let out = client(&[
        "--fetch-url",
        &srv.url("/healthz"),
        "--server-trust-bundle",
        path(&c.dns_trust()),
        "--resolve",
        &srv.resolve(),
        "--interval",
        "50ms",
        "--count",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(" 200 ") && l.ends_with(" OK"))
            .count(),
        3,
        "{}",
        text(&out)
    );

    // Without a client certificate /spiffe-echo explains the 401.
    let out = client(&[
        "--fetch-url",
        &srv.url("/spiffe-echo"),
        "--server-trust-bundle",
        path(&c.dns_trust()),
        "--resolve",
        &srv.resolve(),
        "--count",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" 401 "),
        "{}",
        text(&out)
    );
}

#[test]
fn service_dns_server_with_spiffe_client_echoes_the_client_identity() {
    let c = Cluster::new();
    let srv = Server::start(&[
        "--server-creds",
        path(&c.server_dns_bundle()),
        "--enable-spiffe-client-support",
        "--spiffe-trust-bundle",
        path(&c.spiffe_trust()),
    ]);
    let out = client(&[
        "--fetch-url",
        &srv.url("/spiffe-echo"),
        "--server-trust-bundle",
        path(&c.dns_trust()),
        "--client-cred-bundle",
        path(&c.client_bundle()),
        "--resolve",
        &srv.resolve(),
        "--interval",
        "50ms",
        "--count",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("Client Identity: {CLIENT_ID}")),
        "{}",
        text(&out)
    );
}

#[test]
fn full_spiffe_pair_checks_both_identities() {
    let c = Cluster::new();
    let srv = Server::start(&[
        "--server-creds",
        path(&c.server_spiffe_bundle()),
        "--require-spiffe-client",
        "--spiffe-trust-bundle",
        path(&c.spiffe_trust()),
        "--allow-spiffe-id",
        CLIENT_ID,
    ]);
    let out = client(&[
        "--fetch-url",
        &srv.url("/spiffe-echo"),
        "--server-spiffe-id",
        SERVER_ID,
        "--spiffe-trust-bundle",
        path(&c.spiffe_trust()),
        "--client-cred-bundle",
        path(&c.client_bundle()),
        "--resolve",
        &srv.resolve(),
        "--interval",
        "50ms",
        "--count",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("Client Identity: {CLIENT_ID}")));

    // The client refuses a server with another SPIFFE ID.
    let out = client(&[
        "--fetch-url",
        &srv.url("/spiffe-echo"),
        "--server-spiffe-id",
        "spiffe://cluster.local/ns/demo/sa/someone-else",
        "--spiffe-trust-bundle",
        path(&c.spiffe_trust()),
        "--client-cred-bundle",
        path(&c.client_bundle()),
        "--resolve",
        &srv.resolve(),
        "--count",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAILED"),
        "{}",
        text(&out)
    );

    // And the server refuses a client without a certificate at the handshake.
    let out = client(&[
        "--fetch-url",
        &srv.url("/spiffe-echo"),
        "--server-spiffe-id",
        SERVER_ID,
        "--spiffe-trust-bundle",
        path(&c.spiffe_trust()),
        "--resolve",
        &srv.resolve(),
        "--count",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn client_from_another_trust_domain_gets_401_and_the_server_keeps_serving() {
    let c = Cluster::new();
    let srv = Server::start(&[
        "--server-creds",
        path(&c.server_dns_bundle()),
        "--enable-spiffe-client-support",
        "--spiffe-trust-bundle",
        path(&c.spiffe_trust()),
    ]);
    let other_ca = podtls::test_util::CertAuthority::new("evil CA");
    let evil = podtls::test_util::AtomicWriter::new(c.tmp.path().join("evil")).unwrap();
    let leaf = other_ca.issue(&podtls::test_util::LeafSpec::spiffe(
        "spiffe://evil.org/ns/x/sa/y",
    ));
    evil.write(&one("credentialbundle.pem", leaf.bundle_pem()))
        .unwrap();
    let out = client(&[
        "--fetch-url",
        &srv.url("/spiffe-echo"),
        "--server-trust-bundle",
        path(&c.dns_trust()),
        "--client-cred-bundle",
        path(&evil.path("credentialbundle.pem")),
        "--resolve",
        &srv.resolve(),
        "--count",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout.contains(" 401 ") && stdout.contains("evil.org"),
        "{}",
        text(&out)
    );

    let out = client(&[
        "--fetch-url",
        &srv.url("/spiffe-echo"),
        "--server-trust-bundle",
        path(&c.dns_trust()),
        "--client-cred-bundle",
        path(&c.client_bundle()),
        "--resolve",
        &srv.resolve(),
        "--count",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn admin_listener_reports_readiness_and_metrics() {
    let c = Cluster::new();
    let srv = Server::start(&["--server-creds", path(&c.server_dns_bundle())]);
    let admin = srv.admin.expect("admin listener");
    assert_eq!(admin_get(admin, "/livez").0, 200);
    let (code, body) = admin_get(admin, "/readyz");
    assert_eq!(code, 200, "{body}");
    let out = client(&[
        "--fetch-url",
        &srv.url("/healthz"),
        "--server-trust-bundle",
        path(&c.dns_trust()),
        "--resolve",
        &srv.resolve(),
        "--count",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let (code, metrics) = admin_get(admin, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("demo_server_requests_total{path=\"/healthz\",code=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("demo_server_tls_handshakes_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("podtls_ready{source=\"credentials"),
        "{metrics}"
    );
    let (ok, stderr) = srv.terminate();
    assert!(ok, "clean exit on SIGTERM: {stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn idle_http1_connections_are_closed_after_the_header_read_timeout() {
    use std::io::{Read, Write};
    let c = Cluster::new();
    let srv = Server::start(&[
        "--server-creds",
        path(&c.server_dns_bundle()),
        "--header-read-timeout",
        "300ms",
    ]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(c.dns_ca.cert_der().clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(podtls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from(SERVER_DNS).unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let tcp = std::net::TcpStream::connect(srv.https).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: server.demo.svc\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tls.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Now idle: the server closes the keep-alive connection on its own.
    let idle = std::time::Instant::now();
    let closed = loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break idle.elapsed(),
            Ok(_) => continue,
        }
    };
    assert!(
        closed >= std::time::Duration::from_millis(250),
        "closed too early: {closed:?}"
    );
    assert!(
        closed < std::time::Duration::from_secs(5),
        "not closed: {closed:?}"
    );
}
