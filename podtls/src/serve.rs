//! A tokio accept loop for TLS servers.
//!
//! Every accepted TCP connection gets its own task for the handshake, so one
//! slow or silent client never blocks the loop; handshakes have a deadline;
//! handshake failures are counted and logged, never fatal; resource
//! exhaustion on `accept` (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) backs off
//! and keeps accepting; shutdown stops accepting and drains connections.
//!
//! Connections do not outlive their credentials: each one gets a
//! [`ConnectionDeadline`] (its maximum age, jittered, or the expiry of the
//! client certificate it authenticated with, whichever is first). At the
//! deadline the handler is expected to close gracefully; `drain_timeout`
//! later it is aborted.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::conn_age::{close_deadline, jitter_sample, CloseReason, ConnectionDeadline};
use crate::handshake::{log_rejection, HandshakeError};
use crate::peer_verification::PeerAuth;
use crate::server_tls::ServerTls;

/// A connection whose handshake completed.
#[derive(Debug)]
pub struct Accepted {
    /// The TLS stream.
    pub stream: TlsStream<TcpStream>,
    /// Who the client is (see [`ServerTls::peer_auth`]).
    pub peer: PeerAuth,
    /// The client's address.
    pub remote: SocketAddr,
    /// When the connection must close: the handler should finish (closing
    /// gracefully, e.g. with a TLS `close_notify`) by `deadline.at`; at
    /// `deadline.at + drain_timeout` [`serve`] drops the handler's future,
    /// which closes the connection (see [`ServeOptions::max_connection_age`]).
    pub deadline: ConnectionDeadline,
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
    /// Connections still open at their maximum age (asked to close).
    pub closed_max_age: AtomicU64,
    /// Connections still open when the client certificate they authenticated
    /// with expired (asked to close).
    pub closed_peer_expired: AtomicU64,
    /// HTTP/2 connections closed because no stream was open for the idle
    /// timeout (or no first request arrived in time; see
    /// [`crate::http::HttpOptions`]).
    pub closed_idle: AtomicU64,
    /// HTTP/1.1 connections closed because a request head did not arrive
    /// within `header_read_timeout` (silent, slow or idle keep-alive clients).
    pub header_timeouts: AtomicU64,
    /// Connections aborted because they had not finished when a drain
    /// deadline passed (after their deadline, an idle close or shutdown).
    pub drain_aborted: AtomicU64,
}

/// Options of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Deadline for the TLS handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// Maximum simultaneous connections; further connections wait in the
    /// kernel's backlog (default 10 000).
    pub max_connections: usize,
    /// After shutdown, or after a connection's [`ConnectionDeadline`], how
    /// long connections may take to finish before they are aborted
    /// (default 30 s).
    pub drain_timeout: Duration,
    /// Maximum age of a connection, counted from the TCP accept (default
    /// 1 h). Connections still open then are asked to close gracefully
    /// (HTTP/2 GOAWAY, HTTP/1.1 `Connection: close`) and aborted
    /// `drain_timeout` later. This bounds how long a connection can outlive
    /// a rotation of the server's certificate or trust bundles, a revoked
    /// authorization, or a peer that holds a connection open. A connection
    /// whose client certificate expires earlier closes at the expiry
    /// instead. `Duration::MAX` disables the age limit (not recommended).
    pub max_connection_age: Duration,
    /// Fraction of `max_connection_age` by which each connection's age is
    /// randomly shortened, so connections opened together do not all close
    /// and reconnect together (default 0.1: ages between 54 and 60 minutes).
    /// Clamped to `[0, 1]`.
    pub connection_age_jitter: f64,
    /// Counters.
    pub stats: Arc<ServeStats>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(3600),
            connection_age_jitter: 0.1,
            stats: Arc::default(),
        }
    }
}

