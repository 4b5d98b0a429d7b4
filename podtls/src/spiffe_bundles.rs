//! Trust bundles keyed by SPIFFE trust domain: a fixed set (explicit files,
//! [`SpiffeBundles::new`]) or a live one whose trust domains come and go
//! (a credential folder, [`crate::PodTlsBuilder::credential_folder`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::error::Error;
use crate::peer_verification::VerifyError;
use crate::spiffe_id::TrustDomain;
use crate::store::{Status, Store, Summary};
use crate::trust_bundle::TrustBundle;

/// One live trust bundle per SPIFFE trust domain.
///
/// Bundles are never merged: a peer is verified only against the bundle of
/// the trust domain in its own SPIFFE ID, so a CA of one trust domain can never
/// vouch for an identity in another.
///
/// The set itself may change while it is in use (a credential folder's
/// trust domains appear and are de-federated): readers load one snapshot per
/// handshake, an atomic load and no lock. A de-federated trust domain stays
/// in the set, marked, so that its peers are refused with
/// [`VerifyError::DeFederated`] and its status stays visible.
#[derive(Clone)]
pub struct SpiffeBundles {
    set: Arc<ArcSwap<Snapshot>>,
}

/// The state of one trust domain of a [`SpiffeBundles`] set
/// ([`crate::PodTls::trust_domain_statuses`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TrustDomainStatus {
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// Whether it is the workload's own (the trust domain of its SVID).
    pub own: bool,
    /// Whether anchors are being served: its peers can be verified now.
    pub loaded: bool,
    /// How many anchors are served (0 when not loaded or de-federated).
    pub anchors: usize,
    /// When its anchors last changed (loaded, replaced or withdrawn).
    pub last_change: Option<SystemTime>,
    /// Since when it is de-federated (its bundle file removed or emptied),
    /// if it is.
    pub de_federated_since: Option<SystemTime>,
    /// The last load error (the previous anchors, if any, are still served).
    pub last_error: Option<Arc<Error>>,
    /// The full status of its store.
    pub status: Status,
}

impl TrustDomainStatus {
    /// True when it is de-federated.
    pub fn is_de_federated(&self) -> bool {
        self.de_federated_since.is_some()
    }
}

/// One published state of the set.
#[derive(Default)]
struct Snapshot {
    entries: BTreeMap<TrustDomain, Entry>,
}

#[derive(Clone)]
struct Entry {
    store: Store<TrustBundle>,
    /// `Some(when)` while the trust domain is de-federated.
    de_federated: Option<SystemTime>,
}

impl Default for SpiffeBundles {
    fn default() -> Self {
        SpiffeBundles {
            set: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
        }
    }
}

impl std::fmt::Debug for SpiffeBundles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.set.load().entries.keys().map(|t| t.to_string()))
            .finish()
    }
}

impl SpiffeBundles {
    /// Builds a fixed set from `(trust domain, store)` pairs.
    pub fn new(bundles: impl IntoIterator<Item = (TrustDomain, Store<TrustBundle>)>) -> Self {
        let entries = bundles
            .into_iter()
            .map(|(td, store)| {
                (
                    td,
                    Entry {
                        store,
                        de_federated: None,
                    },
                )
            })
            .collect();
        SpiffeBundles {
            set: Arc::new(ArcSwap::from_pointee(Snapshot { entries })),
        }
    }

    /// The trust domains in the set now, de-federated ones included.
    pub fn trust_domains(&self) -> Vec<TrustDomain> {
        self.set.load().entries.keys().cloned().collect()
    }

    /// The store of one trust domain (a de-federated trust domain's store is
    /// empty and its status says so).
    pub fn store(&self, trust_domain: &TrustDomain) -> Option<Store<TrustBundle>> {
        self.set
            .load()
            .entries
            .get(trust_domain)
            .map(|e| e.store.clone())
    }

    /// When `trust_domain` was de-federated, if it is now.
    pub fn de_federated_since(&self, trust_domain: &TrustDomain) -> Option<SystemTime> {
        self.set
            .load()
            .entries
            .get(trust_domain)
            .and_then(|e| e.de_federated)
    }

    /// True when no trust domain is in the set.
    pub fn is_empty(&self) -> bool {
        self.set.load().entries.is_empty()
    }

    /// The current bundle for `trust_domain`.
    ///
    /// # Errors
    /// [`VerifyError::UnknownTrustDomain`] when the domain is not in the set,
    /// [`VerifyError::DeFederated`] when its bundle was withdrawn,
    /// [`VerifyError::BundleNotLoaded`] when nothing loaded yet.
    pub fn current(&self, trust_domain: &TrustDomain) -> Result<Arc<TrustBundle>, VerifyError> {
        let set = self.set.load();
        let entry =
            set.entries
                .get(trust_domain)
                .ok_or_else(|| VerifyError::UnknownTrustDomain {
                    trust_domain: trust_domain.to_string(),
                })?;
        if entry.de_federated.is_some() {
            return Err(VerifyError::DeFederated {
                trust_domain: trust_domain.to_string(),
            });
        }
        entry
            .store
            .current()
            .ok_or_else(|| VerifyError::BundleNotLoaded {
                trust_domain: trust_domain.to_string(),
            })
    }

    /// A number that changes whenever any bundle changes, a trust domain is
    /// added or de-federated (the sum of the stores' generations; trust
    /// domains are never dropped from the set, so it only grows).
    pub fn generation(&self) -> u64 {
        self.set
            .load()
            .entries
            .values()
            .map(|e| e.store.generation())
            .sum()
    }

