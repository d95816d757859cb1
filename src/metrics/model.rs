//! What is measured: targets (a node's host, one GPU, an instance), the
//! catalogue of metrics with their units and Prometheus names, and the raw
//! readings collectors produce before they become samples. Pure.

use std::fmt;

use serde::Serialize;

use crate::ids::{InstanceId, NodeId};

/// What a series describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The host of node `node`.
    Node { node: NodeId },
    /// GPU `gpu` (NVML / DCGM index) of node `node`.
    Gpu { node: NodeId, gpu: i64 },
    /// The container of instance `instance` on node `node`.
    Instance { node: NodeId, instance: InstanceId },
}

impl Target {
    pub fn kind(&self) -> Kind {
        match self {
            Target::Node { .. } => Kind::Node,
            Target::Gpu { .. } => Kind::Gpu,
            Target::Instance { .. } => Kind::Instance,
        }
    }
    pub fn node(&self) -> NodeId {
        match *self {
            Target::Node { node } | Target::Gpu { node, .. } | Target::Instance { node, .. } => {
                node
            }
        }
    }
    /// (node, gpu, instance) as stored: gpu -1 and instance 0 when absent.
    pub fn columns(&self) -> (NodeId, i64, InstanceId) {
        match *self {
            Target::Node { node } => (node, -1, InstanceId(0)),
            Target::Gpu { node, gpu } => (node, gpu, InstanceId(0)),
            Target::Instance { node, instance } => (node, -1, instance),
        }
    }
    pub fn from_columns(kind: &str, node: NodeId, gpu: i64, instance: InstanceId) -> Option<Self> {
        match kind {
            "node" => Some(Target::Node { node }),
            "gpu" => Some(Target::Gpu { node, gpu }),
            "instance" => Some(Target::Instance { node, instance }),
            _ => None,
        }
    }
}

/// How a client names a target: `node:1`, `gpu:1:0` (node 1, GPU 0),
/// `instance:5`. An instance's node is looked up, so it is not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRef {
    Node(NodeId),
    Gpu(NodeId, i64),
    Instance(InstanceId),
}

impl TargetRef {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split(':');
        let kind = parts.next()?;
        let mut num = || -> Option<i64> { parts.next()?.parse().ok().filter(|n| *n >= 0) };
        let r = match kind {
            "node" => TargetRef::Node(NodeId(num()?)),
            "gpu" => TargetRef::Gpu(NodeId(num()?), num()?),
            "instance" => TargetRef::Instance(InstanceId(num()?)),
            _ => return None,
        };
        parts.next().is_none().then_some(r)
    }
}

impl fmt::Display for TargetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetRef::Node(n) => write!(f, "node:{n}"),
            TargetRef::Gpu(n, g) => write!(f, "gpu:{n}:{g}"),
            TargetRef::Instance(i) => write!(f, "instance:{i}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Node,
    Gpu,
    Instance,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Gpu => "gpu",
            Kind::Instance => "instance",
        }
    }
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Metric {
    pub kind: Kind,
    /// Stored and API name, e.g. `util_pct`.
    pub name: &'static str,
    pub unit: &'static str,
    /// The name in gpudock's own `/metrics` (without labels).
    pub prom: &'static str,
    pub help: &'static str,
}

const fn m(
    kind: Kind,
    name: &'static str,
    unit: &'static str,
    prom: &'static str,
    help: &'static str,
) -> Metric {
    Metric {
        kind,
        name,
        unit,
        prom,
        help,
    }
}

use Kind::{Gpu as G, Instance as I, Node as N};

