//! What podtls' own handshake path shares on both sides
//! ([`ServerTls::accept`](crate::ServerTls::accept) in `server_tls.rs`,
//! [`ClientTls::connect`](crate::ClientTls::connect) in `client_tls.rs`): a
//! deadline for the whole handshake, and rejections reported with their
//! reason. (Each side also takes the configuration of the current generation,
//! see `session.rs`, and verifies the peer of every *resumed* handshake again
//! as a full handshake would verify it now.)
//!
//! Verifiers run inside rustls, which reduces a rejection to a TLS alert. The
//! handshake future therefore runs in a task-local scope into which the
//! verifiers record the typed [`VerifyError`]; the caller gets it back as
//! [`HandshakeError::Rejected`] and the server logs it (rate-limited) with
//! the peer's address.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::peer_verification::VerifyError;

/// The default deadline of a whole TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a handshake did not produce a usable connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The handshake did not complete within the deadline.
    #[error("TLS handshake did not complete within {0:?}")]
    TimedOut(Duration),
    /// The peer's certificate was rejected during a full handshake (the peer
    /// received the matching TLS alert).
    #[error("peer certificate rejected: {0}")]
    Rejected(Arc<VerifyError>),
    /// A resumed session's peer no longer verifies now (anchor retired, leaf
    /// expired, authorizer changed). The connection was closed and every
    /// cached session dropped: a new connection does a full handshake.
    #[error("resumed session refused, its peer no longer verifies: {0}")]
    ResumedPeerRejected(Arc<VerifyError>),
    /// Any other TLS or I/O failure.
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
}

impl HandshakeError {
    /// The verification failure, for the two rejection variants.
    pub fn rejection(&self) -> Option<&VerifyError> {
        match self {
            HandshakeError::Rejected(e) | HandshakeError::ResumedPeerRejected(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HandshakeError> for std::io::Error {
    fn from(e: HandshakeError) -> Self {
        let kind = match &e {
            HandshakeError::TimedOut(_) => std::io::ErrorKind::TimedOut,
            HandshakeError::Tls(io) => io.kind(),
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}

tokio::task_local! {
    /// The rejection a verifier recorded during the handshake being polled.
    static REJECTION: RefCell<Option<VerifyError>>;
}

/// Called by the verifiers: hands a rejection to podtls' handshake path, or,
/// outside it (an acceptor of the application's own), logs it.
pub(crate) fn record_rejection(error: &VerifyError) {
    let recorded = REJECTION
        .try_with(|slot| *slot.borrow_mut() = Some(error.clone()))
        .is_ok();
    if !recorded {
        log_rejection(None, error);
    }
}

/// Runs a handshake future with a deadline, collecting a verifier's typed
/// rejection.
pub(crate) async fn run<T>(
    deadline: Duration,
    handshake: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, HandshakeError> {
    REJECTION
        .scope(RefCell::new(None), async move {
            let outcome = tokio::time::timeout(deadline, handshake).await;
            let rejected = REJECTION.with(|slot| slot.borrow_mut().take());
            match (outcome, rejected) {
                (Err(_), _) => Err(HandshakeError::TimedOut(deadline)),
                (Ok(Ok(stream)), _) => Ok(stream),
                (Ok(Err(_)), Some(e)) => Err(HandshakeError::Rejected(Arc::new(e))),
                (Ok(Err(e)), None) => Err(HandshakeError::Tls(e)),
            }
        })
        .await
}

/// At most this many rejection warnings per [`LOG_WINDOW`]; the rest are
/// counted and reported with the next warning that is let through.
const LOG_BURST: u32 = 10;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// A fixed-window limit on log lines.
#[derive(Debug)]
pub(crate) struct LogLimit {
    /// (window start, lines in the window, lines suppressed since the last one logged)
    state: Mutex<Option<(Instant, u32, u64)>>,
}

impl LogLimit {
    pub(crate) const fn new() -> Self {
        LogLimit {
            state: Mutex::new(None),
        }
    }

    /// `Some(suppressed before this one)` if a line may be logged at `now`.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (start, lines, suppressed) = state.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= LOG_WINDOW {
            (*start, *lines) = (now, 0);
        }
        if *lines >= LOG_BURST {
            *suppressed += 1;
            return None;
        }
        *lines += 1;
        Some(std::mem::take(suppressed))
    }
}

static REJECTIONS: LogLimit = LogLimit::new();

/// Logs a rejected peer at warn, rate-limited: the reason, the peer's
/// address when known, its SPIFFE ID and serial when the error names them.
pub(crate) fn log_rejection(remote: Option<SocketAddr>, error: &VerifyError) {
    let Some(suppressed) = REJECTIONS.admit(Instant::now()) else {
        return;
    };
    let (id, serial) = match error {
        VerifyError::Chain { id, serial, .. } => (Some(id.as_str()), Some(serial.as_str())),
        VerifyError::DnsChain { serial, .. } | VerifyError::Extension { serial, .. } => {
            (None, Some(serial.as_str()))
        }
        VerifyError::Unauthorized(u) => (Some(u.id.as_str()), u.serial.as_deref()),
        _ => (None, None),
    };
    tracing::warn!(
        remote = remote.map(tracing::field::display),
        spiffe_id = id.map(tracing::field::display),
        serial = serial.map(tracing::field::display),
        suppressed,
        error = %error,
        "podtls: peer certificate rejected"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limit_admits_a_burst_per_window_and_counts_the_rest() {
        let limit = LogLimit::new();
        let t0 = Instant::now();
        for _ in 0..LOG_BURST {
            assert_eq!(limit.admit(t0), Some(0));
        }
        assert_eq!(limit.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.admit(t0 + Duration::from_secs(2)), None);
        assert_eq!(
            limit.admit(t0 + LOG_WINDOW),
            Some(2),
            "the next window reports what was suppressed"
        );
        assert_eq!(limit.admit(t0 + LOG_WINDOW), Some(0));
    }
}
