//! Pure arithmetic of the tiers: aggregating samples into min / max / avg /
//! count, choosing the tier and step for a range, and bucketing a range into
//! points where an empty bucket is a gap (`None`), never a zero.

use serde::Serialize;

pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;
/// At most this many points per answer: the step grows with the range.
pub const MAX_POINTS: i64 = 2000;

/// Start of the UTC hour / day / step-aligned bucket holding `ts`.
pub fn floor(ts: i64, step: i64) -> i64 {
    ts - ts.rem_euclid(step)
}

/// One rollup row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Agg {
    pub ts: i64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub count: i64,
}

impl Agg {
    /// Aggregates `values` (non-empty) at `ts`.
    pub fn of(ts: i64, values: &[f64]) -> Option<Agg> {
        let (first, _) = values.split_first()?;
        let (mut min, mut max, mut sum) = (*first, *first, 0.0);
        for v in values {
            min = min.min(*v);
            max = max.max(*v);
            sum += v;
        }
        Some(Agg {
            ts,
            min,
            max,
            avg: sum / values.len() as f64,
            count: values.len() as i64,
        })
    }

    /// Merges rollup rows (weights averages by their counts).
    pub fn merge(ts: i64, rows: &[Agg]) -> Option<Agg> {
        let (first, _) = rows.split_first()?;
        let (mut min, mut max, mut sum, mut n) = (first.min, first.max, 0.0, 0);
        for r in rows {
            min = min.min(r.min);
            max = max.max(r.max);
            sum += r.avg * r.count as f64;
            n += r.count;
        }
        (n > 0).then(|| Agg {
            ts,
            min,
            max,
            avg: sum / n as f64,
            count: n,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Raw,
    Hourly,
    Daily,
}

/// How long each tier is kept, and the raw sampling interval.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub interval: i64,
    pub raw: i64,
    pub hourly: i64,
    pub daily: i64,
}

impl Retention {
    pub fn of(c: &crate::config::MetricsConfig) -> Self {
        Retention {
            interval: c.interval_secs as i64,
            raw: c.raw_retention_hours as i64 * HOUR,
            hourly: c.hourly_retention_days as i64 * DAY,
            daily: c.daily_retention_days as i64 * DAY,
        }
    }
}

/// The tier that answers `[since, until]` at `now`: raw for spans up to two
/// days still within raw retention, hourly up to 90 days within its
/// retention, daily beyond.
pub fn choose_tier(now: i64, since: i64, until: i64, r: &Retention) -> Tier {
    let span = until - since;
    if span <= 2 * DAY && since >= now - r.raw {
        Tier::Raw
    } else if span <= 90 * DAY && since >= now - r.hourly {
        Tier::Hourly
    } else {
        Tier::Daily
    }
}

/// The step: what was asked (or the span / 720 for about a chart's width),
/// at least the tier's resolution, a multiple of it, and no more than
/// `MAX_POINTS` buckets.
pub fn choose_step(tier: Tier, asked: Option<i64>, since: i64, until: i64, interval: i64) -> i64 {
    let unit = match tier {
        Tier::Raw => interval.max(1),
        Tier::Hourly => HOUR,
        Tier::Daily => DAY,
    };
    let span = (until - since).max(1);
    let wanted = asked
        .unwrap_or(span / 720)
        .max(span / MAX_POINTS + 1)
        .max(unit);
    (wanted + unit - 1) / unit * unit
}

/// Points of a range: bucket starts, and per bucket the average, minimum and
/// maximum of what fell in it (`None`: nothing did — a gap).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Points {
    pub timestamps: Vec<i64>,
    pub values: Vec<Option<f64>>,
    pub min: Vec<Option<f64>>,
    pub max: Vec<Option<f64>>,
}

impl Points {
    fn empty(since: i64, until: i64, step: i64) -> Self {
        let timestamps: Vec<i64> = (floor(since, step)..=until)
            .step_by(step as usize)
            .collect();
        let n = timestamps.len();
        Points {
            timestamps,
            values: vec![None; n],
            min: vec![None; n],
            max: vec![None; n],
        }
    }

    fn set(&mut self, i: usize, a: &Agg) {
        self.values[i] = Some(a.avg);
        self.min[i] = Some(a.min);
        self.max[i] = Some(a.max);
    }

