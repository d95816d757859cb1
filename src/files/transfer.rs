//! Web transfers: an upload streams the request body into a hidden file
//! next to its target and renames it into place only once every byte is
//! written (a failure leaves nothing half-written, and removes the rest);
//! a download streams a file (or a folder as a tar) into the response.
//! Both count and hash what passes, hold the user's access live (a
//! revocation ends them, as does shutdown) and are logged when they end.

use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::fs::WriteMode;
use super::model::{self, FsError, Kind};
use super::{Doer, Done, FileOp, Place, app_error, authorize, checked_path, log, open_fs, web_tag};
use crate::app::App;
use crate::error::{AppError, FieldError, FieldErrors};
use crate::live::Registration;

/// The most bytes of a file in one chunk of a download.
const CHUNK: usize = 256 << 10;
/// The most of an upload gathered before it is written on.
const WRITE_AT_ONCE: usize = 512 << 10;
/// How long removing a failed upload's partial file may take.
const CLEANUP_WITHIN: Duration = Duration::from_secs(20);

/// How much of a refused upload's body is read away, and for how long, so
/// that a client still sending reads the refusal instead of a reset
/// connection (a lingering close, as nginx does). A bigger body gets the
/// reset.
const DISCARD_UP_TO: u64 = 64 << 20;
const DISCARD_WITHIN: Duration = Duration::from_secs(10);

