//! TLS session resumption tied to the generation of the material in use.
//!
//! A resumed session skips certificate verification and presents no
//! certificate, so a session must not outlive the trust anchors it was
//! verified against, nor hide a rotated certificate. Both stores below key
//! their contents by a generation number that changes whenever a trust
//! bundle in use *or* the side's own credentials change: after a rotation no
//! earlier session can be resumed, and the next handshake is a full one,
//! verified against the new anchors and presenting the new certificates.
//! Within one generation resumption works as usual.
//!
//! A handshake that is in flight while the generation changes began with the
//! old material (a resumed one carries the old peer certificate along), but
//! rustls stores its session only when it completes: under the *new*
//! generation. Such a session would then be resumable, and each resumption
//! hands out new tickets for the same old session, so a stale peer
//! certificate could live on across the rotation. Both stores therefore
//! store nothing for a quiet period after they see the generation change
//! (default [`QUIET_PERIOD`], the default handshake deadline of
//! [`crate::serve`]: any handshake that began before the change has completed
//! or failed by then); after that, caching resumes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::{ClientSessionMemoryCache, ClientSessionStore};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::NamedGroup;
use rustls_pki_types::ServerName;

/// Reads the current generation (trust bundles + own credentials).
pub type Generation = Arc<dyn Fn() -> u64 + Send + Sync>;

/// How long after a generation change no new session is stored, by default.
/// It must be at least as long as the longest handshake.
pub const QUIET_PERIOD: Duration = Duration::from_secs(10);

/// The generation last seen and when it was first seen (`None`: at
/// construction, when no handshake can be in flight).
#[derive(Debug)]
struct Seen {
    generation: u64,
    changed_at: Option<Instant>,
    quiet: Duration,
}

impl Seen {
    /// `generation`, current since before any handshake.
    fn settled(generation: u64, quiet: Duration) -> Seen {
        Seen {
            generation,
            changed_at: None,
            quiet,
        }
    }

    /// Records `generation`; true if it changed.
    fn observe(&mut self, generation: u64) -> bool {
        if generation == self.generation {
            return false;
        }
        self.generation = generation;
        self.changed_at = Some(Instant::now());
        true
    }

    /// No change within the quiet period: sessions completed now began with
    /// the current material.
    fn is_settled(&self) -> bool {
        self.changed_at.is_none_or(|t| t.elapsed() >= self.quiet)
    }
}

/// Server-side session cache whose keys carry the generation.
pub struct GenerationalServerSessions {
    inner: Arc<ServerSessionMemoryCache>,
    generation: Generation,
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for GenerationalServerSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationalServerSessions").finish()
    }
}

impl GenerationalServerSessions {
    /// A cache of up to `size` sessions that stores nothing for `quiet` after
    /// a generation change.
    pub fn new(size: usize, generation: Generation, quiet: Duration) -> Self {
        let seen = Mutex::new(Seen::settled(generation(), quiet));
        GenerationalServerSessions {
            inner: ServerSessionMemoryCache::new(size),
            generation,
            seen,
        }
    }

    /// `key` prefixed with the current generation, and whether that
    /// generation has been current for the whole quiet period.
    fn key(&self, key: &[u8]) -> (Vec<u8>, bool) {
        let g = (self.generation)();
        let settled = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.observe(g);
            seen.is_settled()
        };
        let mut k = Vec::with_capacity(8 + key.len());
        k.extend_from_slice(&g.to_be_bytes());
        k.extend_from_slice(key);
        (k, settled)
    }
}

impl StoresServerSessions for GenerationalServerSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        match self.key(&key) {
            (k, true) => self.inner.put(k, value),
            // The handshake may have begun with the previous material.
            (_, false) => false,
        }
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(&self.key(key).0)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(&self.key(key).0)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// Client-side session cache that is emptied when the generation changes.
pub struct GenerationalClientSessions {
    current: Mutex<(Seen, Arc<ClientSessionMemoryCache>)>,
    size: usize,
    generation: Generation,
}

impl std::fmt::Debug for GenerationalClientSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationalClientSessions").finish()
    }
}

