//! Checking a certificate chain returned in `status.certificate` before it is
//! published (pure: explicit `now`).
//!
//! Accepted only if: every PEM block is a certificate; the leaf carries the
//! public key this agent generated (anyone with `sign` on the signer name could
//! otherwise hand the pod a certificate for a key it does not hold); `now` is
//! within the leaf's validity; the chain verifies (webpki, server and client
//! auth usages) against the agent's own trust domain's bundle (a certificate
//! from another signer is refused); and the leaf is an X509-SVID of that trust
//! domain.

use std::time::{Duration, SystemTime};

use podtls::TrustDomain;
use rustls_pki_types::pem::SectionKind;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::error::CertificateProblem;

/// A chain that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The leaf's SPIFFE ID.
    pub spiffe_id: String,
    /// The leaf's serial (hex).
    pub serial: String,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// The chain as PEM, leaf first (re-encoded from the parsed blocks).
    pub chain_pem: String,
}

fn to_system(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH
    }
}

/// Checks `pem` (the chain, leaf first) against `our_spki` (DER), `now`, and the
/// anchors of `trust_domain`.
pub fn check(
    pem: &[u8],
    our_spki: &[u8],
    trust_domain: &TrustDomain,
    anchors: &[CertificateDer<'static>],
    now: SystemTime,
) -> Result<Issued, CertificateProblem> {
    let malformed = |s: String| CertificateProblem::Malformed(s);
    let mut chain: Vec<CertificateDer<'static>> = Vec::new();
    let mut rest = pem;
    loop {
        match rustls_pki_types::pem::from_buf(&mut rest) {
            Ok(Some((SectionKind::Certificate, der))) => chain.push(der.into()),
            Ok(Some((kind, _))) => return Err(malformed(format!("holds a {kind:?} PEM block"))),
            Ok(None) => break,
            Err(e) => return Err(malformed(format!("bad PEM: {e}"))),
        }
    }
    let Some(leaf_der) = chain.first() else {
        return Err(malformed("no certificate".into()));
    };
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| malformed(format!("leaf does not parse: {e}")))?;
    if leaf.tbs_certificate.subject_pki.raw != our_spki {
        return Err(CertificateProblem::NotOurKey);
    }
    let (not_before, not_after) = (
        to_system(leaf.validity().not_before),
        to_system(leaf.validity().not_after),
    );
    if now < not_before || now >= not_after {
        return Err(CertificateProblem::NotValidNow {
            not_before: podtls::certificate::format_time(not_before),
            not_after: podtls::certificate::format_time(not_after),
        });
    }
    let untrusted = |reason: String| CertificateProblem::Untrusted {
        trust_domain: trust_domain.to_string(),
        reason,
    };
    let roots = anchors
        .iter()
        .map(|a| webpki::anchor_from_trusted_cert(a).map(|t| t.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| untrusted(format!("a trust anchor does not parse: {e}")))?;
    let ee =
        webpki::EndEntityCert::try_from(leaf_der).map_err(|e| malformed(format!("leaf: {e}")))?;
    let unix_now = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO),
    );
    for usage in [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ] {
        ee.verify_for_usage(
            podtls::provider().signature_verification_algorithms.all,
            &roots,
            &chain[1..],
            unix_now,
            usage,
            None,
            None,
        )
        .map_err(|e| untrusted(format!("{e:?}")))?;
    }
    let id = podtls::verification::validate_svid_leaf_der(leaf_der).map_err(|e| {
        CertificateProblem::NotOurTrustDomain {
            expected: trust_domain.to_string(),
            reason: e.to_string(),
        }
    })?;
    if id.trust_domain() != trust_domain {
        return Err(CertificateProblem::NotOurTrustDomain {
            expected: trust_domain.to_string(),
            reason: format!("its SPIFFE ID is {id}"),
        });
    }
    let chain_pem = chain
        .iter()
        .map(|c| pem_block("CERTIFICATE", c))
        .collect::<String>();
    Ok(Issued {
        spiffe_id: id.to_string(),
        serial: leaf
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        not_before,
        not_after,
        chain_pem,
    })
}

