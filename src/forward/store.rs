//! The forwarding database: one SQLite file (WAL mode) holding the forwards and the audit log.
//!
//! Opening is strict: a file that is not a database, fails `PRAGMA quick_check`, has another schema, or is
//! held locked by another process is an error that names the file and says which of these it is. It never
//! turns into an empty table.
//!
//! [`Forwarding`] is what the API thread uses: validate, write in one transaction (forward + audit row), then
//! publish a new [`ForwardIndex`] built from the committed table. Writes are serialised by a mutex, so
//! concurrent clients lose nothing: each change is applied on top of the previous one.

use super::{Catalog, FieldError, Forward, ForwardIndex, ForwardTable, validate};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Schema version kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1;

/// How long an open or a write waits for another process's lock before it is reported.
const BUSY_WAIT: Duration = Duration::from_millis(1000);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("forwarding database {path}: cannot open: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("forwarding database {path} is corrupt or not a tollgate database: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "forwarding database {path} is locked by another process (still busy after {}ms); stop the other writer or point [forwarding] db elsewhere",
        BUSY_WAIT.as_millis()
    )]
    Locked { path: PathBuf },
    #[error(
        "forwarding database {path}: schema version {found}, this tollgate knows {SCHEMA_VERSION}"
    )]
    Version { path: PathBuf, found: i64 },
    #[error("a forward for {0} already exists")]
    Exists(String),
    #[error("no forward for {0}")]
    NotFound(String),
    #[error("invalid forward")]
    Invalid(Vec<FieldError>),
    #[error("forwarding database: {0}")]
    Sql(#[from] rusqlite::Error),
}

fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
            path: path.to_owned(),
        },
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        _ => StoreError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    }
}

/// One audit row: who changed what, when, and the forward before and after (JSON; null when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    /// Seconds since the Unix epoch.
    pub at: i64,
    pub who: String,
    /// `add`, `change` or `remove`.
    pub action: String,
    pub number: String,
    pub before: Option<Forward>,
    pub after: Option<Forward>,
}

/// The open database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS forwards (
    number TEXT PRIMARY KEY NOT NULL,
    target TEXT NOT NULL,
    trunk TEXT NOT NULL,
    ring_timeout_s INTEGER,
    caller_id TEXT NOT NULL,
    fallback INTEGER NOT NULL,
    enabled INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    number TEXT NOT NULL,
    before TEXT,
    after TEXT
);
";

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn caller_id_text(c: &super::CallerId) -> String {
    match c {
        super::CallerId::Keep => "keep".into(),
        super::CallerId::Fixed(n) => n.clone(),
    }
}

fn row_forward(r: &rusqlite::Row<'_>) -> rusqlite::Result<Forward> {
    let cid: String = r.get(4)?;
    Ok(Forward {
        number: r.get(0)?,
        target: r.get(1)?,
        trunk: r.get(2)?,
        ring_timeout_s: r
            .get::<_, Option<i64>>(3)?
            .and_then(|v| u32::try_from(v).ok()),
        caller_id: if cid == "keep" {
            super::CallerId::Keep
        } else {
            super::CallerId::Fixed(cid)
        },
        fallback: r.get::<_, i64>(5)? != 0,
        enabled: r.get::<_, i64>(6)? != 0,
    })
}

pub(super) const COLUMNS: &str =
    "number, target, trunk, ring_timeout_s, caller_id, fallback, enabled";

