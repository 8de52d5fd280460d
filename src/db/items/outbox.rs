//! The submission outbox, `submit_attempts`: an attempt key committed with the claim before
//! any request is sent, what became of each attempt, and the item's move to `submitted` or
//! to an unknown outcome that reconcile resolves by those keys.

use serde::Serialize;
use sqlx::FromRow;

use super::Item;
use crate::db::states::AttemptOutcome;
use crate::db::{Db, DbError, now_ms, now_text};

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
