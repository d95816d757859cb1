//! The SFTP protocol (version 3, as OpenSSH's `sftp` and `scp` speak it,
//! with `posix-rename@openssh.com` and `limits@openssh.com`) over a
//! place's files. `russh-sftp` parses and writes the packets; this answers
//! them, one at a time and in order, with [`super::fs`]. Each operation
//! asks the permission record of its kind ([`super::authorize`]); uploads,
//! downloads, deletes, renames, new folders and symlinks are logged with
//! the session, downloads and uploads with the SHA-256 of what passed.
//!
//! Paths are resolved lexically against the place's home (`/data`, or a
//! dataset's `/`): `..` never climbs above `/`, which for a dataset is its
//! volume. Everything shown to the client (messages, `ls -l` lines) has
//! its control characters escaped.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use russh_sftp::extensions::LimitsExtension;
use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status,
    StatusCode, Version,
};
use sha2::{Digest, Sha256};

use super::fs::{ContainerFs, Reader, SetAttrs, WriteMode, Writer};
use super::model::{self, Entry, FsError};
use super::{Doer, Done, FileOp, FileTarget, Place};
use crate::app::App;
use crate::error::AppError;
use crate::escape::for_terminal;

/// The largest packet a client may send (OpenSSH's own limit, 256 KiB,
/// and room for the header).
pub const MAX_PACKET: u32 = 256 * 1024 + 1024;
/// What `limits@openssh.com` offers: read and write lengths, open handles.
const MAX_IO: u64 = 255 * 1024;
const MAX_HANDLES: usize = 64;
/// Entries per `SSH_FXP_NAME` of a directory listing.
const NAMES_PER_READDIR: usize = 128;

const POSIX_RENAME: &str = "posix-rename@openssh.com";
const LIMITS: &str = "limits@openssh.com";

/// `SSH_FXP_DATA` and `SSH_FXP_WRITE`'s packet types.
const SSH_FXP_DATA: u8 = 103;
const SSH_FXP_WRITE: u8 = 6;
/// A data reply's bytes before its data: length, type, id, data length.
const DATA_HEADER: usize = 4 + 1 + 4 + 4;

/// A write request read in place: its data is a slice of the packet.
struct WriteRequest {
    id: u32,
    handle: String,
    offset: u64,
    data: Bytes,
}

impl WriteRequest {
    /// `raw` (type and body) when it is a well-formed write; anything
    /// else (another type, a malformed write) takes the general path.
    fn parse(raw: &Bytes) -> Option<Self> {
        let mut r = raw.clone();
        if r.first() != Some(&SSH_FXP_WRITE) || r.len() < 1 + 4 + 4 {
            return None;
        }
        r.advance(1);
        let id = r.get_u32();
        let n = r.get_u32() as usize;
        if r.len() < n + 8 + 4 {
            return None;
        }
        let handle = String::from_utf8(r.split_to(n).to_vec()).ok()?;
        let offset = r.get_u64();
        let n = r.get_u32() as usize;
        (r.len() == n).then_some(Self {
            id,
            handle,
            offset,
            data: r,
        })
    }
}

/// Why a request failed: the status and what the client is told.
#[derive(Debug)]
struct Fail {
    code: StatusCode,
    message: String,
}

impl Fail {
    fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

type Answer<T> = Result<T, Fail>;

/// A file being read or written, with what passed so far.
struct Transfer<T> {
    /// The client's path.
    path: String,
    io: Option<T>,
    tally: Sha256,
    bytes: u64,
    started: i64,
    /// What stopped it (the file then answers only this).
    error: Option<String>,
    /// Bytes were asked for (a download is logged only then).
    used: bool,
}

impl<T> Transfer<T> {
    fn new(path: String, io: T) -> Self {
        Self {
            path,
            io: Some(io),
            tally: Sha256::new(),
            bytes: 0,
            started: crate::db::now(),
            error: None,
            used: false,
        }
    }