/// Reads away what is left of a refused body (see [`DISCARD_UP_TO`]).
async fn discard<S, E>(stream: &mut S)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let read = async {
        let mut n = 0u64;
        while let Some(Ok(c)) = stream.next().await {
            n += c.len() as u64;
            if n > DISCARD_UP_TO {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_WITHIN, read).await;
}

/// What an upload left.
#[derive(Debug, Clone, Serialize)]
pub struct Uploaded {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Counts and hashes what passes.
#[derive(Default)]
struct Tally {
    hasher: Sha256,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, b: &[u8]) {
        self.hasher.update(b);
        self.bytes += b.len() as u64;
    }
    fn result(&self) -> (u64, String) {
        (self.bytes, hex::encode(self.hasher.clone().finalize()))
    }
}

/// Why a transfer stopped before its end, from its hold: revoked, or
/// the server stopping.
async fn stopped(app: &App, hold: &Registration) -> String {
    let w = hold.watcher();
    tokio::select! {
        _ = w.stopped() => "access revoked".to_string(),
        _ = app.cancel.cancelled() => "gpudock is shutting down".to_string(),
    }
}

fn conflict(field: &'static str, key: &'static str) -> AppError {
    AppError::Conflict(FieldErrors::from([(field, FieldError::new(key))]))
}

/// Uploads `body` to `path` (its folder must exist); an existing file is
/// replaced only with `overwrite`. `length`: the announced size, refused
/// at once when over the limit (a body that grows past it is cut off).
pub async fn upload(
    app: &App,
    doer: &Doer,
    place: &Place,
    path: &str,
    overwrite: bool,
    length: Option<u64>,
    body: Body,
) -> Result<Uploaded, AppError> {
    let path = checked_path("path", path)?;
    if model::fs_name(&path).is_none() {
        return Err(AppError::field("path", "err.path_root"));
    }
    let limit = app.config.files.max_upload_bytes;
    let done = Done::new("upload", &path);
    if length.is_some_and(|n| n > limit) {
        log(app, doer, place, done, Err("over the upload limit".into())).await;
        discard(&mut body.into_data_stream()).await;
        return Err(AppError::TooLarge(limit));
    }
    if let Err(e) = authorize(app, &doer.user, place, FileOp::Upload).await {
        if matches!(e, AppError::Forbidden) {
            log(app, doer, place, done, Err(super::DENIED.into())).await;
        }
        return Err(e);
    }
    let hold = app.live.hold(crate::auth::holder(&doer.user));
    let fs = open_fs(app, place, web_tag(app)).await?;
    let target = place.in_container(&path);
    let dir = model::parent(&path).to_string();
    match fs.stat(&place.in_container(&dir), true).await {
        Ok(e) if e.kind == Kind::Dir => {}
        Ok(_) => return Err(conflict("path", "err.not_a_folder")),
        Err(e) => return Err(app_error(place, e)),
    }
    match fs.stat(&target, false).await {
        Ok(e) if e.kind == Kind::Dir => return Err(conflict("path", "err.is_a_folder")),
        Ok(_) if !overwrite => return Err(conflict("path", "err.file_exists")),
        Ok(_) | Err(FsError::NotFound(_)) => {}
        Err(e) => return Err(app_error(place, e)),
    }
    let nonce: u32 = rand::random();
    let part = place.in_container(&model::join(
        &dir,
        &format!(".gpudock-upload-{nonce:08x}.part"),
    ));
    let mut tally = Tally::default();
    let result = receive(app, &fs, &hold, &part, limit, body, &mut tally).await;
    let result = match result {
        Ok(()) => fs
            .rename(&part, &target, true)
            .await
            .map_err(|e| app_error(place, e)),
        Err(e) => Err(e),
    };
    let (size, sha256) = tally.result();
    let mut done = done;
    done.transferred = Some((size, sha256.clone()));
    match result {
        Ok(()) => {
            log(app, doer, place, done, Ok(())).await;
            Ok(Uploaded { path, size, sha256 })
        }
        Err(e) => {
            // Nothing half-written stays: the writer is ended and the
            // partial file goes.
            fs.sweep(CLEANUP_WITHIN).await;
            match tokio::time::timeout(CLEANUP_WITHIN, fs.remove(&part)).await {
                Ok(Ok(()) | Err(FsError::NotFound(_))) => {}
                Ok(Err(x)) => log::warn!("upload: removing {part}: {x}"),
                Err(_) => log::warn!("upload: removing {part} took too long"),
            }
            log(app, doer, place, done, Err(e.to_string())).await;
            Err(e)
        }
    }
}

/// Streams `body` into `part` (a new file), all of it or an error.
async fn receive(
    app: &App,
    fs: &super::ContainerFs,
    hold: &Registration,
    part: &str,
    limit: u64,
    body: Body,
    tally: &mut Tally,
) -> Result<(), AppError> {
    let place_err = |e: FsError| match e {
        FsError::Node(d) => crate::error::docker_error(d),
        FsError::NotRunning => super::not_running(),
        FsError::NoSpace(m) => AppError::Conflict(FieldErrors::from([(
            "path",
            FieldError::with_detail("err.disk_full", m),
        )])),
        other => AppError::Conflict(FieldErrors::from([(
            "path",
            FieldError::with_detail("err.file_failed", other.to_string()),
        )])),
    };
    let mut w = fs
        .write(part, WriteMode::Exclusive, Some(0o644))
        .await
        .map_err(place_err)?;
    let mut stream = body.into_data_stream();
    // One watch for the whole body (not one per chunk).
    let stop = stopped(app, hold);
    tokio::pin!(stop);
    let halted = |why: String| {
        AppError::Conflict(FieldErrors::from([(
            "path",
            FieldError::with_detail("err.transfer_stopped", why),
        )]))
    };
    // HTTP/2 delivers the body in small frames (16 KiB): they are
    // gathered into writes of up to WRITE_AT_ONCE, so the container's
    // process takes few large writes instead of many small ones.
    let mut gathered = BytesMut::with_capacity(WRITE_AT_ONCE);
    let mut at = 0u64;
    loop {
        let chunk = tokio::select! {
            why = &mut stop => return Err(halted(why)),
            c = stream.next() => c,
        };
        let chunk = match chunk {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                return Err(AppError::Conflict(FieldErrors::from([(
                    "body",
                    FieldError::with_detail("err.transfer_stopped", e.to_string()),
                )])));
            }
        };
        let end = chunk.is_none();
        if let Some(chunk) = chunk {
            if tally.bytes + chunk.len() as u64 > limit {
                discard(&mut stream).await;
                return Err(AppError::TooLarge(limit));
            }
            tally.add(&chunk);
            gathered.extend_from_slice(&chunk);
        }
        if gathered.len() >= WRITE_AT_ONCE || (end && !gathered.is_empty()) {
            let write = w.write(at, &gathered);
            tokio::select! {
                why = &mut stop => return Err(halted(why)),
                r = write => r.map_err(place_err)?,
            }
            at += gathered.len() as u64;
            gathered.clear();
        }
        if end {
            break;
        }
    }
    w.finish().await.map_err(place_err)
}

type Source = Pin<Box<dyn Stream<Item = Result<Bytes, FsError>> + Send>>;

