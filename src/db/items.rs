//! `items` and `submit_attempts`: the unit of work and its submission outbox.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{FromRow, Sqlite, Transaction};

use super::states::{AttemptCost, AttemptOutcome, ItemKind, ItemState};
use super::{Db, DbError, now_ms, now_text};

/// A row of `items`. Queries read it with `SELECT *` / `RETURNING *`: `FromRow` ignores the
/// columns it does not need (raw name, source identity), so a new column cannot break them.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Item {
    pub id: i64,
    pub kind: ItemKind,
    pub source: String,
    pub item_key: String,
    pub name: String,
    pub url: Option<String>,
    pub url_queue_id: Option<i64>,
    pub sha256: Option<String>,
    pub md5: Option<String>,
    pub sha1: Option<String>,
    pub size: Option<i64>,
    pub sample_path: Option<String>,
    pub params: Option<String>,
    pub force: bool,
    pub state: ItemState,
    pub error: Option<String>,
    pub note: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub submission_id: Option<String>,
    pub submitted_at: Option<String>,
    pub poll_count: i64,
    pub duplicate_of: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

impl Item {
    pub fn is_url(&self) -> bool {
        self.kind == ItemKind::Url
    }
}

/// A row of `submit_attempts`.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub item_id: i64,
    pub attempt_key: String,
    pub started_at: String,
    pub outcome: Option<AttemptOutcome>,
    pub submission_id: Option<String>,
    pub detail: Option<String>,
}

/// A dropped file, staged into quarantine and hashed, ready to be recorded.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub name: String,
    pub raw_name: Vec<u8>,
    pub sha256: String,
    pub md5: String,
    pub sha1: String,
    pub size: i64,
    pub sample_path: String,
    pub dev: i64,
    pub ino: i64,
    pub mtime_ns: i64,
    /// The source's ctime, part of its identity (RELIABILITY.md case 112).
    pub ctime_ns: i64,
    pub source: &'static str,
    pub params: Option<String>,
    pub force: bool,
}

/// A fresh random key identifying an item on the server (inside `comments`).
pub fn new_item_key() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// The earlier items new samples duplicate, by sha256 (one query for a batch): same sha256,
/// not themselves duplicates, and not given up on (a rejected or failed item does not stop a
/// new try).
async fn earlier_samples(
    tx: &mut Transaction<'static, Sqlite>,
    files: &[NewFile],
) -> Result<HashMap<String, i64>, DbError> {
    let mut hashes: Vec<&str> = files.iter().map(|f| f.sha256.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let json = serde_json::to_string(&hashes).expect("strings serialise");
    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT j.value,
                (SELECT id FROM items
                  WHERE sha256 = j.value AND kind = 'file'
                    AND state NOT IN ('rejected', 'failed', 'duplicate')
                  ORDER BY id LIMIT 1)
           FROM json_each(?) AS j",
    )
    .bind(json)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(sha256, id)| Some((sha256, id?)))
        .collect())
}

/// Whether new samples are matched against earlier ones (`dedup.samples`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleDedup {
    /// A sample with the sha256 of an earlier item (not given up on) is its `duplicate`,
    /// unless forced.
    BySha256,
    /// Every sample is an item of its own.
    Off,
}

impl SampleDedup {
    /// The setting of `dedup.samples`.
    pub fn configured(samples: bool) -> Self {
        if samples { Self::BySha256 } else { Self::Off }
    }
}

