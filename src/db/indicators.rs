//! The indicator index (`migrations/0003_index.sql`): `iocs`, `signatures`,
//! `attack_techniques`, `yara_hits`, `malware_configs`, the `ioc_sightings` view and the
//! per-report index state on `reports`.
//!
//! Writing is one transaction per analysis ([`replace_analysis`]): it checks that the stored
//! reports are still the ones that were read (a report stored again meanwhile, or a concurrent
//! `jbxd index rebuild` beside the daemon, is not overwritten with stale facts: the caller
//! tries again later), deletes the analysis' old rows, inserts the new ones and sets the index
//! state of its reports. There is no claim to lose: two indexers of one analysis write the
//! same rows, and each commit replaces the other's whole.
//!
//! Rows go in as one JSON array per table (`json_each`), so an analysis with thousands of
//! indicators costs five statements, not thousands.

use serde::Serialize;
use sqlx::FromRow;

use super::analyses::AnalysisRow;
use super::{Db, DbError, now_text};
use crate::ioc::Kind;

/// The index state of a stored report (`reports.index_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexState {
    Pending,
    Indexed,
    Failed,
    NotIndexable,
}

impl IndexState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Indexed => "indexed",
            Self::Failed => "failed",
            Self::NotIndexable => "not_indexable",
        }
    }
}

/// A stored report of an analysis, as the indexer reads it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct StoredReport {
    pub id: i64,
    #[sqlx(rename = "type")]
    pub report_type: String,
    pub run: Option<i64>,
    /// Relative to `data_dir`.
    pub path: String,
    pub sha256: Option<String>,
}

/// One `iocs` row (value already in its normal form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IocRow {
    pub run: Option<i64>,
    pub kind: Kind,
    pub value: String,
    pub malicious: Option<bool>,
    pub private: Option<bool>,
    pub report_type: String,
    pub section: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureRow {
    pub run: Option<i64>,
    pub sig_id: Option<String>,
    pub description: String,
    pub impact: Option<i64>,
    pub report_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TechniqueRow {
    pub run: Option<i64>,
    pub technique: String,
    pub tactic: Option<String>,
    pub name: Option<String>,
    pub report_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct YaraRow {
    pub run: Option<i64>,
    pub rule: String,
    pub scope: String,
    pub report_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigRow {
    pub run: Option<i64>,
    pub family: Option<String>,
    pub config_json: String,
    pub report_type: String,
}

/// Every index row of one analysis. The caller removes duplicates (one row per unique key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalysisFacts {
    pub iocs: Vec<IocRow>,
    pub signatures: Vec<SignatureRow>,
    pub techniques: Vec<TechniqueRow>,
    pub yara: Vec<YaraRow>,
    pub configs: Vec<ConfigRow>,
}

/// The index state a report gets in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMark {
    pub report_id: i64,
    pub state: IndexState,
    /// One line: why it failed (or a note on an indexed one, e.g. a cap was reached).
    pub error: Option<String>,
}

/// What [`replace_analysis`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    Written,
    /// The analysis' stored reports changed since they were read: nothing written.
    ReportsChanged,
}

const STORED_REPORTS: &str = "SELECT id, type, run, path, sha256 FROM reports
  WHERE webid = ? AND state = 'stored' AND path IS NOT NULL ORDER BY id";

/// The stored reports of an analysis (every one, whatever its index state).
pub async fn stored_reports(db: &Db, webid: &str) -> Result<Vec<StoredReport>, DbError> {
    Ok(sqlx::query_as::<_, StoredReport>(STORED_REPORTS)
        .bind(webid)
        .fetch_all(db.pool())
        .await?)
}

