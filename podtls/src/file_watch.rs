//! Hot reload for material of the application's own kind kept in one file
//! (for example a signer's CA pool projected from a Secret), with exactly the
//! machinery podtls uses for credentials and bundles: a watch on the file's
//! directory (and the kubelet volume root above it, re-armed if replaced), a
//! periodic re-read, content hashing, a second look after a failed read that
//! followed a file event, last good kept, fail closed before the first load.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Origin};
use crate::store::{Material, Store};
use crate::watcher::{FileSource, ReloadTiming, Reloader};

/// A [`Store`] fed from one file by a caller-supplied parser; dropping it
/// stops the watch (the store keeps its last material).
pub struct FileWatch<T> {
    store: Store<T>,
    reloader: Reloader,
}

impl<T> std::fmt::Debug for FileWatch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch")
            .field("store", &self.store)
            .finish()
    }
}

impl<T: Material> FileWatch<T> {
    /// Loads `path` once (synchronously) and starts watching it. `parse` gets
    /// the file's bytes; what it rejects is reported as [`Error::Rejected`]
    /// naming the file, and the previous material stays.
    ///
    /// # Errors
    /// [`Error::Watch`] when the reload thread cannot be spawned. A missing
    /// or invalid file is not an error here: it shows in [`Store::status`] and
    /// the store stays empty (fail closed) until a good version appears.
    /// Neither is a file watcher that cannot be created (inotify limits): the
    /// periodic re-read carries on and `Status::watch_error` says why.
    pub fn start<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        name: impl Into<Arc<str>>,
        path: impl Into<PathBuf>,
        timing: ReloadTiming,
        parse: impl Fn(&[u8]) -> Result<T, E> + Send + 'static,
    ) -> Result<FileWatch<T>, Error> {
        let path = path.into();
        let store = Store::empty(name);
        let origin = Origin::file(&path);
        let source = FileSource::new(store.clone(), vec![path], move |files, _now| {
            parse(&files[0]).map_err(|e| Error::Rejected {
                origin: origin.clone(),
                source: e.into(),
            })
        });
        let reloader = Reloader::start(vec![Box::new(source)], timing)?;
        Ok(FileWatch { store, reloader })
    }

    /// The live store.
    pub fn store(&self) -> &Store<T> {
        &self.store
    }

    /// Re-reads the file now, as a periodic tick would.
    pub fn reload_now(&self) {
        self.reloader.reload_now();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::Summary;

    #[derive(Debug, PartialEq)]
    struct Number(u32);

    impl Material for Number {
        fn summary(&self) -> Summary {
            Summary::Other(format!("number {}", self.0))
        }
    }

    fn parse(bytes: &[u8]) -> Result<Number, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        text.trim()
            .parse()
            .map(Number)
            .map_err(|e| format!("not a number: {e}"))
    }

    fn timing() -> ReloadTiming {
        ReloadTiming {
            poll_interval: Duration::from_secs(3600),
            settle: Duration::from_millis(50),
            ..ReloadTiming::default()
        }
    }

    fn wait_for(store: &Store<Number>, what: &str, ok: impl Fn(&crate::reload::Status) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok(&store.status()) {
            assert!(Instant::now() < deadline, "{what}: {:?}", store.status());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn loads_reloads_and_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let w = FileWatch::start("number", &path, timing(), parse).unwrap();
        assert_eq!(*w.store().current().unwrap(), Number(1));

        std::fs::write(&path, "2").unwrap();
        wait_for(w.store(), "reloaded", |s| s.generation == 2);
        assert_eq!(*w.store().current().unwrap(), Number(2));

        std::fs::write(&path, "two").unwrap();
        wait_for(w.store(), "rejected", |s| s.last_error.is_some());
        let error = w.store().status().last_error.unwrap().to_string();
        assert!(
            error.contains(&path.display().to_string()) && error.contains("not a number"),
            "{error}"
        );
        assert_eq!(*w.store().current().unwrap(), Number(2), "last good kept");
    }

    #[test]
    fn missing_file_fails_closed_until_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        let w = FileWatch::start("number", &path, timing(), parse).unwrap();
        assert!(w.store().current().is_none());
        assert!(w.store().status().last_error.is_some());
        std::fs::write(&path, "7").unwrap();
        wait_for(w.store(), "appeared", |s| s.generation == 1);
        assert_eq!(*w.store().current().unwrap(), Number(7));
    }
}
