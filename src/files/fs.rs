//! A container's filesystem through the Docker API, for containers without
//! an sshd (or any agent of ours): every operation is a `docker exec` of
//! POSIX `sh` and the tools every image has (busybox or coreutils: `stat`,
//! `find`, `cat`, `dd`, `mv`, `rm`, ...). Paths are always passed as
//! arguments, never spliced into a script. File contents stream through
//! an exec's stdin or stdout: nothing is held in memory beyond a chunk.
//! Each script's status comes last on its stderr, after a NUL (messages
//! never hold one), so no extra call asks dockerd how it ended.

use std::time::Duration;

use bollard::Docker;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;

use super::model::{Entry, FsError};
use crate::docker::DockerError;
use crate::docker::exec::{self, Exec, ExecSpec, Output};

/// How long a metadata operation (stat, list, mkdir, ...) may take.
const OP_WITHIN: Duration = Duration::from_secs(60);
/// The most a listing may return (a directory with very many entries).
const LIST_LIMIT: usize = 64 << 20;
/// How long a failed write waits for the writing process's reason.
const DRAIN_WITHIN: Duration = Duration::from_secs(10);
/// The most of a process's stderr that is kept.
const STDERR_LIMIT: usize = 16 << 10;

/// The `stat -c` format of one entry: a record starts with `/` (which no
/// file name holds), so records split unambiguously on `\n/` even when a
/// name holds line breaks: mode (hex), size, uid, gid, atime, mtime, user,
/// group, then the name.
const STAT_FMT: &str = "/%f %s %u %g %X %Y %U %G %n";

/// One container's filesystem. Every process it starts carries `tag`
/// (the session's, so that the session's end sweeps what is left).
#[derive(Clone)]
pub struct ContainerFs {
    docker: Docker,
    container: String,
    tag: String,
}

/// What a finished script said.
struct Ran {
    out: Vec<u8>,
    status: i32,
    err: String,
}

impl ContainerFs {
    pub fn new(docker: Docker, container: String, tag: String) -> Self {
        Self {
            docker,
            container,
            tag,
        }
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    /// The tag its processes carry.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Ends whatever this filesystem's processes left running (a transfer
    /// cut short), within `within`; whether that is done.
    pub async fn sweep(&self, within: Duration) -> bool {
        match tokio::time::timeout(
            within,
            exec::end_tagged(&self.docker, &self.container, &self.tag),
        )
        .await
        {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                log::warn!(
                    "ending the processes tagged {} in {}: {e}",
                    self.tag,
                    self.container
                );
                false
            }
            Err(_) => false,
        }
    }

    /// Starts `sh -c '( script ); printf "\0%d" $? >&2' sh args...`.
    async fn start(&self, script: &str, args: &[&str]) -> Result<Exec, FsError> {
        let mut argv = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            format!("( {script}\n) ; printf '\\000%d' \"$?\" >&2"),
            "sh".to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let spec = ExecSpec {
            argv,
            tty: false,
            term: None,
            size: None,
            tag: self.tag.clone(),
        };
        exec::start(&self.docker, &self.container, &spec)
            .await
            .map_err(container_error)
    }

    /// Runs a script to its end within [`OP_WITHIN`], keeping at most
    /// `limit` bytes of its stdout.
    async fn run(&self, script: &str, args: &[&str], limit: usize) -> Result<Ran, FsError> {
        let work = async {
            let mut ex = self.start(script, args).await?;
            let _ = ex.input.shutdown().await;
            let mut out = Vec::new();
            let mut err = Vec::new();
            while let Some(item) = ex.output.next().await {
                match item.map_err(FsError::Node)? {
                    Output::Stdout(b) => {
                        if out.len() + b.len() > limit {
                            return Err(FsError::TooLarge);
                        }
                        out.extend_from_slice(&b);
                    }
                    Output::Stderr(b) => keep(&mut err, &b),
                }
            }
            let (status, err) = status_of(&err);
            Ok(Ran { out, status, err })
        };
        tokio::time::timeout(OP_WITHIN, work)
            .await
            .map_err(|_| FsError::Failed("the operation took too long".into()))?
    }