/// Every metric gpudock stores.
pub const METRICS: &[Metric] = &[
    m(
        G,
        "util_pct",
        "%",
        "gpudock_gpu_utilization_percent",
        "GPU utilisation",
    ),
    m(
        G,
        "mem_util_pct",
        "%",
        "gpudock_gpu_memory_utilization_percent",
        "GPU memory-controller utilisation",
    ),
    m(
        G,
        "mem_used_bytes",
        "B",
        "gpudock_gpu_memory_used_bytes",
        "GPU memory used",
    ),
    m(
        G,
        "mem_total_bytes",
        "B",
        "gpudock_gpu_memory_total_bytes",
        "GPU memory total",
    ),
    m(
        G,
        "temp_c",
        "°C",
        "gpudock_gpu_temperature_celsius",
        "GPU temperature",
    ),
    m(
        G,
        "power_w",
        "W",
        "gpudock_gpu_power_watts",
        "GPU power draw",
    ),
    m(
        G,
        "power_limit_w",
        "W",
        "gpudock_gpu_power_limit_watts",
        "GPU power limit",
    ),
    m(
        G,
        "sm_clock_mhz",
        "MHz",
        "gpudock_gpu_sm_clock_mhz",
        "GPU SM clock",
    ),
    m(
        G,
        "fan_pct",
        "%",
        "gpudock_gpu_fan_percent",
        "GPU fan speed",
    ),
    m(
        G,
        "ecc_volatile",
        "",
        "gpudock_gpu_ecc_volatile_errors",
        "Volatile ECC errors (single + double bit)",
    ),
    m(
        G,
        "xid",
        "",
        "gpudock_gpu_last_xid",
        "Last XID error (0: none)",
    ),
    m(
        G,
        "processes",
        "",
        "gpudock_gpu_processes",
        "Processes using the GPU",
    ),
    m(
        N,
        "cpu_pct",
        "%",
        "gpudock_host_cpu_percent",
        "Host CPU busy",
    ),
    m(
        N,
        "load1",
        "",
        "gpudock_host_load1",
        "Host load average, 1 min",
    ),
    m(
        N,
        "load5",
        "",
        "gpudock_host_load5",
        "Host load average, 5 min",
    ),
    m(
        N,
        "load15",
        "",
        "gpudock_host_load15",
        "Host load average, 15 min",
    ),
    m(
        N,
        "mem_used_bytes",
        "B",
        "gpudock_host_memory_used_bytes",
        "Host memory used (total - available)",
    ),
    m(
        N,
        "mem_total_bytes",
        "B",
        "gpudock_host_memory_total_bytes",
        "Host memory total",
    ),
    m(
        N,
        "swap_used_bytes",
        "B",
        "gpudock_host_swap_used_bytes",
        "Host swap used",
    ),
    m(
        N,
        "swap_total_bytes",
        "B",
        "gpudock_host_swap_total_bytes",
        "Host swap total",
    ),
    m(
        N,
        "disk_docker_used_bytes",
        "B",
        "gpudock_host_docker_disk_used_bytes",
        "Disk used on the filesystem of the Docker root",
    ),
    m(
        N,
        "disk_docker_total_bytes",
        "B",
        "gpudock_host_docker_disk_total_bytes",
        "Size of the filesystem of the Docker root",
    ),
    m(
        N,
        "disk_data_used_bytes",
        "B",
        "gpudock_host_data_disk_used_bytes",
        "Disk used on the filesystem of gpudock's data directory",
    ),
    m(
        N,
        "disk_data_total_bytes",
        "B",
        "gpudock_host_data_disk_total_bytes",
        "Size of the filesystem of gpudock's data directory",
    ),
    m(
        N,
        "net_rx_bps",
        "B/s",
        "gpudock_host_network_receive_bytes_per_second",
        "Host network received",
    ),
    m(
        N,
        "net_tx_bps",
        "B/s",
        "gpudock_host_network_transmit_bytes_per_second",
        "Host network sent",
    ),
    m(
        I,
        "cpu_pct",
        "%",
        "gpudock_instance_cpu_percent",
        "Container CPU, percent of one core (as docker stats)",
    ),
    m(
        I,
        "cpu_limit_pct",
        "%",
        "gpudock_instance_cpu_limit_percent",
        "Container CPU, percent of its CPU limit",
    ),
    m(
        I,
        "mem_used_bytes",
        "B",
        "gpudock_instance_memory_used_bytes",
        "Container memory used (without page cache)",
    ),
    m(
        I,
        "mem_limit_bytes",
        "B",
        "gpudock_instance_memory_limit_bytes",
        "Container memory limit",
    ),
    m(
        I,
        "net_rx_bps",
        "B/s",
        "gpudock_instance_network_receive_bytes_per_second",
        "Container network received",
    ),
    m(
        I,
        "net_tx_bps",
        "B/s",
        "gpudock_instance_network_transmit_bytes_per_second",
        "Container network sent",
    ),
    m(
        I,
        "blk_read_bps",
        "B/s",
        "gpudock_instance_block_read_bytes_per_second",
        "Container block I/O read",
    ),
    m(
        I,
        "blk_write_bps",
        "B/s",
        "gpudock_instance_block_write_bytes_per_second",
        "Container block I/O written",
    ),
    m(
        I,
        "oom_killed",
        "",
        "gpudock_instance_oom_killed",
        "1 when the container's last exit was an OOM kill",
    ),
    m(
        I,
        "restarts",
        "",
        "gpudock_instance_restarts",
        "Container restarts counted by Docker",
    ),
];

