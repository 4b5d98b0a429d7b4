//! The pod-identity signer and the issuing cluster, end to end through podtls'
//! verifier; the Go interop fixture.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podtls::{
    certificate::POD_IDENTITY_OID, certificate::SUBJECT_INFO_ACCESS_OID, verification::PeerRole,
    Authorizer, Origin, SpiffeBundles, Store, TrustBundle,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::test_util::{check_issued_status, entitled_snapshot, RequesterKey};
use crate::*;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const POD_UID: &str = "0b6c7c9e-1c1e-4c52-9d7e-4a1f2f0c7f10";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn ca() -> SigningCa {
    generate_ca(
        "pi-1",
        KeyType::EcdsaP256,
        now() - Duration::from_secs(3600),
        DEFAULT_CA_VALIDITY,
    )
    .unwrap()
}

fn td() -> spiffe::TrustDomain {
    parse_trust_domain("cluster.local").unwrap()
}

fn config() -> SignerConfig {
    SignerConfig::pod_identity(td())
        .with_issuing_cluster(Some(IssuingCluster::new(ISSUER).unwrap()))
}

fn request(signer: &str) -> IssuanceRequest {
    IssuanceRequest {
        namespace: "shop".into(),
        name: "web-0-pcr".into(),
        signer_name: signer.into(),
        pod_name: "web-0".into(),
        pod_uid: POD_UID.into(),
        service_account_name: "web".into(),
        service_account_uid: "5f0c3b9e-4c6e-4f43-8a51-1f5a2c9d0e11".into(),
        node_name: "node-1".into(),
        node_uid: "9a1d2e3f-0b4c-4d5e-8f60-7a8b9c0d1e2f".into(),
        max_expiration_seconds: Some(86_400),
        key_material: RequesterKey::cached(KeyType::EcdsaP256).csr_material(),
        unverified_user_annotations: BTreeMap::new(),
    }
}

fn service(name: &str, t: ServiceType) -> ServiceInfo {
    ServiceInfo {
        namespace: "shop".into(),
        name: name.into(),
        service_type: t,
        selector: BTreeMap::from([("app".into(), "web".into())]),
    }
}

fn snapshot(req: &IssuanceRequest, services: Vec<ServiceInfo>) -> PodSnapshot {
    let mut snap = entitled_snapshot(req, &[("app", "web")]);
    snap.services = services;
    snap
}

fn issue_ok(
    req: &IssuanceRequest,
    config: &SignerConfig,
    snap: &PodSnapshot,
) -> (Issued, SigningCa) {
    let ca = ca();
    let issued = issue(req, config, &ca, snap, now()).unwrap_or_else(|e| panic!("{e}"));
    check_issued_status(req, &issued, now()).expect("kube-apiserver accepts the status");
    (issued, ca)
}

struct Facts {
    cn: Vec<String>,
    uris: Vec<String>,
    dns: Vec<String>,
    server_auth: bool,
    client_auth: bool,
    pod_identity_critical: Option<bool>,
    sia_critical: Option<bool>,
}

fn facts(der: &[u8]) -> Facts {
    let (_, leaf) = X509Certificate::from_der(der).unwrap();
    let mut f = Facts {
        cn: leaf
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap().to_string())
            .collect(),
        uris: vec![],
        dns: vec![],
        server_auth: false,
        client_auth: false,
        pod_identity_critical: None,
        sia_critical: None,
    };
    for ext in leaf.extensions() {
        match ext.oid.to_id_string().as_str() {
            POD_IDENTITY_OID => f.pod_identity_critical = Some(ext.critical),
            SUBJECT_INFO_ACCESS_OID => f.sia_critical = Some(ext.critical),
            _ => {}
        }
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::URI(u) => f.uris.push(u.to_string()),
                        GeneralName::DNSName(d) => f.dns.push(d.to_string()),
                        other => panic!("unexpected SAN {other:?}"),
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                f.server_auth = eku.server_auth;
                f.client_auth = eku.client_auth;
            }
            _ => {}
        }
    }
    f
}

