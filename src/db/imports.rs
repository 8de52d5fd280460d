//! What `jbxd import` records: an analysis submitted elsewhere, without an item, marked
//! `imported_at`, with its report rows `pending` for the download worker's own step. One
//! transaction per analysis; importing the same analysis again refreshes its verdict and adds
//! no row (the reports are unique per webid, type and run, and stored ones stay stored).

use super::analyses::AnalysisRow;
use super::{Db, DbError, now_ms, now_text};
use crate::db::ReportRow;

/// What recording one imported analysis changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The analysis was not in the index before.
    pub new_analysis: bool,
    /// Report rows added (types not recorded before).
    pub new_reports: u64,
    /// The analysis belongs to an item of the daemon (it submitted it itself).
    pub own: bool,
}

/// Records an imported analysis and queues `report_types` for it. An analysis already in the
/// index keeps its item and its origin; only its verdict fields are refreshed.
pub async fn record_imported(
    db: &Db,
    a: &AnalysisRow,
    report_types: &[String],
) -> Result<Recorded, DbError> {
    let mut tx = db.begin_write().await?;
    let before: Option<Option<i64>> =
        sqlx::query_scalar("SELECT item_id FROM analyses WHERE webid = ?")
            .bind(&a.webid)
            .fetch_optional(&mut *tx)
            .await?;
    sqlx::query(
        "INSERT INTO analyses (webid, item_id, submission_id, analysisid, status, detection,
                               score, threatname, classification, filename, md5, sha1, sha256,
                               scriptname, systems, time, duration, encrypted, info_json,
                               imported_at)
         VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (webid) DO UPDATE SET
             submission_id = coalesce(analyses.submission_id, excluded.submission_id),
             analysisid = excluded.analysisid, status = excluded.status,
             detection = excluded.detection, score = excluded.score,
             threatname = excluded.threatname, classification = excluded.classification,
             filename = excluded.filename, md5 = excluded.md5, sha1 = excluded.sha1,
             sha256 = excluded.sha256, scriptname = excluded.scriptname,
             systems = excluded.systems, time = excluded.time, duration = excluded.duration,
             encrypted = excluded.encrypted, info_json = excluded.info_json,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    )
    .bind(&a.webid)
    .bind(&a.submission_id)
    .bind(&a.analysisid)
    .bind(&a.status)
    .bind(&a.detection)
    .bind(a.score)
    .bind(&a.threatname)
    .bind(&a.classification)
    .bind(&a.filename)
    .bind(&a.md5)
    .bind(&a.sha1)
    .bind(&a.sha256)
    .bind(&a.scriptname)
    .bind(&a.systems)
    .bind(&a.time)
    .bind(a.duration)
    .bind(a.encrypted)
    .bind(&a.info_json)
    .bind(now_text())
    .execute(&mut *tx)
    .await?;
    let mut new_reports = 0;
    for report_type in report_types {
        new_reports +=
            sqlx::query("INSERT OR IGNORE INTO reports (webid, type, run) VALUES (?, ?, NULL)")
                .bind(&a.webid)
                .bind(report_type)
                .execute(&mut *tx)
                .await?
                .rows_affected();
    }
    tx.commit().await?;
    Ok(Recorded {
        new_analysis: before.is_none(),
        new_reports,
        own: before.flatten().is_some(),
    })
}

/// When the analysis was imported (`None`: not imported, or not in the index).
pub async fn imported_at(db: &Db, webid: &str) -> Result<Option<String>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT imported_at FROM analyses WHERE webid = ?")
            .bind(webid)
            .fetch_optional(db.pool())
            .await?
            .flatten(),
    )
}

