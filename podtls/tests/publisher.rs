//! Any identity source (`IdentityPublisher`), over real TLS on 127.0.0.1: what
//! is published is what the next handshake serves and verifies against; bad
//! material is refused by name and the last good stays served; a withdrawn
//! peer trust domain is refused (`VerifyError::DeFederated`) on both sides.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use podtls::test_util::{CertAuthority, Issued, LeafSpec};
use podtls::{
    connect_tcp, parse_trust_domain, Authorizer, ClientAuth, ClientTls, Error, HandshakeError,
    IdentityPublisher, LeafKind, PeerAuth, ServerAuth, ServerTls, TrustDomain, VerifyError,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn td(name: &str) -> TrustDomain {
    parse_trust_domain(name).unwrap()
}

fn key(issued: &Issued) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key_der.clone()))
}

/// Two workloads fed by publishers: a server in a.example, a client in
/// b.example, each federated with the other's trust domain.
struct Mesh {
    ca_a: CertAuthority,
    ca_b: CertAuthority,
    server: IdentityPublisher,
    client: IdentityPublisher,
    addr: SocketAddr,
    client_tls: ClientTls,
    /// The server side's handshake failures.
    refused: mpsc::UnboundedReceiver<HandshakeError>,
}

impl Mesh {
    async fn start() -> (Mesh, Issued, Issued) {
        let (ca_a, ca_b) = (CertAuthority::new("a"), CertAuthority::new("b"));
        let server = IdentityPublisher::new("server source", LeafKind::SpiffeSvid);
        let client = IdentityPublisher::new("client source", LeafKind::SpiffeSvid);
        let now = SystemTime::now();
        for p in [&server, &client] {
            p.publish_bundle(&td("a.example"), vec![ca_a.cert_der().clone()], now)
                .unwrap();
            p.publish_bundle(&td("b.example"), vec![ca_b.cert_der().clone()], now)
                .unwrap();
        }
        let s1 = ca_a.issue(&LeafSpec::spiffe("spiffe://a.example/server"));
        let c1 = ca_b.issue(&LeafSpec::spiffe("spiffe://b.example/client"));
        server
            .publish_credentials(s1.chain_der.clone(), key(&s1), now)
            .unwrap();
        client
            .publish_credentials(c1.chain_der.clone(), key(&c1), now)
            .unwrap();
        let (server_pod, client_pod) = (server.pod_tls(), client.pod_tls());
        assert!(server_pod.is_ready() && client_pod.is_ready());

        let server_tls = ServerTls::builder(server_pod.credentials().unwrap().clone())
            .client_auth(ClientAuth::required(
                server_pod.spiffe_bundles().clone(),
                Authorizer::member_of([td("b.example")]),
            ))
            .build()
            .unwrap();
        let client_tls = ClientTls::builder(ServerAuth::Spiffe(
            client_pod.spiffe_bundles().clone(),
            Authorizer::member_of([td("a.example")]),
        ))
        .client_credentials(client_pod.credentials().unwrap().clone())
        .build()
        .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, refused) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (tls, tx) = (server_tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tls.accept(tcp).await {
                        Ok((mut stream, PeerAuth::Verified(peer))) => {
                            let line = format!("client serial={}", peer.certificate.serial);
                            let _ = stream.write_all(line.as_bytes()).await;
                            let _ = stream.shutdown().await;
                        }
                        Ok(_) => panic!("client auth is required"),
                        Err(e) => {
                            let _ = tx.send(e);
                        }
                    }
                });
            }
        });
        let mesh = Mesh {
            ca_a,
            ca_b,
            server,
            client,
            addr,
            client_tls,
            refused,
        };
        (mesh, s1, c1)
    }

    /// One connection: (server serial, client serial the server saw).
    async fn exchange(&self) -> Result<(String, String), HandshakeError> {
        let (mut stream, server) = connect_tcp(&self.client_tls, self.addr, "a.example").await?;
        let mut line = String::new();
        stream
            .read_to_string(&mut line)
            .await
            .map_err(HandshakeError::Tls)?;
        let client = line
            .strip_prefix("client serial=")
            .ok_or_else(|| HandshakeError::Tls(std::io::Error::other(format!("line {line:?}"))))?;
        Ok((server.certificate.serial, client.to_string()))
    }
}

#[tokio::test]
async fn publishing_rotates_what_the_next_handshakes_serve_on_both_sides() {
    let (mesh, s1, c1) = Mesh::start().await;
    assert_eq!(
        mesh.exchange().await.unwrap(),
        (s1.serial.clone(), c1.serial.clone())
    );
    for _ in 0..3 {
        let s = mesh
            .ca_a
            .issue(&LeafSpec::spiffe("spiffe://a.example/server"));
        let c = mesh
            .ca_b
            .issue(&LeafSpec::spiffe("spiffe://b.example/client"));
        let now = SystemTime::now();
        mesh.server
            .publish_credentials(s.chain_der.clone(), key(&s), now)
            .unwrap();
        mesh.client
            .publish_credentials(c.chain_der.clone(), key(&c), now)
            .unwrap();
        assert_eq!(mesh.exchange().await.unwrap(), (s.serial, c.serial));
    }
}

