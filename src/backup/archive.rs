//! The archive format: a gzip-compressed tar whose first entry is
//! `MANIFEST.json` (format, version, and the SHA-256 and size of every other
//! entry), followed by the files, each a regular file with mode 0600. Reading
//! accepts only the names the caller allows, checks every hash and size, and
//! reads the gzip stream to its end so that a truncated archive is refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BackupError;

pub const MANIFEST: &str = "MANIFEST.json";
const FORMAT: &str = "gpudock-backup";
const VERSION: u32 = 1;
const MAX_MANIFEST: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// The gpudock version that wrote the archive.
    pub gpudock_version: String,
    /// Unix seconds.
    pub created_at: i64,
    pub files: BTreeMap<String, FileSum>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSum {
    pub sha256: String,
    pub size: u64,
}

/// Which side of a copy failed: reading the source, or writing the copy.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `r` to `w` and returns the SHA-256 (hex) and length of what passed.
fn copy_hashing(r: &mut impl Read, w: &mut impl Write) -> Result<FileSum, CopyError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        hasher.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        size += n as u64;
    }
    Ok(FileSum {
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes the archive of `files` (name in the archive, file on disk) to `out`.
pub fn write(out: File, files: &[(&str, PathBuf)], created_at: i64) -> Result<File, BackupError> {
    let mut sums = BTreeMap::new();
    for (name, path) in files {
        let mut f = File::open(path).map_err(io_at(path))?;
        let sum = copy_hashing(&mut f, &mut io::sink()).map_err(|e| match e {
            CopyError::Read(e) | CopyError::Write(e) => io_at(path)(e),
        })?;
        sums.insert((*name).to_string(), sum);
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        version: VERSION,
        gpudock_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at,
        files: sums,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io {
        path: PathBuf::from(MANIFEST),
        source: io::Error::other(e),
    })?;
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = u64::try_from(created_at).unwrap_or(0);
    let to_archive = |e| io_at(Path::new("archive"))(e);
    append(&mut tar, MANIFEST, json.len() as u64, mtime, &json[..]).map_err(to_archive)?;
    for (name, path) in files {
        let f = File::open(path).map_err(io_at(path))?;
        let size = manifest.files.get(*name).map_or(0, |s| s.size);
        append(&mut tar, name, size, mtime, f).map_err(to_archive)?;
    }
    let gz = tar.into_inner().map_err(to_archive)?;
    gz.finish().map_err(to_archive)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    mtime: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(mtime);
    tar.append_data(&mut h, name, data)
}

/// Extracts the archive at `from` into the empty directory `dir`, accepting
/// only names in `allowed`; checks every file against the manifest.
pub fn extract(from: &Path, dir: &Path, allowed: &[&str]) -> Result<Manifest, BackupError> {
    let damaged = |why: String| BackupError::Damaged {
        path: from.to_owned(),
        why,
    };
    let file = File::open(from).map_err(io_at(from))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let mut manifest: Option<Manifest> = None;
    let mut seen = BTreeMap::new();
    let entries = tar.entries().map_err(|e| damaged(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| damaged(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(damaged(format!("{name} is not a regular file")));
        }
        let Some(m) = &manifest else {
            manifest = Some(read_manifest(&name, &mut entry).map_err(damaged)?);
            continue;
        };
        if !allowed.contains(&name.as_str())
            || !m.files.contains_key(&name)
            || seen.contains_key(&name)
        {
            return Err(damaged(format!("unexpected entry {name}")));
        }
        let to = dir.join(&name);
        let sum = extract_file(&mut entry, &to).map_err(|e| match e {
            CopyError::Read(e) => damaged(e.to_string()),
            CopyError::Write(e) => io_at(&to)(e),
        })?;
        seen.insert(name, sum);
    }
    // Reading on to the end checks the gzip trailer (CRC and length).
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| damaged(e.to_string()))?;
    let manifest = manifest.ok_or_else(|| damaged("empty archive".to_string()))?;
    if seen != manifest.files {
        let bad: Vec<&String> = manifest
            .files
            .iter()
            .filter(|(n, s)| seen.get(*n) != Some(*s))
            .map(|(n, _)| n)
            .collect();
        return Err(damaged(format!("missing or altered: {bad:?}")));
    }
    Ok(manifest)
}

fn read_manifest(name: &str, entry: &mut impl Read) -> Result<Manifest, String> {
    if name != MANIFEST {
        return Err(format!("the first entry is {name}, not {MANIFEST}"));
    }
    let mut json = Vec::new();
    entry
        .take(MAX_MANIFEST)
        .read_to_end(&mut json)
        .map_err(|e| e.to_string())?;
    let m: Manifest = serde_json::from_slice(&json).map_err(|e| format!("{MANIFEST}: {e}"))?;
    if m.format != FORMAT || m.version != VERSION {
        return Err(format!(
            "{MANIFEST} says {} version {}; this gpudock reads {FORMAT} version {VERSION}",
            m.format, m.version
        ));
    }
    Ok(m)
}

fn extract_file(entry: &mut impl Read, to: &Path) -> Result<FileSum, CopyError> {
    if let Some(parent) = to.parent() {
        crate::fsutil::ensure_private_dir(parent).map_err(CopyError::Write)?;
    }
    let mut out = crate::fsutil::create_private(to).map_err(CopyError::Write)?;
    let sum = copy_hashing(entry, &mut out)?;
    out.sync_all().map_err(CopyError::Write)?;
    Ok(sum)
}
