//! Any identity source: a validated way to publish credentials and SPIFFE
//! trust bundles into the stores a [`PodTls`] (and so every [`crate::ServerTls`]
//! / [`crate::ClientTls`] built from it) reads.
//!
//! The file watcher is one source; the SPIFFE Workload API (feature
//! `workload-api`), Vault or a Secret read over the Kubernetes API are others.
//! Whatever the source, material goes through the same checks as a file:
//! [`Credentials::from_der`] (one key, the key matches the leaf, the leaf is
//! inside its validity window at `now`, not a CA, an X509-SVID when required)
//! and [`TrustBundle::from_der`] plus [`check_anchors_trust_domain`] for bundles.
//! Bad input is refused with the error naming what is wrong, recorded in the
//! store's status, and the last good material stays served; before the first
//! good publish everything fails closed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use crate::credentials::{Credentials, LeafKind};
use crate::error::{Error, Origin};
use crate::pod_tls::PodTls;
use crate::spiffe_bundles::SpiffeBundles;
use crate::spiffe_id::{parse_spiffe_id, TrustDomain};
use crate::store::{Material, Store};
use crate::trust_bundle::TrustBundle;
use crate::watcher::{check_certificate_health, log_published};

/// Why an [`IdentityPublisher`] refused material. The same error is recorded
/// as the `last_error` of the store the material was meant for
/// ([`crate::Status::last_error`]); the last good material is still served.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct PublishError(Arc<Error>);

impl PublishError {
    /// What was wrong (for example [`Error::KeyMismatch`], [`Error::Expired`],
    /// [`Error::InvalidSvid`], [`Error::EmptyTrustBundle`],
    /// [`Error::ForeignTrustAnchor`]).
    pub fn error(&self) -> &Error {
        &self.0
    }
}

/// The write side of a [`PodTls`] fed by a source other than files.
///
/// Cheap to clone; every clone writes into the same stores, one write at a
/// time. [`IdentityPublisher::pod_tls`] gives the read side: build
/// [`crate::ServerTls`] / [`crate::ClientTls`] from it as from a file-backed
/// [`PodTls`]; every handshake after a publish sees the new material.
///
/// ```
/// # use std::time::SystemTime;
/// use podtls::{IdentityPublisher, LeafKind};
/// # fn demo(chain: Vec<rustls::pki_types::CertificateDer<'static>>,
/// #         key: rustls::pki_types::PrivateKeyDer<'static>,
/// #         anchors: Vec<rustls::pki_types::CertificateDer<'static>>)
/// #         -> Result<(), Box<dyn std::error::Error>> {
/// let publisher = IdentityPublisher::new("my secret store", LeafKind::SpiffeSvid);
/// let pod = publisher.pod_tls();
/// let now = SystemTime::now();
/// publisher.publish_credentials(chain, key, now)?;
/// let td = podtls::parse_trust_domain("cluster.local")?;
/// publisher.publish_bundle(&td, anchors, now)?;
/// assert!(pod.is_ready());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct IdentityPublisher {
    name: Arc<str>,
    leaf_kind: LeafKind,
    credentials: Store<Credentials>,
    bundles: SpiffeBundles,
    /// One writer at a time: [`SpiffeBundles`] is load-modify-store.
    writer: Arc<Mutex<()>>,
}

impl std::fmt::Debug for IdentityPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityPublisher")
            .field("name", &self.name)
            .field("leaf_kind", &self.leaf_kind)
            .field("bundles", &self.bundles)
            .finish()
    }
}

impl IdentityPublisher {
    /// Empty stores (closed until the first publish) for a source described
    /// by `name` (it names the stores and, in errors, the material).
    /// `leaf_kind` is what [`crate::PodTlsBuilder::require_spiffe_svid`] is for
    /// files: with [`LeafKind::SpiffeSvid`] a leaf that is not an X509-SVID is
    /// refused.
    pub fn new(name: &str, leaf_kind: LeafKind) -> Self {
        IdentityPublisher {
            name: name.into(),
            leaf_kind,
            credentials: Store::empty(format!("credentials from {name}")),
            bundles: SpiffeBundles::default(),
            writer: Arc::new(Mutex::new(())),
        }
    }

    /// The read side: a [`PodTls`] over this publisher's stores. Trust domains
    /// follow the publishes and withdrawals, as with a credential folder:
    /// [`PodTls::is_ready`] means the credentials and the workload's own trust
    /// domain's bundle are served.
    pub fn pod_tls(&self) -> PodTls {
        PodTls::from_source(
            self.name.clone(),
            self.credentials.clone(),
            self.bundles.clone(),
            None,
        )
    }

    /// The source's name, as given to [`IdentityPublisher::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The credentials store.
    pub fn credentials(&self) -> &Store<Credentials> {
        &self.credentials
    }