    fn done(&self, op: &'static str) -> Done {
        Done {
            op,
            path: self.path.clone(),
            new_path: None,
            transferred: Some((self.bytes, hex::encode(self.tally.clone().finalize()))),
            started: self.started,
        }
    }
}

enum Open {
    Dir { entries: Vec<Entry>, sent: usize },
    Read(Transfer<Reader>),
    Write(Transfer<Writer>),
}

/// One SFTP conversation.
pub struct Server {
    app: App,
    doer: Doer,
    place: Place,
    fs: ContainerFs,
    /// Whether the user may read a node's details in messages.
    node_detail: bool,
    handles: HashMap<String, Open>,
    next: u64,
    /// Where read replies are put together (see [`Server::read`]).
    pool: BytesMut,
}

fn ok(id: u32) -> Packet {
    Packet::Status(Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    })
}

fn failed(id: u32, f: Fail) -> Packet {
    Packet::Status(Status {
        id,
        status_code: f.code,
        error_message: for_terminal(&f.message).into_owned(),
        language_tag: "en-US".into(),
    })
}

/// The id of a request that did not parse (bytes after the type), or 0.
pub fn request_id(raw: &[u8]) -> u32 {
    match raw.get(1..5) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// The answer to a packet that does not parse.
pub fn bad_message(raw: &[u8]) -> Packet {
    failed(
        request_id(raw),
        Fail::new(StatusCode::BadMessage, "malformed request"),
    )
}

fn attrs_of(e: &Entry) -> FileAttributes {
    FileAttributes {
        size: Some(e.size),
        uid: Some(e.uid),
        user: None,
        gid: Some(e.gid),
        group: None,
        permissions: Some(e.mode),
        atime: u32::try_from(e.atime).ok(),
        mtime: u32::try_from(e.mtime).ok(),
    }
}

/// An `ls -l` line for `e` (what `sftp`'s `ls -l` prints), escaped.
pub fn long_name(e: &Entry, now: i64) -> String {
    let when = time::OffsetDateTime::from_unix_timestamp(e.mtime)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let recent = (now - e.mtime).abs() < 182 * 24 * 3600;
    let date = if recent {
        when.format(time::macros::format_description!(
            "[month repr:short] [day padding:space] [hour]:[minute]"
        ))
    } else {
        when.format(time::macros::format_description!(
            "[month repr:short] [day padding:space]  [year]"
        ))
    }
    .unwrap_or_default();
    format!(
        "{} {:>3} {:<8} {:<8} {:>8} {date} {}",
        e.mode_text(),
        1,
        for_terminal(&e.user),
        for_terminal(&e.group),
        e.size,
        for_terminal(&e.name)
    )
}

impl Server {
    pub fn new(app: App, doer: Doer, place: Place, fs: ContainerFs, node_detail: bool) -> Self {
        Self {
            app,
            doer,
            place,
            fs,
            node_detail,
            handles: HashMap::new(),
            next: 0,
            pool: BytesMut::new(),
        }
    }

    /// Answers one request as it came (its type and body, without the
    /// length), encoded. Reads and writes, the bulk of a transfer, skip
    /// the packet types: a write's data is a slice of `raw` and a read's
    /// reply is put together where its bytes are gathered, so neither is
    /// copied once more.
    pub async fn answer(&mut self, raw: Bytes) -> Result<Bytes, String> {
        if let Some(w) = WriteRequest::parse(&raw) {
            let answer = match self.write(&w.handle, w.offset, &w.data).await {
                Ok(()) => ok(w.id),
                Err(f) => failed(w.id, f),
            };
            return Bytes::try_from(answer).map_err(|e| e.to_string());
        }
        let answer = match Packet::try_from(&mut raw.clone()) {
            Ok(Packet::Read(r)) => match self.read(r.id, &r.handle, r.offset, r.len).await {
                Ok(Some(framed)) => return Ok(framed),
                Ok(None) => failed(r.id, Fail::new(StatusCode::Eof, "end of file")),
                Err(f) => failed(r.id, f),
            },
            Ok(p) => self.handle(p).await,
            Err(_) => bad_message(&raw),
        };
        Bytes::try_from(answer).map_err(|e| e.to_string())
    }

    /// Answers one request.
    pub async fn handle(&mut self, packet: Packet) -> Packet {
        let id = packet.get_request_id();
        let answer = match packet {
            Packet::Init(_) => return Packet::Version(version()),
            Packet::Open(o) => self
                .open(&o.filename, o.pflags, &o.attrs)
                .await
                .map(|h| handle(id, h)),
            Packet::Close(c) => self.close(&c.handle).await.map(|()| ok(id)),
            Packet::Read(r) => self
                .read(id, &r.handle, r.offset, r.len)
                .await
                .map(|d| match d {
                    Some(framed) => Packet::Data(Data {
                        id,
                        data: framed[DATA_HEADER..].to_vec(),
                    }),
                    None => failed(id, Fail::new(StatusCode::Eof, "end of file")),
                }),
            Packet::Write(w) => self
                .write(&w.handle, w.offset, &w.data)
                .await
                .map(|()| ok(id)),
            Packet::Lstat(s) => self.stat(&s.path, false).await.map(|a| attrs(id, a)),
            Packet::Stat(s) => self.stat(&s.path, true).await.map(|a| attrs(id, a)),
            Packet::Fstat(s) => match self.handle_path(&s.handle) {
                Ok(p) => self.stat_abs(&p, true).await.map(|a| attrs(id, a)),
                Err(f) => Err(f),
            },
            Packet::SetStat(s) => self.setstat(&s.path, &s.attrs).await.map(|()| ok(id)),
            Packet::FSetStat(s) => self.fsetstat(&s.handle, &s.attrs).await.map(|()| ok(id)),
            Packet::OpenDir(o) => self.opendir(&o.path).await.map(|h| handle(id, h)),
            Packet::ReadDir(r) => self
                .readdir(&r.handle)
                .map(|files| Packet::Name(Name { id, files })),
            Packet::Remove(r) => self.remove(&r.filename, false).await.map(|()| ok(id)),
            Packet::RmDir(r) => self.remove(&r.path, true).await.map(|()| ok(id)),
            Packet::MkDir(m) => self
                .mkdir(&m.path, m.attrs.permissions)
                .await
                .map(|()| ok(id)),
            Packet::RealPath(r) => self.path(&r.path).map(|p| {
                Packet::Name(Name {
                    id,
                    files: vec![File {
                        filename: p.clone(),
                        longname: p,
                        attrs: FileAttributes::default(),
                    }],
                })
            }),
            Packet::Rename(r) => self
                .rename(&r.oldpath, &r.newpath, false)
                .await
                .map(|()| ok(id)),
            Packet::ReadLink(r) => self.readlink(&r.path).await.map(|t| {
                Packet::Name(Name {
                    id,
                    files: vec![File {
                        filename: t.clone(),
                        longname: t,
                        attrs: FileAttributes::default(),
                    }],
                })
            }),
            // OpenSSH sends the link's target first (its own order, kept by
            // every client): the first path is what the link points to.
            Packet::Symlink(s) => self
                .symlink(&s.linkpath, &s.targetpath)
                .await
                .map(|()| ok(id)),
            Packet::Extended(x) => self.extended(id, &x.request, x.data).await,
            _ => Err(Fail::new(StatusCode::OpUnsupported, "not a request")),
        };
        answer.unwrap_or_else(|f| failed(id, f))
    }

    /// Closes what is still open (the client left without closing): an
    /// upload keeps what arrived, and both are logged as interrupted.
    pub async fn finish(&mut self) {
        let why = "the connection ended before the file was closed".to_string();
        for (_, open) in std::mem::take(&mut self.handles) {
            match open {
                Open::Write(mut t) => {
                    if let Some(w) = t.io.take() {
                        let _ = w.finish().await;
                    }
                    let done = t.done("upload");
                    super::log(&self.app, &self.doer, &self.place, done, Err(why.clone())).await;
                }
                Open::Read(t) if t.used => {
                    let done = t.done("download");
                    super::log(&self.app, &self.doer, &self.place, done, Err(why.clone())).await;
                }
                Open::Read(_) | Open::Dir { .. } => {}
            }
        }
    }

    /// A client path made absolute and normalized (see the module doc).
    fn path(&self, raw: &str) -> Answer<String> {
        model::sftp_path(&self.place.home, raw)
            .ok_or_else(|| Fail::new(StatusCode::BadMessage, "the path holds a NUL byte"))
    }

    fn at(&self, path: &str) -> String {
        self.place.in_container(path)
    }

    /// The failure of a file operation as the client is told it.
    fn fs_fail(&self, e: FsError) -> Fail {
        let said = self.place.say(&e);
        match e {
            FsError::NotFound(_) => Fail::new(StatusCode::NoSuchFile, said),
            FsError::Denied(_) => Fail::new(StatusCode::PermissionDenied, said),
            FsError::Exists(_)
            | FsError::NoSpace(_)
            | FsError::Failed(_)
            | FsError::TooLarge
            | FsError::NotRunning => Fail::new(StatusCode::Failure, said),
            FsError::Node(d) => Fail::new(
                StatusCode::Failure,
                crate::error::docker_error(d).user_text(self.node_detail),
            ),
        }
    }

    /// Asks the record of `op`; a refusal of a logged operation is logged.
    async fn allow(&mut self, op: FileOp, logged: Option<Done>) -> Answer<()> {
        match super::authorize(&self.app, &self.doer.user, &self.place, op).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(done) = logged {
                    super::log(
                        &self.app,
                        &self.doer,
                        &self.place,
                        done,
                        Err(super::DENIED.into()),
                    )
                    .await;
                }
                Err(match e {
                    AppError::Forbidden if !self.place.writable && super::changes(op) => Fail::new(
                        StatusCode::PermissionDenied,
                        "permission denied: this dataset is read-only for you (只读数据集)",
                    ),
                    AppError::Forbidden => Fail::new(
                        StatusCode::PermissionDenied,
                        format!(
                            "permission denied: your role may not {} here (无权操作)",
                            op.as_str()
                        ),
                    ),
                    AppError::Unauthenticated => Fail::new(
                        StatusCode::PermissionDenied,
                        crate::sessions::model::ACCESS_REVOKED_MESSAGE,
                    ),
                    other => Fail::new(StatusCode::Failure, other.user_text(self.node_detail)),
                })
            }
        }
    }

    /// Runs a logged change: allowed, done, logged with its outcome.
    async fn logged<F, Fut>(&mut self, op: FileOp, done: Done, work: F) -> Answer<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), FsError>>,
    {
        self.allow(op, Some(done.clone())).await?;
        match work().await {
            Ok(()) => {
                super::log(&self.app, &self.doer, &self.place, done, Ok(())).await;
                Ok(())
            }
            Err(e) => {
                super::log(
                    &self.app,
                    &self.doer,
                    &self.place,
                    done,
                    Err(self.place.say(&e)),
                )
                .await;
                Err(self.fs_fail(e))
            }
        }
    }

    fn new_handle(&mut self, open: Open) -> Answer<String> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(Fail::new(StatusCode::Failure, "too many open files"));
        }
        self.next += 1;
        let h = self.next.to_string();
        self.handles.insert(h.clone(), open);
        Ok(h)
    }

    fn handle_path(&self, h: &str) -> Answer<String> {
        match self.handles.get(h) {
            Some(Open::Read(t)) => Ok(t.path.clone()),
            Some(Open::Write(t)) => Ok(t.path.clone()),
            Some(Open::Dir { .. }) | None => Err(Fail::new(StatusCode::Failure, "no such handle")),
        }
    }

    async fn open(
        &mut self,
        raw: &str,
        flags: OpenFlags,
        attrs: &FileAttributes,
    ) -> Answer<String> {
        let path = self.path(raw)?;
        let writes = flags.contains(OpenFlags::WRITE) || flags.contains(OpenFlags::APPEND);
        if !writes {
            self.allow(FileOp::Download, Some(Done::new("download", &path)))
                .await?;
            let reader = match self.fs.read(&self.at(&path), 0).await {
                Ok(r) => r,
                Err(e) => {
                    let done = Done::new("download", &path);
                    super::log(
                        &self.app,
                        &self.doer,
                        &self.place,
                        done,
                        Err(self.place.say(&e)),
                    )
                    .await;
                    return Err(self.fs_fail(e));
                }
            };
            return self.new_handle(Open::Read(Transfer::new(path, reader)));
        }
        self.allow(FileOp::Upload, Some(Done::new("upload", &path)))
            .await?;
        let how = if flags.contains(OpenFlags::CREATE) && flags.contains(OpenFlags::EXCLUDE) {
            WriteMode::Exclusive
        } else if flags.contains(OpenFlags::TRUNCATE) {
            WriteMode::Truncate
        } else if flags.contains(OpenFlags::APPEND) {
            WriteMode::Append
        } else if flags.contains(OpenFlags::CREATE) {
            WriteMode::Create
        } else {
            WriteMode::Existing
        };
        let mode = attrs.permissions.map(|p| p & 0o7777);
        match self.fs.write(&self.at(&path), how, mode).await {
            Ok(w) => self.new_handle(Open::Write(Transfer::new(path, w))),
            Err(e) => {
                let done = Done::new("upload", &path);
                super::log(
                    &self.app,
                    &self.doer,
                    &self.place,
                    done,
                    Err(self.place.say(&e)),
                )
                .await;
                Err(self.fs_fail(e))
            }
        }
    }

    async fn close(&mut self, h: &str) -> Answer<()> {
        let open = self
            .handles
            .remove(h)
            .ok_or_else(|| Fail::new(StatusCode::Failure, "no such handle"))?;
        match open {
            Open::Dir { .. } => Ok(()),
            Open::Read(t) => {
                if t.used {
                    let done = t.done("download");
                    let r = t.error.clone().map_or(Ok(()), Err);
                    super::log(&self.app, &self.doer, &self.place, done, r).await;
                }
                Ok(())
            }
            Open::Write(mut t) => {
                let finished = match t.io.take() {
                    Some(w) => w.finish().await.map_err(|e| self.place.say(&e)),
                    None => Err(t.error.clone().unwrap_or_else(|| "the file failed".into())),
                };
                let r = match (&t.error, finished) {
                    (Some(e), _) => Err(e.clone()),
                    (None, r) => r,
                };
                let done = t.done("upload");
                super::log(&self.app, &self.doer, &self.place, done, r.clone()).await;
                r.map_err(|m| Fail::new(StatusCode::Failure, m))
            }
        }
    }

    /// Request `id`'s reply, whole (`SSH_FXP_DATA` with its length): the
    /// bytes are gathered into the pool behind room for the header.
    async fn read(&mut self, id: u32, h: &str, offset: u64, len: u32) -> Answer<Option<Bytes>> {
        let len = (len as usize).min(MAX_IO as usize);
        let fs = self.fs.clone();
        let place = self.place.clone();
        let Some(Open::Read(t)) = self.handles.get_mut(h) else {
            return Err(Fail::new(StatusCode::Failure, "no such handle"));
        };
        t.used = true;
        if let Some(e) = &t.error {
            return Err(Fail::new(StatusCode::Failure, e.clone()));
        }
        // A read elsewhere than where the last one ended (a resumed
        // download, say) starts reading there.
        if t.io.as_ref().is_none_or(|r| r.position() != offset) {
            t.io = None;
            match fs.read(&place.in_container(&t.path), offset).await {
                Ok(r) => t.io = Some(r),
                Err(e) => {
                    t.error = Some(place.say(&e));
                    return Err(self.fs_fail(e));
                }
            }
        }
        let Some(Open::Read(t)) = self.handles.get_mut(h) else {
            return Err(Fail::new(StatusCode::Failure, "no such handle"));
        };
        let Some(reader) = t.io.as_mut() else {
            return Err(Fail::new(StatusCode::Failure, "no such handle"));
        };
        self.pool.clear();
        self.pool.reserve(DATA_HEADER + len);
        self.pool.extend_from_slice(&[0; DATA_HEADER]);
        match reader.read_into(len, &mut self.pool).await {
            Ok(0) => {
                self.pool.clear();
                Ok(None)
            }
            Ok(n) => {
                t.tally.update(&self.pool[DATA_HEADER..]);
                t.bytes += n as u64;
                let mut header = &mut self.pool[..DATA_HEADER];
                // The length counts the type, the id and the data's length.
                header.put_u32((DATA_HEADER - 4 + n) as u32);
                header.put_u8(SSH_FXP_DATA);
                header.put_u32(id);
                header.put_u32(n as u32);
                Ok(Some(self.pool.split().freeze()))
            }
            Err(e) => {
                self.pool.clear();
                t.error = Some(place.say(&e));
                t.io = None;
                Err(self.fs_fail(e))
            }
        }
    }

    async fn write(&mut self, h: &str, offset: u64, data: &[u8]) -> Answer<()> {
        let place = self.place.clone();
        let Some(Open::Write(t)) = self.handles.get_mut(h) else {
            return Err(Fail::new(StatusCode::Failure, "no such handle"));
        };
        if let Some(e) = &t.error {
            return Err(Fail::new(StatusCode::Failure, e.clone()));
        }
        let Some(w) = t.io.as_mut() else {
            return Err(Fail::new(StatusCode::Failure, "the file is closed"));
        };
        t.tally.update(data);
        t.bytes += data.len() as u64;
        if let Err(e) = w.write(offset, data).await {
            t.error = Some(place.say(&e));
            t.io = None;
            return Err(self.fs_fail(e));
        }
        Ok(())
    }

    async fn stat(&mut self, raw: &str, follow: bool) -> Answer<FileAttributes> {
        let path = self.path(raw)?;
        self.stat_abs(&path, follow).await
    }

    async fn stat_abs(&mut self, path: &str, follow: bool) -> Answer<FileAttributes> {
        self.allow(FileOp::List, None).await?;
        match self.fs.stat(&self.at(path), follow).await {
            Ok(e) => Ok(attrs_of(&e)),
            Err(e) => Err(self.fs_fail(e)),
        }
    }

    async fn setstat(&mut self, raw: &str, a: &FileAttributes) -> Answer<()> {
        let path = self.path(raw)?;
        self.apply(&path, a).await
    }

    async fn fsetstat(&mut self, h: &str, a: &FileAttributes) -> Answer<()> {
        let path = self.handle_path(h)?;
        // What is being written lands first, so that times set now stay.
        if let Some(Open::Write(t)) = self.handles.get_mut(h)
            && let Some(w) = t.io.take()
        {
            let place = self.place.clone();
            match w.finish().await {
                Ok(()) => match self
                    .fs
                    .write(&place.in_container(&path), WriteMode::Existing, None)
                    .await
                {
                    Ok(next) => t.io = Some(next),
                    Err(e) => t.error = Some(place.say(&e)),
                },
                Err(e) => t.error = Some(place.say(&e)),
            }
        }
        self.apply(&path, a).await
    }

    async fn apply(&mut self, path: &str, a: &FileAttributes) -> Answer<()> {
        self.allow(FileOp::Upload, None).await?;
        let set = SetAttrs {
            size: a.size,
            mode: a.permissions,
            owner: a.uid.zip(a.gid),
            times: a.atime.zip(a.mtime),
        };
        self.fs
            .setstat(&self.at(path), &set)
            .await
            .map_err(|e| self.fs_fail(e))
    }

    async fn opendir(&mut self, raw: &str) -> Answer<String> {
        let path = self.path(raw)?;
        self.allow(FileOp::List, None).await?;
        let entries = self
            .fs
            .list(&self.at(&path))
            .await
            .map_err(|e| self.fs_fail(e))?;
        self.new_handle(Open::Dir { entries, sent: 0 })
    }

    fn readdir(&mut self, h: &str) -> Answer<Vec<File>> {
        let Some(Open::Dir { entries, sent }) = self.handles.get_mut(h) else {
            return Err(Fail::new(StatusCode::Failure, "no such handle"));
        };
        if *sent >= entries.len() {
            return Err(Fail::new(StatusCode::Eof, "end of directory"));
        }
        let now = crate::db::now();
        let end = (*sent + NAMES_PER_READDIR).min(entries.len());
        let files = entries[*sent..end]
            .iter()
            .map(|e| File {
                filename: e.name.clone(),
                longname: long_name(e, now),
                attrs: attrs_of(e),
            })
            .collect();
        *sent = end;
        Ok(files)
    }

    async fn remove(&mut self, raw: &str, dir: bool) -> Answer<()> {
        let path = self.path(raw)?;
        let at = self.at(&path);
        let fs = self.fs.clone();
        self.logged(FileOp::Delete, Done::new("delete", &path), || async move {
            if dir {
                fs.rmdir(&at).await
            } else {
                fs.remove(&at).await
            }
        })
        .await
    }

    async fn mkdir(&mut self, raw: &str, mode: Option<u32>) -> Answer<()> {
        let path = self.path(raw)?;
        let at = self.at(&path);
        let fs = self.fs.clone();
        self.logged(FileOp::Mkdir, Done::new("mkdir", &path), || async move {
            fs.mkdir(&at, mode).await
        })
        .await
    }

    async fn rename(&mut self, from: &str, to: &str, replace: bool) -> Answer<()> {
        let (from, to) = (self.path(from)?, self.path(to)?);
        let mut done = Done::new("rename", &from);
        done.new_path = Some(to.clone());
        let (a, b) = (self.at(&from), self.at(&to));
        let fs = self.fs.clone();
        self.logged(FileOp::Rename, done, || async move {
            fs.rename(&a, &b, replace).await
        })
        .await
    }

    async fn readlink(&mut self, raw: &str) -> Answer<String> {
        let path = self.path(raw)?;
        self.allow(FileOp::List, None).await?;
        let target = self
            .fs
            .readlink(&self.at(&path))
            .await
            .map_err(|e| self.fs_fail(e))?;
        Ok(model::from_container(&self.place.root, &target))
    }

    /// A symlink at `link` to `target` (kept as written). Not in datasets:
    /// a link there could point out of the volume.
    async fn symlink(&mut self, target: &str, link: &str) -> Answer<()> {
        let path = self.path(link)?;
        let mut done = Done::new("symlink", &path);
        done.new_path = Some(target.to_string());
        if self.place.target == FileTarget::Dataset {
            self.allow(FileOp::Upload, Some(done.clone())).await?;
            super::log(
                &self.app,
                &self.doer,
                &self.place,
                done,
                Err("symlinks are not allowed in datasets".into()),
            )
            .await;
            return Err(Fail::new(
                StatusCode::PermissionDenied,
                "symlinks are not allowed in datasets (数据集中不允许符号链接)",
            ));
        }
        if target.contains('\0') {
            return Err(Fail::new(
                StatusCode::BadMessage,
                "the target holds a NUL byte",
            ));
        }
        let at = self.at(&path);
        let (fs, t) = (self.fs.clone(), target.to_string());
        self.logged(
            FileOp::Upload,
            done,
            || async move { fs.symlink(&t, &at).await },
        )
        .await
    }

    async fn extended(&mut self, id: u32, request: &str, data: Vec<u8>) -> Answer<Packet> {
        match request {
            POSIX_RENAME => {
                let mut b = Bytes::from(data);
                let (from, to): (String, String) = russh_sftp::de::from_bytes(&mut b)
                    .map_err(|_| Fail::new(StatusCode::BadMessage, "malformed posix-rename"))?;
                self.rename(&from, &to, true).await.map(|()| ok(id))
            }
            LIMITS => {
                let limits = LimitsExtension {
                    max_packet_len: u64::from(MAX_PACKET),
                    max_read_len: MAX_IO,
                    max_write_len: MAX_IO,
                    max_open_handles: MAX_HANDLES as u64,
                };
                let data = russh_sftp::ser::to_bytes(&limits)
                    .map_err(|e| Fail::new(StatusCode::Failure, e.to_string()))?;
                Ok(Packet::ExtendedReply(ExtendedReply {
                    id,
                    data: data.to_vec(),
                }))
            }
            _ => Err(Fail::new(
                StatusCode::OpUnsupported,
                "unsupported extension",
            )),
        }
    }
}

