//! Writing readings as Prometheus / OpenMetrics text with `prometheus-client`
//! (it escapes label values): the agent's exposition uses dcgm-exporter's
//! names for GPUs and node_exporter's for the host, so Grafana dashboards
//! made for those work against it.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::model::{GpuReading, HostReading};

pub type Labels = Vec<(String, String)>;
pub type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
pub type CounterFamily = Family<Labels, Counter<f64, AtomicU64>>;

/// The content type of what [`Exposition::finish`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry built for one scrape.
#[derive(Default)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn gauge(&mut self, name: &str, help: &str) -> GaugeFamily {
        let f = GaugeFamily::default();
        self.registry.register(name, help, f.clone());
        f
    }

    /// A counter; the name is written with `_total` appended.
    pub fn counter(&mut self, name: &str, help: &str) -> CounterFamily {
        let f = CounterFamily::default();
        self.registry.register(name, help, f.clone());
        f
    }

    pub fn finish(self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            log::error!("metrics exposition failed: {e}");
        }
        out
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

pub fn set(f: &GaugeFamily, l: Labels, v: f64) {
    f.get_or_create(&l).set(v);
}

const MIB: f64 = 1_048_576.0;

/// GPUs under dcgm-exporter's names and labels (`gpu`, `UUID`,
/// `pci_bus_id`, `device`, `modelName`, `Hostname`), memory in MiB as it does.
pub fn write_gpus(x: &mut Exposition, gpus: &[GpuReading], hostname: &str) {
    type Get = fn(&GpuReading) -> Option<f64>;
    let fields: [(&str, &str, Get); 13] = [
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)", |g| {
            g.util_pct
        }),
        (
            "DCGM_FI_DEV_MEM_COPY_UTIL",
            "Memory utilization (in %)",
            |g| g.mem_util_pct,
        ),
        (
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB)",
            |g| g.mem_used_bytes.map(|b| (b / MIB).round()),
        ),
        (
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (in MiB)",
            |g| Some(((g.mem_total_bytes? - g.mem_used_bytes?) / MIB).round()),
        ),
        (
            "DCGM_FI_DEV_FB_TOTAL",
            "Framebuffer memory total (in MiB)",
            |g| g.mem_total_bytes.map(|b| (b / MIB).round()),
        ),
        ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)", |g| {
            g.temp_c
        }),
        ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)", |g| {
            g.power_w
        }),
        (
            "DCGM_FI_DEV_POWER_MGMT_LIMIT",
            "Power management limit (in W)",
            |g| g.power_limit_w,
        ),
        ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz)", |g| {
            g.sm_clock_mhz
        }),
        ("DCGM_FI_DEV_FAN_SPEED", "Fan speed (in %)", |g| g.fan_pct),
        (
            "DCGM_FI_DEV_XID_ERRORS",
            "Value of the last XID error encountered",
            |g| g.xid,
        ),
        (
            "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
            "Total number of single-bit volatile ECC errors",
            |g| Some(g.ecc_volatile? - g.ecc_dbe.unwrap_or(0.0)),
        ),
        (
            "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
            "Total number of double-bit volatile ECC errors",
            |g| g.ecc_dbe,
        ),
    ];
    for (name, help, get) in fields {
        let fam = x.gauge(name, help);
        for g in gpus {
            let idx = g.index.to_string();
            let dev = format!("nvidia{idx}");
            let l = labels(&[
                ("gpu", &idx),
                ("UUID", &g.uuid),
                ("pci_bus_id", &g.pci_bus_id),
                ("device", &dev),
                ("modelName", &g.name),
                ("Hostname", hostname),
            ]);
            if let Some(v) = get(g).filter(|v| v.is_finite()) {
                set(&fam, l, v);
            }
        }
    }
    let procs = x.gauge(
        "gpudock_gpu_process_memory_bytes",
        "GPU memory used by a process (gpudock agent)",
    );
    for g in gpus {
        for p in &g.processes {
            let (idx, pid) = (g.index.to_string(), p.pid.to_string());
            let l = labels(&[
                ("gpu", &idx),
                ("UUID", &g.uuid),
                ("pid", &pid),
                ("name", &p.name),
            ]);
            set(&procs, l, p.used_bytes as f64);
        }
    }
}

