//! The in-memory side of metrics, shared by collectors, the flush task and
//! readers: series ids, the open hour of every series (written to
//! `metrics_raw` by [`Hub::flush`]), the latest value of each series, what
//! each node's sources last said, and a broadcast of every new batch for
//! live charts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::broadcast;

use super::model::{GpuReading, Sample, Target};
use super::rollup::{HOUR, floor};
use super::store::{self, StoreError};
use crate::db::{Db, DbError};
use crate::ids::NodeId;

/// A source of a node's figures: `nvml`, `host`, `agent`, `dcgm`,
/// `node_exporter`, `docker`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceState {
    /// When it last answered well.
    pub ok_at: Option<i64>,
    /// What went wrong last, and when (cleared by the next success).
    pub error: Option<String>,
    pub error_at: Option<i64>,
}

/// What the collectors last learnt of a node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeView {
    pub sources: BTreeMap<&'static str, SourceState>,
    /// Why there are no GPU figures (no driver, no GPU, ...), when so.
    pub gpu_absent: Option<String>,
    /// The GPUs as last read (with their processes).
    pub gpus: Vec<GpuReading>,
    pub at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latest {
    pub ts: i64,
    pub value: f64,
    /// For utilisation: since when it has stayed under the idle threshold.
    pub low_since: Option<i64>,
}

#[derive(Default)]
struct OpenBlock {
    start: i64,
    ts: Vec<i64>,
    values: Vec<f64>,
    /// How many samples the database already holds.
    flushed: usize,
}

