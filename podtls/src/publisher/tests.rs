use std::time::{Duration, SystemTime};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::*;
use crate::parse_trust_domain;
use crate::peer_verification::VerifyError;
use crate::store::Health;
use crate::test_util::{CertAuthority, Issued, LeafSpec};

fn td(name: &str) -> TrustDomain {
    parse_trust_domain(name).unwrap()
}

fn key(issued: &Issued) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key_der.clone()))
}

fn svid(ca: &CertAuthority, id: &str) -> Issued {
    ca.issue(&LeafSpec::spiffe(id))
}

fn publisher() -> IdentityPublisher {
    IdentityPublisher::new("test source", LeafKind::SpiffeSvid)
}

fn served_serial(p: &IdentityPublisher) -> Option<String> {
    p.credentials().current().map(|c| c.info().serial.clone())
}

/// A self-signed CA whose URI SAN is `uri` (as SPIRE's CAs carry their
/// trust domain's ID).
fn ca_naming(uri: &str) -> CertificateDer<'static> {
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
    params.self_signed(&key).unwrap().der().clone()
}

#[test]
fn publishing_credentials_serves_them_and_moves_the_generation() {
    let p = publisher();
    let ca = CertAuthority::new("a");
    assert!(p.credentials().current().is_none(), "closed before");
    let first = svid(&ca, "spiffe://a.example/one");
    p.publish_credentials(first.chain_der.clone(), key(&first), SystemTime::now())
        .unwrap();
    assert_eq!(served_serial(&p), Some(first.serial.clone()));
    let status = p.credentials().status();
    assert!(status.is_ready() && status.last_error.is_none());
    assert_eq!(status.generation, 1);

    let second = svid(&ca, "spiffe://a.example/one");
    p.publish_credentials(second.chain_der.clone(), key(&second), SystemTime::now())
        .unwrap();
    assert_eq!(served_serial(&p), Some(second.serial));
    assert_eq!(p.credentials().generation(), 2);
}

