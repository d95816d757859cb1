//! Figures for metrics (printed, not asserted; `cargo bench --bench metrics`,
//! no root or GPU needed), for 20 nodes × 8 GPUs and 200 instances at 15 s,
//! with gpudock's whole catalogue (12 GPU, 14 host and 10 instance metrics:
//! 4,200 series; the issue's "about 2,000" counts fewer per GPU):
//! 1. collector + storage CPU over one simulated hour at the real cadence:
//!    per round, parse 20 agent expositions (8 GPUs + host each, as written
//!    by the agent) and decode 200 Docker stats answers, record every sample
//!    in the hub, flush every minute with rollup and retention;
//! 2. bytes per stored raw sample after 24 h more (file size against an
//!    empty database), against one row per sample (the baseline) and
//!    Prometheus' ~1.3 bytes (the anchor);
//! 3. a 24 h query of one series (raw tier) and a 30-day one (hourly tier,
//!    with 30 days of hourly rows for every series);
//! 4. RSS growth between the end of the first hour and the end of 25 hours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gpudock::db::Db;
use gpudock::ids::{InstanceId, NodeId};
use gpudock::metrics::hub::Hub;
use gpudock::metrics::model::{GpuReading, HostReading, Sample, Target};
use gpudock::metrics::rollup::{self, HOUR, Retention};
use gpudock::metrics::{docker_stats, expose, prom, store};

const NODES: i64 = 20;
const GPUS: i64 = 8;
const INSTANCES: i64 = 200;
const STEP: i64 = 15;
const T0: i64 = 1_800_000_000 - 1_800_000_000 % 86_400;

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn step(&mut self, v: f64, span: f64, lo: f64, hi: f64) -> f64 {
        let d = (self.next() % 2001) as f64 / 1000.0 - 1.0;
        (v + d * span).clamp(lo, hi)
    }
}

/// One node's world: 8 GPUs and a host, shaped as NVML and /proc give them.
struct World {
    rng: Rng,
    gpus: Vec<GpuReading>,
    host: HostReading,
}

impl World {
    fn new(seed: u64) -> Self {
        let fixture = include_str!("../tests/fixtures/dcgm-exporter-h100x8.prom");
        let gpus = prom::gpus_from_dcgm(&prom::parse(fixture).unwrap());
        World {
            rng: Rng(seed | 1),
            gpus,
            host: gpudock::metrics::host::read(&["/"]),
        }
    }

    /// Moves every figure as a busy lab's would.
    fn tick(&mut self, at: f64) {
        let r = &mut self.rng;
        for g in &mut self.gpus {
            g.util_pct = g.util_pct.map(|v| r.step(v, 8.0, 0.0, 100.0).round());
            g.mem_util_pct = g.mem_util_pct.map(|v| r.step(v, 5.0, 0.0, 100.0).round());
            g.temp_c = g.temp_c.map(|v| r.step(v, 1.0, 25.0, 90.0).round());
            g.power_w = g
                .power_w
                .map(|v| (r.step(v, 25.0, 60.0, 700.0) * 1000.0).round() / 1000.0);
            if r.next().is_multiple_of(20) {
                g.mem_used_bytes = g
                    .mem_used_bytes
                    .map(|v| (r.step(v / 1_048_576.0, 500.0, 0.0, 80_000.0)).round() * 1_048_576.0);
            }
        }
        let h = &mut self.host;
        h.at = at;
        if let Some(c) = &mut h.cpu {
            c.total += 15.0 * 64.0;
            c.idle += 15.0 * 64.0 * (r.next() % 1000) as f64 / 1000.0;
        }
        h.mem_available = h
            .mem_available
            .map(|v| v - (r.next() % 1_000_000) as f64 * 4.0 + 2_000_000.0);
        for n in &mut h.net {
            n.rx_bytes += (r.next() % 50_000_000) as f64;
            n.tx_bytes += (r.next() % 5_000_000) as f64;
        }
        h.load = h.load.map(|[a, b, c]| {
            let a = (r.step(f64::from(a as f32), 0.5, 0.0, 64.0) * 100.0).round() / 100.0;
            [f64::from(a as f32), b, c]
        });
    }

