//! The agent binary stops promptly and cleanly on SIGTERM even while an issuance
//! attempt hangs (an API server that accepts connections and never answers), and
//! writes nothing it did not get.

use std::io::Read as _;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn sigterm_during_a_hanging_issuance_exits_zero_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = p.self_signed(&key).unwrap().pem();
    std::fs::write(tmp.path().join("api-ca.pem"), &ca).unwrap();
    std::fs::write(tmp.path().join("token"), "aaa.bbb.ccc\n").unwrap();
    let bundles = tmp.path().join("bundles");
    std::fs::create_dir(&bundles).unwrap();
    std::fs::write(bundles.join("a.test.spiffe-trust-bundle.x509.pem"), &ca).unwrap();

    // Accepts and holds connections, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted_tx, accepted) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            let _ = accepted_tx.send(());
            held.push(conn);
        }
    });

    let folder = tmp.path().join("folder");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_podtls-agent"))
        .arg("--signer-name=row-major.net/spiffe")
        .arg(format!("--credential-folder={}", folder.display()))
        .arg(format!("--trust-bundle-dir={}", bundles.display()))
        .arg(format!(
            "--token-file={}",
            tmp.path().join("token").display()
        ))
        .arg("--trust-domain=a.test")
        .arg(format!("--api-server=https://127.0.0.1:{port}"))
        .arg(format!(
            "--api-ca-file={}",
            tmp.path().join("api-ca.pem").display()
        ))
        .arg("--pod-name=p")
        .arg("--namespace=n")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    accepted
        .recv_timeout(Duration::from_secs(20))
        .expect("the agent never connected to the API server");

    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "the agent did not exit within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(code.success(), "exit {code:?}:\n{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        !folder.exists(),
        "a folder was written without a certificate"
    );
    // The key material never reaches the log.
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}
