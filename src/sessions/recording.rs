//! Session recordings: asciicast v2 (a JSON header line, then one
//! `[seconds, "o"|"i"|"r"|"m", "text"]` line per event), stored gzip
//! compressed as `<id>.cast.gz`. Output is always recorded, input when
//! configured. Text is split on UTF-8 boundaries across chunks; bytes that
//! are not UTF-8 become U+FFFD.
//!
//! The session only hands each chunk (a reference-counted `Bytes`, never
//! copied) to a bounded queue; a writer task of its own turns the chunks into
//! asciicast lines and writes them as one gzip member per batch (a batch
//! closes at [`BATCH`] bytes or after [`BATCH_EVERY`]), compressing on a
//! blocking thread. Nothing of the recording ever waits on the session's
//! path: when the writer falls [`QUEUE_BYTES`] behind, output is left out of
//! the recording and a marker event says how much. Each member is complete
//! once written, so a recording is readable while it is being written and
//! after a crash; between batches a session holds no compressor at all.
//! Recordings written before compression (`<id>.cast`) are read as they are.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The file name of session `id`'s recording.
pub fn file_name(id: impl std::fmt::Display) -> String {
    format!("{id}.cast.gz")
}

/// A batch is compressed and written once it holds this much text...
pub const BATCH: usize = 256 * 1024;
/// ...or this long after its first event.
pub const BATCH_EVERY: Duration = Duration::from_secs(1);
/// How far (in bytes handed over) the writer may fall behind the session
/// before output is left out of the recording.
pub const QUEUE_BYTES: usize = 16 << 20;
/// How many events may wait (whatever their size).
const QUEUE_EVENTS: usize = 4096;

/// Carries the incomplete tail of a UTF-8 sequence to the next chunk.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    /// The text of `bytes` after what was carried, up to the last complete
    /// character (lossy), given to `emit` without copying when it can.
    pub fn push(&mut self, bytes: &[u8], emit: impl FnOnce(&str)) {
        if self.pending.is_empty() {
            let cut = complete_prefix(bytes);
            emit(&lossy(&bytes[..cut]));
            self.pending.extend_from_slice(&bytes[cut..]);
            return;
        }
        self.pending.extend_from_slice(bytes);
        let cut = complete_prefix(&self.pending);
        let rest = self.pending.split_off(cut);
        emit(&lossy(&self.pending));
        self.pending = rest;
    }

    /// What is left (an incomplete sequence at the very end), lossy.
    fn rest(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned()
    }
}

/// `bytes` as text, bytes that are not UTF-8 as U+FFFD. Valid text (nearly
/// all output) is checked by `str::from_utf8`, which takes plain ASCII
/// several bytes at a time; `from_utf8_lossy` looks at every byte and took
/// nearly half of the recorder's time on `cat` output.
fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The length of the longest prefix that does not end inside a UTF-8
/// sequence that the next bytes could still complete.
fn complete_prefix(b: &[u8]) -> usize {
    let n = b.len();
    for back in 1..=3.min(n) {
        let byte = b[n - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back
        }
        let need = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return n,
        };
        return if need > back { n - back } else { n };
    }
    n
}

/// One event as the session hands it over, with its time since the start.
enum Event {
    Output(Duration, Bytes),
    Input(Duration, Bytes),
    Resize(Duration, u16, u16),
    /// This many bytes of output were left out (the writer was behind).
    Skipped(Duration, u64),
}

impl Event {
    fn bytes(&self) -> usize {
        match self {
            Event::Output(_, b) | Event::Input(_, b) => b.len(),
            Event::Resize(..) | Event::Skipped(..) => 0,
        }
    }
}

/// The session's side of its recording: hands events to the writer and
/// never waits for it.
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    /// Bytes handed over that the writer has not taken yet.
    queued: Arc<AtomicUsize>,
    started: Instant,
    record_input: bool,
    /// Bytes left out since the last marker that could be handed over.
    skipped: u64,
    /// Bytes left out in all.
    skipped_total: u64,
    writer: JoinHandle<()>,
}