    fn exposition(&self) -> String {
        let mut x = expose::Exposition::default();
        expose::write_host(&mut x, &self.host);
        expose::write_gpus(&mut x, &self.gpus, "gpu-node");
        expose::write_gpu_state(&mut x, &Ok(self.gpus.clone()));
        x.finish()
    }
}

fn stats_json(cpu_ns: u64, sys_ns: u64, mem: u64, rx: u64) -> String {
    format!(
        r#"{{"read":"2026-01-01T00:00:00Z","cpu_stats":{{"cpu_usage":{{"total_usage":{cpu_ns}}},"system_cpu_usage":{sys_ns},"online_cpus":64}},
        "memory_stats":{{"usage":{mem},"limit":68719476736,"stats":{{"inactive_file":1048576}}}},
        "networks":{{"eth0":{{"rx_bytes":{rx},"tx_bytes":{}}}}},
        "blkio_stats":{{"io_service_bytes_recursive":[{{"major":8,"minor":0,"op":"read","value":4096}},{{"major":8,"minor":0,"op":"write","value":8192}}]}}}}"#,
        rx / 3
    )
}

fn cpu_secs() -> f64 {
    let s = procfs::process::Process::myself().unwrap().stat().unwrap();
    (s.utime + s.stime) as f64 / procfs::ticks_per_second() as f64
}

fn rss_kib() -> u64 {
    procfs::process::Process::myself()
        .unwrap()
        .status()
        .unwrap()
        .vmrss
        .unwrap_or(0)
}

struct Sim {
    worlds: Vec<World>,
    prev_host: Vec<Option<HostReading>>,
    stats: Vec<(u64, u64, u64, u64)>,
    prev_stats: Vec<Option<docker_stats::StatsReading>>,
    rng: Rng,
    samples: u64,
}

impl Sim {
    /// One collection round at `ts`: what the collectors do, from text.
    fn round(&mut self, ts: i64) -> Vec<Sample> {
        let mut out = Vec::with_capacity(4_500);
        for (n, w) in self.worlds.iter_mut().enumerate() {
            w.tick(ts as f64);
            let text = w.exposition();
            let parsed = prom::parse(&text).unwrap();
            let host = prom::host_from_node_exporter(&parsed, ts as f64).unwrap();
            let node = NodeId(n as i64 + 1);
            out.extend(host.samples(self.prev_host[n].as_ref(), node, ts, Some("/"), Some("/")));
            self.prev_host[n] = Some(host);
            for g in prom::gpus_from_dcgm(&parsed) {
                out.extend(g.samples(node, ts));
            }
        }
        for i in 0..INSTANCES as usize {
            let s = &mut self.stats[i];
            s.0 += self.rng.next() % 15_000_000_000;
            s.1 += 15 * 64 * 1_000_000_000;
            s.2 = (s.2 as i64 + (self.rng.next() % 8_192) as i64 * 4096 - 16_777_216).max(4096)
                as u64;
            s.3 += self.rng.next() % 10_000_000;
            let json = stats_json(s.0, s.1, s.2, s.3);
            let resp: bollard::models::ContainerStatsResponse =
                serde_json::from_str(&json).unwrap();
            let reading = docker_stats::reading_of(&resp, ts as f64);
            let facts = docker_stats::Facts {
                cpu_limit: Some(8.0),
                restarts: 0,
                oom_killed: false,
            };
            let t = Target::Instance {
                node: NodeId(i as i64 % NODES + 1),
                instance: InstanceId(i as i64 + 1),
            };
            out.extend(docker_stats::samples(
                self.prev_stats[i].as_ref(),
                &reading,
                &facts,
                t,
                ts,
            ));
            self.prev_stats[i] = Some(reading);
        }
        self.samples += out.len() as u64;
        out
    }
}