impl Store {
    /// Opens (creating if absent) the database at `path` in WAL mode, checks it, and creates the schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(path, e))?;
        conn.busy_timeout(BUSY_WAIT)
            .map_err(|e| classify(path, e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| classify(path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path: path.to_owned(),
                reason: format!("journal mode is `{mode}`, WAL could not be set"),
            });
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| classify(path, e))?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                reason: check,
            });
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| classify(path, e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Version {
                path: path.to_owned(),
                found: version,
            });
        }
        let mut s = Store {
            conn,
            path: path.to_owned(),
        };
        s.init_schema().map_err(|e| classify(path, e))?;
        s.check_schema()?;
        Ok(s)
    }

    fn init_schema(&mut self) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()
    }

    /// A table of the same name but other columns (another program's file) is not ours.
    fn check_schema(&self) -> Result<(), StoreError> {
        let q = format!("SELECT {COLUMNS} FROM forwards LIMIT 0");
        self.conn
            .prepare(&q)
            .and_then(|_| {
                self.conn
                    .prepare("SELECT id, at, who, action, number, before, after FROM audit LIMIT 0")
            })
            .map(|_| ())
            .map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                reason: format!("unexpected schema: {e}"),
            })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every forward, by number.
    pub fn list(&self) -> Result<Vec<Forward>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM forwards ORDER BY number"))?;
        let rows = st.query_map([], row_forward)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn get(&self, number: &str) -> Result<Option<Forward>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM forwards WHERE number = ?1"))?;
        Ok(st.query_row([number], row_forward).optional()?)
    }

    fn write(
        &mut self,
        who: &str,
        action: &str,
        number: &str,
        f: impl FnOnce(
            &rusqlite::Transaction<'_>,
            Option<Forward>,
        ) -> Result<Option<Forward>, StoreError>,
    ) -> Result<(Option<Forward>, Option<Forward>), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(&path, e))?;
        let before = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM forwards WHERE number = ?1"),
                [number],
                row_forward,
            )
            .optional()?;
        let after = f(&tx, before.clone())?;
        let js = |f: &Option<Forward>| f.as_ref().and_then(|f| serde_json::to_string(f).ok());
        tx.execute(
            "INSERT INTO audit (at, who, action, number, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![now_unix(), who, action, number, js(&before), js(&after)],
        )?;
        tx.commit()?;
        Ok((before, after))
    }

    fn upsert(tx: &rusqlite::Transaction<'_>, f: &Forward) -> rusqlite::Result<usize> {
        tx.execute(
            &format!(
                "INSERT OR REPLACE INTO forwards ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ),
            params![
                f.number,
                f.target,
                f.trunk,
                f.ring_timeout_s,
                caller_id_text(&f.caller_id),
                f.fallback,
                f.enabled
            ],
        )
    }

    /// Adds a forward; `Exists` if the number has one.
    pub fn insert(&mut self, f: &Forward, who: &str) -> Result<(), StoreError> {
        self.write(who, "add", &f.number, |tx, before| {
            if before.is_some() {
                return Err(StoreError::Exists(f.number.clone()));
            }
            Self::upsert(tx, f)?;
            Ok(Some(f.clone()))
        })
        .map(|_| ())
    }

    /// Replaces the forward of `f.number`; returns the previous one. `NotFound` if there is none.
    pub fn update(&mut self, f: &Forward, who: &str) -> Result<Forward, StoreError> {
        let (before, _) = self.write(who, "change", &f.number, |tx, before| {
            if before.is_none() {
                return Err(StoreError::NotFound(f.number.clone()));
            }
            Self::upsert(tx, f)?;
            Ok(Some(f.clone()))
        })?;
        before.ok_or_else(|| StoreError::NotFound(f.number.clone()))
    }

    /// Removes the forward of `number`; returns it. `NotFound` if there is none.
    pub fn delete(&mut self, number: &str, who: &str) -> Result<Forward, StoreError> {
        let (before, _) = self.write(who, "remove", number, |tx, before| {
            if before.is_none() {
                return Err(StoreError::NotFound(number.to_owned()));
            }
            tx.execute("DELETE FROM forwards WHERE number = ?1", [number])?;
            Ok(None)
        })?;
        before.ok_or_else(|| StoreError::NotFound(number.to_owned()))
    }

    /// The newest `limit` audit rows, newest first.
    pub fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, at, who, action, number, before, after FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        let rows = st.query_map([limit], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                who: r.get(2)?,
                action: r.get(3)?,
                number: r.get(4)?,
                before: parse(r.get(5)?),
                after: parse(r.get(6)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The forwarding service: store + published index + what validation checks against.
pub struct Forwarding {
    store: Mutex<Store>,
    table: ForwardTable,
    catalog: Catalog,
}

impl Forwarding {
    /// Opens the database, loads it, and publishes the index into `table`.
    pub fn open(
        path: &Path,
        catalog: Catalog,
        table: ForwardTable,
    ) -> Result<Arc<Self>, StoreError> {
        let store = Store::open(path)?;
        let all = store.list()?;
        table.store(Arc::new(ForwardIndex::build(&all)));
        Ok(Arc::new(Forwarding {
            store: Mutex::new(store),
            table,
            catalog,
        }))
    }

    pub fn table(&self) -> &ForwardTable {
        &self.table
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave SQLite half-written (the transaction rolls back), so a
        // poisoned lock is still usable.
        let mut g = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Re-reads the committed table and publishes it (called under the store lock, so publishes are ordered).
    fn publish(&self, s: &Store) -> Result<(), StoreError> {
        let all = s.list()?;
        self.table.store(Arc::new(ForwardIndex::build(&all)));
        Ok(())
    }

    fn checked(&self, f: &Forward) -> Result<(), StoreError> {
        let errs = validate(f, &self.catalog);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Invalid(errs))
        }
    }

    pub fn list(&self) -> Result<Vec<Forward>, StoreError> {
        self.with_store(|s| s.list())
    }

    pub fn get(&self, number: &str) -> Result<Option<Forward>, StoreError> {
        self.with_store(|s| s.get(number))
    }

    pub fn add(&self, f: &Forward, who: &str) -> Result<(), StoreError> {
        self.checked(f)?;
        self.with_store(|s| {
            s.insert(f, who)?;
            self.publish(s)
        })
    }

    pub fn change(&self, f: &Forward, who: &str) -> Result<Forward, StoreError> {
        self.checked(f)?;
        self.with_store(|s| {
            let before = s.update(f, who)?;
            self.publish(s)?;
            Ok(before)
        })
    }

    pub fn remove(&self, number: &str, who: &str) -> Result<Forward, StoreError> {
        self.with_store(|s| {
            let before = s.delete(number, who)?;
            self.publish(s)?;
            Ok(before)
        })
    }

    pub fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.with_store(|s| s.audit(limit))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CallerId, empty_table};
    use super::*;

    fn fwd(n: &str) -> Forward {
        Forward {
            number: n.into(),
            target: "+15557654321".into(),
            trunk: "carrier".into(),
            ring_timeout_s: Some(15),
            caller_id: CallerId::Fixed("+18005550000".into()),
            fallback: true,
            enabled: true,
        }
    }

    fn catalog() -> Catalog {
        Catalog {
            trunks: vec!["carrier".into(), "cloud".into()],
            numbers: vec!["+18005551234".into(), "+18005550000".into()],
        }
    }

    #[test]
    fn crud_audit_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fwd.db");
        let mut s = Store::open(&path).unwrap();
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        s.insert(&fwd("+18005551234"), "alice").unwrap();
        assert!(matches!(
            s.insert(&fwd("+18005551234"), "alice"),
            Err(StoreError::Exists(_))
        ));
        let mut changed = fwd("+18005551234");
        changed.caller_id = CallerId::Keep;
        changed.ring_timeout_s = None;
        let before = s.update(&changed, "bob").unwrap();
        assert_eq!(before, fwd("+18005551234"));
        assert_eq!(s.get("+18005551234").unwrap(), Some(changed.clone()));
        assert!(matches!(
            s.update(&fwd("+18005550000"), "bob"),
            Err(StoreError::NotFound(_))
        ));
        drop(s);
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.list().unwrap(), vec![changed.clone()]);
        assert_eq!(s.delete("+18005551234", "carol").unwrap(), changed);
        assert!(matches!(
            s.delete("+18005551234", "carol"),
            Err(StoreError::NotFound(_))
        ));
        let a = s.audit(10).unwrap();
        let summary: Vec<_> = a
            .iter()
            .map(|e| (e.who.as_str(), e.action.as_str()))
            .collect();
        assert_eq!(
            summary,
            [("carol", "remove"), ("bob", "change"), ("alice", "add")]
        );
        assert_eq!(a[0].before, Some(changed.clone()));
        assert_eq!(a[0].after, None);
        assert_eq!(a[1].before, Some(fwd("+18005551234")));
        assert_eq!(a[1].after, Some(changed));
        assert!(a[2].at > 1_700_000_000);
    }

    #[test]
    fn garbage_file_is_corrupt_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fwd.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let e = Store::open(&path).err().expect("garbage must not open");
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("fwd.db"), "{e}");
    }

    #[test]
    fn damaged_database_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fwd.db");
        {
            let mut s = Store::open(&path).unwrap();
            for i in 0..200 {
                let mut f = fwd("+18005551234");
                f.number = format!("+1800555{i:04}");
                s.insert(&f, "t").unwrap();
            }
            s.conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 8192);
        // Wreck the second page (the first table's b-tree), keep the header.
        for b in &mut bytes[4096..8192] {
            *b = 0xff;
        }
        std::fs::write(&path, bytes).unwrap();
        let e = Store::open(&path)
            .err()
            .expect("damaged file must not open");
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn foreign_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fwd.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE forwards (x INTEGER)")
            .unwrap();
        let e = Store::open(&path).err().expect("foreign schema");
        assert!(e.to_string().contains("unexpected schema"), "{e}");
    }

    #[test]
    fn locked_database_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fwd.db");
        drop(Store::open(&path).unwrap());
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let e = Store::open(&path).err().expect("locked must not open");
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("locked by another process"), "{e}");
        other.execute_batch("COMMIT").unwrap();
        assert!(Store::open(&path).is_ok());
    }

    #[test]
    fn service_validates_and_publishes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fwd.db");
        let table = empty_table();
        let svc = Forwarding::open(&path, catalog(), table.clone()).unwrap();
        let mut bad = fwd("+18005551234");
        bad.trunk = "nope".into();
        match svc.add(&bad, "t") {
            Err(StoreError::Invalid(e)) => assert_eq!(e[0].field, "trunk"),
            other => panic!("{other:?}"),
        }
        assert!(table.load().is_empty());
        svc.add(&fwd("+18005551234"), "t").unwrap();
        assert_eq!(
            table.load().get("+18005551234").map(|f| f.target.clone()),
            Some("+15557654321".into())
        );
        let mut off = fwd("+18005551234");
        off.enabled = false;
        svc.change(&off, "t").unwrap();
        assert!(table.load().is_empty(), "disabled forward leaves the index");
        svc.change(&fwd("+18005551234"), "t").unwrap();
        drop(svc);
        // Reopened: the index comes back from the file.
        let table2 = empty_table();
        let svc = Forwarding::open(&path, catalog(), table2.clone()).unwrap();
        assert!(table2.load().get("+18005551234").is_some());
        svc.remove("+18005551234", "t").unwrap();
        assert!(table2.load().is_empty());
    }
}