/// The catalogue entry of `name` for targets of `kind`.
pub fn metric(kind: Kind, name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.kind == kind && m.name == name)
}

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    pub target: Target,
    pub metric: &'static str,
    pub ts: i64,
    pub value: f64,
}

/// One GPU as NVML or dcgm-exporter reports it. `None`: not reported (the
/// GPU does not support it, or the exporter does not export it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GpuReading {
    pub index: i64,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub util_pct: Option<f64>,
    pub mem_util_pct: Option<f64>,
    pub mem_used_bytes: Option<f64>,
    pub mem_total_bytes: Option<f64>,
    pub temp_c: Option<f64>,
    pub power_w: Option<f64>,
    pub power_limit_w: Option<f64>,
    pub sm_clock_mhz: Option<f64>,
    pub fan_pct: Option<f64>,
    /// Volatile ECC errors, single + double bit.
    pub ecc_volatile: Option<f64>,
    /// Of which double bit.
    pub ecc_dbe: Option<f64>,
    pub xid: Option<f64>,
    pub processes: Vec<GpuProcess>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuProcess {
    pub pid: u32,
    pub name: String,
    pub used_bytes: u64,
}

impl GpuReading {
    /// The samples of this reading (absent figures are gaps).
    pub fn samples(&self, node: NodeId, ts: i64) -> Vec<Sample> {
        let target = Target::Gpu {
            node,
            gpu: self.index,
        };
        let procs = Some(self.processes.len() as f64);
        [
            ("util_pct", self.util_pct),
            ("mem_util_pct", self.mem_util_pct),
            ("mem_used_bytes", self.mem_used_bytes),
            ("mem_total_bytes", self.mem_total_bytes),
            ("temp_c", self.temp_c),
            ("power_w", self.power_w),
            ("power_limit_w", self.power_limit_w),
            ("sm_clock_mhz", self.sm_clock_mhz),
            ("fan_pct", self.fan_pct),
            ("ecc_volatile", self.ecc_volatile),
            ("xid", self.xid),
            ("processes", procs),
        ]
        .into_iter()
        .filter_map(|(metric, v)| {
            v.filter(|v| v.is_finite()).map(|value| Sample {
                target,
                metric,
                ts,
                value,
            })
        })
        .collect()
    }
}

/// Cumulative CPU time of a host, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuTimes {
    pub total: f64,
    /// idle + iowait
    pub idle: f64,
}

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Filesystem {
    pub mountpoint: String,
    pub device: String,
    pub fstype: String,
    pub size_bytes: f64,
    pub avail_bytes: f64,
}

/// A network interface's counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetDev {
    pub device: String,
    pub rx_bytes: f64,
    pub tx_bytes: f64,
}

