//! Which trust domain a namespace's pods get their SPIFFE IDs in, when the spiffe signer
//! serves several trust domains.
//!
//! The mapping is operator configuration (`--spiffe-namespace-trust-domain NS=TD`); a
//! namespace not named gets the default trust domain (`--spiffe-trust-domain`), so a
//! signer configured as before serves exactly one trust domain, as before.
//!
//! The trust domain is chosen by the request's namespace alone: a PodCertificateRequest
//! lives in its pod's namespace (kube-apiserver enforces it, and the entitlement check
//! compares the live pod), and nothing else in a request can select a trust domain.
//! A pod can therefore never obtain an ID in another namespace's trust domain.

use std::collections::BTreeMap;
use std::fmt;

use spiffe::TrustDomain;

use crate::{parse_trust_domain, Error};

/// Namespace -> trust domain, with a default for every namespace not named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomainMap {
    default: TrustDomain,
    namespaces: BTreeMap<String, TrustDomain>,
}

/// One `NS=TD` assignment, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceAssignment {
    /// The namespace (an RFC 1123 label).
    pub namespace: String,
    /// Its trust domain.
    pub trust_domain: TrustDomain,
}

impl std::str::FromStr for NamespaceAssignment {
    type Err = Error;

    /// Parses `namespace=trust-domain`; the trust domain as strictly as
    /// [`parse_trust_domain`] (it becomes a ClusterTrustBundle label value).
    fn from_str(given: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidTrustDomainMapping {
            given: given.to_string(),
            reason,
        };
        let (namespace, td) = given
            .split_once('=')
            .ok_or_else(|| invalid("expected NAMESPACE=TRUST_DOMAIN".into()))?;
        if !is_dns_label(namespace) {
            return Err(invalid(format!(
                "{namespace:?} is not a namespace name (an RFC 1123 label: lowercase letters, digits and '-', at most 63)"
            )));
        }
        let trust_domain = parse_trust_domain(td).map_err(|e| invalid(e.to_string()))?;
        Ok(NamespaceAssignment {
            namespace: namespace.to_string(),
            trust_domain,
        })
    }
}

impl TrustDomainMap {
    /// Every namespace in `default`.
    pub fn single(default: TrustDomain) -> TrustDomainMap {
        TrustDomainMap {
            default,
            namespaces: BTreeMap::new(),
        }
    }

    /// `default` plus the given assignments. A namespace assigned twice is refused,
    /// even to the same trust domain (a typo in one of them would otherwise go unseen).
    pub fn new(
        default: TrustDomain,
        assignments: impl IntoIterator<Item = NamespaceAssignment>,
    ) -> Result<TrustDomainMap, Error> {
        let mut namespaces = BTreeMap::new();
        for a in assignments {
            if let Some(previous) = namespaces.insert(a.namespace.clone(), a.trust_domain.clone()) {
                return Err(Error::InvalidTrustDomainMapping {
                    given: format!("{}={}", a.namespace, a.trust_domain),
                    reason: format!(
                        "namespace {:?} is already assigned to trust domain {previous}",
                        a.namespace
                    ),
                });
            }
        }
        Ok(TrustDomainMap {
            default,
            namespaces,
        })
    }

    /// The trust domain of pods in `namespace`.
    pub fn for_namespace(&self, namespace: &str) -> &TrustDomain {
        self.namespaces.get(namespace).unwrap_or(&self.default)
    }

    /// The default trust domain.
    pub fn default_trust_domain(&self) -> &TrustDomain {
        &self.default
    }

    /// Every trust domain that namespaces can be in: the default first, then the others
    /// sorted, each once.
    pub fn trust_domains(&self) -> Vec<TrustDomain> {
        let mut all = vec![self.default.clone()];
        for td in self.namespaces.values() {
            if !all.contains(td) {
                all.push(td.clone());
            }
        }
        all[1..].sort_by(|a, b| a.as_str().cmp(b.as_str()));
        all
    }

    /// The explicit assignments.
    pub fn assignments(&self) -> impl Iterator<Item = (&str, &TrustDomain)> {
        self.namespaces.iter().map(|(ns, td)| (ns.as_str(), td))
    }
}

impl fmt::Display for TrustDomainMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "default={}", self.default)?;
        for (ns, td) in &self.namespaces {
            write!(f, ",{ns}={td}")?;
        }
        Ok(())
    }
}

/// An RFC 1123 label (what namespace names are).
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td(s: &str) -> TrustDomain {
        parse_trust_domain(s).unwrap()
    }

    fn assign(s: &str) -> NamespaceAssignment {
        s.parse().unwrap()
    }

    #[test]
    fn unnamed_namespaces_get_the_default_trust_domain() {
        let map = TrustDomainMap::new(td("a.example"), [assign("team-b=b.example")]).unwrap();
        assert_eq!(map.for_namespace("team-b").as_str(), "b.example");
        assert_eq!(map.for_namespace("default").as_str(), "a.example");
        assert_eq!(map.for_namespace("").as_str(), "a.example");
        // A prefix or a case variant of an assigned namespace is another namespace.
        assert_eq!(map.for_namespace("team-b2").as_str(), "a.example");
        assert_eq!(map.for_namespace("team").as_str(), "a.example");
        assert_eq!(
            map.trust_domains()
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>(),
            ["a.example", "b.example"]
        );
    }

    #[test]
    fn single_is_exactly_one_trust_domain() {
        let map = TrustDomainMap::single(td("cluster.local"));
        assert_eq!(map.trust_domains(), vec![td("cluster.local")]);
        assert_eq!(map.for_namespace("kube-system").as_str(), "cluster.local");
    }

    #[test]
    fn trust_domains_are_listed_once_default_first() {
        let map = TrustDomainMap::new(
            td("m.example"),
            [
                assign("x=z.example"),
                assign("y=b.example"),
                assign("z=z.example"),
                assign("w=m.example"),
            ],
        )
        .unwrap();
        let names: Vec<String> = map.trust_domains().iter().map(|t| t.to_string()).collect();
        assert_eq!(names, ["m.example", "b.example", "z.example"]);
    }

    #[test]
    fn refuses_a_namespace_assigned_twice() {
        let err = TrustDomainMap::new(
            td("a.example"),
            [assign("team=b.example"), assign("team=b.example")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("already assigned"), "{err}");
    }

    #[test]
    fn refuses_bad_assignments_naming_what() {
        for (bad, why) in [
            ("team", "NAMESPACE=TRUST_DOMAIN"),
            ("Team=b.example", "not a namespace name"),
            ("=b.example", "not a namespace name"),
            ("team=spiffe://b.example", "bare trust domain"),
            ("team=B.example", "lowercase"),
            ("team=", "invalid SPIFFE trust domain"),
        ] {
            let err = bad.parse::<NamespaceAssignment>().unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
        // The label-length refusal applies to every trust domain, not just the default.
        let long = format!("team={}.example.org", "a".repeat(60));
        let err = long.parse::<NamespaceAssignment>().unwrap_err().to_string();
        assert!(err.contains("at most 63 characters"), "{err}");
    }
}
