//! Interop with code nobody here wrote: go-spiffe v2's `federation` package
//! (`e2e/spiffe-interop`, its own Go module) against the signer's bundle endpoint
//! (`federation.FetchBundle`, both profiles) and the signer's fetcher against
//! go-spiffe's `federation.NewHandler` (both profiles), plus the attacks: a wrong
//! endpoint SPIFFE ID on either side, a bundle of another trust domain.
//!
//! Builds the Go program with `go build` (modules from the Go module proxy or the
//! module cache); skipped, saying so, only when `go` is not installed.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use signer::controller::{fetch_bundle, serve_bundle_endpoint, EndpointAuth, FetchLimits};
use signer::{
    generate_ca, issue_endpoint_svid, parse_bundle_document, render_bundle_document, KeyType,
};

fn interop_binary() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if Command::new("go").arg("version").output().is_err() {
            eprintln!(
                "SKIPPED: `go` is not installed; the go-spiffe interop tests need it (CI has it)"
            );
            return None;
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/spiffe-interop");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spiffe-interop");
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&src)
            .status()
            .expect("running go build");
        assert!(status.success(), "go build of e2e/spiffe-interop failed");
        Some(out)
    })
    .clone()
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<CertifiedKey> {
    let creds = podtls::Credentials::from_der(
        chain,
        key,
        &podtls::Origin::memory("test"),
        podtls::LeafKind::Any,
        SystemTime::now(),
    )
    .unwrap();
    creds.certified_key().clone()
}

/// Serves `doc` with `key` on 127.0.0.1; returns the port.
async fn our_endpoint(key: Arc<CertifiedKey>, doc: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::watch::channel(Some(Arc::new(doc)));
    tokio::spawn(async move {
        let _keep = tx;
        serve_bundle_endpoint(listener, Arc::new(Fixed(key)), rx).await
    });
    port
}

