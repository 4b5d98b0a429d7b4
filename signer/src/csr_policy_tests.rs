//! The CertificateSigningRequest rules, one attack or behaviour per test.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::string::Ia5String;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use crate::test_util::entitled_snapshot;
use crate::{
    generate_ca, parse_trust_domain, KeyType, ObjectIdentity, PodSnapshot, SignerConfig,
    DEFAULT_CA_VALIDITY, POD_IDENTITY_SIGNER_NAME, SERVICE_DNS_SIGNER_NAME, SPIFFE_SIGNER_NAME,
};

const NS: &str = "shop";
const POD_UID: &str = "6f1c2b4e-8d0a-4e57-9a3b-2c1d0e9f8a7b";
const SPIFFE_ID: &str = "spiffe://cluster.local/ns/shop/sa/web";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn ca() -> SigningCa {
    generate_ca(
        "1",
        KeyType::EcdsaP256,
        now() - Duration::from_secs(3600),
        DEFAULT_CA_VALIDITY,
    )
    .expect("CA")
}

fn spiffe() -> SignerConfig {
    SignerConfig::spiffe(parse_trust_domain("cluster.local").expect("td"))
}

fn pod_identity() -> SignerConfig {
    SignerConfig::pod_identity(parse_trust_domain("cluster.local").expect("td"))
}

/// A PEM PKCS#10 request by a fresh P-256 key, with the subject CN and SANs given.
fn csr_pem(cn: Option<&str>, sans: Vec<SanType>) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    csr_pem_with(&key, cn, sans)
}

fn csr_pem_with(key: &KeyPair, cn: Option<&str>, sans: Vec<SanType>) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params.subject_alt_names = sans;
    params
        .serialize_request(key)
        .expect("csr")
        .pem()
        .expect("pem")
        .into_bytes()
}

fn pem_of(der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n")
        .into_bytes()
}

fn der_of(pem: &[u8]) -> Vec<u8> {
    single_csr_der(pem).expect("one CSR")
}

/// What the agent of pod shop/web-0 (ServiceAccount web, node node-1) files.
fn agent_csr(signer: &str) -> CsrFields {
    CsrFields {
        name: "podtls-shop-web-0-abcde".into(),
        signer_name: signer.into(),
        request: csr_pem(None, Vec::new()),
        usages: USAGES.iter().map(|u| u.to_string()).collect(),
        expiration_seconds: Some(86_400),
        username: format!("system:serviceaccount:{NS}:web"),
        extra: BTreeMap::from([
            (POD_NAME_EXTRA.to_string(), vec!["web-0".to_string()]),
            (POD_UID_EXTRA.to_string(), vec![POD_UID.to_string()]),
            (NODE_NAME_EXTRA.to_string(), vec!["node-1".to_string()]),
            (NODE_UID_EXTRA.to_string(), vec!["node-uid-1".to_string()]),
        ]),
        state: CsrState::Open,
    }
}

/// The cluster: pod shop/web-0 (UID [`POD_UID`], ServiceAccount web, on node-1), with no
/// podCertificate volume (the CSR path needs none).
fn cluster() -> PodSnapshot {
    let like = crate::IssuanceRequest {
        namespace: NS.into(),
        name: "x".into(),
        signer_name: SPIFFE_SIGNER_NAME.into(),
        pod_name: "web-0".into(),
        pod_uid: POD_UID.into(),
        service_account_name: "web".into(),
        service_account_uid: "sa-uid-web".into(),
        node_name: "node-1".into(),
        node_uid: "node-uid-1".into(),
        max_expiration_seconds: None,
        key_material: KeyMaterial::StubPkcs10 { csr: Vec::new() },
        unverified_user_annotations: BTreeMap::new(),
    };
    let mut snapshot = entitled_snapshot(&like, &[("app", "web")]);
    if let Some(pod) = snapshot.pod.as_mut() {
        pod.certificate_sources.clear();
    }
    snapshot
}

