//! Which cluster issued a certificate: its ServiceAccount issuer URL, carried in the
//! certificate's Subject Information Access extension.
//!
//! The field, and why:
//! - **Subject Information Access** (SIA, RFC 5280 section 4.2.2.2, OID
//!   `1.3.6.1.5.5.7.1.11`, non-critical as RFC 5280 requires): "how to access
//!   information and services for the subject". One `AccessDescription` whose
//!   `accessMethod` is [`ISSUING_CLUSTER_ACCESS_METHOD`] and whose `accessLocation` is a
//!   `uniformResourceIdentifier` ([6] IA5String) holding the issuer URL: below it are
//!   the cluster's OIDC discovery document and, next to it, the signer's trust
//!   anchors.
//! - **Not a URI SAN**: an X509-SVID has exactly one URI SAN, the SPIFFE ID
//!   (X509-SVID section 2: validators MUST reject more than one); the spec places no
//!   other constraint on extensions, and a non-critical one is ignored by every
//!   verifier that does not know it (RFC 5280 section 4.2), so the certificate stays a
//!   valid X509-SVID that go-spiffe, rustls/WebPKI, Go's crypto/x509 and OpenSSL
//!   accept unchanged.
//! - **A standard extension with our own access method**, rather than an extension of
//!   our own: this project owns no OID arc, so the access method is a UUID OID
//!   (`2.25.<UUID as an integer>`, ITU-T X.667: minted without registration), which
//!   lives inside the extension value where any OID can be written. The URI keeps its
//!   standard type (IA5String, `[6]` as in GeneralName).
//! - **Not a subject attribute**: the subject names the subject (the pod-identity
//!   signer's CN is the pod name); the cluster that vouches for it is information about
//!   where the subject lives, which is what SIA is for.
//!
//! Decoding (with the `der` crate): the SIA extension at most once; other access
//! methods are skipped; ours at most once, with a `[6]` location that is a valid
//! [`IssuingCluster`]. Anything else is an error.

use std::fmt;

use der::asn1::AnyRef;
use der::{Decode as _, Encode as _, Sequence, Tag, TagNumber, Tagged as _};

/// The Subject Information Access extension's OID, dotted.
pub const SUBJECT_INFO_ACCESS_OID: &str = "1.3.6.1.5.5.7.1.11";

/// The same OID as arcs (for certificate builders such as rcgen).
pub const SUBJECT_INFO_ACCESS_OID_ARCS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 11];

/// The access method naming the issuing cluster's ServiceAccount issuer URL:
/// `2.25.288953363392044863347521704628287133871` (UUID
/// `d96264bc-fe61-45cf-8d31-b6a374a758af`).
pub const ISSUING_CLUSTER_ACCESS_METHOD: &str = "2.25.288953363392044863347521704628287133871";

/// The DER content octets of [`ISSUING_CLUSTER_ACCESS_METHOD`] (an arc wider than 64
/// bits, which rcgen's and const-oid's OID types cannot hold).
const ACCESS_METHOD_DER: &[u8] = &[
    0x69, 0x83, 0xb2, 0xe2, 0xb2, 0xaf, 0x9f, 0xe6, 0x8a, 0x97, 0x9f, 0x8d, 0x98, 0xed, 0xd4, 0xb7,
    0xa5, 0x9d, 0xb1, 0x2f,
];

/// The longest issuer URL accepted.
pub const MAX_ISSUER_LEN: usize = 2048;

/// The ServiceAccount issuer URL of the cluster whose signer issued a certificate
/// (kube-apiserver's `--service-account-issuer`, the `issuer` of its
/// `/.well-known/openid-configuration`), e.g.
/// `https://kubernetes.default.svc.cluster.local`. Compared byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IssuingCluster(String);

/// Why an issuer URL or an SIA extension was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssuingClusterError {
    /// Not a URI podtls accepts.
    #[error("issuer {given:?} is not a valid issuer URL: {reason}")]
    InvalidUrl {
        /// The value (cut at 100 characters).
        given: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The extension is not a DER SEQUENCE OF AccessDescription, or our entry's
    /// location is not a `[6]` URI.
    #[error("the Subject Information Access extension is malformed: {0}")]
    Malformed(String),
    /// The certificate names more than one issuing cluster, or carries SIA twice.
    #[error("the certificate carries {0} issuing clusters")]
    Repeated(usize),
}

