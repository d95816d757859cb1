//! SQL of the metric tiers: series ids, raw blocks, rollups, retention.
//! Every function takes `now` (or the hours to work on) from its caller:
//! the clock is injectable.

use rusqlite::{Connection, OptionalExtension, params};

use super::codec;
use super::model::{Kind, Target};
use super::rollup::{Agg, DAY, HOUR, Retention};
use crate::ids::{InstanceId, NodeId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

impl From<StoreError> for crate::error::AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Sql(e) => e.into(),
            StoreError::Codec(e) => crate::error::AppError::internal(e),
        }
    }
}

/// The id of the series (`target`, `metric`), created on first use.
pub fn series_id(
    conn: &Connection,
    target: &Target,
    metric: &str,
    now: i64,
) -> rusqlite::Result<i64> {
    let (node, gpu, instance) = target.columns();
    let kind = target.kind().as_str();
    conn.prepare_cached(
        "INSERT OR IGNORE INTO metrics_series (kind, node_id, gpu, instance_id, metric, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![kind, node, gpu, instance, metric, now])?;
    conn.prepare_cached(
        "SELECT id FROM metrics_series WHERE kind = ?1 AND node_id = ?2 AND gpu = ?3 \
         AND instance_id = ?4 AND metric = ?5",
    )?
    .query_row(params![kind, node, gpu, instance, metric], |r| r.get(0))
}

/// The existing series of (`target`, `metric`).
pub fn find_series(
    conn: &Connection,
    target: &Target,
    metric: &str,
) -> rusqlite::Result<Option<i64>> {
    let (node, gpu, instance) = target.columns();
    conn.prepare_cached(
        "SELECT id FROM metrics_series WHERE kind = ?1 AND node_id = ?2 AND gpu = ?3 \
         AND instance_id = ?4 AND metric = ?5",
    )?
    .query_row(
        params![target.kind().as_str(), node, gpu, instance, metric],
        |r| r.get(0),
    )
    .optional()
}

/// Every series: (id, target, metric).
pub fn all_series(conn: &Connection) -> rusqlite::Result<Vec<(i64, Target, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, node_id, gpu, instance_id, metric FROM metrics_series ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, NodeId>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, InstanceId>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, kind, node, gpu, instance, metric) = row?;
        if let Some(t) = Target::from_columns(&kind, node, gpu, instance) {
            out.push((id, t, metric));
        }
    }
    Ok(out)
}

/// Writes (or rewrites, as it grows) the block of `series` starting at `start`.
pub fn put_block(
    conn: &Connection,
    series: i64,
    start: i64,
    ts: &[i64],
    values: &[f64],
) -> Result<(), StoreError> {
    let Some(&last) = ts.last() else {
        return Ok(());
    };
    let data = codec::encode(ts, values)?;
    conn.prepare_cached(
        "INSERT INTO metrics_raw (series_id, block_start, samples, last_ts, data) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (series_id, block_start) DO UPDATE SET samples = ?3, last_ts = ?4, data = ?5",
    )?
    .execute(params![series, start, ts.len() as i64, last, data])?;
    Ok(())
}

/// A block read back: (series id, timestamps, values).
pub type Block = (i64, Vec<i64>, Vec<f64>);

/// Every block that starts at `start` (to reopen the current hour after a restart).
pub fn blocks_at(conn: &Connection, start: i64) -> Result<Vec<Block>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT series_id, data FROM metrics_raw WHERE block_start = ?1")?;
    let rows: Vec<(i64, Vec<u8>)> = stmt
        .query_map([start], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(id, data)| {
            let (ts, v) = codec::decode(&data)?;
            Ok((id, ts, v))
        })
        .collect()
}

/// Raw samples of `series` in `[since, until]`, ascending.
pub fn raw_range(
    conn: &Connection,
    series: i64,
    since: i64,
    until: i64,
) -> Result<(Vec<i64>, Vec<f64>), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT data FROM metrics_raw WHERE series_id = ?1 AND block_start >= ?2 AND block_start <= ?3 \
         ORDER BY block_start",
    )?;
    let blobs: Vec<Vec<u8>> = stmt
        .query_map(params![series, since - HOUR + 1, until], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    for b in blobs {
        let (t, v) = codec::decode(&b)?;
        for (t, v) in t.into_iter().zip(v) {
            if t >= since && t <= until {
                ts.push(t);
                vals.push(v);
            }
        }
    }
    Ok((ts, vals))
}

/// Rollup rows of `series` from `table` (`metrics_hourly` or `metrics_daily`).
pub fn rollup_range(
    conn: &Connection,
    daily: bool,
    series: i64,
    since: i64,
    until: i64,
) -> rusqlite::Result<Vec<Agg>> {
    let sql = if daily {
        "SELECT ts, min, max, avg, count FROM metrics_daily WHERE series_id = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts"
    } else {
        "SELECT ts, min, max, avg, count FROM metrics_hourly WHERE series_id = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts"
    };
    conn.prepare_cached(sql)?
        .query_map(params![series, since, until], |r| {
            Ok(Agg {
                ts: r.get(0)?,
                min: r.get(1)?,
                max: r.get(2)?,
                avg: r.get(3)?,
                count: r.get(4)?,
            })
        })?
        .collect()
}