impl Recorder {
    /// Creates `dir/<name>` (0600) with the header and starts its writer.
    pub async fn create(
        dir: &Path,
        name: &str,
        size: (u16, u16),
        term: &str,
        title: &str,
        record_input: bool,
    ) -> std::io::Result<Self> {
        let header = json!({
            "version": 2, "width": size.0, "height": size.1,
            "timestamp": crate::db::now(), "title": title, "env": {"TERM": term},
        });
        let mut text = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let (dir, path) = (dir.to_path_buf(), dir.join(name));
        let p = path.clone();
        let file = tokio::task::spawn_blocking(move || {
            crate::fsutil::ensure_private_dir(&dir)?;
            let mut file = create_private(&p)?;
            write_member(&mut file, &text)?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (tx, rx) = mpsc::channel(QUEUE_EVENTS);
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = tokio::spawn(write(
            Writer {
                path,
                file: Some(file),
                text: Vec::new(),
                member: Member::default(),
                out: Utf8Carry::default(),
                inp: Utf8Carry::default(),
                queued: queued.clone(),
                last: 0.0,
            },
            rx,
        ));
        Ok(Recorder {
            tx,
            queued,
            started: Instant::now(),
            record_input,
            skipped: 0,
            skipped_total: 0,
            writer,
        })
    }

    /// Hands `ev` over, after the marker of what was left out before it
    /// when there was some; when the writer is too far behind for both,
    /// `ev` is left out too (counted for the next marker).
    fn event(&mut self, ev: Event) {
        let n = ev.bytes();
        let need = if self.skipped > 0 { 2 } else { 1 };
        // The only sender: room seen here is still there when sending.
        let fits =
            self.queued.load(Ordering::Relaxed) + n <= QUEUE_BYTES && self.tx.capacity() >= need;
        if !fits {
            self.skipped += n as u64;
            self.skipped_total += n as u64;
            return;
        }
        if self.skipped > 0 {
            let at = self.started.elapsed();
            let _ = self.tx.try_send(Event::Skipped(at, self.skipped));
            self.skipped = 0;
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        if self.tx.try_send(ev).is_err() {
            // The writer is gone (it logged why): nothing is recorded.
            self.queued.fetch_sub(n, Ordering::Relaxed);
        }
    }

    pub fn output(&mut self, bytes: &Bytes) {
        let at = self.started.elapsed();
        self.event(Event::Output(at, bytes.clone()));
    }

    pub fn input(&mut self, bytes: &Bytes) {
        if self.record_input {
            let at = self.started.elapsed();
            self.event(Event::Input(at, bytes.clone()));
        }
    }

    pub fn resize(&mut self, cols: u16, rows: u16) {
        let at = self.started.elapsed();
        self.event(Event::Resize(at, cols, rows));
    }

    /// Closes the recording: the writer writes what it holds and ends.
    /// Returns how many bytes were left out of it.
    pub async fn finish(self) -> u64 {
        // The last marker, waiting for room if need be (the session is over).
        if self.skipped > 0 {
            let at = self.started.elapsed();
            let _ = self.tx.send(Event::Skipped(at, self.skipped)).await;
        }
        drop(self.tx);
        if let Err(e) = self.writer.await {
            log::error!("a recording's writer failed: {e}");
        }
        self.skipped_total
    }
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Appends `text` to `file` as one complete gzip member.
fn write_member(file: &mut std::fs::File, text: &[u8]) -> std::io::Result<()> {
    Member::default().write(file, text)
}

/// The gzip header of every member: deflate, no name or time, "fastest"
/// (XFL 4), unknown OS.
const GZ_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

/// What writing a member needs, kept from one batch to the next while
/// output flows: the compressor (miniz's state is a few hundred KiB that a
/// new one allocates and clears) and its output buffer. A gzip encoder cannot
/// be reset, so the member is a raw deflate stream between gzip's header
/// and trailer.
#[derive(Default)]
struct Member {
    deflate: Option<flate2::write::DeflateEncoder<Vec<u8>>>,
}

impl Member {
    fn write(&mut self, file: &mut std::fs::File, text: &[u8]) -> std::io::Result<()> {
        let enc = self.deflate.get_or_insert_with(|| {
            flate2::write::DeflateEncoder::new(
                Vec::with_capacity(text.len() / 4 + 64),
                Compression::fast(),
            )
        });
        enc.get_mut().extend_from_slice(&GZ_HEADER);
        enc.write_all(text)?;
        enc.try_finish()?;
        let mut crc = flate2::Crc::new();
        crc.update(text);
        let out = enc.get_mut();
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&crc.amount().to_le_bytes());
        let written = file.write_all(out);
        // A fresh stream, into the same (emptied) buffer.
        let mut out = std::mem::take(enc.get_mut());
        out.clear();
        enc.reset(out)?;
        written
    }
}

/// The writer's state: the file, the batch being filled, and the UTF-8
/// tails of output and input.
struct Writer {
    path: PathBuf,
    /// `None` once writing failed (the recording stops; the session goes on).
    file: Option<std::fs::File>,
    text: Vec<u8>,
    /// The compressor, kept while batches fill up back to back.
    member: Member,
    out: Utf8Carry,
    inp: Utf8Carry,
    queued: Arc<AtomicUsize>,
    /// The time of the last event written.
    last: f64,
}

async fn write(mut w: Writer, mut rx: mpsc::Receiver<Event>) {
    // The batch's deadline, from its first event.
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let deadline = async {
            match due {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    w.encode(ev);
                    while let Ok(ev) = rx.try_recv() {
                        w.encode(ev);
                        if w.text.len() >= BATCH {
                            break;
                        }
                    }
                    if w.text.len() >= BATCH {
                        w.flush(true).await;
                        due = None;
                    } else if due.is_none() && !w.text.is_empty() {
                        due = Some(tokio::time::Instant::now() + BATCH_EVERY);
                    }
                }
                None => break,
            },
            () = deadline => {
                w.flush(false).await;
                due = None;
            }
        }
    }
    // Incomplete characters at the very end, at the time of the last event.
    let (out, inp, last) = (w.out.rest(), w.inp.rest(), w.last);
    w.line(last, "o", &out);
    w.line(last, "i", &inp);
    w.flush(false).await;
}

impl Writer {
    fn encode(&mut self, ev: Event) {
        self.queued.fetch_sub(ev.bytes(), Ordering::Relaxed);
        match ev {
            Event::Output(at, b) => {
                let mut carry = std::mem::take(&mut self.out);
                carry.push(&b, |s| self.line(secs(at), "o", s));
                self.out = carry;
            }
            Event::Input(at, b) => {
                let mut carry = std::mem::take(&mut self.inp);
                carry.push(&b, |s| self.line(secs(at), "i", s));
                self.inp = carry;
            }
            Event::Resize(at, cols, rows) => self.line(secs(at), "r", &format!("{cols}x{rows}")),
            Event::Skipped(at, n) => self.line(
                secs(at),
                "m",
                &format!("gpudock: {n} bytes of output not recorded (the recorder fell behind)"),
            ),
        }
    }

