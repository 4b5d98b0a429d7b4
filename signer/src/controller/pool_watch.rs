//! The CA pool file (projected from a Secret's `pool` key), hot-reloaded with podtls'
//! file watcher ([`podtls::reload::FileWatch`]): the same machinery that reloads pod
//! credentials, so kubelet's `..data` swap, a replaced directory, a missed event (the
//! periodic re-read) and a half-written file (a second look before an error is
//! reported) are handled once, in one place. An unchanged file is a no-op; a pool that
//! does not parse, or a file that is gone, keeps the last good pool and records why;
//! before the first good load there is no pool and the controller is not ready (fails
//! closed).
//!
//! This module adapts the watched store to what the controller reads: a
//! `watch::Receiver<PoolState>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use podtls::{reload::FileWatch, reload::Material, reload::ReloadTiming, reload::Summary, Store};
use tokio::sync::watch;

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
        PoolState {
            path: path.into(),
            pool: Some(Arc::new(pool)),
            last_error: None,
            generation: 1,
        }
    }

    /// The state of a watched store.
    fn of(path: &Path, store: &Store<CaPool>) -> PoolState {
        let status = store.status();
        PoolState {
            path: path.to_path_buf(),
            pool: store.current(),
            last_error: status.last_error.map(|e| e.to_string()),
            generation: status.generation,
        }
    }
}

impl Material for CaPool {
    fn summary(&self) -> Summary {
        Summary::Other(format!(
            "CA pool with {} CA(s), signing with {}",
            self.cas().len(),
            self.signing_ca().id()
        ))
    }
}

/// Loads the pool once and starts watching it; the returned receiver always holds the
/// latest state, and the watch stops when every receiver is dropped.
///
/// # Errors
/// [`podtls::Error::Watch`] when the reload thread cannot be spawned (a watcher that cannot be
/// created falls back to polling; a missing or malformed file shows in [`PoolState::last_error`]).
pub fn spawn(path: &Path, period: Duration) -> Result<watch::Receiver<PoolState>, podtls::Error> {
    let timing = ReloadTiming {
        poll_interval: period,
        ..ReloadTiming::default()
    };
    let file = FileWatch::start(
        format!("CA pool {}", path.display()),
        path,
        timing,
        |bytes: &[u8]| CaPool::from_json(bytes),
    )?;
    let path = path.to_path_buf();
    let (tx, rx) = watch::channel(PoolState::of(&path, file.store()));
    let mut changes = file.store().subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            let next = PoolState::of(&path, file.store());
            tx.send_if_modified(|state| {
                let changed =
                    state.generation != next.generation || state.last_error != next.last_error;
                *state = next;
                changed
            });
        }
    });
    Ok(rx)
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

    /// Waits (up to 10 s) until the state satisfies `ok`.
    async fn wait_state(
        rx: &mut watch::Receiver<PoolState>,
        what: &str,
        ok: impl Fn(&PoolState) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok(&rx.borrow()) {
            assert!(Instant::now() < deadline, "{what}: {:?}", rx.borrow());
            let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        }
    }

    #[tokio::test]
    async fn missing_file_is_an_error_naming_the_file_and_no_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let rx = spawn(&path, Duration::from_secs(3600)).unwrap();
        let state = rx.borrow().clone();
        assert!(state.pool.is_none());
        let error = state.last_error.unwrap();
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    #[tokio::test]
    async fn keeps_last_good_pool_when_new_one_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let json = pool("a").to_json();
        std::fs::write(&path, &json).unwrap();
        let mut rx = spawn(&path, Duration::from_secs(3600)).unwrap();
        assert_eq!(rx.borrow().generation, 1);
        assert!(rx.borrow().last_error.is_none());

        std::fs::write(&path, &json[..json.len() / 2]).unwrap();
        wait_state(&mut rx, "truncated pool rejected", |s| {
            s.last_error.is_some()
        })
        .await;
        let bad = rx.borrow().clone();
        assert_eq!(bad.generation, 1);
        assert_eq!(bad.pool.as_ref().unwrap().signing_ca().id(), "a");
        let error = bad.last_error.unwrap();
        assert!(
            error.contains("not valid pool JSON") && error.contains(&path.display().to_string()),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_fixed_pool_file_becomes_ready_when_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool");
        let mut rx = spawn(&path, Duration::from_secs(3600)).unwrap();
        assert!(rx.borrow().pool.is_none());
        std::fs::write(&path, pool("late").to_json()).unwrap();
        wait_state(&mut rx, "pool appeared", |s| s.pool.is_some()).await;
        assert_eq!(rx.borrow().pool.as_ref().unwrap().signing_ca().id(), "late");
        assert!(rx.borrow().last_error.is_none());
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
        let mut rx = spawn(&dir.path().join("pool"), Duration::from_secs(3600)).unwrap();
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
