//! `health` (latest result per check) and `daemon_state` (the global pause and other flags).

use serde::Serialize;
use sqlx::FromRow;

use super::{Db, DbError, now_text};

#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct HealthRow {
    pub name: String,
    pub status: String,
    pub detail: Option<String>,
    pub checked_at: String,
}

/// Stores the latest result of one check (`status`: ok, degraded or failed).
pub async fn record(db: &Db, name: &str, status: &str, detail: &str) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO health (name, status, detail, checked_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET status = excluded.status, detail = excluded.detail,
                                          checked_at = excluded.checked_at",
    )
    .bind(name)
    .bind(status)
    .bind(detail)
    .bind(now_text())
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn all(db: &Db) -> Result<Vec<HealthRow>, DbError> {
    Ok(sqlx::query_as::<_, HealthRow>(
        "SELECT name, status, detail, checked_at FROM health ORDER BY name",
    )
    .fetch_all(db.pool())
    .await?)
}

/// Sets a daemon-wide value (e.g. `pause`).
pub async fn set_state(db: &Db, key: &str, value: &str) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO daemon_state (key, value, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(key)
    .bind(value)
    .bind(now_text())
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn get_state(db: &Db, key: &str) -> Result<Option<String>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT value FROM daemon_state WHERE key = ?")
            .bind(key)
            .fetch_optional(db.pool())
            .await?
            .flatten(),
    )
}

pub async fn clear_state(db: &Db, key: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM daemon_state WHERE key = ?")
        .bind(key)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The result of `PRAGMA wal_checkpoint`: whether it was blocked, the frames in the WAL and
/// how many of them are now in the database file (-1 each when not in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCheckpoint {
    pub busy: bool,
    pub log_frames: i64,
    pub checkpointed_frames: i64,
}

impl WalCheckpoint {
    /// Whether every frame of the WAL is in the database file: no reader still needs it, and
    /// the file may be truncated.
    pub fn complete(&self) -> bool {
        !self.busy && self.log_frames == self.checkpointed_frames
    }
}

/// A passive checkpoint (catalog 31): copies what no reader still needs, waits for nobody,
/// takes no lock that blocks writers. It cannot shrink the file.
pub async fn wal_checkpoint_passive(db: &Db) -> Result<WalCheckpoint, DbError> {
    let (busy, log_frames, checkpointed_frames): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(db.pool())
            .await?;
    Ok(WalCheckpoint {
        busy: busy != 0,
        log_frames,
        checkpointed_frames,
    })
}

/// Truncates the WAL to zero bytes if nothing stands in the way right now: a
/// `wal_checkpoint(TRUNCATE)` on a connection of its own with no busy timeout, so a reader or
/// writer makes it give up at once instead of holding the write lock while it waits (which the
/// pool's 5 s timeout would). Returns whether the WAL was truncated. Only worth calling after
/// [`wal_checkpoint_passive`] found the WAL fully checkpointed: SQLite reuses a WAL from its
/// start but never shrinks it, so a WAL grown behind a long reader stays large on disk after
/// the reader is gone.
pub async fn wal_truncate_if_idle(db: &Db) -> Result<bool, DbError> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db.path())
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::ZERO)
        .connect()
        .await?;
    let result: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut conn)
            .await;
    let _ = conn.close().await;
    Ok(result?.0 == 0)
}

