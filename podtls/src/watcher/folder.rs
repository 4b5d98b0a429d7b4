//! A SPIFFE credential folder as one reload source: the folder is listed on
//! every reload, its credential bundle and each trust domain's bundle are
//! read (each in one open/read/close), and trust domains are added and
//! de-federated as their files come and go.
//!
//! Per file, the rules of [`super::FileSource`]: content hashing, last good
//! kept when a file is unreadable or malformed, fail closed before the first
//! good load. One rule is new: a trust bundle file that is **absent or empty**
//! (0 bytes or only whitespace) is not a load error but **de-federation**:
//! the trust domain's anchors are dropped at once and its peers refused
//! ([`crate::VerifyError::DeFederated`]). kubelet writes an empty file for a
//! `clusterTrustBundle` source with `optional: true` whose selector matches
//! nothing (`GetTrustAnchorsBySigner` in
//! `pkg/kubelet/clustertrustbundle/clustertrustbundle_manager.go` returns
//! `[]byte{}`, which `pkg/volume/projected/projected.go` projects as is), and
//! no file at all once the source is removed from the pod.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::{check_certificate_health, hash_contents, log_published, panic_message, read, Reload};
use crate::credential_folder::{self, CREDENTIAL_BUNDLE_FILE};
use crate::credentials::{Credentials, LeafKind};
use crate::error::{Error, Origin};
use crate::spiffe_bundles::SpiffeBundles;
use crate::spiffe_id::TrustDomain;
use crate::store::{Material, Store};
use crate::trust_bundle::TrustBundle;

/// What was last read from one file.
#[derive(Default)]
struct Seen {
    hash: Option<[u8; 32]>,
    /// Whether `hash` parsed (a failed parse of the same bytes is retried).
    ok: bool,
}

/// Which store an error belongs to.
enum Target {
    Credentials,
    Bundle(TrustDomain),
}

/// The reload source of one credential folder.
pub(crate) struct FolderSource {
    folder: PathBuf,
    /// What the engine watches: a path in the folder (its parent, the
    /// folder, is watched, and a kubelet volume root above it).
    watch: Vec<PathBuf>,
    credentials: Store<Credentials>,
    leaf_kind: LeafKind,
    credential_seen: Seen,
    bundles: SpiffeBundles,
    bundle_seen: BTreeMap<TrustDomain, Seen>,
    /// Bad file names already warned about (a warning each poll is noise).
    warned: BTreeSet<String>,
    /// The errors of the last reload, reported by [`Reload::report`].
    errors: Vec<(Target, Error)>,
    /// Why file events are missing (path, detail), for trust domains that
    /// appear later.
    watch_error: Option<(PathBuf, String)>,
    pending_error_until: Option<Instant>,
}

impl FolderSource {
    pub(crate) fn new(
        folder: PathBuf,
        credentials: Store<Credentials>,
        leaf_kind: LeafKind,
        bundles: SpiffeBundles,
    ) -> Self {
        FolderSource {
            watch: vec![folder.join(CREDENTIAL_BUNDLE_FILE)],
            folder,
            credentials,
            leaf_kind,
            credential_seen: Seen::default(),
            bundles,
            bundle_seen: BTreeMap::new(),
            warned: BTreeSet::new(),
            errors: Vec::new(),
            watch_error: None,
            pending_error_until: None,
        }
    }

    /// The store of `td`, added to the set if new (with the folder's watch
    /// error, if any).
    fn bundle_store(&self, td: &TrustDomain, path: &Path) -> Store<TrustBundle> {
        let store = self
            .bundles
            .entry(td, &format!("SPIFFE bundle {td} {}", path.display()));
        if let Some((path, detail)) = &self.watch_error {
            if store.status().watch_error.is_none() {
                store.set_watch_error(Some(Error::Watch {
                    path: path.clone(),
                    detail: detail.clone(),
                }));
            }
        }
        store
    }

    /// The workload's own trust domain, from the credentials being served.
    fn own_trust_domain(&self) -> Option<TrustDomain> {
        self.credentials
            .current()?
            .info()
            .spiffe_id
            .as_ref()
            .map(|id| id.trust_domain().clone())
    }

