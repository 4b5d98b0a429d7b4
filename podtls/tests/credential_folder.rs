//! A SPIFFE credential folder (draft SPIFFE Filesystem Delivery standard),
//! written the way kubelet writes a projected volume: trust domains found from
//! the file names, followed as they come and go, de-federation refusing the
//! very next handshake (resumption included), bad files never costing the
//! last good state, and peers verified only against their own trust domain's
//! bundle.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use podtls::test_util::{AtomicWriter, CertAuthority, Issued, KeyType, LeafSpec};
use podtls::{
    parse_trust_domain, reload::TrustDomainStatus, Authorizer, ClientAuth, ClientTls, Error,
    PodTls, ServerAuth, ServerTls, TrustDomain,
};

const A: &str = "a.example";
const B: &str = "b.example";
const CRED: &str = "credential-bundle.private-key.x509.pem";

fn tdn(name: &str) -> TrustDomain {
    parse_trust_domain(name).unwrap()
}

fn bundle_name(td: &str) -> String {
    format!("{td}.spiffe-trust-bundle.x509.pem")
}

fn leaf(ca: &CertAuthority, td: &str, path: &str) -> Issued {
    ca.issue(&LeafSpec::spiffe(&format!("spiffe://{td}{path}")))
}

/// A credential folder written through a kubelet-style atomic writer.
struct Folder {
    _tmp: tempfile::TempDir,
    writer: AtomicWriter,
    files: BTreeMap<String, Vec<u8>>,
}

impl Folder {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(tmp.path().join("spiffe")).unwrap();
        Folder {
            _tmp: tmp,
            writer,
            files: BTreeMap::new(),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.writer.dir().to_path_buf()
    }

    fn set(&mut self, name: &str, content: impl Into<Vec<u8>>) -> &mut Self {
        self.files.insert(name.to_string(), content.into());
        self
    }

    fn unset(&mut self, name: &str) -> &mut Self {
        self.files.remove(name);
        self
    }

    fn creds(&mut self, issued: &Issued) -> &mut Self {
        self.set(CRED, issued.bundle_pem())
    }

    fn trust(&mut self, td: &str, cas: &[&CertAuthority]) -> &mut Self {
        let pem: String = cas.iter().map(|c| c.cert_pem().to_string()).collect();
        self.set(&bundle_name(td), pem)
    }

    fn write(&self) {
        self.writer.write(&self.files).unwrap();
    }

    fn start(&self) -> PodTls {
        PodTls::builder()
            .credential_folder(self.path())
            .timing(fast_timing())
            .start()
            .unwrap()
    }
}

fn status_of(pod: &PodTls, td: &str) -> Option<TrustDomainStatus> {
    pod.trust_domain_statuses()
        .into_iter()
        .find(|s| s.trust_domain == tdn(td))
}

