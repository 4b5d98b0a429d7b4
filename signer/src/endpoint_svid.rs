//! The X509-SVID the signer issues to itself for its `https_spiffe` bundle endpoint
//! (SPIFFE Trust Domain and Bundle §5.2.2): a fresh ECDSA P-256 key, exactly one URI SAN
//! (the endpoint's SPIFFE ID, which peers configure as `endpointSPIFFEID`), serverAuth,
//! signed by the trust domain's signing CA. Pure: explicit `now`, no I/O.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::SpiffeId;

use crate::{Error, SigningCa, BACKDATE};

/// The lifetime of the endpoint's SVID (it is re-issued at half of it).
pub const ENDPOINT_SVID_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// An issued endpoint SVID: the chain (leaf first, no root) and its key.
#[derive(Debug)]
pub struct EndpointSvid {
    /// Leaf, then the CA's intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// The leaf's notAfter.
    pub not_after: SystemTime,
    /// When to issue the next one: half-way through the lifetime.
    pub renew_at: SystemTime,
}

/// Issues the endpoint's SVID for `id` from `ca` at `now`, living
/// [`ENDPOINT_SVID_LIFETIME`] at most and never past the CA.
pub fn issue_endpoint_svid(
    ca: &SigningCa,
    id: &SpiffeId,
    now: SystemTime,
) -> Result<EndpointSvid, Error> {
    let fail = |reason: String| Error::SelfCheck { reason };
    if now < ca.not_before() || now >= ca.not_after() {
        return Err(Error::CaNotValidNow {
            ca_id: ca.id().to_string(),
            now,
            not_before: ca.not_before(),
            not_after: ca.not_after(),
        });
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(format!("endpoint key generation: {e}")))?;
    let not_before = now - BACKDATE;
    let not_after = (now + ENDPOINT_SVID_LIFETIME).min(ca.not_after());
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.not_before = time::OffsetDateTime::from(not_before);
    params.not_after = time::OffsetDateTime::from(not_after);
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| fail("random serial".into()))?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.subject_alt_names = vec![SanType::URI(
        rcgen::string::Ia5String::try_from(id.to_string())
            .map_err(|e| fail(format!("endpoint SPIFFE ID: {e}")))?,
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let leaf = params
        .signed_by(&key, ca.issuer())
        .map_err(|source| Error::Signing {
            ca_id: ca.id().to_string(),
            source,
        })?;
    let mut chain = vec![leaf.der().clone()];
    chain.extend(
        ca.intermediates_der()
            .iter()
            .map(|d| CertificateDer::from(d.clone())),
    );
    let lifetime = not_after.duration_since(now).unwrap_or_default();
    Ok(EndpointSvid {
        chain,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        not_after,
        renew_at: now + lifetime / 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate_ca, KeyType};

    #[test]
    fn issues_a_valid_svid_with_exactly_the_endpoint_id_renewed_half_way() {
        let now = SystemTime::now();
        let ca = generate_ca("e", KeyType::Ed25519, now, Duration::from_secs(30 * 86_400)).unwrap();
        let id =
            podtls::parse_spiffe_id("spiffe://a.example/podtls-signer/bundle-endpoint").unwrap();
        let svid = issue_endpoint_svid(&ca, &id, now).unwrap();
        let got = podtls::verification::validate_svid_leaf_der(&svid.chain[0]).unwrap();
        assert_eq!(got, id);
        assert!(svid.renew_at < svid.not_after);
        assert!(svid.renew_at > now);
        // The CA's expiry bounds it.
        let short = generate_ca("s", KeyType::Ed25519, now, Duration::from_secs(3600)).unwrap();
        let svid = issue_endpoint_svid(&short, &id, now).unwrap();
        assert!(svid.not_after <= short.not_after());
        // An expired CA issues nothing.
        assert!(issue_endpoint_svid(&short, &id, now + Duration::from_secs(7200)).is_err());
    }
}