    /// The trust bundles, one per trust domain published.
    pub fn spiffe_bundles(&self) -> &SpiffeBundles {
        &self.bundles
    }

    /// Validates a chain (leaf first) and its private key at `now` and, if
    /// good, serves them from the next handshake on. The same chain as the
    /// one served is validated too, then a no-op (its status is refreshed).
    ///
    /// # Errors
    /// [`PublishError`] wrapping [`Error::MissingCertificate`],
    /// [`Error::Certificate`], [`Error::PrivateKey`], [`Error::KeyMismatch`],
    /// [`Error::NotYetValid`], [`Error::Expired`], [`Error::LeafIsCa`] or
    /// [`Error::InvalidSvid`]; the previous credentials stay.
    pub fn publish_credentials(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        now: SystemTime,
    ) -> Result<(), PublishError> {
        let _writer = self.lock();
        let origin = Origin::memory(&format!("credentials from {}", self.name));
        match Credentials::from_der(chain, key, &origin, self.leaf_kind, now) {
            Ok(credentials)
                if self
                    .credentials
                    .current()
                    .is_some_and(|c| c.chain() == credentials.chain()) =>
            {
                self.credentials.confirm(now);
                check_certificate_health(&self.credentials, now, RENEWAL_WARNING);
                Ok(())
            }
            Ok(credentials) => {
                publish(&self.credentials, credentials, now);
                check_certificate_health(&self.credentials, now, RENEWAL_WARNING);
                Ok(())
            }
            Err(error) => Err(refuse(&self.credentials, error, now)),
        }
    }

    /// [`IdentityPublisher::publish_credentials`] from a credential bundle
    /// PEM (a private key, then the chain leaf first), as kubelet writes it.
    ///
    /// # Errors
    /// As [`IdentityPublisher::publish_credentials`], and PEM errors.
    pub fn publish_credentials_pem(&self, pem: &[u8], now: SystemTime) -> Result<(), PublishError> {
        let origin = Origin::memory(&format!("credentials from {}", self.name));
        let parsed = crate::pem::parse_blocks(pem, &origin)
            .and_then(|blocks| Ok((crate::pem::single_key(blocks.keys, &origin)?, blocks.certs)));
        match parsed {
            Ok((key, chain)) => self.publish_credentials(chain, key, now),
            Err(error) => {
                let _writer = self.lock();
                Err(refuse(&self.credentials, error, now))
            }
        }
    }

    /// Validates `anchors` as `trust_domain`'s bundle and, if good, verifies
    /// that trust domain's peers against them from the next handshake on.
    /// A trust domain that was withdrawn is federated again. The same
    /// anchors as those served are a no-op (the status is refreshed).
    ///
    /// # Errors
    /// [`PublishError`] wrapping [`Error::EmptyTrustBundle`] (use
    /// [`IdentityPublisher::withdraw_bundle`] to de-federate),
    /// [`Error::TrustAnchor`] or [`Error::ForeignTrustAnchor`]; the previous
    /// anchors stay.
    pub fn publish_bundle(
        &self,
        trust_domain: &TrustDomain,
        anchors: Vec<CertificateDer<'static>>,
        now: SystemTime,
    ) -> Result<(), PublishError> {
        let _writer = self.lock();
        let store = self.bundle_store(trust_domain);
        let de_federated = self.bundles.de_federated_since(trust_domain).is_some();
        if !de_federated
            && store
                .current()
                .is_some_and(|b| same_set(b.certificates(), &anchors))
        {
            store.confirm(now);
            return Ok(());
        }
        let origin = Origin::memory(&format!("SPIFFE bundle {trust_domain} from {}", self.name));
        let bundle = TrustBundle::from_der(anchors, &origin)
            .and_then(|b| check_anchors_trust_domain(trust_domain, &b, &origin).map(|()| b));
        match bundle {
            Ok(bundle) => {
                publish(&store, bundle, now);
                if self.bundles.re_federate(trust_domain) {
                    tracing::info!(
                        trust_domain = %trust_domain, source = %self.name,
                        "podtls: trust domain federated again"
                    );
                }
                Ok(())
            }
            Err(error) => Err(refuse(&store, error, now)),
        }
    }

    /// [`IdentityPublisher::publish_bundle`] from a PEM text of CA certificates.
    ///
    /// # Errors
    /// As [`IdentityPublisher::publish_bundle`], and PEM errors.
    pub fn publish_bundle_pem(
        &self,
        trust_domain: &TrustDomain,
        pem: &[u8],
        now: SystemTime,
    ) -> Result<(), PublishError> {
        let origin = Origin::memory(&format!("SPIFFE bundle {trust_domain} from {}", self.name));
        match crate::pem::parse_certs(pem, &origin) {
            Ok(anchors) => self.publish_bundle(trust_domain, anchors, now),
            Err(error) => {
                let _writer = self.lock();
                Err(refuse(&self.bundle_store(trust_domain), error, now))
            }
        }
    }