    /// Runs a script that prints nothing; its failure as an error.
    async fn act(&self, script: &str, args: &[&str]) -> Result<(), FsError> {
        let r = self.run(script, args, 0).await?;
        check(r.status, &r.err)
    }

    /// The entry at `path` (`follow`: what a symlink points to).
    pub async fn stat(&self, path: &str, follow: bool) -> Result<Entry, FsError> {
        let fmt = STAT_FMT.trim_end_matches(" %n");
        let script = if follow {
            "stat -L -c \"$2\" -- \"$1\""
        } else {
            "stat -c \"$2\" -- \"$1\""
        };
        let r = self.run(script, &[path, fmt], 4096).await?;
        check(r.status, &r.err)?;
        let text = String::from_utf8_lossy(&r.out);
        let line = text.trim_end_matches('\n');
        super::model::parse_stat(&format!("{line} {}", base_name(path)))
            .ok_or_else(|| FsError::Failed(format!("unexpected stat output: {line}")))
    }

    /// The entries of directory `path` (not `.` and `..`), as `lstat` sees
    /// them (a symlink is listed as one).
    pub async fn list(&self, path: &str) -> Result<Vec<Entry>, FsError> {
        let script = "cd -- \"$1\" || exit 1\n\
             if command -v find >/dev/null 2>&1; then\n\
               exec find . -mindepth 1 -maxdepth 1 -exec stat -c \"$2\" -- {} +\n\
             else\n\
               stat -c \"$2\" -- * .[!.]* ..?* 2>/dev/null; exit 0\n\
             fi";
        let r = self.run(script, &[path, STAT_FMT], LIST_LIMIT).await?;
        check(r.status, &r.err)?;
        Ok(super::model::parse_listing(&r.out))
    }

    /// Where symlink `path` points.
    pub async fn readlink(&self, path: &str) -> Result<String, FsError> {
        let r = self.run("readlink -- \"$1\"", &[path], 64 << 10).await?;
        check(r.status, &r.err)?;
        Ok(String::from_utf8_lossy(&r.out)
            .trim_end_matches('\n')
            .to_string())
    }

    /// A new directory (with `mode`, octal, when given).
    pub async fn mkdir(&self, path: &str, mode: Option<u32>) -> Result<(), FsError> {
        match mode {
            Some(m) => {
                let m = format!("{:o}", m & 0o7777);
                self.act("mkdir -m \"$2\" -- \"$1\"", &[path, &m]).await
            }
            None => self.act("mkdir -- \"$1\"", &[path]).await,
        }
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, path: &str) -> Result<(), FsError> {
        self.act("rmdir -- \"$1\"", &[path]).await
    }

    /// Removes a file or symlink (never a directory).
    pub async fn remove(&self, path: &str) -> Result<(), FsError> {
        self.act(
            "if [ -d \"$1\" ] && [ ! -L \"$1\" ]; then echo \"$1: Is a directory\" >&2; exit 1; fi\n\
             rm -- \"$1\"",
            &[path],
        )
        .await
    }

    /// Removes `path` and, for a directory, everything in it.
    pub async fn remove_all(&self, path: &str) -> Result<(), FsError> {
        self.act(
            "if [ ! -e \"$1\" ] && [ ! -L \"$1\" ]; then echo \"$1: No such file or directory\" >&2; exit 1; fi\n\
             rm -rf -- \"$1\"",
            &[path],
        )
        .await
    }

    /// Renames `from` to `to`; unless `replace`, refuses an existing `to`
    /// (SFTP's rename; `replace` is POSIX rename, `posix-rename@openssh.com`).
    pub async fn rename(&self, from: &str, to: &str, replace: bool) -> Result<(), FsError> {
        let script = if replace {
            "mv -f -T -- \"$1\" \"$2\""
        } else {
            "if [ -e \"$2\" ] || [ -L \"$2\" ]; then echo \"$2: File exists\" >&2; exit 1; fi\n\
             if [ ! -e \"$1\" ] && [ ! -L \"$1\" ]; then echo \"$1: No such file or directory\" >&2; exit 1; fi\n\
             mv -T -- \"$1\" \"$2\""
        };
        self.act(script, &[from, to]).await
    }

