//! Logging: journald when running under systemd (stderr is the stream that
//! JOURNAL_STREAM names and the journal socket is present), stderr otherwise.
//! Level from RUST_LOG, default info; the journal logger filters nothing itself,
//! so `Quiet` applies the level. Span enter/exit records that `tracing`'s log
//! bridge emits (targets `tracing::span`, `tracing::span::active`) are dropped.

use log::{Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

/// Target prefixes whose records are noise.
const QUIET: &[&str] = &["tracing::span"];

struct Quiet<L>(L);

impl<L: Log> Log for Quiet<L> {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
            && !QUIET.iter().any(|q| m.target().starts_with(q))
            && self.0.enabled(m)
    }
    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) {
            self.0.log(r);
        }
    }
    fn flush(&self) {
        self.0.flush();
    }
}

/// Installs the global logger once; later calls are ignored.
pub fn init() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info);
    if systemd_journal_logger::connected_to_journal()
        && let Ok(journal) = JournalLog::new()
        && log::set_boxed_logger(Box::new(Quiet(
            journal.with_syslog_identifier("gpudock".to_string()),
        )))
        .is_ok()
    {
        log::set_max_level(level);
        return;
    }
    let stderr = env_logger::Builder::new()
        .filter_level(level)
        .parse_default_env()
        .build();
    if log::set_boxed_logger(Box::new(Quiet(stderr))).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records what reaches it, like the journal logger (which filters nothing).
    struct Sink(Arc<Mutex<Vec<String>>>);

    impl Log for Sink {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &Record<'_>) {
            self.0.lock().unwrap().push(r.target().to_string());
        }
        fn flush(&self) {}
    }

    #[test]
    fn quiet_applies_the_level_and_drops_span_noise() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let quiet = Quiet(Sink(seen.clone()));
        log::set_max_level(log::LevelFilter::Info);
        let record = |level, target: &'static str| {
            quiet.log(
                &Record::builder()
                    .level(level)
                    .target(target)
                    .args(format_args!("x"))
                    .build(),
            );
        };
        record(log::Level::Debug, "tower_sessions::service");
        record(log::Level::Info, "tracing::span::active");
        record(log::Level::Info, "tracing::span");
        record(log::Level::Warn, "gpudock::app");
        assert_eq!(*seen.lock().unwrap(), ["gpudock::app"]);
    }
}
