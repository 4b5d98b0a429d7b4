//! Trust bundles keyed by SPIFFE trust domain.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::spiffe_id::TrustDomain;
use crate::store::Store;
use crate::trust_bundle::TrustBundle;
use crate::verify::VerifyError;

/// One live trust bundle per SPIFFE trust domain.
///
/// Bundles are never merged: a peer is verified only against the bundle of
/// the trust domain in its own SPIFFE ID, so a CA of one trust domain can never
/// vouch for an identity in another.
#[derive(Clone, Default)]
pub struct SpiffeBundles {
    by_domain: Arc<BTreeMap<TrustDomain, Store<TrustBundle>>>,
}

impl std::fmt::Debug for SpiffeBundles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.by_domain.keys().map(|t| t.as_str()))
            .finish()
    }
}

impl SpiffeBundles {
    /// Builds the set from `(trust domain, store)` pairs.
    pub fn new(bundles: impl IntoIterator<Item = (TrustDomain, Store<TrustBundle>)>) -> Self {
        SpiffeBundles {
            by_domain: Arc::new(bundles.into_iter().collect()),
        }
    }

    /// The configured trust domains.
    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.by_domain.keys()
    }

    /// The store of one trust domain.
    pub fn store(&self, trust_domain: &TrustDomain) -> Option<&Store<TrustBundle>> {
        self.by_domain.get(trust_domain)
    }

    /// True when no trust domain is configured.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The current bundle for `trust_domain`.
    ///
    /// # Errors
    /// [`VerifyError::UnknownTrustDomain`] when the domain is not configured,
    /// [`VerifyError::BundleNotLoaded`] when it is but nothing loaded yet.
    pub fn current(&self, trust_domain: &TrustDomain) -> Result<Arc<TrustBundle>, VerifyError> {
        let store =
            self.by_domain
                .get(trust_domain)
                .ok_or_else(|| VerifyError::UnknownTrustDomain {
                    trust_domain: trust_domain.to_string(),
                })?;
        store.current().ok_or_else(|| VerifyError::BundleNotLoaded {
            trust_domain: trust_domain.to_string(),
        })
    }

    /// A number that changes whenever any bundle changes (sum of generations).
    pub fn generation(&self) -> u64 {
        self.by_domain.values().map(Store::generation).sum()
    }
}
