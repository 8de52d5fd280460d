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