#[derive(Default)]
struct Buffer {
    ids: HashMap<(Target, &'static str), i64>,
    open: HashMap<i64, OpenBlock>,
    /// Blocks whose hour ended, waiting for their final write.
    closed: Vec<(i64, OpenBlock)>,
}

struct Inner {
    db: Db,
    idle_below: f64,
    buf: Mutex<Buffer>,
    latest: Mutex<HashMap<(Target, &'static str), Latest>>,
    nodes: Mutex<HashMap<NodeId, NodeView>>,
    tx: broadcast::Sender<Arc<Vec<Sample>>>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    pub fn new(db: Db, idle_below: f64) -> Self {
        let (tx, _) = broadcast::channel(64);
        Hub {
            inner: Arc::new(Inner {
                db,
                idle_below,
                buf: Mutex::default(),
                latest: Mutex::default(),
                nodes: Mutex::default(),
                tx,
            }),
        }
    }

    /// Reloads the blocks of the hour holding `now` (after a restart), so
    /// that collection continues them instead of overwriting them.
    pub async fn reopen(&self, now: i64) -> Result<usize, DbError> {
        let start = floor(now, HOUR);
        let blocks = self
            .inner
            .db
            .read(move |c| {
                store::blocks_at(c, start).map_err(|e| match e {
                    StoreError::Sql(e) => DbError::from(e),
                    StoreError::Codec(e) => DbError::Join(e.to_string()),
                })
            })
            .await?;
        let mut buf = lock(&self.inner.buf);
        let n = blocks.len();
        for (id, ts, values) in blocks {
            let flushed = ts.len();
            buf.open.insert(
                id,
                OpenBlock {
                    start,
                    ts,
                    values,
                    flushed,
                },
            );
        }
        Ok(n)
    }

    /// Records a batch: series created on first use, samples appended to
    /// their open block (a sample not after the last one is dropped), the
    /// latest values updated, and the batch sent to live subscribers.
    pub async fn record(&self, samples: Vec<Sample>) -> Result<(), DbError> {
        if samples.is_empty() {
            return Ok(());
        }
        let missing: Vec<(Target, &'static str)> = {
            let buf = lock(&self.inner.buf);
            let mut m: Vec<_> = samples
                .iter()
                .map(|s| (s.target, s.metric))
                .filter(|k| !buf.ids.contains_key(k))
                .collect();
            m.sort();
            m.dedup();
            m
        };
        if !missing.is_empty() {
            let now = samples[0].ts;
            let ids = self
                .inner
                .db
                .write(move |c| {
                    let tx = c.transaction()?;
                    let mut out = Vec::with_capacity(missing.len());
                    for (t, m) in missing {
                        out.push(((t, m), store::series_id(&tx, &t, m, now)?));
                    }
                    tx.commit()?;
                    Ok::<_, DbError>(out)
                })
                .await?;
            lock(&self.inner.buf).ids.extend(ids);
        }
        self.append(&samples);
        let _ = self.inner.tx.send(Arc::new(samples));
        Ok(())
    }

    fn append(&self, samples: &[Sample]) {
        {
            let mut guard = lock(&self.inner.buf);
            let buf = &mut *guard;
            for s in samples {
                let Some(&id) = buf.ids.get(&(s.target, s.metric)) else {
                    continue;
                };
                let start = floor(s.ts, HOUR);
                let block = buf.open.entry(id).or_insert_with(|| OpenBlock {
                    start,
                    ..Default::default()
                });
                if block.start > start {
                    continue;
                }
                if block.start < start {
                    let old = std::mem::replace(
                        block,
                        OpenBlock {
                            start,
                            ..Default::default()
                        },
                    );
                    if old.ts.len() > old.flushed {
                        buf.closed.push((id, old));
                    }
                }
                if block.ts.last().is_some_and(|l| *l >= s.ts) {
                    continue;
                }
                block.ts.push(s.ts);
                block.values.push(s.value);
            }
        }
        let mut latest = lock(&self.inner.latest);
        for s in samples {
            let prev = latest.get(&(s.target, s.metric)).copied();
            let low = s.metric == "util_pct" && s.value < self.inner.idle_below;
            let low_since = if low {
                Some(prev.and_then(|p| p.low_since).unwrap_or(s.ts))
            } else {
                None
            };
            latest.insert(
                (s.target, s.metric),
                Latest {
                    ts: s.ts,
                    value: s.value,
                    low_since,
                },
            );
        }
    }

    /// Writes every block with unwritten samples (and the final state of
    /// blocks whose hour ended) in one transaction. Returns the blocks written.
    pub async fn flush(&self) -> Result<usize, DbError> {
        type Copy = (i64, i64, Vec<i64>, Vec<f64>);
        let (open, closed): (Vec<Copy>, Vec<(i64, OpenBlock)>) = {
            let mut buf = lock(&self.inner.buf);
            let open = buf
                .open
                .iter()
                .filter(|(_, b)| b.ts.len() > b.flushed)
                .map(|(id, b)| (*id, b.start, b.ts.clone(), b.values.clone()))
                .collect();
            (open, std::mem::take(&mut buf.closed))
        };
        let n = open.len() + closed.len();
        if n == 0 {
            return Ok(0);
        }
        let written: Vec<(i64, i64, usize)> = open
            .iter()
            .map(|(id, s, ts, _)| (*id, *s, ts.len()))
            .collect();
        let result = self
            .inner
            .db
            .write(move |c| {
                let tx = c.transaction()?;
                for (id, b) in &closed {
                    store::put_block(&tx, *id, b.start, &b.ts, &b.values).map_err(store_err)?;
                }
                for (id, start, ts, values) in &open {
                    store::put_block(&tx, *id, *start, ts, values).map_err(store_err)?;
                }
                tx.commit()?;
                Ok::<_, DbError>(())
            })
            .await;
        result?;
        let mut buf = lock(&self.inner.buf);
        for (id, start, len) in written {
            if let Some(b) = buf.open.get_mut(&id).filter(|b| b.start == start) {
                b.flushed = b.flushed.max(len);
            }
        }
        Ok(n)
    }

    /// Samples of `id`'s open block in `[since, until]` (newer than what the
    /// database has).
    pub fn open_samples(
        &self,
        id: i64,
        since: i64,
        until: i64,
    ) -> Option<(i64, Vec<i64>, Vec<f64>)> {
        let buf = lock(&self.inner.buf);
        let b = buf.open.get(&id)?;
        let (ts, vals): (Vec<i64>, Vec<f64>) =
            b.ts.iter()
                .zip(&b.values)
                .filter(|(t, _)| **t >= since && **t <= until)
                .map(|(t, v)| (*t, *v))
                .unzip();
        Some((b.start, ts, vals))
    }

    /// Open blocks held in memory and samples in them (for figures).
    pub fn buffered(&self) -> (usize, usize) {
        let buf = lock(&self.inner.buf);
        (buf.open.len(), buf.open.values().map(|b| b.ts.len()).sum())
    }

    pub fn latest(&self) -> HashMap<(Target, &'static str), Latest> {
        lock(&self.inner.latest).clone()
    }

    pub fn latest_of(&self, target: Target, metric: &'static str) -> Option<Latest> {
        lock(&self.inner.latest).get(&(target, metric)).copied()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<Sample>>> {
        self.inner.tx.subscribe()
    }

    /// What is known of `node` now.
    pub fn node(&self, node: NodeId) -> NodeView {
        lock(&self.inner.nodes)
            .get(&node)
            .cloned()
            .unwrap_or_default()
    }

    /// Records how `source` of `node` went at `now`.
    pub fn source_result(
        &self,
        node: NodeId,
        source: &'static str,
        now: i64,
        result: Result<(), String>,
    ) {
        let mut nodes = lock(&self.inner.nodes);
        let s = nodes
            .entry(node)
            .or_default()
            .sources
            .entry(source)
            .or_default();
        match result {
            Ok(()) => {
                s.ok_at = Some(now);
                s.error = None;
                s.error_at = None;
            }
            Err(e) => {
                s.error = Some(e);
                s.error_at = Some(now);
            }
        }
    }

    /// Forgets a source no longer configured.
    pub fn drop_source(&self, node: NodeId, source: &'static str) {
        if let Some(n) = lock(&self.inner.nodes).get_mut(&node) {
            n.sources.remove(source);
        }
    }

    pub fn set_gpus(&self, node: NodeId, now: i64, gpus: Result<Vec<GpuReading>, String>) {
        let mut nodes = lock(&self.inner.nodes);
        let n = nodes.entry(node).or_default();
        n.at = Some(now);
        match gpus {
            Ok(g) => {
                n.gpu_absent = g.is_empty().then(|| "no GPU reported".to_string());
                n.gpus = g;
            }
            Err(why) => {
                n.gpu_absent = Some(why);
                n.gpus.clear();
            }
        }
    }

    pub fn forget_node(&self, node: NodeId) {
        lock(&self.inner.nodes).remove(&node);
        lock(&self.inner.latest).retain(|(t, _), _| t.node() != node);
    }

    /// Forgets the ids of series removed by retention (and their written
    /// blocks): a later sample of the same target makes a new series
    /// instead of writing under an id that names nothing.
    pub fn forget_series(&self, ids: &[i64]) {
        if ids.is_empty() {
            return;
        }
        let mut buf = lock(&self.inner.buf);
        buf.ids.retain(|_, id| !ids.contains(id));
        for id in ids {
            if buf.open.get(id).is_some_and(|b| b.ts.len() == b.flushed) {
                buf.open.remove(id);
            }
        }
    }
}

fn store_err(e: StoreError) -> DbError {
    match e {
        StoreError::Sql(e) => DbError::from(e),
        StoreError::Codec(e) => DbError::Join(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ts: i64, v: f64) -> Sample {
        Sample {
            target: Target::Gpu {
                node: NodeId(1),
                gpu: 0,
            },
            metric: "util_pct",
            ts,
            value: v,
        }
    }

    #[tokio::test]
    async fn blocks_close_at_the_hour_and_flush_once() {
        let db = Db::open_memory().unwrap();
        let hub = Hub::new(db.clone(), 5.0);
        let t0 = 100 * HOUR;
        hub.record((0..10).map(|i| s(t0 + i * 15, 1.0)).collect())
            .await
            .unwrap();
        // A duplicate or older sample is dropped.
        hub.record(vec![s(t0 + 30, 99.0)]).await.unwrap();
        assert_eq!(hub.buffered(), (1, 10));
        assert_eq!(hub.flush().await.unwrap(), 1);
        assert_eq!(hub.flush().await.unwrap(), 0, "nothing new");
        hub.record(vec![s(t0 + HOUR - 15, 2.0), s(t0 + HOUR, 50.0)])
            .await
            .unwrap();
        assert_eq!(
            hub.flush().await.unwrap(),
            2,
            "the closed hour and the new one"
        );
        let id = db
            .read(|c| {
                store::find_series(
                    c,
                    &Target::Gpu {
                        node: NodeId(1),
                        gpu: 0,
                    },
                    "util_pct",
                )
                .map_err(DbError::from)
            })
            .await
            .unwrap()
            .unwrap();
        let (ts, v) = db
            .read(move |c| store::raw_range(c, id, 0, i64::MAX).map_err(store_err))
            .await
            .unwrap();
        assert_eq!(ts.len(), 12);
        assert_eq!(v[10..], [2.0, 50.0]);
        // Utilisation low for a while, then busy: low_since tracks it.
        let l = hub
            .latest_of(
                Target::Gpu {
                    node: NodeId(1),
                    gpu: 0,
                },
                "util_pct",
            )
            .unwrap();
        assert_eq!((l.value, l.low_since), (50.0, None));
        hub.record(vec![s(t0 + HOUR + 15, 1.0), s(t0 + HOUR + 30, 2.0)])
            .await
            .unwrap();
        let l = hub
            .latest_of(
                Target::Gpu {
                    node: NodeId(1),
                    gpu: 0,
                },
                "util_pct",
            )
            .unwrap();
        assert_eq!(l.low_since, Some(t0 + HOUR + 15));
        // A restart within the hour continues the stored block.
        hub.flush().await.unwrap();
        let hub2 = Hub::new(db, 5.0);
        assert_eq!(hub2.reopen(t0 + HOUR + 100).await.unwrap(), 1);
        assert_eq!(hub2.buffered(), (1, 3));
    }
}