/// Claims up to `limit` due pending reports of these analyses only (→ `downloading`, one
/// attempt counted), exactly like the download worker's claim: a report the daemon claimed
/// first is not claimed again, so `jbxd import` can run beside it.
pub async fn claim_reports_of(
    db: &Db,
    webids: &[String],
    limit: i64,
) -> Result<Vec<ReportRow>, DbError> {
    let wanted = serde_json::to_string(webids).unwrap_or_else(|_| "[]".to_owned());
    Ok(sqlx::query_as::<_, ReportRow>(
        "UPDATE reports SET state = 'downloading', attempts = attempts + 1
          WHERE id IN (SELECT id FROM reports
                        WHERE state = 'pending' AND next_attempt_at <= ?
                          AND webid IN (SELECT value FROM json_each(?))
                        ORDER BY next_attempt_at, id LIMIT ?)
         RETURNING id, webid, type, run, state, path, size, sha256, server_filename, error,
                   attempts, next_attempt_at, downloaded_at",
    )
    .bind(now_ms())
    .bind(wanted)
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Reports of these analyses that are not settled yet: (pending or downloading, the earliest
/// `next_attempt_at` of the pending ones).
pub async fn unsettled_of(db: &Db, webids: &[String]) -> Result<(i64, Option<i64>), DbError> {
    let wanted = serde_json::to_string(webids).unwrap_or_else(|_| "[]".to_owned());
    Ok(sqlx::query_as(
        "SELECT count(*), min(CASE WHEN state = 'pending' THEN next_attempt_at END)
           FROM reports
          WHERE state IN ('pending', 'downloading')
            AND webid IN (SELECT value FROM json_each(?))",
    )
    .bind(wanted)
    .fetch_one(db.pool())
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{ItemState, ReportState};

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("jbxd.db")).await.unwrap();
        (dir, db)
    }

    fn analysis(webid: &str, detection: &str) -> AnalysisRow {
        AnalysisRow {
            webid: webid.into(),
            status: Some("finished".into()),
            detection: Some(detection.into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn an_imported_analysis_has_no_item_an_import_time_and_pending_reports() {
        let (_dir, db) = db().await;
        let types = vec!["xml".to_owned(), "html".to_owned()];
        let first = record_imported(&db, &analysis("7", "clean"), &types)
            .await
            .unwrap();
        assert_eq!(
            first,
            Recorded {
                new_analysis: true,
                new_reports: 2,
                own: false
            }
        );
        let row = crate::db::analyses::get(&db, "7").await.unwrap().unwrap();
        assert_eq!(row.item_id, None);
        assert!(imported_at(&db, "7").await.unwrap().is_some());
        let reports = crate::db::analyses::reports_for(&db, "7").await.unwrap();
        assert_eq!(reports.len(), 2);
        assert!(reports.iter().all(|r| r.state == ReportState::Pending));
        // Again: the verdict is refreshed, nothing is added.
        let again = record_imported(&db, &analysis("7", "malicious"), &types)
            .await
            .unwrap();
        assert!(!again.new_analysis && again.new_reports == 0);
        let row = crate::db::analyses::get(&db, "7").await.unwrap().unwrap();
        assert_eq!(row.detection.as_deref(), Some("malicious"));
        assert_eq!(
            crate::db::analyses::reports_for(&db, "7")
                .await
                .unwrap()
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn importing_an_analysis_the_daemon_submitted_keeps_its_item_and_origin() {
        let (_dir, db) = db().await;
        let item: i64 = sqlx::query_scalar(
            "INSERT INTO items (kind, source, item_key, name, url, state)
             VALUES ('url', 'cli', 'k1', 'http://x.example/', 'http://x.example/', 'submitted')
             RETURNING id",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        crate::db::items::record_finished(&db, item, &[analysis("9", "clean")], &["xml".into()])
            .await
            .unwrap();
        assert_eq!(
            crate::db::items::get(&db, item)
                .await
                .unwrap()
                .unwrap()
                .state,
            ItemState::Downloading
        );
        let recorded =
            record_imported(&db, &analysis("9", "clean"), &["xml".into(), "json".into()])
                .await
                .unwrap();
        assert!(recorded.own && !recorded.new_analysis);
        assert_eq!(recorded.new_reports, 1);
        let row = crate::db::analyses::get(&db, "9").await.unwrap().unwrap();
        assert_eq!(row.item_id, Some(item));
        assert_eq!(imported_at(&db, "9").await.unwrap(), None);
    }

    #[tokio::test]
    async fn claims_take_only_the_named_analyses_and_never_a_claimed_report() {
        let (_dir, db) = db().await;
        let types = vec!["xml".to_owned()];
        for webid in ["1", "2"] {
            record_imported(&db, &analysis(webid, "clean"), &types)
                .await
                .unwrap();
        }
        let only = vec!["2".to_owned()];
        assert_eq!(unsettled_of(&db, &only).await.unwrap().0, 1);
        let claimed = claim_reports_of(&db, &only, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].webid, "2");
        assert!(claim_reports_of(&db, &only, 10).await.unwrap().is_empty());
        // Claimed is still unsettled; the other analysis' report is still the daemon's to take.
        assert_eq!(unsettled_of(&db, &only).await.unwrap(), (1, None));
        assert_eq!(
            crate::db::analyses::claim_reports(&db, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