fn pem(ders: &[&[u8]]) -> String {
    let mut out = String::new();
    for d in ders {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(d);
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Runs go-spiffe's FetchBundle; Ok(JSON) or Err(stderr).
fn go_fetch(bin: &Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new(bin).arg("fetch").args(args).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn go_spiffe_fetches_our_https_spiffe_endpoint_and_only_with_its_exact_id() {
    let Some(bin) = interop_binary() else { return };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let now = SystemTime::now();
    let ca = generate_ca("a-1", KeyType::EcdsaP256, now, Duration::from_secs(86_400)).unwrap();
    let other = generate_ca("a-0", KeyType::Ed25519, now, Duration::from_secs(86_400)).unwrap();
    let id = podtls::parse_spiffe_id("spiffe://a.example/podtls-signer/bundle-endpoint").unwrap();
    let svid = issue_endpoint_svid(&ca, &id, now).unwrap();
    let doc = render_bundle_document(
        &[ca.root_der(), other.root_der()],
        Some(7),
        Some(Duration::from_secs(300)),
    )
    .unwrap();
    let port = our_endpoint(certified(svid.chain, svid.key), doc).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("a.pem");
    std::fs::write(&bundle, pem(&[ca.root_der()])).unwrap();
    let url = format!("https://127.0.0.1:{port}/");
    let got = tokio::task::spawn_blocking({
        let (bin, url, bundle) = (bin.clone(), url.clone(), bundle.clone());
        move || {
            go_fetch(
                &bin,
                &[
                    "-url",
                    &url,
                    "-td",
                    "a.example",
                    "-spiffe-id",
                    "spiffe://a.example/podtls-signer/bundle-endpoint",
                    "-bundle",
                    bundle.to_str().unwrap(),
                ],
            )
        }
    })
    .await
    .unwrap()
    .expect("go-spiffe FetchBundle against our endpoint");
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    assert_eq!(
        got["authorities"],
        serde_json::json!([b64(ca.root_der()), b64(other.root_der())]),
        "both authorities, Ed25519 (OKP) included"
    );
    assert_eq!(got["sequence"], 7);
    assert_eq!(got["refreshHintSeconds"], 300.0);
    // go-spiffe refuses our endpoint when it expects another ID.
    let err = tokio::task::spawn_blocking(move || {
        go_fetch(
            &bin,
            &[
                "-url",
                &url,
                "-td",
                "a.example",
                "-spiffe-id",
                "spiffe://a.example/someone-else",
                "-bundle",
                bundle.to_str().unwrap(),
            ],
        )
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(err.contains("FetchBundle"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn go_spiffe_fetches_our_https_web_endpoint() {
    let Some(bin) = interop_binary() else { return };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let web_key = rcgen::KeyPair::generate().unwrap();
    let mut web_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    web_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let web_ca = web_params.self_signed(&web_key).unwrap();
    let issuer = rcgen::Issuer::new(web_params, web_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf_key.serialize_pem().as_bytes()).unwrap();
    let ca = generate_ca(
        "a-1",
        KeyType::Ed25519,
        SystemTime::now(),
        Duration::from_secs(86_400),
    )
    .unwrap();
    let doc = render_bundle_document(&[ca.root_der()], Some(3), None).unwrap();
    let port = our_endpoint(certified(vec![leaf.der().clone()], key), doc).await;
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.pem");
    std::fs::write(&web, pem(&[web_ca.der()])).unwrap();
    let url = format!("https://127.0.0.1:{port}/bundle");
    let got = tokio::task::spawn_blocking(move || {
        go_fetch(
            &bin,
            &[
                "-url",
                &url,
                "-td",
                "a.example",
                "-web-ca",
                web.to_str().unwrap(),
            ],
        )
    })
    .await
    .unwrap()
    .expect("go-spiffe FetchBundle (https_web) against our endpoint");
    assert_eq!(
        got["authorities"],
        serde_json::json!([base64::engine::general_purpose::STANDARD.encode(ca.root_der())])
    );
    assert_eq!(got["sequence"], 3);
}

/// go-spiffe's NewHandler; returns (the child, its port, the trust domain CA, web CA).
fn go_handler(bin: &Path, profile: &str, dir: &Path) -> (Child, u16, Vec<u8>, Option<Vec<u8>>) {
    let mut child = Command::new(bin)
        .args(["serve", "-td", "peer.example", "-profile", profile, "-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .strip_prefix("LISTEN ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("go serve said {line:?}"));
    let read = |name: &str| {
        std::fs::read(dir.join(name)).ok().map(|p| {
            CertificateDer::pem_slice_iter(&p)
                .next()
                .unwrap()
                .unwrap()
                .to_vec()
        })
    };
    (child, port, read("td-ca.pem").unwrap(), read("web-ca.pem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn our_fetcher_reads_go_spiffes_handler_over_https_web_ignoring_its_jwt_key() {
    let Some(bin) = interop_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, td_ca, web_ca) = go_handler(&bin, "web", dir.path());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(web_ca.unwrap())).unwrap();
    let body = fetch_bundle(
        &format!("https://localhost:{port}/"),
        &EndpointAuth::Web(Arc::new(roots)),
        FetchLimits::default(),
    )
    .await
    .expect("fetching from go-spiffe's handler");
    let td = signer::parse_trust_domain("peer.example").unwrap();
    let doc = parse_bundle_document(&body, &td).expect("parsing go-spiffe's document");
    assert_eq!(doc.x509_authorities, vec![td_ca]);
    assert_eq!(doc.sequence, Some(42));
    assert_eq!(doc.refresh_hint, Some(Duration::from_secs(300)));
    // The same document claimed for another trust domain: its CA names peer.example.
    let other = signer::parse_trust_domain("other.example").unwrap();
    let err = parse_bundle_document(&body, &other).unwrap_err();
    assert!(
        matches!(err, signer::BundleDocumentError::ForeignTrustDomain { .. }),
        "{err}"
    );
    drop(child.stdin.take());
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn our_fetcher_authenticates_go_spiffes_https_spiffe_endpoint_by_exact_id() {
    let Some(bin) = interop_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, td_ca, _) = go_handler(&bin, "spiffe", dir.path());
    let url = format!("https://127.0.0.1:{port}/");
    let auth = |id: &str| EndpointAuth::Spiffe {
        id: podtls::parse_spiffe_id(id).unwrap(),
        authorities: vec![td_ca.clone()],
    };
    let body = fetch_bundle(
        &url,
        &auth("spiffe://peer.example/go-endpoint"),
        FetchLimits::default(),
    )
    .await
    .expect("fetching from go-spiffe's https_spiffe endpoint");
    let td = signer::parse_trust_domain("peer.example").unwrap();
    assert_eq!(
        parse_bundle_document(&body, &td).unwrap().x509_authorities,
        vec![td_ca.clone()]
    );
    let err = fetch_bundle(
        &url,
        &auth("spiffe://peer.example/not-the-endpoint"),
        FetchLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("tls"), "{err}");
    drop(child.stdin.take());
    let _ = child.wait();
}