fn expected_identity(req: &IssuanceRequest) -> PodIdentity {
    PodIdentity {
        namespace: req.namespace.clone(),
        service_account_name: req.service_account_name.clone(),
        service_account_uid: req.service_account_uid.clone(),
        pod_name: req.pod_name.clone(),
        pod_uid: req.pod_uid.clone(),
        node_name: req.node_name.clone(),
        node_uid: req.node_uid.clone(),
    }
}

#[test]
fn issues_the_pods_whole_identity() {
    let req = request(POD_IDENTITY_SIGNER_NAME);
    let snap = snapshot(
        &req,
        vec![
            service("web", ServiceType::ClusterIp),
            service("web-admin", ServiceType::NodePort),
        ],
    );
    let (issued, _) = issue_ok(&req, &config(), &snap);
    let f = facts(&issued.leaf_der);
    assert_eq!(f.uris, ["spiffe://cluster.local/ns/shop/sa/web"]);
    assert_eq!(f.dns, ["web-admin.shop.svc", "web.shop.svc"]);
    assert_eq!(f.cn, ["web-0"]);
    assert!(f.server_auth && f.client_auth);
    assert_eq!(f.pod_identity_critical, Some(false));
    assert_eq!(f.sia_critical, Some(false));
    assert_eq!(
        PodIdentity::from_own_certificate(&issued.leaf_der).unwrap(),
        Some(expected_identity(&req))
    );
    // A valid X509-SVID for podtls.
    podtls::verification::validate_svid_leaf_der(&issued.leaf_der).expect("valid X509-SVID");
}

#[test]
fn a_pod_without_services_still_gets_its_identity() {
    let req = request(POD_IDENTITY_SIGNER_NAME);
    let (issued, _) = issue_ok(&req, &config(), &snapshot(&req, vec![]));
    let f = facts(&issued.leaf_der);
    assert_eq!(f.uris.len(), 1);
    assert!(f.dns.is_empty());
}

#[test]
fn podtls_reads_the_pod_identity_and_issuer_back_from_a_verified_chain() {
    let req = request(POD_IDENTITY_SIGNER_NAME);
    let snap = snapshot(&req, vec![service("web", ServiceType::ClusterIp)]);
    let (issued, ca) = issue_ok(&req, &config(), &snap);
    let root_pem = {
        let mut s = String::new();
        crate::pem::push_certificate(&mut s, ca.root_der());
        s
    };
    let bundle = TrustBundle::from_pem(root_pem.as_bytes(), &Origin::memory("root")).unwrap();
    let bundles = SpiffeBundles::new([(
        podtls::parse_trust_domain("cluster.local").unwrap(),
        Store::fixed("bundle", bundle),
    )]);
    let at = UnixTime::since_unix_epoch(
        (now() + Duration::from_secs(60))
            .duration_since(UNIX_EPOCH)
            .unwrap(),
    );
    let authorizer = Authorizer::all_of([
        Authorizer::pod_namespace("shop"),
        Authorizer::issued_by(IssuingCluster::new(ISSUER).unwrap()),
    ]);
    let peer = podtls::verification::verify_spiffe_peer(
        &CertificateDer::from(issued.leaf_der.clone()),
        &[],
        &bundles,
        &authorizer,
        PeerRole::Client,
        at,
    )
    .unwrap();
    assert_eq!(peer.pod_identity(), Some(&expected_identity(&req)));
    assert_eq!(peer.issuing_cluster().unwrap().as_str(), ISSUER);
    // Another namespace's rule refuses it.
    assert!(podtls::verification::verify_spiffe_peer(
        &CertificateDer::from(issued.leaf_der.clone()),
        &[],
        &bundles,
        &Authorizer::pod_namespace("billing"),
        PeerRole::Client,
        at,
    )
    .is_err());
}

