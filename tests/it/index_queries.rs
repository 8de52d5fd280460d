//! Benchmark P10's query plan: the value lookup of `jbxd iocs --value` and `jbxd reports --ioc`
//! searches `iocs` through `iocs_value` (never a scan of `iocs`), and the index worker's due
//! query uses the partial index of pending reports. The SQL is copied from
//! `src/db/indicators.rs` and checked to still appear there verbatim (as in `query_plans`).

use jbxd::db::Db;

const SOURCE: &str = include_str!("../../src/db/indicators.rs");

const BY_VALUE: &str = "FROM ioc_sightings AS s
  WHERE s.value IN (SELECT j.value ->> 1 FROM json_each(?1) AS j)
    AND EXISTS (SELECT 1 FROM json_each(?1) AS p
                 WHERE p.value ->> 0 = s.kind AND p.value ->> 1 = s.value)
    AND (?2 IS NULL OR s.kind = ?2)
    AND (?3 = 0 OR s.malicious = 1)
    AND (?4 IS NULL OR s.webid = ?4)
    AND (?5 IS NULL OR s.recorded_at >= ?5)
  ORDER BY s.recorded_at DESC, s.webid DESC, s.kind, s.value
  LIMIT ?6";

const ANALYSES_THAT_SAW: &str = "FROM analyses
          WHERE webid IN (SELECT i.webid FROM iocs i
                           WHERE i.value IN (SELECT j.value ->> 1 FROM json_each(?1) AS j)
                             AND EXISTS (SELECT 1 FROM json_each(?1) AS p
                                          WHERE p.value ->> 0 = i.kind AND p.value ->> 1 = i.value))
          ORDER BY recorded_at DESC, webid DESC
          LIMIT ?2";

const DUE: &str = "SELECT DISTINCT r.webid FROM reports r INDEXED BY reports_index_pending
          WHERE r.index_state = 'pending' AND r.state = 'stored' AND r.path IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM reports o
                             WHERE o.webid = r.webid AND o.state IN ('pending', 'downloading'))
          ORDER BY r.webid LIMIT ?";

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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

/// Plan lines that read all of `iocs` (under any alias the view or query gives it).
fn scans_of_iocs(plan: &[String]) -> Vec<String> {
    plan.iter()
        .filter(|l| {
            ["SCAN iocs", "SCAN i", "SCAN s"]
                .iter()
                .any(|scan| l.as_str() == *scan || l.starts_with(&format!("{scan} ")))
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn p10_the_value_lookup_searches_iocs_through_its_value_index() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("jbxd.db")).await.unwrap();
    // A populated, analysed database: 200 analyses with 100 indicators each.
    sqlx::query(
        "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 199)
         INSERT INTO analyses (webid, detection) SELECT CAST(x AS TEXT), 'malicious' FROM n",
    )
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 19999)
         INSERT INTO iocs (webid, kind, value, report_type, section)
         SELECT CAST(x % 200 AS TEXT), 'domain', 'host' || x || '.example', 'jsonfixed', 't'
           FROM n",
    )
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(db.pool()).await.unwrap();

    for (name, sql) in [
        ("sightings by value", BY_VALUE),
        ("analyses that saw", ANALYSES_THAT_SAW),
    ] {
        assert!(
            squash(SOURCE).contains(&squash(sql)),
            "{name}: the copy here no longer matches src/db/indicators.rs"
        );
        let plan = plan_of(&db, &format!("SELECT 1 {sql}")).await;
        assert!(
            plan.iter().any(|l| l.contains("USING INDEX iocs_value")
                || l.contains("USING COVERING INDEX iocs_value")),
            "{name} does not use iocs_value: {plan:#?}"
        );
        assert!(
            scans_of_iocs(&plan).is_empty(),
            "{name} scans iocs: {plan:#?}"
        );
    }

    assert!(squash(SOURCE).contains(&squash(DUE)));
    let plan = plan_of(&db, DUE).await;
    assert!(
        plan.iter().any(|l| l.contains("reports_index_pending")),
        "{plan:#?}"
    );
}

#[test]
fn a_scan_of_iocs_under_an_alias_is_recognised_and_a_search_is_not() {
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(scans_of_iocs(&lines(&["SCAN i"])).len(), 1);
    assert_eq!(
        scans_of_iocs(&lines(&["SCAN s USING INDEX iocs_unique"])).len(),
        1
    );
    assert!(scans_of_iocs(&lines(&["SEARCH i USING INDEX iocs_value (value=?)"])).is_empty());
    assert!(scans_of_iocs(&lines(&["SCAN j VIRTUAL TABLE INDEX 0:"])).is_empty());
}
