//! The CA pool file (projected from a Secret's `pool` key), hot-reloaded.
//!
//! One task owns the state: it re-reads the file when anything in its directory changes
//! (kubelet's atomic writer swaps the `..data` symlink, which shows up as events on the
//! volume directory, not on the file) and periodically in case an event was missed. A
//! re-read whose bytes hash (SHA-256) like the last one is a no-op. A pool that does not
//! parse, or a file that is gone, keeps the last good pool and records why; before the
//! first good load there is no pool and the controller is not ready (fails closed).
//!
//! This is the only module of the signer that touches the file system. (podtls has the
//! same machinery for PEM files in its private `watcher` module; a public
//! `podtls::watch_file(path, period) -> watch::Receiver<Arc<[u8]>>` would let this module
//! be replaced by a call.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, watch};

use crate::CaPool;

/// The default period of the safety-net re-read.
pub const DEFAULT_RELOAD_PERIOD: Duration = Duration::from_secs(30);

/// What is known about one pool file.
#[derive(Clone, Debug, Default)]
pub struct PoolState {
    /// The pool file.
    pub path: PathBuf,
    /// The last pool that parsed, if any.
    pub pool: Option<Arc<CaPool>>,
    /// SHA-256 of the bytes of `pool`.
    pub sha256: Option<[u8; 32]>,
    /// Why the last read did not produce a pool (the pool above, if any, is older).
    pub last_error: Option<String>,
    /// Incremented each time a new pool is published.
    pub generation: u64,
}

impl PoolState {
    /// A state with no pool yet.
    pub fn empty(path: impl Into<PathBuf>) -> PoolState {
        PoolState {
            path: path.into(),
            ..Default::default()
        }
    }

    /// A state holding `pool` (for tests and fixed configurations).
    pub fn fixed(path: impl Into<PathBuf>, pool: CaPool) -> PoolState {
        let sha = Sha256::digest(pool.to_json()).into();
        PoolState {
            path: path.into(),
            pool: Some(Arc::new(pool)),
            sha256: Some(sha),
            last_error: None,
            generation: 1,
        }
    }
}

/// Reads the file once and returns the next state: a new pool if the bytes changed and
/// parse, the same pool (and no error) if the bytes are unchanged, or the previous pool
/// with `last_error` set if the file is missing, unreadable or malformed.
pub fn reload(previous: &PoolState) -> PoolState {
    let path = &previous.path;
    let mut next = previous.clone();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            next.last_error = Some(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "CA pool file {} does not exist (is the Secret mounted?)",
                    path.display()
                )
            } else {
                format!("reading CA pool file {}: {e}", path.display())
            });
            return next;
        }
    };
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    if previous.sha256 == Some(sha) && previous.pool.is_some() {
        next.last_error = None;
        return next;
    }
    match CaPool::from_json(&bytes) {
        Ok(pool) => {
            next.pool = Some(Arc::new(pool));
            next.sha256 = Some(sha);
            next.last_error = None;
            next.generation += 1;
        }
        Err(e) => {
            next.last_error = Some(format!("CA pool file {}: {e}", path.display()));
        }
    }
    next
}

/// Loads the pool once and starts the task that keeps it current. The returned receiver
/// always holds the latest state; the task ends when every receiver is dropped.
pub fn spawn(path: &Path, period: Duration) -> watch::Receiver<PoolState> {
    let first = reload(&PoolState::empty(path));
    log_state(&PoolState::empty(path), &first);
    let (tx, rx) = watch::channel(first);
    let (event_tx, mut event_rx) = mpsc::unbounded_channel::<()>();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        let _ = event_tx.send(());
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot watch the CA pool directory; relying on the periodic re-read");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tick.tick() => {}
                Some(()) = event_rx.recv() => {
                    // Let the writer finish its swap; coalesce the burst of events.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while event_rx.try_recv().is_ok() {}
                }
            }
            let previous = tx.borrow().clone();
            let next = tokio::task::spawn_blocking(move || {
                let next = reload(&previous);
                log_state(&previous, &next);
                next
            })
            .await;
            if let Ok(next) = next {
                tx.send_if_modified(|state| {
                    let changed =
                        state.generation != next.generation || state.last_error != next.last_error;
                    *state = next;
                    changed
                });
            }
        }
    });
    rx
}