/// Waits (on the store's status changes) until `td`'s state satisfies `cond`.
async fn wait_td(pod: &PodTls, td: &str, what: &str, cond: impl Fn(&TrustDomainStatus) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if status_of(pod, td).as_ref().is_some_and(&cond) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            status_of(pod, td)
        );
        match pod.spiffe_bundles().store(&tdn(td)) {
            Some(store) => {
                let mut rx = store.subscribe();
                let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
            }
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

fn server(pod: &PodTls, optional: bool) -> ServerTls {
    let auth = if optional {
        ClientAuth::optional(pod.spiffe_bundles().clone(), Authorizer::any())
    } else {
        ClientAuth::required(pod.spiffe_bundles().clone(), Authorizer::any())
    };
    ServerTls::builder(pod.credentials().unwrap().clone())
        .client_auth(auth)
        .build()
        .unwrap()
}

/// A client with fixed credentials `creds` trusting `cas` for `td`.
fn fixed_client(creds: &Issued, td: &str, cas: &[&CertAuthority]) -> ClientTls {
    let bundles = podtls::SpiffeBundles::new([(tdn(td), bundle_store(cas))]);
    ClientTls::builder(ServerAuth::Spiffe(bundles, Authorizer::any()))
        .client_credentials(bundle_creds(creds))
        .build()
        .unwrap()
}

#[tokio::test]
async fn verifies_each_peer_against_its_own_trust_domain_only() {
    let (ca_a, ca_b, ca_c) = (
        CertAuthority::new("a"),
        CertAuthority::new("b"),
        CertAuthority::new("c"),
    );
    let mut folder = Folder::new();
    folder
        .creds(&leaf(&ca_a, A, "/ns/s/sa/server"))
        .trust(A, &[&ca_a])
        .trust(B, &[&ca_b]);
    folder.write();
    let pod = folder.start();
    pod.ready(Duration::from_secs(5)).await.unwrap();
    assert_eq!(pod.own_trust_domain(), Some(tdn(A)));
    let srv = TestServer::start(server(&pod, true)).await;

    let same = leaf(&ca_a, A, "/ns/c/sa/client");
    let cross = leaf(&ca_b, B, "/ns/c/sa/client");
    // No bundle file for c.example: no trust.
    let unknown = leaf(&ca_c, "c.example", "/ns/c/sa/client");
    // A's CA vouching for a name in B: bundles are never merged.
    let forged = leaf(&ca_a, B, "/ns/c/sa/client");
    let ok = |s: Result<Seen, String>| s.unwrap().line;
    assert_eq!(
        ok(connect(srv.addr, fixed_client(&same, A, &[&ca_a]), "s").await),
        format!("verified spiffe://{A}/ns/c/sa/client")
    );
    assert_eq!(
        ok(connect(srv.addr, fixed_client(&cross, A, &[&ca_a]), "s").await),
        format!("verified spiffe://{B}/ns/c/sa/client")
    );
    let line = ok(connect(srv.addr, fixed_client(&unknown, A, &[&ca_a]), "s").await);
    assert!(
        line.starts_with("rejected")
            && line.contains("c.example")
            && line.contains("not configured"),
        "{line}"
    );
    let line = ok(connect(srv.addr, fixed_client(&forged, A, &[&ca_a]), "s").await);
    assert!(
        line.starts_with("rejected") && line.contains(&format!("{B:?} bundle")),
        "{line}"
    );
    srv.stop().await;

    let statuses = pod.trust_domain_statuses();
    let a = statuses.iter().find(|s| s.trust_domain == tdn(A)).unwrap();
    assert!(a.own && a.loaded && a.anchors == 1 && !a.is_de_federated());
    let b = statuses.iter().find(|s| s.trust_domain == tdn(B)).unwrap();
    assert!(!b.own && b.loaded && b.anchors == 1 && b.last_change.is_some());
}

#[derive(Debug, Clone, Copy)]
enum Withdraw {
    Remove,
    Empty,
    Whitespace,
}

/// The server verifies clients with the folder; a client of B resumes a
/// session it got while B was federated. After de-federation the very next
/// handshake of B is refused, resumed or not; A is untouched.
#[tokio::test]
async fn de_federation_refuses_the_next_handshake_and_resumption_does_not_bring_it_back() {
    for how in [Withdraw::Remove, Withdraw::Empty, Withdraw::Whitespace] {
        let (ca_a, ca_b) = (CertAuthority::new("a"), CertAuthority::new("b"));
        let mut folder = Folder::new();
        folder
            .creds(&leaf(&ca_a, A, "/ns/s/sa/server"))
            .trust(A, &[&ca_a])
            .trust(B, &[&ca_b]);
        folder.write();
        let pod = folder.start();
        pod.ready(Duration::from_secs(5)).await.unwrap();
        let srv = TestServer::start(server(&pod, false)).await;
        let cross = fixed_client(&leaf(&ca_b, B, "/ns/c/sa/client"), A, &[&ca_a]);
        let same = fixed_client(&leaf(&ca_a, A, "/ns/c/sa/client"), A, &[&ca_a]);
        connect(srv.addr, cross.clone(), "s").await.unwrap();
        let second = connect(srv.addr, cross.clone(), "s").await.unwrap();
        assert!(
            second.resumed,
            "{how:?}: the client holds a resumable session"
        );

        match how {
            Withdraw::Remove => folder.unset(&bundle_name(B)),
            Withdraw::Empty => folder.set(&bundle_name(B), ""),
            Withdraw::Whitespace => folder.set(&bundle_name(B), " \n\t\n"),
        };
        folder.write();
        wait_td(&pod, B, "de-federated", |s| s.is_de_federated()).await;
        let b = status_of(&pod, B).unwrap();
        assert!(
            !b.loaded && b.anchors == 0 && b.last_error.is_none(),
            "{b:?}"
        );

        let refused = connect(srv.addr, cross.clone(), "s").await;
        assert!(
            refused.is_err(),
            "{how:?}: de-federated peer accepted: {refused:?}"
        );
        // The verdict, as the application sees it (optional client auth).
        let verdict = TestServer::start(server(&pod, true)).await;
        let line = connect(verdict.addr, cross.clone(), "s")
            .await
            .unwrap()
            .line;
        assert!(
            line.starts_with("rejected")
                && line.contains(&format!("{B:?}"))
                && line.contains("de-federated"),
            "{how:?}: {line}"
        );
        verdict.stop().await;
        let line = connect(srv.addr, same.clone(), "s").await.unwrap().line;
        assert_eq!(line, format!("verified spiffe://{A}/ns/c/sa/client"));
        assert!(
            pod.is_ready(),
            "a peer trust domain going away is not unreadiness"
        );

        // Re-added: trusted again, with the new anchors only.
        let ca_b2 = CertAuthority::new("b2");
        folder.trust(B, &[&ca_b2]);
        folder.write();
        wait_td(&pod, B, "re-federated", |s| s.loaded).await;
        assert!(!status_of(&pod, B).unwrap().is_de_federated());
        let old_ca = connect(srv.addr, cross.clone(), "s").await;
        assert!(
            old_ca.is_err(),
            "{how:?}: old anchors came back: {old_ca:?}"
        );
        let new = fixed_client(&leaf(&ca_b2, B, "/ns/c/sa/client"), A, &[&ca_a]);
        connect(srv.addr, new, "s").await.unwrap();
        srv.stop().await;
    }
}

/// The client side: a workload of A calls a server of B; the server's
/// session, resumable while B was federated, is refused after.
#[tokio::test]
async fn client_refuses_a_de_federated_server_even_with_a_session_ticket() {
    let (ca_a, ca_b) = (CertAuthority::new("a"), CertAuthority::new("b"));
    let mut folder = Folder::new();
    folder
        .creds(&leaf(&ca_a, A, "/ns/c/sa/client"))
        .trust(A, &[&ca_a])
        .trust(B, &[&ca_b]);
    folder.write();
    let pod = folder.start();
    pod.ready(Duration::from_secs(5)).await.unwrap();
    let server_leaf = leaf(&ca_b, B, "/ns/s/sa/server");
    let srv = TestServer::start(
        ServerTls::builder(bundle_creds(&server_leaf))
            .client_auth(ClientAuth::required(
                podtls::SpiffeBundles::new([(tdn(A), bundle_store(&[&ca_a]))]),
                Authorizer::any(),
            ))
            .build()
            .unwrap(),
    )
    .await;
    let client = ClientTls::builder(ServerAuth::Spiffe(
        pod.spiffe_bundles().clone(),
        Authorizer::member_of([tdn(B)]),
    ))
    .client_credentials(pod.credentials().unwrap().clone())
    .build()
    .unwrap();
    connect(srv.addr, client.clone(), "s").await.unwrap();
    assert!(
        connect(srv.addr, client.clone(), "s")
            .await
            .unwrap()
            .resumed
    );

    folder.set(&bundle_name(B), "");
    folder.write();
    wait_td(&pod, B, "de-federated", |s| s.is_de_federated()).await;
    let error = connect(srv.addr, client.clone(), "s").await.unwrap_err();
    assert!(
        error.contains("de-federated") || error.contains("UnknownIssuer"),
        "{error}"
    );
    srv.stop().await;
}

/// Federation comes, changes, is emptied, removed and re-added while clients
/// of A hammer the server: not one same-domain failure; B is accepted only
/// while a bundle for it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_domains_come_and_go_under_load_without_a_same_domain_failure() {
    let (ca_a, ca_b1, ca_b2) = (
        CertAuthority::new("a"),
        CertAuthority::new("b1"),
        CertAuthority::new("b2"),
    );
    let mut folder = Folder::new();
    folder
        .creds(&leaf(&ca_a, A, "/ns/s/sa/server"))
        .trust(A, &[&ca_a]);
    folder.write();
    let pod = folder.start();
    pod.ready(Duration::from_secs(5)).await.unwrap();
    let srv = TestServer::start(server(&pod, false)).await;
    let addr = srv.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut hammers = Vec::new();
    for i in 0..4 {
        let client = fixed_client(&leaf(&ca_a, A, &format!("/ns/c/sa/c{i}")), A, &[&ca_a]);
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        hammers.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match connect(addr, client.clone(), "s").await {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        errors.push(e);
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
            errors
        }));
    }
    let b1 = fixed_client(&leaf(&ca_b1, B, "/ns/c/sa/b"), A, &[&ca_a]);
    let b2 = fixed_client(&leaf(&ca_b2, B, "/ns/c/sa/b"), A, &[&ca_a]);
    let accepted = |c: &ClientTls| {
        let c = c.clone();
        async move { connect(addr, c, "s").await.is_ok() }
    };

    for round in 0..3 {
        // Appears.
        folder.trust(B, &[&ca_b1]).write();
        wait_td(&pod, B, "appeared", |s| s.loaded && s.anchors == 1).await;
        assert!(accepted(&b1).await, "round {round}: federated");
        assert!(!accepted(&b2).await, "round {round}: b2 not yet an anchor");
        // Changes (b1 retired, b2 added).
        folder.trust(B, &[&ca_b2]).write();
        wait_td(&pod, B, "changed", |s| {
            s.loaded && s.status.generation >= 1 && s.anchors == 1
        })
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !accepted(&b2).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: b2 never trusted"
            );
        }
        assert!(
            !accepted(&b1).await,
            "round {round}: retired anchor still trusted"
        );
        // Emptied.
        folder.set(&bundle_name(B), "").write();
        wait_td(&pod, B, "emptied", |s| s.is_de_federated()).await;
        assert!(!accepted(&b2).await, "round {round}: emptied yet trusted");
        // Re-added, then removed.
        folder.trust(B, &[&ca_b2]).write();
        wait_td(&pod, B, "re-added", |s| s.loaded).await;
        assert!(accepted(&b2).await, "round {round}: re-added");
        folder.unset(&bundle_name(B)).write();
        wait_td(&pod, B, "removed", |s| s.is_de_federated()).await;
        assert!(!accepted(&b2).await, "round {round}: removed yet trusted");
    }
    stop.store(true, Ordering::SeqCst);
    let mut errors = Vec::new();
    for h in hammers {
        errors.extend(h.await.unwrap());
    }
    srv.stop().await;
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "same-domain failures: {errors:?}"
    );
    assert!(ok.load(Ordering::SeqCst) > 20, "the hammer ran");
}

