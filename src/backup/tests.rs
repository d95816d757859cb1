//! Backup and restore on a data dir made here (migrated database, identity,
//! canary, a few audit records): round trip, and every refusal.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::*;
use crate::audit::{Actor, Event, Source};

/// A data dir like the server leaves it: migrated WAL database, identity and
/// canary, three audit records, a TLS pair.
fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    crate::fsutil::ensure_private_dir(&dir).unwrap();
    let mut conn = Connection::open(dir.join(DB)).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    crate::db::migrate(&mut conn).unwrap();
    Sealer::open_for(&dir.join(IDENTITY), &conn).unwrap();
    let (actor, source) = (Actor::system(), Source::local());
    for i in 0..3 {
        let ev = Event::new(&actor, &source, "test.event", "test").id(i);
        crate::audit::append(&conn, &ev).unwrap();
    }
    crate::fsutil::ensure_private_dir(&dir.join("tls")).unwrap();
    std::fs::write(dir.join("tls/cert.pem"), "CERT").unwrap();
    crate::fsutil::write_private(&dir.join("tls/key.pem"), b"KEY").unwrap();
    dir
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn round_trip_keeps_everything_and_the_archive_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let src = data_dir(tmp.path());
    let file = tmp.path().join("b.tar.gz");
    let made = create(&src, &file).unwrap();
    assert_eq!(mode(&file), 0o600);
    assert_eq!(made.audit_records, 3);
    assert_eq!(
        made.files,
        ["gpudock.db", "age.key", "tls/cert.pem", "tls/key.pem"]
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(matches!(create(&src, &file), Err(BackupError::Exists(_))));

    let target = tmp.path().join("restored");
    let done = restore(&file, &target, false).unwrap();
    assert_eq!(done.audit_records, 3);
    assert!(done.moved_aside.is_none());
    assert_eq!(mode(&target), 0o700);
    assert_eq!(mode(&target.join(IDENTITY)), 0o600);
    assert_eq!(
        std::fs::read(target.join(IDENTITY)).unwrap(),
        std::fs::read(src.join(IDENTITY)).unwrap()
    );
    assert_eq!(std::fs::read(target.join("tls/key.pem")).unwrap(), b"KEY");
    let conn = Connection::open(target.join(DB)).unwrap();
    Sealer::check(&target.join(IDENTITY), &conn).unwrap();
}

#[test]
fn a_non_empty_target_needs_force_and_is_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let src = data_dir(tmp.path());
    let file = tmp.path().join("b.tar.gz");
    create(&src, &file).unwrap();
    let target = tmp.path().join("t");
    std::fs::create_dir(&target).unwrap();
    restore(&file, &target, false).unwrap();
    let err = restore(&file, &target, false).unwrap_err();
    assert!(matches!(err, BackupError::NotEmpty(_)), "{err}");
    std::fs::write(target.join("marker"), "old").unwrap();
    let done = restore(&file, &target, true).unwrap();
    let aside = done.moved_aside.unwrap();
    assert_eq!(
        std::fs::read_to_string(aside.join("marker")).unwrap(),
        "old"
    );
    assert!(!target.join("marker").exists());
    let held = crate::datadir::lock(&target).unwrap();
    let err = restore(&file, &target, true).unwrap_err();
    assert!(matches!(err, BackupError::Lock(_)), "{err}");
    drop(held);
}

#[test]
fn damaged_archives_are_refused_before_touching_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let src = data_dir(tmp.path());
    let file = tmp.path().join("b.tar.gz");
    create(&src, &file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let target = tmp.path().join("t");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() * 2 / 3].to_vec()),
        ("trailer cut", bytes[..bytes.len() - 4].to_vec()),
        ("flipped", {
            let mut b = bytes.clone();
            let i = b.len() / 2;
            b[i] ^= 0x55;
            b
        }),
        ("not gzip", b"hello".to_vec()),
    ];
    for (what, data) in cases {
        let bad = tmp.path().join(format!("{what}.tar.gz"));
        std::fs::write(&bad, data).unwrap();
        let err = restore(&bad, &target, false).unwrap_err();
        assert!(matches!(err, BackupError::Damaged { .. }), "{what}: {err}");
        assert!(!target.exists(), "{what}");
    }
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains("restore-")), "{names:?}");
}

/// Writes an archive by hand: `entries` after a manifest that lists `listed`.
fn handmade(path: &Path, listed: &[(&str, &[u8])], entries: &[(&str, &[u8])]) {
    use sha2::Digest;
    let files: std::collections::BTreeMap<String, archive::FileSum> = listed
        .iter()
        .map(|(n, d)| {
            let sum = archive::FileSum {
                sha256: hex::encode(sha2::Sha256::digest(d)),
                size: d.len() as u64,
            };
            ((*n).to_string(), sum)
        })
        .collect();
    let manifest = serde_json::json!({"format": "gpudock-backup", "version": 1,
        "gpudock_version": "test", "created_at": 0, "files": files});
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    let json = manifest.to_string();
    let all = std::iter::once((archive::MANIFEST, json.as_bytes())).chain(entries.iter().copied());
    for (name, data) in all {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`; write the raw name to test the reader.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        tar.append(&h, data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

#[test]
fn unexpected_names_and_another_identity_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = data_dir(tmp.path());
    let db = std::fs::read(src.join(DB)).unwrap();
    let target = tmp.path().join("t");
    let evil = tmp.path().join("evil.tar.gz");
    handmade(&evil, &[("../evil", b"x")], &[("../evil", b"x")]);
    let err = restore(&evil, &target, false).unwrap_err();
    assert!(
        err.to_string().contains("unexpected entry ../evil"),
        "{err}"
    );
    assert!(!tmp.path().join("evil").exists());

    let other = tempfile::tempdir().unwrap();
    let other_key = std::fs::read(data_dir(other.path()).join(IDENTITY)).unwrap();
    let swapped = tmp.path().join("swapped.tar.gz");
    let files: [(&str, &[u8]); 2] = [(DB, &db), (IDENTITY, &other_key)];
    handmade(&swapped, &files, &files);
    let err = restore(&swapped, &target, false).unwrap_err();
    assert!(
        matches!(err, BackupError::Secret(SecretError::WrongIdentity(_))),
        "{err}"
    );
    assert!(!target.exists());

    let missing = tmp.path().join("missing.tar.gz");
    handmade(&missing, &files, &files[..1]);
    let err = restore(&missing, &target, false).unwrap_err();
    assert!(err.to_string().contains("missing or altered"), "{err}");
}
