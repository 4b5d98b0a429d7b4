//! Loading and validation of credentials and trust bundles: every bad input
//! gives a clear error naming its origin and what is wrong.

mod common;

use std::time::{Duration, SystemTime};

use podtls::test_util::{CertAuthority, KeyType, LeafSpec};
use podtls::{error::SvidError, Credentials, Error, LeafKind, Origin, TrustBundle};

fn origin() -> Origin {
    Origin::memory("test bundle")
}

fn load(pem: &str, kind: LeafKind) -> Result<Credentials, Error> {
    Credentials::from_bundle_pem(pem.as_bytes(), &origin(), kind, SystemTime::now())
}

#[test]
fn loads_bundles_of_every_kubelet_key_type() {
    let ca = CertAuthority::new("ca");
    for kt in KeyType::ALL {
        let issued = ca.issue(&LeafSpec::spiffe("spiffe://cluster.local/ns/a/sa/b").key(kt));
        let creds = load(&issued.bundle_pem(), LeafKind::SpiffeSvid)
            .unwrap_or_else(|e| panic!("{kt:?}: {e}"));
        assert_eq!(creds.info().serial, issued.serial);
        assert_eq!(
            creds.info().spiffe_id.as_ref().unwrap().to_string(),
            "spiffe://cluster.local/ns/a/sa/b"
        );
    }
}

#[test]
fn loads_separate_key_and_chain_with_intermediates() {
    let root = CertAuthority::new("root");
    let inter = root.intermediate("intermediate");
    let issued = inter.issue(&LeafSpec::dns(&["web.default.svc"]));
    let creds = Credentials::from_key_and_chain_pem(
        issued.key_pem.as_bytes(),
        &Origin::memory("key"),
        issued.chain_pem.as_bytes(),
        &Origin::memory("chain"),
        LeafKind::Any,
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(creds.chain().len(), 2, "leaf + intermediate");
    assert_eq!(creds.info().dns_names, vec!["web.default.svc".to_string()]);
}

#[test]
fn rejects_garbage_pem() {
    let err = load("this is not PEM at all\n", LeafKind::Any).unwrap_err();
    assert!(matches!(err, Error::MissingPrivateKey { .. }), "{err}");
    assert!(
        err.to_string().contains("<test bundle>"),
        "names origin: {err}"
    );

    let err = load(
        "-----BEGIN PRIVATE KEY-----\n!!!notbase64!!!\n-----END PRIVATE KEY-----\n",
        LeafKind::Any,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Pem { .. }), "{err}");
}

#[test]
fn rejects_truncated_bundle() {
    let ca = CertAuthority::new("ca");
    let pem = ca.issue(&LeafSpec::dns(&["a.b.svc"])).bundle_pem();
    // Cut in the middle of the certificate block.
    let cut = &pem[..pem.len() - 200];
    let err = load(cut, LeafKind::Any).unwrap_err();
    assert!(
        matches!(err, Error::Pem { .. } | Error::MissingCertificate { .. }),
        "{err}"
    );
    // Cut right after the key: no certificate at all.
    let key_only = &pem[..pem.find("-----BEGIN CERTIFICATE-----").unwrap()];
    let err = load(key_only, LeafKind::Any).unwrap_err();
    assert!(matches!(err, Error::MissingCertificate { .. }), "{err}");
}

