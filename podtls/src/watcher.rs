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
//!
//! Hostile input is a failed load like any other: only regular files (through
//! symlinks) up to [`ReloadTiming::max_file_size`] are read ([`read`]), a
//! panicking parser is caught, and a watcher that cannot be created leaves
//! the periodic re-read in charge ([`engine`]).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::store::{Health, Material, Store, Summary};

mod engine;
mod folder;
mod read;

pub(crate) use engine::Reloader;
pub(crate) use folder::FolderSource;

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
    /// ([`Error::TooLarge`]); at most one byte more
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
        check_certificate_health(&self.store, now, warn_at);
    }
}

/// Sets a certificate store's health from its leaf's validity window and
/// logs the changes (other material is left alone).
pub(crate) fn check_certificate_health<T: Material>(
    store: &Store<T>,
    now: SystemTime,
    warn_at: f64,
) {
    let status = store.status();
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
    if store.set_health(health) {
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

/// The message of a panic, when its payload is a string (`panic!` with a
/// literal gives a `&str`, with arguments a `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message: the panic payload is not a string)".to_string()
    }
}

pub(crate) fn log_published(name: &str, summary: &Summary) {
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

pub(crate) fn hash_contents(contents: &[Vec<u8>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in contents {
        h.update((c.len() as u64).to_le_bytes());
        h.update(c);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests;