/// Up to `limit` analyses due for indexing: a report is `pending` and none is still being
/// downloaded (the index takes an analysis once all its reports are settled).
pub async fn due_analyses(db: &Db, limit: i64) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT r.webid FROM reports r INDEXED BY reports_index_pending
          WHERE r.index_state = 'pending' AND r.state = 'stored' AND r.path IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM reports o
                             WHERE o.webid = r.webid AND o.state IN ('pending', 'downloading'))
          ORDER BY r.webid LIMIT ?",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Analyses with stored reports (`jbxd index rebuild`): all, or the one named.
pub async fn analyses_with_stored_reports(
    db: &Db,
    webid: Option<&str>,
) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT webid FROM reports
          WHERE state = 'stored' AND (?1 IS NULL OR webid = ?1) ORDER BY webid",
    )
    .bind(webid)
    .fetch_all(db.pool())
    .await?)
}

/// Replaces every index row of `webid` with `facts` and sets the index state of its reports,
/// in one transaction, provided its stored reports are still exactly `read` (ids, paths and
/// hashes); otherwise nothing is written ([`Replaced::ReportsChanged`]).
pub async fn replace_analysis(
    db: &Db,
    webid: &str,
    read: &[StoredReport],
    facts: &AnalysisFacts,
    marks: &[ReportMark],
) -> Result<Replaced, DbError> {
    let mut tx = db.begin_write().await?;
    let now: Vec<StoredReport> = sqlx::query_as::<_, StoredReport>(STORED_REPORTS)
        .bind(webid)
        .fetch_all(&mut *tx)
        .await?;
    if now != read {
        tx.rollback().await?;
        return Ok(Replaced::ReportsChanged);
    }
    for delete in [
        "DELETE FROM iocs WHERE webid = ?",
        "DELETE FROM signatures WHERE webid = ?",
        "DELETE FROM attack_techniques WHERE webid = ?",
        "DELETE FROM yara_hits WHERE webid = ?",
        "DELETE FROM malware_configs WHERE webid = ?",
    ] {
        sqlx::query(delete).bind(webid).execute(&mut *tx).await?;
    }
    let inserts = [
        (
            "INSERT INTO iocs (webid, run, kind, value, malicious, private, report_type, section)
             SELECT ?1, j.value ->> 'run', j.value ->> 'kind', j.value ->> 'value',
                    j.value ->> 'malicious', j.value ->> 'private', j.value ->> 'report_type',
                    j.value ->> 'section'
               FROM json_each(?2) AS j",
            json(&facts.iocs),
        ),
        (
            "INSERT INTO signatures (webid, run, sig_id, description, impact, report_type)
             SELECT ?1, j.value ->> 'run', j.value ->> 'sig_id', j.value ->> 'description',
                    j.value ->> 'impact', j.value ->> 'report_type'
               FROM json_each(?2) AS j",
            json(&facts.signatures),
        ),
        (
            "INSERT INTO attack_techniques (webid, run, technique, tactic, name, report_type)
             SELECT ?1, j.value ->> 'run', j.value ->> 'technique', j.value ->> 'tactic',
                    j.value ->> 'name', j.value ->> 'report_type'
               FROM json_each(?2) AS j",
            json(&facts.techniques),
        ),
        (
            "INSERT INTO yara_hits (webid, run, rule, scope, report_type)
             SELECT ?1, j.value ->> 'run', j.value ->> 'rule', j.value ->> 'scope',
                    j.value ->> 'report_type'
               FROM json_each(?2) AS j",
            json(&facts.yara),
        ),
        (
            "INSERT INTO malware_configs (webid, run, family, config_json, report_type)
             SELECT ?1, j.value ->> 'run', j.value ->> 'family', j.value ->> 'config_json',
                    j.value ->> 'report_type'
               FROM json_each(?2) AS j",
            json(&facts.configs),
        ),
    ];
    for (insert, rows) in inserts {
        sqlx::query(insert)
            .bind(webid)
            .bind(rows)
            .execute(&mut *tx)
            .await?;
    }
    let at = now_text();
    for mark in marks {
        sqlx::query(
            "UPDATE reports SET index_state = ?, index_error = ?, indexed_at = ?
              WHERE id = ? AND webid = ?",
        )
        .bind(mark.state.as_str())
        .bind(&mark.error)
        .bind(&at)
        .bind(mark.report_id)
        .bind(webid)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Replaced::Written)
}