fn decide_cached(csr: &CsrFields, config: &SignerConfig, cluster: &PodSnapshot) -> CsrDecision {
    decide(csr, config, &ca(), cluster, View::Cached, now())
}

#[track_caller]
fn approved(decision: CsrDecision) -> Box<Issued> {
    match decision {
        CsrDecision::Approve(issued) => issued,
        other => panic!("expected approval, got {other}"),
    }
}

#[track_caller]
fn denied(decision: CsrDecision, reason: DenialReason) -> Denial {
    match decision {
        CsrDecision::Deny(d) if d.reason == reason => d,
        other => panic!("expected a denial {reason}, got {other}"),
    }
}

fn san_uris(leaf: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(leaf).expect("leaf");
    let san = cert
        .subject_alternative_name()
        .expect("san")
        .expect("has san");
    san.value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect()
}

#[test]
fn a_nameless_csr_of_its_own_pod_gets_the_pods_spiffe_certificate() {
    let csr = agent_csr(SPIFFE_SIGNER_NAME);
    let issued = approved(decide_cached(&csr, &spiffe(), &cluster()));
    assert_eq!(issued.identities, vec![SPIFFE_ID.to_string()]);
    assert_eq!(
        san_uris(&issued.leaf_der),
        vec![format!("URI({SPIFFE_ID})")]
    );
    // The key certified is the CSR's.
    let (_, leaf) = X509Certificate::from_der(&issued.leaf_der).expect("leaf");
    let der = der_of(&csr.request);
    let (_, req) = X509CertificationRequest::from_der(&der).expect("request parses");
    assert_eq!(
        leaf.public_key().raw,
        req.certification_request_info.subject_pki.raw
    );
}

#[test]
fn the_certificate_is_the_one_a_pod_certificate_request_would_get() {
    // Same pod, same key, through `issue` as kubelet's request: same names and extensions.
    let csr = agent_csr(POD_IDENTITY_SIGNER_NAME);
    let via_csr = approved(decide_cached(&csr, &pod_identity(), &cluster()));
    let request = crate::IssuanceRequest {
        namespace: NS.into(),
        name: "pcr".into(),
        signer_name: POD_IDENTITY_SIGNER_NAME.into(),
        pod_name: "web-0".into(),
        pod_uid: POD_UID.into(),
        service_account_name: "web".into(),
        service_account_uid: "sa-uid-web".into(),
        node_name: "node-1".into(),
        node_uid: "node-uid-1".into(),
        max_expiration_seconds: Some(86_400),
        key_material: KeyMaterial::StubPkcs10 {
            csr: der_of(&csr.request),
        },
        unverified_user_annotations: BTreeMap::new(),
    };
    let via_pcr = issue(
        &request,
        &pod_identity(),
        &ca(),
        &entitled_snapshot(&request, &[("app", "web")]),
        now(),
    )
    .expect("PCR issues");
    assert_eq!(via_csr.identities, via_pcr.identities);
    assert_eq!(
        certificate_names(&via_csr.leaf_der).expect("names"),
        certificate_names(&via_pcr.leaf_der).expect("names")
    );
    let identity = |der: &[u8]| podtls::PodIdentity::from_own_certificate(der).expect("reads");
    assert_eq!(identity(&via_csr.leaf_der), identity(&via_pcr.leaf_der));
    assert!(identity(&via_csr.leaf_der).is_some());
}

#[test]
fn denies_the_token_of_another_pod_with_the_same_name() {
    // The pod was recreated: the token's UID is the old pod's.
    let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
    csr.extra
        .insert(POD_UID_EXTRA.into(), vec!["0000-old-pod".into()]);
    let d = denied(
        decide_cached(&csr, &spiffe(), &cluster()),
        DenialReason::PodUidMismatch,
    );
    assert!(d.message.contains("0000-old-pod"), "{d}");
}

