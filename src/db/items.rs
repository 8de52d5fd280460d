//! `items` and `submit_attempts`: the unit of work and its submission outbox.
//!
//! This file holds the item row and its state machine after submission (requeue, terminal
//! states, the claims of reconcile and poll, finished analyses, `jbxd retry`) and the reads
//! of `jbxd status`/`list`; [`intake`] holds intake's inserts, [`outbox`] the submission
//! outbox (`submit_attempts`: claim for submit, attempt outcomes, `submitted`, unknown
//! outcome). Callers keep using `db::items::*`: the submodules are re-exported.

mod intake;
mod outbox;

pub use intake::{
    NewFile, SampleDedup, SourceIdentity, StagedSource, find_recorded_sources, insert_files,
    insert_rejected_file,
};
pub use outbox::{
    Attempt, AttemptUpdate, Submitted, attempts_of, claim_for_submit, mark_submitted,
    mark_unknown_outcome, set_attempt_outcome,
};

use serde::Serialize;
use sqlx::FromRow;

use super::states::{AttemptCost, ItemKind, ItemState};
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

/// A fresh random key identifying an item on the server (inside `comments`).
pub fn new_item_key() -> String {
    format!("{:032x}", fastrand::u128(..))
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Item>, DbError> {
    Ok(
        sqlx::query_as::<_, Item>("SELECT * FROM items WHERE id = ?")
            .bind(id)
            .fetch_optional(db.pool())
            .await?,
    )
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
