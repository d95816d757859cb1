//! Long-lived streams from a daemon: container logs (optionally followed)
//! and container events. Both are plain streams the caller drives and drops.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{EventsOptionsBuilder, LogsOptionsBuilder};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::DockerError;

/// A container's output (stdout and stderr, as the TTY merged them), the
/// last `tail` lines and then, with `follow`, whatever comes next.
pub fn logs(
    d: &Docker,
    container: &str,
    follow: bool,
    tail: u32,
) -> impl Stream<Item = Result<Bytes, DockerError>> + Send + use<> {
    let opts = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .follow(follow)
        .tail(&tail.to_string())
        .build();
    let secs = d.timeout().as_secs();
    d.logs(container, Some(opts)).map(move |item| {
        item.map(|o| o.into_bytes())
            .map_err(|e| DockerError::from_bollard(e, secs))
    })
}

/// One container event: what happened (`start`, `die`, `destroy`, ...) to
/// which container, with the container's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub action: String,
    pub id: String,
    pub labels: HashMap<String, String>,
}

/// Container events from now on, for containers carrying `label=value`.
/// Ends when the connection to the daemon does.
pub fn container_events(
    d: &Docker,
    label: &str,
    value: &str,
) -> impl Stream<Item = Result<ContainerEvent, DockerError>> + Send + use<> {
    let filters = HashMap::from([
        ("type", vec!["container".to_string()]),
        ("label", vec![format!("{label}={value}")]),
    ]);
    let opts = EventsOptionsBuilder::new().filters(&filters).build();
    let secs = d.timeout().as_secs();
    d.events(Some(opts)).map(move |item| {
        let m = item.map_err(|e| DockerError::from_bollard(e, secs))?;
        let actor = m.actor.unwrap_or_default();
        // `exec_start: sh` and the like: keep the verb only.
        let action = m.action.unwrap_or_default();
        let action = action.split(':').next().unwrap_or("").trim().to_string();
        Ok(ContainerEvent {
            action,
            id: actor.id.unwrap_or_default(),
            labels: actor.attributes.unwrap_or_default(),
        })
    })
}