fn meta_i64(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

fn set_meta_i64(conn: &Connection, key: &str, v: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, v],
    )?;
    Ok(())
}

const HOURLY_DONE: &str = "metrics.hourly_done";
const DAILY_DONE: &str = "metrics.daily_done";

/// Rolls every raw block of a finished hour (before `now`'s hour) that is
/// not rolled up yet into `metrics_hourly`, then every finished day into
/// `metrics_daily`. Returns (hourly rows, daily rows) written. Idempotent:
/// progress is kept in `meta`, and rows are replaced, never added twice.
pub fn rollup(conn: &Connection, now: i64) -> Result<(usize, usize), StoreError> {
    let hour = super::rollup::floor(now, HOUR);
    let from = meta_i64(conn, HOURLY_DONE)?.unwrap_or(i64::MIN);
    let mut stmt = conn.prepare_cached(
        "SELECT series_id, block_start, data FROM metrics_raw WHERE block_start >= ?1 AND block_start < ?2",
    )?;
    let rows: Vec<(i64, i64, Vec<u8>)> = stmt
        .query_map(params![from, hour], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO metrics_hourly (series_id, ts, min, max, avg, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut hourly = 0;
    for (series, start, data) in rows {
        let (_, values) = codec::decode(&data)?;
        if let Some(a) = Agg::of(start, &values) {
            insert.execute(params![series, a.ts, a.min, a.max, a.avg, a.count])?;
            hourly += 1;
        }
    }
    set_meta_i64(conn, HOURLY_DONE, hour)?;
    let day = super::rollup::floor(now, DAY);
    let from = meta_i64(conn, DAILY_DONE)?.unwrap_or(i64::MIN);
    let daily = conn.execute(
        "INSERT OR REPLACE INTO metrics_daily (series_id, ts, min, max, avg, count) \
         SELECT series_id, ts - ts % 86400, min(min), max(max), sum(avg * count) / sum(count), sum(count) \
         FROM metrics_hourly WHERE ts >= ?1 AND ts < ?2 GROUP BY series_id, ts - ts % 86400",
        params![from.max(i64::MIN / 2), day],
    )?;
    set_meta_i64(conn, DAILY_DONE, day)?;
    Ok((hourly, daily))
}

/// Deletes what is older than each tier's retention, and series left with
/// no data in any tier. Returns the rows removed and the ids of the series
/// removed (ids are never given again: the table is AUTOINCREMENT).
pub fn retention(
    conn: &Connection,
    now: i64,
    r: &Retention,
) -> rusqlite::Result<(usize, Vec<i64>)> {
    let mut n = conn.execute("DELETE FROM metrics_raw WHERE last_ts < ?1", [now - r.raw])?;
    n += conn.execute("DELETE FROM metrics_hourly WHERE ts < ?1", [now - r.hourly])?;
    n += conn.execute("DELETE FROM metrics_daily WHERE ts < ?1", [now - r.daily])?;
    let gone: Vec<i64> = conn
        .prepare(
            "DELETE FROM metrics_series WHERE created_at < ?1 \
             AND NOT EXISTS (SELECT 1 FROM metrics_raw WHERE series_id = metrics_series.id) \
             AND NOT EXISTS (SELECT 1 FROM metrics_hourly WHERE series_id = metrics_series.id) \
             AND NOT EXISTS (SELECT 1 FROM metrics_daily WHERE series_id = metrics_series.id) \
             RETURNING id",
        )?
        .query_map([now - r.raw], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((n + gone.len(), gone))
}

/// Series ids of `kind` for `metric` (e.g. every GPU's util_pct).
pub fn series_of_kind(
    conn: &Connection,
    kind: Kind,
    metric: &str,
) -> rusqlite::Result<Vec<(i64, Target)>> {
    Ok(all_series(conn)?
        .into_iter()
        .filter(|(_, t, m)| t.kind() == kind && m == metric)
        .map(|(id, t, _)| (id, t))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::rollup::{Tier, bucket_raw, bucket_rollups, choose_tier};

    const R: Retention = Retention {
        interval: 15,
        raw: 48 * HOUR,
        hourly: 90 * DAY,
        daily: 730 * DAY,
    };

    /// Writes hour-blocks of 15 s samples for `hours` hours from `t0`
    /// (value = minutes past the hour), skipping `skip` hours entirely.
    fn fill(conn: &Connection, series: i64, t0: i64, hours: i64, skip: &[i64]) {
        for h in 0..hours {
            if skip.contains(&h) {
                continue;
            }
            let start = t0 + h * HOUR;
            let ts: Vec<i64> = (0..240).map(|i| start + i * 15).collect();
            let vals: Vec<f64> = ts.iter().map(|t| ((t - start) / 60) as f64).collect();
            put_block(conn, series, start, &ts, &vals).unwrap();
        }
    }

    #[test]
    fn rollups_gaps_and_retention_follow_an_injected_clock() {
        let conn = crate::db::memory().unwrap();
        let t0 = 20_000 * DAY; // a UTC midnight
        let gpu = Target::Gpu {
            node: NodeId(1),
            gpu: 0,
        };
        let s = series_id(&conn, &gpu, "util_pct", t0).unwrap();
        assert_eq!(series_id(&conn, &gpu, "util_pct", t0 + 5).unwrap(), s);
        // 30 hours of samples, with hours 3 and 4 missing (the agent was down).
        fill(&conn, s, t0, 30, &[3, 4]);

        // Halfway through hour 2: only hours 0 and 1 are finished.
        assert_eq!(rollup(&conn, t0 + 2 * HOUR + 1800).unwrap(), (2, 0));
        let rows = rollup_range(&conn, false, s, t0, t0 + 30 * HOUR).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].count, 240);
        assert_eq!((rows[0].min, rows[0].max, rows[0].avg), (0.0, 59.0, 29.5));
        // Running again changes nothing; later, the rest is rolled up once.
        assert_eq!(rollup(&conn, t0 + 2 * HOUR + 1900).unwrap(), (0, 0));
        let now = t0 + 30 * HOUR + 60;
        let (hourly, daily) = rollup(&conn, now).unwrap();
        assert_eq!(
            (hourly, daily),
            (26, 1),
            "hours 2..29 less the two missing; day 0"
        );
        let rows = rollup_range(&conn, false, s, t0, now).unwrap();
        assert_eq!(rows.len(), 28);
        assert!(
            rows.iter()
                .all(|r| r.ts != t0 + 3 * HOUR && r.ts != t0 + 4 * HOUR)
        );
        let days = rollup_range(&conn, true, s, t0, now).unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].count, 22 * 240, "day 0 holds 22 hours of samples");
        assert_eq!(days[0].avg, 29.5);

        // The gap is a gap in every tier: buckets without rows are None.
        let p = bucket_rollups(&rows, t0, t0 + 6 * HOUR - 1, HOUR);
        assert_eq!(p.values[2], Some(29.5));
        assert_eq!((p.values[3], p.values[4]), (None, None));
        let (ts, vals) = raw_range(&conn, s, t0 + 2 * HOUR, t0 + 6 * HOUR - 1).unwrap();
        assert_eq!(ts.len(), 2 * 240);
        let p = bucket_raw(&ts, &vals, t0 + 2 * HOUR, t0 + 6 * HOUR - 1, 900);
        assert_eq!(p.filled(), 8, "hours 2 and 5 have data, 3 and 4 none");
        assert!(p.values[4..12].iter().all(Option::is_none));

        // Retention: at now + 48 h, raw of the first day is gone, rollups stay.
        let later = now + 48 * HOUR;
        assert_eq!(choose_tier(later, t0, t0 + DAY, &R), Tier::Hourly);
        let (removed, _) = retention(&conn, later, &R).unwrap();
        assert_eq!(removed, 28, "all 28 raw blocks end more than 48 h before");
        assert!(raw_range(&conn, s, t0, later).unwrap().0.is_empty());
        assert_eq!(rollup_range(&conn, false, s, t0, later).unwrap().len(), 28);
        // After 90 days the hourly rows go, the daily stay; after 2 years all,
        // and the empty series with them.
        retention(&conn, t0 + 92 * DAY, &R).unwrap();
        assert!(rollup_range(&conn, false, s, t0, later).unwrap().is_empty());
        assert_eq!(rollup_range(&conn, true, s, t0, later).unwrap().len(), 1);
        let (_, gone) = retention(&conn, t0 + 731 * DAY, &R).unwrap();
        assert_eq!(gone, [s]);
        assert!(find_series(&conn, &gpu, "util_pct").unwrap().is_none());
        let again = series_id(&conn, &gpu, "util_pct", t0 + 731 * DAY).unwrap();
        assert!(again > s, "a removed series' id is not given again");
    }

    #[test]
    fn blocks_rewrite_in_place_and_reopen() {
        let conn = crate::db::memory().unwrap();
        let t = Target::Instance {
            node: NodeId(2),
            instance: InstanceId(9),
        };
        let s = series_id(&conn, &t, "cpu_pct", 0).unwrap();
        put_block(&conn, s, 3600, &[3600, 3615], &[1.0, 2.0]).unwrap();
        put_block(&conn, s, 3600, &[3600, 3615, 3630], &[1.0, 2.0, 3.0]).unwrap();
        let open = blocks_at(&conn, 3600).unwrap();
        assert_eq!(open, vec![(s, vec![3600, 3615, 3630], vec![1.0, 2.0, 3.0])]);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM metrics_raw", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            all_series(&conn).unwrap(),
            vec![(s, t, "cpu_pct".to_string())]
        );
    }
}
