//! The one module that touches the file system: reads sources, watches their
//! directories, and publishes validated material into [`Store`]s.
//!
//! Kubelet writes projected volumes with its atomic writer: a new
//! `..<timestamp>/` directory, a `..data_tmp` symlink renamed over `..data`,
//! user files being symlinks into `..data`. Watching a file's inode misses
//! those swaps, so we watch each source's *parent directory* (non-recursively)
//! and react to any change in it. A periodic re-read covers what inotify can
//! miss (queue overflow, network file systems, a directory that does not exist
//! yet), and re-arms a watch when the directory itself was replaced.
//!
//! Every read is hashed: an unchanged source is a no-op. A failed read is
//! retried once after a short settle delay before it is reported, so a
//! non-atomic writer (truncate, then write) does not flap the status; the
//! last good material is kept either way.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::store::{Health, Material, Store, Summary};

mod read;

/// Timing knobs of the reloader.
#[derive(Debug, Clone, Copy)]
pub struct ReloadTiming {
    /// Re-read every source this often even without file events.
    pub poll_interval: Duration,
    /// After a failed read triggered by a file event, wait this long and read
    /// again before reporting the error.
    pub settle: Duration,
    /// Warn when a certificate has used this fraction of its lifetime.
    pub renewal_warning_fraction: f64,
    /// Refuse a source file larger than this many bytes
    /// ([`Error::TooLarge`](crate::Error::TooLarge)); at most one byte more
    /// than this is ever read. Default 4 MiB, far above any PEM bundle.
    pub max_file_size: u64,
}

const DEFAULT_MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;

impl Default for ReloadTiming {
    fn default() -> Self {
        ReloadTiming {
            poll_interval: Duration::from_secs(30),
            settle: Duration::from_millis(100),
            renewal_warning_fraction: 0.8,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

type Parse<T> = Box<dyn Fn(&[Vec<u8>], SystemTime) -> Result<T, Error> + Send>;

/// A store fed from one or more files read together.
pub(crate) struct FileSource<T> {
    store: Store<T>,
    paths: Vec<PathBuf>,
    parse: Parse<T>,
    last_hash: Option<[u8; 32]>,
    /// Whether `last_hash` was parsed successfully (a failed parse of the
    /// same bytes is retried: a not-yet-valid certificate becomes valid).
    last_ok: bool,
    pending_error_until: Option<Instant>,
}

impl<T: Material> FileSource<T> {
    pub(crate) fn new(
        store: Store<T>,
        paths: Vec<PathBuf>,
        parse: impl Fn(&[Vec<u8>], SystemTime) -> Result<T, Error> + Send + 'static,
    ) -> Self {
        FileSource {
            store,
            paths,
            parse: Box::new(parse),
            last_hash: None,
            last_ok: false,
            pending_error_until: None,
        }
    }
}

/// Object-safe view of a [`FileSource`] for the reload loop.
pub(crate) trait Reload: Send {
    fn paths(&self) -> &[PathBuf];
    /// Reads (refusing files over `max_file_size` bytes) and, if changed and
    /// valid, publishes. Errors are returned, not reported.
    fn reload(&mut self, now: SystemTime, max_file_size: u64) -> Result<(), Error>;
    fn report(&mut self, error: Error, now: SystemTime);
    fn pending_until(&mut self) -> &mut Option<Instant>;
    fn check_health(&mut self, now: SystemTime, warn_at: f64);
    /// Records why file events are not received for this source (`None`: they are).
    fn set_watch_error(&mut self, error: Option<Error>);
}

impl<T: Material> Reload for FileSource<T> {
    fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    fn reload(&mut self, now: SystemTime, max_file_size: u64) -> Result<(), Error> {
        let contents = read::read_consistent(&self.paths, max_file_size)?;
        let hash = hash_contents(&contents);
        if self.last_ok && self.last_hash == Some(hash) {
            return Ok(());
        }
        self.last_hash = Some(hash);
        self.last_ok = false;
        // A panic in a parser (the application's, for `FileWatch`) or in
        // `Material::summary` must not kill the reload thread while the
        // status still reads healthy: it becomes a failed load like any other.
        // Nothing is published before both have returned.
        let parse = &self.parse;
        let store = &self.store;
        let published = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let value = parse(&contents, now)?;
            let summary = value.summary();
            store.publish(value, now);
            Ok::<_, Error>(summary)
        }))
        .unwrap_or_else(|payload| {
            Err(Error::ParserPanicked {
                what: self.store.status().name.to_string(),
                files: self
                    .paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                message: panic_message(payload.as_ref()),
            })
        });
        let summary = published?;
        self.last_ok = true;
        log_published(&self.store.status().name, &summary);
        Ok(())
    }