#[test]
fn every_signer_names_the_issuing_cluster_when_configured() {
    let cluster = Some(IssuingCluster::new(ISSUER).unwrap());
    for config in [
        SignerConfig::service_dns().with_issuing_cluster(cluster.clone()),
        SignerConfig::spiffe(td()).with_issuing_cluster(cluster.clone()),
        SignerConfig::pod_identity(td()).with_issuing_cluster(cluster.clone()),
    ] {
        let req = request(&config.name);
        let snap = snapshot(&req, vec![service("web", ServiceType::ClusterIp)]);
        let (issued, _) = issue_ok(&req, &config, &snap);
        let f = facts(&issued.leaf_der);
        assert_eq!(f.sia_critical, Some(false), "{}", config.name);
        // Still exactly one URI SAN where there is a SPIFFE ID, none otherwise.
        assert!(f.uris.len() <= 1, "{}", config.name);
        let (_, leaf) = X509Certificate::from_der(&issued.leaf_der).unwrap();
        let sia = leaf
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == SUBJECT_INFO_ACCESS_OID)
            .unwrap();
        assert_eq!(
            IssuingCluster::from_sia_der(sia.value).unwrap(),
            cluster,
            "{}",
            config.name
        );
        // Only pod-identity carries a PodIdentity.
        assert_eq!(
            f.pod_identity_critical.is_some(),
            matches!(config.kind, SignerKind::PodIdentity { .. }),
            "{}",
            config.name
        );
    }
    // Without an issuing cluster: no SIA.
    let req = request(POD_IDENTITY_SIGNER_NAME);
    let plain = SignerConfig::pod_identity(td());
    let (issued, _) = issue_ok(&req, &plain, &snapshot(&req, vec![]));
    assert_eq!(facts(&issued.leaf_der).sia_critical, None);
}

#[test]
fn the_entitlement_checks_apply() {
    let req = request(POD_IDENTITY_SIGNER_NAME);
    let mut snap = snapshot(&req, vec![]);
    snap.pod.as_mut().unwrap().uid = "another-uid".into();
    match issue(&req, &config(), &ca(), &snap, now()) {
        Err(NotIssued::Denied(d)) => assert_eq!(d.reason, DenialReason::PodUidMismatch),
        other => panic!("{:?}", other.map(|i| i.identities)),
    }
    let mut snap = snapshot(&req, vec![]);
    snap.pod.as_mut().unwrap().certificate_sources.clear();
    match issue(&req, &config(), &ca(), &snap, now()) {
        Err(NotIssued::Denied(d)) => assert_eq!(d.reason, DenialReason::NoPodCertificateSource),
        other => panic!("{:?}", other.map(|i| i.identities)),
    }
}

