//! `url_queue`: the producers' table. Producers insert rows with `status = 'new'`; jbxd turns
//! each into an item (or rejects it) and a trigger keeps the row's status, error and
//! submission id in step with the item.

use sqlx::FromRow;

use super::items::new_item_key;
use super::states::ItemState;
use super::{Db, DbError, now_text};

/// A new row as the producer left it. `url` is whatever was inserted: `None` when it was not
/// text (NULL, a number, a BLOB), `Some(Err(bytes))` when it was not valid UTF-8, and
/// `TooLong` when it was larger than the bound and so not read. `params` is `None` when absent
/// or not read; `params_problem` says why it was not read.
#[derive(Debug, Clone)]
pub struct NewUrl {
    pub id: i64,
    pub url: Result<String, UrlValueError>,
    pub params: Option<String>,
    pub params_problem: Option<ParamsProblem>,
}

/// Why a `url` value cannot be read as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlValueError {
    /// The SQLite type of the value (`null`, `integer`, `real`, `blob`).
    NotText(String),
    NotUtf8,
    /// Longer than [`ReadBounds::url_bytes`] (its size in bytes): left unread.
    TooLong {
        size: u64,
    },
}

/// Why a `params` value was not passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamsProblem {
    /// Larger than [`ReadBounds::params_bytes`] (its size in bytes): left unread.
    TooLarge {
        size: u64,
    },
    NotUtf8,
}

/// How much [`fetch_new`] may read: rows, bytes per value and bytes per batch. A producer can
/// put any amount into a row (100 rows of 8 MB once took the daemon to 2 GB resident); the
/// sizes are taken in SQL from the record headers (`octet_length` does not load a value), so
/// an oversize value is never read, and the batch ends before its rows' bytes exceed
/// `batch_bytes` (RELIABILITY.md case 117).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadBounds {
    pub rows: i64,
    pub url_bytes: u64,
    pub params_bytes: u64,
    /// Bytes of the rows in a batch (`url` and `params`, read or not); the first row always
    /// comes, whatever its size.
    pub batch_bytes: u64,
}

#[derive(FromRow)]
struct RawRow {
    id: i64,
    url_type: String,
    url_len: Option<i64>,
    url_bytes: Option<Vec<u8>>,
    params_len: Option<i64>,
    params_bytes: Option<Vec<u8>>,
    head_rows: i64,
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

/// Up to `bounds.rows` rows still `new`, oldest first, and no more of them than fit in
/// `bounds.batch_bytes` (the first row always comes). A value larger than its bound is not
/// read: the row comes back with [`UrlValueError::TooLong`] or [`ParamsProblem::TooLarge`] and
/// its size, for intake to reject. Read-only: decisions are applied with [`apply`], which
/// re-checks that each row is still `new`.
///
/// The budget counts every row's full size, read or not: applying a decision rewrites the
/// whole row (SQLite updates records whole), so an oversize row costs its size in the
/// transaction that rejects it, and a batch of them must stay small too.
///
/// One statement: `head` takes the ids, types and sizes only (no value is loaded), `sized`
/// decides what may be read, `budget` adds up the sizes, and the final join reads the values
/// that may be read, for the rows within the budget (a prefix of `head`: nothing is skipped).
pub async fn fetch_new(db: &Db, bounds: &ReadBounds) -> Result<NewBatch, DbError> {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    // The plan is pinned (`INDEXED BY` the partial index of new rows, `CROSS JOIN` to keep the
    // batch outside and look each row up by id): on a queue where every row is new, the
    // planner may otherwise prefer a full scan (RELIABILITY.md case 110).
    let rows: Vec<RawRow> = sqlx::query_as(
        "WITH head AS (
              SELECT id, typeof(url) AS url_type, octet_length(url) AS url_len,
                     octet_length(params) AS params_len
                FROM url_queue INDEXED BY url_queue_new WHERE status = 'new' ORDER BY id LIMIT ?1),
              sized AS (
              SELECT id, url_type, url_len, params_len,
                     url_type = 'text' AND url_len <= ?2 AS read_url,
                     ifnull(params_len <= ?3, 0) AS read_params,
                     sum(ifnull(url_len, 0) + ifnull(params_len, 0)) OVER (ORDER BY id) AS running,
                     count(*) OVER () AS head_rows
                FROM head)
         SELECT b.id, b.url_type, b.url_len, b.params_len, b.head_rows,
                iif(b.read_url, CAST(q.url AS BLOB), NULL) AS url_bytes,
                iif(b.read_params, CAST(q.params AS BLOB), NULL) AS params_bytes
           FROM sized AS b CROSS JOIN url_queue AS q ON q.id = b.id
          WHERE b.running <= ?4 OR b.id = (SELECT min(id) FROM head)
          ORDER BY b.id",
    )
    .bind(bounds.rows)
    .bind(clamp(bounds.url_bytes))
    .bind(clamp(bounds.params_bytes))
    .bind(clamp(bounds.batch_bytes))
    .fetch_all(db.pool())
    .await?;
    let head_rows = rows.first().map_or(0, |r| r.head_rows);
    let more = head_rows >= bounds.rows || (rows.len() as i64) < head_rows;
    Ok(NewBatch {
        rows: rows.into_iter().map(|r| decode(r, bounds)).collect(),
        more,
    })
}