#[tokio::test]
async fn reads_both_draft_revisions_and_the_newest_name_wins() {
    let (ca_a, ca_old, ca_new) = (
        CertAuthority::new("a"),
        CertAuthority::new("old"),
        CertAuthority::new("new"),
    );
    // Only the older revision's names.
    let mut folder = Folder::new();
    let first = leaf(&ca_a, A, "/ns/s/sa/server");
    folder
        .set("credential-bundle.private-key.pem", first.bundle_pem())
        .set(
            &format!("{A}.spiffe-trust-bundle.pem"),
            ca_a.cert_pem().to_string(),
        )
        .set(
            &format!("{B}.spiffe-trust-bundle.pem"),
            ca_old.cert_pem().to_string(),
        );
    folder.write();
    let pod = folder.start();
    pod.ready(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        serial_of(&pod.credentials().unwrap().status()),
        Some(first.serial.clone())
    );
    let b = pod.spiffe_bundles().current(&tdn(B)).unwrap();
    assert_eq!(b.certificates()[0].as_ref(), ca_old.cert_der().as_ref());

    // Both names: the `.x509.pem` ones win.
    let second = leaf(&ca_a, A, "/ns/s/sa/server");
    folder.creds(&second).trust(B, &[&ca_new]);
    folder.write();
    wait_status(pod.credentials().unwrap(), "newest credential name", |s| {
        serial_of(s).as_deref() == Some(second.serial.as_str())
    })
    .await;
    wait_td(&pod, B, "newest bundle name", |_| {
        pod.spiffe_bundles()
            .current(&tdn(B))
            .is_ok_and(|b| b.certificates()[0].as_ref() == ca_new.cert_der().as_ref())
    })
    .await;
    // The older name alone going away changes nothing.
    folder
        .unset(&format!("{B}.spiffe-trust-bundle.pem"))
        .write();
    pod.reload_now();
    assert!(pod.spiffe_bundles().current(&tdn(B)).is_ok());
    assert!(!status_of(&pod, B).unwrap().is_de_federated());
}

