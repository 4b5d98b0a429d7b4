//! The facade: a pod's credentials and trust bundles, loaded from kubelet's
//! projected files and kept current.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::credentials::{Credentials, LeafKind};
use crate::error::{Error, Origin};
use crate::spiffe_bundles::SpiffeBundles;
use crate::spiffe_id::TrustDomain;
use crate::store::{Status, Store};
use crate::trust_bundle::TrustBundle;
use crate::watcher::{FileSource, Reload, ReloadTiming, Reloader};

/// Where a pod's key and chain are.
#[derive(Debug, Clone)]
enum CredentialFiles {
    Bundle(PathBuf),
    KeyAndChain { key: PathBuf, chain: PathBuf },
}

/// A pod's TLS material, hot-reloaded from files.
///
/// Dropping the last handle stops the watcher; the stores it handed out keep
/// their last material.
#[derive(Clone)]
pub struct PodTls {
    credentials: Option<Store<Credentials>>,
    roots: Option<Store<TrustBundle>>,
    spiffe: SpiffeBundles,
    reloader: Arc<Reloader>,
}

impl std::fmt::Debug for PodTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodTls")
            .field("credentials", &self.credentials)
            .field("roots", &self.roots)
            .field("spiffe", &self.spiffe)
            .finish()
    }
}

/// Builds a [`PodTls`].
#[derive(Debug, Default)]
pub struct PodTlsBuilder {
    credentials: Option<CredentialFiles>,
    leaf_kind: LeafKind,
    roots: Option<PathBuf>,
    spiffe: Vec<(TrustDomain, PathBuf)>,
    timing: ReloadTiming,
}

impl PodTls {
    /// Starts describing the files to load.
    pub fn builder() -> PodTlsBuilder {
        PodTlsBuilder::default()
    }

    /// The pod's own credentials, if configured.
    pub fn credentials(&self) -> Option<&Store<Credentials>> {
        self.credentials.as_ref()
    }

    /// The roots for DNS-name server verification, if configured.
    pub fn roots(&self) -> Option<&Store<TrustBundle>> {
        self.roots.as_ref()
    }

    /// The SPIFFE bundles, keyed by trust domain (possibly none).
    pub fn spiffe_bundles(&self) -> &SpiffeBundles {
        &self.spiffe
    }

    /// The status of every store.
    pub fn statuses(&self) -> Vec<Status> {
        let mut out = Vec::new();
        out.extend(self.credentials.iter().map(Store::status));
        out.extend(self.roots.iter().map(Store::status));
        out.extend(
            self.spiffe
                .trust_domains()
                .filter_map(|td| self.spiffe.store(td))
                .map(Store::status),
        );
        out
    }

    /// True when every configured store holds good material.
    pub fn is_ready(&self) -> bool {
        self.statuses().iter().all(Status::is_ready)
    }