    /// The state of every trust domain in the set, in name order. `own`
    /// marks the workload's own trust domain.
    pub fn trust_domain_statuses(&self, own: Option<&TrustDomain>) -> Vec<TrustDomainStatus> {
        self.set
            .load()
            .entries
            .iter()
            .map(|(td, e)| {
                let status = e.store.status();
                let anchors = match (&status.summary, e.de_federated) {
                    (Some(Summary::TrustBundle { authorities }), None) => *authorities,
                    _ => 0,
                };
                TrustDomainStatus {
                    trust_domain: td.clone(),
                    own: own == Some(td),
                    loaded: anchors > 0,
                    anchors,
                    last_change: status.last_success,
                    de_federated_since: e.de_federated,
                    last_error: status.last_error.clone(),
                    status,
                }
            })
            .collect()
    }

    /// Adds `trust_domain` with an empty store named `name`, or returns its
    /// existing store. Only the credential folder's reloader writes.
    pub(crate) fn entry(&self, trust_domain: &TrustDomain, name: &str) -> Store<TrustBundle> {
        if let Some(store) = self.store(trust_domain) {
            return store;
        }
        let store = Store::empty(name);
        self.update(|entries| {
            entries.insert(
                trust_domain.clone(),
                Entry {
                    store: store.clone(),
                    de_federated: None,
                },
            );
        });
        store
    }

    /// Marks `trust_domain` de-federated (if it is in the set and not
    /// already), then empties its store. Returns whether it changed.
    ///
    /// The order matters to readers: the mark is published first, so no
    /// handshake after this call starts can see the old anchors.
    pub(crate) fn de_federate(&self, trust_domain: &TrustDomain, now: SystemTime) -> bool {
        let Some(entry) = self.set.load().entries.get(trust_domain).cloned() else {
            return false;
        };
        if entry.de_federated.is_some() {
            return false;
        }
        self.update(|entries| {
            if let Some(e) = entries.get_mut(trust_domain) {
                e.de_federated = Some(now);
            }
        });
        entry.store.withdraw(now);
        true
    }

    /// Clears the de-federated mark of `trust_domain` (after its store was
    /// published again). Returns whether it changed.
    pub(crate) fn re_federate(&self, trust_domain: &TrustDomain) -> bool {
        let marked = self
            .set
            .load()
            .entries
            .get(trust_domain)
            .is_some_and(|e| e.de_federated.is_some());
        if marked {
            self.update(|entries| {
                if let Some(e) = entries.get_mut(trust_domain) {
                    e.de_federated = None;
                }
            });
        }
        marked
    }

    /// Publishes a modified copy of the set. One writer (the reload
    /// thread), so a plain load-modify-store is enough.
    fn update(&self, change: impl FnOnce(&mut BTreeMap<TrustDomain, Entry>)) {
        let mut entries = self.set.load().entries.clone();
        change(&mut entries);
        self.set.store(Arc::new(Snapshot { entries }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Origin;
    use crate::parse_trust_domain;
    use crate::test_util::CertAuthority;

    fn bundle(ca: &CertAuthority) -> TrustBundle {
        TrustBundle::from_pem(ca.cert_pem().as_bytes(), &Origin::memory("ca")).unwrap()
    }

    #[test]
    fn de_federated_domain_is_refused_by_name_and_comes_back_only_when_republished() {
        let td = parse_trust_domain("b.example").unwrap();
        let set = SpiffeBundles::default();
        assert!(matches!(
            set.current(&td),
            Err(VerifyError::UnknownTrustDomain { .. })
        ));
        let store = set.entry(&td, "b");
        assert!(matches!(
            set.current(&td),
            Err(VerifyError::BundleNotLoaded { .. })
        ));
        let ca = CertAuthority::new("b");
        store.publish(bundle(&ca), SystemTime::now());
        assert!(set.current(&td).is_ok());
        let g1 = set.generation();

        assert!(set.de_federate(&td, SystemTime::now()));
        assert!(!set.de_federate(&td, SystemTime::now()), "only once");
        let error = set.current(&td).unwrap_err();
        assert!(
            error.to_string().contains("b.example") && error.to_string().contains("de-federated"),
            "{error}"
        );
        assert!(store.current().is_none(), "the anchors are gone");
        assert!(set.generation() > g1, "a de-federation is a new generation");
        assert!(set.trust_domains().contains(&td), "kept, marked");

        // Publishing alone does not re-federate: the mark is cleared by the
        // writer after a good load.
        store.publish(bundle(&ca), SystemTime::now());
        assert!(matches!(
            set.current(&td),
            Err(VerifyError::DeFederated { .. })
        ));
        assert!(set.re_federate(&td));
        assert!(set.current(&td).is_ok());
    }

    #[test]
    fn generation_never_goes_back_as_domains_come_and_go() {
        let set = SpiffeBundles::default();
        let ca = CertAuthority::new("x");
        let mut last = set.generation();
        for i in 0..5 {
            let td = parse_trust_domain(&format!("td{i}.example")).unwrap();
            let store = set.entry(&td, "x");
            store.publish(bundle(&ca), SystemTime::now());
            assert!(set.generation() > last);
            last = set.generation();
            set.de_federate(&td, SystemTime::now());
            assert!(set.generation() > last);
            last = set.generation();
        }
    }
}