#[tokio::test]
async fn malformed_bundle_keeps_the_last_good_anchors_but_an_empty_one_does_not() {
    let (ca_a, ca_b) = (CertAuthority::new("a"), CertAuthority::new("b"));
    let mut folder = Folder::new();
    folder
        .creds(&leaf(&ca_a, A, "/ns/s/sa/server"))
        .trust(A, &[&ca_a])
        .trust(B, &[&ca_b]);
    folder.write();
    let pod = folder.start();
    pod.ready(Duration::from_secs(5)).await.unwrap();
    for bad in [
        &b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"[..],
        b"garbage that is not PEM",
        &ca_b.cert_pem().as_bytes()[..200],
    ] {
        folder.set(&bundle_name(B), bad).write();
        wait_td(&pod, B, "load error", |s| s.last_error.is_some()).await;
        let b = status_of(&pod, B).unwrap();
        assert!(b.loaded && b.anchors == 1 && !b.is_de_federated(), "{b:?}");
        let error = b.last_error.unwrap().to_string();
        assert!(error.contains(&bundle_name(B)), "names the file: {error}");
        assert!(
            pod.spiffe_bundles().current(&tdn(B)).is_ok(),
            "last good kept"
        );
    }
    folder.set(&bundle_name(B), "\n").write();
    wait_td(&pod, B, "de-federated", |s| s.is_de_federated()).await;
    // A malformed file after de-federation does not bring anything back.
    folder.set(&bundle_name(B), "garbage").write();
    wait_td(&pod, B, "load error", |s| s.last_error.is_some()).await;
    assert!(matches!(
        pod.spiffe_bundles().current(&tdn(B)),
        Err(podtls::VerifyError::DeFederated { .. })
    ));
}

