//! Online backup of the database (catalog 32): `VACUUM INTO` a new file while the daemon runs.
//!
//! `VACUUM INTO` reads the whole database in one read transaction, so the copy is a consistent
//! snapshot even while the daemon writes (WAL readers never block the writer and are never
//! blocked by it), and the output is a compact standalone file in rollback-journal mode: one
//! file, nothing to copy alongside. SQLite does not fsync that output and leaves a partial file
//! after a crash, so the copy is written under a temporary name in the destination's
//! directory (created here first, empty, mode 0600, since the database holds names and URLs
//! of malware), fsynced, checked with `PRAGMA integrity_check` and only then renamed to the
//! destination without replacing anything, followed by a directory fsync.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::{Db, DbError};

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
    let temp = TempCopy::create(dest)?;
    let temp_str = temp
        .path
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
    File::open(&temp.path)
        .and_then(|f| f.sync_all())
        .map_err(io_error("cannot fsync", &temp.path))?;
    let (integrity, items, url_queue_rows) =
        inspect(&temp.path)
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
    temp.publish(dest)?;
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

/// The copy under its temporary name; removed on drop unless published.
struct TempCopy {
    path: PathBuf,
    published: bool,
}

impl TempCopy {
    /// An empty file next to `dest` (`VACUUM INTO` accepts an empty file and keeps its mode),
    /// created exclusively so it is never someone else's file.
    fn create(dest: &Path) -> Result<Self, BackupError> {
        let name = dest
            .file_name()
            .ok_or_else(|| BackupError::NotAFileName(dest.to_owned()))?
            .to_string_lossy();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dest.with_file_name(format!(
            ".{name}.jbxd-backup-{}-{nanos}.part",
            std::process::id()
        ));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(BACKUP_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_error("cannot create a temporary file next to", dest))?;
        Ok(Self {
            path,
            published: false,
        })
    }

    /// Renames the copy to `dest` unless `dest` appeared meanwhile, then fsyncs the directory.
    fn publish(mut self, dest: &Path) -> Result<(), BackupError> {
        rename_noreplace(&self.path, dest).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => BackupError::DestinationExists(dest.to_owned()),
            _ => io_error("cannot rename the backup to", dest)(e),
        })?;
        self.published = true;
        let dir = match dest.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("cannot fsync the directory", dir))
    }
}

impl Drop for TempCopy {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `renameat2(RENAME_NOREPLACE)`; where the file system lacks it, a hard link (which fails on
/// an existing name too) and an unlink of the old name.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths relative to the working directory.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if !matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(error);
    }
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
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

    #[test]
    fn the_rename_never_replaces_a_file_that_appeared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&from, b"new").unwrap();
        std::fs::write(&to, b"old").unwrap();
        let error = rename_noreplace(&from, &to).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"old");
        std::fs::remove_file(&to).unwrap();
        rename_noreplace(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
        assert!(!from.exists());
    }
}