/// Accepts TLS connections on `listener` until `shutdown` completes, calling
/// `handler` (in its own task) for each completed handshake. Returns once
/// shutdown was requested and every handler finished (or the drain timeout
/// passed). Handlers that should end early on shutdown must watch for it
/// themselves (the [`crate::http`] helpers do).
///
/// Each handler is given [`Accepted::deadline`] and should return by then
/// (`tokio::select!` on [`ConnectionDeadline::reached`]). If it is still
/// running `drain_timeout` after the deadline, its future is dropped, which
/// drops the connection, and [`ServeStats::drain_aborted`] counts it.
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
        let accepted_at = Instant::now();
        let _ = tcp.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        let stats = stats.clone();
        let lifetime = Lifetime::of(&options, accepted_at);
        tasks.spawn(async move {
            let _permit = permit;
            stats.active.fetch_add(1, Ordering::Relaxed);
            let _active = ActiveGuard(&stats);
            let accepted = match tls.accept(tcp).await {
                Ok((stream, peer)) => {
                    stats.handshakes.fetch_add(1, Ordering::Relaxed);
                    Accepted {
                        stream,
                        peer,
                        remote,
                        deadline: lifetime.unset(),
                    }
                }
                Err(HandshakeError::TimedOut(_)) => {
                    stats.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, "podtls: TLS handshake timed out");
                    return;
                }
                Err(e) => {
                    stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    match e.rejection() {
                        Some(rejection) => log_rejection(Some(remote), rejection),
                        None => {
                            tracing::debug!(%remote, error = %e, "podtls: TLS handshake failed")
                        }
                    }
                    return;
                }
            };
            lifetime.run(accepted, &*handler, &stats).await;
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
        stats
            .drain_aborted
            .fetch_add(tasks.len() as u64, Ordering::Relaxed);
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// The deadline policy of one connection, decided after its handshake.
struct Lifetime {
    accepted_at: Instant,
    max_age: Duration,
    jitter: f64,
    drain: Duration,
}

impl Lifetime {
    fn of(options: &ServeOptions, accepted_at: Instant) -> Self {
        Lifetime {
            accepted_at,
            max_age: options.max_connection_age,
            jitter: options.connection_age_jitter,
            drain: options.drain_timeout,
        }
    }

    /// A placeholder until [`Lifetime::run`] sets the real deadline.
    fn unset(&self) -> ConnectionDeadline {
        ConnectionDeadline {
            at: self.accepted_at,
            reason: CloseReason::MaxAge,
        }
    }

    /// Sets the connection's deadline and runs `handler` on it: when the
    /// deadline passes, the close is counted; `drain` later the handler is
    /// dropped (aborting the connection) if it has not finished.
    async fn run<H, Fut>(self, mut accepted: Accepted, handler: &H, stats: &ServeStats)
    where
        H: Fn(Accepted) -> Fut,
        Fut: Future<Output = ()>,
    {
        let wall_now = SystemTime::now();
        let remote = accepted.remote;
        let deadline = close_deadline(
            self.accepted_at,
            self.max_age,
            self.jitter,
            jitter_sample(remote, wall_now),
            accepted.peer.identity().map(|id| id.certificate.not_after),
            Instant::now(),
            wall_now,
        );
        accepted.deadline = deadline;
        let conn = handler(accepted);
        tokio::pin!(conn);
        let finished = tokio::select! {
            _ = conn.as_mut() => true,
            _ = deadline.reached() => false,
        };
        // A handler that saw the deadline first (it shares the timer) and
        // closed at once finishes at the deadline: it counts too.
        if finished && Instant::now() < deadline.at {
            return;
        }
        match deadline.reason {
            CloseReason::MaxAge => &stats.closed_max_age,
            CloseReason::PeerExpired => &stats.closed_peer_expired,
        }
        .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%remote, reason = ?deadline.reason, "podtls: connection deadline reached; closing");
        if finished {
            return;
        }
        if tokio::time::timeout(self.drain, conn).await.is_err() {
            stats.drain_aborted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote, reason = ?deadline.reason,
                "podtls: connection did not close within the drain timeout; aborted");
        }
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
