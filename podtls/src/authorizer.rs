//! Which verified SPIFFE IDs may talk to us (or we to them).
//!
//! An [`Authorizer`] runs only after the peer's chain has verified against the
//! bundle of its own trust domain; it never widens trust, it only narrows it.
//!
//! Besides the SPIFFE ID it can look at what the verified leaf says about the pod
//! ([`PodIdentity`]: namespace, ServiceAccount, node) and the cluster that issued it
//! ([`IssuingCluster`]); a rule about either refuses a peer whose leaf does not carry
//! it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use crate::error::Error;
use crate::issuing_cluster::IssuingCluster;
use crate::pod_identity::PodIdentity;
use crate::spiffe_id::{parse_spiffe_id, parse_trust_domain, SpiffeId, TrustDomain};

/// An authorization policy over SPIFFE IDs, shared by servers and clients.
#[derive(Clone)]
pub struct Authorizer(Rule);

#[derive(Clone)]
enum Rule {
    Any,
    MemberOf(BTreeSet<TrustDomain>),
    Exact(SpiffeId),
    OneOf(BTreeSet<SpiffeId>),
    PathPrefix {
        trust_domain: TrustDomain,
        prefix: String,
    },
    AnyOf(Vec<Authorizer>),
    AllOf(Vec<Authorizer>),
    Custom(Arc<dyn Fn(&SpiffeId) -> bool + Send + Sync>),
    PodNamespace(String),
    ServiceAccounts(BTreeSet<(String, String)>),
    OnNode(String),
    IssuedBy(IssuingCluster),
    CustomChain(Arc<ChainPredicate>),
}

/// What an [`Authorizer`] decides on: a verified peer's SPIFFE ID and, when its leaf
/// carries them, its pod identity and issuing cluster; when verification calls it, the
/// verified chain too.
#[derive(Debug, Clone, Copy)]
pub struct PeerClaims<'a> {
    /// The SPIFFE ID.
    pub id: &'a SpiffeId,
    /// The PodIdentity extension of the verified leaf.
    pub pod: Option<&'a PodIdentity>,
    /// The issuing cluster named by the verified leaf.
    pub issuing_cluster: Option<&'a IssuingCluster>,
    /// The verified chain: the leaf, then the intermediates it presented (leaf's issuer
    /// first), without the trust anchor. `None` when only the ID is known: a
    /// [`Authorizer::custom_with_chain`] predicate then denies.
    pub chain: Option<(&'a CertificateDer<'a>, &'a [CertificateDer<'a>])>,
}

impl<'a> PeerClaims<'a> {
    /// Claims of a peer known by its SPIFFE ID alone.
    pub fn id_only(id: &'a SpiffeId) -> Self {
        PeerClaims {
            id,
            pod: None,
            issuing_cluster: None,
            chain: None,
        }
    }
}

/// A predicate over a verified peer's ID and chain (leaf, intermediates).
type ChainPredicate =
    dyn Fn(&SpiffeId, &CertificateDer<'_>, &[CertificateDer<'_>]) -> bool + Send + Sync;

/// A peer was verified but is not allowed by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SPIFFE ID {id} is not authorized (policy: {policy})")]
pub struct Unauthorized {
    /// The rejected peer.
    pub id: String,
    /// The policy that rejected it.
    pub policy: String,
    /// The serial of the rejected peer's leaf, when the check was part of
    /// verifying a certificate (lowercase hex).
    pub serial: Option<String>,
}

impl Authorizer {
    /// Any peer whose chain verified against one of the configured bundles.
    pub fn any() -> Self {
        Authorizer(Rule::Any)
    }

    /// Any peer in one of these trust domains.
    pub fn member_of(trust_domains: impl IntoIterator<Item = TrustDomain>) -> Self {
        Authorizer(Rule::MemberOf(trust_domains.into_iter().collect()))
    }

    /// Exactly this SPIFFE ID.
    pub fn exact(id: SpiffeId) -> Self {
        Authorizer(Rule::Exact(id))
    }

