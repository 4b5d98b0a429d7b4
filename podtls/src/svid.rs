//! X509-SVID leaf checks (SPIFFE X509-SVID specification, sections 4 and 5).
//!
//! Pure functions over a parsed certificate: no chain building here (that is
//! [`crate::peer_verification`]'s job) and no clock.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::spiffe_id::{parse_spiffe_id, SpiffeId, SpiffeIdError};

/// Why a leaf certificate is not a valid X509-SVID.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The certificate has no URI SAN.
    #[error("no URI SAN (an X509-SVID carries exactly one spiffe:// URI SAN)")]
    NoUriSan,
    /// The certificate has more than one URI SAN.
    #[error("{count} URI SANs (an X509-SVID carries exactly one)")]
    MultipleUriSans {
        /// How many there are.
        count: usize,
    },
    /// The URI SAN is not a `spiffe://` URI.
    #[error("URI SAN {uri:?} is not a spiffe:// URI")]
    NotSpiffe {
        /// The URI.
        uri: String,
    },
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("URI SAN {uri:?} is not a valid SPIFFE ID: {reason}")]
    InvalidId {
        /// The URI.
        uri: String,
        /// Why.
        reason: SpiffeIdError,
    },
    /// The SPIFFE ID names only a trust domain, not a workload.
    #[error("SPIFFE ID {id} has no path (a leaf SVID must identify a workload)")]
    NoPath {
        /// The ID.
        id: String,
    },
    /// The leaf is a CA certificate.
    #[error("leaf has basicConstraints cA=true")]
    IsCa,
    /// The leaf lacks the digitalSignature key usage.
    #[error("leaf key usage lacks digitalSignature")]
    NoDigitalSignature,
    /// The leaf may sign certificates or CRLs.
    #[error("leaf key usage has keyCertSign or cRLSign set")]
    SigningKeyUsage,
    /// The certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    Malformed(String),
}

/// Returns the SPIFFE ID of `leaf` if it is a valid X509-SVID leaf, checking:
/// exactly one URI SAN; lowercase `spiffe` scheme; a valid SPIFFE ID with a
/// path; not a CA; key usage present with digitalSignature and without
/// keyCertSign / cRLSign.
pub(crate) fn validate_svid_leaf(leaf: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let id = svid_id(leaf)?;
    let bc = leaf
        .basic_constraints()
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    if bc.is_some_and(|bc| bc.value.ca) {
        return Err(SvidError::IsCa);
    }
    let ku = leaf
        .key_usage()
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    let Some(ku) = ku else {
        return Err(SvidError::NoDigitalSignature);
    };
    if !ku.value.digital_signature() {
        return Err(SvidError::NoDigitalSignature);
    }
    if ku.value.key_cert_sign() || ku.value.crl_sign() {
        return Err(SvidError::SigningKeyUsage);
    }
    Ok(id)
}

/// Parses `der` and validates it as an X509-SVID leaf.
pub fn validate_svid_leaf_der(der: &[u8]) -> Result<SpiffeId, SvidError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    validate_svid_leaf(&cert)
}

/// Extracts the SPIFFE ID from the single URI SAN, without the key-usage checks.
pub(crate) fn svid_id(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    let uris: Vec<&str> = san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let uri = match uris.as_slice() {
        [] => return Err(SvidError::NoUriSan),
        [one] => *one,
        many => return Err(SvidError::MultipleUriSans { count: many.len() }),
    };
    let id = parse_spiffe_id(uri).map_err(|reason| match reason {
        SpiffeIdError::Scheme => SvidError::NotSpiffe {
            uri: uri.to_string(),
        },
        reason => SvidError::InvalidId {
            uri: uri.to_string(),
            reason,
        },
    })?;
    if id.path().is_empty() {
        return Err(SvidError::NoPath { id: id.to_string() });
    }
    Ok(id)
}
