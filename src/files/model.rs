//! File types and the rules about paths and names, free of I/O: what a
//! listing line means, how a path a client sends becomes a path in the
//! container, and which errors a failed operation is.

use serde::Serialize;

use crate::docker::DockerError;

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One file as `stat` (lstat) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    /// The whole `st_mode` (type and permission bits).
    pub mode: u32,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub atime: i64,
    pub mtime: i64,
}

impl Entry {
    /// `-rw-r--r--` as `ls -l` shows the mode.
    pub fn mode_text(&self) -> String {
        let t = match self.mode & 0o170000 {
            0o040000 => 'd',
            0o120000 => 'l',
            0o020000 => 'c',
            0o060000 => 'b',
            0o010000 => 'p',
            0o140000 => 's',
            _ => '-',
        };
        let mut s = String::with_capacity(10);
        s.push(t);
        for shift in [6u32, 3, 0] {
            let bits = (self.mode >> shift) & 7;
            s.push(if bits & 4 != 0 { 'r' } else { '-' });
            s.push(if bits & 2 != 0 { 'w' } else { '-' });
            s.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        s
    }
}

fn kind_of(mode: u32) -> Kind {
    match mode & 0o170000 {
        0o040000 => Kind::Dir,
        0o100000 => Kind::File,
        0o120000 => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// One `stat -c '/%f %s %u %g %X %Y %U %G %n'` record (the leading `/`
/// optional, a trailing line break not part of the name).
pub fn parse_stat(record: &str) -> Option<Entry> {
    let record = record.strip_prefix('/').unwrap_or(record);
    let record = record.strip_suffix('\n').unwrap_or(record);
    let mut parts = record.splitn(9, ' ');
    let mode = u32::from_str_radix(parts.next()?, 16).ok()?;
    let size = parts.next()?.parse().ok()?;
    let uid = parts.next()?.parse().ok()?;
    let gid = parts.next()?.parse().ok()?;
    let atime = parts.next()?.parse().ok()?;
    let mtime = parts.next()?.parse().ok()?;
    let user = parts.next()?.to_string();
    let group = parts.next()?.to_string();
    let name = parts.next()?;
    let name = name.strip_prefix("./").unwrap_or(name).to_string();
    Some(Entry {
        name,
        kind: kind_of(mode),
        mode,
        size,
        uid,
        gid,
        user,
        group,
        atime,
        mtime,
    })
}

/// A listing: records split on `\n/` (a name never holds `/`), sorted by
/// name. Records that do not parse are left out.
pub fn parse_listing(out: &[u8]) -> Vec<Entry> {
    let text = String::from_utf8_lossy(out);
    let text = text.strip_prefix('/').unwrap_or(&text);
    let mut entries: Vec<Entry> = text
        .split("\n/")
        .filter(|r| !r.is_empty())
        .filter_map(parse_stat)
        .filter(|e| e.name != "." && e.name != "..")
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

/// Why a file operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("{0}")]
    NotFound(String),
    /// Permission denied, a read-only filesystem (a dataset mounted
    /// read-only), an operation not permitted.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Exists(String),
    /// The disk (or quota) is full.
    #[error("{0}")]
    NoSpace(String),
    #[error("{0}")]
    Failed(String),
    #[error("the listing is too large")]
    TooLarge,
    /// The container is not running (stopped, gone).
    #[error("the container is not running")]
    NotRunning,
    /// The node's Docker daemon failed or could not be reached.
    #[error("{0}")]
    Node(DockerError),
}

impl FsError {
    /// The error a failed tool's message describes.
    pub fn classify(_status: i32, message: String) -> Self {
        let m = message.to_ascii_lowercase();
        if m.contains("no space left") || m.contains("disk quota exceeded") {
            FsError::NoSpace(message)
        } else if m.contains("no such file")
            || m.contains("not found")
            || m.contains("nonexistent directory")
            || m.contains("directory nonexistent")
        {
            FsError::NotFound(message)
        } else if m.contains("permission denied")
            || m.contains("read-only file system")
            || m.contains("operation not permitted")
        {
            FsError::Denied(message)
        } else if m.contains("file exists") || m.contains("already exists") {
            FsError::Exists(message)
        } else {
            FsError::Failed(message)
        }
    }
}

/// A path the web API refuses, and why (an i18n key under `err.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// Not absolute.
    Relative,
    /// Holds a `.` or `..` component.
    DotDot,
    /// Holds a NUL byte or is too long.
    Invalid,
}

impl BadPath {
    pub fn key(self) -> &'static str {
        match self {
            BadPath::Relative => "err.path_relative",
            BadPath::DotDot => "err.path_dotdot",
            BadPath::Invalid => "err.path_invalid",
        }
    }
}

/// Longest path accepted (Linux's PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest name accepted (Linux's NAME_MAX, in bytes).
pub const MAX_NAME: usize = 255;

/// A path from the web API: absolute, no `.` or `..` component, no NUL;
/// repeated and trailing slashes dropped.
pub fn web_path(path: &str) -> Result<String, BadPath> {
    if path.contains('\0') || path.len() > MAX_PATH {
        return Err(BadPath::Invalid);
    }
    if !path.starts_with('/') {
        return Err(BadPath::Relative);
    }
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(BadPath::DotDot);
        }
        if part.len() > MAX_NAME {
            return Err(BadPath::Invalid);
        }
        out.push('/');
        out.push_str(part);
    }
    Ok(if out.is_empty() { "/".into() } else { out })
}

