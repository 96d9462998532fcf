//! The store under file faults, in one process: what a deleted WAL, a
//! deleted or replaced database and a damaged file do to writes and
//! health, and how each recovers without losing a committed row. (The
//! integration suite does the same on a real filesystem, with immutable
//! files and a full disk.)

use super::*;
use crate::model::{ChangeRecord, RequestId};

/// A change with its own request key.
fn record(i: u64) -> ChangeRecord {
    let mut key = [0u8; STORE_KEY_LEN];
    key[..8].copy_from_slice(&(i ^ (1 << 63)).to_be_bytes());
    key[8..16].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    let request = RequestId::from_store_key(&key).unwrap();
    ChangeRecord {
        id: request.finding_id(),
        cluster: "prod-eu-1".to_owned(),
        verb: "patch".to_owned(),
        audit_id: format!("audit-{i}"),
        request,
        ..ChangeRecord::default()
    }
}

fn write(store: &mut Store, from: u64, n: u64) -> Result<Written, StoreError> {
    let batch: Vec<_> = (from..from + n).map(record).collect();
    store.write(&batch, &[])
}

fn rows(dir: &Path) -> i64 {
    let conn = open_reader(dir).unwrap();
    conn.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
        .unwrap()
}

fn kind(store: &Store) -> Option<ProblemKind> {
    store.health().problem().map(|p| p.kind)
}

#[test]
fn a_deleted_wal_is_refused_then_folded_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    write(&mut store, 0, 3).unwrap();
    std::fs::remove_file(files::wal_path(store.path())).unwrap();

    let refused = write(&mut store, 3, 1).unwrap_err();
    assert!(
        matches!(&refused, StoreError::File(f) if f.wal_only()),
        "{refused}"
    );
    assert_eq!(kind(&store), Some(ProblemKind::Moved));

    assert_eq!(store.probe(), Probe::Same);
    assert_eq!(kind(&store), None, "{:?}", store.health().problem());
    write(&mut store, 3, 1).unwrap();
    drop(store);
    assert_eq!(rows(dir.path()), 4, "the rows of the deleted WAL are kept");
}

#[test]
fn a_deleted_database_is_copied_and_reopened_once_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    write(&mut store, 0, 2).unwrap();
    let db = store.path().to_owned();
    for f in [db.clone(), files::wal_path(&db)] {
        std::fs::remove_file(f).unwrap();
    }

    assert!(write(&mut store, 2, 1).is_err());
    let problem = store.health().problem().unwrap();
    assert_eq!(problem.kind, ProblemKind::Moved);
    let copy = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(".rescued-"))
        .expect("a copy of the deleted file");
    assert!(
        problem.message.contains(&copy.display().to_string()),
        "{}",
        problem.message
    );
    // Refused without trying, and no new empty database at the path.
    assert!(matches!(
        write(&mut store, 2, 1),
        Err(StoreError::Refused(_))
    ));
    assert_eq!(store.probe(), Probe::Same);
    assert!(!db.exists());

    std::fs::rename(&copy, &db).unwrap();
    assert_eq!(store.probe(), Probe::Replaced);
    assert_eq!(kind(&store), None);
    write(&mut store, 2, 1).unwrap();
    drop(store);
    assert_eq!(rows(dir.path()), 3);
}

#[test]
fn an_empty_file_in_its_place_is_not_taken_for_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    write(&mut store, 0, 1).unwrap();
    std::fs::remove_file(store.path()).unwrap();
    assert!(write(&mut store, 1, 1).is_err());
    std::fs::write(store.path(), b"").unwrap();

    assert_eq!(store.probe(), Probe::Same);
    let problem = store.health().problem().unwrap();
    assert_eq!(problem.kind, ProblemKind::Moved);
    assert!(
        problem.message.contains("holds no history"),
        "{}",
        problem.message
    );
    assert_eq!(std::fs::metadata(store.path()).unwrap().len(), 0);
}

#[test]
fn damage_is_found_refused_and_cleared_once_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    // Big enough that the rows span many pages.
    for i in 0..20 {
        write(&mut store, i * 50, 50).unwrap();
    }
    drop(store);
    let mut store = Store::open(dir.path()).unwrap();
    let db = store.path().to_owned();
    let good = std::fs::read(&db).unwrap();
    let mut bad = good.clone();
    let page = 4096;
    assert!(bad.len() > 8 * page, "{} bytes", bad.len());
    for b in &mut bad[2 * page..] {
        *b = 0x5a;
    }
    std::fs::write(&db, &bad).unwrap();

    verify(&store.readers(), &store.health());
    assert_eq!(kind(&store), Some(ProblemKind::Corrupt));
    assert!(matches!(
        write(&mut store, 5000, 1),
        Err(StoreError::Refused(_))
    ));
    // Not repaired: still refused.
    assert_eq!(store.probe(), Probe::Same);
    assert_eq!(kind(&store), Some(ProblemKind::Corrupt));

    std::fs::write(&db, &good).unwrap();
    assert_eq!(store.probe(), Probe::Same);
    assert_eq!(kind(&store), None, "{:?}", store.health().problem());
    write(&mut store, 5000, 1).unwrap();
    drop(store);
    assert_eq!(rows(dir.path()), 1001);
}

#[test]
fn a_store_held_by_a_running_service_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Another process would be refused by the OS lock; in this process a
    // connection through the default VFS shares the writer's lock and reads.
    assert!(open_reader(dir.path()).is_ok());
    drop(store);
    let locked = StoreError::sqlite(
        Path::new("x.db"),
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None),
    );
    assert!(
        locked.to_string().contains("who-changed --server"),
        "{locked}"
    );
}
