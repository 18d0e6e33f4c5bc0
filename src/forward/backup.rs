//! `tollgate ctl backup FILE` / `restore FILE`: a consistent copy of the forwarding database.
//!
//! Backup is `VACUUM INTO` on a read transaction, so it is safe against a running tollgate (WAL readers do not
//! block the writer) and needs no extra rusqlite feature. Restore checks the file is a sound tollgate database
//! of a known schema, writes a fresh copy next to the target and renames it over (with the old `-wal`/`-shm`
//! removed). Restore is for a stopped tollgate: a running one keeps the old file open and would not see it.
use super::store::{COLUMNS, SCHEMA_VERSION, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

fn sql(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        }
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Locked {
                path: path.to_owned(),
            }
        }
        _ => StoreError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    }
}

/// Opens `path` read-only and checks it is a sound tollgate forwarding database.
fn open_checked(path: &Path) -> Result<Connection, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Open {
            path: path.to_owned(),
            reason: "no such file".into(),
        });
    }
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql(path, e))?;
    c.busy_timeout(std::time::Duration::from_millis(1000))
        .map_err(|e| sql(path, e))?;
    let check: String = c
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| sql(path, e))?;
    if check != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: check,
        });
    }
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sql(path, e))?;
    if version != SCHEMA_VERSION {
        return Err(StoreError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    for q in [
        format!("SELECT {COLUMNS} FROM forwards LIMIT 0"),
        "SELECT id, at, who, action, number, before, after FROM audit LIMIT 0".into(),
    ] {
        c.prepare(&q).map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("unexpected schema: {e}"),
        })?;
    }
    Ok(c)
}

fn vacuum_into(c: &Connection, src: &Path, dest: &Path) -> Result<(), StoreError> {
    let d = dest.to_str().ok_or_else(|| StoreError::Open {
        path: dest.to_owned(),
        reason: "path is not UTF-8".into(),
    })?;
    c.execute("VACUUM INTO ?1", [d]).map_err(|e| sql(src, e))?;
    Ok(())
}

/// Writes a consistent copy of `db` to `dest` (which must not exist). Returns the number of forwards copied.
pub fn backup(db: &Path, dest: &Path) -> Result<usize, StoreError> {
    if dest.exists() {
        return Err(StoreError::Open {
            path: dest.to_owned(),
            reason: "already exists; not overwritten".into(),
        });
    }
    let c = open_checked(db)?;
    vacuum_into(&c, db, dest)?;
    let n: i64 = c
        .query_row("SELECT count(*) FROM forwards", [], |r| r.get(0))
        .map_err(|e| sql(db, e))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Replaces `db` by the backup `from` (checked first; `db` may be absent or corrupt). Returns the number of
/// forwards restored.
pub fn restore(db: &Path, from: &Path) -> Result<usize, StoreError> {
    let c = open_checked(from)?;
    let n: i64 = c
        .query_row("SELECT count(*) FROM forwards", [], |r| r.get(0))
        .map_err(|e| sql(from, e))?;
    let mut tmp = db.as_os_str().to_owned();
    tmp.push(format!(".restore-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    vacuum_into(&c, from, &tmp)?;
    drop(c);
    let io = |e: std::io::Error| StoreError::Open {
        path: db.to_owned(),
        reason: e.to_string(),
    };
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    std::fs::rename(&tmp, db).map_err(io)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::super::store::Forwarding;
    use super::super::{CallerId, Catalog, Forward, empty_table};
    use super::*;

    fn cat() -> Catalog {
        Catalog {
            trunks: vec!["cloud".into()],
            numbers: vec!["+18005551234".into()],
        }
    }

    #[test]
    fn backup_then_restore_over_a_corrupt_file() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("fwd.db");
        let f = Forward {
            number: "+18005551234".into(),
            target: "+442071838750".into(),
            trunk: "cloud".into(),
            ring_timeout_s: Some(30),
            caller_id: CallerId::Keep,
            fallback: true,
            enabled: true,
        };
        let fw = Forwarding::open(&db, cat(), empty_table()).unwrap();
        fw.add(&f, "test").unwrap();
        let bak = d.path().join("bak.db");
        // Taken while the store is open (as against a running tollgate).
        assert_eq!(backup(&db, &bak).unwrap(), 1);
        assert!(
            matches!(backup(&db, &bak), Err(StoreError::Open { .. })),
            "never overwrites"
        );
        drop(fw);
        std::fs::write(&db, vec![0x5a; 4096]).unwrap();
        assert_eq!(restore(&db, &bak).unwrap(), 1);
        let fw = Forwarding::open(&db, cat(), empty_table()).unwrap();
        assert_eq!(fw.list().unwrap(), vec![f]);
        assert_eq!(
            fw.audit(10).unwrap().len(),
            1,
            "the audit log is part of the backup"
        );
    }

    #[test]
    fn restore_refuses_a_bad_backup_and_keeps_the_db() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("fwd.db");
        drop(Forwarding::open(&db, cat(), empty_table()).unwrap());
        let before = std::fs::read(&db).unwrap();
        let junk = d.path().join("junk.db");
        std::fs::write(&junk, vec![0x5a; 4096]).unwrap();
        assert!(matches!(
            restore(&db, &junk),
            Err(StoreError::Corrupt { .. })
        ));
        let foreign = d.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE forwards (x); PRAGMA user_version=1;")
            .unwrap();
        assert!(matches!(
            restore(&db, &foreign),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            restore(&db, &d.path().join("absent.db")),
            Err(StoreError::Open { .. })
        ));
        assert_eq!(std::fs::read(&db).unwrap(), before);
    }
}