    /// De-federates `trust_domain`: its anchors are dropped and its peers
    /// refused with [`crate::VerifyError::DeFederated`] from the next
    /// handshake on, resumed sessions included, until a bundle is published
    /// for it again. Returns whether anything changed (false when it is
    /// unknown or already withdrawn).
    pub fn withdraw_bundle(&self, trust_domain: &TrustDomain, now: SystemTime) -> bool {
        let _writer = self.lock();
        if self.bundles.store(trust_domain).is_none()
            || !self.bundles.de_federate(trust_domain, now)
        {
            return false;
        }
        let own = self.credentials.current().and_then(|c| {
            c.info()
                .spiffe_id
                .as_ref()
                .map(|id| id.trust_domain().clone())
        });
        if own.as_ref() == Some(trust_domain) {
            tracing::error!(
                trust_domain = %trust_domain, source = %self.name,
                "podtls: the workload's OWN trust domain bundle was withdrawn: every peer of its \
                 own trust domain is refused until it is published again (not ready)"
            );
        } else {
            tracing::warn!(
                trust_domain = %trust_domain, source = %self.name,
                "podtls: trust domain de-federated; its peers are refused from now on"
            );
        }
        true
    }

    /// Records that the source itself failed (a lost connection, a response
    /// that could not be decoded): every store's status shows `error`, the
    /// last good material stays served.
    pub fn report_error(&self, error: Error, now: SystemTime) {
        let _writer = self.lock();
        let status = self.credentials.status();
        tracing::error!(
            source = %self.name, %error, serving_previous = status.is_ready(),
            "podtls: source failed; keeping the last good material"
        );
        let error = Arc::new(error);
        self.credentials.fail_shared(error.clone(), now);
        for td in self.bundles.trust_domains() {
            if let Some(store) = self.bundles.store(&td) {
                store.fail_shared(error.clone(), now);
            }
        }
    }

    /// Updates the credentials' health from their validity window at `now`
    /// ([`crate::Health::RenewalOverdue`] past 80% of the lifetime,
    /// [`crate::Health::Expired`]), as the file watcher does on every poll.
    /// A source calls it now and then.
    pub fn check_health(&self, now: SystemTime) {
        check_certificate_health(&self.credentials, now, RENEWAL_WARNING);
    }

    fn bundle_store(&self, trust_domain: &TrustDomain) -> Store<TrustBundle> {
        self.bundles.entry(
            trust_domain,
            &format!("SPIFFE bundle {trust_domain} from {}", self.name),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic while holding it leaves nothing
        // half-written in it.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The fraction of a certificate's lifetime after which its health turns
/// [`crate::Health::RenewalOverdue`] (the file watcher's default).
const RENEWAL_WARNING: f64 = 0.8;

fn publish<T: Material>(store: &Store<T>, value: T, now: SystemTime) {
    let summary = value.summary();
    store.publish(value, now);
    log_published(&store.status().name, &summary);
}

fn refuse<T: Material>(store: &Store<T>, error: Error, now: SystemTime) -> PublishError {
    let status = store.status();
    tracing::error!(
        source = %status.name, %error, serving_previous = status.is_ready(),
        "podtls: refused new material; keeping the last good material"
    );
    let error = Arc::new(error);
    store.fail_shared(error.clone(), now);
    PublishError(error)
}

fn same_set(a: &[CertificateDer<'static>], b: &[CertificateDer<'static>]) -> bool {
    let set = |c: &[CertificateDer<'static>]| {
        c.iter()
            .map(|d| d.as_ref().to_vec())
            .collect::<std::collections::BTreeSet<_>>()
    };
    set(a) == set(b)
}

/// Refuses a bundle given for `trust_domain` when one of its certificates
/// names another trust domain: a URI SAN that is a valid SPIFFE ID of a
/// different trust domain (SPIRE's CAs carry `spiffe://<trust domain>`).
/// Certificates without a SPIFFE URI SAN (most CAs) pass.
///
/// # Errors
/// [`Error::ForeignTrustAnchor`] naming the certificate and the ID.
pub(crate) fn check_anchors_trust_domain(
    trust_domain: &TrustDomain,
    bundle: &TrustBundle,
    origin: &Origin,
) -> Result<(), Error> {
    for (index, der) in bundle.certificates().iter().enumerate() {
        // `TrustBundle::from_der` parsed every certificate already.
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            continue;
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            continue;
        };
        for name in &san.value.general_names {
            let GeneralName::URI(uri) = name else {
                continue;
            };
            if let Ok(id) = parse_spiffe_id(uri) {
                if id.trust_domain() != trust_domain {
                    return Err(Error::ForeignTrustAnchor {
                        origin: origin.clone(),
                        index,
                        trust_domain: trust_domain.to_string(),
                        uri: (*uri).to_string(),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