impl GenerationalClientSessions {
    /// A cache of up to `size` servers' sessions that stores nothing for
    /// `quiet` after a generation change.
    pub fn new(size: usize, generation: Generation, quiet: Duration) -> Self {
        let g = generation();
        GenerationalClientSessions {
            current: Mutex::new((
                Seen::settled(g, quiet),
                Arc::new(ClientSessionMemoryCache::new(size)),
            )),
            size,
            generation,
        }
    }

    /// The cache of the current generation (a new, empty one after a change).
    fn cache(&self) -> Arc<ClientSessionMemoryCache> {
        self.cache_and_settled().0
    }

    /// The cache of the current generation, and whether that generation has
    /// been current for the whole quiet period (only then are new sessions
    /// stored).
    fn cache_and_settled(&self) -> (Arc<ClientSessionMemoryCache>, bool) {
        let g = (self.generation)();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0.observe(g) {
            cur.1 = Arc::new(ClientSessionMemoryCache::new(self.size));
        }
        (cur.1.clone(), cur.0.is_settled())
    }
}

impl ClientSessionStore for GenerationalClientSessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.cache().set_kx_hint(server_name, group)
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.cache().kx_hint(server_name)
    }

    fn set_tls12_session(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        if let (cache, true) = self.cache_and_settled() {
            cache.set_tls12_session(server_name, value)
        }
    }

    fn tls12_session(
        &self,
        server_name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.cache().tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.cache().remove_tls12_session(server_name)
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        if let (cache, true) = self.cache_and_settled() {
            cache.insert_tls13_ticket(server_name, value)
        }
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.cache().take_tls13_ticket(server_name)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn counter() -> (Arc<AtomicU64>, Generation) {
        let g = Arc::new(AtomicU64::new(1));
        let r = g.clone();
        (g, Arc::new(move || r.load(Ordering::SeqCst)))
    }

    #[test]
    fn server_sessions_do_not_survive_a_generation_change() {
        let (g, generation) = counter();
        let cache = GenerationalServerSessions::new(16, generation, QUIET_PERIOD);
        assert!(cache.put(b"id".to_vec(), b"session".to_vec()));
        assert_eq!(cache.get(b"id").as_deref(), Some(&b"session"[..]));
        g.store(2, Ordering::SeqCst);
        assert_eq!(cache.get(b"id"), None);
        assert_eq!(cache.take(b"id"), None);
    }

    #[test]
    fn server_stores_nothing_right_after_a_generation_change() {
        // A handshake completing now may have begun with the old material.
        let (g, generation) = counter();
        let cache = GenerationalServerSessions::new(16, generation, Duration::from_secs(3600));
        g.store(2, Ordering::SeqCst);
        assert!(!cache.put(b"late".to_vec(), b"stale?".to_vec()));
        assert_eq!(cache.get(b"late"), None);
    }

    #[test]
    fn server_stores_again_once_the_quiet_period_is_over() {
        let (g, generation) = counter();
        let cache = GenerationalServerSessions::new(16, generation, Duration::ZERO);
        g.store(2, Ordering::SeqCst);
        assert!(cache.put(b"id".to_vec(), b"session".to_vec()));
        assert!(cache.get(b"id").is_some());
    }

    #[test]
    fn client_cache_is_emptied_and_quiet_after_a_change() {
        let (g, generation) = counter();
        let quiet =
            GenerationalClientSessions::new(16, generation.clone(), Duration::from_secs(3600));
        let name = ServerName::try_from("server").unwrap();
        quiet.set_kx_hint(name.clone(), NamedGroup::X25519);
        assert_eq!(quiet.kx_hint(&name), Some(NamedGroup::X25519));
        g.store(2, Ordering::SeqCst);
        assert_eq!(quiet.kx_hint(&name), None, "a new generation starts empty");
        let (_, settled) = quiet.cache_and_settled();
        assert!(!settled);
        let eager = GenerationalClientSessions::new(16, generation, Duration::ZERO);
        g.store(3, Ordering::SeqCst);
        assert!(eager.cache_and_settled().1);
    }
}
