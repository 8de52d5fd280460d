//! `url_queue`: the producers' table. Producers insert rows with `status = 'new'`; jbxd turns
//! each into an item (or rejects it) and a trigger keeps the row's status, error and
//! submission id in step with the item.

use sqlx::FromRow;

use super::items::{ItemState, new_item_key};
use super::{Db, DbError, now_text};

/// A new row as the producer left it. `url` is whatever was inserted: `None` when it was not
/// text (NULL, a number, a BLOB), `Some(Err(bytes))` when it was not valid UTF-8.
#[derive(Debug, Clone)]
pub struct NewUrl {
    pub id: i64,
    pub url: Result<String, UrlValueError>,
    pub params: Option<String>,
}

/// Why a `url` value cannot be read as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlValueError {
    /// The SQLite type of the value (`null`, `integer`, `real`, `blob`).
    NotText(String),
    NotUtf8,
}

#[derive(FromRow)]
struct RawRow {
    id: i64,
    url_type: String,
    url_bytes: Option<Vec<u8>>,
    params: Option<String>,
}

/// Inserts a URL as a producer would (`jbxd queue add`).
pub async fn insert(db: &Db, url: &str, params: Option<&str>) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar("INSERT INTO url_queue (url, params) VALUES (?, ?) RETURNING id")
            .bind(url)
            .bind(params)
            .fetch_one(db.pool())
            .await?,
    )
}

/// Up to `limit` rows still `new`, oldest first. Read-only: decisions are applied with
/// [`apply`], which re-checks that each row is still `new`.
pub async fn fetch_new(db: &Db, limit: i64) -> Result<Vec<NewUrl>, DbError> {
    let rows: Vec<RawRow> = sqlx::query_as(
        "SELECT id, typeof(url) AS url_type, CAST(url AS BLOB) AS url_bytes, params
           FROM url_queue WHERE status = 'new' ORDER BY id LIMIT ?",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| NewUrl {
            id: r.id,
            url: if r.url_type == "text" {
                String::from_utf8(r.url_bytes.unwrap_or_default())
                    .map_err(|_| UrlValueError::NotUtf8)
            } else {
                Err(UrlValueError::NotText(r.url_type))
            },
            params: r.params,
        })
        .collect())
}

/// What intake decided for one `new` row.
#[derive(Debug, Clone)]
pub enum UrlDecision {
    /// Submit this normalised URL with these parameters (JSON), unless a recent item for the
    /// same URL exists (then it becomes a duplicate).
    Accept {
        url: String,
        params: Option<String>,
        force: bool,
    },
    Reject {
        reason: String,
    },
}

/// The result of applying a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Queued(i64),
    Duplicate {
        item: i64,
        of: i64,
    },
    Rejected,
    /// The row was no longer `new` (the producer changed it, or another pass took it).
    Skipped,
}

