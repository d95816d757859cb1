//! GPU facts of this host from NVML. A host without the NVIDIA library or
//! without GPUs has no GPU telemetry: that is `None`, not an error.

/// (name of GPU 0, number of GPUs) when NVML loads and sees at least one GPU.
pub async fn local_gpus() -> Option<(String, i64)> {
    tokio::task::spawn_blocking(|| {
        let nvml = match nvml_wrapper::Nvml::init() {
            Ok(n) => n,
            Err(e) => {
                log::debug!("no GPU telemetry on this host: {e}");
                return None;
            }
        };
        let count = nvml.device_count().ok()?;
        if count == 0 {
            return None;
        }
        let name = nvml.device_by_index(0).ok()?.name().ok()?;
        Some((name, i64::from(count)))
    })
    .await
    .ok()
    .flatten()
}
