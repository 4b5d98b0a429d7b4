//! The facade: a pod's credentials and trust bundles, loaded from kubelet's
//! projected files and kept current.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::credentials::{Credentials, LeafKind};
use crate::error::{Error, Origin};
use crate::spiffe_bundles::{SpiffeBundles, TrustDomainStatus};
use crate::spiffe_id::TrustDomain;
use crate::store::{Status, Store};
use crate::trust_bundle::TrustBundle;
use crate::watcher::{FileSource, FolderSource, Reload, ReloadTiming, Reloader};

/// Where a pod's key and chain are.
#[derive(Debug, Clone)]
enum CredentialFiles {
    Bundle(PathBuf),
    KeyAndChain {
        key: PathBuf,
        chain: PathBuf,
    },
    /// A SPIFFE credential folder: the credential bundle and the trust
    /// domains' bundles.
    Folder(PathBuf),
}

/// A pod's TLS material, hot-reloaded from files or fed by another source
/// ([`crate::IdentityPublisher`], the Workload API).
///
/// Dropping the last handle stops the watcher (or the source's task); the
/// stores it handed out keep their last material.
#[derive(Clone)]
pub struct PodTls {
    credentials: Option<Store<Credentials>>,
    roots: Option<Store<TrustBundle>>,
    spiffe: SpiffeBundles,
    /// The credential folder, when the material comes from one.
    folder: Option<PathBuf>,
    /// The source's name, when the material is published by one
    /// ([`crate::IdentityPublisher`]): trust domains come and go as with a
    /// folder.
    source: Option<Arc<str>>,
    /// The file watcher (none for a published source).
    reloader: Option<Arc<Reloader>>,
    /// What keeps a published source running (its task), if anything.
    _source_task: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for PodTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodTls")
            .field("credentials", &self.credentials)
            .field("roots", &self.roots)
            .field("spiffe", &self.spiffe)
            .field("folder", &self.folder)
            .field("source", &self.source)
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

    /// A [`PodTls`] over stores a source publishes into
    /// ([`crate::IdentityPublisher::pod_tls`]); `task` lives as long as the
    /// last handle.
    pub(crate) fn from_source(
        name: Arc<str>,
        credentials: Store<Credentials>,
        spiffe: SpiffeBundles,
        task: Option<Arc<dyn std::any::Any + Send + Sync>>,
    ) -> PodTls {
        PodTls {
            credentials: Some(credentials),
            roots: None,
            spiffe,
            folder: None,
            source: Some(name),
            reloader: None,
            _source_task: task,
        }
    }

    /// The status of every store: the credentials, the roots, and every
    /// trust domain's bundle (with a credential folder: every trust domain
    /// seen in it, de-federated ones included, see
    /// [`PodTls::trust_domain_statuses`]).
    pub fn statuses(&self) -> Vec<Status> {
        let mut out = Vec::new();
        out.extend(self.credentials.iter().map(Store::status));
        out.extend(self.roots.iter().map(Store::status));
        out.extend(
            self.spiffe
                .trust_domains()
                .iter()
                .filter_map(|td| self.spiffe.store(td))
                .map(|s| s.status()),
        );
        out
    }

    /// The state of every SPIFFE trust domain: loaded, anchors, last
    /// change, de-federated, and which one is the workload's own.
    pub fn trust_domain_statuses(&self) -> Vec<TrustDomainStatus> {
        self.spiffe
            .trust_domain_statuses(self.own_trust_domain().as_ref())
    }

    /// The workload's own trust domain: that of the SPIFFE ID of the
    /// credentials being served, if they are an X509-SVID.
    pub fn own_trust_domain(&self) -> Option<TrustDomain> {
        self.credentials
            .as_ref()?
            .current()?
            .info()
            .spiffe_id
            .as_ref()
            .map(|id| id.trust_domain().clone())
    }

    /// The credential folder, when the material comes from one.
    pub fn credential_folder(&self) -> Option<&Path> {
        self.folder.as_deref()
    }