/// Rows as the JSON array the inserts read. Booleans become 0/1 through `->>` (SQLite's JSON
/// `true` is extracted as the integer 1).
fn json<T: Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("index rows serialise")
}

/// How many rows of each table an analysis has (the rebuild's summary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromRow, Serialize)]
pub struct RowCounts {
    pub iocs: i64,
    pub signatures: i64,
    pub techniques: i64,
    pub yara: i64,
    pub configs: i64,
}

pub async fn row_counts(db: &Db, webid: &str) -> Result<RowCounts, DbError> {
    Ok(sqlx::query_as::<_, RowCounts>(
        "SELECT (SELECT count(*) FROM iocs WHERE webid = ?1) AS iocs,
                (SELECT count(*) FROM signatures WHERE webid = ?1) AS signatures,
                (SELECT count(*) FROM attack_techniques WHERE webid = ?1) AS techniques,
                (SELECT count(*) FROM yara_hits WHERE webid = ?1) AS yara,
                (SELECT count(*) FROM malware_configs WHERE webid = ?1) AS configs",
    )
    .bind(webid)
    .fetch_one(db.pool())
    .await?)
}

// ---- reading -----------------------------------------------------------------------------

/// A row of `ioc_sightings`.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct Sighting {
    pub kind: String,
    pub value: String,
    pub malicious: Option<bool>,
    pub private: Option<bool>,
    pub webid: String,
    pub run: Option<i64>,
    pub report_type: String,
    pub section: String,
    pub detection: Option<String>,
    pub score: Option<i64>,
    pub threatname: Option<String>,
    pub analysed_at: Option<String>,
    pub recorded_at: String,
    pub item_id: Option<i64>,
    pub item_source: Option<String>,
    pub item_name: Option<String>,
}

/// Filters of `jbxd iocs`; all given ones must match.
#[derive(Debug, Clone, Default)]
pub struct SightingFilter {
    /// `(kind, normal value)` pairs, any of which may match (the lookup forms of one value).
    pub values: Option<Vec<(Kind, String)>>,
    pub kind: Option<Kind>,
    /// Only indicators the report flags malicious.
    pub malicious: bool,
    pub webid: Option<String>,
    /// Analyses recorded on or after this day (`YYYY-MM-DD`).
    pub since: Option<String>,
    /// 0 = no limit.
    pub limit: i64,
}

/// The value lookup: the `(kind, value)` pairs drive `iocs_value` (README, benchmark P10).
const SIGHTINGS_BY_VALUE: &str =
    "SELECT s.kind, s.value, s.malicious, s.private, s.webid, s.run, s.report_type, s.section,
        s.detection, s.score, s.threatname, s.analysed_at, s.recorded_at, s.item_id,
        s.item_source, s.item_name
   FROM ioc_sightings AS s
  WHERE s.value IN (SELECT j.value ->> 1 FROM json_each(?1) AS j)
    AND EXISTS (SELECT 1 FROM json_each(?1) AS p
                 WHERE p.value ->> 0 = s.kind AND p.value ->> 1 = s.value)
    AND (?2 IS NULL OR s.kind = ?2)
    AND (?3 = 0 OR s.malicious = 1)
    AND (?4 IS NULL OR s.webid = ?4)
    AND (?5 IS NULL OR s.recorded_at >= ?5)
  ORDER BY s.recorded_at DESC, s.webid DESC, s.kind, s.value
  LIMIT ?6";

