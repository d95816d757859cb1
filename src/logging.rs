//! Logging: journald when running under systemd (stderr is the stream that
//! JOURNAL_STREAM names and the journal socket is present), stderr otherwise.
//! Level from RUST_LOG, default info.
//! Span enter/exit records that `tracing`'s log bridge emits are dropped.

use log::{Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

/// Targets whose records are noise at info level.
const QUIET: &[&str] = &["tracing::span"];

struct Quiet<L>(L);

impl<L: Log> Log for Quiet<L> {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        !QUIET.contains(&m.target()) && self.0.enabled(m)
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