    /// True when every configured store holds good material.
    ///
    /// With a credential folder or a published source: the credentials are
    /// loaded and so is the bundle of the workload's **own** trust domain
    /// (an own bundle that is missing, empty or de-federated makes the pod
    /// not ready: its peers of the same trust domain are refused). Peer
    /// trust domains come and go with federation and do not count.
    pub fn is_ready(&self) -> bool {
        if self.folder.is_some() || self.source.is_some() {
            return self
                .credentials
                .as_ref()
                .is_some_and(|c| c.status().is_ready())
                && self.roots.as_ref().is_none_or(|r| r.status().is_ready())
                && self
                    .own_trust_domain()
                    .is_some_and(|td| self.spiffe.current(&td).is_ok());
        }
        self.statuses().iter().all(Status::is_ready)
    }

    /// Waits until every configured store holds good material (with a
    /// credential folder or a published source, what [`PodTls::is_ready`] says).
    ///
    /// # Errors
    /// [`Error::NotReady`] naming the first store that did not load in time
    /// and its last error.
    pub async fn ready(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Some(c) = &self.credentials {
            c.ready(left()).await?;
        }
        if let Some(r) = &self.roots {
            r.ready(left()).await?;
        }
        if let Some(folder) = &self.folder {
            let what = format!("own trust domain bundle in {}", folder.display());
            return self.own_bundle_ready(what, deadline).await;
        }
        if let Some(source) = &self.source {
            let what = format!("own trust domain bundle from {source}");
            return self.own_bundle_ready(what, deadline).await;
        }
        for td in self.spiffe.trust_domains() {
            if let Some(s) = self.spiffe.store(&td) {
                s.ready(left()).await?;
            }
        }
        Ok(())
    }

    /// Waits for the own trust domain's bundle of a credential folder or a
    /// published source: its store may not exist yet (no file, nothing
    /// published), so this waits on the store once it exists and re-checks
    /// at least every 50 ms.
    async fn own_bundle_ready(
        &self,
        what: String,
        deadline: tokio::time::Instant,
    ) -> Result<(), Error> {
        let started = tokio::time::Instant::now();
        loop {
            if self.is_ready() {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let own = self.own_trust_domain();
                let last_error = own
                    .as_ref()
                    .and_then(|td| self.spiffe.store(td))
                    .and_then(|s| s.status().last_error.map(|e| e.to_string()))
                    .unwrap_or_else(|| match &own {
                        Some(td) if self.folder.is_some() => format!(
                            "no usable {} in the folder",
                            crate::credential_folder::trust_bundle_file_name(td)
                        ),
                        Some(td) => format!("no bundle published for {td}"),
                        None => "the credentials carry no SPIFFE ID".into(),
                    });
                return Err(Error::NotReady {
                    what,
                    waited: now - started,
                    last_error,
                });
            }
            let step = (deadline - now).min(Duration::from_millis(50));
            match self
                .own_trust_domain()
                .and_then(|td| self.spiffe.store(&td))
            {
                Some(store) => {
                    let mut rx = store.subscribe();
                    let _ = tokio::time::timeout(step, rx.changed()).await;
                }
                None => tokio::time::sleep(step).await,
            }
        }
    }

