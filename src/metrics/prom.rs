//! Reading the Prometheus text format (and OpenMetrics text, which gpudock's
//! agent writes): a strict line parser, and the mapping of dcgm-exporter's
//! and node_exporter's metric names to GPU and host readings.
//!
//! Why not a crate: `prometheus-parse` splits label sets on `,` and `=`
//! (values holding either, a `}` or an escaped quote come out wrong) and
//! `openmetrics-parser` is LGPL-3.0. The format is small; escapes, `NaN`,
//! `±Inf`, timestamps and the `# EOF` marker are handled here and tested.

use std::collections::BTreeMap;

use super::model::{CpuTimes, Filesystem, GpuProcess, GpuReading, HostReading, NetDev};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl PromSample {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not Prometheus text format (line {line}: {why})")]
pub struct ParseError {
    pub line: usize,
    pub why: &'static str,
}

/// Parses a whole exposition. Comments (`# HELP`, `# TYPE`, `# EOF`) are
/// skipped; any malformed line fails the whole text, as in Prometheus.
pub fn parse(text: &str) -> Result<Vec<PromSample>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r').trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|why| ParseError { line: i + 1, why })?);
    }
    Ok(out)
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

fn parse_line(line: &str) -> Result<PromSample, &'static str> {
    let b = line.as_bytes();
    if !b.first().is_some_and(|c| is_name_start(*c)) {
        return Err("a metric name must start the line");
    }
    let end = b.iter().position(|c| !is_name_char(*c)).unwrap_or(b.len());
    let name = line[..end].to_string();
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_labels(r, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value).ok_or("the value is not a number")?;
    if let Some(ts) = fields.next() {
        ts.parse::<f64>()
            .map_err(|_| "the timestamp is not a number")?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp");
    }
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err("no space before the value");
    }
    Ok(PromSample {
        name,
        labels,
        value,
    })
}

