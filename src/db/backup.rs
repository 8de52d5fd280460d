//! Online backup of the database (catalog 32): `VACUUM INTO` a new file while the daemon runs.
//!
//! `VACUUM INTO` reads the whole database in one read transaction, so the copy is a consistent
//! snapshot even while the daemon writes (WAL readers never block the writer and are never
//! blocked by it), and the output is a compact standalone file in rollback-journal mode: one
//! file, nothing to copy alongside. SQLite does not fsync that output and leaves a partial file
//! after a crash, so the copy is written into a `storage::ReservedFile` (an empty temporary next
//! to the destination, mode 0600, since the database holds names and URLs of malware), checked
//! with `PRAGMA integrity_check` and only then published: fsync, a rename that replaces nothing,
//! a directory fsync.

use std::io;
use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::{Db, DbError};
use crate::storage::{PublishError, ReservedFile};

/// The mode of the backup file: readable by the daemon's user only.
pub const BACKUP_MODE: u32 = 0o600;

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupSummary {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub items: i64,
    pub url_queue_rows: i64,
    /// `PRAGMA integrity_check` of the copy: always "ok" (anything else is an error).
    pub integrity: String,
}

/// Why a backup was not written; callers branch on `DestinationExists`.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists: choose a new backup file name")]
    DestinationExists(PathBuf),
    #[error("the backup path {0} does not end in a file name")]
    NotAFileName(PathBuf),
    #[error("the backup path {0} is not valid UTF-8, which SQLite needs")]
    NotUtf8(PathBuf),
    // The cause is the source, printed after this by `{:#}` (the CLI's error line).
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Publishing the checked copy failed (fsync, rename, directory fsync).
    #[error(transparent)]
    Publish(PublishError),
    #[error("cannot copy the database into {path}")]
    Copy {
        path: PathBuf,
        #[source]
        source: DbError,
    },
    #[error("the copy {path} failed its integrity check ({problems}); nothing was written")]
    Damaged { path: PathBuf, problems: String },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError + use<> {
    let path = path.to_owned();
    move |source| BackupError::Io {
        action,
        path,
        source,
    }
}

/// Writes a consistent copy of `db` to `dest`, which must not exist, and checks it.
pub async fn backup_to(db: &Db, dest: &Path) -> Result<BackupSummary, BackupError> {
    if dest.symlink_metadata().is_ok() {
        return Err(BackupError::DestinationExists(dest.to_owned()));
    }
    if dest.file_name().is_none() {
        return Err(BackupError::NotAFileName(dest.to_owned()));
    }
    let temp = ReservedFile::create(dest, BACKUP_MODE)
        .map_err(io_error("cannot create a temporary file next to", dest))?;
    let temp_str = temp
        .path()
        .to_str()
        .ok_or_else(|| BackupError::NotUtf8(dest.to_owned()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(temp_str)
        .execute(db.pool())
        .await
        .map_err(|e| BackupError::Copy {
            path: dest.to_owned(),
            source: e.into(),
        })?;
    let (integrity, items, url_queue_rows) =
        inspect(temp.path())
            .await
            .map_err(|source| BackupError::Copy {
                path: dest.to_owned(),
                source,
            })?;
    if integrity != "ok" {
        return Err(BackupError::Damaged {
            path: dest.to_owned(),
            problems: integrity,
        });
    }
    temp.publish_new().map_err(|e| match e {
        PublishError::Exists(path) => BackupError::DestinationExists(path),
        other => BackupError::Publish(other),
    })?;
    let size_bytes = std::fs::metadata(dest)
        .map_err(io_error("cannot stat", dest))?
        .len();
    Ok(BackupSummary {
        path: dest.to_owned(),
        size_bytes,
        items,
        url_queue_rows,
        integrity,
    })
}

/// Opens a backup read-only, without changing its journal mode: `PRAGMA integrity_check`
/// (joined with "; "), and the number of items and `url_queue` rows.
pub async fn inspect(path: &Path) -> Result<(String, i64, i64), DbError> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await?;
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await?;
    let items: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut conn)
        .await?;
    let url_queue_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM url_queue")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok((problems.join("; "), items, url_queue_rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn a_backup_is_a_checked_standalone_file_with_mode_0600_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        crate::db::url_queue::insert(&db, "https://example.com/", None)
            .await
            .unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let dest = out.join("backup.db");
        let summary = backup_to(&db, &dest).await.unwrap();
        assert_eq!(summary.integrity, "ok");
        assert_eq!(summary.url_queue_rows, 1);
        assert_eq!(summary.size_bytes, std::fs::metadata(&dest).unwrap().len());
        let meta = std::fs::metadata(&dest).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, BACKUP_MODE);
        // Bytes 18 and 19 of the header are 1 in rollback-journal mode, 2 in WAL mode.
        let header = std::fs::read(&dest).unwrap();
        assert_eq!(&header[18..20], &[1, 1]);
        let names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("backup.db")]);
    }

    #[tokio::test]
    async fn an_existing_destination_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        let dest = dir.path().join("taken");
        std::fs::write(&dest, b"mine").unwrap();
        let error = backup_to(&db, &dest).await.unwrap_err();
        assert!(
            matches!(error, BackupError::DestinationExists(_)),
            "{error}"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"mine");
    }
}