    /// `[t, "kind", "text"]` and a newline (nothing for empty text).
    fn line(&mut self, t: f64, kind: &str, text: &str) {
        if text.is_empty() {
            return;
        }
        self.last = t;
        let _ = write!(self.text, "[{t}, \"{kind}\", ");
        json_string(&mut self.text, text);
        self.text.extend_from_slice(b"]\n");
    }

    /// Compresses and appends the batch (on a blocking thread); a failure
    /// stops the recording and is logged once. A full batch (`more`:
    /// output is flowing) keeps its text buffer and compressor for the
    /// next; one closed by time, or the last, lets them go, so an idle
    /// session holds neither.
    async fn flush(&mut self, more: bool) {
        if self.text.is_empty() {
            return;
        }
        let mut text = std::mem::take(&mut self.text);
        let mut member = std::mem::take(&mut self.member);
        let Some(mut file) = self.file.take() else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || {
            let r = member.write(&mut file, &text);
            text.clear();
            (file, r, text, member)
        })
        .await;
        match done {
            Ok((file, Ok(()), text, member)) => {
                self.file = Some(file);
                if more {
                    (self.text, self.member) = (text, member);
                }
            }
            Ok((_, Err(e), ..)) => log::error!(
                "recording {}: writing failed, recording stops: {e}",
                self.path.display()
            ),
            Err(e) => log::error!("recording {}: {e}", self.path.display()),
        }
    }
}