/// Records staged files in one transaction (group commit): each becomes `queued`, or
/// `duplicate` of an earlier item with the same sha256 ([`SampleDedup::BySha256`]) when the
/// file is not forced — an item recorded before, or an earlier file of the same batch. Returns the new ids
/// and states in input order (ids ascend in input order).
///
/// One statement for the whole batch (intake records 100 files at a time; a statement per file
/// was a third of the recording time, BENCHMARKS.md P3). The ids are assigned here, which is
/// safe because the write transaction holds the database's write lock from its start: a file
/// can then name an earlier file of its own batch as the item it duplicates.
pub async fn insert_files(
    db: &Db,
    files: &[NewFile],
    dedup: SampleDedup,
) -> Result<Vec<(i64, ItemState)>, DbError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let dedup = dedup == SampleDedup::BySha256;
    let mut tx = db.begin_write().await?;
    let earlier = if dedup {
        earlier_samples(&mut tx, files).await?
    } else {
        HashMap::new()
    };
    let last: i64 = sqlx::query_scalar("SELECT ifnull(max(id), 0) FROM items")
        .fetch_one(&mut *tx)
        .await?;
    let finished = now_text();
    let mut first_in_batch: HashMap<&str, i64> = HashMap::new();
    let mut out = Vec::with_capacity(files.len());
    let mut rows = Vec::with_capacity(files.len());
    for (f, id) in files.iter().zip(last + 1..) {
        let duplicate_of = if dedup && !f.force {
            let sha256 = f.sha256.as_str();
            earlier
                .get(sha256)
                .or_else(|| first_in_batch.get(sha256))
                .copied()
        } else {
            None
        };
        let state = match duplicate_of {
            Some(_) => ItemState::Duplicate,
            None => {
                first_in_batch.entry(f.sha256.as_str()).or_insert(id);
                ItemState::Queued
            }
        };
        rows.push(serde_json::json!({
            "id": id,
            "source": f.source,
            "item_key": new_item_key(),
            "name": f.name,
            "raw_name": hex::encode(&f.raw_name),
            "sha256": f.sha256,
            "md5": f.md5,
            "sha1": f.sha1,
            "size": f.size,
            "sample_path": f.sample_path,
            "dev": f.dev,
            "ino": f.ino,
            "mtime_ns": f.mtime_ns,
            "ctime_ns": f.ctime_ns,
            "params": f.params,
            "force": i64::from(f.force),
            "state": state.as_str(),
            "duplicate_of": duplicate_of,
            "finished_at": duplicate_of.map(|_| &finished),
        }));
        out.push((id, state));
    }
    let json = serde_json::Value::Array(rows).to_string();
    sqlx::query(
        "INSERT INTO items (id, kind, source, item_key, name, raw_name, sha256, md5, sha1, size,
                            sample_path, source_dev, source_ino, source_mtime_ns,
                            source_ctime_ns, params, force, state, duplicate_of, finished_at)
         SELECT r ->> 'id', 'file', r ->> 'source', r ->> 'item_key', r ->> 'name',
                unhex(r ->> 'raw_name'), r ->> 'sha256', r ->> 'md5', r ->> 'sha1',
                r ->> 'size', r ->> 'sample_path', r ->> 'dev', r ->> 'ino', r ->> 'mtime_ns',
                r ->> 'ctime_ns', r ->> 'params', r ->> 'force', r ->> 'state', r ->> 'duplicate_of',
                r ->> 'finished_at'
           FROM (SELECT value AS r FROM json_each(?))",
    )
    .bind(json)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// Records a dropped entry that was refused (empty, too large, not a regular file, ...).
pub async fn insert_rejected_file(
    db: &Db,
    name: &str,
    raw_name: &[u8],
    size: Option<i64>,
    reason: &str,
) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO items (kind, source, item_key, name, raw_name, size, state, error,
                            finished_at)
         VALUES ('file', 'drop', ?, ?, ?, ?, 'rejected', ?, ?)
         RETURNING id",
    )
    .bind(new_item_key())
    .bind(name)
    .bind(raw_name)
    .bind(size)
    .bind(reason)
    .bind(now_text())
    .fetch_one(db.pool())
    .await?)
}

/// Where a dropped file came from: `(dev, ino, size, mtime_ns, ctime_ns)` of the source as
/// `fstat` saw it when it was taken.
pub type SourceIdentity = (i64, i64, i64, i64, i64);

/// A drop-folder file just copied into quarantine: its source identity and the sha256 of the
/// copy.
pub type StagedSource<'a> = (SourceIdentity, &'a str);