    /// Re-reads every file now, without waiting for an event or the poll
    /// (nothing to do for a published source).
    pub fn reload_now(&self) {
        if let Some(reloader) = &self.reloader {
            reloader.reload_now();
        }
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

    /// A SPIFFE credential folder (draft SPIFFE Filesystem Delivery
    /// standard): `credential-bundle.private-key.x509.pem` (key, then chain
    /// leaf first) and one `<trust-domain>.spiffe-trust-bundle.x509.pem` per
    /// trust domain; the older names `credential-bundle.private-key.pem` and
    /// `<trust-domain>.spiffe-trust-bundle.pem` are read too (the newest
    /// name wins when both are present), other files are ignored.
    ///
    /// Trust domains are discovered from the file names and followed as
    /// they come and go, without a restart. A trust bundle file that is
    /// removed or emptied (0 bytes or only whitespace) **de-federates** its
    /// trust domain at once: its peers are refused
    /// ([`crate::VerifyError::DeFederated`]), resumed sessions included. A
    /// malformed non-empty file is a load error that keeps the last good
    /// anchors. The workload's own trust domain is no exception: if its
    /// bundle is removed or emptied, peers of the own trust domain are refused
    /// too, an error is logged and [`PodTls::is_ready`] turns false.
    ///
    /// The leaf must be an X509-SVID. Use [`PodTls::spiffe_bundles`] for
    /// client and server authentication; it covers every trust domain of
    /// the folder. Cannot be combined with other credential or SPIFFE
    /// bundle sources.
    pub fn credential_folder(mut self, folder: impl Into<PathBuf>) -> Self {
        self.credentials = Some(CredentialFiles::Folder(folder.into()));
        self.leaf_kind = LeafKind::SpiffeSvid;
        self
    }

    /// [`PodTlsBuilder::credential_folder`] with the folder named by the
    /// environment variable `var`; by convention
    /// [`SPIFFE_CREDENTIAL_FOLDER`](crate::SPIFFE_CREDENTIAL_FOLDER_ENV).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable when it is unset, empty or not
    /// Unicode.
    pub fn credential_folder_from_env(self, var: &str) -> Result<Self, Error> {
        match std::env::var(var) {
            Ok(folder) if !folder.trim().is_empty() => Ok(self.credential_folder(folder)),
            Ok(_) => Err(Error::Config(format!(
                "environment variable {var} (the SPIFFE credential folder) is empty"
            ))),
            Err(e) => Err(Error::Config(format!(
                "environment variable {var} (the SPIFFE credential folder): {e}"
            ))),
        }
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
        if matches!(self.credentials, Some(CredentialFiles::Folder(_))) && !self.spiffe.is_empty() {
            return Err(Error::Config(
                "a credential folder brings its own SPIFFE bundles: do not add spiffe_bundle files"
                    .into(),
            ));
        }
        let mut sources: Vec<Box<dyn Reload>> = Vec::new();
        let kind = self.leaf_kind;
        let mut folder = None;
        let mut folder_bundles = None;
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
            CredentialFiles::Folder(path) => {
                let store = Store::empty(format!(
                    "credentials {}",
                    path.join(crate::credential_folder::CREDENTIAL_BUNDLE_FILE)
                        .display()
                ));
                let bundles = SpiffeBundles::default();
                sources.push(Box::new(FolderSource::new(
                    path.clone(),
                    store.clone(),
                    kind,
                    bundles.clone(),
                )));
                folder = Some(path);
                folder_bundles = Some(bundles);
                store
            }
        });
        let roots = self
            .roots
            .map(|path| bundle_source(&mut sources, "roots", &path, None));
        let mut spiffe = Vec::new();
        for (td, path) in self.spiffe {
            if spiffe.iter().any(|(t, _)| t == &td) {
                return Err(Error::Config(format!("trust domain {td} given twice")));
            }
            let store = bundle_source(
                &mut sources,
                &format!("SPIFFE bundle {td}"),
                &path,
                Some(td.clone()),
            );
            spiffe.push((td, store));
        }
        let reloader = Reloader::start(sources, self.timing)?;
        Ok(PodTls {
            credentials,
            roots,
            spiffe: folder_bundles.unwrap_or_else(|| SpiffeBundles::new(spiffe)),
            folder,
            source: None,
            reloader: Some(Arc::new(reloader)),
            _source_task: None,
        })
    }
}

fn bundle_source(
    sources: &mut Vec<Box<dyn Reload>>,
    what: &str,
    path: &Path,
    trust_domain: Option<TrustDomain>,
) -> Store<TrustBundle> {
    let store = Store::empty(format!("{what} {}", path.display()));
    let origin = Origin::file(path);
    sources.push(Box::new(FileSource::new(
        store.clone(),
        vec![path.to_path_buf()],
        move |files, _now| {
            let bundle = TrustBundle::from_pem(&files[0], &origin)?;
            // A SPIFFE bundle's anchors may not name another trust domain
            // (the rule every source follows, `IdentityPublisher`).
            if let Some(td) = &trust_domain {
                crate::publisher::check_anchors_trust_domain(td, &bundle, &origin)?;
            }
            Ok(bundle)
        },
    )));
    store
}
