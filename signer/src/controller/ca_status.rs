//! What the controller tells operators about its CA pools: on every pool (re)load the
//! `ca_pool_loaded` and per-CA `ca_not_after_seconds` metrics, and a warning when the
//! signing CA expires within `--ca-expiry-warning` (default 30 days), logged when it
//! first applies and then once an hour while it does (checked every minute, so it also
//! starts without a reload), not on every reload.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::metrics::Metrics;
use super::pool_watch::PoolState;
use crate::{CaExpiry, CaPool};

/// The default expiry warning window: 30 days, enough to add a CA, let it reach every
/// trust bundle, promote it and let the old CA's certificates (24 h) expire, with room
/// for weekends.
pub const DEFAULT_CA_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often a standing expiry warning is repeated.
pub const EXPIRY_RELOG_PERIOD: Duration = Duration::from_secs(3600);
/// How often the expiry is evaluated without a pool change.
const CHECK_PERIOD: Duration = Duration::from_secs(60);

/// When to log the expiry warning: when it starts applying (or names another CA) and
/// then every [`EXPIRY_RELOG_PERIOD`]. Pure: the caller passes the monotonic `now`.
#[derive(Debug, Default)]
pub struct ExpiryLog {
    last: Option<(String, Instant)>,
}

impl ExpiryLog {
    /// Whether `warning` (the current evaluation) should be logged now.
    pub fn should_log(&mut self, warning: Option<&CaExpiry>, now: Instant) -> bool {
        let Some(warning) = warning else {
            self.last = None;
            return false;
        };
        let due = match &self.last {
            Some((id, at)) => {
                *id != warning.ca_id || now.duration_since(*at) >= EXPIRY_RELOG_PERIOD
            }
            None => true,
        };
        if due {
            self.last = Some((warning.ca_id.clone(), now));
        }
        due
    }
}

/// Updates `signer`'s metrics from `pool`.
pub fn record(metrics: &Metrics, signer: &str, pool: Option<&CaPool>) {
    metrics.pool_loaded(signer, pool.is_some());
    if let Some(pool) = pool {
        let signing = pool.signing_ca().id();
        let cas: Vec<_> = pool
            .cas()
            .iter()
            .map(|c| (c.id().to_string(), c.not_after(), c.id() == signing))
            .collect();
        metrics.ca_pool(signer, &cas);
    }
}

fn log(signer: &str, warning: &CaExpiry) {
    let at = crate::error::rfc3339(warning.not_after);
    match warning.remaining {
        Some(left) => {
            let left = humantime::format_duration(Duration::from_secs(left.as_secs() / 60 * 60));
            tracing::warn!(%signer, ca_id = %warning.ca_id, not_after = %at, "signing CA {} of {signer} expires at {at} (in {left}); add and promote a new CA (signer ca add / promote)", warning.ca_id);
        }
        None => {
            tracing::error!(%signer, ca_id = %warning.ca_id, not_after = %at, "signing CA {} of {signer} expired at {at}: nothing can be issued; add and promote a new CA (signer ca add / promote)", warning.ca_id);
        }
    }
}

/// Keeps `signer`'s CA metrics and expiry warning current until the pool watch ends.
pub async fn watch_loop(
    signer: String,
    mut pool: watch::Receiver<PoolState>,
    metrics: Arc<Metrics>,
    warning_window: Duration,
) {
    let mut expiry = ExpiryLog::default();
    loop {
        let current = pool.borrow_and_update().pool.clone();
        record(&metrics, &signer, current.as_deref());
        let warning = current
            .as_deref()
            .and_then(|p| p.signing_ca_expiry(SystemTime::now(), warning_window));
        if expiry.should_log(warning.as_ref(), Instant::now()) {
            if let Some(w) = &warning {
                log(&signer, w);
            }
        }
        tokio::select! {
            changed = pool.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(CHECK_PERIOD) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(id: &str) -> CaExpiry {
        CaExpiry {
            ca_id: id.into(),
            not_after: SystemTime::UNIX_EPOCH,
            remaining: Some(Duration::from_secs(3600)),
        }
    }

    #[test]
    fn warns_once_then_hourly_and_again_for_another_ca() {
        let t = Instant::now();
        let mut log = ExpiryLog::default();
        assert!(!log.should_log(None, t));
        assert!(log.should_log(Some(&warning("1")), t));
        // Reloads and minute checks within the hour stay quiet.
        assert!(!log.should_log(Some(&warning("1")), t + Duration::from_secs(60)));
        assert!(!log.should_log(Some(&warning("1")), t + Duration::from_secs(3599)));
        assert!(log.should_log(Some(&warning("1")), t + EXPIRY_RELOG_PERIOD));
        // A promotion to another CA that expires soon too is news.
        assert!(log.should_log(
            Some(&warning("2")),
            t + EXPIRY_RELOG_PERIOD + Duration::from_secs(1)
        ));
        // Once it no longer applies, the next warning is logged at once.
        assert!(!log.should_log(None, t + 2 * EXPIRY_RELOG_PERIOD));
        assert!(log.should_log(
            Some(&warning("2")),
            t + 2 * EXPIRY_RELOG_PERIOD + Duration::from_secs(1)
        ));
    }

    #[test]
    fn records_every_ca_of_the_pool() {
        let m = Metrics::new();
        let ca = crate::generate_ca(
            "x",
            crate::KeyType::Ed25519,
            SystemTime::now(),
            Duration::from_secs(86_400),
        )
        .unwrap();
        let not_after = ca.not_after();
        record(&m, "s", Some(&CaPool::single(ca)));
        let secs = not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let text = m.encode();
        assert!(
            text.contains(&format!(
                r#"podtls_signer_ca_not_after_seconds{{signer="s",ca_id="x",signing="true"}} {secs}"#
            )),
            "{text}"
        );
        assert!(
            text.contains(r#"podtls_signer_ca_pool_loaded{signer="s"} 1"#),
            "{text}"
        );
    }
}