/// Which of these freshly staged files are already recorded (one query for a whole batch):
/// after a crash between recording a file and removing it from the drop folder, the rescan
/// finds its item here. File systems recycle inode numbers, and `cp -p`, `rsync -a` and
/// `tar x` preserve mtimes, so a different file can carry an earlier item's
/// `(dev, ino, size, mtime)`; it must become its own item, never be removed as "already
/// recorded" (RELIABILITY.md case 112). So an item matches only with the file's content
/// (sha256) too, and with its ctime, which copy tools cannot set: a new file on a recycled
/// inode has a new one, even with the same content, while a source left behind by a crash
/// keeps the ctime it was taken with (items recorded before `source_ctime_ns` existed have
/// NULL there and match without it). Maps the index of each file found to its newest item.
pub async fn find_recorded_sources(
    db: &Db,
    files: &[StagedSource<'_>],
) -> Result<HashMap<usize, i64>, DbError> {
    if files.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<serde_json::Value> = files
        .iter()
        .map(|((dev, ino, size, mtime_ns, ctime_ns), sha256)| {
            serde_json::json!([dev, ino, size, mtime_ns, sha256, ctime_ns])
        })
        .collect();
    let json = serde_json::Value::Array(rows).to_string();
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT j.key, i.id
           FROM json_each(?) AS j
           JOIN items AS i ON i.source_dev = j.value ->> 0 AND i.source_ino = j.value ->> 1
          WHERE i.size = j.value ->> 2 AND i.source_mtime_ns = j.value ->> 3
            AND i.sha256 = j.value ->> 4
            AND ifnull(i.source_ctime_ns = j.value ->> 5, 1)",
    )
    .bind(json)
    .fetch_all(db.pool())
    .await?;
    let mut found = HashMap::new();
    for (index, id) in rows {
        let Ok(index) = usize::try_from(index) else {
            continue;
        };
        let newest = found.entry(index).or_insert(id);
        *newest = (*newest).max(id);
    }
    Ok(found)
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Item>, DbError> {
    Ok(
        sqlx::query_as::<_, Item>("SELECT * FROM items WHERE id = ?")
            .bind(id)
            .fetch_optional(db.pool())
            .await?,
    )
}

/// Claims up to `limit` queued items that are due: each gets a new attempt key, committed in
/// the outbox (`submit_attempts`) together with the move to `submitting` *before* any request
/// is sent. `lease_ms` bounds how long a claim may stay unreconciled if the process dies.
pub async fn claim_for_submit(
    db: &Db,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<(Item, String)>, DbError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let items: Vec<Item> = sqlx::query_as::<_, Item>(
        "UPDATE items SET state = 'submitting', next_attempt_at = ?, updated_at = ?
          WHERE id IN (SELECT id FROM items
                        WHERE state = 'queued' AND next_attempt_at <= ?
                        ORDER BY next_attempt_at, id LIMIT ?)
         RETURNING *",
    )
    .bind(now + lease_ms)
    .bind(now_text())
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let used: i64 =
            sqlx::query_scalar("SELECT count(*) FROM submit_attempts WHERE item_id = ?")
                .bind(item.id)
                .fetch_one(&mut *tx)
                .await?;
        let key = format!("{}-{}", item.item_key, used + 1);
        sqlx::query("INSERT INTO submit_attempts (item_id, attempt_key) VALUES (?, ?)")
            .bind(item.id)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        out.push((item, key));
    }
    tx.commit().await?;
    Ok(out)
}

/// What to record on an attempt row: its outcome, the submission id when one is known (else
/// the recorded one is kept) and what happened (replacing any earlier detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptUpdate<'a> {
    pub outcome: AttemptOutcome,
    pub submission_id: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl<'a> AttemptUpdate<'a> {
    /// The outcome with what happened.
    pub fn new(outcome: AttemptOutcome, detail: &'a str) -> Self {
        Self {
            outcome,
            submission_id: None,
            detail: Some(detail),
        }
    }

    /// A chunked upload's submission, recorded before the first chunk goes out.
    pub fn chunked_pending(submission_id: &'a str) -> Self {
        Self {
            outcome: AttemptOutcome::ChunkedPending,
            submission_id: Some(submission_id),
            detail: None,
        }
    }
}

/// Records what became of an attempt (e.g. `chunked_pending` with the submission id, before
/// the chunks are sent).
pub async fn set_attempt_outcome(
    db: &Db,
    attempt_key: &str,
    update: AttemptUpdate<'_>,
) -> Result<(), DbError> {
    let AttemptUpdate {
        outcome,
        submission_id,
        detail,
    } = update;
    sqlx::query(
        "UPDATE submit_attempts
            SET outcome = ?, submission_id = coalesce(?, submission_id), detail = ?
          WHERE attempt_key = ?",
    )
    .bind(outcome)
    .bind(submission_id)
    .bind(detail)
    .bind(attempt_key)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// How an item became `submitted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted<'a> {
    /// The attempt the server accepted (recorded `accepted` with the submission id); `None`
    /// when nothing was sent (an analysis reused from the server).
    pub accepted_attempt: Option<&'a str>,
    /// The submission the poller follows; `None` when only its analyses are known.
    pub submission_id: Option<&'a str>,
    /// When the first poll is due (unix ms).
    pub first_poll_at: i64,
    /// How it came about, for the item's note (`None` keeps the note).
    pub note: Option<&'a str>,
}

