//! The database check: the file still the one at its path (RELIABILITY.md case 29), a write
//! probe within [`DB_PROBE_TIMEOUT`], and the WAL below its limit (case 31), with one chance
//! to shrink a WAL grown behind a reader that has since gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{HealthReport, Status};
use crate::app::App;
use crate::db;

/// How long the database write probe may take before the database counts as unwritable.
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Above this size the WAL counts as grown (case 31). SQLite checkpoints every ~4 MiB of
/// WAL, so a WAL this large means checkpoints have been held off for a long time.
pub(super) const WAL_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

/// The database: still the file at its path, writable, and its WAL below `wal_limit` bytes.
pub(super) async fn check_db(app: &App, report: &mut HealthReport, wal_limit: u64) {
    // SQLite keeps writing to a deleted file's inode without complaint: look at the path
    // (catalog 29), or the probe below would say all is well while nothing is kept.
    let db = app.db.clone();
    if tokio::task::spawn_blocking(move || db.file_replaced())
        .await
        .unwrap_or(true)
    {
        report.push(
            "database",
            Status::Failed,
            format!(
                "the database file {} is gone or was replaced while jbxd runs; stop jbxd \
                 and restore it",
                app.db.path().display()
            ),
        );
        return;
    }
    let (status, mut detail) =
        match tokio::time::timeout(DB_PROBE_TIMEOUT, app.db.write_probe()).await {
            Ok(Ok(took)) => (
                if took > Duration::from_secs(1) {
                    Status::Degraded
                } else {
                    Status::Ok
                },
                format!("writable (write lock in {} ms)", took.as_millis()),
            ),
            Ok(Err(e)) => (Status::Failed, format!("not writable: {e}")),
            Err(_) => (
                Status::Failed,
                format!(
                    "write lock not obtained within {} s",
                    DB_PROBE_TIMEOUT.as_secs()
                ),
            ),
        };
    if status == Status::Failed {
        report.push("database", status, detail);
        return;
    }
    let wal = wal_path(app.db.path());
    match wal_size(app, &wal, wal_limit).await {
        Ok(bytes) if bytes > wal_limit => {
            detail = format!(
                "{detail}; the WAL {} is {} MiB, over {} MiB: a long-lived reader (e.g. an \
                 open sqlite3 shell or a backup) keeps the WAL from being checkpointed; end \
                 it and the WAL is truncated at the next check",
                wal.display(),
                mib(bytes),
                mib(wal_limit)
            );
            report.push("database", Status::Degraded, detail);
        }
        Ok(bytes) => report.push(
            "database",
            status,
            format!("{detail}; WAL {} MiB", mib(bytes)),
        ),
        Err(e) => report.push(
            "database",
            status,
            format!("{detail}; cannot stat the WAL {}: {e}", wal.display()),
        ),
    }
}

fn mib(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

/// `<db>-wal`, SQLite's name for the WAL of the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The WAL's size in bytes (0 when there is none). A WAL over `limit` gets one chance to
/// shrink first: a passive checkpoint (never waits, never blocks writers) and, if that folded
/// every frame, i.e. the reader that held it back is gone, a truncation that gives up at once
/// if anyone is busy. SQLite reuses a WAL but never shrinks it, so without this a WAL grown
/// behind a reader that has since gone would be reported until the daemon restarts.
async fn wal_size(app: &App, wal: &Path, limit: u64) -> std::io::Result<u64> {
    let bytes = file_size(wal).await?;
    if bytes <= limit {
        return Ok(bytes);
    }
    match db::health::wal_checkpoint_passive(&app.db).await {
        Ok(checkpoint) if checkpoint.complete() => {
            if let Err(error) = db::health::wal_truncate_if_idle(&app.db).await {
                tracing::debug!(%error, "cannot truncate the WAL");
            }
        }
        Ok(checkpoint) => tracing::debug!(?checkpoint, "the WAL cannot be checkpointed yet"),
        Err(error) => tracing::debug!(%error, "cannot checkpoint the WAL"),
    }
    file_size(wal).await
}

async fn file_size(path: &Path) -> std::io::Result<u64> {
    match tokio::fs::metadata(path).await {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::health::Check;

    use sqlx::{ConnectOptions as _, Connection as _};

    use crate::simulator::SimConfig;
    use crate::testing::TestEnv;

    async fn database_check(app: &App, wal_limit: u64) -> Check {
        let mut report = HealthReport::default();
        check_db(app, &mut report, wal_limit).await;
        report.get("database").unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn case_31_a_wal_grown_behind_a_long_reader_is_degraded_and_named_until_the_reader_ends()
    {
        const LIMIT: u64 = 256 * 1024;
        let env = TestEnv::start(SimConfig::default(), |_| {}).await;
        let app = &env.app;
        let wal = wal_path(app.db.path());
        let check = database_check(app, LIMIT).await;
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(check.detail.contains("WAL"), "{check:?}");

        // An operator's sqlite3 shell in the middle of a read transaction.
        let mut reader = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(app.db.path())
            .connect()
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM health")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        let filler = "x".repeat(8 * 1024);
        for i in 0..100 {
            db::health::set_state(&app.db, &format!("filler{}", i % 10), &filler)
                .await
                .unwrap();
        }
        assert!(std::fs::metadata(&wal).unwrap().len() > LIMIT);
        let check = database_check(app, LIMIT).await;
        assert_eq!(check.status, Status::Degraded, "{check:?}");
        assert!(
            check.detail.contains(&wal.display().to_string())
                && check.detail.contains("long-lived reader")
                && check.detail.contains("MiB"),
            "{check:?}"
        );

        // The reader ends: the next check folds the WAL in and truncates it.
        sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
        reader.close().await.unwrap();
        let check = database_check(app, LIMIT).await;
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(std::fs::metadata(&wal).unwrap().len() <= LIMIT);
    }
}
