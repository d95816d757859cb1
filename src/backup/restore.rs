//! Restore: extract into a staging directory beside the target, check
//! everything there (manifest hashes, integrity_check, identity against the
//! sealed canary, audit chain), then move it into place. The target must not
//! be in use by a server; a non-empty target is only replaced with `force`, and
//! then moved aside, never deleted.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{
    BackupError, DB, IDENTITY, OPTIONAL, REQUIRED, archive, check_integrity, file_len, io_at,
    open_copy,
};
use crate::secrets::Sealer;

/// What `restore` did.
#[derive(Debug)]
pub struct Restored {
    pub data_dir: PathBuf,
    /// Where the previous contents went (only with `force`).
    pub moved_aside: Option<PathBuf>,
    pub files: Vec<String>,
    pub db_bytes: u64,
    pub audit_records: u64,
    /// The gpudock version that wrote the archive, and when (Unix seconds).
    pub written_by: String,
    pub created_at: i64,
}

/// Restores the archive `from` into `target` (a new or empty directory, or
/// with `force` a non-empty one that is moved aside).
pub fn restore(from: &Path, target: &Path, force: bool) -> Result<Restored, BackupError> {
    let existing = Existing::inspect(target)?;
    if existing.as_ref().is_some_and(|e| e.non_empty) && !force {
        return Err(BackupError::NotEmpty(target.to_owned()));
    }
    let staging = Staging::create(target)?;
    let manifest = archive::extract(from, &staging.0, &allowed())?;
    let audit_records = check(&staging.0)?;
    if let Some(e) = &existing {
        e.apply_owner_and_mode(&staging.0)?;
    }
    let moved_aside = swap(target, &staging.0, existing.as_ref())?;
    Ok(Restored {
        data_dir: target.to_owned(),
        moved_aside,
        db_bytes: file_len(&target.join(DB))?,
        files: manifest.files.keys().cloned().collect(),
        audit_records,
        written_by: manifest.gpudock_version,
        created_at: manifest.created_at,
    })
}

fn allowed() -> Vec<&'static str> {
    REQUIRED.iter().chain(OPTIONAL.iter()).copied().collect()
}

/// The checks on the extracted copy; returns the number of audit records.
fn check(dir: &Path) -> Result<u64, BackupError> {
    for name in REQUIRED {
        if !dir.join(name).is_file() {
            return Err(BackupError::Damaged {
                path: dir.to_owned(),
                why: format!("{name} is missing"),
            });
        }
    }
    let conn = open_copy(&dir.join(DB))?;
    check_integrity(&conn)?;
    Sealer::check(&dir.join(IDENTITY), &conn)?;
    let report = crate::audit::verify(&conn)?;
    if let Some((id, why)) = report.first_broken {
        return Err(BackupError::AuditBroken { id, why });
    }
    conn.close().map_err(|(_, e)| BackupError::Sqlite(e))?;
    Ok(report.checked)
}

/// The target directory as it was found.
struct Existing {
    non_empty: bool,
    owner: (u32, u32),
    mode: u32,
}

impl Existing {
    /// None when `target` does not exist; refuses a file and a directory a
    /// server holds.
    fn inspect(target: &Path) -> Result<Option<Self>, BackupError> {
        let meta = match std::fs::metadata(target) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(target)(e)),
        };
        if !meta.is_dir() {
            return Err(BackupError::NotADirectory(target.to_owned()));
        }
        drop(crate::datadir::lock_if_present(target)?);
        let non_empty = std::fs::read_dir(target)
            .map_err(io_at(target))?
            .next()
            .is_some();
        Ok(Some(Self {
            non_empty,
            owner: (meta.uid(), meta.gid()),
            mode: meta.mode() & 0o7777,
        }))
    }

    /// Gives the staged tree the owner (when it differs: restoring as root
    /// into the package's directory owned by `gpudock`) and the directory mode
    /// of the directory it replaces.
    fn apply_owner_and_mode(&self, staged: &Path) -> Result<(), BackupError> {
        let (uid, gid) = self.owner;
        for entry in walk(staged)? {
            let meta = std::fs::symlink_metadata(&entry).map_err(io_at(&entry))?;
            if (meta.uid(), meta.gid()) != (uid, gid) {
                std::os::unix::fs::lchown(&entry, Some(uid), Some(gid)).map_err(io_at(&entry))?;
            }
        }
        let mode = std::fs::Permissions::from_mode(self.mode & 0o750);
        std::fs::set_permissions(staged, mode).map_err(io_at(staged))
    }
}

/// `dir` and everything under it.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        i += 1;
        if std::fs::symlink_metadata(&p).map_err(io_at(&p))?.is_dir() {
            for e in std::fs::read_dir(&p).map_err(io_at(&p))? {
                out.push(e.map_err(io_at(&p))?.path());
            }
        }
    }
    Ok(out)
}

/// A private directory beside the target, removed with what is in it when
/// dropped (a no-op once it has been moved into place).
struct Staging(PathBuf);

impl Staging {
    fn create(target: &Path) -> Result<Self, BackupError> {
        let name = target
            .file_name()
            .ok_or_else(|| BackupError::NotADirectory(target.to_owned()))?
            .to_string_lossy()
            .into_owned();
        let path = target.with_file_name(format!(".{name}.restore-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io_at(&path))?;
        Ok(Self(path))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Moves `staged` to `target`; a non-empty target goes aside first, an empty
/// one is removed. Holds the target's lock meanwhile, so a server starting now
/// fails instead of opening a half-swapped directory.
fn swap(
    target: &Path,
    staged: &Path,
    existing: Option<&Existing>,
) -> Result<Option<PathBuf>, BackupError> {
    let Some(existing) = existing else {
        std::fs::rename(staged, target).map_err(io_at(target))?;
        return Ok(None);
    };
    let _lock = crate::datadir::lock_if_present(target)?;
    let aside = if existing.non_empty {
        let aside = aside_name(target);
        std::fs::rename(target, &aside).map_err(io_at(&aside))?;
        Some(aside)
    } else {
        std::fs::remove_dir(target).map_err(io_at(target))?;
        None
    };
    std::fs::rename(staged, target).map_err(io_at(target))?;
    Ok(aside)
}

/// `<target>.before-restore-<unix time>`, with a counter when taken.
fn aside_name(target: &Path) -> PathBuf {
    let base = format!(
        "{}.before-restore-{}",
        target.to_string_lossy(),
        crate::db::now()
    );
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}
