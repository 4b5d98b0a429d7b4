//! A tokio accept loop for TLS servers.
//!
//! Every accepted TCP connection gets its own task for the handshake, so one
//! slow or silent client never blocks the loop; handshakes have a deadline;
//! handshake failures are counted and logged, never fatal; resource
//! exhaustion on `accept` (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) backs off
//! and keeps accepting; shutdown stops accepting and drains connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use crate::config::ServerTls;
use crate::handshake::{log_rejection, HandshakeError};
use crate::verify::PeerAuth;

/// A connection whose handshake completed.
#[derive(Debug)]
pub struct Accepted {
    /// The TLS stream.
    pub stream: TlsStream<TcpStream>,
    /// Who the client is (see [`ServerTls::peer_auth`]).
    pub peer: PeerAuth,
    /// The client's address.
    pub remote: SocketAddr,
}

/// Counters of an accept loop, shared with whoever exports metrics.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// TCP connections accepted.
    pub accepted: AtomicU64,
    /// Handshakes completed.
    pub handshakes: AtomicU64,
    /// Handshakes that failed (including bad client certificates).
    pub handshake_failures: AtomicU64,
    /// Handshakes that hit the deadline.
    pub handshake_timeouts: AtomicU64,
    /// `accept` errors (including resource exhaustion).
    pub accept_errors: AtomicU64,
    /// Connections currently open.
    pub active: AtomicU64,
}

/// Options of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Deadline for the TLS handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// Maximum simultaneous connections; further connections wait in the
    /// kernel's backlog (default 10 000).
    pub max_connections: usize,
    /// After shutdown, how long connections may take to finish before they
    /// are aborted (default 30 s).
    pub drain_timeout: Duration,
    /// Counters.
    pub stats: Arc<ServeStats>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(30),
            stats: Arc::default(),
        }
    }
}

/// Accepts TLS connections on `listener` until `shutdown` completes, calling
/// `handler` (in its own task) for each completed handshake. Returns once
/// shutdown was requested and every handler finished (or the drain timeout
/// passed). Handlers that should end early on shutdown must watch for it
/// themselves (the [`crate::http`] helpers do).
pub async fn serve<H, Fut>(
    listener: TcpListener,
    tls: ServerTls,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
    handler: H,
) where
    H: Fn(Accepted) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let tls = Arc::new(tls.with_handshake_timeout(options.handshake_timeout));
    let limit = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let stats = options.stats.clone();
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(5);
                    a
                }
                Err(e) => {
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    if is_resource_exhaustion(&e) {
                        tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64,
                            "podtls: accept failed for lack of resources; backing off");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    } else {
                        tracing::debug!(error = %e, "podtls: accept failed");
                    }
                    continue;
                }
            },
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        let stats = stats.clone();
        tasks.spawn(async move {
            let _permit = permit;
            stats.active.fetch_add(1, Ordering::Relaxed);
            let _active = ActiveGuard(&stats);
            match tls.accept(tcp).await {
                Ok((stream, peer)) => {
                    stats.handshakes.fetch_add(1, Ordering::Relaxed);
                    handler(Accepted {
                        stream,
                        peer,
                        remote,
                    })
                    .await;
                }
                Err(HandshakeError::TimedOut(_)) => {
                    stats.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, "podtls: TLS handshake timed out");
                }
                Err(e) => {
                    stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    match e.rejection() {
                        Some(rejection) => log_rejection(Some(remote), rejection),
                        None => {
                            tracing::debug!(%remote, error = %e, "podtls: TLS handshake failed")
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(options.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = tasks.len(),
            "podtls: drain timeout passed; aborting connections"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

struct ActiveGuard<'a>(&'a ServeStats);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux.
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}