#[tokio::test]
async fn bad_material_is_refused_by_name_and_the_last_good_stays_served() {
    let (mesh, s1, c1) = Mesh::start().await;
    let now = SystemTime::now();
    let other = mesh
        .ca_a
        .issue(&LeafSpec::spiffe("spiffe://a.example/server"));
    let expired = mesh
        .ca_a
        .issue(&LeafSpec::spiffe("spiffe://a.example/server").validity(
            now - Duration::from_secs(7200),
            now - Duration::from_secs(60),
        ));
    let not_svid = mesh.ca_a.issue(&LeafSpec::dns(&["server.a.example"]));
    let refusals: Vec<(&str, Result<(), podtls::error::PublishError>)> = vec![
        (
            "key of another leaf",
            mesh.server
                .publish_credentials(other.chain_der.clone(), key(&s1), now),
        ),
        (
            "expired leaf",
            mesh.server
                .publish_credentials(expired.chain_der.clone(), key(&expired), now),
        ),
        (
            "not an X509-SVID",
            mesh.server
                .publish_credentials(not_svid.chain_der.clone(), key(&not_svid), now),
        ),
        (
            "empty anchors",
            mesh.server
                .publish_bundle(&td("b.example"), Vec::new(), now),
        ),
        (
            "anchor of another trust domain",
            mesh.server.publish_bundle(
                &td("b.example"),
                vec![ca_naming("spiffe://a.example")],
                now,
            ),
        ),
    ];
    let mut kinds = Vec::new();
    for (what, result) in refusals {
        let error = result.expect_err(what);
        kinds.push(match error.error() {
            Error::KeyMismatch { .. } => "key of another leaf",
            Error::Expired { .. } => "expired leaf",
            Error::InvalidSvid { .. } => "not an X509-SVID",
            Error::EmptyTrustBundle { .. } => "empty anchors",
            Error::ForeignTrustAnchor { .. } => "anchor of another trust domain",
            other => panic!("{what}: unexpected {other}"),
        });
        assert!(
            error.to_string().contains("server source"),
            "{what}: the error names the source: {error}"
        );
        // Still served: the first credentials and the b.example anchors.
        assert_eq!(
            mesh.exchange().await.unwrap(),
            (s1.serial.clone(), c1.serial.clone()),
            "after {what}"
        );
    }
    assert_eq!(
        kinds,
        [
            "key of another leaf",
            "expired leaf",
            "not an X509-SVID",
            "empty anchors",
            "anchor of another trust domain"
        ]
    );
    let status = mesh.server.credentials().status();
    assert_eq!(status.generation, 1, "nothing bad was published");
    assert!(status.last_error.is_some());
}

#[tokio::test]
async fn withdrawing_a_peer_bundle_de_federates_its_next_handshake_on_either_side() {
    let (mut mesh, _, _) = Mesh::start().await;
    mesh.exchange().await.unwrap();
    let now = SystemTime::now();

    // The client withdraws the server's trust domain: the client refuses it.
    assert!(mesh.client.withdraw_bundle(&td("a.example"), now));
    let error = mesh.exchange().await.unwrap_err();
    assert!(
        matches!(error.rejection(), Some(VerifyError::DeFederated { trust_domain }) if trust_domain == "a.example"),
        "{error}"
    );
    let ca_a = mesh.ca_a.cert_der().clone();
    mesh.client
        .publish_bundle(&td("a.example"), vec![ca_a], now)
        .unwrap();
    mesh.exchange().await.unwrap();

    // The server withdraws the client's trust domain: the server refuses it.
    assert!(mesh.server.withdraw_bundle(&td("b.example"), now));
    assert!(mesh.exchange().await.is_err());
    // (The server also saw the client's alert of the first half: skip
    // failures that are not its own rejections.)
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let error = mesh.refused.recv().await.unwrap();
            if error.rejection().is_some() {
                return error;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(refused.rejection(), Some(VerifyError::DeFederated { trust_domain }) if trust_domain == "b.example"),
        "{refused}"
    );
    let statuses = mesh.server.pod_tls().trust_domain_statuses();
    let b = statuses
        .iter()
        .find(|s| s.trust_domain == td("b.example"))
        .unwrap();
    assert!(b.is_de_federated() && !b.loaded);
}

#[tokio::test]
async fn bundle_files_refuse_anchors_naming_another_trust_domain_too() {
    let dir = tempfile::tempdir().unwrap();
    let foreign_pem = ca_naming_pem("spiffe://b.example");
    // A `spiffe_bundle` file of a.example.
    let file = dir.path().join("a.pem");
    std::fs::write(&file, &foreign_pem).unwrap();
    // A credential folder's a.example bundle.
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(
        folder.join(podtls::credential_folder::trust_bundle_file_name(&td(
            "a.example",
        ))),
        &foreign_pem,
    )
    .unwrap();
    let from_file = podtls::PodTls::builder()
        .spiffe_bundle(td("a.example"), &file)
        .start()
        .unwrap();
    let from_folder = podtls::PodTls::builder()
        .credential_folder(&folder)
        .start()
        .unwrap();
    for pod in [from_file, from_folder] {
        let store = pod.spiffe_bundles().store(&td("a.example")).unwrap();
        let status = store.status();
        assert!(store.current().is_none(), "never served");
        let error = status.last_error.expect("refused");
        assert!(
            matches!(*error, Error::ForeignTrustAnchor { ref uri, .. } if uri == "spiffe://b.example"),
            "{error}"
        );
    }
}

/// A self-signed CA whose URI SAN is `uri` (as SPIRE's CAs carry their trust
/// domain's ID).
fn ca_naming_cert(uri: &str) -> rcgen::Certificate {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(uri.try_into().unwrap()));
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap()
}

fn ca_naming(uri: &str) -> CertificateDer<'static> {
    ca_naming_cert(uri).der().clone()
}

fn ca_naming_pem(uri: &str) -> String {
    ca_naming_cert(uri).pem()
}