/// The submission was accepted: `submitted`, polled from `first_poll_at`.
pub async fn mark_submitted(db: &Db, item_id: i64, how: Submitted<'_>) -> Result<(), DbError> {
    let Submitted {
        accepted_attempt,
        submission_id,
        first_poll_at,
        note,
    } = how;
    let mut tx = db.begin_write().await?;
    if let Some(key) = accepted_attempt {
        sqlx::query(
            "UPDATE submit_attempts SET outcome = 'accepted', submission_id = ? WHERE attempt_key = ?",
        )
        .bind(submission_id)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE items SET state = 'submitted', submission_id = ?, submitted_at = ?,
                          next_attempt_at = ?, error = NULL, note = coalesce(?, note),
                          updated_at = ?
          WHERE id = ?",
    )
    .bind(submission_id)
    .bind(now_text())
    .bind(first_poll_at)
    .bind(note)
    .bind(now_text())
    .bind(item_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The outcome of the attempt is unknown: the item stays `submitting` and is reconciled (looked
/// up by its attempt keys) from `reconcile_at` on.
pub async fn mark_unknown_outcome(
    db: &Db,
    item_id: i64,
    attempt_key: &str,
    detail: &str,
    reconcile_at: i64,
) -> Result<(), DbError> {
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE submit_attempts SET outcome = 'unknown', detail = ? WHERE attempt_key = ?")
        .bind(detail)
        .bind(attempt_key)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE items SET next_attempt_at = ?, error = ?, updated_at = ? WHERE id = ?")
        .bind(reconcile_at)
        .bind(detail)
        .bind(now_text())
        .bind(item_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Back to `queued` for a later try from `next_attempt_at`, with why. Global pauses
/// (maintenance, invalid key, quota) and an unreachable server cost no attempt
/// ([`AttemptCost::Free`]).
pub async fn requeue(
    db: &Db,
    item_id: i64,
    error: &str,
    next_attempt_at: i64,
    cost: AttemptCost,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE items SET state = 'queued', error = ?, next_attempt_at = ?,
                          attempts = attempts + ?, updated_at = ?
          WHERE id = ?",
    )
    .bind(error)
    .bind(next_attempt_at)
    .bind(cost.counted())
    .bind(now_text())
    .bind(item_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Terminal: bad input, never retried.
pub async fn reject(db: &Db, item_id: i64, reason: &str) -> Result<(), DbError> {
    finish(db, item_id, ItemState::Rejected, reason).await
}

/// Terminal: gave up, with the last error.
pub async fn fail(db: &Db, item_id: i64, reason: &str) -> Result<(), DbError> {
    finish(db, item_id, ItemState::Failed, reason).await
}

async fn finish(db: &Db, item_id: i64, state: ItemState, error: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE items SET state = ?, error = ?, finished_at = ?, updated_at = ? WHERE id = ?",
    )
    .bind(state)
    .bind(error)
    .bind(now_text())
    .bind(now_text())
    .bind(item_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Every attempt of an item, oldest first (all keys to look up when reconciling).
pub async fn attempts_of(db: &Db, item_id: i64) -> Result<Vec<Attempt>, DbError> {
    Ok(sqlx::query_as::<_, Attempt>(
        "SELECT id, item_id, attempt_key, started_at, outcome, submission_id, detail
           FROM submit_attempts WHERE item_id = ? ORDER BY id",
    )
    .bind(item_id)
    .fetch_all(db.pool())
    .await?)
}

/// Items left in `submitting` whose reconcile time has come (all of them after a restart,
/// once their lease ran out), claimed by pushing their time forward by `lease_ms`.
pub async fn claim_for_reconcile(db: &Db, limit: i64, lease_ms: i64) -> Result<Vec<Item>, DbError> {
    claim_due(db, ItemState::Submitting, limit, lease_ms).await
}

/// Submitted items due for a poll, claimed by pushing their time forward by `lease_ms` (a
/// crash only delays the next poll).
pub async fn claim_for_poll(db: &Db, limit: i64, lease_ms: i64) -> Result<Vec<Item>, DbError> {
    claim_due(db, ItemState::Submitted, limit, lease_ms).await
}

async fn claim_due(
    db: &Db,
    state: ItemState,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<Item>, DbError> {
    let now = now_ms();
    Ok(sqlx::query_as::<_, Item>(
        "UPDATE items SET next_attempt_at = ?
          WHERE id IN (SELECT id FROM items
                        WHERE state = ? AND next_attempt_at <= ?
                        ORDER BY next_attempt_at, id LIMIT ?)
         RETURNING *",
    )
    .bind(now + lease_ms)
    .bind(state)
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// The next poll of a still-running submission.
pub async fn schedule_poll(db: &Db, item_id: i64, next_at: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE items SET next_attempt_at = ?, poll_count = poll_count + 1, updated_at = ?
          WHERE id = ? AND state = 'submitted'",
    )
    .bind(next_at)
    .bind(now_text())
    .bind(item_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The submission finished: records its analyses, queues one report row per analysis and
/// type, and moves the item to `downloading` — or straight to `done` when the submission
/// spawned no analysis (a recorded outcome, not an error). One transaction.
pub async fn record_finished(
    db: &Db,
    item_id: i64,
    analyses: &[super::AnalysisRow],
    report_types: &[String],
) -> Result<ItemState, DbError> {
    let mut tx = db.begin_write().await?;
    for analysis in analyses {
        super::analyses::upsert(&mut tx, item_id, analysis).await?;
        for report_type in report_types {
            sqlx::query("INSERT OR IGNORE INTO reports (webid, type, run) VALUES (?, ?, NULL)")
                .bind(&analysis.webid)
                .bind(report_type)
                .execute(&mut *tx)
                .await?;
        }
    }
    let (state, note) = if analyses.is_empty() || report_types.is_empty() {
        (
            ItemState::Done,
            analyses
                .is_empty()
                .then_some("the submission finished without any analysis"),
        )
    } else {
        (ItemState::Downloading, None)
    };
    sqlx::query(
        "UPDATE items SET state = ?, note = coalesce(?, note), error = NULL,
                          finished_at = CASE WHEN ? = 'done' THEN ? ELSE finished_at END,
                          updated_at = ?
          WHERE id = ?",
    )
    .bind(state)
    .bind(note)
    .bind(state)
    .bind(now_text())
    .bind(now_text())
    .bind(item_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(state)
}

/// Marks the item `done` once none of its reports is pending or downloading. Returns whether
/// it did.
pub async fn complete_if_reports_done(db: &Db, item_id: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE items SET state = 'done', finished_at = ?, updated_at = ?
          WHERE id = ? AND state = 'downloading'
            AND NOT EXISTS (SELECT 1 FROM reports r JOIN analyses a ON a.webid = r.webid
                             WHERE a.item_id = ? AND r.state IN ('pending', 'downloading'))",
    )
    .bind(now_text())
    .bind(now_text())
    .bind(item_id)
    .bind(item_id)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(done > 0)
}

/// Operator retry: a `failed` (or `rejected`) item goes back to `queued` with fresh attempts.
/// Returns false when the item is not in a retryable state.
pub async fn retry(db: &Db, item_id: i64) -> Result<bool, DbError> {
    // One transaction: a crash between the two updates would leave the item retried with its
    // failed reports not (catalog 24).
    let mut tx = db.begin_write().await?;
    let changed = sqlx::query(
        "UPDATE items SET state = CASE WHEN submission_id IS NULL THEN 'queued' ELSE 'submitted' END,
                          attempts = 0, error = NULL, next_attempt_at = 0,
                          finished_at = NULL, updated_at = ?
          WHERE id = ? AND state = 'failed' AND (kind = 'url' OR sample_path IS NOT NULL)",
    )
    .bind(now_text())
    .bind(item_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed > 0 {
        // Reports that failed get another chance too.
        sqlx::query(
            "UPDATE reports SET state = 'pending', attempts = 0, next_attempt_at = 0, error = NULL
              WHERE state = 'failed' AND webid IN (SELECT webid FROM analyses WHERE item_id = ?)",
        )
        .bind(item_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(changed > 0)
}

/// Item counts per state, every state listed.
pub async fn counts_by_state(db: &Db) -> Result<Vec<(ItemState, i64)>, DbError> {
    let rows: Vec<(ItemState, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM items GROUP BY state")
            .fetch_all(db.pool())
            .await?;
    Ok(ItemState::ALL
        .iter()
        .map(|s| (*s, rows.iter().find(|(r, _)| r == s).map_or(0, |(_, n)| *n)))
        .collect())
}

/// The oldest item not yet in a terminal state.
pub async fn oldest_pending(db: &Db) -> Result<Option<Item>, DbError> {
    Ok(sqlx::query_as::<_, Item>(
        "SELECT * FROM items
          WHERE state IN ('queued', 'submitting', 'submitted', 'downloading')
          ORDER BY id LIMIT 1",
    )
    .fetch_optional(db.pool())
    .await?)
}

/// The most recent items that carry an error.
pub async fn recent_errors(db: &Db, limit: i64) -> Result<Vec<Item>, DbError> {
    Ok(sqlx::query_as::<_, Item>(
        "SELECT * FROM items WHERE error IS NOT NULL
          ORDER BY updated_at DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Every item, newest first (for listings and tests).
pub async fn list(db: &Db, limit: i64) -> Result<Vec<Item>, DbError> {
    Ok(
        sqlx::query_as::<_, Item>("SELECT * FROM items ORDER BY id DESC LIMIT ?")
            .bind(limit)
            .fetch_all(db.pool())
            .await?,
    )
}