    /// How many buckets hold data.
    pub fn filled(&self) -> usize {
        self.values.iter().filter(|v| v.is_some()).count()
    }
}

fn bucket_index(ts: i64, first: i64, step: i64, n: usize) -> Option<usize> {
    let i = usize::try_from((ts - first).div_euclid(step)).ok()?;
    (i < n).then_some(i)
}

/// Buckets raw samples (ascending by time) into `step`-wide points.
pub fn bucket_raw(ts: &[i64], values: &[f64], since: i64, until: i64, step: i64) -> Points {
    let mut p = Points::empty(since, until, step);
    let Some(&first) = p.timestamps.first() else {
        return p;
    };
    let n = p.timestamps.len();
    let mut i = 0;
    while i < ts.len() {
        let Some(b) =
            bucket_index(ts[i], first, step, n).filter(|_| ts[i] >= since && ts[i] <= until)
        else {
            i += 1;
            continue;
        };
        let start = i;
        while i < ts.len() && bucket_index(ts[i], first, step, n) == Some(b) {
            i += 1;
        }
        if let Some(a) = Agg::of(p.timestamps[b], &values[start..i]) {
            p.set(b, &a);
        }
    }
    p
}

/// Buckets rollup rows into `step`-wide points.
pub fn bucket_rollups(rows: &[Agg], since: i64, until: i64, step: i64) -> Points {
    let mut p = Points::empty(since, until, step);
    let Some(&first) = p.timestamps.first() else {
        return p;
    };
    let n = p.timestamps.len();
    let mut groups: Vec<Vec<Agg>> = vec![Vec::new(); n];
    for r in rows
        .iter()
        .filter(|r| r.ts >= floor(since, step) && r.ts <= until)
    {
        if let Some(b) = bucket_index(r.ts, first, step, n) {
            groups[b].push(*r);
        }
    }
    for (b, g) in groups.iter().enumerate() {
        if let Some(a) = Agg::merge(p.timestamps[b], g) {
            p.set(b, &a);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Retention = Retention {
        interval: 15,
        raw: 48 * HOUR,
        hourly: 90 * DAY,
        daily: 730 * DAY,
    };

    #[test]
    fn tiers_follow_the_range() {
        let now = 1_000 * DAY;
        assert_eq!(choose_tier(now, now - HOUR, now, &R), Tier::Raw);
        assert_eq!(choose_tier(now, now - DAY, now, &R), Tier::Raw);
        assert_eq!(choose_tier(now, now - 7 * DAY, now, &R), Tier::Hourly);
        assert_eq!(choose_tier(now, now - 30 * DAY, now, &R), Tier::Hourly);
        // A short range older than raw retention comes from the rollups.
        assert_eq!(
            choose_tier(now, now - 5 * DAY, now - 4 * DAY, &R),
            Tier::Hourly
        );
        assert_eq!(choose_tier(now, now - 365 * DAY, now, &R), Tier::Daily);
        assert_eq!(
            choose_tier(now, now - 100 * DAY, now - 99 * DAY, &R),
            Tier::Daily
        );
    }

    #[test]
    fn steps_are_multiples_of_the_tier_and_bounded() {
        assert_eq!(choose_step(Tier::Raw, None, 0, HOUR, 15), 15);
        assert_eq!(choose_step(Tier::Raw, Some(1), 0, HOUR, 15), 15);
        assert_eq!(choose_step(Tier::Raw, Some(100), 0, HOUR, 15), 105);
        assert_eq!(choose_step(Tier::Raw, None, 0, DAY, 15), 120);
        assert_eq!(choose_step(Tier::Hourly, None, 0, 30 * DAY, 15), HOUR);
        assert_eq!(choose_step(Tier::Daily, None, 0, 700 * DAY, 15), DAY);
        let s = choose_step(Tier::Raw, Some(15), 0, 2 * DAY, 15);
        assert!(2 * DAY / s <= MAX_POINTS, "{s}");
    }

    #[test]
    fn missing_samples_are_gaps_not_zeros() {
        // Samples at 0..=60 and 300..=345; nothing between.
        let ts: Vec<i64> = (0..=4)
            .map(|i| i * 15)
            .chain((20..=23).map(|i| i * 15))
            .collect();
        let vals: Vec<f64> = ts.iter().map(|t| *t as f64).collect();
        let p = bucket_raw(&ts, &vals, 0, 359, 60);
        assert_eq!(p.timestamps, vec![0, 60, 120, 180, 240, 300]);
        assert_eq!(p.values[0], Some(22.5));
        assert_eq!(p.values[1], Some(60.0));
        assert_eq!(&p.values[2..5], &[None, None, None]);
        assert_eq!(p.min[5], Some(300.0));
        assert_eq!(p.max[5], Some(345.0));
        assert_eq!(p.filled(), 3);
    }

    #[test]
    fn rollups_merge_by_count() {
        let rows = [
            Agg {
                ts: 0,
                min: 1.0,
                max: 3.0,
                avg: 2.0,
                count: 1,
            },
            Agg {
                ts: HOUR,
                min: 0.0,
                max: 10.0,
                avg: 5.0,
                count: 3,
            },
            Agg {
                ts: 3 * HOUR,
                min: 7.0,
                max: 7.0,
                avg: 7.0,
                count: 2,
            },
        ];
        let p = bucket_rollups(&rows, 0, 4 * HOUR - 1, 2 * HOUR);
        assert_eq!(p.timestamps, vec![0, 2 * HOUR]);
        assert_eq!(p.values[0], Some(4.25));
        assert_eq!((p.min[0], p.max[0]), (Some(0.0), Some(10.0)));
        assert_eq!(p.values[1], Some(7.0));
        assert_eq!(Agg::of(5, &[]), None);
    }
}
