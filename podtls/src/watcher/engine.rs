//! The reload thread: watches the sources' directories, re-reads on events
//! and on the periodic tick, retries a failed read after the settle delay.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};

use super::{Reload, ReloadTiming};
use crate::error::Error;

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
pub(super) fn recommended_watcher(
    tx: mpsc::Sender<Msg>,
) -> notify::Result<Box<dyn Watcher + Send>> {
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
