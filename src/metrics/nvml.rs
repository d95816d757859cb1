//! This host's GPUs through NVML (`nvml-wrapper`; libnvidia-ml is loaded at
//! run time, so the binary runs on hosts without it). No driver, no library
//! or no GPU is a normal state: [`Gpus::read`] says why, nothing fails. A
//! failed start is retried every 5 minutes (a driver installed later).
//! XID errors arrive as NVML events: a small thread waits on them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::event::XidError;

use super::model::{GpuProcess, GpuReading};

const RETRY: Duration = Duration::from_secs(300);

enum State {
    Untried,
    Ready(Box<Nvml>),
    Failed(String, Instant),
}

struct Shared {
    state: Mutex<State>,
    /// Last XID per GPU index, from the event thread.
    xids: Mutex<HashMap<u32, u64>>,
    xid_watch: AtomicBool,
    stop: AtomicBool,
    watcher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// This host's NVML, opened on first use. Cheap to clone.
#[derive(Clone)]
pub struct Gpus {
    shared: Arc<Shared>,
}

impl Default for Gpus {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why NVML cannot be used, in words for the node page.
pub fn absent_reason(e: &nvml_wrapper::error::NvmlError) -> String {
    use nvml_wrapper::error::NvmlError as E;
    match e {
        E::LibloadingError(inner) => {
            format!("no NVIDIA driver on this host (NVML library not loadable: {inner})")
        }
        E::DriverNotLoaded => "the NVIDIA kernel driver is not loaded".to_string(),
        E::NoPermission => "no permission to use the NVIDIA driver".to_string(),
        other => format!("NVML unavailable: {other}"),
    }
}

impl Gpus {
    pub fn new() -> Self {
        Gpus {
            shared: Arc::new(Shared {
                state: Mutex::new(State::Untried),
                xids: Mutex::default(),
                xid_watch: AtomicBool::new(false),
                stop: AtomicBool::new(false),
                watcher: Mutex::new(None),
            }),
        }
    }

    /// Every GPU now; the reason when NVML cannot be used. Blocking.
    pub fn read(&self) -> Result<Vec<GpuReading>, String> {
        let mut state = lock(&self.shared.state);
        let retry = match &*state {
            State::Untried => true,
            State::Failed(_, at) => at.elapsed() >= RETRY,
            State::Ready(_) => false,
        };
        if retry {
            *state = match Nvml::init() {
                Ok(n) => State::Ready(Box::new(n)),
                Err(e) => State::Failed(absent_reason(&e), Instant::now()),
            };
            if matches!(*state, State::Ready(_)) {
                self.start_xid_watch();
            }
        }
        let nvml = match &*state {
            State::Ready(n) => n,
            State::Failed(why, _) => return Err(why.clone()),
            State::Untried => return Err("NVML not started".into()),
        };
        let count = nvml.device_count().map_err(|e| absent_reason(&e))?;
        if count == 0 {
            return Err("NVML sees no GPU on this host".into());
        }
        let xids = lock(&self.shared.xids).clone();
        let watching = self.shared.xid_watch.load(Ordering::Relaxed);
        Ok((0..count)
            .filter_map(|i| {
                let xid = watching.then(|| xids.get(&i).copied().unwrap_or(0) as f64);
                read_device(nvml, i, xid)
            })
            .collect())
    }

    /// Ends the XID thread and waits for it (at most ~1 s; blocking).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = lock(&self.shared.watcher).take()
            && h.join().is_err()
        {
            log::error!("NVML: the XID watcher panicked");
        }
    }

    fn start_xid_watch(&self) {
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("nvml-xid".into())
            .spawn(move || watch_xids(&shared));
        match spawned {
            Ok(h) => *lock(&self.shared.watcher) = Some(h),
            Err(e) => log::warn!("NVML: cannot start the XID watcher: {e}"),
        }
    }
}

fn read_device(nvml: &Nvml, i: u32, xid: Option<f64>) -> Option<GpuReading> {
    let d = nvml.device_by_index(i).ok()?;
    let util = d.utilization_rates().ok();
    let mem = d.memory_info().ok();
    let sbe = d
        .total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
        .ok();
    let dbe = d
        .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
        .ok();
    let processes = d
        .running_compute_processes()
        .unwrap_or_default()
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            name: nvml.sys_process_name(p.pid, 256).unwrap_or_default(),
            used_bytes: match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => b,
                UsedGpuMemory::Unavailable => 0,
            },
        })
        .collect();
    Some(GpuReading {
        index: i64::from(i),
        uuid: d.uuid().unwrap_or_default(),
        name: d.name().unwrap_or_default(),
        pci_bus_id: d.pci_info().map(|p| p.bus_id).unwrap_or_default(),
        util_pct: util.as_ref().map(|u| f64::from(u.gpu)),
        mem_util_pct: util.as_ref().map(|u| f64::from(u.memory)),
        mem_used_bytes: mem.as_ref().map(|m| m.used as f64),
        mem_total_bytes: mem.as_ref().map(|m| m.total as f64),
        temp_c: d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
        power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
        power_limit_w: d
            .enforced_power_limit()
            .ok()
            .map(|mw| f64::from(mw) / 1000.0),
        sm_clock_mhz: d.clock_info(Clock::SM).ok().map(f64::from),
        fan_pct: d.fan_speed(0).ok().map(f64::from),
        ecc_volatile: sbe.zip(dbe).map(|(s, d)| (s + d) as f64),
        ecc_dbe: dbe.map(|d| d as f64),
        xid,
        processes,
    })
}

/// Waits on XID events of every GPU until `stop`; records the last XID per GPU.
fn watch_xids(shared: &Shared) {
    let Ok(nvml) = Nvml::init() else { return };
    let Ok(mut set) = nvml.create_event_set() else {
        return;
    };
    let count = nvml.device_count().unwrap_or(0);
    for i in 0..count {
        let Ok(d) = nvml.device_by_index(i) else {
            continue;
        };
        set = match d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(s) => s,
            Err(e) => {
                log::info!("NVML: XID events not available on GPU {i}: {}", e.error);
                return;
            }
        };
    }
    shared.xid_watch.store(true, Ordering::Relaxed);
    while !shared.stop.load(Ordering::Relaxed) {
        let Ok(ev) = set.wait(1000) else { continue };
        if let (Ok(idx), Some(XidError::Value(x))) = (ev.device.index(), ev.event_data) {
            log::warn!("NVML: GPU {idx} reported XID {x}");
            lock(&shared.xids).insert(idx, x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_driver_gpus_are_absent_with_the_reason() {
        let gpus = Gpus::new();
        match gpus.read() {
            // A machine with a driver and GPUs: every GPU has its UUID.
            Ok(list) => assert!(list.iter().all(|g| g.uuid.starts_with("GPU-")), "{list:?}"),
            Err(why) => assert!(
                why.contains("libnvidia-ml") || why.contains("driver") || why.contains("no GPU"),
                "{why}"
            ),
        }
        gpus.stop();
    }
}