    /// A symlink at `link` pointing to `target` (taken as written).
    pub async fn symlink(&self, target: &str, link: &str) -> Result<(), FsError> {
        self.act("ln -s -- \"$1\" \"$2\"", &[target, link]).await
    }

    /// Changes what `attrs` holds: mode, owner, times, size.
    pub async fn setstat(&self, path: &str, a: &SetAttrs) -> Result<(), FsError> {
        if let Some(size) = a.size {
            self.act("truncate -s \"$2\" -- \"$1\"", &[path, &size.to_string()])
                .await?;
        }
        if let Some(m) = a.mode {
            let m = format!("{:o}", m & 0o7777);
            self.act("chmod \"$2\" -- \"$1\"", &[path, &m]).await?;
        }
        if let Some((uid, gid)) = a.owner {
            let o = format!("{uid}:{gid}");
            self.act("chown \"$2\" -- \"$1\"", &[path, &o]).await?;
        }
        if let Some((atime, mtime)) = a.times {
            let (at, mt) = (format!("@{atime}"), format!("@{mtime}"));
            self.act(
                "touch -c -a -d \"$2\" -- \"$1\" && touch -c -m -d \"$3\" -- \"$1\"",
                &[path, &at, &mt],
            )
            .await?;
        }
        Ok(())
    }

    /// Bytes used under `path` (`du -sk`, in bytes).
    pub async fn usage(&self, path: &str) -> Result<u64, FsError> {
        let r = self.run("du -sk -- \"$1\"", &[path], 4096).await?;
        check(r.status, &r.err)?;
        let text = String::from_utf8_lossy(&r.out);
        let kib: u64 = text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| FsError::Failed(format!("unexpected du output: {text}")))?;
        Ok(kib * 1024)
    }

    /// Opens `path` for reading from `offset`.
    pub async fn read(&self, path: &str, offset: u64) -> Result<Reader, FsError> {
        let script = "if [ -d \"$1\" ]; then echo \"$1: Is a directory\" >&2; exit 1; fi\n\
             exec 3<\"$1\" || exit 1\n\
             if [ \"$2\" != 0 ]; then dd bs=1 skip=\"$2\" count=0 <&3 2>/dev/null || exit 1; fi\n\
             printf R\n\
             exec cat <&3";
        let ex = self.start(script, &[path, &offset.to_string()]).await?;
        let mut r = Reader {
            ex,
            pending: Bytes::new(),
            err: Vec::new(),
            pos: offset,
            ended: false,
        };
        r.handshake().await?;
        Ok(r)
    }

    /// Opens `path` for writing (see [`WriteMode`]); `mode` is given to a
    /// file it creates. The first [`Writer::write`] says where to start.
    /// When writing fails (a full disk), the script says `F` and reads the
    /// rest of its input away: dockerd would otherwise reset the
    /// connection, losing the reason.
    pub async fn write(
        &self,
        path: &str,
        how: WriteMode,
        mode: Option<u32>,
    ) -> Result<Writer, FsError> {
        let script = "if [ -d \"$1\" ]; then echo \"$1: Is a directory\" >&2; exit 1; fi\n\
             if [ -e \"$1\" ] || [ -L \"$1\" ]; then new=0; else new=1; fi\n\
             case \"$2\" in\n\
               truncate) exec 3>\"$1\" ;;\n\
               exclusive) set -C; exec 3>\"$1\" ;;\n\
               create) exec 3<>\"$1\" ;;\n\
               append) exec 3>>\"$1\" ;;\n\
               *) if [ \"$new\" = 1 ]; then echo \"$1: No such file or directory\" >&2; exit 1; fi; exec 3<>\"$1\" ;;\n\
             esac\n\
             if [ \"$new\" = 1 ] && [ -n \"$3\" ]; then chmod \"$3\" -- \"$1\" || exit 1; fi\n\
             printf R\n\
             fail() { printf F; cat >/dev/null; exit 1; }\n\
             IFS= read -r off || exit 0\n\
             if [ \"$off\" != 0 ]; then dd bs=1 seek=\"$off\" count=0 conv=notrunc 1>&3 2>/dev/null || fail; fi\n\
             cat >&3 || fail";
        let m = mode
            .map(|m| format!("{:o}", m & 0o7777))
            .unwrap_or_default();
        let ex = self.start(script, &[path, how.as_str(), &m]).await?;
        let mut w = Writer {
            fs: self.clone(),
            path: path.to_string(),
            ex,
            err: Vec::new(),
            pos: None,
            append: how == WriteMode::Append,
            ended: None,
        };
        w.handshake().await?;
        Ok(w)
    }
}

