//! A volume writer that behaves like kubelet's `AtomicWriter`
//! (`pkg/volume/util/atomic_writer.go`):
//!
//! 1. if the payload equals what `..data` already holds, do nothing;
//! 2. write every file into a new hidden directory `..<UTC timestamp>.<random>`;
//! 3. create the symlink `..data_tmp -> <that directory>` and rename it over
//!    `..data` (the atomic switch);
//! 4. create missing user-visible symlinks `<name> -> ..data/<name>`;
//! 5. remove user-visible names no longer in the payload;
//! 6. remove the previous timestamped directory.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Writes payloads into a directory the way kubelet writes projected volumes.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    dir: PathBuf,
}

impl AtomicWriter {
    /// A writer for the volume directory `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(AtomicWriter { dir })
    }

    /// The volume directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The user-visible path of `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Atomically replaces the volume's contents with `files` (name -> bytes).
    /// Returns false when nothing changed.
    pub fn write(&self, files: &BTreeMap<String, Vec<u8>>) -> io::Result<bool> {
        self.write_with(files, |_| Ok(()))
    }

    /// Like [`AtomicWriter::write`], calling `before_switch` with the new
    /// timestamped directory after its files are written and before `..data`
    /// is switched (to observe or delay the window a real kubelet has).
    pub fn write_with(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
        before_switch: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<bool> {
        let data = self.dir.join("..data");
        let old = std::fs::read_link(&data).ok();
        if let Some(old) = &old {
            if self.same_payload(&self.dir.join(old), files)? {
                return Ok(false);
            }
        }
        let ts_name = timestamped_name();
        let ts_dir = self.dir.join(&ts_name);
        std::fs::create_dir(&ts_dir)?;
        for (name, bytes) in files {
            let p = ts_dir.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, bytes)?;
        }
        before_switch(&ts_dir)?;
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&ts_name, &tmp)?;
        std::fs::rename(&tmp, &data)?;
        for name in files.keys() {
            let top = name.split('/').next().unwrap_or(name);
            let user = self.dir.join(top);
            if std::fs::symlink_metadata(&user).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(top), &user)?;
            }
        }
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("..") {
                continue;
            }
            if !files
                .keys()
                .any(|f| f.split('/').next() == Some(name.as_str()))
            {
                std::fs::remove_file(entry.path())?;
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old))?;
        }
        Ok(true)
    }

    fn same_payload(&self, old_dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> io::Result<bool> {
        for (name, bytes) in files {
            let old_file = old_dir.join(name);
            // Never read what is not a regular file (a test may have planted
            // a FIFO, which would block the read): it is not the same payload.
            if !std::fs::metadata(&old_file).is_ok_and(|m| m.is_file()) {
                return Ok(false);
            }
            match std::fs::read(old_file) {
                Ok(old) if &old == bytes => {}
                _ => return Ok(false),
            }
        }
        let old_count = std::fs::read_dir(old_dir)?.count();
        Ok(old_count == files.len())
    }
}

fn timestamped_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let dt = time::OffsetDateTime::from_unix_timestamp(now.as_secs() as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{}{}",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        now.subsec_nanos(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn lays_out_files_like_kubelet() {
        let tmp = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(tmp.path()).unwrap();
        assert!(w.write(&payload(&[("a.pem", "one")])).unwrap());
        let data = std::fs::read_link(tmp.path().join("..data")).unwrap();
        assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
        assert_eq!(
            std::fs::read_link(tmp.path().join("a.pem")).unwrap(),
            Path::new("..data/a.pem")
        );
        assert_eq!(std::fs::read_to_string(w.path("a.pem")).unwrap(), "one");

        assert!(w
            .write(&payload(&[("a.pem", "two"), ("b.pem", "x")]))
            .unwrap());
        assert_eq!(std::fs::read_to_string(w.path("a.pem")).unwrap(), "two");
        assert!(!tmp.path().join(&data).exists(), "old directory removed");
        assert!(!tmp.path().join("..data_tmp").exists());

        assert!(!w
            .write(&payload(&[("a.pem", "two"), ("b.pem", "x")]))
            .unwrap());
        assert!(w.write(&payload(&[("a.pem", "three")])).unwrap());
        assert!(
            !tmp.path().join("b.pem").exists(),
            "stale user link removed"
        );
    }
}
