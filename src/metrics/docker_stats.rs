//! Instance figures from the Docker stats API over the node's own bollard
//! connection (local and remote alike): one-shot readings, turned into rates
//! against the previous reading of the same container.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{InspectContainerOptions, StatsOptions};
use futures_util::StreamExt;

use super::model::{Sample, Target};
use crate::docker::DockerError;

/// Cumulative counters of a container at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsReading {
    /// Unix seconds (local clock when the answer came).
    pub at: f64,
    /// CPU time of the container, ns.
    pub cpu_ns: u64,
    /// CPU time of the whole host, ns (0 when the daemon does not say).
    pub system_ns: u64,
    pub online_cpus: u32,
    pub mem_used: Option<f64>,
    pub mem_limit: Option<f64>,
    pub rx: f64,
    pub tx: f64,
    pub blk_read: f64,
    pub blk_write: f64,
}

/// What inspect says of a container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Its CPU limit in cores (NanoCpus or quota / period); None: unlimited.
    pub cpu_limit: Option<f64>,
    pub restarts: i64,
    pub oom_killed: bool,
}

/// The counters of one stats answer.
pub fn reading_of(s: &ContainerStatsResponse, at: f64) -> StatsReading {
    let cpu = s.cpu_stats.as_ref();
    let mem = s.memory_stats.as_ref();
    let inactive = mem
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| {
            st.get("inactive_file")
                .or_else(|| st.get("total_inactive_file"))
                .copied()
        })
        .unwrap_or(0);
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in s.networks.iter().flat_map(HashMap::values) {
        rx += n.rx_bytes.unwrap_or(0) as f64;
        tx += n.tx_bytes.unwrap_or(0) as f64;
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    let entries = s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref());
    for e in entries.into_iter().flatten() {
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => rd += e.value.unwrap_or(0) as f64,
            Some("write") => wr += e.value.unwrap_or(0) as f64,
            _ => {}
        }
    }
    StatsReading {
        at,
        cpu_ns: cpu
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        system_ns: cpu.and_then(|c| c.system_cpu_usage).unwrap_or(0),
        online_cpus: cpu.and_then(|c| c.online_cpus).unwrap_or(0),
        mem_used: mem
            .and_then(|m| m.usage)
            .map(|u| u.saturating_sub(inactive) as f64),
        mem_limit: mem.and_then(|m| m.limit).map(|l| l as f64),
        rx,
        tx,
        blk_read: rd,
        blk_write: wr,
    }
}

/// Samples of `cur` (rates against `prev`, none on the first reading).
pub fn samples(
    prev: Option<&StatsReading>,
    cur: &StatsReading,
    facts: &Facts,
    target: Target,
    ts: i64,
) -> Vec<Sample> {
    let mut out: Vec<(&'static str, f64)> = Vec::new();
    if let Some(p) = prev.filter(|p| cur.cpu_ns >= p.cpu_ns && cur.at > p.at) {
        let cpu = (cur.cpu_ns - p.cpu_ns) as f64;
        let sys = cur.system_ns.saturating_sub(p.system_ns) as f64;
        // As `docker stats`: share of the host's CPU time times its CPUs;
        // by wall time when the daemon gives no host CPU time.
        let pct = if sys > 0.0 && cur.online_cpus > 0 {
            100.0 * cpu / sys * f64::from(cur.online_cpus)
        } else {
            100.0 * cpu / ((cur.at - p.at) * 1e9)
        };
        let limit = facts
            .cpu_limit
            .filter(|l| *l > 0.0)
            .unwrap_or_else(|| f64::from(cur.online_cpus.max(1)));
        out.push(("cpu_pct", round2(pct)));
        out.push(("cpu_limit_pct", round2(pct / limit)));
        let dt = cur.at - p.at;
        for (name, a, b) in [
            ("net_rx_bps", p.rx, cur.rx),
            ("net_tx_bps", p.tx, cur.tx),
            ("blk_read_bps", p.blk_read, cur.blk_read),
            ("blk_write_bps", p.blk_write, cur.blk_write),
        ] {
            if b >= a {
                out.push((name, ((b - a) / dt).round()));
            }
        }
    }
    if let Some(m) = cur.mem_used {
        out.push(("mem_used_bytes", m));
    }
    if let Some(l) = cur.mem_limit {
        out.push(("mem_limit_bytes", l));
    }
    out.push(("restarts", facts.restarts as f64));
    out.push(("oom_killed", if facts.oom_killed { 1.0 } else { 0.0 }));
    out.into_iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(metric, value)| Sample {
            target,
            metric,
            ts,
            value,
        })
        .collect()
}