/// What [`fetch_new`] read.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub rows: Vec<NewUrl>,
    /// The batch was ended by its row count or its byte budget: more rows may be waiting.
    pub more: bool,
}

fn decode(r: RawRow, bounds: &ReadBounds) -> NewUrl {
    let size = |len: Option<i64>| len.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let url = match (r.url_type.as_str(), r.url_bytes) {
        ("text", Some(bytes)) => String::from_utf8(bytes).map_err(|_| UrlValueError::NotUtf8),
        ("text", None) => Err(UrlValueError::TooLong {
            size: size(r.url_len),
        }),
        _ => Err(UrlValueError::NotText(r.url_type)),
    };
    let (params, params_problem) = match (r.params_len, r.params_bytes) {
        (None, _) => (None, None),
        (Some(_), Some(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => (Some(text), None),
            Err(_) => (None, Some(ParamsProblem::NotUtf8)),
        },
        (Some(len), None) => {
            debug_assert!(size(Some(len)) > bounds.params_bytes);
            (
                None,
                Some(ParamsProblem::TooLarge {
                    size: size(Some(len)),
                }),
            )
        }
    };
    NewUrl {
        id: r.id,
        url,
        params,
        params_problem,
    }
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

    const BOUNDS: ReadBounds = ReadBounds {
        rows: 10,
        url_bytes: 100,
        params_bytes: 50,
        batch_bytes: 1000,
    };

    #[tokio::test]
    async fn values_over_their_bound_are_not_read_and_the_batch_stops_at_its_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        let long_url = format!("https://example.com/{}", "a".repeat(200));
        let long_params = format!(r#"{{"comments": "{}"}}"#, "b".repeat(100));
        let a = insert(&db, "https://example.com/a", Some("{}"))
            .await
            .unwrap();
        let b = insert(&db, &long_url, None).await.unwrap();
        let c = insert(&db, "https://example.com/c", Some(&long_params))
            .await
            .unwrap();
        sqlx::query("INSERT INTO url_queue (url, params) VALUES ('https://example.com/d', x'ff')")
            .execute(db.pool())
            .await
            .unwrap();
        let rows = fetch_new(&db, &BOUNDS).await.unwrap().rows;
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].id, a);
        assert_eq!(rows[0].url.as_deref(), Ok("https://example.com/a"));
        assert_eq!(rows[0].params.as_deref(), Some("{}"));
        assert_eq!(rows[1].id, b);
        assert_eq!(
            rows[1].url,
            Err(UrlValueError::TooLong {
                size: long_url.len() as u64
            })
        );
        assert_eq!(rows[2].id, c);
        assert_eq!(rows[2].url.as_deref(), Ok("https://example.com/c"));
        assert_eq!(rows[2].params, None);
        assert_eq!(
            rows[2].params_problem,
            Some(ParamsProblem::TooLarge {
                size: long_params.len() as u64
            })
        );
        assert_eq!(rows[3].params_problem, Some(ParamsProblem::NotUtf8));
    }

    #[tokio::test]
    async fn a_batch_ends_before_its_byte_budget_and_is_a_prefix_of_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            // 90 bytes each.
            let url = format!("https://example.com/{i}{}", "a".repeat(69));
            assert_eq!(url.len(), 90);
            ids.push(insert(&db, &url, None).await.unwrap());
        }
        // An oversize row is not read, but counts: rejecting it rewrites it.
        let long = insert(
            &db,
            &format!("https://example.com/{}", "z".repeat(500)),
            None,
        )
        .await
        .unwrap();
        let bounds = ReadBounds {
            rows: 100,
            url_bytes: 100,
            params_bytes: 0,
            batch_bytes: 200,
        };
        let read = |batch: NewBatch| {
            let ids: Vec<i64> = batch.rows.iter().map(|r| r.id).collect();
            (ids, batch.more)
        };
        assert_eq!(
            read(fetch_new(&db, &bounds).await.unwrap()),
            (ids[..2].to_vec(), true)
        );
        let done = |upto: i64| {
            sqlx::query("UPDATE url_queue SET status = 'rejected' WHERE id <= ?")
                .bind(upto)
                .execute(db.pool())
        };
        done(ids[3]).await.unwrap();
        assert_eq!(
            read(fetch_new(&db, &bounds).await.unwrap()),
            (vec![ids[4]], true)
        );
        done(ids[4]).await.unwrap();
        // Larger than the budget on its own: it comes alone, so the queue never sticks.
        let batch = fetch_new(&db, &bounds).await.unwrap();
        assert!(matches!(
            batch.rows[0].url,
            Err(UrlValueError::TooLong { size: 520 })
        ));
        assert_eq!(read(batch), (vec![long], false));
    }

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
        let rows = fetch_new(&db, &BOUNDS).await.unwrap().rows;
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
