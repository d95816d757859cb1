//! Metrics engine (infrastructure): what is measured ([`model`]), the
//! collectors (this host's /proc and NVML, Docker stats, dcgm-exporter and
//! node_exporter text, `gpudock agent` scrapes), and the storage of series:
//! the [`Hub`] keeps the open hour in memory and pushes live samples, raw
//! samples are kept in hour blocks compressed with pco, rolled up hourly
//! and daily (min / max / avg / count), and removed after each tier's
//! retention. It knows no users, nodes or instances as capabilities define
//! them: the `monitor` capability decides what is collected from where and
//! who may see it. Shared by `serve` and `gpudock agent` (which uses only
//! the collectors and the exposition).

pub mod agent;
pub mod codec;
pub mod docker_stats;
pub mod expose;
pub mod host;
pub mod hub;
pub mod model;
pub mod nvml;
pub mod prom;
pub mod rollup;
pub mod scrape;
pub mod store;

use crate::db::Db;
use crate::error::AppError;
pub use hub::Hub;
use model::Target;
use rollup::{Agg, Points, Retention, Tier};

/// The metrics part of the app state.
#[derive(Clone)]
pub struct Metrics {
    pub hub: Hub,
    /// This host's NVML (opened on first use).
    pub gpus: nvml::Gpus,
    db: Db,
}

impl Metrics {
    pub fn new(db: Db, config: &crate::config::MetricsConfig) -> Self {
        Metrics {
            hub: Hub::new(db.clone(), config.idle_util_percent),
            gpus: nvml::Gpus::new(),
            db,
        }
    }

    /// One maintenance pass at `now` (the clock is the caller's): flush the
    /// open hour, roll up finished hours and days, apply retention. Series
    /// that retention removed are forgotten by the hub too (a later sample
    /// makes them again).
    pub async fn maintain(&self, now: i64, r: Retention) -> Result<(), AppError> {
        self.hub.flush().await?;
        let (_, gone) = self
            .db
            .write(move |c| {
                let tx = c.transaction()?;
                store::rollup(&tx, now)?;
                let removed = store::retention(&tx, now, &r)?;
                tx.commit()?;
                Ok::<_, AppError>(removed)
            })
            .await?;
        self.hub.forget_series(&gone);
        Ok(())
    }

    /// Points of (`target`, `metric`) from `tier` in `[from, until]`, in
    /// buckets of `step` from `since` (buckets before `from` are gaps).
    #[allow(clippy::too_many_arguments)]
    pub async fn points(
        &self,
        target: Target,
        metric: &'static str,
        tier: Tier,
        since: i64,
        from: i64,
        until: i64,
        step: i64,
    ) -> Result<Points, AppError> {
        let id = self
            .db
            .read(move |c| store::find_series(c, &target, metric).map_err(AppError::from))
            .await?;
        let Some(id) = id.filter(|_| from <= until) else {
            return Ok(rollup::bucket_raw(&[], &[], since, until, step));
        };
        let open = self.hub.open_samples(id, from, until);
        match tier {
            Tier::Raw => {
                let (mut ts, mut vals) = self
                    .db
                    .read(move |c| store::raw_range(c, id, from, until).map_err(AppError::from))
                    .await?;
                if let Some((start, ots, ovals)) = open {
                    let keep = ts.iter().take_while(|t| **t < start).count();
                    ts.truncate(keep);
                    vals.truncate(keep);
                    ts.extend(ots);
                    vals.extend(ovals);
                }
                Ok(rollup::bucket_raw(&ts, &vals, since, until, step))
            }
            Tier::Hourly | Tier::Daily => {
                let daily = tier == Tier::Daily;
                let mut rows = self
                    .db
                    .read(move |c| {
                        store::rollup_range(c, daily, id, from, until).map_err(AppError::from)
                    })
                    .await?;
                if let (false, Some((start, _, ovals))) = (daily, open) {
                    rows.retain(|r| r.ts < start);
                    rows.extend(Agg::of(start, &ovals));
                }
                Ok(rollup::bucket_rollups(&rows, since, until, step))
            }
        }
    }
}
