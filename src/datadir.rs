//! The data directory's lock: `serve` holds an exclusive lock on
//! `<data_dir>/gpudock.lock` for as long as it runs, so that `restore` (and a
//! second `serve`) can tell that the directory is in use. The lock is an OS
//! file lock (flock): it goes away with the process, even after a crash, so the
//! file itself is never removed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "gpudock.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the data directory {0} is in use by a running gpudock server (it holds {1}); \
         stop it first (systemctl stop gpudock)"
    )]
    InUse(PathBuf, PathBuf),
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Held while a server owns the data directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LockError + '_ {
    move |source| LockError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Takes the lock of `dir` (which must exist), creating the lock file (0600)
/// when needed, and writes this process's id into it for the curious.
pub fn lock(dir: &Path) -> Result<DataDirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&path).map_err(io_error(&path))?;
    try_lock(&file, dir, &path)?;
    file.set_len(0).map_err(io_error(&path))?;
    writeln!(file, "{}", std::process::id()).map_err(io_error(&path))?;
    Ok(DataDirLock { _file: file })
}

/// Fails with `InUse` while a server holds the lock of `dir`; otherwise
/// returns the lock (None when `dir` has no lock file: no server ever ran
/// there, and opening would create one).
pub fn lock_if_present(dir: &Path) -> Result<Option<DataDirLock>, LockError> {
    let path = dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path)(e)),
    };
    try_lock(&file, dir, &path)?;
    Ok(Some(DataDirLock { _file: file }))
}

fn try_lock(file: &File, dir: &Path, path: &Path) -> Result<(), LockError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(LockError::InUse(dir.to_owned(), path.to_owned())),
        Err(TryLockError::Error(e)) => Err(io_error(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_seen_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        assert!(lock_if_present(dir.path()).unwrap().is_none());
        let held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::InUse(..)), "{err}");
        assert!(err.to_string().contains("systemctl stop gpudock"));
        assert!(matches!(
            lock_if_present(dir.path()),
            Err(LockError::InUse(..))
        ));
        drop(held);
        assert!(lock_if_present(dir.path()).unwrap().is_some());
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
    }
}