#[test]
fn a_pod_name_of_another_namespace_is_never_the_requesters_pod() {
    // A pod web-0 exists, but in namespace "bank"; the token is of shop's ServiceAccount.
    let mut cluster = cluster();
    if let Some(p) = cluster.pod.as_mut() {
        p.namespace = "bank".into();
    }
    let csr = agent_csr(SPIFFE_SIGNER_NAME);
    assert!(matches!(
        decide_cached(&csr, &spiffe(), &cluster),
        CsrDecision::Pending(p) if p.reason == PendingReason::PodNotInSnapshot
    ));
    let live = decide(&csr, &spiffe(), &ca(), &cluster, View::Live, now());
    let d = denied(live, DenialReason::PodNotFound);
    assert!(d.message.contains("shop/web-0"), "{d}");
}

#[test]
fn denies_a_token_of_another_service_account_of_the_namespace() {
    let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
    csr.username = format!("system:serviceaccount:{NS}:admin");
    let d = denied(
        decide_cached(&csr, &spiffe(), &cluster()),
        DenialReason::ServiceAccountMismatch,
    );
    assert!(d.message.contains("admin"), "{d}");
}

#[test]
fn denies_a_terminating_pod() {
    let mut cluster = cluster();
    if let Some(p) = cluster.pod.as_mut() {
        p.terminating = true;
    }
    denied(
        decide_cached(&agent_csr(SPIFFE_SIGNER_NAME), &spiffe(), &cluster),
        DenialReason::PodTerminating,
    );
}

#[test]
fn an_unbound_pod_waits_in_the_cache_and_is_denied_when_read_live() {
    let mut cluster = cluster();
    if let Some(p) = cluster.pod.as_mut() {
        p.node_name = None;
    }
    let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
    csr.extra.remove(NODE_NAME_EXTRA);
    csr.extra.remove(NODE_UID_EXTRA);
    assert!(matches!(
        decide_cached(&csr, &spiffe(), &cluster),
        CsrDecision::Pending(p) if p.reason == PendingReason::PodNotBound
    ));
    denied(
        decide(&csr, &spiffe(), &ca(), &cluster, View::Live, now()),
        DenialReason::PodNotBound,
    );
    // And a token claiming a node for an unbound pod is denied outright.
    let claims_node = agent_csr(SPIFFE_SIGNER_NAME);
    assert!(matches!(
        decide_cached(&claims_node, &spiffe(), &cluster),
        CsrDecision::Pending(_) | CsrDecision::Deny(_)
    ));
}

#[test]
fn denies_a_token_whose_node_is_not_the_pods() {
    let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
    csr.extra
        .insert(NODE_NAME_EXTRA.into(), vec!["node-2".into()]);
    denied(
        decide_cached(&csr, &spiffe(), &cluster()),
        DenialReason::NodeMismatch,
    );
    let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
    csr.extra
        .insert(NODE_UID_EXTRA.into(), vec!["node-uid-old".into()]);
    denied(
        decide_cached(&csr, &spiffe(), &cluster()),
        DenialReason::NodeUidMismatch,
    );
}

#[test]
fn without_node_extras_the_pods_node_is_used() {
    let mut csr = agent_csr(POD_IDENTITY_SIGNER_NAME);
    csr.extra.remove(NODE_NAME_EXTRA);
    csr.extra.remove(NODE_UID_EXTRA);
    let issued = approved(decide_cached(&csr, &pod_identity(), &cluster()));
    let identity = podtls::PodIdentity::from_own_certificate(&issued.leaf_der)
        .expect("reads")
        .expect("present");
    assert_eq!(identity.node_name, "node-1");
    assert_eq!(identity.node_uid, "node-uid-1");
    assert_eq!(identity.service_account_uid, "sa-uid-web");
}

#[test]
fn denies_a_human_user() {
    for username in [
        "alice@example.com",
        "system:admin",
        "system:node:node-1",
        "system:serviceaccount:shop",
        "system:serviceaccount::web",
        "system:serviceaccount:Shop:web",
    ] {
        let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
        csr.username = username.into();
        let d = denied(
            decide_cached(&csr, &spiffe(), &cluster()),
            DenialReason::RequesterNotServiceAccount,
        );
        assert!(d.message.contains(username), "{d}");
    }
}

