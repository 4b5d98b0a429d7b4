//! Which verified SPIFFE IDs may talk to us (or we to them).
//!
//! An [`Authorizer`] runs only after the peer's chain has verified against the
//! bundle of its own trust domain; it never widens trust, it only narrows it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use crate::error::Error;
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
    Custom(Arc<dyn Fn(&SpiffeId) -> bool + Send + Sync>),
    CustomChain(Arc<ChainPredicate>),
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
    /// `spiffe://td/path` (exact), `td:example.org` (member of), or
    /// `prefix:spiffe://td/ns/payments` (path prefix). Several strings are
    /// combined with [`Authorizer::any_of`].
    ///
    /// # Errors
    /// [`Error::InvalidSpiffeId`] for a malformed ID or trust domain.
    pub fn parse(rule: &str) -> Result<Self, Error> {
        let invalid = |value: &str, reason| Error::InvalidSpiffeId {
            value: value.to_string(),
            reason,
        };
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
        self.check(id, None)
    }

    /// Checks `id` and its verified chain (`leaf`, then the presented
    /// intermediates) against the policy: what verification calls, so that
    /// [`Authorizer::custom_with_chain`] predicates see the chain.
    ///
    /// # Errors
    /// [`Unauthorized`] naming the ID and the policy.
    pub fn authorize_chain(
        &self,
        id: &SpiffeId,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), Unauthorized> {
        self.check(id, Some((leaf, intermediates)))
    }

    fn check(&self, id: &SpiffeId, chain: Option<Chain<'_>>) -> Result<(), Unauthorized> {
        if self.allows(id, chain) {
            Ok(())
        } else {
            Err(Unauthorized {
                id: id.to_string(),
                policy: self.to_string(),
                serial: None,
            })
        }
    }

    fn allows(&self, id: &SpiffeId, chain: Option<Chain<'_>>) -> bool {
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
            Rule::AnyOf(rules) => rules.iter().any(|r| r.allows(id, chain)),
            Rule::Custom(f) => f(id),
            // Fail closed: a chain predicate never decides on the ID alone.
            Rule::CustomChain(f) => chain.is_some_and(|(leaf, rest)| f(id, leaf, rest)),
        }
    }
}

/// A verified chain: the leaf, then the intermediates.
type Chain<'a> = (&'a CertificateDer<'a>, &'a [CertificateDer<'a>]);

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
            Rule::Custom(_) => f.write_str("custom predicate"),
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