#[tokio::test]
async fn an_empty_own_bundle_fails_closed_and_makes_the_pod_not_ready() {
    let (ca_a, ca_b) = (CertAuthority::new("a"), CertAuthority::new("b"));
    let mut folder = Folder::new();
    folder
        .creds(&leaf(&ca_a, A, "/ns/s/sa/server"))
        .trust(A, &[&ca_a])
        .trust(B, &[&ca_b]);
    folder.write();
    let pod = folder.start();
    pod.ready(Duration::from_secs(5)).await.unwrap();
    let srv = TestServer::start(server(&pod, true)).await;
    let same = fixed_client(&leaf(&ca_a, A, "/ns/c/sa/client"), A, &[&ca_a]);

    folder.set(&bundle_name(A), "").write();
    wait_td(&pod, A, "own de-federated", |s| s.is_de_federated()).await;
    let own = status_of(&pod, A).unwrap();
    assert!(own.own && !own.loaded);
    assert!(
        !pod.is_ready(),
        "an own trust domain without anchors is not ready"
    );
    let error = pod.ready(Duration::from_millis(100)).await.unwrap_err();
    assert!(error.to_string().contains("own trust domain"), "{error}");
    let line = connect(srv.addr, same.clone(), "s").await.unwrap().line;
    assert!(
        line.starts_with("rejected") && line.contains("de-federated"),
        "{line}"
    );
    assert!(
        pod.spiffe_bundles().current(&tdn(B)).is_ok(),
        "B unaffected"
    );

    folder.trust(A, &[&ca_a]).write();
    pod.ready(Duration::from_secs(5)).await.unwrap();
    let line = connect(srv.addr, same, "s").await.unwrap().line;
    assert_eq!(line, format!("verified spiffe://{A}/ns/c/sa/client"));
    srv.stop().await;
}