/// How a file opened for writing is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Created if missing, emptied if not.
    Truncate,
    /// Created; refused if it exists.
    Exclusive,
    /// Created if missing, kept as it is otherwise (resume, random writes).
    Create,
    /// Every write goes to its end.
    Append,
    /// Must exist; kept as it is.
    Existing,
}

impl WriteMode {
    fn as_str(self) -> &'static str {
        match self {
            WriteMode::Truncate => "truncate",
            WriteMode::Exclusive => "exclusive",
            WriteMode::Create => "create",
            WriteMode::Append => "append",
            WriteMode::Existing => "existing",
        }
    }
}

/// What a setstat changes (each `None`: left as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttrs {
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub owner: Option<(u32, u32)>,
    pub times: Option<(u32, u32)>,
}

/// A file being read: bytes from its position on, as they come.
pub struct Reader {
    ex: Exec,
    pending: Bytes,
    err: Vec<u8>,
    pos: u64,
    ended: bool,
}

impl Reader {
    /// Waits for the script's `R` (the file is open) or its failure.
    async fn handshake(&mut self) -> Result<(), FsError> {
        loop {
            match self.ex.output.next().await {
                Some(Ok(Output::Stdout(b))) if !b.is_empty() => {
                    self.pending = b.slice(1..);
                    return Ok(());
                }
                Some(Ok(Output::Stdout(_))) => {}
                Some(Ok(Output::Stderr(b))) => keep(&mut self.err, &b),
                Some(Err(e)) => return Err(FsError::Node(e)),
                None => {
                    let (status, err) = status_of(&self.err);
                    check(status, &err)?;
                    return Err(FsError::Failed("the file could not be opened".into()));
                }
            }
        }
    }

    /// Where the next byte comes from.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Appends up to `len` bytes from the position on to `out` (fewer
    /// only at the end) and says how many; 0 at the end of the file.
    pub async fn read_into(&mut self, len: usize, out: &mut BytesMut) -> Result<usize, FsError> {
        let mut have = 0;
        while have < len {
            if self.pending.is_empty() && !self.next().await? {
                break;
            }
            let take = (len - have).min(self.pending.len());
            out.extend_from_slice(&self.pending.split_to(take));
            have += take;
        }
        self.pos += have as u64;
        Ok(have)
    }

    /// Up to `len` bytes from the position on, as many as came at once
    /// (no copy); `None` at the end of the file.
    pub async fn read_some(&mut self, len: usize) -> Result<Option<Bytes>, FsError> {
        if self.pending.is_empty() && !self.next().await? {
            return Ok(None);
        }
        let part = self.pending.split_to(len.min(self.pending.len()));
        self.pos += part.len() as u64;
        Ok(Some(part))
    }

