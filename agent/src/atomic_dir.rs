//! A directory whose files change all at once, in the layout kubelet's
//! `AtomicWriter` (pkg/volume/util/atomic_writer.go) gives projected volumes,
//! so readers that handle kubelet's updates handle ours:
//!
//! ```text
//! <dir>/..2026_11_30_12_00_00.<random>/   the payload (a new directory per write)
//! <dir>/..data -> ..2026_11_30_12_00_00.<random>
//! <dir>/<name> -> ..data/<name>             one symlink per user-visible file
//! ```
//!
//! A write fills a fresh timestamped directory (files fsynced), points a
//! temporary `..data_tmp` symlink at it and renames that over `..data` (rename
//! is atomic), then adds missing user-visible links, removes those of files no
//! longer in the payload, and removes the previous timestamped directory. A
//! reader that opens `<dir>/<name>` therefore sees either the whole old
//! payload or the whole new one, never a partial write. As with kubelet, a
//! reader whose path lookup straddles the swap can get a transient `ENOENT`
//! (the old payload directory is removed right after the swap); readers retry
//! on the next change event (podtls does).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{symlink, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::AgentError;

/// The symlink to the current payload directory.
pub const DATA_DIR: &str = "..data";
/// The symlink created next to [`DATA_DIR`] and renamed over it.
pub const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a payload: its name (a plain file name, not starting with `..`),
/// contents and mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    /// The bytes.
    pub data: Vec<u8>,
    /// Unix permission bits.
    pub mode: u32,
}

