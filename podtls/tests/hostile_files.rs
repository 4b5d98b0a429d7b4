//! Hostile things at a watched path: a FIFO, a directory, a socket, a device,
//! a huge file, a parser that panics. Each is refused with an error naming the
//! path and what is wrong, start-up and the reload thread never block, the
//! last good material stays, and reloading goes on afterwards.
//!
//! Every scenario runs on its own thread under a deadline, so a regression
//! that blocks (a FIFO read waits for a writer forever) fails the test instead
//! of hanging the suite.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use podtls::test_util::{CertAuthority, Issued};
use podtls::{
    error::FileKind, reload::FileWatch, reload::Material, reload::ReloadTiming, reload::Status,
    reload::Summary, Error, PodTls, Store,
};

const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `scenario` on its own thread; panics if it panics or does not finish
/// within [`DEADLINE`]. (A thread stuck in a blocking read is abandoned; the
/// test process ends it on exit.)
fn within_deadline(what: &str, scenario: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        scenario();
        let _ = done.send(());
    });
    match finished.recv_timeout(DEADLINE) {
        Ok(()) => thread.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The scenario panicked: re-raise its panic here.
            std::panic::resume_unwind(thread.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {DEADLINE:?} (blocked?)")
        }
    }
}

/// Polls `store`'s status until `cond` holds; panics at the deadline.
fn wait_until<T: Material>(store: &Store<T>, what: &str, cond: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = store.status();
        if cond(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Replaces `path` atomically (write a sibling, rename it over), so a reader
/// never sees a half-written file.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

fn start_credentials(path: &Path, timing: ReloadTiming) -> PodTls {
    PodTls::builder()
        .credential_bundle(path)
        .timing(timing)
        .start()
        .unwrap()
}

fn last_error(status: &Status) -> Arc<Error> {
    status.last_error.clone().expect("an error is reported")
}

/// Writes `leaf` into the volume, but with the bundle replaced, after it is
/// written and before `..data` is switched, by whatever `plant` puts at the
/// given path: the swap a hostile or broken writer would make, seen through
/// kubelet's symlinks.
fn write_with_bundle_replaced(vol: &Volume, leaf: &Issued, plant: impl FnOnce(&Path)) {
    vol.creds
        .write_with(
            &one("credentialbundle.pem", leaf.bundle_pem()),
            |dir: &Path| {
                let file = dir.join("credentialbundle.pem");
                std::fs::remove_file(&file)?;
                plant(&file);
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn start_returns_and_reports_a_fifo_at_the_credential_path() {
    within_deadline("PodTls::start on a FIFO", || {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("credentialbundle.pem");
        mkfifo(&fifo);
        let pod = start_credentials(&fifo, fast_timing());
        let creds = pod.credentials().unwrap();
        let status = wait_until(creds, "the FIFO error", |s| s.last_error.is_some());
        let error = last_error(&status);
        assert!(
            matches!(&*error, Error::NotAFile { path, kind: FileKind::Fifo } if *path == fifo),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&path_str(&fifo)) && message.contains("FIFO"),
            "{message}"
        );
        assert!(creds.current().is_none(), "fails closed");
    });
}

#[test]
fn a_fifo_swapped_in_through_kubelet_symlinks_is_refused_and_reloading_goes_on() {
    within_deadline("reload of a FIFO", || {
        let ca = CertAuthority::new("ca");
        let vol = Volume::new();
        let good = spiffe_leaf(&ca, "/ns/a/sa/b");
        vol.write_creds(&good);
        let pod = start_credentials(&vol.bundle_path(), fast_timing());
        let creds = pod.credentials().unwrap();
        assert_eq!(serial_of(&creds.status()).unwrap(), good.serial);

        // `credentialbundle.pem -> ..data/credentialbundle.pem`, now a FIFO
        // that nobody writes to.
        write_with_bundle_replaced(&vol, &spiffe_leaf(&ca, "/ns/a/sa/b"), mkfifo);
        let status = wait_until(creds, "the FIFO error", |s| s.last_error.is_some());
        let error = last_error(&status);
        assert!(
            matches!(&*error, Error::NotAFile { path, kind: FileKind::Fifo } if *path == vol.bundle_path()),
            "{error:?}"
        );
        assert_eq!(serial_of(&status).unwrap(), good.serial, "last good kept");

        // The reload thread is not stuck on the FIFO: the next good write loads.
        let next = spiffe_leaf(&ca, "/ns/a/sa/b");
        vol.write_creds(&next);
        let status = wait_until(creds, "the next good write", |s| {
            serial_of(s).as_deref() == Some(next.serial.as_str())
        });
        assert!(status.last_error.is_none());
    });
}

#[test]
fn refuses_a_directory_a_socket_and_a_device_naming_what_each_is() {
    within_deadline("non-regular files", || {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a-directory.pem");
        std::fs::create_dir(&dir).unwrap();
        let socket = tmp.path().join("a-socket.pem");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        // Through a symlink, as kubelet's files are.
        let device = tmp.path().join("a-device.pem");
        std::os::unix::fs::symlink("/dev/null", &device).unwrap();
        let cases: [(&PathBuf, FileKind, &str); 3] = [
            (&dir, FileKind::Directory, "a directory"),
            (&socket, FileKind::Socket, "a socket"),
            (&device, FileKind::CharDevice, "a character device"),
        ];
        for (path, want, words) in cases {
            let pod = start_credentials(path, fast_timing());
            let status = wait_until(pod.credentials().unwrap(), words, |s| {
                s.last_error.is_some()
            });
            let error = last_error(&status);
            assert!(
                matches!(&*error, Error::NotAFile { path: p, kind } if p == path && *kind == want),
                "{words}: {error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains(&path_str(path)) && message.contains(words),
                "{message}"
            );
        }
    });
}

#[test]
fn refuses_a_huge_file_and_keeps_the_last_good_credentials() {
    within_deadline("a 400 MiB file", || {
        let ca = CertAuthority::new("ca");
        let vol = Volume::new();
        let good = spiffe_leaf(&ca, "/ns/a/sa/b");
        vol.write_creds(&good);
        let pod = start_credentials(&vol.bundle_path(), fast_timing());
        let creds = pod.credentials().unwrap();

        // A sparse 400 MiB file: no disk used, but a reader that trusts it
        // allocates and hashes 400 MiB on every event and poll.
        write_with_bundle_replaced(&vol, &spiffe_leaf(&ca, "/ns/a/sa/b"), |file| {
            std::fs::File::create(file)
                .unwrap()
                .set_len(400 * 1024 * 1024)
                .unwrap();
        });
        let status = wait_until(creds, "the size error", |s| s.last_error.is_some());
        let error = last_error(&status);
        let limit = ReloadTiming::default().max_file_size;
        assert_eq!(limit, 4 * 1024 * 1024);
        assert!(
            matches!(&*error, Error::TooLarge { path, limit: l } if *path == vol.bundle_path() && *l == limit),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&path_str(&vol.bundle_path()))
                && message.contains("larger than")
                && message.contains(&limit.to_string()),
            "{message}"
        );
        assert_eq!(serial_of(&status).unwrap(), good.serial, "last good kept");
        assert_eq!(
            podtls::certificate::CertInfo::from_der(&creds.current().unwrap().chain()[0])
                .unwrap()
                .serial,
            good.serial,
            "served material unchanged"
        );
    });
}

#[test]
fn max_file_size_is_configurable() {
    let ca = CertAuthority::new("ca");
    let vol = Volume::new();
    let leaf = spiffe_leaf(&ca, "/ns/a/sa/b");
    vol.write_creds(&leaf);
    let limit = 100;
    assert!(leaf.bundle_pem().len() as u64 > limit);
    let pod = start_credentials(
        &vol.bundle_path(),
        ReloadTiming {
            max_file_size: limit,
            ..fast_timing()
        },
    );
    let status = pod.credentials().unwrap().status();
    let error = last_error(&status);
    assert!(
        matches!(&*error, Error::TooLarge { limit: l, .. } if *l == limit),
        "{error:?}"
    );
    assert!(!status.is_ready(), "fails closed");
}

#[derive(Debug, PartialEq)]
struct Number(u32);

impl Material for Number {
    fn summary(&self) -> Summary {
        Summary::Other(format!("number {}", self.0))
    }
}

/// A parser with a bug: it panics on input starting with "boom".
fn buggy_parse(bytes: &[u8]) -> Result<Number, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| e.to_string())?
        .trim();
    if text == "boom" {
        panic!("cannot handle boom");
    }
    if let Some(rest) = text.strip_prefix("boom ") {
        panic!("cannot handle {rest:?}");
    }
    text.parse()
        .map(Number)
        .map_err(|e| format!("not a number: {e}"))
}

#[test]
fn a_panicking_parser_is_reported_and_reloading_goes_on() {
    within_deadline("a panicking parser", || {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("number");
        std::fs::write(&path, "1").unwrap();
        let watch = FileWatch::start("number", &path, fast_timing(), buggy_parse).unwrap();
        let store = watch.store();
        assert_eq!(*store.current().unwrap(), Number(1));

        // A `&str` panic payload, then a `String` one.
        for (input, message, next) in [
            ("boom", "cannot handle boom", 2),
            ("boom 7", "cannot handle \"7\"", 3),
        ] {
            let before = store.status();
            replace(&path, input);
            let status = wait_until(store, input, |s| {
                s.last_attempt != before.last_attempt && s.last_error.is_some()
            });
            let error = last_error(&status);
            assert!(
                matches!(&*error, Error::ParserPanicked { what, message: m, .. }
                    if what == "number" && m == message),
                "{error:?}"
            );
            assert!(
                error.to_string().contains(&path_str(&path)),
                "names the file: {error}"
            );
            assert_eq!(status.generation, before.generation, "last good kept");
            assert_eq!(store.current().unwrap().0, next - 1);

            // The reload thread survived: a good write is loaded.
            replace(&path, &next.to_string());
            let status = wait_until(store, "recovery", |s| s.generation == before.generation + 1);
            assert!(status.last_error.is_none());
            assert_eq!(*store.current().unwrap(), Number(next));
        }
    });
}
