//! TLS handshakes over 127.0.0.1 through podtls' resolvers and verifiers.

mod common;

use std::time::Duration;

use common::*;
use podtls::test_util::{CertAuthority, KeyType, LeafSpec};
use podtls::{
    parse_spiffe_id, parse_trust_domain, Authorizer, ClientAuth, ClientTls, Credentials, LeafKind,
    Origin, ServerAuth, ServerTls, SpiffeBundles, Store,
};

fn creds_store(issued: &podtls::test_util::Issued) -> Store<Credentials> {
    let c = Credentials::from_bundle_pem(
        issued.bundle_pem().as_bytes(),
        &Origin::memory("test"),
        LeafKind::Any,
        std::time::SystemTime::now(),
    )
    .unwrap();
    Store::fixed("creds", c)
}

fn bundles(pairs: &[(&str, &[&CertAuthority])]) -> SpiffeBundles {
    SpiffeBundles::new(
        pairs
            .iter()
            .map(|(td, cas)| (parse_trust_domain(td).unwrap(), bundle_store(cas))),
    )
}

fn id(s: &str) -> podtls::SpiffeId {
    parse_spiffe_id(s).unwrap()
}

#[tokio::test]
async fn spiffe_mtls_works_for_every_key_type() {
    let ca = CertAuthority::new("ca");
    let b = bundles(&[(TD, &[&ca])]);
    for kt in KeyType::ALL {
        let server = ca.issue(&LeafSpec::spiffe("spiffe://cluster.local/ns/s/sa/server").key(kt));
        let client = ca.issue(&LeafSpec::spiffe("spiffe://cluster.local/ns/c/sa/client").key(kt));
        let tls = ServerTls::builder(creds_store(&server))
            .client_auth(ClientAuth::required(b.clone(), Authorizer::any()))
            .build()
            .unwrap();
        let srv = TestServer::start(tls).await;
        let cfg = ClientTls::builder(ServerAuth::Spiffe(
            b.clone(),
            Authorizer::exact(id("spiffe://cluster.local/ns/s/sa/server")),
        ))
        .client_credentials(creds_store(&client))
        .build()
        .unwrap();
        let seen = connect(srv.addr, cfg, "ignored.example")
            .await
            .unwrap_or_else(|e| panic!("{kt:?}: {e}"));
        assert_eq!(
            seen.line, "verified spiffe://cluster.local/ns/c/sa/client",
            "{kt:?}"
        );
        assert_eq!(seen.server_serial, server.serial, "{kt:?}");
        srv.stop().await;
    }
}

#[tokio::test]
async fn dns_verified_tls_checks_the_server_name() {
    let ca = CertAuthority::new("service-dns ca");
    let server = ca.issue(&LeafSpec::dns(&["echo.demo.svc"]).key(KeyType::EcdsaP384));
    let srv = TestServer::start(ServerTls::builder(creds_store(&server)).build().unwrap()).await;
    let cfg = ClientTls::builder(ServerAuth::Dns(bundle_store(&[&ca])))
        .build()
        .unwrap();
    let seen = connect(srv.addr, cfg.clone(), "echo.demo.svc")
        .await
        .unwrap();
    assert_eq!(seen.line, "anonymous");
    let err = connect(srv.addr, cfg, "other.demo.svc").await.unwrap_err();
    assert!(
        err.contains("not valid for name") || err.contains("NotValidForName"),
        "{err}"
    );

    let other_ca = CertAuthority::new("other");
    let cfg = ClientTls::builder(ServerAuth::Dns(bundle_store(&[&other_ca])))
        .build()
        .unwrap();
    let err = connect(srv.addr, cfg, "echo.demo.svc").await.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("unknown issuer"),
        "{err}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn required_client_auth_applies_the_authorizer() {
    let ca = CertAuthority::new("ca");
    let b = bundles(&[(TD, &[&ca])]);
    let server = spiffe_leaf(&ca, "/ns/s/sa/server");
    let tls = ServerTls::builder(creds_store(&server))
        .client_auth(ClientAuth::required(
            b.clone(),
            Authorizer::path_prefix(td(), "/ns/payments"),
        ))
        .build()
        .unwrap();
    let srv = TestServer::start(tls).await;
    let client_cfg = |path: &str| {
        ClientTls::builder(ServerAuth::Spiffe(b.clone(), Authorizer::any()))
            .client_credentials(creds_store(&spiffe_leaf(&ca, path)))
            .build()
            .unwrap()
    };
    let ok = connect(srv.addr, client_cfg("/ns/payments/sa/api"), "x")
        .await
        .unwrap();
    assert_eq!(
        ok.line,
        "verified spiffe://cluster.local/ns/payments/sa/api"
    );
    let err = connect(srv.addr, client_cfg("/ns/payments2/sa/api"), "x")
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    // No client certificate at all.
    let anon = ClientTls::builder(ServerAuth::Spiffe(b.clone(), Authorizer::any()))
        .build()
        .unwrap();
    assert!(connect(srv.addr, anon, "x").await.is_err());
    srv.stop().await;
}

