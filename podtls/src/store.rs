//! Live, atomically swapped material plus its reload status.
//!
//! One writer (the reloader) publishes validated material; readers load an
//! `Arc` per handshake without locks. Before the first successful load a
//! store is empty and everything that reads it fails closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use crate::cert_info::CertInfo;
use crate::credentials::Credentials;
use crate::error::Error;
use crate::trust_bundle::TrustBundle;

/// Material a [`Store`] can hold.
pub trait Material: Send + Sync + 'static {
    /// A loggable description of the material.
    fn summary(&self) -> Summary;
}

impl Material for Credentials {
    fn summary(&self) -> Summary {
        Summary::Certificate(self.info().clone())
    }
}

impl Material for TrustBundle {
    fn summary(&self) -> Summary {
        Summary::TrustBundle {
            authorities: self.len(),
        }
    }
}

/// What the current material is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Summary {
    /// A certificate (serial, validity, names).
    Certificate(CertInfo),
    /// A trust bundle with this many CA certificates.
    TrustBundle {
        /// Distinct CA certificates.
        authorities: usize,
    },
    /// Material of the application's own kind ([`crate::reload::FileWatch`]),
    /// described in a loggable line (never key material).
    Other(String),
}

/// How the current material is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Nothing good has been loaded yet: users of this store fail closed.
    Pending,
    /// Good material is being served.
    Ok,
    /// The certificate is past ~80% of its lifetime and no replacement came:
    /// kubelet's refresh is late. Still served.
    RenewalOverdue,
    /// The certificate has expired and no replacement came. Still served
    /// (peers will reject it), reported as an error.
    Expired,
    /// The source withdrew the material on purpose (a credential folder's
    /// trust bundle removed or emptied, [`crate::IdentityPublisher::withdraw_bundle`]:
    /// the trust domain is de-federated).
    /// Nothing is served; users of this store fail closed.
    Withdrawn,
}

/// A snapshot of a store's reload state, delivered on every reload.
#[derive(Debug, Clone)]
pub struct Status {
    /// What the store holds (for example "credentials /var/run/tls/bundle.pem").
    pub name: Arc<str>,
    /// Number of changes of the material: publishes, and withdrawals
    /// ([`Health::Withdrawn`]) (0 = never loaded).
    pub generation: u64,
    /// When a load was last attempted.
    pub last_attempt: Option<SystemTime>,
    /// When material was last published.
    pub last_success: Option<SystemTime>,
    /// The error of the last attempt, if it failed (the previous material is
    /// still served). Cleared by the next success.
    pub last_error: Option<Arc<Error>>,
    /// The material being served.
    pub summary: Option<Summary>,
    /// Health of the served material.
    pub health: Health,
    /// Why changes to this store's files are found only by the periodic
    /// re-read ([`crate::reload::ReloadTiming::poll_interval`]): the file watcher
    /// could not be created (for example inotify limits) or one of the
    /// directories could not be watched ([`Error::Watch`]). `None` while the
    /// watcher runs and every existing directory is watched. Both are
    /// retried on every re-read.
    pub watch_error: Option<Arc<Error>>,
}

impl Status {
    /// True once good material has been published and while it has not
    /// been withdrawn ([`Health::Withdrawn`]).
    pub fn is_ready(&self) -> bool {
        self.generation > 0 && self.health != Health::Withdrawn
    }
}

/// A live cell of validated material; cheap to clone, shared by every
/// resolver, verifier and status reader.
pub struct Store<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    current: ArcSwapOption<T>,
    /// Mirrors `Status::generation` for lock-free reads on the handshake path.
    generation: AtomicU64,
    status: watch::Sender<Status>,
}

impl<T> Clone for Store<T> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.inner.status.borrow().name)
            .finish()
    }
}

impl<T: Material> Store<T> {
    /// An empty store named `name`; it fails closed until material is published.
    pub fn empty(name: impl Into<Arc<str>>) -> Self {
        let (status, _) = watch::channel(Status {
            name: name.into(),
            generation: 0,
            last_attempt: None,
            last_success: None,
            last_error: None,
            summary: None,
            health: Health::Pending,
            watch_error: None,
        });
        Store {
            inner: Arc::new(Inner {
                current: ArcSwapOption::empty(),
                generation: AtomicU64::new(0),
                status,
            }),
        }
    }

    /// A store holding fixed material that never changes (for material from
    /// memory, and for tests).
    pub fn fixed(name: impl Into<Arc<str>>, value: T) -> Self {
        let store = Self::empty(name);
        store.publish(value, SystemTime::now());
        store
    }