#[test]
fn rejects_key_that_does_not_match_leaf() {
    let ca = CertAuthority::new("ca");
    let a = ca.issue(&LeafSpec::dns(&["a.svc"]));
    let b = ca.issue(&LeafSpec::dns(&["b.svc"]));
    let err = load(&format!("{}{}", a.key_pem, b.chain_pem), LeafKind::Any).unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn rejects_two_private_keys() {
    let ca = CertAuthority::new("ca");
    let a = ca.issue(&LeafSpec::dns(&["a.svc"]));
    let err = load(&format!("{}{}", a.key_pem, a.bundle_pem()), LeafKind::Any).unwrap_err();
    assert!(matches!(err, Error::MultiplePrivateKeys { .. }), "{err}");
}

#[test]
fn rejects_expired_and_not_yet_valid_leaves() {
    let ca = CertAuthority::new("ca");
    let now = SystemTime::now();
    let expired = ca.issue(&LeafSpec::dns(&["a.svc"]).validity(
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    ));
    let err = load(&expired.bundle_pem(), LeafKind::Any).unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    assert!(
        err.to_string().contains(&expired.serial),
        "names serial: {err}"
    );

    let future = ca.issue(&LeafSpec::dns(&["a.svc"]).validity(
        now + Duration::from_secs(3600),
        now + Duration::from_secs(7200),
    ));
    let err = load(&future.bundle_pem(), LeafKind::Any).unwrap_err();
    assert!(matches!(err, Error::NotYetValid { .. }), "{err}");
}

#[test]
fn rejects_ca_certificate_as_leaf() {
    let ca = CertAuthority::new("ca");
    let mut spec = LeafSpec::spiffe("spiffe://cluster.local/ns/a/sa/b");
    spec.is_ca = true;
    let err = load(&ca.issue(&spec).bundle_pem(), LeafKind::Any).unwrap_err();
    assert!(matches!(err, Error::LeafIsCa { .. }), "{err}");
}

fn svid_error(spec: LeafSpec) -> SvidError {
    let ca = CertAuthority::new("ca");
    match load(&ca.issue(&spec).bundle_pem(), LeafKind::SpiffeSvid) {
        Err(Error::InvalidSvid { reason, .. }) => reason,
        other => panic!("expected an X509-SVID error, got {other:?}"),
    }
}

#[test]
fn rejects_leaf_with_two_uri_sans() {
    let e = svid_error(
        LeafSpec::spiffe("spiffe://cluster.local/ns/a/sa/b")
            .uri("spiffe://cluster.local/ns/a/sa/c"),
    );
    assert_eq!(e, SvidError::MultipleUriSans { count: 2 });
}

#[test]
fn rejects_leaf_without_uri_san_or_with_non_spiffe_uri() {
    assert_eq!(svid_error(LeafSpec::dns(&["a.svc"])), SvidError::NoUriSan);
    assert!(matches!(
        svid_error(LeafSpec::spiffe("https://cluster.local/ns/a/sa/b")),
        SvidError::NotSpiffe { .. }
    ));
}

#[test]
fn rejects_invalid_spiffe_ids_in_uri_san() {
    for bad in [
        "spiffe://Cluster.local/ns/a",
        "spiffe://cluster.local/ns//a",
        "spiffe://cluster.local/ns/a/",
        "spiffe://cluster.local/ns/./a",
        "spiffe://cluster.local/ns/../a",
        "spiffe://cluster.local/ns/a$b",
        "spiffe://clus%ter.local/ns/a",
        "spiffe://cluster.local:8443/ns/a",
    ] {
        let e = svid_error(LeafSpec::spiffe(bad));
        assert!(matches!(e, SvidError::InvalidId { .. }), "{bad}: {e:?}");
    }
    assert!(matches!(
        svid_error(LeafSpec::spiffe("spiffe://cluster.local")),
        SvidError::NoPath { .. }
    ));
}

#[test]
fn rejects_svid_with_wrong_key_usage() {
    let mut no_ds = LeafSpec::spiffe("spiffe://cluster.local/ns/a/sa/b");
    no_ds.key_usages = Some(vec![rcgen::KeyUsagePurpose::KeyAgreement]);
    assert_eq!(svid_error(no_ds), SvidError::NoDigitalSignature);

    let mut signer = LeafSpec::spiffe("spiffe://cluster.local/ns/a/sa/b");
    signer.key_usages = Some(vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ]);
    assert_eq!(svid_error(signer), SvidError::SigningKeyUsage);
}

#[test]
fn trust_bundle_deduplicates_and_rejects_empty() {
    let a = CertAuthority::new("a");
    let b = CertAuthority::new("b");
    let pem = format!("{}{}{}", a.cert_pem(), b.cert_pem(), a.cert_pem());
    let bundle = TrustBundle::from_pem(pem.as_bytes(), &origin()).unwrap();
    assert_eq!(bundle.len(), 2);

    let err = TrustBundle::from_pem(b"", &origin()).unwrap_err();
    assert!(matches!(err, Error::EmptyTrustBundle { .. }), "{err}");
    assert!(err.to_string().contains("no CA certificate"), "{err}");
}

/// Where a parser's error exists, it is the error's `source()` (not only
/// text in the message), and the message still names the origin.
#[test]
fn errors_keep_the_parsers_error_as_their_source() {
    use std::error::Error as _;

    let err = load(
        "-----BEGIN PRIVATE KEY-----\n!!!notbase64!!!\n-----END PRIVATE KEY-----\n",
        LeafKind::Any,
    )
    .unwrap_err();
    assert!(err.to_string().contains("<test bundle>"), "{err}");
    let source = err.source().expect("PEM error has a source");
    assert!(
        source
            .downcast_ref::<podtls::rustls::pki_types::pem::Error>()
            .is_some(),
        "{source:?}"
    );

    // A key, then a CERTIFICATE block that is not X.509.
    let ca = CertAuthority::new("ca");
    let pem = ca.issue(&LeafSpec::dns(&["a.b.svc"])).bundle_pem();
    let key = &pem[..pem.find("-----BEGIN CERTIFICATE-----").unwrap()];
    let bad = format!("{key}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let err = load(&bad, LeafKind::Any).unwrap_err();
    assert!(matches!(err, Error::Certificate { index: 0, .. }), "{err}");
    let source = err.source().expect("certificate error has a source");
    assert!(err.to_string().ends_with(&source.to_string()), "{err}");

    // A trust anchor that is not a certificate.
    let err = TrustBundle::from_pem(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        &origin(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::TrustAnchor { index: 0, .. }), "{err}");
    assert!(err.source().is_some(), "{err}");
}