impl IssuingCluster {
    /// Checks `url`: 1 to [`MAX_ISSUER_LEN`] bytes of printable ASCII without spaces,
    /// beginning with a URI scheme (`https:`, ...).
    ///
    /// # Errors
    /// [`IssuingClusterError::InvalidUrl`].
    pub fn new(url: impl Into<String>) -> Result<IssuingCluster, IssuingClusterError> {
        let url = url.into();
        let invalid = |reason| IssuingClusterError::InvalidUrl {
            given: url.chars().take(100).collect(),
            reason,
        };
        if url.is_empty() {
            return Err(invalid("it is empty"));
        }
        if url.len() > MAX_ISSUER_LEN {
            return Err(invalid("it is longer than 2048 bytes"));
        }
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "it holds a space, a control or a non-ASCII character",
            ));
        }
        let scheme = url.split(':').next().unwrap_or_default();
        let scheme_ok = url.contains(':')
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(invalid("it does not begin with a URI scheme (https:)"));
        }
        Ok(IssuingCluster(url))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value of a Subject Information Access extension naming this cluster
    /// (DER; the extension is [`SUBJECT_INFO_ACCESS_OID`], non-critical).
    ///
    /// # Errors
    /// [`IssuingClusterError::Malformed`] if DER encoding fails (it does not for a
    /// valid URL).
    pub fn to_sia_der(&self) -> Result<Vec<u8>, IssuingClusterError> {
        let entry = AccessDescription {
            access_method: AnyRef::new(Tag::ObjectIdentifier, ACCESS_METHOD_DER)
                .map_err(malformed)?,
            access_location: AnyRef::new(uri_tag(), self.0.as_bytes()).map_err(malformed)?,
        };
        vec![entry].to_der().map_err(malformed)
    }

    /// The issuing cluster named in a Subject Information Access extension value, if
    /// any (other access methods are skipped).
    ///
    /// # Errors
    /// [`IssuingClusterError`] for malformed DER, our method twice, or a location that
    /// is not a `[6]` URI accepted by [`IssuingCluster::new`].
    pub fn from_sia_der(value: &[u8]) -> Result<Option<IssuingCluster>, IssuingClusterError> {
        let entries: Vec<AccessDescription<'_>> = Vec::from_der(value).map_err(malformed)?;
        let ours: Vec<_> = entries
            .iter()
            .filter(|e| {
                e.access_method.tag() == Tag::ObjectIdentifier
                    && e.access_method.value() == ACCESS_METHOD_DER
            })
            .collect();
        match ours.as_slice() {
            [] => Ok(None),
            [entry] => {
                if entry.access_location.tag() != uri_tag() {
                    return Err(IssuingClusterError::Malformed(format!(
                        "the issuing cluster's location has tag {}, not [6] (uniformResourceIdentifier)",
                        entry.access_location.tag()
                    )));
                }
                let url = std::str::from_utf8(entry.access_location.value())
                    .map_err(|_| IssuingClusterError::Malformed("the URI is not ASCII".into()))?;
                IssuingCluster::new(url).map(Some)
            }
            more => Err(IssuingClusterError::Repeated(more.len())),
        }
    }

    /// The issuing cluster of a parsed certificate: `Ok(None)` without one.
    ///
    /// Call it on a verified leaf only.
    pub(crate) fn from_certificate(
        cert: &x509_parser::certificate::X509Certificate<'_>,
    ) -> Result<Option<IssuingCluster>, IssuingClusterError> {
        let found: Vec<_> = cert
            .extensions()
            .iter()
            .filter(|e| e.oid.to_id_string() == SUBJECT_INFO_ACCESS_OID)
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [ext] => IssuingCluster::from_sia_der(ext.value),
            more => Err(IssuingClusterError::Repeated(more.len())),
        }
    }
}

impl fmt::Display for IssuingCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for IssuingCluster {
    type Err = IssuingClusterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IssuingCluster::new(s)
    }
}

/// `AccessDescription ::= SEQUENCE { accessMethod OBJECT IDENTIFIER, accessLocation
/// GeneralName }`, both kept as raw TLVs (other entries may use any OID and any
/// GeneralName).
#[derive(Clone, Sequence)]
struct AccessDescription<'a> {
    access_method: AnyRef<'a>,
    access_location: AnyRef<'a>,
}

/// `uniformResourceIdentifier [6] IA5String` inside GeneralName (implicit tagging).
fn uri_tag() -> Tag {
    Tag::ContextSpecific {
        constructed: false,
        number: TagNumber(6),
    }
}