/// Parses `k="v", ...}` and returns what follows the `}`.
fn parse_labels<'a>(
    mut s: &'a str,
    out: &mut Vec<(String, String)>,
) -> Result<&'a str, &'static str> {
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix('}') {
            return Ok(r);
        }
        let b = s.as_bytes();
        if !b
            .first()
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        {
            return Err("bad label name");
        }
        let end = b
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .unwrap_or(b.len());
        let key = s[..end].to_string();
        s = s[end..]
            .trim_start()
            .strip_prefix('=')
            .ok_or("no `=` after a label name")?;
        s = s
            .trim_start()
            .strip_prefix('"')
            .ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    _ => return Err("bad escape in a label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((key, value));
        s = s[close + 1..].trim_start();
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err("no `,` or `}` after a label");
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

const MIB: f64 = 1_048_576.0;

/// GPU readings from dcgm-exporter's names (also what gpudock's agent
/// writes). Whole GPUs only: MIG slices (`GPU_I_ID`) are skipped.
pub fn gpus_from_dcgm(samples: &[PromSample]) -> Vec<GpuReading> {
    let mut gpus: BTreeMap<i64, GpuReading> = BTreeMap::new();
    let mut fb: BTreeMap<i64, [Option<f64>; 4]> = BTreeMap::new();
    let mut ecc: BTreeMap<i64, f64> = BTreeMap::new();
    for s in samples {
        let Some(idx) = s.label("gpu").and_then(|g| g.parse::<i64>().ok()) else {
            continue;
        };
        if s.label("GPU_I_ID").is_some_and(|v| !v.is_empty()) || !s.value.is_finite() {
            continue;
        }
        let is_dcgm = s.name.starts_with("DCGM_FI_");
        if !is_dcgm && s.name != "gpudock_gpu_process_memory_bytes" {
            continue;
        }
        let g = gpus.entry(idx).or_insert_with(|| GpuReading {
            index: idx,
            ..Default::default()
        });
        for (label, field) in [
            ("UUID", &mut g.uuid),
            ("modelName", &mut g.name),
            ("pci_bus_id", &mut g.pci_bus_id),
        ] {
            if field.is_empty()
                && let Some(v) = s.label(label)
            {
                *field = v.to_string();
            }
        }
        let v = Some(s.value);
        let f = fb.entry(idx).or_default();
        match s.name.as_str() {
            "DCGM_FI_DEV_GPU_UTIL" => g.util_pct = v,
            "DCGM_FI_DEV_MEM_COPY_UTIL" => g.mem_util_pct = v,
            "DCGM_FI_DEV_GPU_TEMP" => g.temp_c = v,
            "DCGM_FI_DEV_POWER_USAGE" => g.power_w = v,
            "DCGM_FI_DEV_POWER_MGMT_LIMIT" => g.power_limit_w = v,
            "DCGM_FI_DEV_SM_CLOCK" => g.sm_clock_mhz = v,
            "DCGM_FI_DEV_FAN_SPEED" => g.fan_pct = v,
            "DCGM_FI_DEV_XID_ERRORS" => g.xid = v,
            "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" => *ecc.entry(idx).or_default() += s.value,
            "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" => {
                *ecc.entry(idx).or_default() += s.value;
                g.ecc_dbe = v;
            }
            "DCGM_FI_DEV_FB_USED" => f[0] = v,
            "DCGM_FI_DEV_FB_FREE" => f[1] = v,
            "DCGM_FI_DEV_FB_RESERVED" => f[2] = v,
            "DCGM_FI_DEV_FB_TOTAL" => f[3] = v,
            "gpudock_gpu_process_memory_bytes" => g.processes.push(GpuProcess {
                pid: s.label("pid").and_then(|p| p.parse().ok()).unwrap_or(0),
                name: s.label("name").unwrap_or("").to_string(),
                used_bytes: s.value.max(0.0) as u64,
            }),
            _ => {}
        }
    }
    for (idx, g) in gpus.iter_mut() {
        let [used, free, reserved, total] = fb.get(idx).copied().unwrap_or_default();
        g.mem_used_bytes = used.map(|u| u * MIB);
        g.mem_total_bytes = total
            .or_else(|| Some(used? + free? + reserved.unwrap_or(0.0)))
            .map(|t| t * MIB);
        g.ecc_volatile = ecc.get(idx).copied();
    }
    gpus.into_values().collect()
}

/// A host reading from node_exporter's names (also what the agent writes).
/// `None` when the text holds none of them.
pub fn host_from_node_exporter(samples: &[PromSample], at: f64) -> Option<HostReading> {
    let mut h = HostReading {
        at,
        ..Default::default()
    };
    let mut cpu = CpuTimes::default();
    let (mut seen_cpu, mut load) = (false, [None; 3]);
    let mut fs: BTreeMap<String, Filesystem> = BTreeMap::new();
    let mut net: BTreeMap<String, NetDev> = BTreeMap::new();
    let mut any = false;
    for s in samples
        .iter()
        .filter(|s| s.name.starts_with("node_") && s.value.is_finite())
    {
        any = true;
        match s.name.as_str() {
            "node_cpu_seconds_total" => {
                seen_cpu = true;
                cpu.total += s.value;
                if matches!(s.label("mode"), Some("idle" | "iowait")) {
                    cpu.idle += s.value;
                }
            }
            "node_load1" => load[0] = Some(s.value),
            "node_load5" => load[1] = Some(s.value),
            "node_load15" => load[2] = Some(s.value),
            "node_memory_MemTotal_bytes" => h.mem_total = Some(s.value),
            "node_memory_MemAvailable_bytes" => h.mem_available = Some(s.value),
            "node_memory_SwapTotal_bytes" => h.swap_total = Some(s.value),
            "node_memory_SwapFree_bytes" => h.swap_free = Some(s.value),
            "node_filesystem_size_bytes" | "node_filesystem_avail_bytes" => {
                let Some(m) = s.label("mountpoint") else {
                    continue;
                };
                let e = fs.entry(m.to_string()).or_insert_with(|| Filesystem {
                    mountpoint: m.to_string(),
                    device: s.label("device").unwrap_or("").to_string(),
                    fstype: s.label("fstype").unwrap_or("").to_string(),
                    size_bytes: 0.0,
                    avail_bytes: 0.0,
                });
                if s.name.ends_with("size_bytes") {
                    e.size_bytes = s.value;
                } else {
                    e.avail_bytes = s.value;
                }
            }
            "node_network_receive_bytes_total" | "node_network_transmit_bytes_total" => {
                let Some(d) = s.label("device") else { continue };
                let e = net.entry(d.to_string()).or_insert_with(|| NetDev {
                    device: d.to_string(),
                    rx_bytes: 0.0,
                    tx_bytes: 0.0,
                });
                if s.name.contains("receive") {
                    e.rx_bytes = s.value;
                } else {
                    e.tx_bytes = s.value;
                }
            }
            _ => {}
        }
    }
    if !any {
        return None;
    }
    h.cpu = seen_cpu.then_some(cpu);
    if let [Some(a), Some(b), Some(c)] = load {
        h.load = Some([a, b, c]);
    }
    h.filesystems = fs.into_values().filter(|f| f.size_bytes > 0.0).collect();
    h.net = net.into_values().collect();
    Some(h)
}

/// The agent's own word on its GPU part: `Ok(())` when NVML works, the
/// reason otherwise (`gpudock_agent_gpu_up` / `gpudock_agent_gpu_info`).
pub fn agent_gpu_state(samples: &[PromSample]) -> Option<Result<(), String>> {
    let up = samples.iter().find(|s| s.name == "gpudock_agent_gpu_up")?;
    if up.value >= 1.0 {
        return Some(Ok(()));
    }
    let why = samples
        .iter()
        .find(|s| s.name == "gpudock_agent_gpu_info")
        .and_then(|s| s.label("reason"))
        .unwrap_or("the agent reads no GPU");
    Some(Err(why.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escapes_spaces_special_values_and_timestamps() {
        let text = "# HELP x A \\n help\n# TYPE x gauge\n\
            x{a=\"1\", b=\"q\\\"uote,}=\\\\ \\n\",} 1.5e3 1700000000000\n\
            y NaN\nz{} +Inf\nw -Inf\n  v 3\n# EOF\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].name, "x");
        assert_eq!(s[0].label("b"), Some("q\"uote,}=\\ \n"));
        assert_eq!(s[0].value, 1500.0);
        assert!(s[1].value.is_nan());
        assert_eq!(s[2].value, f64::INFINITY);
        assert_eq!(s[3].value, f64::NEG_INFINITY);
        assert_eq!(s[4].value, 3.0);
    }

    #[test]
    fn garbage_is_refused_with_the_line() {
        for (text, line) in [
            ("<html><body>502 Bad Gateway</body></html>", 1),
            ("ok 1\nx{a=\"unterminated} 1\n", 2),
            ("x{a=1} 2", 1),
            ("x 1 2 3", 1),
            ("x abc", 1),
            ("x{a=\"\\q\"} 1", 1),
            ("x{a=\"1\"}2", 1),
            ("9x 1", 1),
            ("x", 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
        }
        assert!(parse("\u{0}\u{1}\u{2}").is_err());
    }

    /// dcgm-exporter's format, from tests/fixtures/dcgm-exporter-h100x8.prom.
    #[test]
    fn dcgm_exporter_output_maps_to_eight_gpus() {
        let text = include_str!("../../tests/fixtures/dcgm-exporter-h100x8.prom");
        let gpus = gpus_from_dcgm(&parse(text).unwrap());
        assert_eq!(gpus.len(), 8);
        let g = &gpus[0];
        assert_eq!(g.index, 0);
        assert_eq!(g.name, "NVIDIA H100 80GB HBM3");
        assert!(g.uuid.starts_with("GPU-"), "{}", g.uuid);
        assert_eq!(g.pci_bus_id, "00000000:18:00.0");
        assert_eq!(g.util_pct, Some(97.0));
        assert_eq!(g.temp_c, Some(61.0));
        assert_eq!(g.power_w, Some(612.443));
        assert_eq!(g.mem_used_bytes, Some(71_236.0 * MIB));
        assert_eq!(g.mem_total_bytes, Some(81_559.0 * MIB));
        assert_eq!(g.sm_clock_mhz, Some(1980.0));
        assert_eq!(g.xid, Some(0.0));
        assert_eq!(gpus[7].util_pct, Some(0.0));
        assert_eq!(gpus[7].index, 7);
        let uuids: std::collections::BTreeSet<_> = gpus.iter().map(|g| g.uuid.clone()).collect();
        assert_eq!(uuids.len(), 8);
    }

    #[test]
    fn node_exporter_names_make_a_host_reading() {
        let text = "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 90\n\
            node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 8\n\
            node_cpu_seconds_total{cpu=\"0\",mode=\"iowait\"} 2\n\
            node_load1 0.5\nnode_load5 0.25\nnode_load15 0.125\n\
            node_memory_MemTotal_bytes 1e9\nnode_memory_MemAvailable_bytes 4e8\n\
            node_filesystem_size_bytes{device=\"/dev/vda1\",fstype=\"ext4\",mountpoint=\"/\"} 1000\n\
            node_filesystem_avail_bytes{device=\"/dev/vda1\",fstype=\"ext4\",mountpoint=\"/\"} 100\n\
            node_network_receive_bytes_total{device=\"eth0\"} 5\n\
            node_network_transmit_bytes_total{device=\"eth0\"} 7\n";
        let h = host_from_node_exporter(&parse(text).unwrap(), 10.0).unwrap();
        assert_eq!(
            h.cpu,
            Some(CpuTimes {
                total: 100.0,
                idle: 92.0
            })
        );
        assert_eq!(h.load, Some([0.5, 0.25, 0.125]));
        assert_eq!(h.filesystems[0].avail_bytes, 100.0);
        assert_eq!(h.net[0].tx_bytes, 7.0);
        assert!(host_from_node_exporter(&parse("up 1\n").unwrap(), 0.0).is_none());
    }
}
