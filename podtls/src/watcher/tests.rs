//! The reload engine when file events are unavailable: the watcher cannot be
//! created, or a directory cannot be watched (inotify limits). Start-up must
//! not fail, the periodic re-read must carry on, and the degradation must be
//! visible in the status.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use super::engine::{recommended_watcher, Msg, NewWatcher, Reloader};
use super::*;
use crate::store::Status;

#[derive(Debug, PartialEq)]
struct Text(String);

impl Material for Text {
    fn summary(&self) -> Summary {
        Summary::Other(self.0.clone())
    }
}

fn source(store: &Store<Text>, path: &Path) -> Box<dyn Reload> {
    Box::new(FileSource::new(
        store.clone(),
        vec![path.to_path_buf()],
        |files, _now| Ok(Text(String::from_utf8_lossy(&files[0]).into_owned())),
    ))
}

/// Replaces `path` atomically (write a sibling, rename it over).
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_for(store: &Store<Text>, what: &str, cond: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = store.status();
        if cond(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: {status:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn value(store: &Store<Text>) -> String {
    store.current().expect("loaded").0.clone()
}

fn polling_timing() -> ReloadTiming {
    ReloadTiming {
        poll_interval: Duration::from_millis(50),
        settle: Duration::from_millis(20),
        ..ReloadTiming::default()
    }
}

fn cannot_create(_: std::sync::mpsc::Sender<Msg>) -> notify::Result<Box<dyn Watcher + Send>> {
    Err(notify::Error::generic(
        "inotify instance limit reached (test)",
    ))
}

/// A watcher whose every `watch` fails, as when `max_user_watches` is used up.
struct Unwatchable;

impl Watcher for Unwatchable {
    fn new<F: notify::EventHandler>(_: F, _: notify::Config) -> notify::Result<Self> {
        Ok(Unwatchable)
    }
    fn watch(&mut self, path: &Path, _: RecursiveMode) -> notify::Result<()> {
        Err(notify::Error::generic("inotify watch limit reached (test)").add_path(path.into()))
    }
    fn unwatch(&mut self, _: &Path) -> notify::Result<()> {
        Ok(())
    }
    fn kind() -> notify::WatcherKind {
        notify::WatcherKind::NullWatcher
    }
}

fn cannot_watch(_: std::sync::mpsc::Sender<Msg>) -> notify::Result<Box<dyn Watcher + Send>> {
    Ok(Box::new(Unwatchable))
}

/// Starts a reloader on `dir/value` (holding "one") with `new_watcher`.
fn start(dir: &Path, timing: ReloadTiming, new_watcher: NewWatcher) -> (Store<Text>, Reloader) {
    let path = dir.join("value");
    std::fs::write(&path, "one").unwrap();
    let store = Store::empty("value");
    let reloader = Reloader::start_with(vec![source(&store, &path)], timing, new_watcher)
        .expect("start does not fail when file events are unavailable");
    assert_eq!(value(&store), "one");
    (store, reloader)
}

fn assert_watch_error(status: &Status, dir: &Path, detail_has: &str) {
    let error = status.watch_error.as_ref().expect("watch error recorded");
    assert!(
        matches!(&**error, Error::Watch { path, detail } if path == dir && detail.contains(detail_has)),
        "{error:?}"
    );
}

#[test]
fn falls_back_to_polling_when_the_watcher_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _reloader) = start(dir.path(), polling_timing(), cannot_create);
    assert_watch_error(&store.status(), dir.path(), "instance limit reached");

    replace(&dir.path().join("value"), "two");
    let status = wait_for(&store, "the poll picks up the change", |s| {
        s.generation == 2
    });
    assert_eq!(value(&store), "two");
    assert_watch_error(&status, dir.path(), "instance limit reached");
}

#[test]
fn falls_back_to_polling_when_a_directory_cannot_be_watched() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _reloader) = start(dir.path(), polling_timing(), cannot_watch);
    assert_watch_error(&store.status(), dir.path(), "watch limit reached");

    replace(&dir.path().join("value"), "two");
    wait_for(&store, "the poll picks up the change", |s| {
        s.generation == 2
    });
    assert_eq!(value(&store), "two");
}

