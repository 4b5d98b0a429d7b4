//! Against real TLS servers on 127.0.0.1: each test is what a hostile or broken peer
//! endpoint would do.

use std::net::SocketAddr;
use std::time::Instant;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use rustls_pki_types::PrivateKeyDer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

struct Ca {
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().to_vec(),
        issuer: Issuer::new(params, key),
    }
}

/// A serverAuth leaf of `ca` with `sans` (DNS names, IPs or one spiffe:// URI).
fn leaf(ca: &Ca, sans: Vec<SanType>) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (
        vec![cert.der().clone()],
        PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
}

fn uri(u: &str) -> SanType {
    SanType::URI(rcgen::string::Ia5String::try_from(u).unwrap())
}

fn localhost() -> Vec<SanType> {
    vec![SanType::DnsName(
        rcgen::string::Ia5String::try_from("localhost").unwrap(),
    )]
}

#[derive(Clone)]
enum Behaviour {
    /// Answer with this status and body.
    Answer(u16, Vec<u8>),
    /// Complete the handshake, then say nothing.
    Silent,
    /// Send headers without a length, then body bytes forever.
    Endless,
}

/// A TLS server on 127.0.0.1 behaving as told, for every connection.
async fn server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    behaviour: Behaviour,
) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let behaviour = behaviour.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                match behaviour {
                    Behaviour::Answer(status, body) => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = tls.write_all(head.as_bytes()).await;
                        let _ = tls.write_all(&body).await;
                        let _ = tls.shutdown().await;
                    }
                    Behaviour::Silent => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Behaviour::Endless => {
                        let _ = tls
                            .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                            .await;
                        let chunk = vec![b' '; 64 * 1024];
                        while tls.write_all(&chunk).await.is_ok() {}
                    }
                }
            });
        }
    });
    addr
}

const DOC: &[u8] = br#"{"keys": []}"#;

fn web(ca: &Ca) -> EndpointAuth {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der.clone())).unwrap();
    EndpointAuth::Web(Arc::new(roots))
}

fn spiffe_auth(id: &str, authorities: &[&Ca]) -> EndpointAuth {
    EndpointAuth::Spiffe {
        id: podtls::parse_spiffe_id(id).unwrap(),
        authorities: authorities.iter().map(|c| c.der.clone()).collect(),
    }
}

#[tokio::test]
async fn https_web_fetches_from_an_endpoint_with_a_trusted_certificate_for_its_host() {
    let ca = ca("web ca");
    let (chain, key) = leaf(&ca, localhost());
    let addr = server(chain, key, Behaviour::Answer(200, DOC.to_vec())).await;
    let url = format!("https://localhost:{}/bundle", addr.port());
    let body = fetch(&url, &web(&ca), FetchLimits::default())
        .await
        .unwrap();
    assert_eq!(body, DOC);
}