/// Appends `s` to `out` as a JSON string (quotes included), escaped exactly
/// as serde_json escapes it. Every byte of output is recorded, so this is on
/// the recorder's hot path: serde_json looks at one byte at a time (about
/// 330 MB/s here on `cat` output), this skips 8 plain bytes at a time and
/// copies runs whole (about 2.5x faster on the same text).
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // The bytes of `w` below 0x20, quotes or backslashes: the lowest set
    // high bit marks the first of them exactly (borrows only run upwards).
    fn special(w: u64) -> u64 {
        let below = w.wrapping_sub(LO * 0x20) & !w;
        let q = w ^ (LO * b'"' as u64);
        let quote = q.wrapping_sub(LO) & !q;
        let b = w ^ (LO * b'\\' as u64);
        let bs = b.wrapping_sub(LO) & !b;
        (below | quote | bs) & HI
    }
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(w) = bytes.get(i..i + 8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            let m = special(u64::from_le_bytes(a));
            if m == 0 {
                i += 8;
                continue;
            }
            i += (m.trailing_zeros() / 8) as usize;
        }
        let c = bytes[i];
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 15)],
            ]);
        } else {
            out.extend_from_slice(esc);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Seconds with microseconds, as asciicast has them.
fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// The asciicast text of a recording file: `.cast.gz` decompressed member
/// by member (an incomplete last member, from a crash or a batch being
/// written, ends the text), `.cast` as it is.
pub fn open(path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
    let file = std::fs::File::open(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(Tolerant(MultiGzDecoder::new(
            std::io::BufReader::new(file),
        ))))
    } else {
        Ok(Box::new(file))
    }
}

/// Ends the text at a member cut short instead of failing.
struct Tolerant<R>(R);