static CREATION_FAILS: AtomicBool = AtomicBool::new(true);

fn fails_until_allowed(
    tx: std::sync::mpsc::Sender<Msg>,
) -> notify::Result<Box<dyn Watcher + Send>> {
    if CREATION_FAILS.load(Ordering::SeqCst) {
        cannot_create(tx)
    } else {
        recommended_watcher(tx)
    }
}

#[test]
fn a_watcher_that_can_be_created_later_is_used_and_the_error_clears() {
    let dir = tempfile::tempdir().unwrap();
    // No periodic re-read within the test: only file events can deliver the
    // last change.
    let timing = ReloadTiming {
        poll_interval: Duration::from_secs(3600),
        ..polling_timing()
    };
    let (store, reloader) = start(dir.path(), timing, fails_until_allowed);
    assert_watch_error(&store.status(), dir.path(), "instance limit reached");

    CREATION_FAILS.store(false, Ordering::SeqCst);
    reloader.reload_now();
    wait_for(&store, "the watch error clears", |s| {
        s.watch_error.is_none()
    });

    replace(&dir.path().join("value"), "two");
    wait_for(&store, "an event delivers the change", |s| {
        s.generation == 2
    });
    assert_eq!(value(&store), "two");
}

/// A credential folder without file events: new trust domains and
/// de-federation are still found by the periodic re-read, and every store of
/// the folder says why events are missing (once, not wrapped twice).
#[test]
fn credential_folder_falls_back_to_polling_for_trust_domains() {
    use crate::credentials::LeafKind;
    use crate::spiffe_bundles::SpiffeBundles;
    use crate::test_util::{CertAuthority, LeafSpec};

    let dir = tempfile::tempdir().unwrap();
    let ca_a = CertAuthority::new("a");
    let ca_b = CertAuthority::new("b");
    let leaf = ca_a.issue(&LeafSpec::spiffe("spiffe://a.example/ns/x/sa/y"));
    std::fs::write(
        dir.path().join("credential-bundle.private-key.x509.pem"),
        leaf.bundle_pem(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.example.spiffe-trust-bundle.x509.pem"),
        ca_a.cert_pem(),
    )
    .unwrap();
    let creds = Store::empty("creds");
    let bundles = SpiffeBundles::default();
    let source = super::FolderSource::new(
        dir.path().to_path_buf(),
        creds.clone(),
        LeafKind::SpiffeSvid,
        bundles.clone(),
    );
    let _reloader =
        Reloader::start_with(vec![Box::new(source)], polling_timing(), cannot_create).unwrap();
    assert!(creds.current().is_some());
    let a = crate::parse_trust_domain("a.example").unwrap();
    let b = crate::parse_trust_domain("b.example").unwrap();
    assert!(bundles.current(&a).is_ok());
    let error = creds.status().watch_error.expect("recorded").to_string();
    assert_eq!(
        error.matches("cannot watch").count(),
        1,
        "not wrapped twice: {error}"
    );

    std::fs::write(
        dir.path().join("b.example.spiffe-trust-bundle.x509.pem"),
        ca_b.cert_pem(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while bundles.current(&b).is_err() {
        assert!(Instant::now() < deadline, "b.example never appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    let b_error = bundles.store(&b).unwrap().status().watch_error;
    let b_error = b_error.expect("the new trust domain's store says so too");
    assert_eq!(b_error.to_string(), error);

    std::fs::remove_file(dir.path().join("b.example.spiffe-trust-bundle.x509.pem")).unwrap();
    while !matches!(
        bundles.current(&b),
        Err(crate::VerifyError::DeFederated { .. })
    ) {
        assert!(Instant::now() < deadline, "b.example never de-federated");
        std::thread::sleep(Duration::from_millis(5));
    }
}