#[test]
fn user_annotations_choose_a_subset_and_a_non_selecting_service_is_never_issued() {
    let services = vec![
        service("web", ServiceType::ClusterIp),
        service("web-admin", ServiceType::ClusterIp),
        ServiceInfo {
            selector: BTreeMap::from([("app".into(), "payments".into())]),
            ..service("payments", ServiceType::ClusterIp)
        },
    ];
    for cfg in [config(), SignerConfig::service_dns()] {
        let mut req = request(&cfg.name);
        req.unverified_user_annotations =
            BTreeMap::from([(SERVICES_ANNOTATION.into(), "web-admin".into())]);
        let snap = snapshot(&req, services.clone());
        let (issued, _) = issue_ok(&req, &cfg, &snap);
        assert_eq!(
            facts(&issued.leaf_der).dns,
            ["web-admin.shop.svc"],
            "{}",
            cfg.name
        );

        // Attack: ask for payments, which does not select the pod.
        req.unverified_user_annotations =
            BTreeMap::from([(SERVICES_ANNOTATION.into(), "web,payments".into())]);
        match issue(&req, &cfg, &ca(), &snap, now()) {
            Err(NotIssued::Pending(p)) => {
                assert_eq!(p.reason, PendingReason::ChosenServiceNotSelecting);
                assert!(p.message.contains("payments"), "{p}");
            }
            other => panic!("{}: {:?}", cfg.name, other.map(|i| i.identities)),
        }
        // Another key next to it: denied as before.
        req.unverified_user_annotations = BTreeMap::from([
            (SERVICES_ANNOTATION.into(), "web".into()),
            ("example.com/ttl".into(), "1h".into()),
        ]);
        match issue(&req, &cfg, &ca(), &snap, now()) {
            Err(NotIssued::Denied(d)) => {
                assert_eq!(d.reason, DenialReason::InvalidUnverifiedUserAnnotations);
                assert!(d.message.contains("example.com/ttl"), "{d}");
                assert!(!d.message.contains("remove row-major.net/services"), "{d}");
            }
            other => panic!("{}: {:?}", cfg.name, other.map(|i| i.identities)),
        }
    }
    // The spiffe signer issues no DNS names and recognises no key.
    let mut req = request(SPIFFE_SIGNER_NAME);
    req.unverified_user_annotations = BTreeMap::from([(SERVICES_ANNOTATION.into(), "web".into())]);
    let snap = snapshot(&req, services);
    match issue(&req, &SignerConfig::spiffe(td()), &ca(), &snap, now()) {
        Err(NotIssued::Denied(d)) => {
            assert_eq!(d.reason, DenialReason::InvalidUnverifiedUserAnnotations)
        }
        other => panic!("{:?}", other.map(|i| i.identities)),
    }
}

#[test]
fn a_pod_name_longer_than_a_common_name_is_left_out_of_the_subject() {
    let mut req = request(POD_IDENTITY_SIGNER_NAME);
    req.pod_name = format!("web-{}", "x".repeat(100));
    let (issued, _) = issue_ok(&req, &config(), &snapshot(&req, vec![]));
    let f = facts(&issued.leaf_der);
    assert!(f.cn.is_empty());
    let (_, leaf) = X509Certificate::from_der(&issued.leaf_der).unwrap();
    assert!(leaf.subject().iter_attributes().next().is_none());
    // An empty subject needs a critical SAN (RFC 5280 4.2.1.6, X509-SVID 3.1).
    let san = leaf
        .extensions()
        .iter()
        .find(|e| {
            matches!(
                e.parsed_extension(),
                ParsedExtension::SubjectAlternativeName(_)
            )
        })
        .unwrap();
    assert!(san.critical);
    assert_eq!(
        PodIdentity::from_own_certificate(&issued.leaf_der)
            .unwrap()
            .unwrap()
            .pod_name,
        req.pod_name
    );
    // Exactly 64 characters: kept.
    req.pod_name = "p".repeat(MAX_COMMON_NAME_LEN);
    let (issued, _) = issue_ok(&req, &config(), &snapshot(&req, vec![]));
    assert_eq!(facts(&issued.leaf_der).cn, [req.pod_name.clone()]);
}

/// The certificate the Go interop test (`e2e/cluster/pod_identity_test.go`) decodes
/// with `encoding/asn1` into the prototype's struct.
const GO_FIXTURE_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../e2e/cluster/testdata/pod-identity"
);

