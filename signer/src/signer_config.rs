//! Which signer this is and what it accepts.

use std::time::Duration;

use spiffe::TrustDomain;

use crate::{DnsNameOptions, Error, IssuingCluster, KeyType};

/// The default name of the service-dns signer.
pub const SERVICE_DNS_SIGNER_NAME: &str = "row-major.net/service-dns";
/// The default name of the spiffe signer.
pub const SPIFFE_SIGNER_NAME: &str = "row-major.net/spiffe";
/// The default name of the pod-identity signer (meshtool's).
pub const POD_IDENTITY_SIGNER_NAME: &str = "row-major.net/pod-identity";

/// What a signer puts into a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerKind {
    /// One DNS SAN `<service>.<namespace>.svc` per Service selecting the pod; empty Subject.
    ServiceDns,
    /// Exactly one URI SAN `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    Spiffe {
        /// The trust domain of every issued SPIFFE ID.
        trust_domain: TrustDomain,
    },
    /// The pod's whole identity: the PodIdentity extension, the SPIFFE ID
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>` as the one URI SAN,
    /// the DNS names of the Services selecting the pod (as service-dns, possibly none),
    /// subject CN = pod name.
    PodIdentity {
        /// The trust domain of every issued SPIFFE ID.
        trust_domain: TrustDomain,
    },
}

/// The configuration of one signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerConfig {
    /// The signer name requests must carry in `spec.signerName`.
    pub name: String,
    /// What the signer issues.
    pub kind: SignerKind,
    /// Requester key types the signer accepts; others are denied with `UnsupportedKeyType`.
    pub allowed_key_types: Vec<KeyType>,
    /// The longest lifetime issued, whatever `spec.maxExpirationSeconds` allows (24 h).
    pub max_lifetime: Duration,
    /// The forms of Service DNS names issued (service-dns and pod-identity).
    pub dns: DnsNameOptions,
    /// The cluster named in every certificate (its ServiceAccount issuer URL), if known.
    pub issuing_cluster: Option<IssuingCluster>,
}

/// The default lifetime ceiling: 24 hours, as the original signers.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

impl SignerConfig {
    /// `row-major.net/service-dns` with every key type allowed.
    pub fn service_dns() -> SignerConfig {
        SignerConfig {
            name: SERVICE_DNS_SIGNER_NAME.to_string(),
            kind: SignerKind::ServiceDns,
            allowed_key_types: KeyType::ALL.to_vec(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            dns: DnsNameOptions::default(),
            issuing_cluster: None,
        }
    }

    /// `row-major.net/spiffe` in `trust_domain` with every key type allowed.
    pub fn spiffe(trust_domain: TrustDomain) -> SignerConfig {
        SignerConfig {
            name: SPIFFE_SIGNER_NAME.to_string(),
            kind: SignerKind::Spiffe { trust_domain },
            allowed_key_types: KeyType::ALL.to_vec(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            dns: DnsNameOptions::default(),
            issuing_cluster: None,
        }
    }

    /// `row-major.net/pod-identity` in `trust_domain` with every key type allowed.
    pub fn pod_identity(trust_domain: TrustDomain) -> SignerConfig {
        SignerConfig {
            name: POD_IDENTITY_SIGNER_NAME.to_string(),
            kind: SignerKind::PodIdentity { trust_domain },
            allowed_key_types: KeyType::ALL.to_vec(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            dns: DnsNameOptions::default(),
            issuing_cluster: None,
        }
    }

    /// Replaces the DNS name options.
    pub fn with_dns(mut self, dns: DnsNameOptions) -> SignerConfig {
        self.dns = dns;
        self
    }

    /// Names `cluster` as the issuing cluster in every certificate.
    pub fn with_issuing_cluster(mut self, cluster: Option<IssuingCluster>) -> SignerConfig {
        self.issuing_cluster = cluster;
        self
    }

    /// Whether this signer issues Service DNS names (service-dns, pod-identity).
    pub fn issues_dns_names(&self) -> bool {
        matches!(
            self.kind,
            SignerKind::ServiceDns | SignerKind::PodIdentity { .. }
        )
    }

    /// Replaces the signer name.
    pub fn with_name(mut self, name: impl Into<String>) -> SignerConfig {
        self.name = name.into();
        self
    }

    /// Replaces the accepted key types.
    pub fn with_allowed_key_types(mut self, types: impl Into<Vec<KeyType>>) -> SignerConfig {
        self.allowed_key_types = types.into();
        self
    }
}

/// The longest Kubernetes label value (a SPIFFE trust domain may have 255 characters).
pub const MAX_LABEL_VALUE_LEN: usize = 63;

/// Parses a `--spiffe-trust-domain` value strictly: a bare, lowercase trust domain name
/// (`cluster.local`), not a `spiffe://` URI and not mixed case, so that the configured
/// string is exactly the one that appears in certificates and bundle labels.
///
/// The spiffe signer labels its ClusterTrustBundle with the trust domain
/// (`spiffe.row-major.net/trust-domain`, as meshtool; pods select the bundle by it), so
/// the trust domain must also be a valid label value: at most [`MAX_LABEL_VALUE_LEN`]
/// characters, beginning and ending with a letter or digit. Anything else is refused here,
/// at start-up, rather than failing every bundle apply later.
pub fn parse_trust_domain(given: &str) -> Result<TrustDomain, Error> {
    let invalid = |reason: String| Error::InvalidTrustDomain {
        given: given.to_string(),
        reason,
    };
    if given.contains(':') || given.contains('/') {
        return Err(invalid(
            "give the bare trust domain name (e.g. cluster.local), not a URI or path".into(),
        ));
    }
    let td = TrustDomain::new(given).map_err(|e| invalid(e.to_string()))?;
    if td.as_str() != given {
        return Err(invalid(format!(
            "trust domain names are lowercase; did you mean {:?}?",
            td.as_str()
        )));
    }
    if let Some(problem) = label_value_problem(given) {
        return Err(invalid(format!(
            "the spiffe signer labels its ClusterTrustBundle spiffe.row-major.net/trust-domain=<trust domain> (pods select the bundle by it), and {problem}; use a trust domain that is a valid label value"
        )));
    }
    Ok(td)
}

