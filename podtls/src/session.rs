//! Session resumption that is never worth more than a full handshake now.
//!
//! rustls resumes a session without consulting any certificate verifier: the
//! peer's chain is whatever the session carried from the handshake that
//! created it. podtls therefore resumes only on its own handshake path
//! ([`ServerTls::accept`](crate::ServerTls::accept),
//! [`ClientTls::connect`](crate::ClientTls::connect) and everything built on
//! them), where two rules hold:
//!
//! 1. **One configuration, one session cache, per generation.** A
//!    [`PerGeneration`] hands every new connection the rustls configuration of
//!    the *current* generation of the material in use (trust bundles + own
//!    credentials), each with a cache of its own. A connection keeps the
//!    configuration it started with, so whatever it stores (a handshake that
//!    stalled across a rotation, tickets a server sends late) lands in the
//!    cache of the generation it began in, which no connection started after
//!    the rotation ever reads. No timing assumption is involved.
//! 2. **Every resumed handshake is verified again** against the current
//!    bundle of the peer's trust domain (or the current DNS roots), at the
//!    current time, with the current authorizer (see
//!    `handshake.rs`). Where that fails, the connection is refused and
//!    every cached session is dropped ([`PerGeneration::purge`]), so the next
//!    attempt is a full handshake.
//!
//! The configurations handed out for use elsewhere (`ServerTls::config`,
//! `ClientTls::config`) have resumption switched off: there nothing could
//! verify a resumed peer.

use std::fmt;
use std::sync::{Arc, Mutex};

/// Sessions a cache holds, per generation.
pub(crate) const SESSION_CACHE_SIZE: usize = 1024;

/// Reads the current generation (trust bundles + own credentials).
pub(crate) type Generation = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The rustls configuration of the current generation, built on first use.
pub(crate) struct PerGeneration<C> {
    generation: Generation,
    fresh: Box<dyn Fn() -> C + Send + Sync>,
    /// (generation, purges) the configuration was built for, and it.
    current: Mutex<((u64, u64), Arc<C>)>,
    purges: std::sync::atomic::AtomicU64,
}

impl<C> fmt::Debug for PerGeneration<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.current.lock().map(|c| c.0).unwrap_or_default();
        f.debug_struct("PerGeneration")
            .field("generation", &key.0)
            .field("purges", &key.1)
            .finish()
    }
}

impl<C> PerGeneration<C> {
    /// `fresh` builds a configuration with an empty session cache.
    pub(crate) fn new(
        generation: Generation,
        fresh: impl Fn() -> C + Send + Sync + 'static,
    ) -> Self {
        let first = Arc::new(fresh());
        let key = ((generation)(), 0);
        PerGeneration {
            generation,
            fresh: Box::new(fresh),
            current: Mutex::new((key, first)),
            purges: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The configuration for a connection starting now.
    pub(crate) fn current(&self) -> Arc<C> {
        let key = (
            (self.generation)(),
            self.purges.load(std::sync::atomic::Ordering::Acquire),
        );
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0 != key {
            *cur = (key, Arc::new((self.fresh)()));
        }
        cur.1.clone()
    }

    /// Drops every cached session: the next connection starts a new cache.
    pub(crate) fn purge(&self) {
        self.purges
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
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
    fn one_configuration_per_generation() {
        let (g, generation) = counter();
        let built = Arc::new(AtomicU64::new(0));
        let b = built.clone();
        let per = PerGeneration::new(generation, move || b.fetch_add(1, Ordering::SeqCst));
        let first = per.current();
        assert!(
            Arc::ptr_eq(&first, &per.current()),
            "same generation, same config"
        );
        g.store(2, Ordering::SeqCst);
        let second = per.current();
        assert!(
            !Arc::ptr_eq(&first, &second),
            "a new generation gets a new config"
        );
        assert_eq!((*first, *second), (0, 1));
    }

    #[test]
    fn a_purge_starts_a_new_configuration() {
        let (_, generation) = counter();
        let per = PerGeneration::new(generation, || Mutex::new(Vec::<u8>::new()));
        let before = per.current();
        before.lock().unwrap().push(1);
        per.purge();
        let after = per.current();
        assert!(!Arc::ptr_eq(&before, &after));
        assert!(
            after.lock().unwrap().is_empty(),
            "the new cache starts empty"
        );
    }
}