/// The fixture is our issuer's output and stays current: its PodIdentity and SIA
/// values are byte-for-byte what the code encodes today for the fixture's request.
/// Regenerate with `PODTLS_UPDATE_FIXTURES=1 cargo test -p signer go_interop_fixture`.
#[test]
fn go_interop_fixture_is_current() {
    let dir = std::path::Path::new(GO_FIXTURE_DIR);
    let req = request(POD_IDENTITY_SIGNER_NAME);
    if std::env::var_os("PODTLS_UPDATE_FIXTURES").is_some() {
        let snap = snapshot(&req, vec![service("web", ServiceType::ClusterIp)]);
        let ca = generate_ca(
            "go-fixture",
            KeyType::EcdsaP256,
            SystemTime::now() - Duration::from_secs(60),
            Duration::from_secs(100 * 365 * 24 * 3600),
        )
        .unwrap();
        let cfg = config().with_name(POD_IDENTITY_SIGNER_NAME);
        // Long-lived so the Go test can verify the chain for years.
        let mut cfg = cfg;
        cfg.max_lifetime = Duration::from_secs(10 * 365 * 24 * 3600);
        let issued = issue(&req_with_max(&req), &cfg, &ca, &snap, SystemTime::now()).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("leaf.pem"), &issued.certificate_chain).unwrap();
        let mut root = String::new();
        crate::pem::push_certificate(&mut root, ca.root_der());
        std::fs::write(dir.join("root.pem"), root).unwrap();
    }
    let pem = std::fs::read_to_string(dir.join("leaf.pem")).expect(
        "e2e/cluster/testdata/pod-identity/leaf.pem is missing; regenerate with PODTLS_UPDATE_FIXTURES=1",
    );
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: CertificateDer<'static>| c.to_vec())
        .expect("the fixture holds a certificate");
    let (_, leaf) = X509Certificate::from_der(&der).unwrap();
    let value = |oid: &str| {
        leaf.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .map(|e| e.value.to_vec())
            .unwrap_or_else(|| panic!("the fixture has no {oid}; regenerate it"))
    };
    let stale = "the Go interop fixture is stale (the encoding changed); regenerate with PODTLS_UPDATE_FIXTURES=1 cargo test -p signer go_interop_fixture";
    assert_eq!(
        value(POD_IDENTITY_OID),
        expected_identity(&req).to_der().unwrap(),
        "{stale}"
    );
    assert_eq!(
        value(SUBJECT_INFO_ACCESS_OID),
        IssuingCluster::new(ISSUER).unwrap().to_sia_der().unwrap(),
        "{stale}"
    );
    let f = facts(&der);
    assert_eq!(f.uris, ["spiffe://cluster.local/ns/shop/sa/web"], "{stale}");
    assert_eq!(f.dns, ["web.shop.svc"], "{stale}");
    assert_eq!(f.cn, ["web-0"], "{stale}");
}

/// The fixture's request, allowing its long lifetime.
fn req_with_max(req: &IssuanceRequest) -> IssuanceRequest {
    IssuanceRequest {
        max_expiration_seconds: Some(i32::MAX),
        ..req.clone()
    }
}

#[test]
fn attack_a_name_over_253_characters_never_reaches_the_certificate() {
    let ns = "n".repeat(63);
    let (host, sub) = ("h".repeat(63), "s".repeat(63));
    let suffix = format!("{}.example", "x".repeat(50));
    let mut req = request(POD_IDENTITY_SIGNER_NAME);
    req.namespace = ns.clone();
    let mut snap = snapshot(&req, vec![]);
    {
        let pod = snap.pod.as_mut().unwrap();
        pod.hostname = Some(host.clone());
        pod.subdomain = Some(sub.clone());
    }
    snap.services = vec![ServiceInfo {
        namespace: ns.clone(),
        ..service(&sub, ServiceType::Headless)
    }];
    let cfg = config().with_dns(DnsNameOptions::new().with_suffix(&suffix).unwrap());
    let (issued, _) = issue_ok(&req, &cfg, &snap);
    let long = format!("{host}.{sub}.{ns}.svc.{suffix}");
    assert_eq!(issued.left_out, std::slice::from_ref(&long));
    let dns = facts(&issued.leaf_der).dns;
    assert!(!dns.contains(&long));
    assert!(dns.contains(&format!("{host}.{sub}.{ns}.svc")), "{dns:?}");
    assert!(dns.iter().all(|n| n.len() <= MAX_DNS_NAME_LEN));
}