    /// One of these SPIFFE IDs.
    pub fn one_of(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        Authorizer(Rule::OneOf(ids.into_iter().collect()))
    }

    /// IDs in `trust_domain` whose path starts with `prefix` on a segment
    /// boundary: `/ns/payments` (or `/ns/payments/`) allows
    /// `/ns/payments/sa/api` but not `/ns/payments2/sa/api`.
    pub fn path_prefix(trust_domain: TrustDomain, prefix: &str) -> Self {
        let trimmed = prefix.trim_end_matches('/');
        let prefix = if trimmed.starts_with('/') || trimmed.is_empty() {
            trimmed.to_string()
        } else {
            format!("/{trimmed}")
        };
        Authorizer(Rule::PathPrefix {
            trust_domain,
            prefix,
        })
    }

    /// Allowed if any of `rules` allows.
    pub fn any_of(rules: impl IntoIterator<Item = Authorizer>) -> Self {
        Authorizer(Rule::AnyOf(rules.into_iter().collect()))
    }

    /// Allowed if every one of `rules` allows (none: allowed).
    pub fn all_of(rules: impl IntoIterator<Item = Authorizer>) -> Self {
        Authorizer(Rule::AllOf(rules.into_iter().collect()))
    }

    /// Peers whose leaf carries a PodIdentity naming `namespace`. For "the same
    /// namespace as mine", pass the namespace of your own certificate's PodIdentity
    /// ([`PodIdentity::from_own_certificate`]).
    pub fn pod_namespace(namespace: impl Into<String>) -> Self {
        Authorizer(Rule::PodNamespace(namespace.into()))
    }

    /// Peers whose leaf carries a PodIdentity naming one of these ServiceAccounts
    /// (`(namespace, name)` pairs).
    pub fn service_accounts<N: Into<String>, S: Into<String>>(
        accounts: impl IntoIterator<Item = (N, S)>,
    ) -> Self {
        Authorizer(Rule::ServiceAccounts(
            accounts
                .into_iter()
                .map(|(n, s)| (n.into(), s.into()))
                .collect(),
        ))
    }

    /// Peers whose leaf carries a PodIdentity naming node `node`.
    pub fn on_node(node: impl Into<String>) -> Self {
        Authorizer(Rule::OnNode(node.into()))
    }

    /// Peers whose leaf names `cluster` as its issuing cluster.
    pub fn issued_by(cluster: IssuingCluster) -> Self {
        Authorizer(Rule::IssuedBy(cluster))
    }

    /// A custom predicate.
    pub fn custom(f: impl Fn(&SpiffeId) -> bool + Send + Sync + 'static) -> Self {
        Authorizer(Rule::Custom(Arc::new(f)))
    }