fn log_state(previous: &PoolState, next: &PoolState) {
    let path = next.path.display();
    if next.generation != previous.generation {
        if let Some(pool) = &next.pool {
            tracing::info!(%path, cas = pool.cas().len(), signing_ca = %pool.signing_ca().id(), generation = next.generation, "loaded CA pool");
        }
    }
    if let Some(error) = &next.last_error {
        if previous.last_error.as_ref() != Some(error) {
            if next.pool.is_some() {
                tracing::error!(%path, %error, "CA pool not reloaded; keeping the last good pool");
            } else {
                tracing::error!(%path, %error, "no CA pool loaded; the signer is not ready");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime};

    use super::*;
    use crate::{generate_ca, KeyType};

    fn pool(id: &str) -> CaPool {
        let ca = generate_ca(
            id,
            KeyType::Ed25519,
            SystemTime::now(),
            Duration::from_secs(86_400 * 30),
        )
        .unwrap();
        CaPool::single(ca)
    }

    #[test]
    fn missing_file_is_an_error_naming_the_file_and_no_pool() {
        let dir = tempfile::tempdir().unwrap();
        let state = reload(&PoolState::empty(dir.path().join("pool")));
        assert!(state.pool.is_none());
        let error = state.last_error.unwrap();
        assert!(
            error.contains("does not exist") && error.contains("pool"),
            "{error}"
        );
    }

    #[test]
    fn keeps_last_good_pool_when_new_one_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let json = pool("a").to_json();
        std::fs::write(&path, &json).unwrap();
        let good = reload(&PoolState::empty(&path));
        assert_eq!(good.generation, 1);
        assert!(good.last_error.is_none());

        std::fs::write(&path, &json[..json.len() / 2]).unwrap();
        let bad = reload(&good);
        assert_eq!(bad.generation, 1);
        assert_eq!(bad.pool.as_ref().unwrap().signing_ca().id(), "a");
        assert!(bad.last_error.unwrap().contains("not valid pool JSON"));
    }

    #[test]
    fn unchanged_bytes_are_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        std::fs::write(&path, pool("a").to_json()).unwrap();
        let first = reload(&PoolState::empty(&path));
        let second = reload(&first);
        assert_eq!(second.generation, first.generation);
        assert!(Arc::ptr_eq(
            first.pool.as_ref().unwrap(),
            second.pool.as_ref().unwrap()
        ));
    }

    /// Lays out a volume like kubelet's atomic writer: `pool -> ..data/pool`,
    /// `..data -> ..<ts>`; an update writes a new timestamped dir and renames a new
    /// `..data_tmp` symlink over `..data`.
    #[cfg(unix)]
    fn kubelet_write(dir: &Path, generation: u32, bytes: &[u8]) {
        use std::os::unix::fs::symlink;
        let ts = format!("..2026_01_01_00_00_{generation:02}.000");
        std::fs::create_dir(dir.join(&ts)).unwrap();
        std::fs::write(dir.join(&ts).join("pool"), bytes).unwrap();
        let tmp = dir.join("..data_tmp");
        symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        if std::fs::symlink_metadata(dir.join("pool")).is_err() {
            symlink("..data/pool", dir.join("pool")).unwrap();
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn reloads_after_kubelet_swaps_the_data_symlink() {
        let dir = tempfile::tempdir().unwrap();
        kubelet_write(dir.path(), 1, &pool("a").to_json());
        // A long period: only the directory event can trigger the reload in time.
        let mut rx = spawn(&dir.path().join("pool"), Duration::from_secs(3600));
        assert_eq!(rx.borrow().pool.as_ref().unwrap().signing_ca().id(), "a");
        kubelet_write(dir.path(), 2, &pool("b").to_json());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if rx.borrow().pool.as_ref().unwrap().signing_ca().id() == "b" {
                break;
            }
            assert!(Instant::now() < deadline, "pool b not loaded");
            let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        }
        assert_eq!(rx.borrow().generation, 2);
    }
}