fn db_bytes(path: &std::path::Path) -> u64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
        .unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let db = Db::open(&path).unwrap();
    let empty = db_bytes(&path);
    let hub = Hub::new(db.clone(), 5.0);
    let r = Retention {
        interval: STEP,
        raw: 48 * HOUR,
        hourly: 90 * 86_400,
        daily: 730 * 86_400,
    };
    let mut sim = Sim {
        worlds: (0..NODES)
            .map(|i| World::new(0x9e37_79b9 + i as u64))
            .collect(),
        prev_host: vec![None; NODES as usize],
        stats: vec![(0, 0, 1 << 30, 0); INSTANCES as usize],
        prev_stats: vec![None; INSTANCES as usize],
        rng: Rng(42),
        samples: 0,
    };
    let maintain = |now: i64| {
        let db = db.clone();
        async move {
            db.write(move |c| {
                let tx = c.transaction().unwrap();
                store::rollup(&tx, now).unwrap();
                store::retention(&tx, now, &r).unwrap();
                tx.commit().map_err(gpudock::db::DbError::from)
            })
            .await
            .unwrap();
        }
    };

    // 1. One hour at the real cadence: a round every 15 s, a flush (with
    // rollup and retention) every minute.
    hub.record(sim.round(T0 - STEP)).await.unwrap();
    let (cpu0, wall0) = (cpu_secs(), Instant::now());
    let mut collect = 0.0;
    for k in 0..(HOUR / STEP) {
        let ts = T0 + k * STEP;
        let c = cpu_secs();
        let batch = sim.round(ts);
        collect += cpu_secs() - c;
        hub.record(batch).await.unwrap();
        if k % 4 == 3 {
            hub.flush().await.unwrap();
            maintain(ts).await;
        }
    }
    let cpu = cpu_secs() - cpu0;
    let series: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM metrics_series", [], |r| r.get(0))
        .unwrap();
    println!(
        "== metrics bench: {NODES} nodes x {GPUS} GPUs, {INSTANCES} instances, every {STEP} s: {series} series"
    );
    println!(
        "collector + storage CPU over 1 simulated hour: {cpu:.2} s = {:.3} % of one core (target <= 2 %); \
         of which parsing/decoding {collect:.2} s; wall {:.1} s",
        cpu / HOUR as f64 * 100.0,
        wall0.elapsed().as_secs_f64()
    );
    let rss_1h = rss_kib();

    // 2. 24 hours more (flushes at each hour's end: the stored blocks are the same).
    let samples_1h = sim.samples;
    for k in (HOUR / STEP)..(25 * HOUR / STEP) {
        let ts = T0 + k * STEP;
        hub.record(sim.round(ts)).await.unwrap();
        if (ts + STEP) % HOUR == 0 {
            hub.flush().await.unwrap();
            maintain(ts + STEP).await;
        }
    }
    hub.flush().await.unwrap();
    let rss_25h = rss_kib();
    let raw_samples: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT sum(samples) FROM metrics_raw", [], |r| r.get(0))
        .unwrap();
    let total = db_bytes(&path) - empty;
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE keep AS SELECT * FROM metrics_hourly; DELETE FROM metrics_hourly; DELETE FROM metrics_daily;").unwrap();
    }
    let raw_only = db_bytes(&path) - empty;
    let per = raw_only as f64 / raw_samples as f64;
    // Baseline: one row per sample (series, ts, value), one hour of the same data.
    let naive_rows = {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("INSERT INTO metrics_hourly SELECT * FROM keep; DROP TABLE keep;")
            .unwrap();
        let nv = dir.path().join("naive.db");
        let n = rusqlite::Connection::open(&nv).unwrap();
        n.execute_batch("CREATE TABLE s (series INTEGER, ts INTEGER, value REAL, PRIMARY KEY (series, ts)) WITHOUT ROWID; BEGIN;").unwrap();
        let mut rows = 0;
        let mut st = c
            .prepare("SELECT series_id, data FROM metrics_raw WHERE block_start = ?1")
            .unwrap();
        let blocks: Vec<(i64, Vec<u8>)> = st
            .query_map([T0 + HOUR], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut ins = n.prepare("INSERT INTO s VALUES (?1, ?2, ?3)").unwrap();
        for (id, data) in blocks {
            let (ts, vals) = gpudock::metrics::codec::decode(&data).unwrap();
            for (t, v) in ts.iter().zip(vals) {
                ins.execute(rusqlite::params![id, t, v]).unwrap();
                rows += 1;
            }
        }
        drop(ins);
        n.execute_batch("COMMIT;").unwrap();
        drop(n);
        (db_bytes(&nv) as f64 / rows as f64, rows)
    };
    println!(
        "stored: {raw_samples} raw samples (24 h + 1 h); database growth {:.1} MiB with rollups, {:.1} MiB raw only",
        total as f64 / 1_048_576.0,
        raw_only as f64 / 1_048_576.0
    );
    println!(
        "bytes per raw sample: {per:.2} (target <= 4); one row per sample: {:.1} bytes ({} rows) = {:.0}x more; \
         Prometheus TSDB anchor ~1.3 bytes = {:.1}x ours",
        naive_rows.0,
        naive_rows.1,
        naive_rows.0 / per,
        per / 1.3
    );
    let _ = samples_1h;

    // 3. Queries. 30 days of hourly rows for every series first.
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        let tx = c.transaction().unwrap();
        {
            let mut ins = tx
                .prepare("INSERT OR REPLACE INTO metrics_hourly VALUES (?1, ?2, ?3, ?4, ?5, 240)")
                .unwrap();
            let ids: Vec<i64> = tx
                .prepare("SELECT id FROM metrics_series")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            for id in &ids {
                for h in 0..(30 * 24) {
                    let v = (h % 97) as f64;
                    ins.execute(rusqlite::params![
                        id,
                        T0 - 29 * 86_400 + h * HOUR,
                        v - 1.0,
                        v + 1.0,
                        v
                    ])
                    .unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
    let reader = rusqlite::Connection::open(&path).unwrap();
    let sid = store::find_series(
        &reader,
        &Target::Gpu {
            node: NodeId(7),
            gpu: 3,
        },
        "util_pct",
    )
    .unwrap()
    .unwrap();
    let now = T0 + 25 * HOUR;
    let mut q24 = Vec::new();
    let mut pts = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let step = rollup::choose_step(rollup::Tier::Raw, None, now - 86_400, now, STEP);
        let (ts, vals) = store::raw_range(&reader, sid, now - 86_400, now).unwrap();
        let p = rollup::bucket_raw(&ts, &vals, now - 86_400, now, step);
        pts = p.filled();
        q24.push(t.elapsed());
    }
    let mut q30 = Vec::new();
    let mut pts30 = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let rows = store::rollup_range(&reader, false, sid, now - 30 * 86_400, now).unwrap();
        let p = rollup::bucket_rollups(&rows, now - 30 * 86_400, now, HOUR);
        pts30 = p.filled();
        q30.push(t.elapsed());
    }
    println!(
        "24 h query of one series (raw tier, {pts} points): median {:?} (target <= 20 ms); \
         30 d (hourly tier, {pts30} points): median {:?} (target <= 50 ms)",
        median(q24),
        median(q30)
    );
    let (blocks, buffered) = hub.buffered();
    println!(
        "RSS: {rss_1h} KiB after the first hour, {rss_25h} KiB after 25 hours: growth {} KiB (target <= 10 MB); \
         {blocks} open blocks holding {buffered} samples",
        rss_25h as i64 - rss_1h as i64
    );
}