/// A name for something new in a folder: not empty, no `/`, no NUL, not
/// `.` or `..`, at most [`MAX_NAME`] bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
}

/// A path an SFTP client sends, made absolute against `home` and resolved
/// lexically: `.` dropped, `..` takes the previous component and never
/// climbs above `/` (so a client's `cd ..` works, and nothing gets above
/// the root it is given). `None` when it holds a NUL.
pub fn sftp_path(home: &str, path: &str) -> Option<String> {
    if path.contains('\0') {
        return None;
    }
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{home}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// `dir/name` for a normalized `dir`.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The folder holding normalized `path` (`/` for `/`).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(at) => &path[..at],
    }
}

/// The last component of normalized `path` (`None` for `/`).
pub fn fs_name(path: &str) -> Option<&str> {
    path.rsplit('/').next().filter(|n| !n.is_empty())
}

/// Where a client's path is in the container: under `root` (a dataset's
/// mount point in its transfer container), or as it is (`root` empty).
pub fn in_container(root: &str, path: &str) -> String {
    if root.is_empty() {
        path.to_string()
    } else if path == "/" {
        root.to_string()
    } else {
        format!("{root}{path}")
    }
}

/// A message from the container, with `root` taken out of its paths (a
/// dataset's user never sees where its transfer container mounts it).
pub fn from_container(root: &str, message: &str) -> String {
    if root.is_empty() {
        return message.to_string();
    }
    message.replace(&format!("{root}/"), "/").replace(root, "/")
}

/// `1536` → `1.5 KiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_split_on_records_and_keep_odd_names() {
        let out = b"/81a4 16 0 0 1700000000 1700000001 root root ./n\nl\n\
                    /41ed 4096 1000 1000 1 2 alice staff ./dir with space\n\
                    /a1ff 7 0 0 1 2 root root ./link\n";
        let e = parse_listing(out);
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["dir with space", "link", "n\nl"]);
        assert_eq!(e[0].kind, Kind::Dir);
        assert_eq!((e[0].uid, e[0].user.as_str()), (1000, "alice"));
        assert_eq!(e[1].kind, Kind::Symlink);
        assert_eq!(e[1].mode_text(), "lrwxrwxrwx");
        assert_eq!(e[2].size, 16);
        assert_eq!(e[2].mtime, 1_700_000_001);
        assert_eq!(e[2].mode_text(), "-rw-r--r--");
        assert!(parse_listing(b"").is_empty());
        assert!(parse_stat("/zz 1 2").is_none());
    }

    #[test]
    fn web_paths_are_absolute_without_dot_components() {
        assert_eq!(web_path("/data//x/").as_deref(), Ok("/data/x"));
        assert_eq!(web_path("/").as_deref(), Ok("/"));
        assert_eq!(web_path("data/x"), Err(BadPath::Relative));
        assert_eq!(web_path("/data/../etc"), Err(BadPath::DotDot));
        assert_eq!(web_path("/data/./x"), Err(BadPath::DotDot));
        assert_eq!(web_path("/data/\0x"), Err(BadPath::Invalid));
        assert_eq!(
            web_path(&format!("/{}", "a".repeat(256))),
            Err(BadPath::Invalid)
        );
        assert!(valid_name("model.ckpt") && valid_name("..."));
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(!valid_name(&"x".repeat(256)));
    }

    #[test]
    fn sftp_paths_resolve_lexically_and_never_climb_above_the_root() {
        assert_eq!(sftp_path("/data", ".").as_deref(), Some("/data"));
        assert_eq!(sftp_path("/data", "").as_deref(), Some("/data"));
        assert_eq!(sftp_path("/data", "a/./b").as_deref(), Some("/data/a/b"));
        assert_eq!(sftp_path("/data", "..").as_deref(), Some("/"));
        assert_eq!(
            sftp_path("/", "../../../etc/passwd").as_deref(),
            Some("/etc/passwd")
        );
        assert_eq!(sftp_path("/data", "/x//y/../z").as_deref(), Some("/x/z"));
        assert_eq!(sftp_path("/", "a\0b"), None);
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/data", "a"), "/data/a");
        assert_eq!(parent("/data/a"), "/data");
        assert_eq!(parent("/data"), "/");
    }

    #[test]
    fn dataset_paths_live_under_their_mount_point() {
        assert_eq!(in_container("/dataset", "/"), "/dataset");
        assert_eq!(
            in_container("/dataset", "/etc/passwd"),
            "/dataset/etc/passwd"
        );
        assert_eq!(in_container("", "/etc/passwd"), "/etc/passwd");
        assert_eq!(
            from_container("/dataset", "rm: can't remove '/dataset/a': Is a directory"),
            "rm: can't remove '/a': Is a directory"
        );
        assert_eq!(from_container("", "/dataset/x"), "/dataset/x");
    }

    #[test]
    fn errors_are_told_apart_by_the_tools_words() {
        let c = |m: &str| FsError::classify(1, m.into());
        assert!(matches!(
            c("cat: write error: No space left on device"),
            FsError::NoSpace(_)
        ));
        assert!(matches!(
            c("mkdir: can't create directory '/x': Read-only file system"),
            FsError::Denied(_)
        ));
        assert!(matches!(
            c("mkdir: can't create directory 'a': File exists"),
            FsError::Exists(_)
        ));
        assert!(matches!(
            c("rmdir: 'a': Directory not empty"),
            FsError::Failed(_)
        ));
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(12), "12 B");
    }
}