    /// A custom predicate that also sees the verified chain: the peer's
    /// leaf and the intermediates it presented, in the order they verified
    /// (leaf's issuer first), up to but excluding the trust anchor. For
    /// policies on more than the ID: the issuing intermediate, a
    /// certificate extension, the key type.
    ///
    /// It runs only after the chain verified. Checked without a chain
    /// ([`Authorizer::authorize`]), it denies: it never allows on the ID
    /// alone.
    pub fn custom_with_chain(
        f: impl Fn(&SpiffeId, &CertificateDer<'_>, &[CertificateDer<'_>]) -> bool
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Authorizer(Rule::CustomChain(Arc::new(f)))
    }

    /// Parses policy strings as command-line tools take them: `any`,
    /// `spiffe://td/path` (exact), `td:example.org` (member of),
    /// `prefix:spiffe://td/ns/payments` (path prefix), `pod-namespace:NS`,
    /// `service-account:NS/NAME`, `node:NAME`, `issuer:URL`; several joined by ` & `
    /// must all allow ([`Authorizer::all_of`]). Several strings are combined with
    /// [`Authorizer::any_of`].
    ///
    /// # Errors
    /// [`Error::InvalidSpiffeId`] for a malformed ID or trust domain;
    /// [`Error::InvalidRule`] for a malformed pod or issuer rule.
    pub fn parse(rule: &str) -> Result<Self, Error> {
        if rule.contains(" & ") {
            return rule
                .split(" & ")
                .map(|part| Self::parse(part.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map(Self::all_of);
        }
        let invalid = |value: &str, reason| Error::InvalidSpiffeId {
            value: value.to_string(),
            reason,
        };
        let invalid_rule = |reason: String| Error::InvalidRule {
            rule: rule.to_string(),
            reason,
        };
        let non_empty = |v: &str, what: &str| {
            if v.is_empty() {
                Err(invalid_rule(format!("the {what} is empty")))
            } else {
                Ok(v.to_string())
            }
        };
        if let Some(ns) = rule.strip_prefix("pod-namespace:") {
            return Ok(Self::pod_namespace(non_empty(ns, "namespace")?));
        }
        if let Some(node) = rule.strip_prefix("node:") {
            return Ok(Self::on_node(non_empty(node, "node name")?));
        }
        if let Some(sa) = rule.strip_prefix("service-account:") {
            let Some((ns, name)) = sa.split_once('/') else {
                return Err(invalid_rule(
                    "expected service-account:NAMESPACE/NAME".into(),
                ));
            };
            return Ok(Self::service_accounts([(
                non_empty(ns, "namespace")?,
                non_empty(name, "ServiceAccount name")?,
            )]));
        }
        if let Some(url) = rule.strip_prefix("issuer:") {
            let cluster = IssuingCluster::new(url).map_err(|reason| Error::InvalidIssuer {
                rule: rule.to_string(),
                reason,
            })?;
            return Ok(Self::issued_by(cluster));
        }
        if rule == "any" {
            return Ok(Self::any());
        }
        if let Some(td) = rule.strip_prefix("td:") {
            let td = parse_trust_domain(td).map_err(|e| invalid(td, e))?;
            return Ok(Self::member_of([td]));
        }
        if let Some(id) = rule.strip_prefix("prefix:") {
            let parsed = parse_spiffe_id(id).map_err(|e| invalid(id, e))?;
            return Ok(Self::path_prefix(
                parsed.trust_domain().clone(),
                parsed.path(),
            ));
        }
        let id = parse_spiffe_id(rule).map_err(|e| invalid(rule, e))?;
        Ok(Self::exact(id))
    }

    /// Checks `id` against the policy.
    ///
    /// # Errors
    /// [`Unauthorized`] naming the ID and the policy.
    pub fn authorize(&self, id: &SpiffeId) -> Result<(), Unauthorized> {
        self.authorize_claims(&PeerClaims::id_only(id))
    }

    /// Checks `id` and its verified chain (`leaf`, then the presented
    /// intermediates) against the policy, so that
    /// [`Authorizer::custom_with_chain`] predicates see the chain.
    ///
    /// # Errors
    /// [`Unauthorized`] naming the ID and the policy.
    pub fn authorize_chain<'a>(
        &self,
        id: &'a SpiffeId,
        leaf: &'a CertificateDer<'a>,
        intermediates: &'a [CertificateDer<'a>],
    ) -> Result<(), Unauthorized> {
        self.authorize_claims(&PeerClaims {
            chain: Some((leaf, intermediates)),
            ..PeerClaims::id_only(id)
        })
    }

    /// Checks a verified peer's claims against the policy.
    ///
    /// # Errors
    /// [`Unauthorized`] naming the ID and the policy.
    pub fn authorize_claims(&self, claims: &PeerClaims<'_>) -> Result<(), Unauthorized> {
        if self.allows(claims) {
            Ok(())
        } else {
            Err(Unauthorized {
                id: claims.id.to_string(),
                policy: self.to_string(),
                serial: None,
            })
        }
    }

    fn allows(&self, claims: &PeerClaims<'_>) -> bool {
        let id = claims.id;
        let pod = claims.pod;
        match &self.0 {
            Rule::Any => true,
            Rule::MemberOf(tds) => tds.contains(id.trust_domain()),
            Rule::Exact(want) => want == id,
            Rule::OneOf(ids) => ids.contains(id),
            Rule::PathPrefix {
                trust_domain,
                prefix,
            } => {
                id.trust_domain() == trust_domain
                    && id
                        .path()
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            Rule::AnyOf(rules) => rules.iter().any(|r| r.allows(claims)),
            Rule::AllOf(rules) => rules.iter().all(|r| r.allows(claims)),
            Rule::Custom(f) => f(id),
            Rule::PodNamespace(ns) => pod.is_some_and(|p| &p.namespace == ns),
            Rule::ServiceAccounts(set) => pod.is_some_and(|p| {
                set.contains(&(p.namespace.clone(), p.service_account_name.clone()))
            }),
            Rule::OnNode(node) => pod.is_some_and(|p| &p.node_name == node),
            Rule::IssuedBy(cluster) => claims.issuing_cluster == Some(cluster),
            // Fail closed: a chain predicate never decides on the ID alone.
            Rule::CustomChain(f) => claims.chain.is_some_and(|(leaf, rest)| f(id, leaf, rest)),
        }
    }
}