    fn report(&mut self, error: Error, now: SystemTime) {
        let status = self.store.status();
        tracing::error!(
            source = %status.name,
            %error,
            serving_previous = status.is_ready(),
            "podtls: reload failed; keeping the last good material"
        );
        self.store.fail(error, now);
    }

    fn pending_until(&mut self) -> &mut Option<Instant> {
        &mut self.pending_error_until
    }

    fn set_watch_error(&mut self, error: Option<Error>) {
        self.store.set_watch_error(error);
    }

    fn check_health(&mut self, now: SystemTime, warn_at: f64) {
        let status = self.store.status();
        let Some(Summary::Certificate(info)) = &status.summary else {
            return;
        };
        let health = if now > info.not_after {
            Health::Expired
        } else if info.elapsed_fraction(now) >= warn_at {
            Health::RenewalOverdue
        } else {
            Health::Ok
        };
        if self.store.set_health(health) {
            match health {
                Health::Expired => tracing::error!(
                    source = %status.name, serial = %info.serial,
                    not_after = %crate::cert_info::format_time(info.not_after),
                    "podtls: certificate expired and no replacement was written"
                ),
                Health::RenewalOverdue => tracing::warn!(
                    source = %status.name, serial = %info.serial,
                    not_after = %crate::cert_info::format_time(info.not_after),
                    "podtls: certificate past {:.0}% of its lifetime and not yet replaced",
                    warn_at * 100.0
                ),
                _ => {}
            }
        }
    }
}

/// The message of a panic, when its payload is a string (`panic!` with a
/// literal gives a `&str`, with arguments a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message: the panic payload is not a string)".to_string()
    }
}

fn log_published(name: &str, summary: &Summary) {
    match summary {
        Summary::Certificate(info) => tracing::info!(
            source = %name,
            serial = %info.serial,
            not_after = %crate::cert_info::format_time(info.not_after),
            spiffe_id = info.spiffe_id.as_ref().map(|i| i.to_string()).unwrap_or_default(),
            dns_names = ?info.dns_names,
            "podtls: loaded certificate"
        ),
        Summary::TrustBundle { authorities } => {
            tracing::info!(source = %name, authorities, "podtls: loaded trust bundle")
        }
        Summary::Other(description) => {
            tracing::info!(source = %name, %description, "podtls: loaded")
        }
    }
}

fn hash_contents(contents: &[Vec<u8>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in contents {
        h.update((c.len() as u64).to_le_bytes());
        h.update(c);
    }
    h.finalize().into()
}

pub(crate) enum Msg {
    Fs(notify::Result<notify::Event>),
    ReloadNow,
    Stop,
}

/// Owns the reload thread; dropping it stops the thread.
pub(crate) struct Reloader {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

/// Creates the directory watcher, whose events go to the given sender. The
/// seam through which tests make watcher creation or `watch` fail.
pub(crate) type NewWatcher = fn(mpsc::Sender<Msg>) -> notify::Result<Box<dyn Watcher + Send>>;

/// The platform's watcher (inotify on Linux).
fn recommended_watcher(tx: mpsc::Sender<Msg>) -> notify::Result<Box<dyn Watcher + Send>> {
    let watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(Msg::Fs(ev));
    })?;
    Ok(Box::new(watcher))
}

impl Reloader {
    /// Loads every source once (synchronously), then starts watching.
    pub(crate) fn start(
        sources: Vec<Box<dyn Reload>>,
        timing: ReloadTiming,
    ) -> Result<Self, Error> {
        Self::start_with(sources, timing, recommended_watcher)
    }

