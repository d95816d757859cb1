//! Session recordings as asciicast v2: a JSON header line, then one
//! `[seconds, "o"|"i"|"r", "text"]` line per event. Output is always
//! recorded, input when configured. Text is split on UTF-8 boundaries
//! across chunks; bytes that are not UTF-8 become U+FFFD.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use tokio::io::AsyncWriteExt;

/// Carries the incomplete tail of a UTF-8 sequence to the next chunk.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let cut = complete_prefix(&self.pending);
        let rest = self.pending.split_off(cut);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
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

/// Buffered asciicast writer. The caller flushes (from its own loop); a
/// failure to write disables the recording and is logged once, it never
/// ends the session.
pub struct Recorder {
    path: PathBuf,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    started: Instant,
    buf: Vec<u8>,
    out: Utf8Carry,
    inp: Utf8Carry,
    record_input: bool,
}

/// Flush when this much is buffered.
const FLUSH_AT: usize = 64 * 1024;

impl Recorder {
    /// Creates `dir/<name>` (0600) with the header.
    pub async fn create(
        dir: &Path,
        name: &str,
        size: (u16, u16),
        term: &str,
        title: &str,
        record_input: bool,
    ) -> std::io::Result<Self> {
        crate::fsutil::ensure_private_dir(dir)?;
        let path = dir.join(name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await?;
        let mut r = Recorder {
            path,
            file: Some(tokio::io::BufWriter::new(file)),
            started: Instant::now(),
            buf: Vec::new(),
            out: Utf8Carry::default(),
            inp: Utf8Carry::default(),
            record_input,
        };
        let header = json!({
            "version": 2, "width": size.0, "height": size.1,
            "timestamp": crate::db::now(), "title": title, "env": {"TERM": term},
        });
        r.line(&header);
        r.flush().await;
        Ok(r)
    }

    fn line(&mut self, v: &serde_json::Value) {
        if let Ok(text) = serde_json::to_vec(v) {
            self.buf.extend_from_slice(&text);
            self.buf.push(b'\n');
        }
    }

    fn event(&mut self, kind: &str, text: String) {
        if text.is_empty() {
            return;
        }
        let t = (self.started.elapsed().as_secs_f64() * 1e6).round() / 1e6;
        self.line(&json!([t, kind, text]));
    }

    pub fn output(&mut self, bytes: &[u8]) {
        let text = self.out.push(bytes);
        self.event("o", text);
    }

    pub fn input(&mut self, bytes: &[u8]) {
        if self.record_input {
            let text = self.inp.push(bytes);
            self.event("i", text);
        }
    }

    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.event("r", format!("{cols}x{rows}"));
    }

    pub fn wants_flush(&self) -> bool {
        self.buf.len() >= FLUSH_AT
    }

    pub async fn flush(&mut self) {
        let Some(f) = self.file.as_mut() else {
            self.buf.clear();
            return;
        };
        let data = std::mem::take(&mut self.buf);
        let result = async {
            f.write_all(&data).await?;
            f.flush().await
        }
        .await;
        if let Err(e) = result {
            log::error!(
                "recording {}: writing failed, recording stops: {e}",
                self.path.display()
            );
            self.file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let text = "中文 ok ✓";
        let bytes = text.as_bytes();
        let mut c = Utf8Carry::default();
        let mut out = String::new();
        for chunk in bytes.chunks(1) {
            out.push_str(&c.push(chunk));
        }
        assert_eq!(out, text);
        let mut c = Utf8Carry::default();
        assert_eq!(c.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
    }

    #[tokio::test]
    async fn a_recording_is_asciicast_v2() {
        let dir = tempfile::tempdir().unwrap();
        let rec_dir = dir.path().join("rec");
        let mut r = Recorder::create(&rec_dir, "1.cast", (80, 24), "xterm", "t", false)
            .await
            .unwrap();
        r.output(b"hello ");
        r.input(b"secret");
        r.output("中".as_bytes());
        r.resize(100, 30);
        r.flush().await;
        let text = std::fs::read_to_string(rec_dir.join("1.cast")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(
            (lines[0]["width"].as_i64(), lines[0]["height"].as_i64()),
            (Some(80), Some(24))
        );
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "hello ");
        assert_eq!(lines[2][2], "中");
        assert_eq!(lines[3][1], "r");
        assert!(
            !text.contains("secret"),
            "input is not recorded unless configured"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(rec_dir.join("1.cast"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