    /// The current material; `None` before the first good load.
    ///
    /// This is one atomic load: call it per handshake, not once at start-up.
    #[inline]
    pub fn current(&self) -> Option<Arc<T>> {
        self.inner.current.load_full()
    }

    /// A cheaper borrow of the current material for short critical sections.
    #[inline]
    pub(crate) fn guard(&self) -> arc_swap::Guard<Option<Arc<T>>> {
        self.inner.current.load()
    }

    /// The number of successful publishes so far (0 = never loaded); changes
    /// exactly when the material does.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The latest status.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// A receiver that is notified on every reload, successful or not.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// Waits until good material is loaded, up to `timeout`.
    ///
    /// # Errors
    /// [`Error::NotReady`] with the last load error when the timeout passes.
    pub async fn ready(&self, timeout: Duration) -> Result<Arc<T>, Error> {
        let mut rx = self.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(Status::is_ready))
            .await
            .map(|r| r.is_ok());
        match (waited, self.current()) {
            (Ok(true), Some(value)) => Ok(value),
            _ => Err(self.not_ready(timeout)),
        }
    }

    /// Blocking variant of [`Store::ready`], for code outside an async runtime.
    ///
    /// # Errors
    /// [`Error::NotReady`] when the timeout passes.
    pub fn ready_blocking(&self, timeout: Duration) -> Result<Arc<T>, Error> {
        let deadline = std::time::Instant::now() + timeout;
        let mut rx = self.subscribe();
        loop {
            if let Some(value) = self.current() {
                return Ok(value);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(self.not_ready(timeout));
            }
            // `watch` has no blocking wait; a short poll keeps this simple and
            // is only used at start-up.
            if rx.has_changed().unwrap_or(false) {
                rx.borrow_and_update();
                continue;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
    }

    fn not_ready(&self, waited: Duration) -> Error {
        let status = self.status();
        Error::NotReady {
            what: status.name.to_string(),
            waited,
            last_error: status
                .last_error
                .map(|e| e.to_string())
                .unwrap_or_else(|| "none".into()),
        }
    }

    /// Publishes new validated material.
    pub(crate) fn publish(&self, value: T, now: SystemTime) {
        let summary = value.summary();
        self.inner.current.store(Some(Arc::new(value)));
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.status.send_modify(|s| {
            s.generation += 1;
            s.last_attempt = Some(now);
            s.last_success = Some(now);
            s.last_error = None;
            s.summary = Some(summary);
            s.health = Health::Ok;
        });
    }

    /// Withdraws the material on purpose (de-federation): readers get `None`
    /// from now on, the generation moves on (session caches of the old
    /// material are left behind), the status says [`Health::Withdrawn`].
    pub(crate) fn withdraw(&self, now: SystemTime) {
        self.inner.current.store(None);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.status.send_modify(|s| {
            s.generation += 1;
            s.last_attempt = Some(now);
            s.last_success = Some(now);
            s.last_error = None;
            s.summary = None;
            s.health = Health::Withdrawn;
        });
    }

    /// Records a failed load; the current material (if any) stays.
    pub(crate) fn fail(&self, error: Error, now: SystemTime) {
        self.fail_shared(Arc::new(error), now);
    }

    /// [`Store::fail`] with an error also handed to someone else.
    pub(crate) fn fail_shared(&self, error: Arc<Error>, now: SystemTime) {
        self.inner.status.send_modify(|s| {
            s.last_attempt = Some(now);
            s.last_error = Some(error);
        });
    }

    /// Records a successful load of material that did not change (the
    /// current material stays, a previous error is cleared); notifies
    /// subscribers only when there was an error.
    pub(crate) fn confirm(&self, now: SystemTime) {
        self.inner.status.send_if_modified(|s| {
            s.last_attempt = Some(now);
            s.last_error.take().is_some()
        });
    }

    /// Records why file events are not received (`None`: they are);
    /// notifies subscribers only when the message changes.
    pub(crate) fn set_watch_error(&self, error: Option<Error>) -> bool {
        self.inner.status.send_if_modified(|s| {
            let same = match (&s.watch_error, &error) {
                (None, None) => true,
                (Some(old), Some(new)) => old.to_string() == new.to_string(),
                _ => false,
            };
            if !same {
                s.watch_error = error.map(Arc::new);
            }
            !same
        })
    }

    /// Updates the health flag; notifies subscribers only when it changes.
    pub(crate) fn set_health(&self, health: Health) -> bool {
        self.inner.status.send_if_modified(|s| {
            if s.health == health {
                false
            } else {
                s.health = health;
                true
            }
        })
    }
}