    /// [`Reloader::start`] with the watcher made by `new_watcher`.
    pub(crate) fn start_with(
        mut sources: Vec<Box<dyn Reload>>,
        timing: ReloadTiming,
        new_watcher: NewWatcher,
    ) -> Result<Self, Error> {
        let now = SystemTime::now();
        for s in sources.iter_mut() {
            if let Err(e) = s.reload(now, timing.max_file_size) {
                s.report(e, now);
            }
            s.check_health(now, timing.renewal_warning_fraction);
        }
        let (tx, rx) = mpsc::channel();
        let mut dirs: Vec<WatchedDir> = Vec::new();
        let mut source_dirs = Vec::new();
        for s in &sources {
            let mut mine = Vec::new();
            for p in s.paths() {
                for dir in dirs_to_watch(p) {
                    let i = match dirs.iter().position(|d| d.path == dir) {
                        Some(i) => i,
                        None => {
                            dirs.push(WatchedDir {
                                path: dir,
                                id: None,
                                error: None,
                            });
                            dirs.len() - 1
                        }
                    };
                    if !mine.contains(&i) {
                        mine.push(i);
                    }
                }
            }
            source_dirs.push(mine);
        }
        // A watcher that cannot be created (inotify limits) is not fatal:
        // `ensure_watches` records why, the periodic re-read finds changes,
        // and creation is retried on every re-read.
        let mut engine = Engine {
            sources,
            source_dirs,
            watcher: None,
            new_watcher,
            events: tx.clone(),
            dirs,
            timing,
        };
        engine.ensure_watches();
        let thread = std::thread::Builder::new()
            .name("podtls-reload".into())
            .spawn(move || engine.run(rx))
            .map_err(|e| Error::Watch {
                path: PathBuf::new(),
                detail: format!("cannot start reload thread: {e}"),
            })?;
        Ok(Reloader {
            tx,
            thread: Some(thread),
        })
    }