/// Streams `path` to the browser: a file as it is, a folder as a tar.
pub async fn download(
    app: &App,
    doer: &Doer,
    place: &Place,
    path: &str,
) -> Result<Response, AppError> {
    let path = checked_path("path", path)?;
    let done = Done::new("download", &path);
    if let Err(e) = authorize(app, &doer.user, place, FileOp::Download).await {
        if matches!(e, AppError::Forbidden) {
            log(app, doer, place, done, Err(super::DENIED.into())).await;
        }
        return Err(e);
    }
    let hold = app.live.hold(crate::auth::holder(&doer.user));
    let fs = open_fs(app, place, web_tag(app)).await?;
    let at = place.in_container(&path);
    let entry = fs.stat(&at, true).await.map_err(|e| app_error(place, e))?;
    let base = match model::fs_name(&path) {
        Some(b) => b.to_string(),
        None => place.name.clone(),
    };
    let (source, name, length, mime): (Source, String, Option<u64>, &str) = match entry.kind {
        Kind::Dir => {
            let tar = first_item(archive(fs.docker(), fs.container(), &at))
                .await
                .map_err(|e| app_error(place, e))?;
            (tar, format!("{base}.tar"), None, "application/x-tar")
        }
        Kind::File => {
            let reader = fs.read(&at, 0).await.map_err(|e| app_error(place, e))?;
            let s = futures_util::stream::unfold(Some(reader), |r| async move {
                let mut r = r?;
                match r.read_some(CHUNK).await {
                    Ok(Some(b)) => Some((Ok(b), Some(r))),
                    Ok(None) => None,
                    Err(e) => Some((Err(e), None)),
                }
            });
            (
                Box::pin(s),
                base,
                Some(entry.size),
                "application/octet-stream",
            )
        }
        Kind::Symlink | Kind::Other => return Err(conflict("path", "err.not_a_file")),
    };
    let (tx, rx) = oneshot::channel();
    // Logged when the body ends, however it ends; the task is counted
    // until then, so that shutdown waits for the log line.
    let token = app.live.track();
    let (app2, doer2, place2, fs2) = (app.clone(), doer.clone(), place.clone(), fs.clone());
    tokio::spawn(async move {
        let (bytes, sha, result) = rx.await.unwrap_or((0, String::new(), Err("lost".into())));
        let cut_short = result.is_err();
        let mut done = done;
        done.transferred = Some((bytes, sha));
        log(&app2, &doer2, &place2, done, result).await;
        // A download cut short may leave its reader behind in the container.
        if cut_short {
            fs2.sweep(CLEANUP_WITHIN).await;
        }
        drop(token);
    });
    let body = Body::from_stream(counted(app.clone(), hold, source, tx));
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Some(n) = length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if let Ok(v) = HeaderValue::from_str(&attachment(&name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// `attachment; filename="..."; filename*=UTF-8''...` for `name`.
fn attachment(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The tar of `path` from dockerd's archive endpoint.
fn archive(d: &bollard::Docker, container: &str, path: &str) -> Source {
    let opts = bollard::query_parameters::DownloadFromContainerOptions {
        path: path.to_string(),
    };
    let secs = d.timeout().as_secs();
    Box::pin(
        d.download_from_container(container, Some(opts))
            .map(move |r| {
                r.map_err(|e| FsError::Node(crate::docker::DockerError::from_bollard(e, secs)))
            }),
    )
}

/// `s` once its first item came (an error before any byte is the
/// answer's error, not a broken body).
async fn first_item(mut s: Source) -> Result<Source, FsError> {
    match s.next().await {
        Some(Ok(b)) => Ok(Box::pin(futures_util::stream::iter([Ok(b)]).chain(s))),
        Some(Err(e)) => Err(e),
        None => Ok(s),
    }
}

type Outcome = (u64, String, Result<(), String>);

/// Reports how the body ended: at its end, on an error, or when dropped
/// before (the client went away).
struct Report {
    tally: Tally,
    tx: Option<oneshot::Sender<Outcome>>,
}

impl Report {
    fn end(&mut self, r: Result<(), String>) {
        if let Some(tx) = self.tx.take() {
            let (n, sha) = self.tally.result();
            let _ = tx.send((n, sha, r));
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.end(Err(
            "the download was interrupted (the client went away)".into()
        ));
    }
}

/// `source` as a response body: counted, hashed, cut off by a revocation
/// or shutdown, its end reported on `tx`.
fn counted(
    app: App,
    hold: Registration,
    source: Source,
    tx: oneshot::Sender<Outcome>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let report = Report {
        tally: Tally::default(),
        tx: Some(tx),
    };
    // One watch for the whole body (not one per chunk); it holds the
    // user's access live until the body ends.
    let stop: Pin<Box<dyn std::future::Future<Output = String> + Send>> =
        Box::pin(async move { stopped(&app, &hold).await });
    futures_util::stream::unfold(Some((stop, source, report)), |state| async move {
        let (mut stop, mut source, mut report) = state?;
        let next = tokio::select! {
            why = &mut stop => Err(why),
            n = source.next() => Ok(n),
        };
        match next {
            Ok(Some(Ok(b))) => {
                report.tally.add(&b);
                Some((Ok(b), Some((stop, source, report))))
            }
            Ok(None) => {
                report.end(Ok(()));
                None
            }
            Ok(Some(Err(e))) => {
                let why = e.to_string();
                report.end(Err(why.clone()));
                Some((Err(std::io::Error::other(why)), None))
            }
            Err(why) => {
                report.end(Err(why.clone()));
                Some((Err(std::io::Error::other(why)), None))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_name_the_file_safely() {
        assert_eq!(
            attachment("a b.bin"),
            "attachment; filename=\"a b.bin\"; filename*=UTF-8''a%20b.bin"
        );
        let zh = attachment("数据\".tar");
        assert!(zh.starts_with("attachment; filename=\"___.tar\""), "{zh}");
        assert!(zh.contains("UTF-8''%E6%95%B0%E6%8D%AE%22.tar"), "{zh}");
    }
}