/// Two decimals are plenty for a percentage, and compress far better.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One reading of `container` (stats, one shot) and its facts (inspect),
/// within `timeout`.
pub async fn read(
    d: &Docker,
    container: &str,
    timeout: Duration,
) -> Result<(StatsReading, Facts), DockerError> {
    let secs = timeout.as_secs();
    let work = async {
        let opts = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stream = d.stats(container, Some(opts));
        let stats = match stream.next().await {
            Some(r) => r.map_err(|e| DockerError::from_bollard(e, secs))?,
            None => return Err(DockerError::Api("no stats answer".into())),
        };
        let reading = reading_of(&stats, now_f64());
        let info = d
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| DockerError::from_bollard(e, secs))?;
        let hc = info.host_config.as_ref();
        let nano = hc
            .and_then(|h| h.nano_cpus)
            .filter(|n| *n > 0)
            .map(|n| n as f64 / 1e9);
        let quota = hc
            .and_then(|h| Some((h.cpu_quota?, h.cpu_period?)))
            .filter(|(q, p)| *q > 0 && *p > 0)
            .map(|(q, p)| q as f64 / p as f64);
        let facts = Facts {
            cpu_limit: nano.or(quota),
            restarts: info.restart_count.unwrap_or(0),
            oom_killed: info.state.and_then(|s| s.oom_killed).unwrap_or(false),
        };
        Ok((reading, facts))
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(DockerError::Timeout(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstanceId, NodeId};

    fn r(at: f64, cpu_ns: u64, system_ns: u64) -> StatsReading {
        StatsReading {
            at,
            cpu_ns,
            system_ns,
            online_cpus: 2,
            mem_used: Some(100.0),
            mem_limit: Some(1000.0),
            rx: at * 10.0,
            tx: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn cpu_is_a_share_of_one_core_and_of_the_limit() {
        // Half a core for 10 s on a 2-CPU host: host time 20 s.
        let (a, b) = (r(0.0, 0, 0), r(10.0, 5_000_000_000, 20_000_000_000));
        let facts = Facts {
            cpu_limit: Some(0.5),
            ..Default::default()
        };
        let t = Target::Instance {
            node: NodeId(1),
            instance: InstanceId(2),
        };
        let s = samples(Some(&a), &b, &facts, t, 10);
        let v = |m: &str| s.iter().find(|x| x.metric == m).map(|x| x.value);
        assert_eq!(v("cpu_pct"), Some(50.0));
        assert_eq!(v("cpu_limit_pct"), Some(100.0));
        assert_eq!(v("net_rx_bps"), Some(10.0));
        assert_eq!(v("mem_used_bytes"), Some(100.0));
        // The first reading has no rates; no limit means the host's CPUs.
        let s = samples(None, &b, &Facts::default(), t, 10);
        assert!(s.iter().all(|x| x.metric != "cpu_pct"));
        let s = samples(Some(&a), &b, &Facts::default(), t, 10);
        assert_eq!(
            s.iter()
                .find(|x| x.metric == "cpu_limit_pct")
                .map(|x| x.value),
            Some(25.0)
        );
    }

    #[test]
    fn reads_a_stats_answer_as_docker_sends_it() {
        let json = r#"{"read":"2026-01-01T00:00:00Z","cpu_stats":{"cpu_usage":{"total_usage":123},
            "system_cpu_usage":456,"online_cpus":4},"memory_stats":{"usage":1000,"limit":4000,
            "stats":{"inactive_file":300}},"networks":{"eth0":{"rx_bytes":5,"tx_bytes":6}},
            "blkio_stats":{"io_service_bytes_recursive":[{"major":8,"minor":0,"op":"read","value":7},
            {"major":8,"minor":0,"op":"write","value":9}]}}"#;
        let s: ContainerStatsResponse = serde_json::from_str(json).unwrap();
        let r = reading_of(&s, 1.0);
        assert_eq!((r.cpu_ns, r.system_ns, r.online_cpus), (123, 456, 4));
        assert_eq!((r.mem_used, r.mem_limit), (Some(700.0), Some(4000.0)));
        assert_eq!((r.rx, r.tx, r.blk_read, r.blk_write), (5.0, 6.0, 7.0, 9.0));
    }
}
