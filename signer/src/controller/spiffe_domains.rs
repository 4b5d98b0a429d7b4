//! The spiffe signer with several trust domains: each trust domain has its own CA pool
//! (its own Secret, projected as a file) and its own ClusterTrustBundles; a request is
//! signed by the pool of its namespace's trust domain ([`TrustDomainMap`]) and never by
//! another's. A missing or broken pool of one trust domain stops issuance in that trust
//! domain only (the request is retried, as with a single pool); it never falls back to
//! another trust domain's CA.

use std::collections::BTreeMap;
use std::path::PathBuf;

use spiffe::TrustDomain;
use tokio::sync::watch;

use super::pool_watch::PoolState;
use super::Error;
use crate::{SignerConfig, SignerKind, TrustDomainMap};

/// The configuration of the spiffe signer's trust domains beyond the default one.
#[derive(Clone, Debug)]
pub struct TrustDomainsConfig {
    /// Namespace -> trust domain (its default is `--spiffe-trust-domain`).
    pub map: TrustDomainMap,
    /// The CA pool file of every trust domain other than the default one (whose pool is
    /// the spiffe signer's `--spiffe-ca-pool`).
    pub pool_files: BTreeMap<String, PathBuf>,
}

impl TrustDomainsConfig {
    /// Checks that every trust domain of the map other than the default has a pool file,
    /// and that no pool file is given for the default trust domain (it has
    /// `--spiffe-ca-pool`) or a trust domain no namespace is in.
    pub fn validate(&self) -> Result<(), String> {
        let default = self.map.default_trust_domain();
        if self.pool_files.contains_key(default.as_str()) {
            return Err(format!(
                "trust domain {default} is the default (--spiffe-trust-domain); its CA pool is --spiffe-ca-pool, not --spiffe-trust-domain-ca-pool"
            ));
        }
        for td in self.map.trust_domains().iter().skip(1) {
            if !self.pool_files.contains_key(td.as_str()) {
                return Err(format!(
                    "trust domain {td} (assigned to a namespace) has no CA pool; add --spiffe-trust-domain-ca-pool={td}=FILE"
                ));
            }
        }
        let known = self.map.trust_domains();
        for td in self.pool_files.keys() {
            if !known.iter().any(|k| k.as_str() == td) {
                return Err(format!(
                    "--spiffe-trust-domain-ca-pool names trust domain {td}, but no namespace is assigned to it (--spiffe-namespace-trust-domain NS={td})"
                ));
            }
        }
        Ok(())
    }
}

/// The running trust domains: the map and each trust domain's pool.
#[derive(Clone, Debug)]
pub struct TrustDomains {
    map: TrustDomainMap,
    pools: BTreeMap<String, watch::Receiver<PoolState>>,
}

impl TrustDomains {
    /// `pools` must hold every trust domain of `map`, the default included.
    pub fn new(
        map: TrustDomainMap,
        pools: BTreeMap<String, watch::Receiver<PoolState>>,
    ) -> Result<TrustDomains, String> {
        for td in map.trust_domains() {
            if !pools.contains_key(td.as_str()) {
                return Err(format!("trust domain {td} has no CA pool"));
            }
        }
        Ok(TrustDomains { map, pools })
    }

    /// The map.
    pub fn map(&self) -> &TrustDomainMap {
        &self.map
    }

    /// Every trust domain with its pool, the default first.
    pub fn pools(&self) -> Vec<(TrustDomain, watch::Receiver<PoolState>)> {
        self.map
            .trust_domains()
            .into_iter()
            .filter_map(|td| self.pools.get(td.as_str()).map(|p| (td, p.clone())))
            .collect()
    }

    /// The pool of one trust domain.
    pub fn pool(&self, td: &str) -> Option<&watch::Receiver<PoolState>> {
        self.pools.get(td)
    }

    /// The signer configuration (`base` in the namespace's trust domain) and the pool
    /// that sign a request in `namespace`.
    pub fn route(
        &self,
        base: &SignerConfig,
        namespace: &str,
    ) -> Result<(SignerConfig, &watch::Receiver<PoolState>), Error> {
        let td = self.map.for_namespace(namespace);
        let pool = self
            .pools
            .get(td.as_str())
            .ok_or_else(|| Error::PoolUnavailable {
                signer: base.name.clone(),
                reason: format!("trust domain {td} has no CA pool"),
            })?;
        let mut config = base.clone();
        config.kind = SignerKind::Spiffe {
            trust_domain: td.clone(),
        };
        Ok((config, pool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_trust_domain, NamespaceAssignment};

    fn map() -> TrustDomainMap {
        TrustDomainMap::new(
            parse_trust_domain("a.example").unwrap(),
            ["team-b=b.example".parse::<NamespaceAssignment>().unwrap()],
        )
        .unwrap()
    }

    #[test]
    fn every_non_default_trust_domain_needs_its_own_pool() {
        let mut config = TrustDomainsConfig {
            map: map(),
            pool_files: BTreeMap::new(),
        };
        let err = config.validate().unwrap_err();
        assert!(
            err.contains("b.example") && err.contains("--spiffe-trust-domain-ca-pool"),
            "{err}"
        );
        config
            .pool_files
            .insert("b.example".into(), "/b.json".into());
        config.validate().unwrap();
        config
            .pool_files
            .insert("a.example".into(), "/a.json".into());
        let err = config.validate().unwrap_err();
        assert!(err.contains("is the default"), "{err}");
        config.pool_files.remove("a.example");
        config
            .pool_files
            .insert("c.example".into(), "/c.json".into());
        let err = config.validate().unwrap_err();
        assert!(err.contains("no namespace is assigned"), "{err}");
    }

    #[test]
    fn routes_by_namespace_to_that_trust_domain_and_its_pool() {
        let (_ta, a) = watch::channel(PoolState::empty("/a"));
        let (_tb, b) = watch::channel(PoolState::empty("/b"));
        let domains = TrustDomains::new(
            map(),
            BTreeMap::from([("a.example".into(), a), ("b.example".into(), b)]),
        )
        .unwrap();
        let base = SignerConfig::spiffe(parse_trust_domain("a.example").unwrap());
        let (config, pool) = domains.route(&base, "team-b").unwrap();
        assert_eq!(
            config.kind,
            SignerKind::Spiffe {
                trust_domain: parse_trust_domain("b.example").unwrap()
            }
        );
        assert_eq!(pool.borrow().path, PathBuf::from("/b"));
        let (config, pool) = domains.route(&base, "default").unwrap();
        assert_eq!(config, base);
        assert_eq!(pool.borrow().path, PathBuf::from("/a"));
    }

    #[test]
    fn refuses_to_run_a_trust_domain_without_its_pool() {
        let (_ta, a) = watch::channel(PoolState::empty("/a"));
        let err = TrustDomains::new(map(), BTreeMap::from([("a.example".into(), a)])).unwrap_err();
        assert!(err.contains("b.example"), "{err}");
    }
}