#[tokio::test]
async fn https_web_refuses_a_certificate_for_another_host_or_from_an_untrusted_ca() {
    let ca_ = ca("web ca");
    let (chain, key) = leaf(
        &ca_,
        vec![SanType::DnsName(
            rcgen::string::Ia5String::try_from("bundle.other.example").unwrap(),
        )],
    );
    let addr = server(chain, key, Behaviour::Answer(200, DOC.to_vec())).await;
    let url = format!("https://localhost:{}/", addr.port());
    let err = fetch(&url, &web(&ca_), FetchLimits::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Transport { step: "tls", .. }),
        "{err}"
    );

    let (chain, key) = leaf(&ca_, localhost());
    let addr = server(chain, key, Behaviour::Answer(200, DOC.to_vec())).await;
    let url = format!("https://localhost:{}/", addr.port());
    let err = fetch(&url, &web(&ca("another ca")), FetchLimits::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Transport { step: "tls", .. }),
        "{err}"
    );
    // Not in Mozilla's roots either.
    let err = fetch(
        &url,
        &EndpointAuth::Web(Arc::new(web_roots(&[]))),
        FetchLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::Transport { step: "tls", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn https_spiffe_accepts_exactly_the_configured_id_from_the_current_bundle() {
    let peer = ca("peer ca");
    let (chain, key) = leaf(&peer, vec![uri("spiffe://peer.example/bundle-endpoint")]);
    let addr = server(chain, key, Behaviour::Answer(200, DOC.to_vec())).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let body = fetch(
        &url,
        &spiffe_auth("spiffe://peer.example/bundle-endpoint", &[&peer]),
        FetchLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(body, DOC);
}

#[tokio::test]
async fn https_spiffe_refuses_a_valid_svid_with_the_wrong_id() {
    // A workload of the peer trust domain (valid SVID, same CA) is not its bundle endpoint.
    let peer = ca("peer ca");
    let (chain, key) = leaf(&peer, vec![uri("spiffe://peer.example/ns/x/sa/attacker")]);
    let addr = server(chain, key, Behaviour::Answer(200, DOC.to_vec())).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let err = fetch(
        &url,
        &spiffe_auth("spiffe://peer.example/bundle-endpoint", &[&peer]),
        FetchLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::Transport { step: "tls", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn https_spiffe_refuses_the_right_id_signed_by_a_ca_outside_the_current_bundle() {
    let peer = ca("peer ca");
    let rogue = ca("rogue ca");
    let (chain, key) = leaf(&rogue, vec![uri("spiffe://peer.example/bundle-endpoint")]);
    let addr = server(chain, key, Behaviour::Answer(200, DOC.to_vec())).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let err = fetch(
        &url,
        &spiffe_auth("spiffe://peer.example/bundle-endpoint", &[&peer]),
        FetchLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::Transport { step: "tls", .. }),
        "{err}"
    );
    // And an SVID of another trust domain with the same path, even from a trusted CA.
    let (chain, key) = leaf(&peer, vec![uri("spiffe://evil.example/bundle-endpoint")]);
    let addr = server(chain, key, Behaviour::Answer(200, DOC.to_vec())).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let err = fetch(
        &url,
        &spiffe_auth("spiffe://peer.example/bundle-endpoint", &[&peer]),
        FetchLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::Transport { step: "tls", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn refuses_a_response_larger_than_the_limit_by_length_or_by_streaming() {
    let ca_ = ca("web ca");
    let limits = FetchLimits {
        max_bytes: 1024,
        timeout: Duration::from_secs(10),
    };
    let (chain, key) = leaf(&ca_, localhost());
    let addr = server(chain, key, Behaviour::Answer(200, vec![b' '; 1025])).await;
    let url = format!("https://localhost:{}/", addr.port());
    let err = fetch(&url, &web(&ca_), limits).await.unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: 1024, .. }),
        "{err}"
    );

    let (chain, key) = leaf(&ca_, localhost());
    let addr = server(chain, key, Behaviour::Endless).await;
    let url = format!("https://localhost:{}/", addr.port());
    let err = fetch(&url, &web(&ca_), limits).await.unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn gives_up_on_a_silent_endpoint_at_the_time_limit() {
    let ca_ = ca("web ca");
    let (chain, key) = leaf(&ca_, localhost());
    let addr = server(chain, key, Behaviour::Silent).await;
    let url = format!("https://localhost:{}/", addr.port());
    let limits = FetchLimits {
        max_bytes: 1024,
        timeout: Duration::from_millis(500),
    };
    let started = Instant::now();
    let err = fetch(&url, &web(&ca_), limits).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn refuses_other_statuses_and_non_https_urls() {
    let ca_ = ca("web ca");
    let (chain, key) = leaf(&ca_, localhost());
    let addr = server(chain, key, Behaviour::Answer(302, Vec::new())).await;
    let url = format!("https://localhost:{}/", addr.port());
    let err = fetch(&url, &web(&ca_), FetchLimits::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 302, .. }),
        "{err}"
    );
    for bad in ["http://localhost/", "localhost", "https:///x", "ftp://a/"] {
        let err = fetch(bad, &web(&ca_), FetchLimits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Url { .. }), "{bad}: {err}");
    }
    // Nothing listening.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = fetch(
        &format!("https://127.0.0.1:{port}/"),
        &web(&ca_),
        FetchLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Transport {
                step: "connect",
                ..
            }
        ),
        "{err}"
    );
}