/// Without a value (?1 unused, bound NULL: one binding order for both statements).
const SIGHTINGS: &str =
    "SELECT s.kind, s.value, s.malicious, s.private, s.webid, s.run, s.report_type, s.section,
        s.detection, s.score, s.threatname, s.analysed_at, s.recorded_at, s.item_id,
        s.item_source, s.item_name
   FROM ioc_sightings AS s
  WHERE (?2 IS NULL OR s.kind = ?2)
    AND (?3 = 0 OR s.malicious = 1)
    AND (?4 IS NULL OR s.webid = ?4)
    AND (?5 IS NULL OR s.recorded_at >= ?5)
  ORDER BY s.recorded_at DESC, s.webid DESC, s.kind, s.value
  LIMIT ?6";

/// Queries `ioc_sightings`, newest analyses first.
pub async fn sightings(db: &Db, f: &SightingFilter) -> Result<Vec<Sighting>, DbError> {
    let (sql, pairs) = match &f.values {
        Some(values) => (SIGHTINGS_BY_VALUE, Some(pairs_json(values))),
        None => (SIGHTINGS, None),
    };
    Ok(sqlx::query_as::<_, Sighting>(sql)
        .bind(pairs)
        .bind(f.kind.map(Kind::as_str))
        .bind(f.malicious)
        .bind(&f.webid)
        .bind(&f.since)
        .bind(if f.limit > 0 { f.limit } else { i64::MAX })
        .fetch_all(db.pool())
        .await?)
}

fn pairs_json(values: &[(Kind, String)]) -> String {
    let pairs: Vec<(&str, &str)> = values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    serde_json::to_string(&pairs).expect("pairs serialise")
}

/// Every analysis that saw any of the `(kind, value)` pairs, newest first (`jbxd reports
/// --ioc`).
pub async fn analyses_that_saw(
    db: &Db,
    values: &[(Kind, String)],
    limit: i64,
) -> Result<Vec<AnalysisRow>, DbError> {
    Ok(sqlx::query_as::<_, AnalysisRow>(
        "SELECT webid, item_id, submission_id, analysisid, status, detection, score, threatname,
                classification, filename, md5, sha1, sha256, scriptname, systems, time,
                duration, encrypted, recorded_at
           FROM analyses
          WHERE webid IN (SELECT i.webid FROM iocs i
                           WHERE i.value IN (SELECT j.value ->> 1 FROM json_each(?1) AS j)
                             AND EXISTS (SELECT 1 FROM json_each(?1) AS p
                                          WHERE p.value ->> 0 = i.kind AND p.value ->> 1 = i.value))
          ORDER BY recorded_at DESC, webid DESC
          LIMIT ?2",
    )
    .bind(pairs_json(values))
    .bind(if limit > 0 { limit } else { i64::MAX })
    .fetch_all(db.pool())
    .await?)
}

/// The index lines of `jbxd status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexStatus {
    pub pending: i64,
    pub indexed: i64,
    pub failed: i64,
    pub not_indexable: i64,
    pub iocs: i64,
    /// The most recent failure: webid, report type, reason, when.
    pub latest_failure: Option<IndexFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct IndexFailure {
    pub webid: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub report_type: String,
    pub run: Option<i64>,
    pub error: Option<String>,
    pub at: Option<String>,
}

pub async fn status(db: &Db) -> Result<IndexStatus, DbError> {
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT index_state, count(*) FROM reports WHERE index_state IS NOT NULL
          GROUP BY index_state",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out = IndexStatus::default();
    for (state, count) in counts {
        match state.as_str() {
            "pending" => out.pending = count,
            "indexed" => out.indexed = count,
            "failed" => out.failed = count,
            _ => out.not_indexable = count,
        }
    }
    out.iocs = sqlx::query_scalar("SELECT count(*) FROM iocs")
        .fetch_one(db.pool())
        .await?;
    out.latest_failure = sqlx::query_as::<_, IndexFailure>(
        "SELECT webid, type, run, index_error AS error, indexed_at AS at
           FROM reports INDEXED BY reports_index_failed WHERE index_state = 'failed'
          ORDER BY indexed_at DESC LIMIT 1",
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(out)
}