/// A host's figures at one instant: counters (CPU, network) need the
/// previous reading to become rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostReading {
    /// Unix seconds (fractions kept for rates).
    pub at: f64,
    pub cpu: Option<CpuTimes>,
    /// Per CPU (node_exporter's `cpu` label) and mode, seconds: the agent
    /// exports these as `node_cpu_seconds_total`.
    pub cpu_modes: Vec<(String, String, f64)>,
    pub load: Option<[f64; 3]>,
    pub mem_total: Option<f64>,
    pub mem_available: Option<f64>,
    pub swap_total: Option<f64>,
    pub swap_free: Option<f64>,
    pub filesystems: Vec<Filesystem>,
    pub net: Vec<NetDev>,
}

/// Interfaces whose traffic is not the host's own (loopback, container
/// bridges and veth pairs: counting them would count container traffic twice).
pub fn is_virtual_netdev(dev: &str) -> bool {
    dev == "lo"
        || [
            "veth", "docker", "br-", "virbr", "cni", "flannel", "cali", "vxlan",
        ]
        .iter()
        .any(|p| dev.starts_with(p))
}

/// The filesystem holding `path`: the longest mount point that prefixes it.
pub fn filesystem_of<'a>(fss: &'a [Filesystem], path: &str) -> Option<&'a Filesystem> {
    fss.iter()
        .filter(|f| {
            let m = f.mountpoint.trim_end_matches('/');
            path == f.mountpoint || m.is_empty() || path.starts_with(&format!("{m}/")) || path == m
        })
        .max_by_key(|f| f.mountpoint.len())
}

