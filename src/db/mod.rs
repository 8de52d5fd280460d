//! The SQLite database: the only module that holds SQL.
//!
//! SQLite is the source of truth of the daemon. The connection recipe: WAL (the CLI reads while
//! the daemon writes), `synchronous=FULL` (a lost "submitted, id = X" commit after power loss is
//! exactly what would cause a duplicate submission), `busy_timeout` 5 s, foreign keys on. Every
//! write that reads first starts with `BEGIN IMMEDIATE` ([`Db::begin_write`]) so it takes the
//! write lock up front instead of failing with `SQLITE_BUSY` on upgrade, and no transaction is
//! ever held across an HTTP call or file I/O. All statements are `&'static str` with bound
//! parameters: no SQL is built from text.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

pub mod analyses;
pub mod backup;
pub mod checks;
pub mod exports;
pub mod health;
pub mod imports;
pub mod indicators;
#[cfg(any(test, feature = "test-support"))]
pub mod invariants;
pub mod items;
pub mod pipeline;
pub mod states;
pub mod url_queue;

pub use analyses::{AnalysisRow, ReportRow};
pub use items::{Attempt, AttemptUpdate, Item, NewFile, SampleDedup, Submitted};
pub use states::{AttemptCost, AttemptOutcome, ItemKind, ItemState, ReportState};

/// The embedded migrations (`migrations/`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Database failures callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("cannot migrate the database {path}: {source}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error(
        "the database {path} has schema version {found}, newer than this jbxd supports \
         (up to {supported}); use a newer jbxd"
    )]
    SchemaNewer {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the database {path} has schema version {found}, older than this jbxd needs \
         ({supported}); start the daemon (`jbxd run`) once to migrate it"
    )]
    SchemaOlder {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("no database at {0}: start the daemon (`jbxd run`) first, or check `data_dir`")]
    Missing(PathBuf),
    /// The file at the database's path is no longer the one opened (RELIABILITY.md case 29):
    /// every write transaction refuses from then on, so nothing is recorded into a file that
    /// no longer has a name (and no drop-folder file is unlinked, no submission claimed, on
    /// the strength of such a record).
    #[error(
        "the database file {} is gone or was replaced while jbxd runs; nothing more is \
         written to it",
        path.display()
    )]
    Replaced { path: PathBuf },
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
    path: PathBuf,
    /// (device, inode) of the file when it was opened: a file deleted or replaced under a
    /// running daemon is noticed by [`Db::file_replaced`] (catalog 29).
    identity: Option<(u64, u64)>,
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn connect_options(path: &Path, create: bool) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
}

impl Db {
    /// Opens (creating it if needed) and migrates the database. Only the daemon calls this.
    ///
    /// The file is created by a connection of its own; the pool's connections never create
    /// one, and are kept for the life of the pool (no idle timeout, no maximum lifetime). A
    /// connection opened after the file was deleted would otherwise create an empty database
    /// in its place, and one opened after it was replaced would read the new file through the
    /// old file's WAL and shared memory (RELIABILITY.md case 29).
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        if !path.exists() {
            use sqlx::{ConnectOptions as _, Connection as _};
            let conn = connect_options(path, true).connect().await?;
            conn.close().await?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(connect_options(path, false))
            .await?;
        let db = Self {
            pool,
            path: path.to_owned(),
            identity: file_identity(path),
        };
        db.check_not_newer().await?;
        MIGRATOR
            .run(&db.pool)
            .await
            .map_err(|source| DbError::Migrate {
                path: path.to_owned(),
                source,
            })?;
        Ok(db)
    }

    /// Opens an existing database for the operator CLI: never creates or migrates it, and
    /// refuses a schema other than this binary's.
    pub async fn open_existing(path: &Path) -> Result<Self, DbError> {
        if !path.exists() {
            return Err(DbError::Missing(path.to_owned()));
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(connect_options(path, false))
            .await?;
        let db = Self {
            pool,
            path: path.to_owned(),
            identity: file_identity(path),
        };
        db.check_not_newer().await?;
        let found = db.schema_version().await?;
        let supported = supported_version();
        if found < supported {
            return Err(DbError::SchemaOlder {
                path: path.to_owned(),
                found,
                supported,
            });
        }
        Ok(db)
    }

    /// For tests: a fresh database in a file.
    pub async fn open_in(dir: &Path) -> Result<Self, DbError> {
        Self::open(&dir.join("jbxd.db")).await
    }

    async fn schema_version(&self) -> Result<i64, DbError> {
        let has_table: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&self.pool)
        .await?;
        if has_table == 0 {
            return Ok(0);
        }
        let version: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(version.unwrap_or(0))
    }

