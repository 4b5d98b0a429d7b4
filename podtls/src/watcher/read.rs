//! Reading a source's files: regular files only (through symlinks), at most
//! a size limit, all from one generation of an atomically written volume.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, FileKind};

/// Reads every path so that all of them come from one generation of an
/// atomically written volume: the fully resolved paths (through `..data`) are
/// taken before and after the reads, and the reads are retried if a swap
/// happened in between. Each file is read with [`read_file`].
pub(super) fn read_consistent(paths: &[PathBuf], limit: u64) -> Result<Vec<Vec<u8>>, Error> {
    let resolve = || -> Vec<Option<PathBuf>> {
        paths
            .iter()
            .map(|p| std::fs::canonicalize(p).ok())
            .collect()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = resolve();
        let read: Result<Vec<Vec<u8>>, Error> = paths.iter().map(|p| read_file(p, limit)).collect();
        if attempt >= 5 || before == resolve() {
            return read;
        }
    }
}

/// Reads one source file, following symlinks (kubelet's files are symlinks
/// into `..data`).
///
/// Refuses anything that is not a regular file ([`Error::NotAFile`]) and
/// anything larger than `limit` bytes ([`Error::TooLarge`]). The file is
/// opened non-blocking, so a FIFO without a writer does not hold the caller,
/// and its type and size are checked on the opened handle (`fstat`), not on
/// the path, so nothing can be swapped in between the check and the read. At
/// most `limit + 1` bytes are ever read, even from a file that grows.
pub(super) fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    let read_error = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let not_a_file = |kind| Error::NotAFile {
        path: path.to_path_buf(),
        kind,
    };
    let too_large = || Error::TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    let file = match open(path) {
        Ok(file) => file,
        Err(error) => {
            // Opening a socket fails (ENXIO, "no such device or address"):
            // name what is there instead. Only the message depends on this
            // second look at the path; nothing is read either way.
            if let Some(kind) = std::fs::metadata(path)
                .ok()
                .and_then(|m| FileKind::of(m.file_type()))
            {
                return Err(not_a_file(kind));
            }
            return Err(read_error(error));
        }
    };
    let meta = file.metadata().map_err(read_error)?;
    if let Some(kind) = FileKind::of(meta.file_type()) {
        return Err(not_a_file(kind));
    }
    if meta.len() > limit {
        return Err(too_large());
    }
    read_capped(file, limit, meta.len())
        .map_err(read_error)?
        .ok_or_else(too_large)
}

#[cfg(unix)]
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Reads `reader` to its end, or returns `None` as soon as it has yielded
/// more than `limit` bytes (after reading at most `limit + 1`).
/// `expected_len` sizes the buffer (capped at `limit`).
fn read_capped(reader: impl Read, limit: u64, expected_len: u64) -> io::Result<Option<Vec<u8>>> {
    let capacity = usize::try_from(expected_len.min(limit)).unwrap_or(0);
    let mut buf = Vec::with_capacity(capacity);
    reader.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= limit).then_some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the bytes taken from an endless reader.
    struct Endless {
        taken: u64,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(b'A');
            self.taken += buf.len() as u64;
            Ok(buf.len())
        }
    }

    #[test]
    fn stops_an_endless_reader_one_byte_past_the_limit() {
        let mut endless = Endless { taken: 0 };
        assert_eq!(read_capped(&mut endless, 1000, 0).unwrap(), None);
        assert_eq!(endless.taken, 1001);
    }

    #[test]
    fn accepts_exactly_the_limit_and_refuses_one_more_byte() {
        let limit = 64;
        let exact = [7u8; 64];
        assert_eq!(
            read_capped(&exact[..], limit, 64).unwrap().as_deref(),
            Some(&exact[..])
        );
        let over = [7u8; 65];
        // A size hint that lies (a file that grew after fstat) changes nothing.
        assert_eq!(read_capped(&over[..], limit, 10).unwrap(), None);
        assert_eq!(read_capped(&[][..], limit, 0).unwrap(), Some(Vec::new()));
    }

    #[test]
    fn reads_a_regular_file_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.pem");
        std::fs::write(&target, "pem").unwrap();
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read_file(&link, 3).unwrap(), b"pem");
        let error = read_file(&link, 2).unwrap_err();
        assert!(
            matches!(&error, Error::TooLarge { path, limit: 2 } if *path == link),
            "{error:?}"
        );
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.pem");
        let error = read_file(&path, 10).unwrap_err();
        assert!(
            matches!(&error, Error::Read { path: p, source } if *p == path
                && source.kind() == io::ErrorKind::NotFound),
            "{error:?}"
        );
    }

    #[test]
    fn a_dangling_symlink_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("dangling.pem");
        std::os::unix::fs::symlink(dir.path().join("gone"), &link).unwrap();
        assert!(matches!(read_file(&link, 10), Err(Error::Read { .. })));
    }
}