    /// Waits until every configured store holds good material.
    ///
    /// # Errors
    /// [`Error::NotReady`] naming the first store that did not load in time
    /// and its last error.
    pub async fn ready(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(c) = &self.credentials {
            c.ready(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await?;
        }
        if let Some(r) = &self.roots {
            r.ready(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await?;
        }
        for td in self.spiffe.trust_domains() {
            if let Some(s) = self.spiffe.store(td) {
                s.ready(deadline.saturating_duration_since(tokio::time::Instant::now()))
                    .await?;
            }
        }
        Ok(())
    }

    /// Re-reads every file now, without waiting for an event or the poll.
    pub fn reload_now(&self) {
        self.reloader.reload_now();
    }
}

impl PodTlsBuilder {
    /// The pod's credential bundle (`credentialBundlePath`): key then chain in one PEM file.
    pub fn credential_bundle(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials = Some(CredentialFiles::Bundle(path.into()));
        self
    }

    /// The pod's key and chain as separate files (`keyPath`, `certificateChainPath`).
    pub fn key_and_chain(mut self, key: impl Into<PathBuf>, chain: impl Into<PathBuf>) -> Self {
        self.credentials = Some(CredentialFiles::KeyAndChain {
            key: key.into(),
            chain: chain.into(),
        });
        self
    }

    /// Requires the pod's leaf to be a valid X509-SVID (reject anything else).
    pub fn require_spiffe_svid(mut self) -> Self {
        self.leaf_kind = LeafKind::SpiffeSvid;
        self
    }

    /// A PEM file of CA certificates for DNS-name verification of servers.
    pub fn roots(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = Some(path.into());
        self
    }

    /// A PEM file of CA certificates for one SPIFFE trust domain. Call once
    /// per trust domain; bundles are never merged.
    pub fn spiffe_bundle(mut self, trust_domain: TrustDomain, path: impl Into<PathBuf>) -> Self {
        self.spiffe.push((trust_domain, path.into()));
        self
    }

    /// Reload timing (poll interval, settle delay, renewal warning).
    pub fn timing(mut self, timing: ReloadTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Loads every file once and starts watching. Missing or invalid files do
    /// not fail this call: the affected stores stay empty (closed) and report
    /// why in their status; use [`PodTls::ready`] to wait for them.
    ///
    /// A file watcher that cannot be created or a directory that cannot be
    /// watched (inotify limits) does not fail it either: changes are then
    /// found by the periodic re-read, and `Status::watch_error` says why.
    ///
    /// # Errors
    /// [`Error::Config`] when the same trust domain is given twice or nothing
    /// is configured; [`Error::Watch`] when the reload thread cannot be
    /// spawned.
    pub fn start(self) -> Result<PodTls, Error> {
        if self.credentials.is_none() && self.roots.is_none() && self.spiffe.is_empty() {
            return Err(Error::Config(
                "nothing to load: no credentials or bundles".into(),
            ));
        }
        let mut sources: Vec<Box<dyn Reload>> = Vec::new();
        let kind = self.leaf_kind;
        let credentials = self.credentials.map(|files| match files {
            CredentialFiles::Bundle(path) => {
                let store = Store::empty(format!("credentials {}", path.display()));
                let origin = Origin::file(&path);
                sources.push(Box::new(FileSource::new(
                    store.clone(),
                    vec![path],
                    move |files, now| Credentials::from_bundle_pem(&files[0], &origin, kind, now),
                )));
                store
            }
            CredentialFiles::KeyAndChain { key, chain } => {
                let store = Store::empty(format!(
                    "credentials {} + {}",
                    key.display(),
                    chain.display()
                ));
                let (ko, co) = (Origin::file(&key), Origin::file(&chain));
                sources.push(Box::new(FileSource::new(
                    store.clone(),
                    vec![key, chain],
                    move |files, now| {
                        Credentials::from_key_and_chain_pem(
                            &files[0], &ko, &files[1], &co, kind, now,
                        )
                    },
                )));
                store
            }
        });
        let roots = self
            .roots
            .map(|path| bundle_source(&mut sources, "roots", &path));
        let mut spiffe = Vec::new();
        for (td, path) in self.spiffe {
            if spiffe.iter().any(|(t, _)| t == &td) {
                return Err(Error::Config(format!("trust domain {td} given twice")));
            }
            let store = bundle_source(&mut sources, &format!("SPIFFE bundle {td}"), &path);
            spiffe.push((td, store));
        }
        let reloader = Reloader::start(sources, self.timing)?;
        Ok(PodTls {
            credentials,
            roots,
            spiffe: SpiffeBundles::new(spiffe),
            reloader: Arc::new(reloader),
        })
    }
}

fn bundle_source(
    sources: &mut Vec<Box<dyn Reload>>,
    what: &str,
    path: &Path,
) -> Store<TrustBundle> {
    let store = Store::empty(format!("{what} {}", path.display()));
    let origin = Origin::file(path);
    sources.push(Box::new(FileSource::new(
        store.clone(),
        vec![path.to_path_buf()],
        move |files, _now| TrustBundle::from_pem(&files[0], &origin),
    )));
    store
}