#[tokio::test]
async fn junk_huge_files_bad_names_and_path_tricks_are_ignored_or_refused_never_fatal() {
    let (ca_a, ca_b) = (CertAuthority::new("a"), CertAuthority::new("b"));
    let mut folder = Folder::new();
    let timing = podtls::reload::ReloadTiming {
        max_file_size: 64 * 1024,
        ..fast_timing()
    };
    let huge = ca_b
        .cert_pem()
        .repeat(64 * 1024 / ca_b.cert_pem().len() + 2);
    assert!(huge.len() > 64 * 1024);
    folder
        .creds(&leaf(&ca_a, A, "/ns/s/sa/server"))
        .trust(A, &[&ca_a])
        .set("README.md", "not ours")
        .set("ca.crt", ca_b.cert_pem().to_string())
        .set(
            "nested/b.example.spiffe-trust-bundle.x509.pem",
            ca_b.cert_pem().to_string(),
        )
        .set(&bundle_name("huge.example"), huge)
        .set(".spiffe-trust-bundle.x509.pem", ca_b.cert_pem().to_string())
        .set(
            ".b.example.spiffe-trust-bundle.x509.pem",
            ca_b.cert_pem().to_string(),
        )
        .set(
            "B.EXAMPLE.spiffe-trust-bundle.x509.pem",
            ca_b.cert_pem().to_string(),
        )
        .set("b%2f..spiffe-trust-bundle.pem", ca_b.cert_pem().to_string())
        .set(
            "spiffe:.spiffe-trust-bundle.pem",
            ca_b.cert_pem().to_string(),
        );
    folder.write();
    // A FIFO named like a bundle (a reader must not block on it) and a
    // symlink named like a bundle pointing out of the folder to a directory.
    let fifo = folder.path().join(bundle_name("fifo.example"));
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/", folder.path().join(bundle_name("root.example"))).unwrap();

    let pod = PodTls::builder()
        .credential_folder(folder.path())
        .timing(timing)
        .start()
        .unwrap();
    pod.ready(Duration::from_secs(5)).await.unwrap();
    let tds: Vec<String> = pod
        .trust_domain_statuses()
        .iter()
        .map(|s| s.trust_domain.to_string())
        .collect();
    assert_eq!(
        tds,
        [A, "fifo.example", "huge.example", "root.example"],
        "only valid trust domain names become trust domains"
    );
    for (td, expect) in [
        ("huge.example", "larger than the limit"),
        ("fifo.example", "FIFO"),
        ("root.example", "directory"),
    ] {
        let s = status_of(&pod, td).unwrap();
        assert!(!s.loaded, "{td}");
        let error = s.last_error.expect(td).to_string();
        assert!(
            error.contains(expect) && error.contains(td),
            "{td}: {error}"
        );
        assert!(matches!(
            pod.spiffe_bundles().current(&tdn(td)),
            Err(podtls::VerifyError::BundleNotLoaded { .. })
        ));
    }
    assert!(
        matches!(
            pod.spiffe_bundles().current(&tdn(B)),
            Err(podtls::VerifyError::UnknownTrustDomain { .. })
        ),
        "ca.crt, nested/ and bad names never became B's bundle"
    );
    assert!(pod.is_ready(), "junk next to a good folder is harmless");
    // And the folder keeps working.
    folder.trust(B, &[&ca_b]).write();
    wait_td(&pod, B, "B appears next to the junk", |s| s.loaded).await;
}

