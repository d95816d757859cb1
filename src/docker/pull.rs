//! Pull progress: dockerd reports a pull as one status line per layer step;
//! this folds them into one figure a person can follow.

use std::collections::HashMap;

use bollard::models::CreateImageInfo;
use serde::Serialize;

/// The state of a pull after the latest status line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullProgress {
    /// dockerd's latest status text, e.g. `Downloading`, `Pull complete`.
    pub status: String,
    /// Layers finished / layers seen so far.
    pub layers_done: usize,
    pub layers: usize,
    /// Bytes downloaded over bytes to download, of the layers whose size is
    /// known; `None` before any size is known.
    pub percent: Option<u8>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Layer {
    current: i64,
    total: i64,
    done: bool,
}

#[derive(Debug, Default)]
pub struct PullTracker {
    layers: HashMap<String, Layer>,
}

/// Status lines after which a layer needs no more downloading.
const DONE: &[&str] = &[
    "Download complete",
    "Verifying Checksum",
    "Extracting",
    "Pull complete",
    "Already exists",
];

impl PullTracker {
    pub fn update(&mut self, info: &CreateImageInfo) -> PullProgress {
        let status = info.status.clone().unwrap_or_default();
        // Lines about the image as a whole (`Pulling from ...`, `Digest: ...`)
        // carry the image's name or nothing as id; layer lines carry a short
        // hex id.
        if let Some(id) = info.id.as_deref().filter(|id| is_layer_id(id)) {
            let layer = self.layers.entry(id.to_string()).or_default();
            if DONE.iter().any(|d| status.starts_with(d)) {
                layer.done = true;
            } else if status.starts_with("Downloading")
                && let Some(p) = &info.progress_detail
            {
                layer.current = p.current.unwrap_or(layer.current);
                layer.total = p.total.unwrap_or(layer.total);
            }
        }
        self.summary(status)
    }

    fn summary(&self, status: String) -> PullProgress {
        let (mut got, mut want) = (0i64, 0i64);
        for l in self.layers.values().filter(|l| l.total > 0) {
            want += l.total;
            got += if l.done {
                l.total
            } else {
                l.current.min(l.total)
            };
        }
        PullProgress {
            status,
            layers_done: self.layers.values().filter(|l| l.done).count(),
            layers: self.layers.len(),
            percent: (want > 0).then(|| ((got * 100) / want).clamp(0, 100) as u8),
        }
    }
}

fn is_layer_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use bollard::models::ProgressDetail;

    use super::*;

    fn line(id: &str, status: &str, cur: Option<(i64, i64)>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: cur.map(|(c, t)| ProgressDetail {
                current: Some(c),
                total: Some(t),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn layers_fold_into_one_percentage() {
        let mut t = PullTracker::default();
        let p = t.update(&line("latest", "Pulling from library/busybox", None));
        assert_eq!((p.layers, p.percent), (0, None));
        t.update(&line("aaaaaaaaaaaa", "Pulling fs layer", None));
        t.update(&line("bbbbbbbbbbbb", "Pulling fs layer", None));
        let p = t.update(&line("aaaaaaaaaaaa", "Downloading", Some((50, 100))));
        assert_eq!(p.percent, Some(50));
        let p = t.update(&line("bbbbbbbbbbbb", "Downloading", Some((0, 300))));
        assert_eq!(p.percent, Some(12));
        let p = t.update(&line("aaaaaaaaaaaa", "Download complete", None));
        assert_eq!((p.layers_done, p.layers, p.percent), (1, 2, Some(25)));
        t.update(&line("bbbbbbbbbbbb", "Downloading", Some((300, 300))));
        let p = t.update(&line("bbbbbbbbbbbb", "Pull complete", None));
        assert_eq!((p.layers_done, p.percent), (2, Some(100)));
        assert_eq!(p.status, "Pull complete");
    }
}
