//! Queries only the pipeline needs: lease keep-alives, start-up rescheduling and notes.

use super::states::ItemState;
use super::{Db, DbError, now_text};

/// Pushes the due time of an item that is still in `state` (a claim's lease) to `until_ms`.
/// Returns whether the item was still in that state. A long upload calls this periodically so
/// that reconciliation never mistakes a submission in flight for an abandoned one.
pub async fn extend_lease(
    db: &Db,
    item_id: i64,
    state: ItemState,
    until_ms: i64,
) -> Result<bool, DbError> {
    let changed = sqlx::query("UPDATE items SET next_attempt_at = ? WHERE id = ? AND state = ?")
        .bind(until_ms)
        .bind(item_id)
        .bind(state)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(changed > 0)
}

/// Start-up: nothing is in flight, so every item left in `submitting` (by a crash or by an
/// unknown outcome) is due for reconciliation at `at_ms` at the latest, whatever lease it
/// carried. Returns how many items that concerns.
pub async fn reschedule_submitting(db: &Db, at_ms: i64) -> Result<u64, DbError> {
    Ok(sqlx::query(
        "UPDATE items SET next_attempt_at = min(next_attempt_at, ?) WHERE state = 'submitting'",
    )
    .bind(at_ms)
    .execute(db.pool())
    .await?
    .rows_affected())
}

/// Start-up: nothing is in flight, so a `submitted` item's due time may be a poll claim's lease
/// left by a crash (up to ten minutes); a lease cannot be told from a scheduled poll, so every
/// `submitted` item is due at `at_ms` at the latest (at most one early poll each, the worst
/// case of the crash-point table). Returns how many items that concerns.
pub async fn resume_polling(db: &Db, at_ms: i64) -> Result<u64, DbError> {
    Ok(sqlx::query(
        "UPDATE items SET next_attempt_at = min(next_attempt_at, ?)
          WHERE state = 'submitted' AND next_attempt_at > ?",
    )
    .bind(at_ms)
    .bind(at_ms)
    .execute(db.pool())
    .await?
    .rows_affected())
}

/// Start-up: an item whose last report was stored just before a crash stays `downloading`
/// (storing a report and completing its item are two commits), and no worker would look at it
/// again. Marks every `downloading` item with no pending or downloading report `done`, exactly
/// as [`super::items::complete_if_reports_done`] does for one. Returns how many.
pub async fn complete_settled_downloads(db: &Db) -> Result<u64, DbError> {
    Ok(sqlx::query(
        "UPDATE items SET state = 'done', finished_at = ?, updated_at = ?
          WHERE state = 'downloading'
            AND NOT EXISTS (SELECT 1 FROM reports r JOIN analyses a ON a.webid = r.webid
                             WHERE a.item_id = items.id AND r.state IN ('pending', 'downloading'))",
    )
    .bind(now_text())
    .bind(now_text())
    .execute(db.pool())
    .await?
    .rows_affected())
}

/// Sets an item's note (e.g. "reused analysis 123 from the server").
pub async fn set_note(db: &Db, item_id: i64, note: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE items SET note = ?, updated_at = ? WHERE id = ?")
        .bind(note)
        .bind(now_text())
        .bind(item_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The earliest `next_attempt_at` of the items in `state` (unix ms), so an idle worker can
/// sleep exactly until its next item is due instead of polling the table.
pub async fn next_due_item(db: &Db, state: ItemState) -> Result<Option<i64>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT min(next_attempt_at) FROM items WHERE state = ?")
            .bind(state)
            .fetch_one(db.pool())
            .await?,
    )
}

/// The earliest `next_attempt_at` of the pending reports (unix ms).
pub async fn next_due_report(db: &Db) -> Result<Option<i64>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT min(next_attempt_at) FROM reports WHERE state = 'pending'")
            .fetch_one(db.pool())
            .await?,
    )
}

/// Which of `ids` (server submission ids) jbxd has on record: on an attempt, an item or an
/// analysis. Reconciliation opens only the listed submissions it cannot account for.
pub async fn known_submission_ids(
    db: &Db,
    ids: &[String],
) -> Result<std::collections::HashSet<String>, DbError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let known: Vec<String> = sqlx::query_scalar(
        "SELECT value FROM json_each(?)
          WHERE value IN (SELECT submission_id FROM submit_attempts WHERE submission_id IS NOT NULL)
             OR value IN (SELECT submission_id FROM items WHERE submission_id IS NOT NULL)
             OR value IN (SELECT submission_id FROM analyses WHERE submission_id IS NOT NULL)",
    )
    .bind(list)
    .fetch_all(db.pool())
    .await?;
    Ok(known.into_iter().collect())
}