fn malformed(e: der::Error) -> IssuingClusterError {
    IssuingClusterError::Malformed(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    #[test]
    fn round_trips_through_the_sia_value() {
        let issuer = IssuingCluster::new(ISSUER).unwrap();
        let der = issuer.to_sia_der().unwrap();
        assert_eq!(IssuingCluster::from_sia_der(&der).unwrap(), Some(issuer));
        // SEQUENCE { SEQUENCE { OID 2.25..., [6] "https://..." } }
        assert_eq!(der[0], 0x30);
        assert_eq!(der[2], 0x30);
        assert_eq!(der[4], 0x06);
        assert_eq!(&der[6..6 + ACCESS_METHOD_DER.len()], ACCESS_METHOD_DER);
        assert_eq!(der[6 + ACCESS_METHOD_DER.len()], 0x86);
        assert!(der.ends_with(ISSUER.as_bytes()));
    }

    #[test]
    fn the_access_method_bytes_are_the_documented_uuid_oid() {
        // 2.25.N: first octet 2*40+25, then N in base 128, high bit on all but the last.
        assert_eq!(ACCESS_METHOD_DER[0], 2 * 40 + 25);
        let mut n: u128 = 0;
        for (i, b) in ACCESS_METHOD_DER[1..].iter().enumerate() {
            n = (n << 7) | u128::from(b & 0x7f);
            let last = i == ACCESS_METHOD_DER.len() - 2;
            assert_eq!(b & 0x80 == 0, last, "octet {i}");
        }
        assert_eq!(format!("2.25.{n}"), ISSUING_CLUSTER_ACCESS_METHOD);
        let uuid = format!("{n:032x}");
        assert_eq!(uuid, "d96264bcfe6145cf8d31b6a374a758af");
    }

    #[test]
    fn skips_other_access_methods_and_finds_ours_among_them() {
        // id-ad-caRepository (1.3.6.1.5.5.7.48.5) with a URI, then ours.
        let other_oid = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x05];
        let entries = [
            AccessDescription {
                access_method: AnyRef::new(Tag::ObjectIdentifier, &other_oid).unwrap(),
                access_location: AnyRef::new(uri_tag(), b"https://repo.example/").unwrap(),
            },
            AccessDescription {
                access_method: AnyRef::new(Tag::ObjectIdentifier, ACCESS_METHOD_DER).unwrap(),
                access_location: AnyRef::new(uri_tag(), ISSUER.as_bytes()).unwrap(),
            },
        ];
        let der = entries.to_vec().to_der().unwrap();
        assert_eq!(
            IssuingCluster::from_sia_der(&der)
                .unwrap()
                .unwrap()
                .as_str(),
            ISSUER
        );
        // Only the other one: no issuing cluster.
        let der = entries[..1].to_vec().to_der().unwrap();
        assert_eq!(IssuingCluster::from_sia_der(&der).unwrap(), None);
    }

    #[test]
    fn rejects_our_method_twice_a_non_uri_location_and_a_bad_url() {
        let ours = |tag: Tag, loc: &'static [u8]| AccessDescription {
            access_method: AnyRef::new(Tag::ObjectIdentifier, ACCESS_METHOD_DER).unwrap(),
            access_location: AnyRef::new(tag, loc).unwrap(),
        };
        let twice = vec![
            ours(uri_tag(), ISSUER.as_bytes()),
            ours(uri_tag(), b"https://other.example"),
        ]
        .to_der()
        .unwrap();
        assert_eq!(
            IssuingCluster::from_sia_der(&twice),
            Err(IssuingClusterError::Repeated(2))
        );
        // dNSName [2] instead of a URI.
        let dns = Tag::ContextSpecific {
            constructed: false,
            number: TagNumber(2),
        };
        let der = vec![ours(dns, b"example.org")].to_der().unwrap();
        assert!(matches!(
            IssuingCluster::from_sia_der(&der),
            Err(IssuingClusterError::Malformed(_))
        ));
        let der = vec![ours(uri_tag(), b"no scheme here")].to_der().unwrap();
        assert!(matches!(
            IssuingCluster::from_sia_der(&der),
            Err(IssuingClusterError::InvalidUrl { .. })
        ));
        let der = vec![ours(uri_tag(), &[0x68, 0x3a, 0xff])].to_der().unwrap();
        assert!(IssuingCluster::from_sia_der(&der).is_err());
    }

    #[test]
    fn rejects_garbage_and_trailing_bytes() {
        let good = IssuingCluster::new(ISSUER).unwrap().to_sia_der().unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(IssuingCluster::from_sia_der(&trailing).is_err());
        assert!(IssuingCluster::from_sia_der(&good[..good.len() - 1]).is_err());
        assert!(IssuingCluster::from_sia_der(b"").is_err());
        assert!(IssuingCluster::from_sia_der(&[0x04, 0x00]).is_err());
    }

    #[test]
    fn validates_urls() {
        assert!(IssuingCluster::new(ISSUER).is_ok());
        assert!(IssuingCluster::new("https://oidc.example/clusters/a").is_ok());
        for bad in [
            "",
            "kubernetes.default.svc",
            "https://a b",
            "https://ü.example",
            "1https://x",
            ":x",
        ] {
            assert!(IssuingCluster::new(bad).is_err(), "{bad:?}");
        }
        assert!(IssuingCluster::new(format!("https://{}", "a".repeat(MAX_ISSUER_LEN))).is_err());
    }
}
