//! Issuance rules, one behaviour per test; every issued certificate is also checked
//! against kube-apiserver's status rules.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::test_util::{check_issued_status, entitled_snapshot, RequesterKey};
use crate::*;

const POD_UID: &str = "6f1c2b4e-8d0a-4e57-9a3b-2c1d0e9f8a7b";
const NS: &str = "shop";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(456)
}

fn ca(key_type: KeyType) -> SigningCa {
    generate_ca(
        "1",
        key_type,
        now() - Duration::from_secs(3600),
        DEFAULT_CA_VALIDITY,
    )
    .expect("generate CA")
}

fn spiffe_config() -> SignerConfig {
    SignerConfig::spiffe(parse_trust_domain("cluster.local").expect("td"))
}

fn request(signer: &str, material: KeyMaterial) -> IssuanceRequest {
    IssuanceRequest {
        namespace: NS.into(),
        name: "web-0-pcr".into(),
        signer_name: signer.into(),
        pod_name: "web-0".into(),
        pod_uid: POD_UID.into(),
        service_account_name: "web".into(),
        service_account_uid: "sa-uid-web".into(),
        node_name: "node-1".into(),
        node_uid: "node-uid-1".into(),
        max_expiration_seconds: Some(86_400),
        key_material: material,
        unverified_user_annotations: BTreeMap::new(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn service(name: &str, t: ServiceType, selector: &[(&str, &str)]) -> ServiceInfo {
    ServiceInfo {
        namespace: NS.into(),
        name: name.into(),
        service_type: t,
        selector: labels(selector),
    }
}

/// The web-0 pod (app=web, tier=front), entitled to a certificate of either signer,
/// and `services`.
fn snapshot(services: Vec<ServiceInfo>) -> PodSnapshot {
    let any = request(
        SERVICE_DNS_SIGNER_NAME,
        KeyMaterial::StubPkcs10 { csr: vec![] },
    );
    let mut snap = entitled_snapshot(&any, &[("app", "web"), ("tier", "front")]);
    if let Some(pod) = snap.pod.as_mut() {
        let spiffe_sources: Vec<CertificateSource> = pod
            .certificate_sources
            .iter()
            .map(|s| CertificateSource {
                signer_name: SPIFFE_SIGNER_NAME.into(),
                ..s.clone()
            })
            .collect();
        pod.certificate_sources.extend(spiffe_sources);
    }
    snap.services = services;
    snap
}

/// The snapshot in which `req`'s pod is entitled (no Services).
fn entitled(req: &IssuanceRequest) -> PodSnapshot {
    entitled_snapshot(req, &[("app", "web"), ("tier", "front")])
}

/// Issues and asserts the API server's status rules hold (API server clock = `now()`).
fn issue_ok(
    req: &IssuanceRequest,
    config: &SignerConfig,
    ca: &SigningCa,
    snap: &PodSnapshot,
) -> Issued {
    let issued = match issue(req, config, ca, snap, now()) {
        Ok(i) => i,
        Err(e) => panic!("expected a certificate, got {e}"),
    };
    if let Err(errs) = check_issued_status(req, &issued, now()) {
        panic!("kube-apiserver would reject the status: {errs:?}");
    }
    issued
}

fn not_issued(
    req: &IssuanceRequest,
    config: &SignerConfig,
    ca: &SigningCa,
    snap: &PodSnapshot,
    at: SystemTime,
) -> NotIssued {
    match issue(req, config, ca, snap, at) {
        Ok(i) => panic!("expected no certificate, got one for {:?}", i.identities),
        Err(e) => e,
    }
}

fn denial(outcome: NotIssued) -> Denial {
    match outcome {
        NotIssued::Denied(d) => d,
        other => panic!("expected a denial, got {other}"),
    }
}

struct LeafFacts {
    subject_empty: bool,
    dns: Vec<String>,
    uris: Vec<String>,
    other_sans: usize,
    san_critical: bool,
    server_auth: bool,
    client_auth: bool,
    digital_signature: bool,
    key_encipherment: bool,
    cert_sign: bool,
    is_ca: Option<bool>,
}

fn leaf_facts(der: &[u8], ca: &SigningCa) -> LeafFacts {
    let (_, leaf) = X509Certificate::from_der(der).expect("leaf parses");
    let (_, root) = X509Certificate::from_der(ca.root_der()).expect("root parses");
    leaf.verify_signature(Some(root.public_key()))
        .expect("leaf is signed by the CA key");
    let mut f = LeafFacts {
        subject_empty: leaf.subject().iter_attributes().next().is_none(),
        dns: vec![],
        uris: vec![],
        other_sans: 0,
        san_critical: false,
        server_auth: false,
        client_auth: false,
        digital_signature: false,
        key_encipherment: false,
        cert_sign: false,
        is_ca: None,
    };
    for ext in leaf.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                f.san_critical = ext.critical;
                for n in &san.general_names {
                    match n {
                        GeneralName::DNSName(d) => f.dns.push(d.to_string()),
                        GeneralName::URI(u) => f.uris.push(u.to_string()),
                        _ => f.other_sans += 1,
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                f.server_auth = eku.server_auth;
                f.client_auth = eku.client_auth;
            }
            ParsedExtension::KeyUsage(ku) => {
                f.digital_signature = ku.digital_signature();
                f.key_encipherment = ku.key_encipherment();
                f.cert_sign = ku.key_cert_sign();
            }
            ParsedExtension::BasicConstraints(bc) => f.is_ca = Some(bc.ca),
            _ => {}
        }
    }
    f
}

const CA_TYPES: [KeyType; 2] = [KeyType::Ed25519, KeyType::EcdsaP256];

#[test]
fn spiffe_signer_issues_one_uri_san_for_every_key_type_and_both_key_sources() {
    let config = spiffe_config();
    for ca_type in CA_TYPES {
        let ca = ca(ca_type);
        for key_type in KeyType::ALL {
            let key = RequesterKey::cached(key_type);
            for material in [key.pkix_material(POD_UID), key.csr_material()] {
                let req = request(SPIFFE_SIGNER_NAME, material);
                let issued = issue_ok(&req, &config, &ca, &entitled(&req));
                let f = leaf_facts(&issued.leaf_der, &ca);
                assert_eq!(
                    f.uris,
                    vec!["spiffe://cluster.local/ns/shop/sa/web"],
                    "{key_type}"
                );
                assert!(
                    f.dns.is_empty() && f.other_sans == 0,
                    "{key_type}: extra SANs"
                );
                assert!(
                    f.subject_empty && f.san_critical,
                    "{key_type}: subject/SAN criticality"
                );
                assert!(f.server_auth && f.client_auth, "{key_type}: EKUs");
                assert!(f.digital_signature && !f.cert_sign, "{key_type}: key usage");
                assert_eq!(
                    f.key_encipherment,
                    key_type.is_rsa(),
                    "{key_type}: keyEncipherment"
                );
                assert_eq!(f.is_ca, Some(false), "{key_type}: must not be a CA");
                assert_eq!(issued.key_type, key_type);
                assert_eq!(issued.ca_id, "1");
            }
        }
    }
}

#[test]
fn service_dns_signer_names_exactly_the_services_selecting_the_pod() {
    let ca = ca(KeyType::EcdsaP256);
    let config = SignerConfig::service_dns();
    let mut other_ns = service("elsewhere", ServiceType::ClusterIp, &[("app", "web")]);
    other_ns.namespace = "other".into();
    let snap = snapshot(vec![
        service("web", ServiceType::ClusterIp, &[("app", "web")]),
        service(
            "web-np",
            ServiceType::NodePort,
            &[("app", "web"), ("tier", "front")],
        ),
        service("web-lb", ServiceType::LoadBalancer, &[("tier", "front")]),
        service("ext", ServiceType::ExternalName, &[("app", "web")]),
        service("manual", ServiceType::ClusterIp, &[]),
        service("db", ServiceType::ClusterIp, &[("app", "db")]),
        service(
            "partial",
            ServiceType::ClusterIp,
            &[("app", "web"), ("tier", "back")],
        ),
        other_ns,
    ]);
    for key_type in KeyType::ALL {
        let key = RequesterKey::cached(key_type);
        let req = request(SERVICE_DNS_SIGNER_NAME, key.pkix_material(POD_UID));
        let issued = issue_ok(&req, &config, &ca, &snap);
        let f = leaf_facts(&issued.leaf_der, &ca);
        assert_eq!(
            f.dns,
            vec!["web-lb.shop.svc", "web-np.shop.svc", "web.shop.svc"]
        );
        assert!(f.uris.is_empty() && f.other_sans == 0);
        assert!(f.subject_empty && f.san_critical);
        assert!(f.server_auth && f.client_auth && f.digital_signature);
        assert_eq!(f.key_encipherment, key_type.is_rsa());
        assert_eq!(f.is_ca, Some(false));
    }
}

#[test]
fn service_dns_waits_and_never_denies_when_no_service_selects_the_pod() {
    let ca = ca(KeyType::Ed25519);
    let config = SignerConfig::service_dns();
    let key = RequesterKey::cached(KeyType::EcdsaP256);
    let req = request(SERVICE_DNS_SIGNER_NAME, key.pkix_material(POD_UID));
    let only_unusable = snapshot(vec![
        service("ext", ServiceType::ExternalName, &[("app", "web")]),
        service("manual", ServiceType::ClusterIp, &[]),
        service("db", ServiceType::ClusterIp, &[("app", "db")]),
    ]);
    // A Service may be re-created or its selector fixed at any time: pending, however
    // old the request (the old code denied after 10 minutes, stranding the pod).
    for age in [0, 600, 3600, 86_400] {
        match not_issued(
            &req,
            &config,
            &ca,
            &only_unusable,
            now() + Duration::from_secs(age),
        ) {
            NotIssued::Pending(p) => {
                assert_eq!(p.reason, PendingReason::NoMatchingService);
                assert!(p.message.contains("shop/web-0"), "{p}");
            }
            other => panic!("at +{age}s: expected pending, got {other}"),
        }
    }
}

#[test]
fn a_missing_pod_is_pending_at_any_age_and_another_uid_is_denied() {
    let ca = ca(KeyType::Ed25519);
    let key = RequesterKey::cached(KeyType::Ed25519);
    let services = vec![service("web", ServiceType::ClusterIp, &[("app", "web")])];
    for config in [SignerConfig::service_dns(), spiffe_config()] {
        let req = request(&config.name, key.pkix_material(POD_UID));
        let gone = PodSnapshot {
            pod: None,
            ..snapshot(services.clone())
        };
        for age in [0, 3600] {
            let at = now() + Duration::from_secs(age);
            match not_issued(&req, &config, &ca, &gone, at) {
                NotIssued::Pending(p) => assert_eq!(p.reason, PendingReason::PodNotInSnapshot),
                other => panic!("{}: expected pending, got {other}", config.name),
            }
        }
        let mut recycled = snapshot(services.clone());
        if let Some(p) = recycled.pod.as_mut() {
            p.uid = "another-uid".into();
        }
        let d = denial(not_issued(&req, &config, &ca, &recycled, now()));
        assert_eq!(d.reason, DenialReason::PodUidMismatch);
        assert!(d.reason.depends_on_cluster_state());
    }
}

#[test]
fn hundreds_of_annotation_keys_give_a_message_the_api_server_accepts() {
    let ca = ca(KeyType::Ed25519);
    let key = RequesterKey::cached(KeyType::Ed25519);
    let mut req = request(SPIFFE_SIGNER_NAME, key.pkix_material(POD_UID));
    req.unverified_user_annotations = (0..600)
        .map(|i| (format!("example.com/{}-{i}", "k".repeat(200)), "v".into()))
        .collect();
    let d = denial(not_issued(
        &req,
        &spiffe_config(),
        &ca,
        &entitled(&req),
        now(),
    ));
    assert_eq!(d.reason, DenialReason::InvalidUnverifiedUserAnnotations);
    assert!(d.message.len() <= MAX_MESSAGE_BYTES, "{}", d.message.len());
    assert!(d.message.contains("bytes cut)"), "the cut is marked");
    assert!(d.message.contains("example.com/"), "the start is kept");
}

#[test]
fn lifetime_is_the_smaller_of_24h_and_max_expiration_and_timestamps_match_the_rules() {
    let ca = ca(KeyType::Ed25519);
    let config = spiffe_config();
    let key = RequesterKey::cached(KeyType::EcdsaP256);
    for (max, want) in [
        (Some(3600), 3600),
        (Some(7200), 7200),
        (Some(86_400), 86_400),
        (Some(7_862_400), 86_400),
        (None, 86_400),
    ] {
        let mut req = request(SPIFFE_SIGNER_NAME, key.pkix_material(POD_UID));
        req.max_expiration_seconds = max;
        let issued = issue_ok(&req, &config, &ca, &entitled(&req));
        let lifetime = issued
            .not_after
            .duration_since(issued.not_before)
            .unwrap_or_default();
        assert_eq!(lifetime, Duration::from_secs(want), "max {max:?}");
        let backdate = now().duration_since(issued.not_before).unwrap_or_default();
        assert!(
            backdate > Duration::from_secs(60) && backdate < Duration::from_secs(300),
            "{backdate:?}"
        );
        assert_eq!(
            issued
                .not_before
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos(),
            0,
            "whole seconds"
        );
        let refresh_lead = issued
            .not_after
            .duration_since(issued.begin_refresh_at)
            .unwrap_or_default();
        assert_eq!(refresh_lead, REFRESH_BEFORE_EXPIRY, "max {max:?}");
    }
}

#[test]
fn max_expiration_below_one_hour_fails_the_request() {
    let ca = ca(KeyType::Ed25519);
    let key = RequesterKey::cached(KeyType::Ed25519);
    let mut req = request(SPIFFE_SIGNER_NAME, key.pkix_material(POD_UID));
    req.max_expiration_seconds = Some(3599);
    match not_issued(&req, &spiffe_config(), &ca, &entitled(&req), now()) {
        NotIssued::Failed(f) => assert_eq!(f.reason, FailureReason::MaxExpirationTooShort),
        other => panic!("expected Failed, got {other}"),
    }
}

#[test]
fn chain_is_the_leaf_followed_by_the_cas_intermediates() {
    let root = ca(KeyType::EcdsaP256);
    let other = ca(KeyType::Ed25519);
    let key_pkcs8 = root.signing_key_pkcs8().to_vec();
    let with_intermediate = SigningCa::from_parts(
        "with-int",
        &key_pkcs8,
        root.root_der(),
        vec![other.root_der().to_vec()],
    )
    .expect("CA with an intermediate");
    let key = RequesterKey::cached(KeyType::Ed25519);
    let req = request(SPIFFE_SIGNER_NAME, key.csr_material());
    let issued = issue_ok(&req, &spiffe_config(), &with_intermediate, &entitled(&req));
    assert_eq!(
        issued
            .certificate_chain
            .matches("-----BEGIN CERTIFICATE-----")
            .count(),
        2
    );
    let mut want_tail = String::new();
    crate::pem::push_certificate(&mut want_tail, other.root_der());
    assert!(issued.certificate_chain.ends_with(&want_tail));
    let mut want_head = String::new();
    crate::pem::push_certificate(&mut want_head, &issued.leaf_der);
    assert!(issued.certificate_chain.starts_with(&want_head));
}

#[test]
fn key_types_the_signer_does_not_accept_are_denied_naming_the_supported_ones() {
    let ca = ca(KeyType::Ed25519);
    let config = spiffe_config().with_allowed_key_types([KeyType::EcdsaP256, KeyType::EcdsaP384]);
    for key_type in [KeyType::Ed25519, KeyType::Rsa3072] {
        let key = RequesterKey::cached(key_type);
        for material in [key.pkix_material(POD_UID), key.csr_material()] {
            let req = request(SPIFFE_SIGNER_NAME, material);
            let d = denial(not_issued(&req, &config, &ca, &entitled(&req), now()));
            assert_eq!(d.reason, DenialReason::UnsupportedKeyType);
            assert_eq!(d.reason.as_str(), "UnsupportedKeyType");
            assert!(d.message.contains("ECDSAP256, ECDSAP384"), "{d}");
            assert!(d.message.contains(key_type.as_str()), "{d}");
        }
    }
}

#[test]
fn rsa_2048_and_unknown_algorithms_are_unsupported_key_types() {
    let ca = ca(KeyType::Ed25519);
    // RSA-2048 via rcgen (a valid, well-formed key kube-apiserver would also refuse).
    let rsa2048 =
        rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .expect("rsa2048");
    let spki = rcgen::PublicKeyData::subject_public_key_info(&rsa2048);
    let req = request(
        SPIFFE_SIGNER_NAME,
        KeyMaterial::Pkix {
            public_key: spki,
            proof_of_possession: vec![0; 256],
        },
    );
    let d = denial(not_issued(
        &req,
        &spiffe_config(),
        &ca,
        &entitled(&req),
        now(),
    ));
    assert_eq!(d.reason, DenialReason::UnsupportedKeyType);
    assert!(d.message.contains("2048-bit"), "{d}");

    // An X25519 SubjectPublicKeyInfo (OID 1.3.101.110): parses, is not a signing key type.
    let mut x25519 = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
    ];
    x25519.extend_from_slice(&[7u8; 32]);
    let req = request(
        SPIFFE_SIGNER_NAME,
        KeyMaterial::Pkix {
            public_key: x25519,
            proof_of_possession: vec![1],
        },
    );
    let d = denial(not_issued(
        &req,
        &spiffe_config(),
        &ca,
        &entitled(&req),
        now(),
    ));
    assert_eq!(d.reason, DenialReason::UnsupportedKeyType);
    assert!(d.message.contains("1.3.101.110"), "{d}");
}

#[test]
fn unknown_user_annotations_are_denied_naming_the_keys() {
    let ca = ca(KeyType::Ed25519);
    let key = RequesterKey::cached(KeyType::Ed25519);
    let mut req = request(SPIFFE_SIGNER_NAME, key.pkix_material(POD_UID));
    req.unverified_user_annotations = labels(&[("example.com/ttl", "1h")]);
    let d = denial(not_issued(
        &req,
        &spiffe_config(),
        &ca,
        &entitled(&req),
        now(),
    ));
    assert_eq!(d.reason, DenialReason::InvalidUnverifiedUserAnnotations);
    assert_eq!(d.reason.as_str(), "InvalidUnverifiedUserAnnotations");
    assert!(d.message.contains("example.com/ttl"), "{d}");
}

#[test]
fn proof_of_possession_over_another_pod_uid_is_denied_for_every_key_type() {
    let ca = ca(KeyType::Ed25519);
    for key_type in KeyType::ALL {
        let key = RequesterKey::cached(key_type);
        let req = request(SPIFFE_SIGNER_NAME, key.pkix_material("some-other-pod-uid"));
        let d = denial(not_issued(
            &req,
            &spiffe_config(),
            &ca,
            &entitled(&req),
            now(),
        ));
        assert_eq!(
            d.reason,
            DenialReason::InvalidProofOfPossession,
            "{key_type}: {d}"
        );
    }
}

#[test]
fn proof_of_possession_by_another_key_of_the_same_type_is_denied() {
    let ca = ca(KeyType::Ed25519);
    let a = RequesterKey::generate(KeyType::EcdsaP384);
    let b = RequesterKey::generate(KeyType::EcdsaP384);
    let req = request(
        SPIFFE_SIGNER_NAME,
        KeyMaterial::Pkix {
            public_key: a.spki_der().to_vec(),
            proof_of_possession: b.proof_of_possession(POD_UID),
        },
    );
    let d = denial(not_issued(
        &req,
        &spiffe_config(),
        &ca,
        &entitled(&req),
        now(),
    ));
    assert_eq!(d.reason, DenialReason::InvalidProofOfPossession);
}

#[test]
fn csr_with_a_broken_self_signature_is_denied() {
    let ca = ca(KeyType::Ed25519);
    for key_type in [KeyType::Ed25519, KeyType::EcdsaP256, KeyType::Rsa3072] {
        let mut csr = RequesterKey::cached(key_type).stub_csr();
        let last = csr.len() - 1;
        csr[last] ^= 0x01;
        let req = request(SPIFFE_SIGNER_NAME, KeyMaterial::StubPkcs10 { csr });
        let d = denial(not_issued(
            &req,
            &spiffe_config(),
            &ca,
            &entitled(&req),
            now(),
        ));
        assert_eq!(
            d.reason,
            DenialReason::InvalidStubPkcs10Request,
            "{key_type}: {d}"
        );
    }
}

#[test]
fn truncated_or_random_key_material_is_denied_never_panics() {
    let ca = ca(KeyType::Ed25519);
    let key = RequesterKey::cached(KeyType::EcdsaP256);
    let spki = key.spki_der().to_vec();
    let csr = key.stub_csr();
    let mut cases: Vec<KeyMaterial> = Vec::new();
    for cut in [0, 1, 5, spki.len() / 2, spki.len() - 1] {
        cases.push(KeyMaterial::Pkix {
            public_key: spki[..cut].to_vec(),
            proof_of_possession: vec![0; 70],
        });
    }
    for cut in [1, 5, csr.len() / 2, csr.len() - 1] {
        cases.push(KeyMaterial::StubPkcs10 {
            csr: csr[..cut].to_vec(),
        });
    }
    let mut trailing = spki.clone();
    trailing.push(0);
    cases.push(KeyMaterial::Pkix {
        public_key: trailing,
        proof_of_possession: key.proof_of_possession(POD_UID),
    });
    for m in cases {
        let req = request(SPIFFE_SIGNER_NAME, m);
        let d = denial(not_issued(
            &req,
            &spiffe_config(),
            &ca,
            &entitled(&req),
            now(),
        ));
        assert!(
            matches!(
                d.reason,
                DenialReason::InvalidPublicKey | DenialReason::InvalidStubPkcs10Request
            ),
            "{d}"
        );
    }
}

#[test]
fn service_account_that_cannot_form_a_spiffe_id_is_denied() {
    let ca = ca(KeyType::Ed25519);
    let key = RequesterKey::cached(KeyType::Ed25519);
    let mut req = request(SPIFFE_SIGNER_NAME, key.pkix_material(POD_UID));
    req.service_account_name = "we b%".into();
    let d = denial(not_issued(
        &req,
        &spiffe_config(),
        &ca,
        &entitled(&req),
        now(),
    ));
    assert_eq!(d.reason, DenialReason::InvalidSpiffeId);
}

#[test]
fn request_for_another_signer_is_an_error_not_a_terminal_condition() {
    let ca = ca(KeyType::Ed25519);
    let key = RequesterKey::cached(KeyType::Ed25519);
    let req = request("example.com/other", key.pkix_material(POD_UID));
    let out = not_issued(&req, &spiffe_config(), &ca, &entitled(&req), now());
    assert!(
        matches!(out, NotIssued::Error(Error::SignerMismatch { .. })),
        "{out}"
    );
    assert!(!out.is_terminal());
}

#[test]
fn configured_signer_name_is_honoured() {
    let ca = ca(KeyType::Ed25519);
    let config = spiffe_config().with_name("example.com/mesh");
    let key = RequesterKey::cached(KeyType::Ed25519);
    let req = request("example.com/mesh", key.pkix_material(POD_UID));
    issue_ok(&req, &config, &ca, &entitled(&req));
}

#[test]
fn expired_or_not_yet_valid_ca_is_a_retryable_error() {
    let ca = ca(KeyType::Ed25519);
    let key = RequesterKey::cached(KeyType::Ed25519);
    let req = request(SPIFFE_SIGNER_NAME, key.pkix_material(POD_UID));
    for at in [
        ca.not_after() + Duration::from_secs(1),
        ca.not_before() - Duration::from_secs(1),
    ] {
        let out = not_issued(&req, &spiffe_config(), &ca, &entitled(&req), at);
        assert!(
            matches!(out, NotIssued::Error(Error::CaNotValidNow { .. })),
            "{out}"
        );
    }
}

#[test]
fn leaf_never_outlives_its_ca_and_a_ca_expiring_within_the_hour_is_an_error() {
    let short = generate_ca(
        "short",
        KeyType::EcdsaP256,
        now(),
        Duration::from_secs(5 * 3600),
    )
    .expect("CA");
    let key = RequesterKey::cached(KeyType::Ed25519);
    let req = request(SPIFFE_SIGNER_NAME, key.pkix_material(POD_UID));
    let issued = issue_ok(&req, &spiffe_config(), &short, &entitled(&req));
    assert_eq!(issued.not_after, short.not_after());

    let at = short.not_after() - Duration::from_secs(30 * 60);
    let out = not_issued(&req, &spiffe_config(), &short, &entitled(&req), at);
    assert!(
        matches!(out, NotIssued::Error(Error::CaExpiresTooSoon { .. })),
        "{out}"
    );
}

#[test]
fn every_issued_certificate_gets_a_fresh_positive_serial() {
    let ca = ca(KeyType::Ed25519);
    let key = RequesterKey::cached(KeyType::Ed25519);
    let req = request(SPIFFE_SIGNER_NAME, key.pkix_material(POD_UID));
    let a = issue_ok(&req, &spiffe_config(), &ca, &entitled(&req));
    let b = issue_ok(&req, &spiffe_config(), &ca, &entitled(&req));
    assert_ne!(a.serial, b.serial);
    assert_eq!(a.serial.len(), 32);
    let first = u8::from_str_radix(&a.serial[..2], 16).unwrap_or(0xff);
    assert!(first & 0x80 == 0 && first != 0, "{}", a.serial);
}

#[test]
fn status_checker_catches_a_status_that_disagrees_with_the_leaf() {
    // The checker must be able to fail, or the assertions above prove nothing.
    let ca = ca(KeyType::Ed25519);
    let key = RequesterKey::cached(KeyType::Ed25519);
    let req = request(SPIFFE_SIGNER_NAME, key.pkix_material(POD_UID));
    let issued = issue_ok(&req, &spiffe_config(), &ca, &entitled(&req));

    let mut shifted = issued.clone();
    shifted.not_before += Duration::from_secs(1);
    assert!(check_issued_status(&req, &shifted, now()).is_err());

    let mut late_refresh = issued.clone();
    late_refresh.begin_refresh_at = issued.not_after - Duration::from_secs(60);
    assert!(check_issued_status(&req, &late_refresh, now()).is_err());

    assert!(check_issued_status(&req, &issued, now() + Duration::from_secs(600)).is_err());

    let other_key = RequesterKey::cached(KeyType::EcdsaP256);
    let other_req = request(SPIFFE_SIGNER_NAME, other_key.pkix_material(POD_UID));
    assert!(check_issued_status(&other_req, &issued, now()).is_err());

    let mut key_block = issued.clone();
    key_block
        .certificate_chain
        .push_str("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    assert!(check_issued_status(&req, &key_block, now()).is_err());
}

#[test]
fn issues_from_a_pool_written_by_the_original_go_meshtool() {
    // Ed25519 root with an *empty* subject, PKCS#8 from Go's MarshalPKCS8PrivateKey.
    let pool =
        CaPool::from_json(include_bytes!("../testdata/meshtool-pool.json")).expect("Go pool");
    let ca = pool.signing_ca();
    let key = RequesterKey::cached(KeyType::EcdsaP256);
    let req = request(SPIFFE_SIGNER_NAME, key.csr_material());
    let issued = issue_ok(&req, &spiffe_config(), ca, &entitled(&req));
    let f = leaf_facts(&issued.leaf_der, ca);
    assert_eq!(f.uris, vec!["spiffe://cluster.local/ns/shop/sa/web"]);
}

/// Writes pools and chains for the Go interop check (crypto/x509 verification):
/// `SIGNER_INTEROP_DIR=/tmp/x cargo test -p signer -- --ignored writes_interop`, then
/// `go run signer/testdata/meshtool-pool/main.go -verify /tmp/x/<ca>-pool.json /tmp/x/<ca>-<key>.pem`.
#[test]
#[ignore = "writes files for a manual Go interop check"]
fn writes_interop_artifacts_for_go() {
    let Ok(dir) = std::env::var("SIGNER_INTEROP_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let go_pool =
        CaPool::from_json(include_bytes!("../testdata/meshtool-pool.json")).expect("Go pool");
    let now = SystemTime::now();
    let mut pools = vec![("go".to_string(), go_pool)];
    for t in [
        KeyType::Ed25519,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa3072,
    ] {
        let ca = generate_ca("1", t, now, DEFAULT_CA_VALIDITY).expect("CA");
        pools.push((t.to_string(), CaPool::single(ca)));
    }
    let snap = snapshot(vec![service(
        "web",
        ServiceType::ClusterIp,
        &[("app", "web")],
    )]);
    for (name, pool) in &pools {
        std::fs::write(dir.join(format!("{name}-pool.json")), pool.to_json()).expect("write");
        for key_type in KeyType::ALL {
            let key = RequesterKey::cached(key_type);
            let req = request(SERVICE_DNS_SIGNER_NAME, key.pkix_material(POD_UID));
            let issued = issue(
                &req,
                &SignerConfig::service_dns(),
                pool.signing_ca(),
                &snap,
                now,
            )
            .expect("issued");
            std::fs::write(
                dir.join(format!("{name}-{key_type}.pem")),
                issued.certificate_chain,
            )
            .expect("write");
        }
    }
}

#[test]
fn accepts_proofs_of_possession_and_stub_requests_made_by_go_like_kubelet() {
    // testdata/kubelet-requests.json: keys, PoPs (ed25519.Sign, ecdsa.SignASN1 over
    // SHA-256 on every curve, rsa.SignPSS with nil options = maximum salt) and stub CSRs
    // (x509.CreateCertificateRequest) produced by Go's crypto, as kubelet does.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct GoRequest {
        key_type: String,
        #[serde(rename = "PodUID")]
        pod_uid: String,
        #[serde(rename = "PKIXPublicKey")]
        pkix_public_key: String,
        proof_of_possession: String,
        #[serde(rename = "StubPKCS10Request")]
        stub_pkcs10_request: String,
    }
    use base64::Engine as _;
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64")
    };
    let reqs: Vec<GoRequest> =
        serde_json::from_slice(include_bytes!("../testdata/kubelet-requests.json")).expect("json");
    assert_eq!(reqs.len(), KeyType::ALL.len());
    let ca = ca(KeyType::EcdsaP256);
    for r in reqs {
        let key_type: KeyType = r.key_type.parse().expect("key type");
        let pkix = b64(&r.pkix_public_key);
        for material in [
            KeyMaterial::from_spec_fields(&pkix, &b64(&r.proof_of_possession), b"").expect("pkix"),
            KeyMaterial::from_spec_fields(b"", b"", &b64(&r.stub_pkcs10_request)).expect("csr"),
        ] {
            let mut req = request(SPIFFE_SIGNER_NAME, material);
            req.pod_uid = r.pod_uid.clone();
            let issued = issue_ok(&req, &spiffe_config(), &ca, &entitled(&req));
            assert_eq!(issued.key_type, key_type);
            let (_, leaf) = X509Certificate::from_der(&issued.leaf_der).expect("leaf");
            assert_eq!(leaf.public_key().raw, pkix.as_slice(), "{key_type}");
        }
    }
}