    fn load_credentials(&mut self, name: Option<&str>, now: SystemTime, limit: u64) {
        let Some(name) = name else {
            self.credential_seen = Seen::default();
            self.errors.push((
                Target::Credentials,
                Error::Read {
                    path: self.folder.join(CREDENTIAL_BUNDLE_FILE),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!(
                            "no {CREDENTIAL_BUNDLE_FILE} (or {}) in the credential folder",
                            credential_folder::CREDENTIAL_BUNDLE_FILE_OLD
                        ),
                    ),
                },
            ));
            return;
        };
        let path = self.folder.join(name);
        // One open/read/close: key and chain come from the same write.
        let bytes = match read::read_file(&path, limit) {
            Ok(bytes) => bytes,
            Err(e) => return self.errors.push((Target::Credentials, e)),
        };
        let hash = hash_contents(std::slice::from_ref(&bytes));
        if self.credential_seen.ok && self.credential_seen.hash == Some(hash) {
            return;
        }
        self.credential_seen = Seen {
            hash: Some(hash),
            ok: false,
        };
        let origin = Origin::file(&path);
        let kind = self.leaf_kind;
        match publish(
            &self.credentials,
            &path,
            || Credentials::from_bundle_pem(&bytes, &origin, kind, now),
            now,
        ) {
            Ok(()) => self.credential_seen.ok = true,
            Err(e) => self.errors.push((Target::Credentials, e)),
        }
    }

    fn load_bundle(&mut self, td: &TrustDomain, name: &str, now: SystemTime, limit: u64) {
        let path = self.folder.join(name);
        let store = self.bundle_store(td, &path);
        let bytes = match read::read_file(&path, limit) {
            Ok(bytes) => bytes,
            // Removed between the listing and the read (kubelet's swap).
            Err(Error::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return self.de_federate(td, &path, "removed", now);
            }
            Err(e) => return self.errors.push((Target::Bundle(td.clone()), e)),
        };
        if bytes.trim_ascii().is_empty() {
            return self.de_federate(td, &path, "emptied", now);
        }
        let hash = hash_contents(std::slice::from_ref(&bytes));
        let seen = self.bundle_seen.entry(td.clone()).or_default();
        if seen.ok && seen.hash == Some(hash) {
            return;
        }
        *seen = Seen {
            hash: Some(hash),
            ok: false,
        };
        let origin = Origin::file(&path);
        match publish(
            &store,
            &path,
            || {
                TrustBundle::from_pem(&bytes, &origin).and_then(|b| {
                    crate::publisher::check_anchors_trust_domain(td, &b, &origin).map(|()| b)
                })
            },
            now,
        ) {
            Ok(()) => {
                if let Some(seen) = self.bundle_seen.get_mut(td) {
                    seen.ok = true;
                }
                if self.bundles.re_federate(td) {
                    tracing::info!(
                        trust_domain = %td, file = %path.display(),
                        "podtls: trust domain federated again"
                    );
                }
            }
            Err(e) => self.errors.push((Target::Bundle(td.clone()), e)),
        }
    }

    /// Withdraws `td`'s anchors (its file is gone or empty).
    fn de_federate(&mut self, td: &TrustDomain, path: &Path, how: &str, now: SystemTime) {
        // The same bytes coming back must be published again.
        self.bundle_seen.insert(td.clone(), Seen::default());
        self.bundles
            .entry(td, &format!("SPIFFE bundle {td} {}", path.display()));
        if !self.bundles.de_federate(td, now) {
            return;
        }
        if self.own_trust_domain().as_ref() == Some(td) {
            tracing::error!(
                trust_domain = %td, file = %path.display(), how,
                "podtls: the workload's OWN trust domain bundle was {how}: every peer of its own \
                 trust domain is refused until it is written again (not ready)"
            );
        } else {
            tracing::warn!(
                trust_domain = %td, file = %path.display(), how,
                "podtls: trust domain de-federated (bundle {how}); its peers are refused from now on"
            );
        }
    }
}

/// Parses and publishes into `store`, a panic in the parser being a failed
/// load like any other.
fn publish<T: Material>(
    store: &Store<T>,
    path: &Path,
    parse: impl FnOnce() -> Result<T, Error>,
    now: SystemTime,
) -> Result<(), Error> {
    let summary = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let value = parse()?;
        let summary = value.summary();
        store.publish(value, now);
        Ok::<_, Error>(summary)
    }))
    .unwrap_or_else(|payload| {
        Err(Error::ParserPanicked {
            what: store.status().name.to_string(),
            files: path.display().to_string(),
            message: panic_message(payload.as_ref()),
        })
    })?;
    log_published(&store.status().name, &summary);
    Ok(())
}