impl HostReading {
    /// Samples of `self`, with rates against `prev` (none on the first
    /// reading). `docker_root`/`data_dir`: paths whose filesystem is reported.
    pub fn samples(
        &self,
        prev: Option<&HostReading>,
        node: NodeId,
        ts: i64,
        docker_root: Option<&str>,
        data_dir: Option<&str>,
    ) -> Vec<Sample> {
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        if let (Some(p), Some(c)) = (prev.and_then(|p| p.cpu), self.cpu) {
            let (dt, di) = (c.total - p.total, c.idle - p.idle);
            if dt > 0.0 && di >= 0.0 {
                // Two decimals: plenty for a percentage, and far smaller stored.
                let pct = (100.0 * (dt - di) / dt).clamp(0.0, 100.0);
                out.push(("cpu_pct", (pct * 100.0).round() / 100.0));
            }
        }
        if let Some([a, b, c]) = self.load {
            out.extend([("load1", a), ("load5", b), ("load15", c)]);
        }
        if let (Some(t), Some(a)) = (self.mem_total, self.mem_available) {
            out.extend([("mem_used_bytes", t - a), ("mem_total_bytes", t)]);
        }
        if let (Some(t), Some(f)) = (self.swap_total, self.swap_free) {
            out.extend([("swap_used_bytes", t - f), ("swap_total_bytes", t)]);
        }
        for (path, used, total) in [
            (
                docker_root,
                "disk_docker_used_bytes",
                "disk_docker_total_bytes",
            ),
            (data_dir, "disk_data_used_bytes", "disk_data_total_bytes"),
        ] {
            if let Some(fs) = path.and_then(|p| filesystem_of(&self.filesystems, p)) {
                out.extend([
                    (used, fs.size_bytes - fs.avail_bytes),
                    (total, fs.size_bytes),
                ]);
            }
        }
        if let Some(p) = prev {
            let dt = self.at - p.at;
            let sum = |r: &HostReading| -> (f64, f64) {
                r.net
                    .iter()
                    .filter(|d| !is_virtual_netdev(&d.device))
                    .fold((0.0, 0.0), |(a, b), d| (a + d.rx_bytes, b + d.tx_bytes))
            };
            let ((rx0, tx0), (rx1, tx1)) = (sum(p), sum(self));
            if dt > 0.0 && rx1 >= rx0 && tx1 >= tx0 && !self.net.is_empty() {
                out.extend([
                    ("net_rx_bps", ((rx1 - rx0) / dt).round()),
                    ("net_tx_bps", ((tx1 - tx0) / dt).round()),
                ]);
            }
        }
        let target = Target::Node { node };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_refs_parse_strictly() {
        assert_eq!(TargetRef::parse("node:3"), Some(TargetRef::Node(NodeId(3))));
        assert_eq!(
            TargetRef::parse("gpu:3:7"),
            Some(TargetRef::Gpu(NodeId(3), 7))
        );
        assert_eq!(
            TargetRef::parse("instance:12"),
            Some(TargetRef::Instance(InstanceId(12)))
        );
        for bad in [
            "",
            "node",
            "node:",
            "node:x",
            "gpu:1",
            "gpu:1:2:3",
            "vm:1",
            "node:-1",
        ] {
            assert_eq!(TargetRef::parse(bad), None, "{bad}");
        }
        assert_eq!(TargetRef::Gpu(NodeId(1), 2).to_string(), "gpu:1:2");
    }

    #[test]
    fn catalogue_names_are_unique_per_kind_and_prometheus_safe() {
        for (i, a) in METRICS.iter().enumerate() {
            for b in &METRICS[i + 1..] {
                assert!(!(a.kind == b.kind && a.name == b.name), "{a:?}");
                assert_ne!(a.prom, b.prom);
            }
            assert!(
                a.prom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            );
        }
    }

    fn host(at: f64, total: f64, idle: f64, rx: f64) -> HostReading {
        HostReading {
            at,
            cpu: Some(CpuTimes { total, idle }),
            load: Some([1.0, 0.5, 0.25]),
            mem_total: Some(100.0),
            mem_available: Some(40.0),
            filesystems: vec![
                Filesystem {
                    mountpoint: "/".into(),
                    device: "/dev/vda".into(),
                    fstype: "ext4".into(),
                    size_bytes: 1000.0,
                    avail_bytes: 250.0,
                },
                Filesystem {
                    mountpoint: "/var/lib/docker".into(),
                    device: "/dev/vdb".into(),
                    fstype: "xfs".into(),
                    size_bytes: 500.0,
                    avail_bytes: 100.0,
                },
            ],
            net: vec![
                NetDev {
                    device: "eth0".into(),
                    rx_bytes: rx,
                    tx_bytes: rx / 2.0,
                },
                NetDev {
                    device: "lo".into(),
                    rx_bytes: rx * 100.0,
                    tx_bytes: rx * 100.0,
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn host_rates_need_a_previous_reading_and_pick_filesystems_by_path() {
        let a = host(100.0, 1000.0, 800.0, 10_000.0);
        let first = a.samples(
            None,
            NodeId(1),
            100,
            Some("/var/lib/docker"),
            Some("/srv/gpudock"),
        );
        assert!(
            first
                .iter()
                .all(|s| s.metric != "cpu_pct" && s.metric != "net_rx_bps")
        );
        let b = host(110.0, 1020.0, 805.0, 30_000.0);
        let s = b.samples(
            Some(&a),
            NodeId(1),
            110,
            Some("/var/lib/docker/overlay2"),
            Some("/srv/gpudock"),
        );
        let v = |m: &str| s.iter().find(|x| x.metric == m).map(|x| x.value);
        assert_eq!(v("cpu_pct"), Some(75.0));
        assert_eq!(v("net_rx_bps"), Some(2000.0), "loopback is not counted");
        assert_eq!(v("net_tx_bps"), Some(1000.0));
        assert_eq!(v("mem_used_bytes"), Some(60.0));
        assert_eq!(v("disk_docker_used_bytes"), Some(400.0));
        assert_eq!(v("disk_data_total_bytes"), Some(1000.0), "/srv is on /");
        // A counter that went backwards (reboot) gives no rate, not a negative one.
        let c = host(120.0, 10.0, 5.0, 5.0);
        let s = c.samples(Some(&b), NodeId(1), 120, None, None);
        assert!(
            s.iter()
                .all(|x| x.metric != "cpu_pct" && x.metric != "net_rx_bps")
        );
    }
}
