//! Pure metering rules: splitting running intervals at month boundaries
//! (UTC) and adding them up into GPU-hours, core-hours and cost.

use serde::Serialize;
use time::{Date, Month, OffsetDateTime};

/// One running interval as recorded (copied figures, never today's spec).
#[derive(Debug, Clone)]
pub struct Interval {
    pub instance_id: i64,
    pub instance_name: String,
    pub user_id: i64,
    pub username: String,
    pub tenant_id: Option<i64>,
    pub tenant_name: Option<String>,
    pub gpu_count: i64,
    pub cpu_cores: i64,
    pub price_cents: i64,
    pub started_at: i64,
    /// None while running.
    pub ended_at: Option<i64>,
}

/// What one instance used in one month.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UsageRow {
    pub instance_id: i64,
    pub instance_name: String,
    pub user_id: i64,
    pub username: String,
    pub tenant_id: Option<i64>,
    pub tenant_name: Option<String>,
    /// `YYYY-MM` (UTC).
    pub month: String,
    pub running_seconds: i64,
    pub gpu_hours: f64,
    pub cpu_core_hours: f64,
    /// hours × the price per hour at placement, in currency units (2 decimals).
    pub cost: f64,
    pub cost_cents: i64,
}

/// A month `YYYY-MM` as its [start, end) in Unix seconds (UTC); None when
/// the text is no such month.
pub fn month_bounds(text: &str) -> Option<(i64, i64)> {
    let (y, m) = text.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: i32 = y.parse().ok()?;
    let m: u8 = m.parse().ok()?;
    let month = Month::try_from(m).ok()?;
    let start = Date::from_calendar_date(y, month, 1).ok()?;
    let (ny, nm) = if month == Month::December {
        (y + 1, Month::January)
    } else {
        (y, month.next())
    };
    let end = Date::from_calendar_date(ny, nm, 1).ok()?;
    Some((midnight(start), midnight(end)))
}

fn midnight(d: Date) -> i64 {
    d.midnight().assume_utc().unix_timestamp()
}

/// The month (`YYYY-MM`) holding `at` and its [start, end).
fn month_of(at: i64) -> (String, i64, i64) {
    let d = OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let text = format!("{:04}-{:02}", d.year(), u8::from(d.month()));
    let (s, e) = month_bounds(&text).unwrap_or((at, at + 1));
    (text, s, e)
}

/// Per instance and month, the intervals cut at month boundaries and at
/// `now` (an open interval runs until now), limited to [from, to) when given.
pub fn per_month(intervals: &[Interval], now: i64, window: Option<(i64, i64)>) -> Vec<UsageRow> {
    let mut rows: Vec<(UsageRow, f64, f64)> = Vec::new();
    for iv in intervals {
        let (mut s, mut e) = (iv.started_at, iv.ended_at.unwrap_or(now).max(iv.started_at));
        if let Some((from, to)) = window {
            s = s.max(from);
            e = e.min(to);
        }
        while s < e {
            let (month, _, month_end) = month_of(s);
            let cut = e.min(month_end);
            add(&mut rows, iv, month, cut - s);
            s = cut;
        }
    }
    rows.into_iter()
        .map(|(mut r, gpu_s, core_s)| {
            r.gpu_hours = round3(gpu_s / 3600.0);
            r.cpu_core_hours = round3(core_s / 3600.0);
            r.cost = r.cost_cents as f64 / 100.0;
            r
        })
        .collect()
}

/// Adds `secs` of `iv` to its instance's row for `month` (kept in seconds
/// and exact cents until the end).
fn add(rows: &mut Vec<(UsageRow, f64, f64)>, iv: &Interval, month: String, secs: i64) {
    let cents = (secs as f64 * iv.price_cents as f64 / 3600.0).round() as i64;
    if let Some((r, g, c)) = rows
        .iter_mut()
        .find(|(r, _, _)| r.instance_id == iv.instance_id && r.month == month)
    {
        r.running_seconds += secs;
        r.cost_cents += cents;
        *g += (secs * iv.gpu_count) as f64;
        *c += (secs * iv.cpu_cores) as f64;
        return;
    }
    rows.push((
        UsageRow {
            instance_id: iv.instance_id,
            instance_name: iv.instance_name.clone(),
            user_id: iv.user_id,
            username: iv.username.clone(),
            tenant_id: iv.tenant_id,
            tenant_name: iv.tenant_name.clone(),
            month,
            running_seconds: secs,
            gpu_hours: 0.0,
            cpu_core_hours: 0.0,
            cost: 0.0,
            cost_cents: cents,
        },
        (secs * iv.gpu_count) as f64,
        (secs * iv.cpu_cores) as f64,
    ));
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: i64, end: Option<i64>) -> Interval {
        Interval {
            instance_id: 1,
            instance_name: "a".into(),
            user_id: 2,
            username: "u".into(),
            tenant_id: Some(3),
            tenant_name: Some("t".into()),
            gpu_count: 2,
            cpu_cores: 8,
            price_cents: 1000,
            started_at: start,
            ended_at: end,
        }
    }

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(
            month_bounds("2026-11"),
            Some((1_793_491_200, 1_796_083_200))
        );
        assert_eq!(
            month_bounds("2026-12").map(|b| b.1),
            month_bounds("2027-01").map(|b| b.0)
        );
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "2026-00"] {
            assert_eq!(month_bounds(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_interval_across_a_month_end_is_split() {
        let (_, nov_end) = month_bounds("2026-11").unwrap();
        let rows = per_month(&[iv(nov_end - 3600, Some(nov_end + 7200))], 0, None);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].month.as_str(),
                rows[0].gpu_hours,
                rows[0].cpu_core_hours
            ),
            ("2026-11", 2.0, 8.0)
        );
        assert_eq!(
            (
                rows[1].month.as_str(),
                rows[1].gpu_hours,
                rows[1].cost_cents
            ),
            ("2026-12", 4.0, 2000)
        );
        let dec = per_month(
            &[iv(nov_end - 3600, Some(nov_end + 7200))],
            0,
            month_bounds("2026-12"),
        );
        assert_eq!(dec.len(), 1);
        assert_eq!((dec[0].running_seconds, dec[0].cost), (7200, 20.0));
    }

    #[test]
    fn an_open_interval_runs_until_now_and_intervals_add_up() {
        let rows = per_month(
            &[
                iv(1_000_000_000, Some(1_000_001_800)),
                iv(1_000_003_600, None),
            ],
            1_000_005_400,
            None,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (
                rows[0].running_seconds,
                rows[0].gpu_hours,
                rows[0].cost_cents
            ),
            (3600, 2.0, 1000)
        );
    }
}
