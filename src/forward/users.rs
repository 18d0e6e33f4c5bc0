//! Local users of the admin console, in the forwarding database (`users` table): argon2id PHC strings, never
//! the password. `tollgate ctl user add NAME` works offline against the file; the console's sign-in
//! ([`super::runtime`], with sessions, CSRF and lockout from [`super::auth`]) verifies against this table.
use super::store::{Store, StoreError};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::time::Duration;

pub const MIN_PASSWORD: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("user `{0}` already exists")]
    Exists(String),
    #[error("user name `{0}`: 1 to 64 of A-Z a-z 0-9 . _ -")]
    BadName(String),
    #[error("password too short: at least {MIN_PASSWORD} characters")]
    ShortPassword,
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("no user `{0}`")]
    NotFound(String),
}

const USERS: &str = "CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY NOT NULL,
    phc TEXT NOT NULL,
    created INTEGER NOT NULL
);";

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Opens `db` strictly (as `run` does), then a connection for the users table.
fn open(db: &Path) -> Result<Connection, UserError> {
    drop(Store::open(db)?);
    let sql = |e: rusqlite::Error| UserError::Store(StoreError::Sql(e));
    let c = Connection::open(db).map_err(sql)?;
    c.busy_timeout(Duration::from_millis(1000)).map_err(sql)?;
    c.execute_batch(USERS).map_err(sql)?;
    Ok(c)
}

fn sql(e: rusqlite::Error) -> UserError {
    UserError::Store(StoreError::Sql(e))
}

/// An argon2id PHC string of `password` (random salt), after the length rule.
fn hash(password: &str) -> Result<String, UserError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(UserError::ShortPassword);
    }
    Ok(Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| UserError::Hash(e.to_string()))?
        .to_string())
}

/// Adds a user with an argon2id hash of `password` (random salt).
pub fn add_user(db: &Path, name: &str, password: &str) -> Result<(), UserError> {
    if !valid_name(name) {
        return Err(UserError::BadName(name.to_owned()));
    }
    let phc = hash(password)?;
    let c = open(db)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match c.execute(
        "INSERT INTO users (name, phc, created) VALUES (?1, ?2, ?3)",
        params![name, phc, now],
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            Err(UserError::Exists(name.to_owned()))
        }
        Err(e) => Err(UserError::Store(StoreError::Sql(e))),
    }
}

fn dummy() -> &'static PasswordHash {
    static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let phc = Argon2::default()
            .hash_password(b"no such user: timing decoy")
            .map(|h| h.to_string())
            .unwrap_or_default();
        PasswordHash::new(&phc).unwrap_or_else(|_| {
            PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
                .expect("static PHC string")
        })
    })
}

/// Gives user `name` a new password; the console sessions it had end at their next request.
pub fn set_password(db: &Path, name: &str, password: &str) -> Result<(), UserError> {
    let phc = hash(password)?;
    let c = open(db)?;
    match c
        .execute(
            "UPDATE users SET phc = ?2 WHERE name = ?1",
            params![name, phc],
        )
        .map_err(sql)?
    {
        0 => Err(UserError::NotFound(name.to_owned())),
        _ => Ok(()),
    }
}

/// Removes user `name`; the console sessions it had end at their next request.
pub fn remove_user(db: &Path, name: &str) -> Result<(), UserError> {
    let c = open(db)?;
    match c
        .execute("DELETE FROM users WHERE name = ?1", [name])
        .map_err(sql)?
    {
        0 => Err(UserError::NotFound(name.to_owned())),
        _ => Ok(()),
    }
}

/// Every user as (name, created at in seconds since the epoch), by name.
pub fn list_users(db: &Path) -> Result<Vec<(String, i64)>, UserError> {
    let c = open(db)?;
    let mut q = c
        .prepare("SELECT name, created FROM users ORDER BY name")
        .map_err(sql)?;
    let rows = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// The stored hash of `name` (`None`: no such user). A session remembers it from its sign-in, so a removed
/// user or a changed password ends the session. A plain connection: this runs on every console request.
pub fn stamp(db: &Path, name: &str) -> Result<Option<String>, UserError> {
    let c =
        Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
    c.busy_timeout(Duration::from_millis(1000)).map_err(sql)?;
    c.query_row("SELECT phc FROM users WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
    .map_err(sql)
}

/// True when `name` exists and `password` matches its hash.
pub fn verify_user(db: &Path, name: &str, password: &str) -> Result<bool, UserError> {
    Ok(verify(db, name, password)?.is_some())
}

/// The user's stored hash when `name` exists and `password` matches it.
pub fn verify(db: &Path, name: &str, password: &str) -> Result<Option<String>, UserError> {
    let c = open(db)?;
    let phc: Option<String> = c
        .query_row("SELECT phc FROM users WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql)?;
    let Some(phc) = phc else {
        // An unknown name costs the same hash as a known one, so timing does not tell which names exist.
        let _ = Argon2::default().verify_password(password.as_bytes(), dummy());
        return Ok(None);
    };
    let parsed = PasswordHash::new(&phc).map_err(|e| UserError::Hash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
        .then_some(phc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_verify_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("fwd.db");
        add_user(&db, "alice", "correct horse battery").unwrap();
        assert!(verify_user(&db, "alice", "correct horse battery").unwrap());
        assert!(!verify_user(&db, "alice", "correct horse batterz").unwrap());
        assert!(!verify_user(&db, "bob", "correct horse battery").unwrap());
        assert!(matches!(
            add_user(&db, "alice", "another password"),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            add_user(&db, "a b", "long enough pw"),
            Err(UserError::BadName(_))
        ));
        assert!(matches!(
            add_user(&db, "carol", "short"),
            Err(UserError::ShortPassword)
        ));
        let phc: String = Connection::open(&db)
            .unwrap()
            .query_row("SELECT phc FROM users WHERE name='alice'", [], |r| r.get(0))
            .unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        // The forwarding store still opens the file (the users table is extra, not foreign).
        Store::open(&db).unwrap();

        let before = stamp(&db, "alice").unwrap().unwrap();
        set_password(&db, "alice", "a brand new password").unwrap();
        assert_ne!(stamp(&db, "alice").unwrap().unwrap(), before);
        assert!(verify_user(&db, "alice", "a brand new password").unwrap());
        assert!(!verify_user(&db, "alice", "correct horse battery").unwrap());
        assert!(matches!(
            set_password(&db, "alice", "short"),
            Err(UserError::ShortPassword)
        ));
        add_user(&db, "bob", "bobs long password").unwrap();
        let names: Vec<String> = list_users(&db).unwrap().into_iter().map(|u| u.0).collect();
        assert_eq!(names, ["alice", "bob"]);
        remove_user(&db, "alice").unwrap();
        assert_eq!(stamp(&db, "alice").unwrap(), None);
        assert!(matches!(
            remove_user(&db, "alice"),
            Err(UserError::NotFound(_))
        ));
        assert!(matches!(
            set_password(&db, "alice", "whatever long enough"),
            Err(UserError::NotFound(_))
        ));
    }

    #[test]
    fn a_corrupt_db_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("fwd.db");
        std::fs::write(&db, vec![0x5a; 4096]).unwrap();
        assert!(matches!(
            add_user(&db, "alice", "correct horse battery"),
            Err(UserError::Store(StoreError::Corrupt { .. }))
        ));
    }
}
