//! This host's figures from /proc (through the `procfs` crate) and statvfs:
//! what node_exporter reads, under the same names when the agent exports
//! them. Blocking: call from a blocking thread.

use procfs::{Current, CurrentSI};

use super::model::{CpuTimes, Filesystem, HostReading, NetDev};

/// Filesystem types node_exporter leaves out by default (not disks).
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
    "tmpfs",
    "ramfs",
];

fn skipped_mount(m: &str) -> bool {
    ["/dev", "/proc", "/sys", "/run/credentials"]
        .iter()
        .any(|p| m == *p || m.starts_with(&format!("{p}/")))
        || m.starts_with("/var/lib/docker/")
}

fn statvfs(path: &str) -> Option<(f64, f64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    let unit = s.f_frsize as f64;
    Some((s.f_blocks as f64 * unit, s.f_bavail as f64 * unit))
}

/// The size in bytes of the filesystem holding `path` (`None` when it
/// cannot be read). Blocking.
pub fn filesystem_size(path: &str) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(s.f_blocks.saturating_mul(s.f_frsize))
}

fn filesystems(extra: &[&str]) -> Vec<Filesystem> {
    let mut out: Vec<Filesystem> = Vec::new();
    for m in procfs::mounts().unwrap_or_default() {
        if PSEUDO_FS.contains(&m.fs_vfstype.as_str()) || skipped_mount(&m.fs_file) {
            continue;
        }
        let Some((size, avail)) = statvfs(&m.fs_file).filter(|(s, _)| *s > 0.0) else {
            continue;
        };
        out.retain(|f| f.mountpoint != m.fs_file);
        out.push(Filesystem {
            mountpoint: m.fs_file,
            device: m.fs_spec,
            fstype: m.fs_vfstype,
            size_bytes: size,
            avail_bytes: avail,
        });
    }
    // A path on a filesystem left out above (an overlay root in a container)
    // is still reported, under its own path.
    for p in extra {
        if super::model::filesystem_of(&out, p).is_none()
            && let Some((size, avail)) = statvfs(p)
        {
            out.push(Filesystem {
                mountpoint: (*p).to_string(),
                device: String::new(),
                fstype: String::new(),
                size_bytes: size,
                avail_bytes: avail,
            });
        }
    }
    out
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Reads this host now. `paths`: directories whose filesystems must be in
/// the reading (the Docker root, the data directory). Parts that cannot be
/// read are absent, not errors.
pub fn read(paths: &[&str]) -> HostReading {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut h = HostReading {
        at,
        ..Default::default()
    };
    if let Ok(k) = procfs::KernelStats::current() {
        let t = &k.total;
        let idle = secs(t.idle_ms()) + secs(t.iowait_ms().unwrap_or(0));
        let total = [
            t.user_ms(),
            t.nice_ms(),
            t.system_ms(),
            t.idle_ms(),
            t.iowait_ms().unwrap_or(0),
            t.irq_ms().unwrap_or(0),
            t.softirq_ms().unwrap_or(0),
            t.steal_ms().unwrap_or(0),
        ]
        .into_iter()
        .map(secs)
        .sum();
        h.cpu = Some(CpuTimes { total, idle });
        for (i, c) in k.cpu_time.iter().enumerate() {
            for (mode, ms) in [
                ("user", c.user_ms()),
                ("nice", c.nice_ms()),
                ("system", c.system_ms()),
                ("idle", c.idle_ms()),
                ("iowait", c.iowait_ms().unwrap_or(0)),
                ("irq", c.irq_ms().unwrap_or(0)),
                ("softirq", c.softirq_ms().unwrap_or(0)),
                ("steal", c.steal_ms().unwrap_or(0)),
            ] {
                h.cpu_modes
                    .push((i.to_string(), mode.to_string(), secs(ms)));
            }
        }
    }
    if let Ok(l) = procfs::LoadAverage::current() {
        h.load = Some([f64::from(l.one), f64::from(l.five), f64::from(l.fifteen)]);
    }
    if let Ok(m) = procfs::Meminfo::current() {
        h.mem_total = Some(m.mem_total as f64);
        h.mem_available = m.mem_available.map(|v| v as f64);
        h.swap_total = Some(m.swap_total as f64);
        h.swap_free = Some(m.swap_free as f64);
    }
    if let Ok(devs) = procfs::net::dev_status() {
        let mut net: Vec<NetDev> = devs
            .into_values()
            .map(|d| NetDev {
                device: d.name,
                rx_bytes: d.recv_bytes as f64,
                tx_bytes: d.sent_bytes as f64,
            })
            .collect();
        net.sort_by(|a, b| a.device.cmp(&b.device));
        h.net = net;
    }
    h.filesystems = filesystems(paths);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    #[test]
    fn reads_this_host() {
        let tmp = std::env::temp_dir();
        let tmp = tmp.to_string_lossy();
        let a = read(&[&tmp]);
        assert!(a.cpu.is_some_and(|c| c.total > 0.0));
        assert!(a.mem_total.is_some_and(|m| m > 0.0));
        assert!(a.load.is_some());
        assert!(!a.cpu_modes.is_empty());
        assert!(super::super::model::filesystem_of(&a.filesystems, &tmp).is_some());
        std::thread::sleep(std::time::Duration::from_millis(50));
        let b = read(&[&tmp]);
        let s = b.samples(Some(&a), NodeId(1), 0, Some(&tmp), None);
        assert!(s.iter().any(|s| s.metric == "cpu_pct"), "{s:?}");
        assert!(s.iter().any(|s| s.metric == "disk_docker_total_bytes"));
    }
}