#[tokio::test]
async fn client_rejects_server_outside_the_authorized_id() {
    let ca = CertAuthority::new("ca");
    let b = bundles(&[(TD, &[&ca])]);
    let server = spiffe_leaf(&ca, "/ns/s/sa/impostor");
    let srv = TestServer::start(ServerTls::builder(creds_store(&server)).build().unwrap()).await;
    let cfg = ClientTls::builder(ServerAuth::Spiffe(
        b,
        Authorizer::exact(id("spiffe://cluster.local/ns/s/sa/server")),
    ))
    .build()
    .unwrap();
    let err = connect(srv.addr, cfg, "x").await.unwrap_err();
    assert!(
        err.contains("impostor") && err.contains("not authorized"),
        "{err}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn peers_verify_only_against_their_own_trust_domain_bundle() {
    // Two trust domains with their own CAs. A certificate for
    // spiffe://a.org signed by b.org's CA must not verify, even though b.org's
    // CA is trusted (for b.org).
    let ca_a = CertAuthority::new("a.org ca");
    let ca_b = CertAuthority::new("b.org ca");
    let b = bundles(&[("a.org", &[&ca_a]), ("b.org", &[&ca_b])]);
    let server = ca_a.issue(&LeafSpec::spiffe("spiffe://a.org/server"));
    let tls = ServerTls::builder(creds_store(&server))
        .client_auth(ClientAuth::optional(b.clone(), Authorizer::any()))
        .build()
        .unwrap();
    let srv = TestServer::start(tls).await;
    let with_client = |leaf: &podtls::test_util::Issued| {
        ClientTls::builder(ServerAuth::Spiffe(b.clone(), Authorizer::any()))
            .client_credentials(creds_store(leaf))
            .build()
            .unwrap()
    };
    let good_b = ca_b.issue(&LeafSpec::spiffe("spiffe://b.org/client"));
    let seen = connect(srv.addr, with_client(&good_b), "x").await.unwrap();
    assert_eq!(seen.line, "verified spiffe://b.org/client");

    let cross = ca_b.issue(&LeafSpec::spiffe("spiffe://a.org/client"));
    let seen = connect(srv.addr, with_client(&cross), "x").await.unwrap();
    assert!(
        seen.line
            .starts_with("rejected certificate chain of spiffe://a.org/client"),
        "{}",
        seen.line
    );

    let ca_c = CertAuthority::new("c.org ca");
    let unknown = ca_c.issue(&LeafSpec::spiffe("spiffe://c.org/client"));
    let seen = connect(srv.addr, with_client(&unknown), "x").await.unwrap();
    assert!(
        seen.line
            .contains("trust domain \"c.org\" is not configured"),
        "{}",
        seen.line
    );

    let dns_only = ca_b.issue(&LeafSpec::dns(&["client.b.org"]));
    let seen = connect(srv.addr, with_client(&dns_only), "x")
        .await
        .unwrap();
    assert!(seen.line.contains("not a valid X509-SVID"), "{}", seen.line);

    let anon = ClientTls::builder(ServerAuth::Spiffe(b.clone(), Authorizer::any()))
        .build()
        .unwrap();
    assert_eq!(
        connect(srv.addr, anon, "x").await.unwrap().line,
        "anonymous"
    );
    srv.stop().await;
}

#[tokio::test]
async fn server_without_credentials_fails_closed() {
    let ca = CertAuthority::new("ca");
    let srv = TestServer::start(
        ServerTls::builder(Store::empty("not yet loaded"))
            .build()
            .unwrap(),
    )
    .await;
    let cfg = ClientTls::builder(ServerAuth::Dns(bundle_store(&[&ca])))
        .build()
        .unwrap();
    assert!(connect(srv.addr, cfg, "echo.demo.svc").await.is_err());

    // And a client whose roots are not loaded refuses every server.
    let server = ca.issue(&LeafSpec::dns(&["echo.demo.svc"]));
    let srv2 = TestServer::start(ServerTls::builder(creds_store(&server)).build().unwrap()).await;
    let cfg = ClientTls::builder(ServerAuth::Dns(Store::empty("roots")))
        .build()
        .unwrap();
    let err = connect(srv2.addr, cfg, "echo.demo.svc").await.unwrap_err();
    assert!(err.contains("no DNS trust roots are loaded"), "{err}");
    srv.stop().await;
    srv2.stop().await;
}

/// After the full handshake of a new generation, the next connection
/// resumes its session (no quiet period: each generation has its own cache).
async fn resumes_again(addr: std::net::SocketAddr, cfg: &ClientTls) {
    let seen = connect(addr, cfg.clone(), "server").await.unwrap();
    assert!(seen.resumed, "the new generation's session resumes");
}

#[tokio::test]
async fn resumption_is_cut_off_when_trust_or_credentials_change() {
    let ca = CertAuthority::new("ca");
    let (server_vol, client_vol) = (Volume::new(), Volume::new());
    server_vol.write_creds(&spiffe_leaf(&ca, "/ns/s/sa/server"));
    server_vol.write_trust(&[&ca]);
    client_vol.write_creds(&spiffe_leaf(&ca, "/ns/c/sa/client"));
    client_vol.write_trust(&[&ca]);
    let pod = |vol: &Volume| {
        podtls::PodTls::builder()
            .credential_bundle(vol.bundle_path())
            .spiffe_bundle(td(), vol.spiffe_path())
            .timing(fast_timing())
            .start()
            .unwrap()
    };
    let (server_pod, client_pod) = (pod(&server_vol), pod(&client_vol));
    let tls = ServerTls::builder(server_pod.credentials().unwrap().clone())
        .client_auth(ClientAuth::required(
            server_pod.spiffe_bundles().clone(),
            Authorizer::any(),
        ))
        .build()
        .unwrap();
    let srv = TestServer::start_with(tls, describe_full).await;
    let cfg = ClientTls::builder(ServerAuth::Spiffe(
        client_pod.spiffe_bundles().clone(),
        Authorizer::any(),
    ))
    .client_credentials(client_pod.credentials().unwrap().clone())
    .build()
    .unwrap();
    let first = connect(srv.addr, cfg.clone(), "server").await.unwrap();
    assert!(!first.resumed);
    let second = connect(srv.addr, cfg.clone(), "server").await.unwrap();
    assert!(second.resumed, "nothing changed: resumed");

    // The client's trust bundle changes: full handshake, then resumable again.
    let ca2 = CertAuthority::new("ca2");
    client_vol.write_trust(&[&ca, &ca2]);
    let store = client_pod.spiffe_bundles().store(&td()).unwrap().clone();
    wait_status(&store, "new bundle", |s| s.generation == 2).await;
    assert!(
        !connect(srv.addr, cfg.clone(), "server")
            .await
            .unwrap()
            .resumed
    );
    resumes_again(srv.addr, &cfg).await;

    // The client's certificate rotates: the next connection presents it.
    let new_client = spiffe_leaf(&ca, "/ns/c/sa/client");
    client_vol.write_creds(&new_client);
    let creds = client_pod.credentials().unwrap().clone();
    wait_status(&creds, "client rotated", |s| s.generation == 2).await;
    let seen = connect(srv.addr, cfg.clone(), "server").await.unwrap();
    assert!(!seen.resumed);
    assert!(seen.line.ends_with(&new_client.serial), "{}", seen.line);

    // The server's certificate rotates: clients get a full handshake with it.
    resumes_again(srv.addr, &cfg).await;
    let new_server = spiffe_leaf(&ca, "/ns/s/sa/server");
    server_vol.write_creds(&new_server);
    let creds = server_pod.credentials().unwrap().clone();
    wait_status(&creds, "server rotated", |s| s.generation == 2).await;
    let seen = connect(srv.addr, cfg.clone(), "server").await.unwrap();
    assert!(!seen.resumed);
    assert_eq!(seen.server_serial, new_server.serial);
    tokio::time::timeout(Duration::from_secs(5), srv.stop())
        .await
        .unwrap();
}

/// `ServerTls` and `ClientTls` have one shape: built by a builder, cheap to
/// clone, their live credentials and rustls configuration (`config()` /
/// `owned_config()`, resumption off) handed out the same way; a plain
/// tokio-rustls pair handshakes with the owned configurations, through
/// podtls' live resolver and verifiers.
#[tokio::test]
async fn server_and_client_tls_mirror_each_other() {
    use std::sync::Arc;

    use podtls::certificate::CertInfo;
    use podtls::rustls::pki_types::ServerName;
    use podtls::tokio_rustls::{TlsAcceptor, TlsConnector};

    let ca = CertAuthority::new("ca");
    let b = bundles(&[(TD, &[&ca])]);
    let server = ca.issue(&LeafSpec::spiffe("spiffe://cluster.local/ns/s/sa/server"));
    let client = ca.issue(&LeafSpec::spiffe("spiffe://cluster.local/ns/c/sa/client"));
    let stls = ServerTls::builder(creds_store(&server))
        .client_auth(ClientAuth::required(b.clone(), Authorizer::any()))
        .alpn(&[b"h2"])
        .build()
        .unwrap();
    let ctls = ClientTls::builder(ServerAuth::Spiffe(b.clone(), Authorizer::any()))
        .client_credentials(creds_store(&client))
        .alpn(&[b"h2"])
        .build()
        .unwrap();
    let serial = |s: &Store<Credentials>| s.current().unwrap().info().serial.clone();
    assert_eq!(serial(stls.credentials()), server.serial);
    assert_eq!(serial(ctls.client_credentials().unwrap()), client.serial);
    let anonymous = ClientTls::builder(ServerAuth::Spiffe(b, Authorizer::any()))
        .build()
        .unwrap();
    assert!(anonymous.client_credentials().is_none());

    let (sc, cc) = (stls.owned_config(), ctls.owned_config());
    assert_eq!(sc.send_tls13_tickets, 0, "no resumption outside podtls");
    assert!(!sc.session_storage.can_cache(), "no server session cache");
    assert_eq!(sc.alpn_protocols, [b"h2".to_vec()]);
    assert_eq!(cc.alpn_protocols, [b"h2".to_vec()]);
    assert_eq!(sc.alpn_protocols, stls.config().alpn_protocols);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(sc));
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = acceptor.accept(tcp).await.unwrap();
        let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        CertInfo::from_der(&leaf).unwrap().serial
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("ignored.example").unwrap();
    let stream = TlsConnector::from(Arc::new(cc))
        .connect(name, tcp)
        .await
        .unwrap();
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(CertInfo::from_der(&leaf).unwrap().serial, server.serial);
    assert_eq!(accepted.await.unwrap(), client.serial);
}
