//! The one-command local system runs, rotates certificates and the trust
//! anchors, and reports zero failed requests.

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
    for line in summary {
        assert!(line.contains(" 0 failed"), "{line}");
    }
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
