//! A refused peer learns why: each verification failure reaches it as the
//! matching TLS alert, not `certificate_unknown` for everything.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use podtls::test_util::{CertAuthority, Issued, LeafSpec};
use podtls::{
    Authorizer, ClientAuth, ClientTls, Credentials, LeafKind, Origin, ServerAuth, ServerTls,
    SpiffeBundles, Store,
};
use rustls::AlertDescription;
use tokio::io::AsyncReadExt;

fn creds(issued: &Issued) -> Store<Credentials> {
    // Loaded while valid (an expired one is then still presented).
    let info = podtls::certificate::CertInfo::from_der(&issued.leaf_der).unwrap();
    Store::fixed(
        "creds",
        Credentials::from_bundle_pem(
            issued.bundle_pem().as_bytes(),
            &Origin::memory("creds"),
            LeafKind::Any,
            info.not_before + Duration::from_secs(1),
        )
        .unwrap(),
    )
}

/// The alert a client presenting `client` receives from a server that
/// requires SPIFFE client auth for CA `ca` and IDs under `/ns/c`.
async fn alert_for(
    ca: &CertAuthority,
    client: &Issued,
    version: &'static rustls::SupportedProtocolVersion,
) -> AlertDescription {
    let server = ServerTls::builder(creds(&spiffe_leaf(ca, "/ns/s/sa/server")))
        .client_auth(ClientAuth::required(
            SpiffeBundles::new([(td(), bundle_store(&[ca]))]),
            Authorizer::path_prefix(td(), "/ns/c"),
        ))
        .protocol_versions(&[version])
        .build()
        .unwrap();
    let srv = TestServer::start(server).await;
    let tls = ClientTls::builder(ServerAuth::Spiffe(
        SpiffeBundles::new([(td(), bundle_store(&[ca]))]),
        Authorizer::any(),
    ))
    .client_credentials(creds(client))
    .protocol_versions(&[version])
    .build()
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("server").unwrap();
    // TLS 1.2 reports it in the handshake, TLS 1.3 on the first read.
    let error = match tokio_rustls::TlsConnector::from(tls.config().clone())
        .connect(name, tcp)
        .await
    {
        Err(e) => e,
        Ok(mut s) => {
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.expect_err("refused")
        }
    };
    srv.stop().await;
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(alert)) => *alert,
        other => panic!("expected an alert, got {other:?} ({error})"),
    }
}

#[tokio::test]
async fn each_client_rejection_reaches_the_client_as_its_alert() {
    let ca = CertAuthority::new("ca");
    let other_ca = CertAuthority::new("other");
    let now = SystemTime::now();
    let expired = ca.issue(
        &LeafSpec::spiffe(&format!("spiffe://{TD}/ns/c/sa/client")).validity(
            now - Duration::from_secs(7200),
            now - Duration::from_secs(60),
        ),
    );
    let foreign_td = other_ca.issue(&LeafSpec::spiffe("spiffe://other.example/ns/c/sa/client"));
    let cases = [
        (
            "expired leaf",
            expired,
            AlertDescription::CertificateExpired,
        ),
        (
            "unknown CA",
            spiffe_leaf(&other_ca, "/ns/c/sa/client"),
            AlertDescription::UnknownCA,
        ),
        (
            "trust domain not configured",
            foreign_td,
            AlertDescription::UnknownCA,
        ),
        (
            "ID not authorized",
            spiffe_leaf(&ca, "/ns/other/sa/client"),
            AlertDescription::AccessDenied,
        ),
        (
            "not an X509-SVID",
            ca.issue(&LeafSpec::dns(&["client.svc"])),
            AlertDescription::BadCertificate,
        ),
    ];
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        for (what, leaf, want) in &cases {
            let got = alert_for(&ca, leaf, version).await;
            assert_eq!(got, *want, "{what} over {:?}", version.version);
        }
    }
}

#[tokio::test]
async fn a_rejected_server_receives_the_clients_alert() {
    // The podtls client refuses a server of an unknown CA with unknown_ca.
    let ca = CertAuthority::new("ca");
    let other = CertAuthority::new("other");
    let server = ServerTls::builder(creds(&spiffe_leaf(&other, "/ns/s/sa/server")))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server.accept(tcp).await.map(|_| ()).unwrap_err()
    });
    let client = ClientTls::builder(ServerAuth::Spiffe(
        SpiffeBundles::new([(td(), bundle_store(&[&ca]))]),
        Authorizer::any(),
    ))
    .build()
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("server").unwrap();
    assert!(client.connect(name, tcp).await.is_err());
    let server_error = accepted.await.unwrap();
    let io = match server_error {
        podtls::HandshakeError::Tls(io) => io,
        other => panic!("{other}"),
    };
    assert!(
        matches!(
            io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::AlertReceived(AlertDescription::UnknownCA))
        ),
        "{io}"
    );
}
