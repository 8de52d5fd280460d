//! `analyses` (the verdict index) and `reports` (downloaded report files).

use serde::Serialize;
use sqlx::{FromRow, Sqlite, Transaction};

use super::states::{AttemptCost, ReportState};
use super::{Db, DbError, now_ms, now_text};

/// A row of `analyses`: what jbxd records of one analysis (built by the pipeline from the
/// API's reply, see `pipeline::outcomes::analysis_record`) and what the index reads back.
#[derive(Debug, Clone, Default, PartialEq, FromRow, Serialize)]
pub struct AnalysisRow {
    pub webid: String,
    /// The item it belongs to (kept once set: an analysis never changes hands).
    pub item_id: Option<i64>,
    pub submission_id: Option<String>,
    pub analysisid: Option<String>,
    pub status: Option<String>,
    pub detection: Option<String>,
    pub score: Option<i64>,
    pub threatname: Option<String>,
    pub classification: Option<String>,
    pub filename: Option<String>,
    pub md5: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub scriptname: Option<String>,
    pub systems: Option<String>,
    pub time: Option<String>,
    pub duration: Option<i64>,
    pub encrypted: Option<bool>,
    /// The server's whole object: written, not read back by the listings.
    #[sqlx(default)]
    #[serde(skip)]
    pub info_json: Option<String>,
    /// When the row was first recorded (set by the database; `None` on a new record).
    #[sqlx(default)]
    pub recorded_at: Option<String>,
}

/// A row of `reports`.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct ReportRow {
    pub id: i64,
    pub webid: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub report_type: String,
    pub run: Option<i64>,
    pub state: ReportState,
    pub path: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub server_filename: Option<String>,
    pub error: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub downloaded_at: Option<String>,
}

