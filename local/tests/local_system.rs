//! The one-command local system runs, rotates certificates and the trust
//! anchors, and reports zero failed requests; the cross-trust-domain pair is
//! served while federated and refused (fail closed) after de-federation.

use std::process::Command;

#[test]
fn local_system_rotates_everything_without_a_failed_request() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_podtls-local"))
        .args([
            "--duration",
            "12s",
            "--rotate-every",
            "1s",
            "--request-interval",
            "100ms",
        ])
        .arg("--work-dir")
        .arg(work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("trust anchors now CA2"), "{stdout}");
    assert!(stdout.contains("result: OK"), "{stdout}");
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("summary"))
        .filter(|l| l.contains(" ok, "))
        .collect();
    assert_eq!(summary.len(), 4, "four pairs: {stdout}");
    for line in &summary {
        assert!(line.contains(" 0 failed"), "{line}");
        let ok: u64 = line
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or(0);
        assert!(
            ok > 0,
            "every pair is served (the cross pair while federated): {line}"
        );
    }
    assert!(
        summary[3].contains("federated (client in partner.example)"),
        "{stdout}"
    );
    let federation = stdout
        .lines()
        .find(|l| l.contains("federation: "))
        .unwrap_or_else(|| panic!("no federation summary: {stdout}"));
    let refused_after: u64 = federation
        .split(", ")
        .find(|part| part.contains("refused after it was removed"))
        .and_then(|part| part.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{federation}"));
    assert!(
        refused_after > 0,
        "the cross pair must be refused after de-federation: {federation}"
    );
    assert!(
        stdout.contains("federation REMOVED") && stdout.contains("as expected"),
        "the display says the refusals are expected: {stdout}"
    );
    // The credential folder is written with the draft's file names; the
    // server's bundle of the de-federated trust domain is left empty.
    let folder = work.path().join("pods/federation/server/spiffe");
    let cred =
        std::fs::read_to_string(folder.join("credential-bundle.private-key.x509.pem")).unwrap();
    assert!(cred.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        !std::fs::read_to_string(folder.join("cluster.local.spiffe-trust-bundle.x509.pem"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        std::fs::read(folder.join("partner.example.spiffe-trust-bundle.x509.pem")).unwrap(),
        b""
    );
    // The kubelet stand-in wrote kubelet's layout.
    let data = work.path().join("pods/spiffe-mtls/server/creds/..data");
    assert!(
        std::fs::read_link(&data).is_ok(),
        "..data symlink at {}",
        data.display()
    );
    let bundle = std::fs::read_to_string(
        work.path()
            .join("pods/spiffe-mtls/server/creds/credentialbundle.pem"),
    )
    .unwrap();
    assert!(
        bundle.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{bundle}"
    );
}
