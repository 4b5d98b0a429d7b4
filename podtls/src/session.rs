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

use std::sync::{Arc, Mutex};

use rustls::client::{ClientSessionMemoryCache, ClientSessionStore};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::NamedGroup;
use rustls_pki_types::ServerName;

/// Reads the current generation (trust bundles + own credentials).
pub type Generation = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Server-side session cache whose keys carry the generation.
pub struct GenerationalServerSessions {
    inner: Arc<ServerSessionMemoryCache>,
    generation: Generation,
}

impl std::fmt::Debug for GenerationalServerSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationalServerSessions").finish()
    }
}

impl GenerationalServerSessions {
    /// A cache of up to `size` sessions.
    pub fn new(size: usize, generation: Generation) -> Self {
        GenerationalServerSessions {
            inner: ServerSessionMemoryCache::new(size),
            generation,
        }
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(8 + key.len());
        k.extend_from_slice(&(self.generation)().to_be_bytes());
        k.extend_from_slice(key);
        k
    }
}

impl StoresServerSessions for GenerationalServerSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(self.key(&key), value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(&self.key(key))
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(&self.key(key))
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// Client-side session cache that is emptied when the generation changes.
pub struct GenerationalClientSessions {
    current: Mutex<(u64, Arc<ClientSessionMemoryCache>)>,
    size: usize,
    generation: Generation,
}

impl std::fmt::Debug for GenerationalClientSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationalClientSessions").finish()
    }
}

impl GenerationalClientSessions {
    /// A cache of up to `size` servers' sessions.
    pub fn new(size: usize, generation: Generation) -> Self {
        let g = generation();
        GenerationalClientSessions {
            current: Mutex::new((g, Arc::new(ClientSessionMemoryCache::new(size)))),
            size,
            generation,
        }
    }

    fn cache(&self) -> Arc<ClientSessionMemoryCache> {
        let g = (self.generation)();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0 != g {
            *cur = (g, Arc::new(ClientSessionMemoryCache::new(self.size)));
        }
        cur.1.clone()
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
        self.cache().set_tls12_session(server_name, value)
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
        self.cache().insert_tls13_ticket(server_name, value)
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.cache().take_tls13_ticket(server_name)
    }
}