#[test]
fn refuses_a_key_of_another_leaf_and_keeps_the_last_good() {
    let p = publisher();
    let ca = CertAuthority::new("a");
    let good = svid(&ca, "spiffe://a.example/one");
    let other = svid(&ca, "spiffe://a.example/one");
    p.publish_credentials(good.chain_der.clone(), key(&good), SystemTime::now())
        .unwrap();
    let error = p
        .publish_credentials(other.chain_der.clone(), key(&good), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(error.error(), Error::KeyMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("test source"), "{error}");
    assert_eq!(served_serial(&p), Some(good.serial));
    let status = p.credentials().status();
    assert_eq!(status.generation, 1);
    assert!(status.is_ready());
    assert_eq!(
        status.last_error.map(|e| e.to_string()),
        Some(error.to_string()),
        "the status shows the same error"
    );
}

#[test]
fn the_served_chain_with_another_key_is_refused_too() {
    let p = publisher();
    let ca = CertAuthority::new("a");
    let good = svid(&ca, "spiffe://a.example/one");
    let other = svid(&ca, "spiffe://a.example/one");
    let now = SystemTime::now();
    p.publish_credentials(good.chain_der.clone(), key(&good), now)
        .unwrap();
    let error = p
        .publish_credentials(good.chain_der.clone(), key(&other), now)
        .unwrap_err();
    assert!(
        matches!(error.error(), Error::KeyMismatch { .. }),
        "{error}"
    );
    assert_eq!(served_serial(&p), Some(good.serial));
}

#[test]
fn refuses_an_expired_or_not_yet_valid_leaf_at_the_given_now() {
    let p = publisher();
    let ca = CertAuthority::new("a");
    let leaf = svid(&ca, "spiffe://a.example/one");
    let info = crate::cert_info::CertInfo::from_der(&leaf.leaf_der).unwrap();
    let late = info.not_after + Duration::from_secs(1);
    let error = p
        .publish_credentials(leaf.chain_der.clone(), key(&leaf), late)
        .unwrap_err();
    assert!(matches!(error.error(), Error::Expired { .. }), "{error}");
    let early = info.not_before - Duration::from_secs(1);
    let error = p
        .publish_credentials(leaf.chain_der.clone(), key(&leaf), early)
        .unwrap_err();
    assert!(
        matches!(error.error(), Error::NotYetValid { .. }),
        "{error}"
    );
    assert!(p.credentials().current().is_none(), "still closed");
    assert!(!p.credentials().status().is_ready());
}

#[test]
fn refuses_a_leaf_that_is_not_an_svid_when_svids_are_required() {
    let p = publisher();
    let ca = CertAuthority::new("a");
    let dns = ca.issue(&LeafSpec::dns(&["web.example"]));
    let error = p
        .publish_credentials(dns.chain_der.clone(), key(&dns), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(error.error(), Error::InvalidSvid { .. }),
        "{error}"
    );
    // The same leaf is fine for a source that does not require SVIDs.
    let any = IdentityPublisher::new("any", LeafKind::Any);
    any.publish_credentials(dns.chain_der.clone(), key(&dns), SystemTime::now())
        .unwrap();
}

#[test]
fn refuses_garbage_pem_naming_the_source() {
    let p = publisher();
    let error = p
        .publish_credentials_pem(
            b"-----BEGIN PRIVATE KEY-----\nnot base64",
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(error.to_string().contains("test source"), "{error}");
    assert!(p.credentials().status().last_error.is_some());
}

#[test]
fn refuses_empty_anchors_and_anchors_naming_another_trust_domain() {
    let p = publisher();
    let a = td("a.example");
    let ca = CertAuthority::new("a");
    let now = SystemTime::now();
    p.publish_bundle(&a, vec![ca.cert_der().clone()], now)
        .unwrap();

    let error = p.publish_bundle(&a, Vec::new(), now).unwrap_err();
    assert!(
        matches!(error.error(), Error::EmptyTrustBundle { .. }),
        "{error}"
    );
    let foreign = ca_naming("spiffe://b.example");
    let error = p
        .publish_bundle(&a, vec![ca.cert_der().clone(), foreign], now)
        .unwrap_err();
    match error.error() {
        Error::ForeignTrustAnchor {
            index,
            trust_domain,
            uri,
            ..
        } => {
            assert_eq!((*index, trust_domain.as_str()), (1, "a.example"));
            assert_eq!(uri, "spiffe://b.example");
        }
        other => panic!("{other}"),
    }
    // The last good anchors are still the ones verified against.
    let served = p.spiffe_bundles().current(&a).unwrap();
    assert_eq!(served.certificates(), std::slice::from_ref(ca.cert_der()));
    assert_eq!(p.spiffe_bundles().store(&a).unwrap().generation(), 1);

    // A CA naming its own trust domain (as SPIRE's do) is fine.
    p.publish_bundle(&a, vec![ca_naming("spiffe://a.example")], now)
        .unwrap();
}

#[test]
fn withdrawing_de_federates_and_publishing_again_re_federates() {
    let p = publisher();
    let b = td("b.example");
    let ca = CertAuthority::new("b");
    let now = SystemTime::now();
    assert!(!p.withdraw_bundle(&b, now), "unknown: nothing to withdraw");
    p.publish_bundle(&b, vec![ca.cert_der().clone()], now)
        .unwrap();
    assert!(p.withdraw_bundle(&b, now));
    assert!(!p.withdraw_bundle(&b, now), "only once");
    assert!(matches!(
        p.spiffe_bundles().current(&b),
        Err(VerifyError::DeFederated { .. })
    ));
    let status = p.spiffe_bundles().store(&b).unwrap().status();
    assert_eq!(status.health, Health::Withdrawn);
    // The same anchors as before the withdrawal are not a no-op.
    p.publish_bundle(&b, vec![ca.cert_der().clone()], now)
        .unwrap();
    assert!(p.spiffe_bundles().current(&b).is_ok());
    assert!(p.spiffe_bundles().de_federated_since(&b).is_none());
}

#[test]
fn the_same_material_again_is_a_no_op_that_clears_a_previous_error() {
    let p = publisher();
    let a = td("a.example");
    let ca = CertAuthority::new("a");
    let leaf = svid(&ca, "spiffe://a.example/one");
    let now = SystemTime::now();
    p.publish_credentials(leaf.chain_der.clone(), key(&leaf), now)
        .unwrap();
    p.publish_bundle(&a, vec![ca.cert_der().clone()], now)
        .unwrap();
    let other = svid(&ca, "spiffe://a.example/one");
    p.publish_credentials(other.chain_der.clone(), key(&leaf), now)
        .unwrap_err();
    p.publish_bundle(&a, Vec::new(), now).unwrap_err();

    p.publish_credentials(leaf.chain_der.clone(), key(&leaf), now)
        .unwrap();
    p.publish_bundle(&a, vec![ca.cert_der().clone()], now)
        .unwrap();
    let creds = p.credentials().status();
    let bundle = p.spiffe_bundles().store(&a).unwrap().status();
    assert_eq!((creds.generation, bundle.generation), (1, 1));
    assert!(creds.last_error.is_none() && bundle.last_error.is_none());
}

#[test]
fn a_source_failure_shows_in_every_status_and_keeps_the_material() {
    let p = publisher();
    let a = td("a.example");
    let ca = CertAuthority::new("a");
    let leaf = svid(&ca, "spiffe://a.example/one");
    let now = SystemTime::now();
    p.publish_credentials(leaf.chain_der.clone(), key(&leaf), now)
        .unwrap();
    p.publish_bundle(&a, vec![ca.cert_der().clone()], now)
        .unwrap();
    p.report_error(
        Error::SourceFailed {
            what: "test source".into(),
            cause: "connection reset".into(),
        },
        now,
    );
    let pod = p.pod_tls();
    assert!(pod.is_ready(), "still serving");
    for status in pod.statuses() {
        let error = status.last_error.expect("error shown");
        assert!(error.to_string().contains("connection reset"), "{error}");
    }
}

#[test]
fn ready_means_credentials_and_the_own_trust_domain_bundle() {
    let p = publisher();
    let pod = p.pod_tls();
    let (a, b) = (td("a.example"), td("b.example"));
    let (ca_a, ca_b) = (CertAuthority::new("a"), CertAuthority::new("b"));
    let leaf = svid(&ca_a, "spiffe://a.example/one");
    let now = SystemTime::now();
    p.publish_bundle(&b, vec![ca_b.cert_der().clone()], now)
        .unwrap();
    p.publish_credentials(leaf.chain_der.clone(), key(&leaf), now)
        .unwrap();
    assert!(!pod.is_ready(), "own bundle missing");
    p.publish_bundle(&a, vec![ca_a.cert_der().clone()], now)
        .unwrap();
    assert!(pod.is_ready());
    assert_eq!(pod.own_trust_domain(), Some(a.clone()));
    p.withdraw_bundle(&b, now);
    assert!(pod.is_ready(), "a peer trust domain does not count");
    p.withdraw_bundle(&a, now);
    assert!(!pod.is_ready(), "the own one does");
    let statuses = pod.trust_domain_statuses();
    assert!(statuses.iter().all(|s| s.is_de_federated()), "{statuses:?}");
}

#[test]
fn renewal_overdue_and_expiry_show_in_the_health() {
    let p = publisher();
    let ca = CertAuthority::new("a");
    let leaf = svid(&ca, "spiffe://a.example/one");
    let info = crate::cert_info::CertInfo::from_der(&leaf.leaf_der).unwrap();
    p.publish_credentials(leaf.chain_der.clone(), key(&leaf), SystemTime::now())
        .unwrap();
    let lifetime = info.not_after.duration_since(info.not_before).unwrap();
    p.check_health(info.not_before + lifetime.mul_f64(0.9));
    assert_eq!(p.credentials().status().health, Health::RenewalOverdue);
    p.check_health(info.not_after + Duration::from_secs(1));
    assert_eq!(p.credentials().status().health, Health::Expired);
}

#[test]
fn concurrent_publishers_never_lose_a_trust_domain() {
    let p = publisher();
    let ca = CertAuthority::new("x");
    let (threads, each) = (8, 200);
    let start = std::sync::Barrier::new(threads);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (p, ca, start) = (p.clone(), &ca, &start);
            scope.spawn(move || {
                start.wait();
                for i in 0..each {
                    let td = td(&format!("t{t}-{i}.example"));
                    p.publish_bundle(&td, vec![ca.cert_der().clone()], SystemTime::now())
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(p.spiffe_bundles().trust_domains().len(), threads * each);
}
