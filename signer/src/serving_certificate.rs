//! Certificates the signer issues to itself: the injection webhook's serving
//! certificate, signed by the service-dns CA so that the API server verifies the
//! webhook against the service-dns trust bundle (the `caBundle` the controller keeps in
//! the MutatingWebhookConfiguration), with no openssl step and no cert-manager.
//!
//! Pure: the CA, the names, `now` and the lifetime in; a credential bundle out (PKCS#8
//! key, then the leaf and the CA's intermediates: the layout podtls loads).

use std::time::{Duration, SystemTime};

use rcgen::string::Ia5String;
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::{Error, SigningCa, BACKDATE, MIN_LIFETIME};

/// A serving credential.
#[derive(Clone)]
pub struct ServingCredential {
    /// PKCS#8 `PRIVATE KEY`, then the leaf and the CA's intermediates, PEM.
    pub bundle_pem: String,
    /// The leaf's notAfter.
    pub not_after: SystemTime,
    /// When to issue the next one: at two thirds of the lifetime.
    pub renew_at: SystemTime,
}

impl std::fmt::Debug for ServingCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServingCredential")
            .field("not_after", &self.not_after)
            .field("renew_at", &self.renew_at)
            .finish_non_exhaustive()
    }
}

/// Issues a serving certificate for `dns_names` (serverAuth only) from `ca`, valid from
/// `now` minus [`BACKDATE`] for `lifetime`, never past the CA's own notAfter.
///
/// # Errors
/// [`Error::CaNotValidNow`] or [`Error::CaExpiresTooSoon`] when the CA cannot cover at
/// least [`MIN_LIFETIME`]; [`Error::SelfCheck`] for a name that is not a DNS name;
/// [`Error::Signing`] when signing fails.
pub fn issue_serving_certificate(
    ca: &SigningCa,
    dns_names: &[String],
    now: SystemTime,
    lifetime: Duration,
) -> Result<ServingCredential, Error> {
    if now < ca.not_before() || now >= ca.not_after() {
        return Err(Error::CaNotValidNow {
            ca_id: ca.id().to_string(),
            now,
            not_before: ca.not_before(),
            not_after: ca.not_after(),
        });
    }
    let not_before = now - BACKDATE;
    let not_after = (now + lifetime).min(ca.not_after());
    if not_after.duration_since(now).unwrap_or_default() < MIN_LIFETIME {
        return Err(Error::CaExpiresTooSoon {
            ca_id: ca.id().to_string(),
            not_after: ca.not_after(),
        });
    }
    let mut sans = Vec::with_capacity(dns_names.len());
    for name in dns_names {
        let ia5 = Ia5String::try_from(name.as_str()).map_err(|e| Error::SelfCheck {
            reason: format!("serving certificate name {name:?} is not a DNS name: {e}"),
        })?;
        sans.push(SanType::DnsName(ia5));
    }
    let signing = |source: rcgen::Error| Error::Signing {
        ca_id: ca.id().to_string(),
        source,
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(signing)?;
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| Error::SelfCheck {
        reason: "the system random number generator failed".into(),
    })?;
    serial[0] = (serial[0] & 0x7f) | 0x40;

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.not_before = OffsetDateTime::from(not_before);
    params.not_after = OffsetDateTime::from(not_after);
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let leaf = params.signed_by(&key, ca.issuer()).map_err(signing)?;

    let mut bundle_pem = key.serialize_pem();
    crate::pem::push_certificate(&mut bundle_pem, leaf.der());
    for der in ca.intermediates_der() {
        crate::pem::push_certificate(&mut bundle_pem, der);
    }
    let renew_at = not_before + not_after.duration_since(not_before).unwrap_or_default() * 2 / 3;
    Ok(ServingCredential {
        bundle_pem,
        not_after,
        renew_at,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{generate_ca, KeyType};

    fn names() -> Vec<String> {
        vec!["podtls-injection.mesh-controller.svc".to_string()]
    }

    #[test]
    fn the_credential_loads_in_podtls_and_verifies_against_the_pool_bundle() {
        let now = SystemTime::now();
        let ca = generate_ca(
            "ca-1",
            KeyType::EcdsaP256,
            now,
            Duration::from_secs(86_400 * 30),
        )
        .unwrap();
        let issued =
            issue_serving_certificate(&ca, &names(), now, Duration::from_secs(86_400)).unwrap();
        let origin = podtls::Origin::memory("serving credential");
        let creds = podtls::Credentials::from_bundle_pem(
            issued.bundle_pem.as_bytes(),
            &origin,
            podtls::LeafKind::Any,
            now,
        )
        .unwrap();
        assert_eq!(
            creds.info().dns_names,
            ["podtls-injection.mesh-controller.svc".to_string()]
        );
        let pool = crate::CaPool::single(ca);
        let roots =
            podtls::TrustBundle::from_pem(pool.trust_bundle_pem().as_bytes(), &origin).unwrap();
        let name = rustls::pki_types::ServerName::try_from("podtls-injection.mesh-controller.svc")
            .unwrap();
        podtls::verification::verify_dns_server(
            &creds.chain()[0],
            &creds.chain()[1..],
            &name,
            &roots,
            rustls::pki_types::UnixTime::now(),
        )
        .expect("the API server would accept it");
        assert!(issued.renew_at > now && issued.renew_at < issued.not_after);
        assert!(!format!("{issued:?}").contains("PRIVATE"));
    }

    #[test]
    fn never_outlives_its_ca_and_refuses_a_ca_about_to_expire() {
        let now = SystemTime::now();
        let ca = generate_ca("ca-1", KeyType::Ed25519, now, Duration::from_secs(7200)).unwrap();
        let issued =
            issue_serving_certificate(&ca, &names(), now, Duration::from_secs(86_400)).unwrap();
        assert!(issued.not_after <= ca.not_after());
        let late = ca.not_after() - Duration::from_secs(60);
        assert!(matches!(
            issue_serving_certificate(&ca, &names(), late, Duration::from_secs(86_400)),
            Err(Error::CaExpiresTooSoon { .. })
        ));
        assert!(matches!(
            issue_serving_certificate(&ca, &names(), ca.not_after(), Duration::from_secs(86_400)),
            Err(Error::CaNotValidNow { .. })
        ));
        assert!(matches!(
            issue_serving_certificate(
                &ca,
                &["bad name\u{e9}".into()],
                now,
                Duration::from_secs(86_400)
            ),
            Err(Error::SelfCheck { .. })
        ));
    }
}