#[test]
fn denies_a_token_not_bound_to_a_pod() {
    // A Secret-based or TokenRequest token without a pod binding: no pod extras.
    let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
    csr.extra.clear();
    let d = denied(
        decide_cached(&csr, &spiffe(), &cluster()),
        DenialReason::RequesterNotPodBound,
    );
    assert!(d.message.contains(POD_NAME_EXTRA), "{d}");
    // Two pod UIDs, or an empty one: never guess.
    for values in [
        vec![POD_UID.to_string(), "x".to_string()],
        vec![String::new()],
    ] {
        let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
        csr.extra.insert(POD_UID_EXTRA.into(), values);
        denied(
            decide_cached(&csr, &spiffe(), &cluster()),
            DenialReason::RequesterNotPodBound,
        );
    }
    let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
    csr.extra.insert(
        NODE_NAME_EXTRA.into(),
        vec!["node-1".into(), "node-2".into()],
    );
    denied(
        decide_cached(&csr, &spiffe(), &cluster()),
        DenialReason::RequesterNotPodBound,
    );
}

#[test]
fn denies_names_the_pod_is_not_entitled_to_naming_them() {
    let csr = CsrFields {
        request: csr_pem(
            None,
            vec![
                SanType::URI(Ia5String::try_from(SPIFFE_ID).expect("ia5")),
                SanType::DnsName(Ia5String::try_from("bank.example").expect("ia5")),
            ],
        ),
        ..agent_csr(SPIFFE_SIGNER_NAME)
    };
    let d = denied(
        decide_cached(&csr, &spiffe(), &cluster()),
        DenialReason::NamesNotEntitled,
    );
    assert!(d.message.contains("bank.example"), "{d}");
    // Another workload's SPIFFE ID.
    let csr = CsrFields {
        request: csr_pem(
            None,
            vec![SanType::URI(
                Ia5String::try_from("spiffe://cluster.local/ns/bank/sa/teller").expect("ia5"),
            )],
        ),
        ..agent_csr(SPIFFE_SIGNER_NAME)
    };
    let d = denied(
        decide_cached(&csr, &spiffe(), &cluster()),
        DenialReason::NamesNotEntitled,
    );
    assert!(d.message.contains("ns/bank/sa/teller"), "{d}");
    // A subject the certificate would not carry.
    let csr = CsrFields {
        request: csr_pem(Some("system:masters"), Vec::new()),
        ..agent_csr(SPIFFE_SIGNER_NAME)
    };
    let d = denied(
        decide_cached(&csr, &spiffe(), &cluster()),
        DenialReason::NamesNotEntitled,
    );
    assert!(d.message.contains("system:masters"), "{d}");
}

#[test]
fn exactly_the_entitled_names_are_accepted_and_a_subset_is_denied() {
    let uri = || SanType::URI(Ia5String::try_from(SPIFFE_ID).expect("ia5"));
    let csr = CsrFields {
        request: csr_pem(None, vec![uri()]),
        ..agent_csr(SPIFFE_SIGNER_NAME)
    };
    approved(decide_cached(&csr, &spiffe(), &cluster()));
    // pod-identity also carries CN = pod name: leaving it out is a different set.
    let csr = CsrFields {
        request: csr_pem(None, vec![uri()]),
        ..agent_csr(POD_IDENTITY_SIGNER_NAME)
    };
    let d = denied(
        decide_cached(&csr, &pod_identity(), &cluster()),
        DenialReason::NamesNotEntitled,
    );
    assert!(d.message.contains("leaves out subject CN=\"web-0\""), "{d}");
    let csr = CsrFields {
        request: csr_pem(Some("web-0"), vec![uri()]),
        ..agent_csr(POD_IDENTITY_SIGNER_NAME)
    };
    approved(decide_cached(&csr, &pod_identity(), &cluster()));
}