/// One PEM block, 64 columns.
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, SanType,
    };

    /// A CA of `td` that issues SVIDs like the signer.
    pub(crate) struct TestCa {
        pub(crate) cert_pem: String,
        pub(crate) der: CertificateDer<'static>,
        key: KeyPair,
        params: CertificateParams,
    }

    impl TestCa {
        pub(crate) fn new() -> TestCa {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = params.self_signed(&key).unwrap();
            TestCa {
                cert_pem: cert.pem(),
                der: cert.der().clone(),
                key,
                params,
            }
        }

        /// An SVID for `id` with `public` (anything with a public key), valid
        /// `valid` seconds from `now - 60s`.
        pub(crate) fn issue(
            &self,
            public: &impl rcgen::PublicKeyData,
            id: &str,
            now: SystemTime,
            valid: u64,
        ) -> String {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let start = now - Duration::from_secs(60);
            p.not_before = time::OffsetDateTime::from(start);
            p.not_after = time::OffsetDateTime::from(start + Duration::from_secs(valid));
            let issuer = Issuer::from_params(&self.params, &self.key);
            p.signed_by(public, &issuer).unwrap().pem()
        }
    }

    fn td() -> TrustDomain {
        podtls::parse_trust_domain("a.test").unwrap()
    }

    #[test]
    fn accepts_our_svid_from_our_trust_domain() {
        let ca = TestCa::new();
        let key = KeyPair::generate().unwrap();
        let now = SystemTime::now();
        let pem = ca.issue(&key, "spiffe://a.test/ns/x/sa/y", now, 600);
        let got = check(
            pem.as_bytes(),
            &crate::request::spki_der(&key),
            &td(),
            std::slice::from_ref(&ca.der),
            now,
        )
        .unwrap();
        assert_eq!(got.spiffe_id, "spiffe://a.test/ns/x/sa/y");
        assert_eq!(got.chain_pem, pem.replace("\r\n", "\n"));
        assert!(got.not_after > now);
    }

    #[test]
    fn rejects_certificate_whose_public_key_is_not_ours() {
        let ca = TestCa::new();
        let (ours, theirs) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let now = SystemTime::now();
        let pem = ca.issue(&theirs, "spiffe://a.test/ns/x/sa/y", now, 600);
        let err = check(
            pem.as_bytes(),
            &crate::request::spki_der(&ours),
            &td(),
            std::slice::from_ref(&ca.der),
            now,
        )
        .unwrap_err();
        assert_eq!(err, CertificateProblem::NotOurKey);
    }

    #[test]
    fn rejects_certificate_from_another_signer() {
        let (ca, other) = (TestCa::new(), TestCa::new());
        let key = KeyPair::generate().unwrap();
        let now = SystemTime::now();
        let pem = other.issue(&key, "spiffe://a.test/ns/x/sa/y", now, 600);
        let err = check(
            pem.as_bytes(),
            &crate::request::spki_der(&key),
            &td(),
            std::slice::from_ref(&ca.der),
            now,
        )
        .unwrap_err();
        assert!(matches!(err, CertificateProblem::Untrusted { .. }), "{err}");
    }

    #[test]
    fn rejects_expired_and_not_yet_valid_certificates() {
        let ca = TestCa::new();
        let key = KeyPair::generate().unwrap();
        let now = SystemTime::now();
        let pem = ca.issue(&key, "spiffe://a.test/ns/x/sa/y", now, 600);
        for at in [
            now + Duration::from_secs(600),
            now - Duration::from_secs(3600),
        ] {
            let err = check(
                pem.as_bytes(),
                &crate::request::spki_der(&key),
                &td(),
                std::slice::from_ref(&ca.der),
                at,
            )
            .unwrap_err();
            assert!(
                matches!(err, CertificateProblem::NotValidNow { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn rejects_svid_of_another_trust_domain_and_junk() {
        let ca = TestCa::new();
        let key = KeyPair::generate().unwrap();
        let now = SystemTime::now();
        let pem = ca.issue(&key, "spiffe://b.test/ns/x/sa/y", now, 600);
        let err = check(
            pem.as_bytes(),
            &crate::request::spki_der(&key),
            &td(),
            std::slice::from_ref(&ca.der),
            now,
        )
        .unwrap_err();
        assert!(
            matches!(err, CertificateProblem::NotOurTrustDomain { .. }),
            "{err}"
        );
        for junk in ["", "not pem", &key.serialize_pem()] {
            let err = check(
                junk.as_bytes(),
                &crate::request::spki_der(&key),
                &td(),
                std::slice::from_ref(&ca.der),
                now,
            )
            .unwrap_err();
            assert!(
                matches!(err, CertificateProblem::Malformed(_)),
                "{junk:?}: {err}"
            );
        }
    }
}