/// The host under node_exporter's names.
pub fn write_host(x: &mut Exposition, h: &HostReading) {
    let cpu = x.counter("node_cpu_seconds", "Seconds the CPUs spent in each mode");
    for (c, mode, secs) in &h.cpu_modes {
        cpu.get_or_create(&labels(&[("cpu", c), ("mode", mode)]))
            .inc_by(*secs);
    }
    if let Some([a, b, c]) = h.load {
        for (n, v) in [("node_load1", a), ("node_load5", b), ("node_load15", c)] {
            set(&x.gauge(n, "Load average"), Vec::new(), v);
        }
    }
    for (n, v) in [
        ("node_memory_MemTotal_bytes", h.mem_total),
        ("node_memory_MemAvailable_bytes", h.mem_available),
        ("node_memory_SwapTotal_bytes", h.swap_total),
        ("node_memory_SwapFree_bytes", h.swap_free),
    ] {
        if let Some(v) = v {
            set(&x.gauge(n, "Memory information field"), Vec::new(), v);
        }
    }
    let size = x.gauge("node_filesystem_size_bytes", "Filesystem size in bytes");
    let avail = x.gauge(
        "node_filesystem_avail_bytes",
        "Filesystem space available to non-root users in bytes",
    );
    for f in &h.filesystems {
        let l = labels(&[
            ("device", &f.device),
            ("fstype", &f.fstype),
            ("mountpoint", &f.mountpoint),
        ]);
        set(&size, l.clone(), f.size_bytes);
        set(&avail, l, f.avail_bytes);
    }
    let rx = x.counter(
        "node_network_receive_bytes",
        "Network device statistic receive_bytes",
    );
    let tx = x.counter(
        "node_network_transmit_bytes",
        "Network device statistic transmit_bytes",
    );
    for d in &h.net {
        rx.get_or_create(&labels(&[("device", &d.device)]))
            .inc_by(d.rx_bytes);
        tx.get_or_create(&labels(&[("device", &d.device)]))
            .inc_by(d.tx_bytes);
    }
}

/// The agent's own word on its GPU part (up, or why not).
pub fn write_gpu_state(x: &mut Exposition, state: &Result<Vec<GpuReading>, String>) {
    let up = x.gauge(
        "gpudock_agent_gpu_up",
        "1 when the agent reads GPUs through NVML",
    );
    set(&up, Vec::new(), if state.is_ok() { 1.0 } else { 0.0 });
    if let Err(why) = state {
        let info = x.gauge("gpudock_agent_gpu_info", "Why the agent reads no GPU");
        set(&info, labels(&[("reason", why)]), 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::prom;

    #[test]
    fn what_the_agent_writes_reads_back_the_same() {
        let text = include_str!("../../tests/fixtures/dcgm-exporter-h100x8.prom");
        let gpus = prom::gpus_from_dcgm(&prom::parse(text).unwrap());
        let host = crate::metrics::host::read(&["/"]);
        let mut x = Exposition::default();
        write_gpus(&mut x, &gpus, "gpu\"node\\07\n");
        write_host(&mut x, &host);
        write_gpu_state(&mut x, &Err("no \"driver\"\nhere".into()));
        let out = x.finish();
        assert!(out.ends_with("# EOF\n"));
        assert!(out.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\""), "{out}");
        assert!(out.contains("# TYPE node_cpu_seconds counter"));
        assert!(out.contains("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}"));
        assert!(
            out.contains("Hostname=\"gpu\\\"node\\\\07\\n\""),
            "label values are escaped"
        );
        let back = prom::parse(&out).unwrap();
        let gpus2 = prom::gpus_from_dcgm(&back);
        assert_eq!(gpus2.len(), 8);
        for (a, b) in gpus.iter().zip(&gpus2) {
            assert_eq!((a.index, &a.uuid, &a.name), (b.index, &b.uuid, &b.name));
            assert_eq!(
                (a.util_pct, a.temp_c, a.power_w),
                (b.util_pct, b.temp_c, b.power_w)
            );
            assert_eq!(a.mem_used_bytes, b.mem_used_bytes);
            assert_eq!(a.mem_total_bytes, b.mem_total_bytes);
        }
        let h2 = prom::host_from_node_exporter(&back, host.at).unwrap();
        assert_eq!(h2.mem_total, host.mem_total);
        assert_eq!(h2.load, host.load);
        // Per-CPU seconds (what node_exporter exports) add up to the total
        // line up to each CPU's tick rounding.
        assert!((h2.cpu.unwrap().total - host.cpu.unwrap().total).abs() < 1.0);
        assert_eq!(
            prom::agent_gpu_state(&back),
            Some(Err("no \"driver\"\nhere".to_string()))
        );
        assert!(
            back.iter()
                .any(|s| s.label("Hostname") == Some("gpu\"node\\07\n"))
        );
    }
}