/// Applies intake's decisions in one transaction. A URL with an item created within
/// `dedup_window_secs` (0 = no dedup) becomes a duplicate of it.
pub async fn apply(
    db: &Db,
    decisions: &[(i64, UrlDecision)],
    dedup_window_secs: i64,
) -> Result<Vec<Applied>, DbError> {
    let mut tx = db.begin_write().await?;
    let mut out = Vec::with_capacity(decisions.len());
    let window_start = (chrono::Utc::now() - chrono::Duration::seconds(dedup_window_secs))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    for (queue_id, decision) in decisions {
        let still_new: Option<i64> =
            sqlx::query_scalar("SELECT id FROM url_queue WHERE id = ? AND status = 'new'")
                .bind(queue_id)
                .fetch_optional(&mut *tx)
                .await?;
        if still_new.is_none() {
            out.push(Applied::Skipped);
            continue;
        }
        match decision {
            UrlDecision::Reject { reason } => {
                sqlx::query(
                    "UPDATE url_queue SET status = 'rejected', error = ?, updated_at = ?
                      WHERE id = ?",
                )
                .bind(reason)
                .bind(now_text())
                .bind(queue_id)
                .execute(&mut *tx)
                .await?;
                out.push(Applied::Rejected);
            }
            UrlDecision::Accept { url, params, force } => {
                let earlier: Option<i64> = if dedup_window_secs > 0 && !force {
                    sqlx::query_scalar(
                        "SELECT id FROM items
                          WHERE url = ? AND kind = 'url' AND created_at >= ?
                            AND state NOT IN ('rejected', 'failed', 'duplicate')
                          ORDER BY id LIMIT 1",
                    )
                    .bind(url)
                    .bind(&window_start)
                    .fetch_optional(&mut *tx)
                    .await?
                } else {
                    None
                };
                let state = if earlier.is_some() {
                    ItemState::Duplicate
                } else {
                    ItemState::Queued
                };
                let finished = earlier.map(|_| now_text());
                let item: i64 = sqlx::query_scalar(
                    "INSERT INTO items (kind, source, item_key, name, url, url_queue_id, params,
                                        force, state, duplicate_of, finished_at)
                     VALUES ('url', 'url_queue', ?, ?, ?, ?, ?, ?, ?, ?, ?)
                     RETURNING id",
                )
                .bind(new_item_key())
                .bind(url)
                .bind(url)
                .bind(queue_id)
                .bind(params)
                .bind(force)
                .bind(state)
                .bind(earlier)
                .bind(finished)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE url_queue SET status = ?, item_id = ?, updated_at = ? WHERE id = ?",
                )
                .bind(state)
                .bind(item)
                .bind(now_text())
                .bind(queue_id)
                .execute(&mut *tx)
                .await?;
                out.push(match earlier {
                    Some(of) => Applied::Duplicate { item, of },
                    None => Applied::Queued(item),
                });
            }
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// Counts of `url_queue` rows per status.
pub async fn counts_by_status(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    Ok(
        sqlx::query_as("SELECT status, count(*) FROM url_queue GROUP BY status ORDER BY status")
            .fetch_all(db.pool())
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wrong_sqlite_types_in_the_url_column_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        for sql in [
            "INSERT INTO url_queue (url) VALUES (NULL)",
            "INSERT INTO url_queue (url) VALUES (42)",
            "INSERT INTO url_queue (url) VALUES (x'fffe')",
            "INSERT INTO url_queue (url) VALUES (CAST(x'fffe' AS TEXT))",
            "INSERT INTO url_queue (url) VALUES ('https://example.com/')",
        ] {
            sqlx::query(sql).execute(db.pool()).await.unwrap();
        }
        let rows = fetch_new(&db, 10).await.unwrap();
        let urls: Vec<_> = rows.iter().map(|r| r.url.clone()).collect();
        assert_eq!(
            urls,
            vec![
                Err(UrlValueError::NotText("null".into())),
                Err(UrlValueError::NotText("integer".into())),
                Err(UrlValueError::NotText("blob".into())),
                Err(UrlValueError::NotUtf8),
                Ok("https://example.com/".into()),
            ]
        );
    }

    #[tokio::test]
    async fn a_url_seen_within_the_window_becomes_a_duplicate_and_the_row_follows_its_item() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        let a = insert(&db, "https://example.com/", None).await.unwrap();
        let b = insert(&db, "https://example.com/", None).await.unwrap();
        let accept = || UrlDecision::Accept {
            url: "https://example.com/".into(),
            params: None,
            force: false,
        };
        let applied = apply(&db, &[(a, accept()), (b, accept())], 3600)
            .await
            .unwrap();
        let Applied::Queued(first) = applied[0] else {
            panic!("{applied:?}")
        };
        assert_eq!(
            applied[1],
            Applied::Duplicate {
                item: first + 1,
                of: first
            }
        );
        // Applying again does nothing: the rows are no longer new.
        assert_eq!(
            apply(&db, &[(a, accept())], 3600).await.unwrap(),
            vec![Applied::Skipped]
        );
        crate::db::items::reject(&db, first, "bad").await.unwrap();
        let (status, error): (String, Option<String>) =
            sqlx::query_as("SELECT status, error FROM url_queue WHERE id = ?")
                .bind(a)
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(
            (status.as_str(), error.as_deref()),
            ("rejected", Some("bad"))
        );
    }
}