/// Why `value` (a valid trust domain: `[a-z0-9._-]`) is not a valid Kubernetes label
/// value, if it is not.
fn label_value_problem(value: &str) -> Option<String> {
    if value.len() > MAX_LABEL_VALUE_LEN {
        return Some(format!(
            "a label value has at most {MAX_LABEL_VALUE_LEN} characters, this trust domain has {}",
            value.len()
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(value.chars().next()) || !alnum(value.chars().last()) {
        return Some("a label value begins and ends with a letter or digit".to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_lowercase_dns_like_trust_domain() {
        assert_eq!(
            parse_trust_domain("cluster.local").unwrap().as_str(),
            "cluster.local"
        );
    }

    #[test]
    fn rejects_invalid_trust_domains_with_a_reason() {
        for bad in [
            "",
            "Cluster.Local",
            "spiffe://cluster.local",
            "a/b",
            "has space",
            "ünï",
        ] {
            let err = parse_trust_domain(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidTrustDomain { .. }),
                "{bad:?}: {err}"
            );
            assert!(
                err.to_string().contains("invalid SPIFFE trust domain"),
                "{err}"
            );
        }
    }

    #[test]
    fn accepts_a_trust_domain_of_exactly_63_characters() {
        let td = format!("{}.example", "a".repeat(63 - ".example".len()));
        assert_eq!(td.len(), 63);
        assert_eq!(parse_trust_domain(&td).unwrap().as_str(), td);
    }

    #[test]
    fn rejects_a_trust_domain_too_long_for_the_bundle_label_at_start_up() {
        // Valid SPIFFE (up to 255), but no label value: every bundle apply would fail.
        let td = format!("{}.example.org", "a".repeat(60));
        assert!(spiffe::TrustDomain::new(&td).is_ok());
        let err = parse_trust_domain(&td).unwrap_err().to_string();
        assert!(err.contains("spiffe.row-major.net/trust-domain"), "{err}");
        assert!(err.contains("at most 63 characters"), "{err}");
        assert!(err.contains(&format!("has {}", td.len())), "{err}");
    }

    #[test]
    fn rejects_a_trust_domain_that_cannot_begin_or_end_a_label_value() {
        let mut checked = 0;
        for td in ["-cluster.local", "cluster.local.", "_x", "x_"] {
            if spiffe::TrustDomain::new(td).is_err() {
                continue; // Refused as SPIFFE already.
            }
            let err = parse_trust_domain(td).unwrap_err().to_string();
            assert!(
                err.contains("begins and ends with a letter or digit"),
                "{td}: {err}"
            );
            checked += 1;
        }
        assert!(checked > 0, "every case was already invalid SPIFFE");
    }
}