impl<R: Read> Read for Tolerant<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn text_of(carry: &mut Utf8Carry, chunks: &[&[u8]]) -> String {
        let mut out = String::new();
        for c in chunks {
            carry.push(c, |s| out.push_str(s));
        }
        out
    }

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let text = "中文 ok ✓";
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(text_of(&mut Utf8Carry::default(), &chunks), text);
        let mut c = Utf8Carry::default();
        assert_eq!(text_of(&mut c, &[&[b'a', 0xFF, b'b']]), "a\u{FFFD}b");
        assert_eq!(text_of(&mut c, &[&[b'x', 0xE4, 0xB8]]), "x");
        assert_eq!(c.rest(), "\u{FFFD}");
    }

    #[test]
    fn json_strings_are_escaped_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain text, longer than eight bytes".into(),
            "\"\\\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f} 中文 ✓".into(),
            (0u8..=0x7f).map(char::from).collect(),
        ];
        // Specials at every offset of the 8-byte words, among other bytes.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() >> 58) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                let r = (next() >> 32) as u8;
                v.push(match r % 4 {
                    0 => r % 0x21,
                    1 => b"\"\\a\x7f"[usize::from(r) % 4],
                    _ => r,
                });
            }
            cases.push(String::from_utf8_lossy(&v).into_owned());
        }
        for s in cases {
            let mut ours = b"x".to_vec();
            json_string(&mut ours, &s);
            let mut theirs = b"x".to_vec();
            theirs.extend(serde_json::to_vec(&s).unwrap());
            assert_eq!(ours, theirs, "{s:?}");
        }
    }

    fn read_all(path: &Path) -> String {
        let mut s = String::new();
        open(path).unwrap().read_to_string(&mut s).unwrap();
        s
    }

    fn lines(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_recording_is_compressed_asciicast_v2() {
        let dir = tempfile::tempdir().unwrap();
        let rec_dir = dir.path().join("rec");
        let mut r = Recorder::create(&rec_dir, &file_name(1), (80, 24), "xterm", "t", false)
            .await
            .unwrap();
        r.output(&Bytes::from_static(b"hello \"you\"\r\n"));
        r.input(&Bytes::from_static(b"secret"));
        r.output(&Bytes::from(&"中".as_bytes()[..2]));
        r.output(&Bytes::from(&"中".as_bytes()[2..]));
        r.resize(100, 30);
        r.output(&Bytes::from_static(b"\x1b[1;31mred\x1b[0m"));
        assert_eq!(r.finish().await, 0);
        let path = rec_dir.join("1.cast.gz");
        let text = read_all(&path);
        let l = lines(&text);
        assert_eq!(l[0]["version"], 2);
        assert_eq!(
            (l[0]["width"].as_i64(), l[0]["height"].as_i64()),
            (Some(80), Some(24))
        );
        assert_eq!(
            (l[1][1].as_str(), l[1][2].as_str()),
            (Some("o"), Some("hello \"you\"\r\n"))
        );
        assert_eq!(l[2][2], "中");
        assert_eq!(
            (l[3][1].as_str(), l[3][2].as_str()),
            (Some("r"), Some("100x30"))
        );
        assert_eq!(l[4][2], "\x1b[1;31mred\x1b[0m");
        assert_eq!(l.len(), 5);
        assert!(l[1][0].as_f64().unwrap() <= l[4][0].as_f64().unwrap());
        assert!(
            !text.contains("secret"),
            "input is not recorded unless configured"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// Big output round-trips whole, in several members, smaller than it
    /// was; a member cut short (a crash mid-write) ends the text cleanly.
    #[tokio::test]
    async fn big_output_round_trips_compressed_and_survives_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "2.cast.gz", (80, 24), "xterm", "t", true)
            .await
            .unwrap();
        let mut sent = String::new();
        for i in 0..200 {
            let mut chunk = String::new();
            for j in 0..100 {
                chunk.push_str(&format!("line {i}.{j}: the quick brown fox \\ jumps\r\n"));
            }
            sent.push_str(&chunk);
            r.output(&Bytes::from(chunk));
        }
        r.input(&Bytes::from_static(b"typed"));
        assert_eq!(r.finish().await, 0);
        let path = dir.path().join("2.cast.gz");
        let text = read_all(&path);
        let l = lines(&text);
        let out: String = l[1..]
            .iter()
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap())
            .collect();
        assert_eq!(out, sent);
        assert!(l.iter().any(|e| e[1] == "i" && e[2] == "typed"));
        let stored = std::fs::metadata(&path).unwrap().len();
        assert!(
            stored * 5 < sent.len() as u64,
            "{stored} bytes for {}",
            sent.len()
        );
        // Cut the last member short: what came before still reads.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
        let cut = read_all(&path);
        assert!(cut.len() < text.len() && text.starts_with(&cut[..cut.len() / 2]));
    }

    /// When the writer is far behind, the session does not wait: output is
    /// left out and a marker says how much.
    #[tokio::test(flavor = "current_thread")]
    async fn a_writer_far_behind_leaves_output_out_with_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "3.cast.gz", (80, 24), "xterm", "t", false)
            .await
            .unwrap();
        // On one thread the writer cannot run until this yields.
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        for _ in 0..20 {
            r.output(&chunk);
        }
        r.output(&Bytes::from_static(b"after"));
        let left_out = r.finish().await;
        // 16 MiB fit in the queue; the rest waits for the marker at the end.
        assert_eq!(left_out, (4 << 20) + 5);
        let l = lines(&read_all(&dir.path().join("3.cast.gz")));
        let markers: Vec<&str> = l
            .iter()
            .filter(|e| e[1] == "m")
            .map(|e| e[2].as_str().unwrap())
            .collect();
        assert_eq!(markers.len(), 1, "{markers:?}");
        assert!(
            markers[0].contains(&format!("{} bytes", (4 << 20) + 5)),
            "{markers:?}"
        );
        let recorded: usize = l[1..]
            .iter()
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap().len())
            .sum();
        assert_eq!(recorded, 16 << 20);
    }

    #[test]
    fn recordings_from_before_compression_read_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("4.cast");
        std::fs::write(&path, "{\"version\": 2}\n[0.1, \"o\", \"old\"]\n").unwrap();
        assert_eq!(read_all(&path), "{\"version\": 2}\n[0.1, \"o\", \"old\"]\n");
    }
}