    /// Fills `pending`; false at the end (an error if the script failed).
    async fn next(&mut self) -> Result<bool, FsError> {
        if self.ended {
            return Ok(false);
        }
        loop {
            match self.ex.output.next().await {
                Some(Ok(Output::Stdout(b))) if !b.is_empty() => {
                    self.pending = b;
                    return Ok(true);
                }
                Some(Ok(Output::Stdout(_))) => {}
                Some(Ok(Output::Stderr(b))) => keep(&mut self.err, &b),
                Some(Err(e)) => return Err(FsError::Node(e)),
                None => {
                    self.ended = true;
                    let (status, err) = status_of(&self.err);
                    check(status, &err)?;
                    return Ok(false);
                }
            }
        }
    }
}

/// A file being written: bytes go to the script's stdin as they come.
pub struct Writer {
    fs: ContainerFs,
    path: String,
    ex: Exec,
    err: Vec<u8>,
    /// Where the next byte lands (`None`: nothing written yet).
    pos: Option<u64>,
    append: bool,
    /// The script ended early (it only does on a failure).
    ended: Option<FsError>,
}

impl Writer {
    async fn handshake(&mut self) -> Result<(), FsError> {
        loop {
            match self.ex.output.next().await {
                Some(Ok(Output::Stdout(b))) if !b.is_empty() => return Ok(()),
                Some(Ok(Output::Stdout(_))) => {}
                Some(Ok(Output::Stderr(b))) => keep(&mut self.err, &b),
                Some(Err(e)) => return Err(FsError::Node(e)),
                None => {
                    let (status, err) = status_of(&self.err);
                    check(status, &err)?;
                    return Err(FsError::Failed("the file could not be opened".into()));
                }
            }
        }
    }

    /// Takes what the script said so far without waiting; its failure
    /// once it said `F` (then it is stopped and its reason read) or ended.
    async fn poll_end(&mut self) -> Result<(), FsError> {
        if let Some(e) = &self.ended {
            return Err(e.clone());
        }
        let mut failed = false;
        while let Some(item) = self.ex.output.next().now_or_never() {
            match item {
                Some(Ok(Output::Stderr(b))) => keep(&mut self.err, &b),
                Some(Ok(Output::Stdout(b))) => failed |= b.contains(&b'F'),
                Some(Err(e)) => {
                    self.ended = Some(FsError::Node(e));
                    break;
                }
                None => {
                    let (status, err) = status_of(&self.err);
                    let e = check(status, &err).err().unwrap_or_else(|| {
                        FsError::Failed("the writing process ended early".into())
                    });
                    self.ended = Some(e);
                    break;
                }
            }
        }
        if failed && self.ended.is_none() {
            let _ = self.ex.input.shutdown().await;
            let said = tokio::time::timeout(DRAIN_WITHIN, self.drain()).await;
            self.ended = Some(match said {
                Ok(Err(e)) => e,
                Ok(Ok(())) | Err(_) => FsError::Failed("writing failed".into()),
            });
        }
        match &self.ended {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Writes `data` at `offset` (appended, for a file opened to append).
    /// A write elsewhere than where the last one ended starts over there.
    pub async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        self.poll_end().await?;
        match self.pos {
            None => {
                self.send(format!("{offset}\n").as_bytes()).await?;
                self.pos = Some(offset);
            }
            Some(p) if p != offset && !self.append => {
                self.reopen(offset).await?;
            }
            Some(_) => {}
        }
        self.send(data).await?;
        self.pos = self.pos.map(|p| p + data.len() as u64);
        Ok(())
    }

    async fn send(&mut self, data: &[u8]) -> Result<(), FsError> {
        let written = tokio::time::timeout(OP_WITHIN, self.ex.input.write_all(data)).await;
        let written = written.unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "the container took no data for a minute",
            ))
        });
        if let Err(e) = written {
            // The script ended (that is why its input closed): its reason
            // is the error, once its output says it.
            let said = tokio::time::timeout(DRAIN_WITHIN, self.drain()).await;
            let e = match said {
                Ok(Err(reason)) => reason,
                Ok(Ok(())) | Err(_) => FsError::Failed(format!("writing failed: {e}")),
            };
            self.ended = Some(e.clone());
            return Err(e);
        }
        Ok(())
    }

    /// Reads what is left of the script's output: its failure, if any.
    async fn drain(&mut self) -> Result<(), FsError> {
        loop {
            match self.ex.output.next().await {
                Some(Ok(Output::Stderr(b))) => keep(&mut self.err, &b),
                Some(Ok(Output::Stdout(_))) => {}
                Some(Err(e)) => return Err(FsError::Node(e)),
                None => break,
            }
        }
        let (status, err) = status_of(&self.err);
        check(status, &err)
    }

    /// Finishes what was written and continues at `offset`.
    async fn reopen(&mut self, offset: u64) -> Result<(), FsError> {
        let next = self.fs.write(&self.path, WriteMode::Existing, None).await?;
        let done = std::mem::replace(self, next);
        done.finish().await?;
        self.send(format!("{offset}\n").as_bytes()).await?;
        self.pos = Some(offset);
        Ok(())
    }

    /// Closes the file: Ok once everything written is in it; the error
    /// that stopped it otherwise (a full disk, say).
    pub async fn finish(mut self) -> Result<(), FsError> {
        self.poll_end().await?;
        let _ = self.ex.input.shutdown().await;
        self.drain().await
    }
}