    async fn check_not_newer(&self) -> Result<(), DbError> {
        let found = self.schema_version().await?;
        let supported = supported_version();
        if found > supported {
            return Err(DbError::SchemaNewer {
                path: self.path.clone(),
                found,
                supported,
            });
        }
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file at [`Db::path`] is no longer the one opened: deleted, moved, or
    /// replaced (SQLite keeps using the old inode without complaint; a new pool connection
    /// would even create an empty file in its place).
    pub fn file_replaced(&self) -> bool {
        file_identity(&self.path) != self.identity
    }

    /// A write transaction that holds the write lock from its first statement.
    ///
    /// Refused with [`DbError::Replaced`] once the file at [`Db::path`] is not the one opened
    /// (RELIABILITY.md case 29). Every transaction the daemon acts on goes through here
    /// (intake's record before the unlink, the submission claim before the upload), so a
    /// `stat` per transaction makes "no unlink, no submission after the swap" hold for every
    /// transaction that starts after it. The check comes after `BEGIN IMMEDIATE`, so the
    /// connection's file is the one checked, whichever connection the pool handed out; a
    /// transaction already past it commits into the old file (the window: one transaction).
    pub async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, DbError> {
        let replaced = || DbError::Replaced {
            path: self.path.clone(),
        };
        let write = match self.pool.begin_with("BEGIN IMMEDIATE").await {
            Ok(write) => write,
            // A new connection finds no file (the pool never creates one): say why.
            Err(_) if self.file_replaced() => return Err(replaced()),
            Err(error) => return Err(error.into()),
        };
        if self.file_replaced() {
            write.rollback().await?;
            return Err(replaced());
        }
        Ok(write)
    }

    /// Health probe: how long taking (and releasing) the write lock takes.
    pub async fn write_probe(&self) -> Result<Duration, DbError> {
        let started = Instant::now();
        let tx = self.begin_write().await?;
        tx.rollback().await?;
        Ok(started.elapsed())
    }

    /// `PRAGMA integrity_check`: "ok" or the problems found.
    pub async fn integrity_check(&self) -> Result<String, DbError> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.join("; "))
    }

    /// Folds the WAL into the database file (clean shutdown, or a large WAL). Refused once the
    /// file was replaced: see [`Db::close`].
    pub async fn checkpoint(&self) -> Result<(), DbError> {
        if self.file_replaced() {
            return Err(DbError::Replaced {
                path: self.path.clone(),
            });
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Checkpoints and closes every connection.
    ///
    /// After the file was deleted or replaced, the checkpoint goes only through a connection
    /// that is already open (its descriptor is the old file): a new one would open whatever is
    /// at the path now together with the old file's WAL, and replay that WAL into it. The WAL
    /// is emptied into the old file, so nothing of it can reach the new one later.
    pub async fn close(&self) {
        if self.file_replaced() {
            if let Some(mut conn) = self.pool.try_acquire() {
                let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&mut *conn)
                    .await;
            }
        } else {
            let _ = self.checkpoint().await;
        }
        self.pool.close().await;
    }
}

fn supported_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Unix time in milliseconds: the unit of every scheduling column.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A timestamp in the format of the schema's TEXT time columns.
pub fn now_text() -> String {
    time_text(chrono::Utc::now())
}

/// `at` in the format of the schema's TEXT time columns.
pub fn time_text(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses a time column back (for ages shown to humans).
pub fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fresh_database_is_migrated_and_passes_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        assert_eq!(db.integrity_check().await.unwrap(), "ok");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        db.write_probe().await.unwrap();
        db.close().await;
        // Reopening an up-to-date database is fine for the CLI too.
        Db::open_existing(&dir.path().join("jbxd.db"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_database_from_a_newer_jbxd_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (99999999, 'from the future', 1, x'00', 0)",
        )
        .execute(db.pool())
        .await
        .unwrap();
        db.close().await;
        let path = dir.path().join("jbxd.db");
        let before = std::fs::read(&path).unwrap();
        let err = Db::open(&path).await.unwrap_err();
        assert!(
            matches!(
                err,
                DbError::SchemaNewer {
                    found: 99999999,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[tokio::test]
    async fn case_29_writes_are_refused_once_the_file_is_deleted_or_replaced_and_none_is_recreated()
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jbxd.db");
        let db = Db::open(&path).await.unwrap();
        db.begin_write().await.unwrap().rollback().await.unwrap();
        std::fs::remove_file(&path).unwrap();
        let refused = db.begin_write().await.map(|_| ()).unwrap_err();
        assert!(matches!(refused, DbError::Replaced { .. }), "{refused}");
        assert!(refused.to_string().contains(&path.display().to_string()));
        // Make the pool open every connection it may: none of them creates an empty file.
        let mut held = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(conn)) =
                tokio::time::timeout(Duration::from_secs(2), db.pool().acquire()).await
            {
                held.push(conn);
            }
        }
        assert!(!path.exists(), "a pool connection created a new file");
        drop(held);

        // Another database renamed into its place: refused the same way.
        let other = Db::open(&dir.path().join("other.db")).await.unwrap();
        other.close().await;
        std::fs::rename(dir.path().join("other.db"), &path).unwrap();
        assert!(db.file_replaced());
        let refused = db.begin_write().await.map(|_| ()).unwrap_err();
        assert!(matches!(refused, DbError::Replaced { .. }), "{refused}");
    }

    #[tokio::test]
    async fn the_cli_refuses_to_create_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let err = Db::open_existing(&dir.path().join("jbxd.db"))
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::Missing(_)));
        assert!(!dir.path().join("jbxd.db").exists());
    }
}