fn version() -> Version {
    let mut v = Version::new();
    v.extensions.insert(POSIX_RENAME.into(), "1".into());
    v.extensions.insert(LIMITS.into(), "1".into());
    v
}

fn handle(id: u32, handle: String) -> Packet {
    Packet::Handle(Handle { id, handle })
}

fn attrs(id: u32, attrs: FileAttributes) -> Packet {
    Packet::Attrs(Attrs { id, attrs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Kind;

    /// A write is read in place exactly as russh-sftp reads it; anything
    /// else, or a write cut short or padded, is left to the general path.
    #[test]
    fn writes_are_read_in_place() {
        let write = Packet::Write(russh_sftp::protocol::Write {
            id: 7,
            handle: "h1".into(),
            offset: 1 << 40,
            data: b"some bytes".to_vec(),
        });
        let framed = Bytes::try_from(write).unwrap();
        let raw = framed.slice(4..);
        let w = WriteRequest::parse(&raw).unwrap();
        assert_eq!((w.id, w.handle.as_str(), w.offset), (7, "h1", 1 << 40));
        assert_eq!(&w.data[..], b"some bytes");
        assert!(WriteRequest::parse(&raw.slice(..raw.len() - 1)).is_none());
        let mut padded = raw.to_vec();
        padded.push(0);
        assert!(WriteRequest::parse(&Bytes::from(padded)).is_none());
        let close = Packet::Close(russh_sftp::protocol::Close {
            id: 1,
            handle: "h1".into(),
        });
        assert!(WriteRequest::parse(&Bytes::try_from(close).unwrap().slice(4..)).is_none());
        assert!(WriteRequest::parse(&Bytes::from_static(&[SSH_FXP_WRITE, 0, 0])).is_none());
    }

    #[test]
    fn long_names_look_like_ls_and_escape_names() {
        let e = Entry {
            name: "evil\x1b[2Jname".into(),
            kind: Kind::Symlink,
            mode: 0o120777,
            size: 7,
            uid: 0,
            gid: 0,
            user: "root".into(),
            group: "root".into(),
            atime: 0,
            mtime: 1_700_000_000,
        };
        let line = long_name(&e, 1_700_000_100);
        assert!(
            line.starts_with("lrwxrwxrwx   1 root     root            7 Nov 14 22:13 "),
            "{line}"
        );
        assert!(line.ends_with("evil\\x1b[2Jname"), "{line}");
        let old = long_name(&e, 1_800_000_000);
        assert!(old.contains("Nov 14  2023"), "{old}");
        assert_eq!(request_id(&[3, 0, 0, 1, 2, 9]), 258);
        assert_eq!(request_id(&[3]), 0);
    }
}