#[test]
fn expiration_seconds_below_the_api_minimum_is_denied_others_are_clamped() {
    let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
    for odd in [599, 0, -1, i32::MIN] {
        csr.expiration_seconds = Some(odd);
        denied(
            decide_cached(&csr, &spiffe(), &cluster()),
            DenialReason::InvalidExpirationSeconds,
        );
    }
    let lifetime = |issued: &Issued| {
        issued
            .not_after
            .duration_since(issued.not_before)
            .expect("ordered")
    };
    // 10 minutes: raised to the one-hour minimum.
    csr.expiration_seconds = Some(600);
    let issued = approved(decide_cached(&csr, &spiffe(), &cluster()));
    assert_eq!(lifetime(&issued), crate::MIN_LIFETIME);
    // A year, the maximum, or unset: the signer's maximum lifetime.
    for asked in [Some(365 * 86_400), Some(i32::MAX), None] {
        csr.expiration_seconds = asked;
        let issued = approved(decide_cached(&csr, &spiffe(), &cluster()));
        assert_eq!(lifetime(&issued), spiffe().max_lifetime, "{asked:?}");
    }
    csr.expiration_seconds = Some(2 * 3600);
    let issued = approved(decide_cached(&csr, &spiffe(), &cluster()));
    assert_eq!(lifetime(&issued), Duration::from_secs(2 * 3600));
}

#[test]
fn a_csr_for_another_signer_is_ignored() {
    let csr = agent_csr("kubernetes.io/kube-apiserver-client");
    assert!(matches!(
        decide_cached(&csr, &spiffe(), &cluster()),
        CsrDecision::Ignore(Ignored::OtherSigner)
    ));
    // Ours, but another of ours: this signer's config does not take it.
    let csr = agent_csr(SERVICE_DNS_SIGNER_NAME);
    assert!(matches!(
        decide_cached(&csr, &spiffe(), &cluster()),
        CsrDecision::Ignore(Ignored::OtherSigner)
    ));
}

#[test]
fn a_replayed_or_decided_csr_is_never_signed_again() {
    for (state, why) in [
        (CsrState::Issued, Ignored::Issued),
        (CsrState::Terminal, Ignored::Terminal),
        (CsrState::ApprovedByOther, Ignored::ApprovedByOther),
    ] {
        let csr = CsrFields {
            state,
            ..agent_csr(SPIFFE_SIGNER_NAME)
        };
        match decide_cached(&csr, &spiffe(), &cluster()) {
            CsrDecision::Ignore(got) => assert_eq!(got, why),
            other => panic!("{state:?}: expected ignore, got {other}"),
        }
    }
}

#[test]
fn approved_by_us_is_signed_or_failed_never_denied() {
    let csr = CsrFields {
        state: CsrState::ApprovedByUs,
        ..agent_csr(SPIFFE_SIGNER_NAME)
    };
    assert!(matches!(
        decide_cached(&csr, &spiffe(), &cluster()),
        CsrDecision::Sign(_)
    ));
    let mut gone = cluster();
    if let Some(p) = gone.pod.as_mut() {
        p.terminating = true;
    }
    match decide_cached(&csr, &spiffe(), &gone) {
        CsrDecision::Fail(d) => assert_eq!(d.reason, DenialReason::PodTerminating),
        other => panic!("expected Failed, got {other}"),
    }
}

#[test]
fn state_reads_conditions_and_certificate() {
    assert_eq!(CsrState::from_status([], false), CsrState::Open);
    assert_eq!(
        CsrState::from_status([("Approved", APPROVED_REASON)], false),
        CsrState::ApprovedByUs
    );
    assert_eq!(
        CsrState::from_status([("Approved", "KubectlApprove")], false),
        CsrState::ApprovedByOther
    );
    assert_eq!(
        CsrState::from_status([("Approved", APPROVED_REASON), ("Failed", "X")], false),
        CsrState::Terminal
    );
    assert_eq!(
        CsrState::from_status([("Denied", "X")], false),
        CsrState::Terminal
    );
    assert_eq!(
        CsrState::from_status([("Approved", APPROVED_REASON)], true),
        CsrState::Issued
    );
}