/// The names in `folder`.
fn list(folder: &Path) -> Result<Vec<String>, Error> {
    let read_error = |source| Error::Read {
        path: folder.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        // A name that is not UTF-8 becomes one with U+FFFD, which no trust
        // domain contains: reported as a bad name, never read.
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

impl Reload for FolderSource {
    fn paths(&self) -> &[PathBuf] {
        &self.watch
    }

    fn reload(&mut self, now: SystemTime, max_file_size: u64) -> Result<(), Error> {
        self.errors.clear();
        let names = match list(&self.folder) {
            Ok(names) => names,
            Err(e) => {
                // Nothing can be told about any file: keep everything as it
                // is (a folder that cannot be listed is not de-federation).
                let detail = e.to_string();
                self.errors.push((Target::Credentials, e));
                for td in self.bundles.trust_domains() {
                    self.errors.push((
                        Target::Bundle(td),
                        Error::Rejected {
                            origin: Origin::file(&self.folder),
                            source: detail.clone().into(),
                        },
                    ));
                }
                return Err(Error::Rejected {
                    origin: Origin::file(&self.folder),
                    source: detail.into(),
                });
            }
        };
        let selection = credential_folder::select(names.iter().map(String::as_str));
        for (name, error) in &selection.bad_names {
            if self.warned.insert(name.clone()) {
                tracing::warn!(
                    folder = %self.folder.display(), file = %name, %error,
                    "podtls: ignoring a file named like a trust bundle whose trust domain is not valid"
                );
            }
        }
        self.load_credentials(selection.credential_bundle.as_deref(), now, max_file_size);
        for (td, name) in &selection.trust_bundles {
            self.load_bundle(td, name, now, max_file_size);
        }
        for td in self.bundles.trust_domains() {
            if !selection.trust_bundles.contains_key(&td) {
                let path = self
                    .folder
                    .join(credential_folder::trust_bundle_file_name(&td));
                self.de_federate(&td, &path, "removed", now);
            }
        }
        match self.errors.len() {
            0 => Ok(()),
            n => Err(Error::Rejected {
                origin: Origin::file(&self.folder),
                source: format!("{n} file(s) of the credential folder failed to load").into(),
            }),
        }
    }

    fn report(&mut self, _summary: Error, now: SystemTime) {
        for (target, error) in self.errors.drain(..) {
            let store_name;
            match target {
                Target::Credentials => {
                    store_name = self.credentials.status().name;
                    let serving_previous = self.credentials.current().is_some();
                    tracing::error!(
                        source = %store_name, %error, serving_previous,
                        "podtls: reload failed; keeping the last good material"
                    );
                    self.credentials.fail(error, now);
                }
                Target::Bundle(td) => {
                    let Some(store) = self.bundles.store(&td) else {
                        continue;
                    };
                    store_name = store.status().name;
                    tracing::error!(
                        source = %store_name, trust_domain = %td, %error,
                        serving_previous = store.current().is_some(),
                        "podtls: reload failed; keeping the last good material"
                    );
                    store.fail(error, now);
                }
            }
        }
    }

    fn pending_until(&mut self) -> &mut Option<Instant> {
        &mut self.pending_error_until
    }

    fn check_health(&mut self, now: SystemTime, warn_at: f64) {
        check_certificate_health(&self.credentials, now, warn_at);
    }

    fn set_watch_error(&mut self, error: Option<Error>) {
        // The same reason for every store of the folder, now and for trust
        // domains that appear later (the engine reports `Error::Watch`).
        self.watch_error = error.as_ref().map(|e| match e {
            Error::Watch { path, detail } => (path.clone(), detail.clone()),
            other => (self.folder.clone(), other.to_string()),
        });
        for td in self.bundles.trust_domains() {
            if let Some(store) = self.bundles.store(&td) {
                store.set_watch_error(self.watch_error.as_ref().map(|(path, detail)| {
                    Error::Watch {
                        path: path.clone(),
                        detail: detail.clone(),
                    }
                }));
            }
        }
        self.credentials.set_watch_error(error);
    }
}