    /// Asks the thread to re-read every source now (as a poll tick would).
    pub(crate) fn reload_now(&self) {
        let _ = self.tx.send(Msg::ReloadNow);
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The directories whose changes can change `path`: its parent, and the
/// kubelet volume root above it when the file sits in a subdirectory of a
/// projected volume (`<volume>/creds/bundle.pem`, where `creds` is itself a
/// symlink into `..data`): the `..data` swap happens in the volume root.
fn dirs_to_watch(path: &Path) -> Vec<PathBuf> {
    let parent = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut dirs = vec![parent.clone()];
    let mut up = parent.parent();
    for _ in 0..3 {
        let Some(dir) = up.filter(|d| !d.as_os_str().is_empty()) else {
            break;
        };
        if std::fs::symlink_metadata(dir.join("..data")).is_ok() {
            dirs.push(dir.to_path_buf());
            break;
        }
        up = dir.parent();
    }
    dirs
}

struct WatchedDir {
    path: PathBuf,
    /// (device, inode) of the directory currently watched, if any.
    id: Option<(u64, u64)>,
    /// Why the directory (which exists) is not watched.
    error: Option<String>,
}

impl WatchedDir {
    /// Records why the directory is not watched (`None`: it is, or it does
    /// not exist yet); logs the changes.
    fn set_error(&mut self, error: Option<String>, poll_interval: Duration) {
        if self.error == error {
            return;
        }
        match &error {
            Some(e) => tracing::warn!(
                dir = %self.path.display(), error = %e, ?poll_interval,
                "podtls: cannot watch directory; changes are found by the periodic re-read only"
            ),
            None => tracing::info!(dir = %self.path.display(), "podtls: watching directory again"),
        }
        self.error = error;
    }
}

struct Engine {
    sources: Vec<Box<dyn Reload>>,
    /// For each source, the indexes in `dirs` of the directories it depends on.
    source_dirs: Vec<Vec<usize>>,
    /// `None` while it cannot be created.
    watcher: Option<Box<dyn Watcher + Send>>,
    new_watcher: NewWatcher,
    events: mpsc::Sender<Msg>,
    dirs: Vec<WatchedDir>,
    timing: ReloadTiming,
}

impl Engine {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut next_poll = Instant::now() + self.timing.poll_interval;
        loop {
            let now = Instant::now();
            let wake = self
                .sources
                .iter_mut()
                .filter_map(|s| *s.pending_until())
                .fold(next_poll, Instant::min);
            let msg = rx.recv_timeout(wake.saturating_duration_since(now));
            match msg {
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Ok(Msg::Fs(ev)) => {
                    let mut relevant = is_relevant(&ev);
                    // Drain the burst an atomic write produces; one reload covers it.
                    while let Ok(more) = rx.try_recv() {
                        match more {
                            Msg::Stop => return,
                            Msg::Fs(ev) => relevant |= is_relevant(&ev),
                            Msg::ReloadNow => relevant = true,
                        }
                    }
                    if relevant {
                        self.ensure_watches();
                        self.reload_all(Trigger::Event);
                    }
                }
                Ok(Msg::ReloadNow) => {
                    self.ensure_watches();
                    self.reload_all(Trigger::Poll);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= next_poll {
                        self.ensure_watches();
                        self.reload_all(Trigger::Poll);
                        next_poll = Instant::now() + self.timing.poll_interval;
                    }
                    self.retry_pending();
                }
            }
        }
    }

    fn reload_all(&mut self, trigger: Trigger) {
        let now = SystemTime::now();
        let settle = self.timing.settle;
        for s in self.sources.iter_mut() {
            match s.reload(now, self.timing.max_file_size) {
                Ok(()) => *s.pending_until() = None,
                Err(e) => match trigger {
                    // First failure after a file event: give a non-atomic
                    // writer time to finish before reporting.
                    Trigger::Event if s.pending_until().is_none() => {
                        *s.pending_until() = Some(Instant::now() + settle);
                    }
                    Trigger::Event => {}
                    Trigger::Poll => {
                        *s.pending_until() = None;
                        s.report(e, now);
                    }
                },
            }
            s.check_health(now, self.timing.renewal_warning_fraction);
        }
    }

    fn retry_pending(&mut self) {
        let now_i = Instant::now();
        let now = SystemTime::now();
        for s in self.sources.iter_mut() {
            if s.pending_until().is_some_and(|t| t <= now_i) {
                *s.pending_until() = None;
                if let Err(e) = s.reload(now, self.timing.max_file_size) {
                    s.report(e, now);
                }
            }
        }
    }

    /// Creates the watcher if there is none yet, (re-)arms a watch on every
    /// directory whose identity changed (created, replaced, or not watchable
    /// before), and shows in each store's status why its files are not
    /// watched, if they are not.
    fn ensure_watches(&mut self) {
        let poll = self.timing.poll_interval;
        if self.watcher.is_none() {
            match (self.new_watcher)(self.events.clone()) {
                Ok(watcher) => self.watcher = Some(watcher),
                Err(e) => {
                    let error = format!("cannot create the file watcher: {e}");
                    for d in self.dirs.iter_mut() {
                        d.id = None;
                        d.set_error(Some(error.clone()), poll);
                    }
                }
            }
        }
        if let Some(watcher) = self.watcher.as_mut() {
            for d in self.dirs.iter_mut() {
                let id = dir_id(&d.path);
                if id == d.id {
                    if id.is_none() {
                        // Does not exist (yet): nothing to watch, no error.
                        d.set_error(None, poll);
                    }
                    continue;
                }
                let _ = watcher.unwatch(&d.path);
                d.id = None;
                let error = match id {
                    None => None,
                    Some(_) => match watcher.watch(&d.path, RecursiveMode::NonRecursive) {
                        Ok(()) => {
                            d.id = id;
                            None
                        }
                        Err(e) => Some(e.to_string()),
                    },
                };
                d.set_error(error, poll);
            }
        }
        for (s, mine) in self.sources.iter_mut().zip(&self.source_dirs) {
            let error = mine.iter().find_map(|&i| {
                let d = &self.dirs[i];
                d.error.as_ref().map(|detail| Error::Watch {
                    path: d.path.clone(),
                    detail: detail.clone(),
                })
            });
            s.set_watch_error(error);
        }
    }
}

#[derive(Clone, Copy)]
enum Trigger {
    Event,
    Poll,
}

fn is_relevant(ev: &notify::Result<notify::Event>) -> bool {
    match ev {
        // Our own reads open the files; those events must not loop back.
        Ok(ev) => !matches!(
            ev.kind,
            EventKind::Access(notify::event::AccessKind::Open(_))
                | EventKind::Access(notify::event::AccessKind::Read)
                | EventKind::Access(notify::event::AccessKind::Close(
                    notify::event::AccessMode::Read
                ))
        ),
        // An error (for example an inotify queue overflow): re-read everything.
        Err(_) => true,
    }
}

#[cfg(unix)]
fn dir_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn dir_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|_| (0, 0))
}

#[cfg(test)]
mod tests;