/// Inserts or refreshes an analysis of item `item_id` (verdict fields change while it runs;
/// the row's own `item_id` and `recorded_at` are the database's).
pub async fn upsert(
    tx: &mut Transaction<'static, Sqlite>,
    item_id: i64,
    a: &AnalysisRow,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO analyses (webid, item_id, submission_id, analysisid, status, detection,
                               score, threatname, classification, filename, md5, sha1, sha256,
                               scriptname, systems, time, duration, encrypted, info_json)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (webid) DO UPDATE SET
             item_id = coalesce(analyses.item_id, excluded.item_id),
             submission_id = coalesce(excluded.submission_id, analyses.submission_id),
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
    .bind(item_id)
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records analyses seen while a submission still runs (so `jbxd status` can show them).
pub async fn upsert_many(db: &Db, item_id: i64, analyses: &[AnalysisRow]) -> Result<(), DbError> {
    let mut tx = db.begin_write().await?;
    for a in analyses {
        upsert(&mut tx, item_id, a).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Analyses of an item (of the earlier item for a duplicate).
pub async fn for_item(db: &Db, item_id: i64) -> Result<Vec<AnalysisRow>, DbError> {
    Ok(sqlx::query_as::<_, AnalysisRow>(
        "SELECT webid, item_id, submission_id, analysisid, status, detection, score, threatname,
                classification, filename, md5, sha1, sha256, scriptname, systems, time,
                duration, encrypted, recorded_at
           FROM analyses
          WHERE item_id = (SELECT coalesce(duplicate_of, id) FROM items WHERE id = ?)
          ORDER BY webid",
    )
    .bind(item_id)
    .fetch_all(db.pool())
    .await?)
}

/// Filters of `jbxd reports`; `None` = any. All given filters must match.
#[derive(Debug, Clone, Default)]
pub struct IndexFilter {
    pub webid: Option<String>,
    pub sha256: Option<String>,
    pub md5: Option<String>,
    pub sha1: Option<String>,
    pub detection: Option<String>,
    pub threatname: Option<String>,
    /// Analyses recorded on or after this date (`YYYY-MM-DD`).
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: i64,
}

/// Queries the analysis index.
pub async fn search(db: &Db, f: &IndexFilter) -> Result<Vec<AnalysisRow>, DbError> {
    Ok(sqlx::query_as::<_, AnalysisRow>(
        "SELECT webid, item_id, submission_id, analysisid, status, detection, score, threatname,
                classification, filename, md5, sha1, sha256, scriptname, systems, time,
                duration, encrypted, recorded_at
           FROM analyses
          WHERE (?1 IS NULL OR webid = ?1)
            AND (?2 IS NULL OR lower(sha256) = lower(?2))
            AND (?3 IS NULL OR lower(md5) = lower(?3))
            AND (?4 IS NULL OR lower(sha1) = lower(?4))
            AND (?5 IS NULL OR detection = ?5)
            AND (?6 IS NULL OR lower(threatname) LIKE '%' || lower(?6) || '%')
            AND (?7 IS NULL OR recorded_at >= ?7)
            AND (?8 IS NULL OR recorded_at < ?8)
          ORDER BY recorded_at DESC, webid DESC
          LIMIT ?9",
    )
    .bind(&f.webid)
    .bind(&f.sha256)
    .bind(&f.md5)
    .bind(&f.sha1)
    .bind(&f.detection)
    .bind(&f.threatname)
    .bind(&f.since)
    .bind(&f.until)
    .bind(if f.limit > 0 { f.limit } else { i64::MAX })
    .fetch_all(db.pool())
    .await?)
}

pub async fn get(db: &Db, webid: &str) -> Result<Option<AnalysisRow>, DbError> {
    Ok(sqlx::query_as::<_, AnalysisRow>(
        "SELECT webid, item_id, submission_id, analysisid, status, detection, score, threatname,
                classification, filename, md5, sha1, sha256, scriptname, systems, time,
                duration, encrypted, recorded_at
           FROM analyses WHERE webid = ?",
    )
    .bind(webid)
    .fetch_optional(db.pool())
    .await?)
}

// ---- reports ---------------------------------------------------------------------------

/// Claims up to `limit` due pending reports (→ `downloading`).
pub async fn claim_reports(db: &Db, limit: i64) -> Result<Vec<ReportRow>, DbError> {
    let now = now_ms();
    Ok(sqlx::query_as::<_, ReportRow>(
        "UPDATE reports SET state = 'downloading', attempts = attempts + 1
          WHERE id IN (SELECT id FROM reports
                        WHERE state = 'pending' AND next_attempt_at <= ?
                        ORDER BY next_attempt_at, id LIMIT ?)
         RETURNING id, webid, type, run, state, path, size, sha256, server_filename, error,
                   attempts, next_attempt_at, downloaded_at",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// The report file is in place (renamed and fsynced): record it.
pub async fn report_stored(
    db: &Db,
    id: i64,
    path: &str,
    size: i64,
    sha256: &str,
    server_filename: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE reports SET state = 'stored', path = ?, size = ?, sha256 = ?,
                            server_filename = ?, error = NULL, downloaded_at = ?
          WHERE id = ?",
    )
    .bind(path)
    .bind(size)
    .bind(sha256)
    .bind(server_filename)
    .bind(now_text())
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A report that cannot be had (e.g. not available on this account): recorded, not retried.
pub async fn report_failed(db: &Db, id: i64, error: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE reports SET state = 'failed', error = ? WHERE id = ?")
        .bind(error)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A transient failure: back to `pending` from `next_attempt_at`; [`AttemptCost::Free`] gives
/// the claim's attempt back (global pause, unreachable server).
pub async fn report_retry(
    db: &Db,
    id: i64,
    error: &str,
    next_attempt_at: i64,
    cost: AttemptCost,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE reports SET state = 'pending', error = ?, next_attempt_at = ?,
                            attempts = attempts - ?
          WHERE id = ?",
    )
    .bind(error)
    .bind(next_attempt_at)
    .bind(i64::from(cost == AttemptCost::Free))
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The item a report belongs to.
pub async fn item_of_report(db: &Db, report_id: i64) -> Result<Option<i64>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT a.item_id FROM reports r JOIN analyses a ON a.webid = r.webid WHERE r.id = ?",
    )
    .bind(report_id)
    .fetch_optional(db.pool())
    .await?
    .flatten())
}

pub async fn reports_for(db: &Db, webid: &str) -> Result<Vec<ReportRow>, DbError> {
    Ok(sqlx::query_as::<_, ReportRow>(
        "SELECT id, webid, type, run, state, path, size, sha256, server_filename, error,
                attempts, next_attempt_at, downloaded_at
           FROM reports WHERE webid = ? ORDER BY type, id",
    )
    .bind(webid)
    .fetch_all(db.pool())
    .await?)
}

/// Every stored report of the given types (for the local XPath search).
pub async fn stored_reports_of_types(db: &Db, types: &[&str]) -> Result<Vec<ReportRow>, DbError> {
    let all: Vec<ReportRow> = sqlx::query_as::<_, ReportRow>(
        "SELECT id, webid, type, run, state, path, size, sha256, server_filename, error,
                attempts, next_attempt_at, downloaded_at
           FROM reports WHERE state = 'stored' ORDER BY webid, id",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(all
        .into_iter()
        .filter(|r| types.contains(&r.report_type.as_str()))
        .collect())
}

/// After a crash: reports left `downloading` go back to `pending` (their temporary files are
/// removed by storage recovery).
pub async fn reset_interrupted_downloads(db: &Db) -> Result<u64, DbError> {
    Ok(
        sqlx::query("UPDATE reports SET state = 'pending' WHERE state = 'downloading'")
            .execute(db.pool())
            .await?
            .rows_affected(),
    )
}

/// Every stored report path (for the storage spot check and the invariant check).
pub async fn stored_paths(db: &Db) -> Result<Vec<(String, i64, String)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT path, size, sha256 FROM reports WHERE state = 'stored' AND path IS NOT NULL",
    )
    .fetch_all(db.pool())
    .await?)
}

/// Report counts per state.
pub async fn report_counts(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    Ok(
        sqlx::query_as("SELECT state, count(*) FROM reports GROUP BY state ORDER BY state")
            .fetch_all(db.pool())
            .await?,
    )
}