impl fmt::Display for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Rule::Any => f.write_str("any"),
            Rule::MemberOf(tds) => {
                let names: Vec<_> = tds.iter().map(|t| t.as_str()).collect();
                write!(f, "member of [{}]", names.join(", "))
            }
            Rule::Exact(id) => write!(f, "exactly {id}"),
            Rule::OneOf(ids) => {
                let ids: Vec<_> = ids.iter().map(|i| i.to_string()).collect();
                write!(f, "one of [{}]", ids.join(", "))
            }
            Rule::PathPrefix {
                trust_domain,
                prefix,
            } => write!(f, "path prefix spiffe://{trust_domain}{prefix}/"),
            Rule::AnyOf(rules) => {
                let rules: Vec<_> = rules.iter().map(|r| r.to_string()).collect();
                write!(f, "any of [{}]", rules.join("; "))
            }
            Rule::AllOf(rules) => {
                let rules: Vec<_> = rules.iter().map(|r| r.to_string()).collect();
                write!(f, "all of [{}]", rules.join("; "))
            }
            Rule::Custom(_) => f.write_str("custom predicate"),
            Rule::PodNamespace(ns) => write!(f, "pod in namespace {ns}"),
            Rule::ServiceAccounts(set) => {
                let sas: Vec<_> = set.iter().map(|(n, s)| format!("{n}/{s}")).collect();
                write!(f, "pod running as one of [{}]", sas.join(", "))
            }
            Rule::OnNode(node) => write!(f, "pod on node {node}"),
            Rule::IssuedBy(cluster) => write!(f, "issued by cluster {cluster}"),
            Rule::CustomChain(_) => f.write_str("custom predicate on the chain"),
        }
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authorizer({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        parse_spiffe_id(s).unwrap()
    }
    fn td(s: &str) -> TrustDomain {
        parse_trust_domain(s).unwrap()
    }

    #[test]
    fn any_allows_every_verified_id() {
        assert!(Authorizer::any().authorize(&id("spiffe://a.org/x")).is_ok());
    }

    #[test]
    fn member_of_checks_trust_domain_only() {
        let a = Authorizer::member_of([td("a.org"), td("b.org")]);
        assert!(a.authorize(&id("spiffe://b.org/ns/x/sa/y")).is_ok());
        assert!(a.authorize(&id("spiffe://c.org/ns/x/sa/y")).is_err());
    }

    #[test]
    fn exact_and_one_of_compare_whole_ids() {
        let a = Authorizer::exact(id("spiffe://a.org/ns/x/sa/y"));
        assert!(a.authorize(&id("spiffe://a.org/ns/x/sa/y")).is_ok());
        assert!(a.authorize(&id("spiffe://a.org/ns/x/sa/y2")).is_err());
        let b = Authorizer::one_of([id("spiffe://a.org/p"), id("spiffe://a.org/q")]);
        assert!(b.authorize(&id("spiffe://a.org/q")).is_ok());
        assert!(b.authorize(&id("spiffe://a.org/r")).is_err());
    }

    #[test]
    fn path_prefix_matches_on_segment_boundaries_only() {
        for prefix in ["/ns/payments", "/ns/payments/", "ns/payments"] {
            let a = Authorizer::path_prefix(td("a.org"), prefix);
            assert!(a
                .authorize(&id("spiffe://a.org/ns/payments/sa/api"))
                .is_ok());
            assert!(a.authorize(&id("spiffe://a.org/ns/payments")).is_ok());
            assert!(a
                .authorize(&id("spiffe://a.org/ns/payments2/sa/api"))
                .is_err());
            assert!(a
                .authorize(&id("spiffe://b.org/ns/payments/sa/api"))
                .is_err());
        }
    }

    #[test]
    fn custom_and_any_of_compose() {
        let a = Authorizer::any_of([
            Authorizer::custom(|i| i.path().ends_with("/sa/admin")),
            Authorizer::exact(id("spiffe://a.org/x")),
        ]);
        assert!(a.authorize(&id("spiffe://z.org/ns/q/sa/admin")).is_ok());
        assert!(a.authorize(&id("spiffe://a.org/x")).is_ok());
        let err = a.authorize(&id("spiffe://a.org/y")).unwrap_err();
        assert!(err.to_string().contains("spiffe://a.org/y"), "{err}");
    }

    fn pod() -> PodIdentity {
        PodIdentity {
            namespace: "payments".into(),
            service_account_name: "api".into(),
            service_account_uid: "sa-uid".into(),
            pod_name: "api-0".into(),
            pod_uid: "pod-uid".into(),
            node_name: "node-1".into(),
            node_uid: "node-uid".into(),
        }
    }

    fn claims<'a>(
        id: &'a SpiffeId,
        pod: Option<&'a PodIdentity>,
        issuer: Option<&'a IssuingCluster>,
    ) -> PeerClaims<'a> {
        PeerClaims {
            id,
            pod,
            issuing_cluster: issuer,
            chain: None,
        }
    }

    #[test]
    fn pod_rules_read_the_pod_identity_and_refuse_peers_without_one() {
        let peer = id("spiffe://a.org/ns/payments/sa/api");
        let p = pod();
        let with = claims(&peer, Some(&p), None);
        let without = claims(&peer, None, None);
        for (rule, allowed) in [
            (Authorizer::pod_namespace("payments"), true),
            (Authorizer::pod_namespace("payments2"), false),
            (Authorizer::service_accounts([("payments", "api")]), true),
            (
                Authorizer::service_accounts([("payments", "web"), ("other", "api")]),
                false,
            ),
            (Authorizer::on_node("node-1"), true),
            (Authorizer::on_node("node-2"), false),
        ] {
            assert_eq!(rule.authorize_claims(&with).is_ok(), allowed, "{rule}");
            // Without a PodIdentity, no pod rule ever allows (fail closed).
            assert!(rule.authorize_claims(&without).is_err(), "{rule}");
            assert!(rule.authorize(&peer).is_err(), "{rule}");
        }
    }

    #[test]
    fn issued_by_compares_the_issuing_cluster_exactly() {
        let peer = id("spiffe://a.org/ns/x/sa/y");
        let a = IssuingCluster::new("https://a.example").unwrap();
        let a_slash = IssuingCluster::new("https://a.example/").unwrap();
        let rule = Authorizer::issued_by(a.clone());
        assert!(rule
            .authorize_claims(&claims(&peer, None, Some(&a)))
            .is_ok());
        assert!(rule
            .authorize_claims(&claims(&peer, None, Some(&a_slash)))
            .is_err());
        assert!(rule.authorize_claims(&claims(&peer, None, None)).is_err());
    }

    #[test]
    fn all_of_needs_every_rule() {
        let peer = id("spiffe://a.org/ns/payments/sa/api");
        let p = pod();
        let a = IssuingCluster::new("https://a.example").unwrap();
        let rule = Authorizer::all_of([
            Authorizer::member_of([td("a.org")]),
            Authorizer::pod_namespace("payments"),
            Authorizer::issued_by(a.clone()),
        ]);
        assert!(rule
            .authorize_claims(&claims(&peer, Some(&p), Some(&a)))
            .is_ok());
        assert!(rule
            .authorize_claims(&claims(&peer, Some(&p), None))
            .is_err());
        assert!(rule
            .authorize_claims(&claims(&peer, None, Some(&a)))
            .is_err());
        let err = rule.authorize(&peer).unwrap_err().to_string();
        assert!(err.contains("all of [member of [a.org]; pod in namespace payments; issued by cluster https://a.example]"), "{err}");
    }

    #[test]
    fn parses_pod_and_issuer_rules() {
        let peer = id("spiffe://a.org/ns/payments/sa/api");
        let p = pod();
        let a = IssuingCluster::new("https://a.example").unwrap();
        let c = claims(&peer, Some(&p), Some(&a));
        for (rule, allowed) in [
            ("pod-namespace:payments", true),
            ("pod-namespace:other", false),
            ("service-account:payments/api", true),
            ("service-account:payments/web", false),
            ("node:node-1", true),
            ("issuer:https://a.example", true),
            ("issuer:https://b.example", false),
            (
                "td:a.org & pod-namespace:payments & issuer:https://a.example",
                true,
            ),
            ("td:a.org & pod-namespace:other", false),
        ] {
            let parsed = Authorizer::parse(rule).unwrap();
            assert_eq!(parsed.authorize_claims(&c).is_ok(), allowed, "{rule}");
        }
        for bad in [
            "pod-namespace:",
            "service-account:payments",
            "service-account:/api",
            "node:",
            "issuer:not a url",
            "td:a.org & issuer:",
        ] {
            let err = Authorizer::parse(bad).unwrap_err().to_string();
            assert!(!err.is_empty(), "{bad}");
        }
        // An invalid issuer keeps the URL's own error as the source.
        let err = Authorizer::parse("issuer:not a url").unwrap_err();
        assert!(matches!(err, Error::InvalidIssuer { .. }), "{err}");
        assert!(std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<crate::error::IssuingClusterError>())
            .is_some());
    }

    #[test]
    fn a_chain_predicate_sees_the_chain_and_denies_without_one() {
        let leaf = CertificateDer::from(vec![1u8, 2, 3]);
        let intermediate = CertificateDer::from(vec![9u8]);
        let a = Authorizer::custom_with_chain(|_, leaf, rest| {
            leaf.as_ref() == [1, 2, 3] && rest.len() == 1 && rest[0].as_ref() == [9]
        });
        let x = id("spiffe://a.org/x");
        assert!(a
            .authorize_chain(&x, &leaf, std::slice::from_ref(&intermediate))
            .is_ok());
        assert!(a.authorize_chain(&x, &leaf, &[]).is_err());
        // Without the chain it cannot allow, alone or inside any_of.
        let err = a.authorize(&x).unwrap_err();
        assert_eq!(err.policy, "custom predicate on the chain");
        assert!(Authorizer::any_of([a.clone()]).authorize(&x).is_err());
        assert!(Authorizer::any_of([a])
            .authorize_chain(&x, &leaf, &[intermediate])
            .is_ok());
    }

    #[test]
    fn parses_command_line_rules() {
        assert!(Authorizer::parse("any").is_ok());
        let a = Authorizer::parse("td:a.org").unwrap();
        assert!(a.authorize(&id("spiffe://a.org/x")).is_ok());
        let p = Authorizer::parse("prefix:spiffe://a.org/ns/pay").unwrap();
        assert!(p.authorize(&id("spiffe://a.org/ns/pay/sa/x")).is_ok());
        assert!(p.authorize(&id("spiffe://a.org/ns/payx")).is_err());
        assert!(Authorizer::parse("spiffe://A.org/x").is_err());
        assert!(Authorizer::parse("td:bad/domain").is_err());
    }
}