/// A stored file and what its record says it must be (relative path, size, sha256).
#[derive(Debug, Clone, FromRow, Serialize, serde::Deserialize, PartialEq, Eq, Hash)]
pub struct StoredFile {
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

// One random stored file per query: a random rowid from 0..=max(id), then the first stored
// file at or after it. Both are index seeks on the integer primary key (`max(id)` reads the
// last b-tree entry), so the cost does not grow with the table, unlike `ORDER BY random()`,
// which reads and scores every row. Rows after a gap in the ids are picked more often; for a
// spot check that bias does not matter. `None` past the last stored file: the caller wraps.
// `+state` keeps SQLite off the `reports_due (state, …)` index, which would make it read every
// stored report and sort them (EXPLAIN QUERY PLAN on 100k reports); with it, both plans are
// `SEARCH … USING INTEGER PRIMARY KEY (rowid>?)`.
const PICK_SAMPLE_FROM: &str = "SELECT sample_path AS path, size, sha256 FROM items
      WHERE id >= (SELECT abs(random()) % (max(id) + 1) FROM items)
        AND sample_path IS NOT NULL AND size IS NOT NULL AND sha256 IS NOT NULL
      ORDER BY id LIMIT 1";
const FIRST_SAMPLE: &str = "SELECT sample_path AS path, size, sha256 FROM items
      WHERE sample_path IS NOT NULL AND size IS NOT NULL AND sha256 IS NOT NULL
      ORDER BY id LIMIT 1";
const PICK_REPORT_FROM: &str = "SELECT path, size, sha256 FROM reports
      WHERE id >= (SELECT abs(random()) % (max(id) + 1) FROM reports)
        AND +state = 'stored' AND path IS NOT NULL AND size IS NOT NULL AND sha256 IS NOT NULL
      ORDER BY id LIMIT 1";
const FIRST_REPORT: &str = "SELECT path, size, sha256 FROM reports
      WHERE +state = 'stored' AND path IS NOT NULL AND size IS NOT NULL AND sha256 IS NOT NULL
      ORDER BY id LIMIT 1";

/// Up to `per_kind` random stored samples and as many random stored reports, without
/// duplicates (catalog 34's spot check). A table with one stored file always yields it.
pub async fn pick_stored_files(db: &Db, per_kind: usize) -> Result<Vec<StoredFile>, DbError> {
    let mut picked: Vec<StoredFile> = Vec::new();
    for (pick, first) in [
        (PICK_SAMPLE_FROM, FIRST_SAMPLE),
        (PICK_REPORT_FROM, FIRST_REPORT),
    ] {
        for _ in 0..per_kind {
            let row = match sqlx::query_as::<_, StoredFile>(pick)
                .fetch_optional(db.pool())
                .await?
            {
                Some(row) => Some(row),
                None => {
                    sqlx::query_as::<_, StoredFile>(first)
                        .fetch_optional(db.pool())
                        .await?
                }
            };
            match row {
                Some(row) if !picked.contains(&row) => picked.push(row),
                Some(_) => {}
                None => break,
            }
        }
    }
    Ok(picked)
}

// ---- facts the daemon leaves for `jbxd status` (RELIABILITY.md case 118) ------------------

/// `daemon_state` key of the `Retry-After` hold-off in force.
pub const HOLD_OFF_KEY: &str = "hold_off";
/// `daemon_state` key of the last health run the daemon finished and when the next is due.
pub const HEALTH_RUN_KEY: &str = "health_run";

/// A `Retry-After` hold-off as the daemon records it: no API request before `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HoldOffRecord {
    /// The end of the hold-off (the schema's TEXT time format).
    pub until: String,
    /// The HTTP status of the reply that asked for it (429 or 503).
    pub status: u16,
    /// When the daemon recorded it.
    pub recorded_at: String,
}

/// One finished health run: when, and when the schedule has the next one. A separate process
/// judges the `health` rows stale from it: when the daemon cannot write (disk full, read-only
/// `data_dir`) this record stops moving too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HealthRun {
    pub started_at: String,
    pub finished_at: String,
    /// `None` when the schedule has no next time.
    pub next_at: Option<String>,
}

/// Stores (or replaces) a JSON fact under `key`.
pub async fn set_fact<T: Serialize>(db: &Db, key: &str, fact: &T) -> Result<(), DbError> {
    let json =
        serde_json::to_string(fact).map_err(|e| DbError::Sqlx(sqlx::Error::Encode(e.into())))?;
    set_state(db, key, &json).await
}

/// The JSON fact under `key`; `None` when absent or not readable by this build.
pub async fn get_fact<T: serde::de::DeserializeOwned>(
    db: &Db,
    key: &str,
) -> Result<Option<T>, DbError> {
    Ok(get_state(db, key)
        .await?
        .and_then(|json| serde_json::from_str(&json).ok()))
}