/// Checks that `name` may be a user-visible file of the directory: a single
/// path component, not empty, not starting with `..` (kubelet's reserved
/// prefix), no NUL.
pub fn validate_name(name: &str) -> Result<(), AgentError> {
    let bad = name.is_empty()
        || name.starts_with("..")
        || name == "."
        || name.contains('/')
        || name.contains('\0');
    if bad {
        return Err(AgentError::BadFileName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// The name of a payload directory written at `now` (kubelet's format,
/// `..2006_01_02_15_04_05.` followed by a random suffix).
fn timestamped_prefix(now: SystemTime) -> String {
    let t = time::OffsetDateTime::from(now);
    format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    let _ = aws_lc_rs::rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn io_err<'a>(
    path: &'a Path,
    step: &'static str,
) -> impl FnOnce(std::io::Error) -> AgentError + 'a {
    move |source| AgentError::Write {
        path: path.to_path_buf(),
        step,
        source,
    }
}

/// Atomically replaces the payload of `dir` (created if missing) with `files`.
pub fn write(
    dir: &Path,
    files: &BTreeMap<String, FileProjection>,
    now: SystemTime,
) -> Result<(), AgentError> {
    for name in files.keys() {
        validate_name(name)?;
    }
    fs::create_dir_all(dir).map_err(io_err(dir, "creating the directory"))?;
    let data_link = dir.join(DATA_DIR);
    let old_payload = fs::read_link(&data_link).ok();

    // 1. A fresh payload directory, every file written and fsynced.
    let ts_name = format!("{}{}", timestamped_prefix(now), random_suffix());
    let ts_dir = dir.join(&ts_name);
    fs::create_dir(&ts_dir).map_err(io_err(&ts_dir, "creating the payload directory"))?;
    let filled = (|| {
        for (name, f) in files {
            let path = ts_dir.join(name);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(f.mode)
                .open(&path)
                .map_err(io_err(&path, "creating a payload file"))?;
            file.write_all(&f.data)
                .map_err(io_err(&path, "writing a payload file"))?;
            file.sync_all()
                .map_err(io_err(&path, "syncing a payload file"))?;
        }
        fs::File::open(&ts_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&ts_dir, "syncing the payload directory"))
    })();
    if let Err(e) = filled {
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(e);
    }

    // 2. ..data_tmp -> new payload, renamed over ..data.
    let tmp_link = dir.join(DATA_DIR_TMP);
    let _ = fs::remove_file(&tmp_link);
    let swapped = symlink(&ts_name, &tmp_link)
        .map_err(io_err(&tmp_link, "creating the ..data_tmp symlink"))
        .and_then(|()| {
            fs::rename(&tmp_link, &data_link)
                .map_err(io_err(&data_link, "renaming ..data_tmp over ..data"))
        });
    if let Err(e) = swapped {
        let _ = fs::remove_file(&tmp_link);
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(e);
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }

    // 3. User-visible links: add the missing ones, drop the stale ones.
    for name in files.keys() {
        let link = dir.join(name);
        let target = PathBuf::from(DATA_DIR).join(name);
        match fs::read_link(&link) {
            Ok(t) if t == target => {}
            Ok(_) | Err(_) => {
                if link.symlink_metadata().is_ok() {
                    fs::remove_file(&link).map_err(io_err(&link, "replacing a stray entry"))?;
                }
                symlink(&target, &link).map_err(io_err(&link, "creating a user-visible link"))?;
            }
        }
    }
    let entries = fs::read_dir(dir).map_err(io_err(dir, "listing the directory"))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("..") || files.contains_key(name) {
            continue;
        }
        let is_our_link = fs::read_link(entry.path())
            .is_ok_and(|t| t.starts_with(DATA_DIR) && t.components().count() == 2);
        if is_our_link {
            let _ = fs::remove_file(entry.path());
        }
    }

    // 4. The previous payload.
    if let Some(old) = old_payload {
        if old != Path::new(&ts_name) && old.components().count() == 1 {
            let _ = fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(())
}

/// The current payload's files (name -> contents) read through `..data`, or
/// `None` if the directory has never been written.
pub fn read_current(dir: &Path) -> Result<Option<BTreeMap<String, Vec<u8>>>, AgentError> {
    let data = dir.join(DATA_DIR);
    if fs::symlink_metadata(&data).is_err() {
        return Ok(None);
    }
    let mut out = BTreeMap::new();
    let entries = fs::read_dir(&data).map_err(io_err(&data, "listing the payload"))?;
    for entry in entries {
        let entry = entry.map_err(io_err(&data, "listing the payload"))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let bytes = fs::read(&path).map_err(io_err(&path, "reading a payload file"))?;
        out.insert(name, bytes);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn payload(pairs: &[(&str, &str)]) -> BTreeMap<String, FileProjection> {
        pairs
            .iter()
            .map(|(n, d)| {
                (
                    n.to_string(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    fn payload_dirs(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_DIR)
            .collect()
    }

    #[test]
    fn writes_kubelets_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("creds");
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_504_000);
        write(&dir, &payload(&[("a.pem", "A"), ("b.pem", "B")]), now).unwrap();
        let data = fs::read_link(dir.join(DATA_DIR)).unwrap();
        let data = data.to_str().unwrap();
        assert!(data.starts_with("..2025_11_30_12_00_00."), "{data}");
        assert_eq!(
            fs::read_link(dir.join("a.pem")).unwrap(),
            Path::new("..data/a.pem")
        );
        assert_eq!(fs::read_to_string(dir.join("b.pem")).unwrap(), "B");
        assert_eq!(payload_dirs(&dir), vec![data.to_string()]);
    }

    #[test]
    fn rewrite_replaces_payload_drops_stale_links_and_old_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(
            dir,
            &payload(&[("a", "1"), ("old", "x")]),
            SystemTime::now(),
        )
        .unwrap();
        write(
            dir,
            &payload(&[("a", "2"), ("new", "y")]),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "2");
        assert_eq!(fs::read_to_string(dir.join("new")).unwrap(), "y");
        assert!(dir.join("old").symlink_metadata().is_err());
        assert_eq!(payload_dirs(dir).len(), 1);
        assert!(dir.join(DATA_DIR_TMP).symlink_metadata().is_err());
        let current = read_current(dir).unwrap().unwrap();
        assert_eq!(current.keys().collect::<Vec<_>>(), vec!["a", "new"]);
    }

    #[test]
    fn leaves_foreign_files_alone() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("mine.txt"), "keep").unwrap();
        write(tmp.path(), &payload(&[("a", "1")]), SystemTime::now()).unwrap();
        write(tmp.path(), &payload(&[("b", "1")]), SystemTime::now()).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("mine.txt")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn rejects_names_that_escape_or_collide_with_the_layout() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "..data", "..x", "../etc", "a/b", ".", "nul\0"] {
            let err = write(tmp.path(), &payload(&[(bad, "x")]), SystemTime::now()).unwrap_err();
            assert!(
                matches!(err, AgentError::BadFileName { .. }),
                "{bad:?}: {err}"
            );
        }
        // Nothing was written.
        assert!(read_current(tmp.path()).unwrap().is_none());
    }

    /// A value the writer below writes: "0", or `i` repeated 100 times.
    fn whole(v: &str) -> bool {
        v == "0"
            || (v.len().is_multiple_of(100) && !v.is_empty() && v == v[..v.len() / 100].repeat(100))
    }

    #[test]
    fn reader_never_sees_a_partial_payload() {
        // Two files that must always match each other: a reader reading both
        // through the user-visible links while the writer swaps payloads sees
        // either both old or both new.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        write(&dir, &payload(&[("a", "0"), ("b", "0")]), SystemTime::now()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Read both through one resolution of ..data, as a reader
                    // that wants a consistent pair does (podtls re-reads on change).
                    let Ok(target) = fs::read_link(dir.join(DATA_DIR)) else {
                        continue;
                    };
                    let base = dir.join(target);
                    let (Ok(a), Ok(b)) = (
                        fs::read_to_string(base.join("a")),
                        fs::read_to_string(base.join("b")),
                    ) else {
                        continue; // payload removed after we resolved ..data
                    };
                    assert_eq!(a, b, "torn read");
                    assert!(whole(&a), "partial file: {a:?}");
                    // Through the user-visible name: whole contents or (as with
                    // kubelet's writer, whose old payload directory is removed
                    // right after the swap) a transient ENOENT, never a torn file.
                    if let Ok(v) = fs::read_to_string(dir.join("a")) {
                        assert!(whole(&v), "partial file through the link: {v:?}");
                    }
                    reads += 1;
                }
                reads
            })
        };
        for i in 1..300 {
            let v = i.to_string().repeat(100);
            write(&dir, &payload(&[("a", &v), ("b", &v)]), SystemTime::now()).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let reads = reader.join().unwrap();
        assert!(reads > 0);
        assert_eq!(payload_dirs(&dir).len(), 1);
    }
}