#[test]
fn denies_usages_the_certificate_does_not_carry() {
    for usage in ["code signing", "key encipherment", "any", "cert sign"] {
        let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
        csr.usages.push(usage.into());
        let d = denied(
            decide_cached(&csr, &spiffe(), &cluster()),
            DenialReason::UsagesNotAllowed,
        );
        assert!(d.message.contains(usage), "{d}");
    }
    // A subset is fine: the certificate is the signer's either way.
    let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
    csr.usages = vec!["digital signature".into(), "client auth".into()];
    approved(decide_cached(&csr, &spiffe(), &cluster()));
}

#[test]
fn rsa_keys_may_ask_for_key_encipherment() {
    let key = crate::test_util::RequesterKey::cached(KeyType::Rsa3072);
    let mut csr = agent_csr(SPIFFE_SIGNER_NAME);
    csr.request = pem_of(&key.stub_csr());
    csr.usages.push(KEY_ENCIPHERMENT.into());
    let issued = approved(decide_cached(&csr, &spiffe(), &cluster()));
    assert_eq!(issued.key_type, KeyType::Rsa3072);
}

#[test]
fn a_request_whose_signature_does_not_verify_is_denied() {
    let mut der = der_of(&csr_pem(None, Vec::new()));
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let csr = CsrFields {
        request: pem_of(&der),
        ..agent_csr(SPIFFE_SIGNER_NAME)
    };
    let d = denied(
        decide_cached(&csr, &spiffe(), &cluster()),
        DenialReason::InvalidCertificateRequest,
    );
    assert!(d.message.contains("spec.request"), "{d}");
    assert!(!d.message.contains("stubPKCS10"), "{d}");
}

#[test]
fn a_key_type_the_signer_does_not_accept_is_denied() {
    let mut config = spiffe();
    config.allowed_key_types = vec![KeyType::Ed25519];
    let d = denied(
        decide_cached(&agent_csr(SPIFFE_SIGNER_NAME), &config, &cluster()),
        DenialReason::UnsupportedKeyType,
    );
    assert!(d.message.contains("ED25519"), "{d}");
}

#[test]
fn spec_request_must_be_exactly_one_pem_certificate_request() {
    let one = csr_pem(None, Vec::new());
    let mut two = one.clone();
    two.extend_from_slice(&csr_pem(None, Vec::new()));
    let certificate = b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n".to_vec();
    for (request, says) in [
        (b"garbage".to_vec(), "no PEM"),
        (der_of(&one), "no PEM"),
        (two, "more than one"),
        (certificate, "Certificate"),
    ] {
        let csr = CsrFields {
            request,
            ..agent_csr(SPIFFE_SIGNER_NAME)
        };
        let d = denied(
            decide_cached(&csr, &spiffe(), &cluster()),
            DenialReason::InvalidCertificateRequest,
        );
        assert!(d.message.contains(says), "{says}: {d}");
    }
}

#[test]
fn a_missing_service_account_or_node_waits_never_denies() {
    let mut cluster = cluster();
    cluster.service_account = None;
    assert!(matches!(
        decide_cached(&agent_csr(SPIFFE_SIGNER_NAME), &spiffe(), &cluster),
        CsrDecision::Pending(p) if p.reason == PendingReason::ServiceAccountNotInSnapshot
    ));
    let mut cluster = self::cluster();
    cluster.node = Some(ObjectIdentity {
        name: "node-9".into(),
        uid: "u".into(),
    });
    assert!(matches!(
        decide_cached(&agent_csr(SPIFFE_SIGNER_NAME), &spiffe(), &cluster),
        CsrDecision::Pending(p) if p.reason == PendingReason::NodeNotInSnapshot
    ));
}