/// Appends `b` to `buf`, keeping the last [`STDERR_LIMIT`] bytes.
fn keep(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(b);
    if buf.len() > STDERR_LIMIT {
        let cut = buf.len() - STDERR_LIMIT;
        buf.drain(..cut);
    }
}

/// The status after the last NUL of a script's stderr, and its message
/// before it (-1 when the script ended without saying: it was killed).
fn status_of(err: &[u8]) -> (i32, String) {
    match err.iter().rposition(|&b| b == 0) {
        Some(at) => {
            let status = String::from_utf8_lossy(&err[at + 1..])
                .trim()
                .parse()
                .unwrap_or(-1);
            (status, String::from_utf8_lossy(&err[..at]).into_owned())
        }
        None => (-1, String::from_utf8_lossy(err).into_owned()),
    }
}

/// Ok for status 0; otherwise the error its message describes.
fn check(status: i32, err: &str) -> Result<(), FsError> {
    if status == 0 {
        return Ok(());
    }
    let message = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    if status == -1 && message.is_empty() {
        return Err(FsError::Failed(
            "the process in the container ended without a status (killed?)".into(),
        ));
    }
    Err(FsError::classify(
        status,
        if message.is_empty() {
            format!("failed with status {status}")
        } else {
            message
        },
    ))
}

/// The last component of `path` (`/` for the root).
pub fn base_name(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit('/').next() {
        Some("") | None => "/",
        Some(b) => b,
    }
}

/// A failure to reach the container: not running, gone, or its node.
fn container_error(e: DockerError) -> FsError {
    match &e {
        DockerError::Api(m) if m.contains("is not running") || m.starts_with("409") => {
            FsError::NotRunning
        }
        DockerError::Api(m) if m.starts_with("404") => FsError::NotRunning,
        _ => FsError::Node(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_come_last_on_stderr() {
        assert_eq!(status_of(b"oops\n\x000"), (0, "oops\n".to_string()));
        assert_eq!(
            status_of(b"cat: write error: No space left on device\n\x001"),
            (1, "cat: write error: No space left on device\n".to_string())
        );
        assert_eq!(status_of(b"killed"), (-1, "killed".to_string()));
        assert!(check(0, "").is_ok());
        assert!(matches!(
            check(1, "cat: write error: No space left on device\n"),
            Err(FsError::NoSpace(m)) if m.contains("No space")
        ));
        assert!(matches!(
            check(1, "sh: can't open '/x/y': No such file or directory\n"),
            Err(FsError::NotFound(_))
        ));
        assert!(matches!(check(-1, ""), Err(FsError::Failed(_))));
        assert_eq!(base_name("/data/a.bin"), "a.bin");
        assert_eq!(base_name("/"), "/");
        assert_eq!(base_name("/data/"), "data");
    }
}
