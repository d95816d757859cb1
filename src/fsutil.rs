//! Small filesystem helpers for files that hold secrets.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `path` (failing if it exists) readable and writable by the owner only.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Writes `contents` to a new private file at `path`, replacing any old one.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = create_private(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Creates a private directory (0700) if needed. An existing one keeps a group
/// read bit (the package's data dir is 0750, group `gpudock`) but loses group
/// write and every permission for others.
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    let existed = path.is_dir();
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
        let wanted = if existed { mode & 0o750 } else { 0o700 };
        if mode != wanted {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
        }
    }
    #[cfg(not(unix))]
    let _ = existed;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn new_dirs_are_0700_and_existing_ones_lose_other_access_only() {
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("data");
        ensure_private_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).unwrap();
        ensure_private_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o750, "the package's 0750 is kept");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_private_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o750);
    }
}

/// The most open files the server asks for (as the packaged unit's
/// `LimitNOFILE`).
const OPEN_FILES: u64 = 65_536;

/// Raises this process's limit of open files to its hard limit (at most
/// [`OPEN_FILES`]), for `serve` started outside the packaged unit (`cargo
/// run`, a shell), where the soft limit is often 1,024: each jumpbox or
/// proxy connection holds sockets, and entered container namespaces hold
/// one file each. Returns the limit now in force.
pub fn raise_open_files() -> io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let want = now.maximum.unwrap_or(OPEN_FILES).min(OPEN_FILES);
    match now.current {
        Some(current) if current >= want => Ok(current),
        None => Ok(u64::MAX),
        Some(_) => {
            setrlimit(
                Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(want),
                    maximum: now.maximum,
                },
            )?;
            Ok(want)
        }
    }
}

#[cfg(test)]
mod open_files_tests {
    #![allow(clippy::unwrap_used)]

    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    #[test]
    fn a_low_soft_limit_is_raised_and_a_high_one_kept() {
        let before = getrlimit(Resource::Nofile);
        let hard = before.maximum.unwrap_or(u64::MAX);
        let low = 1024.min(hard);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(low),
                maximum: before.maximum,
            },
        )
        .unwrap();
        let want = hard.min(super::OPEN_FILES);
        assert_eq!(super::raise_open_files().unwrap(), want);
        assert_eq!(getrlimit(Resource::Nofile).current, Some(want));
        // Called again, nothing changes.
        assert_eq!(super::raise_open_files().unwrap(), want);
        setrlimit(Resource::Nofile, before).unwrap();
    }
}
