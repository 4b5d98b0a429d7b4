//! Start-up errors: clear messages and non-zero exits, or waiting where asked.

mod support;

use std::process::Command;

use support::*;

#[test]
fn server_exits_with_a_clear_error_when_credentials_are_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope/credentialbundle.pem");
    let out = Command::new(server_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--server-creds",
            path(&missing),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nope/credentialbundle.pem") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn server_exits_with_a_clear_error_when_credentials_are_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bundle.pem");
    std::fs::write(&bad, "not pem").unwrap();
    let out = Command::new(server_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--server-creds",
            path(&bad),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bundle.pem") && err.contains("no PRIVATE KEY block"),
        "{err}"
    );
}

#[test]
fn server_waits_for_credentials_when_asked() {
    let c = Cluster::new();
    let late = podtls::test_util::AtomicWriter::new(c.tmp.path().join("late")).unwrap();
    let bundle = late.path("credentialbundle.pem");
    let writer = std::thread::spawn({
        let dns_ca_leaf = c
            .dns_ca
            .issue(&podtls::test_util::LeafSpec::dns(&[SERVER_DNS]));
        move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            late.write(&one("credentialbundle.pem", dns_ca_leaf.bundle_pem()))
                .unwrap();
            late
        }
    });
    // Start blocks in Server::start until the LISTENING line, i.e. until ready.
    let srv = Server::start(&[
        "--server-creds",
        path(&bundle),
        "--wait-for-credentials",
        "20s",
    ]);
    let _late = writer.join().unwrap();
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
}

#[test]
fn bad_flag_combinations_are_refused() {
    for (args, needle) in [
        (
            vec!["--enable-spiffe-client-support"],
            "server credentials are required",
        ),
        (
            vec!["--server-creds", "x", "--enable-spiffe-client-support"],
            "needs a trust bundle",
        ),
        (
            vec![
                "--server-creds",
                "x",
                "--server-key",
                "k",
                "--server-chain",
                "c",
            ],
            "cannot be used with",
        ),
        (
            vec!["--server-creds", "x", "--listen", "not-an-address"],
            "invalid value",
        ),
    ] {
        let out = Command::new(server_bin()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    for (args, needle) in [
        (
            vec!["--fetch-url", "https://x:1/"],
            "give --server-trust-bundle",
        ),
        (
            vec!["--fetch-url", "http://x:1/", "--server-trust-bundle", "t"],
            "must be an https:// URL",
        ),
        (
            vec![
                "--fetch-url",
                "https://x:1/",
                "--server-spiffe-id",
                "spiffe://a.org/s",
            ],
            "need --spiffe-trust-bundle",
        ),
        (
            vec![
                "--fetch-url",
                "https://x:1/",
                "--server-trust-bundle",
                "/nonexistent.pem",
            ],
            "/nonexistent.pem",
        ),
        (
            vec![
                "--fetch-url",
                "https://x:1/",
                "--server-trust-bundle",
                "t",
                "--resolve",
                "x:1",
            ],
            "HOST:PORT:ADDR",
        ),
    ] {
        let out = client(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn readyz_says_not_ready_until_credentials_arrive() {
    let c = Cluster::new();
    let late = podtls::test_util::AtomicWriter::new(c.tmp.path().join("late")).unwrap();
    let admin = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut child = Command::new(server_bin())
        .args(["--listen", "127.0.0.1:0", "--wait-for-credentials", "30s"])
        .arg("--admin-listen")
        .arg(admin.to_string())
        .arg("--server-creds")
        .arg(late.path("credentialbundle.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let poll = |want: u16| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(admin) {
                use std::io::{Read, Write};
                let _ = write!(
                    s,
                    "GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                );
                let mut resp = String::new();
                let _ = s.read_to_string(&mut resp);
                if resp.split_whitespace().nth(1) == Some(&want.to_string()) {
                    return resp;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/readyz never answered {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let body = poll(503);
    assert!(
        body.contains("not ready") && body.contains("credentialbundle.pem"),
        "{body}"
    );
    assert_eq!(admin_get(admin, "/livez").0, 200);
    let leaf = c
        .dns_ca
        .issue(&podtls::test_util::LeafSpec::dns(&[SERVER_DNS]));
    late.write(&one("credentialbundle.pem", leaf.bundle_pem()))
        .unwrap();
    poll(200);
    let _ = child.kill();
    let _ = child.wait();
}
