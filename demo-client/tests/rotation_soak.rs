//! The rotation soak: demo-client's load mode against demo-server (full
//! SPIFFE, new connection per request) while the server certificate, the
//! client certificate and the trust anchors (CA1 -> CA1+CA2 -> CA2) rotate
//! through the kubelet-style atomic writer. Zero failed requests; every
//! rotated serial shows up in the traffic.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use podtls::test_util::CertAuthority;
use support::*;

const LOADED_CERT: &str = "podtls: loaded certificate";
const LOADED_BUNDLE: &str = "podtls: loaded trust bundle";

#[test]
fn rotations_during_load_fail_no_request() {
    let c = Cluster::new();
    let ca1 = &c.spiffe_ca;
    let ca2 = CertAuthority::new("spiffe CA 2");
    let srv = Server::start(&[
        "--server-creds",
        path(&c.server_spiffe_bundle()),
        "--require-spiffe-client",
        "--spiffe-trust-bundle",
        path(&c.spiffe_trust()),
        "--log-format",
        "json",
    ]);
    let mut load = Command::new(client_bin())
        .args([
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
            "--log-format",
            "json",
            "load",
            "--concurrency",
            "4",
            "--duration",
            "8s",
            "--new-connection-per-request",
            "--output",
            "json",
            "--quiet",
        ])
        .env("RUST_LOG", "podtls=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (client_logs, client_stderr) = stream_lines(load.stderr.take().unwrap());
    // Traffic runs between steps; the pause only paces the rotations.
    let pace = || std::thread::sleep(Duration::from_millis(300));
    let mut server_serials = Vec::new();
    let mut client_serials = Vec::new();
    pace();
    for _ in 0..3 {
        let s = c.rotate_server_spiffe(ca1);
        wait_log(&srv.logs, LOADED_CERT, &[("serial", &s.serial)]);
        server_serials.push(s.serial);
        let cl = c.rotate_client(ca1);
        wait_log(&client_logs, LOADED_CERT, &[("serial", &cl.serial)]);
        client_serials.push(cl.serial);
        pace();
    }
    // New trust anchor added on both sides before anything is issued by it.
    c.write_trust(&[&c.dns_ca], &[ca1, &ca2]);
    wait_log(&srv.logs, LOADED_BUNDLE, &[("authorities", "2")]);
    wait_log(&client_logs, LOADED_BUNDLE, &[("authorities", "2")]);
    pace();
    let s = c.rotate_server_spiffe(&ca2);
    let cl = c.rotate_client(&ca2);
    wait_log(&srv.logs, LOADED_CERT, &[("serial", &s.serial)]);
    wait_log(&client_logs, LOADED_CERT, &[("serial", &cl.serial)]);
    server_serials.push(s.serial);
    client_serials.push(cl.serial);
    pace();
    // Old anchor retired.
    c.write_trust(&[&c.dns_ca], &[&ca2]);
    wait_log(&srv.logs, LOADED_BUNDLE, &[("authorities", "1")]);
    wait_log(&client_logs, LOADED_BUNDLE, &[("authorities", "1")]);
    pace();
    let s = c.rotate_server_spiffe(&ca2);
    wait_log(&srv.logs, LOADED_CERT, &[("serial", &s.serial)]);
    server_serials.push(s.serial);
    pace();

    let status = load.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut load.stdout.take().unwrap(), &mut stdout).unwrap();
    let stderr = client_stderr.join().unwrap();
    assert!(status.success(), "load failed:\n{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(summary["requests"].as_u64().unwrap() > 100, "{summary}");
    let seen = |key: &str| -> Vec<String> {
        summary[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    for s in &server_serials {
        assert!(
            seen("server_serials").contains(s),
            "server serial {s} never served: {summary}"
        );
    }
    for s in &client_serials {
        assert!(
            seen("client_serials").contains(s),
            "client serial {s} never seen by the server: {summary}"
        );
    }
    assert_eq!(
        summary["bodies"],
        serde_json::json!([format!("Client Identity: {CLIENT_ID}")]),
        "{summary}"
    );
}
