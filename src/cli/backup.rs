//! `gpudock backup` and `gpudock restore`: thin wiring over `crate::backup`,
//! with the messages an operator needs (above all: the archive holds the key).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;

/// A failed backup is an alert (event `backup_failed`), recorded in the
/// database for the running server to announce; best effort (the backup's
/// own error is what the operator sees first).
fn alert_failure(config: &Config, why: &str) {
    let ev = crate::alerts::Raised {
        kind: crate::alerts::EventKind::BackupFailed,
        subject: crate::alerts::Subject::Appliance,
        value: None,
        detail: format!("backup failed: {why}"),
    };
    let recorded = super::open_existing(config).and_then(|db| {
        let write = db.write(move |c| {
            crate::alerts::record_event(c, &ev).map_err(crate::error::AppError::from)
        });
        Ok(super::runtime()?.block_on(write)?)
    });
    if let Err(e) = recorded {
        eprintln!("warning: the failure could not be recorded as an alert: {e:#}");
    }
}

pub fn create(config: &Config, to: &Path) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let done = crate::backup::create(&config.data_dir, to).with_context(|| {
        format!(
            "while backing up {} to {}",
            config.data_dir.display(),
            to.display()
        )
    });
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            alert_failure(config, &format!("{e:#}"));
            return Err(e);
        }
    };
    println!(
        "backup written to {} ({} bytes, mode 0600) in {:.1} s: {}; database {} bytes, \
         integrity ok, identity checked, {} audit records",
        done.path.display(),
        done.archive_bytes,
        started.elapsed().as_secs_f64(),
        done.files.join(", "),
        done.db_bytes,
        done.audit_records,
    );
    if let Some((id, why)) = &done.audit_broken {
        eprintln!(
            "WARNING: the audit chain is broken at record {id} ({why}); the archive keeps it as \
             evidence, but `gpudock restore` will refuse it"
        );
    }
    eprintln!(
        "WARNING: {} holds age.key, the key that opens every sealed secret (node passwords \
         and TLS client keys), and the server's TLS private key. Anyone who can read it can \
         read them: keep it as safe as the server itself.",
        done.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore(config: &Config, from: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let dir = &config.data_dir;
    let done = crate::backup::restore(from, dir, force)
        .with_context(|| format!("while restoring {} into {}", from.display(), dir.display()))?;
    println!(
        "restored {} (written by gpudock {} at Unix time {}) into {}: {}; database {} bytes, \
         integrity ok, identity opens the sealed canary, audit chain intact ({} records)",
        from.display(),
        done.written_by,
        done.created_at,
        done.data_dir.display(),
        done.files.join(", "),
        done.db_bytes,
        done.audit_records,
    );
    if let Some(aside) = &done.moved_aside {
        println!(
            "the previous contents are in {} (delete it when satisfied)",
            aside.display()
        );
    }
    println!("start the server now (systemctl start gpudock)");
    Ok(ExitCode::SUCCESS)
}