#[tokio::test]
async fn credential_bundle_may_change_key_type_and_issuer() {
    let (ca_a1, ca_a2) = (
        CertAuthority::with_key("a1", KeyType::EcdsaP256),
        CertAuthority::with_key("a2", KeyType::Rsa3072),
    );
    let mut folder = Folder::new();
    let first = ca_a1
        .issue(&LeafSpec::spiffe(&format!("spiffe://{A}/ns/s/sa/server")).key(KeyType::EcdsaP256));
    folder.creds(&first).trust(A, &[&ca_a1, &ca_a2]);
    folder.write();
    let pod = folder.start();
    pod.ready(Duration::from_secs(5)).await.unwrap();
    let srv = TestServer::start(server(&pod, true)).await;
    let client = fixed_client(&leaf(&ca_a1, A, "/ns/c/sa/client"), A, &[&ca_a1, &ca_a2]);
    assert_eq!(
        connect(srv.addr, client.clone(), "s")
            .await
            .unwrap()
            .server_serial,
        first.serial
    );

    for (ca, key) in [
        (&ca_a2, KeyType::Ed25519),
        (&ca_a2, KeyType::Rsa3072),
        (&ca_a1, KeyType::EcdsaP384),
    ] {
        let next = ca.issue(&LeafSpec::spiffe(&format!("spiffe://{A}/ns/s/sa/server")).key(key));
        folder.creds(&next).write();
        wait_status(pod.credentials().unwrap(), "swapped", |s| {
            serial_of(s).as_deref() == Some(next.serial.as_str())
        })
        .await;
        let seen = connect(srv.addr, client.clone(), "s").await.unwrap();
        assert_eq!(seen.server_serial, next.serial, "{key:?}");
    }
    srv.stop().await;
}

#[test]
fn the_folder_comes_from_the_named_environment_variable() {
    let var = "PODTLS_TEST_CREDENTIAL_FOLDER_UNSET_7f3a";
    let error = PodTls::builder()
        .credential_folder_from_env(var)
        .unwrap_err();
    assert!(
        matches!(&error, Error::Config(m) if m.contains(var)),
        "{error}"
    );
    assert_eq!(
        podtls::SPIFFE_CREDENTIAL_FOLDER_ENV,
        "SPIFFE_CREDENTIAL_FOLDER"
    );
}

#[test]
fn a_folder_cannot_be_mixed_with_explicit_bundles() {
    let error = PodTls::builder()
        .credential_folder("/nonexistent")
        .spiffe_bundle(td(), "/nonexistent/b.pem")
        .start()
        .unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error}");
}

#[tokio::test]
async fn a_missing_folder_fails_closed_and_is_picked_up_when_it_appears() {
    let ca_a = CertAuthority::new("a");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("later");
    let pod = PodTls::builder()
        .credential_folder(&path)
        .timing(fast_timing())
        .start()
        .unwrap();
    assert!(!pod.is_ready());
    assert!(pod.credentials().unwrap().current().is_none());
    let error = pod
        .credentials()
        .unwrap()
        .status()
        .last_error
        .unwrap()
        .to_string();
    assert!(error.contains("later"), "{error}");
    let writer = AtomicWriter::new(&path).unwrap();
    let mut files = BTreeMap::new();
    files.insert(
        CRED.to_string(),
        leaf(&ca_a, A, "/ns/s/sa/s").bundle_pem().into_bytes(),
    );
    files.insert(bundle_name(A), ca_a.cert_pem().as_bytes().to_vec());
    writer.write(&files).unwrap();
    // The folder did not exist when watching began: the poll finds it.
    pod.reload_now();
    pod.ready(Duration::from_secs(5)).await.unwrap();
}
