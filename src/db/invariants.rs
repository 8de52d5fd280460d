//! Read-only queries for the invariant check of the crash tests (`testing::check_invariants`).

use super::{Db, DbError};

/// Every `url_queue` row: (id, status, item id).
pub async fn url_queue_rows(db: &Db) -> Result<Vec<(i64, String, Option<i64>)>, DbError> {
    Ok(
        sqlx::query_as("SELECT id, status, item_id FROM url_queue ORDER BY id")
            .fetch_all(db.pool())
            .await?,
    )
}

/// Report rows that are not settled (`pending` or `downloading`): (webid, type, state).
pub async fn unsettled_reports(db: &Db) -> Result<Vec<(String, String, String)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT webid, type, state FROM reports WHERE state IN ('pending', 'downloading')",
    )
    .fetch_all(db.pool())
    .await?)
}
