//! Catalog 110 (and benchmark P7): the hot queries use indexes. `EXPLAIN QUERY PLAN` of the
//! claim, due-for-retry, due-for-poll, report-claim, new-URL and status queries shows no full
//! `SCAN` of `items`, `reports` or `url_queue` (a `SCAN ... USING COVERING INDEX` of an index
//! is allowed for the per-state counts, which must visit every row by nature).
//!
//! The SQL is copied from `src/db/` (this crate keeps its SQL private there); each copy is
//! checked to still appear verbatim in its source file, so the test fails if a query changes
//! without this test following it.

use jbxd::db::Db;

/// (which query, its source file, the SQL as written there).
const HOT: &[(&str, &str, &str)] = &[
    (
        "db/url_queue.rs fetch_new",
        include_str!("../../src/db/url_queue.rs"),
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
    ),
    (
        "db/items/outbox.rs claim_for_submit",
        include_str!("../../src/db/items/outbox.rs"),
        "UPDATE items SET state = 'submitting', next_attempt_at = ?, updated_at = ?
          WHERE id IN (SELECT id FROM items
                        WHERE state = 'queued' AND next_attempt_at <= ?
                        ORDER BY next_attempt_at, id LIMIT ?)",
    ),
    (
        "db/items/outbox.rs claim_for_submit (attempt count)",
        include_str!("../../src/db/items/outbox.rs"),
        "SELECT count(*) FROM submit_attempts WHERE item_id = ?",
    ),
    (
        "db/items.rs claim_for_poll / claim_for_reconcile (claim_due)",
        include_str!("../../src/db/items.rs"),
        "UPDATE items SET next_attempt_at = ?
          WHERE id IN (SELECT id FROM items
                        WHERE state = ? AND next_attempt_at <= ?
                        ORDER BY next_attempt_at, id LIMIT ?)",
    ),
    (
        "db/analyses.rs claim_reports",
        include_str!("../../src/db/analyses.rs"),
        "UPDATE reports SET state = 'downloading', attempts = attempts + 1
          WHERE id IN (SELECT id FROM reports
                        WHERE state = 'pending' AND next_attempt_at <= ?
                        ORDER BY next_attempt_at, id LIMIT ?)",
    ),
    (
        "db/items.rs counts_by_state",
        include_str!("../../src/db/items.rs"),
        "SELECT state, count(*) FROM items GROUP BY state",
    ),
    (
        "db/items/intake.rs earlier_samples (insert_files)",
        include_str!("../../src/db/items/intake.rs"),
        "SELECT j.value,
                (SELECT id FROM items
                  WHERE sha256 = j.value AND kind = 'file'
                    AND state NOT IN ('rejected', 'failed', 'duplicate')
                  ORDER BY id LIMIT 1)
           FROM json_each(?) AS j",
    ),
    (
        "db/items/intake.rs find_recorded_sources",
        include_str!("../../src/db/items/intake.rs"),
        "SELECT j.key, i.id
           FROM json_each(?) AS j
           JOIN items AS i ON i.source_dev = j.value ->> 0 AND i.source_ino = j.value ->> 1
          WHERE i.size = j.value ->> 2 AND i.source_mtime_ns = j.value ->> 3
            AND i.sha256 = j.value ->> 4
            AND ifnull(i.source_ctime_ns = j.value ->> 5, 1)",
    ),
];

/// Plan lines that read a whole hot table row by row.
fn full_scans(plan: &[String]) -> Vec<String> {
    plan.iter()
        .filter(|line| {
            ["items", "reports", "url_queue"].iter().any(|table| {
                let scan = format!("SCAN {table}");
                // `SCAN t` alone reads the table; `SCAN t USING [COVERING] INDEX i` an index.
                (line.as_str() == scan || line.starts_with(&format!("{scan} ")))
                    && !line.contains(" USING ")
            })
        })
        .cloned()
        .collect()
}

/// The SQL is this file's own constant text (no outside input): safe to prefix.
async fn plan_of(db: &Db, sql: &str) -> Vec<String> {
    let rows: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(db.pool())
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
    rows.into_iter().map(|(_, _, _, detail)| detail).collect()
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn case_110_hot_queries_use_indexes_not_full_scans() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("jbxd.db")).await.unwrap();
    // Plans are taken on a populated, analysed database (the planner's choice can depend on
    // statistics): 2,000 items and URL rows.
    let mut tx = db.pool().begin().await.unwrap();
    for i in 0..2000 {
        sqlx::query("INSERT INTO url_queue (url) VALUES (?)")
            .bind(format!("https://plan.example/{i}"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(db.pool()).await.unwrap();

    for (name, source, sql) in HOT {
        assert!(
            squash(source).contains(&squash(sql)),
            "{name}: the query in the source changed; update this test's copy"
        );
        let plan = plan_of(&db, sql).await;
        let scans = full_scans(&plan);
        assert!(scans.is_empty(), "{name} scans a whole table: {plan:#?}");
    }
}

#[test]
fn a_bare_scan_is_recognised_and_an_index_scan_is_not() {
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(full_scans(&lines(&["SCAN items"])).len(), 1);
    assert_eq!(full_scans(&lines(&["SCAN reports"])).len(), 1);
    assert!(full_scans(&lines(&["SCAN items USING COVERING INDEX items_due"])).is_empty());
    assert!(full_scans(&lines(&["SEARCH items USING INDEX items_due (state=?)"])).is_empty());
    assert!(full_scans(&lines(&["SCAN submit_attempts"])).is_empty());
}
