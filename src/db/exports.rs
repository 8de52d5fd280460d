//! What `jbxd export` reads of one analysis from the indicator index (`iocs`, `signatures`,
//! `attack_techniques`, written by `db::indicators`): every run's rows, in a stable order.

use super::{Db, DbError};

/// One indicator of the analysis: (kind, normal value, malicious, private), any run.
pub async fn iocs_of(
    db: &Db,
    webid: &str,
) -> Result<Vec<(String, String, Option<bool>, Option<bool>)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT kind, value, max(malicious), max(private) FROM iocs WHERE webid = ?
          GROUP BY kind, value ORDER BY kind, value",
    )
    .bind(webid)
    .fetch_all(db.pool())
    .await?)
}

/// (description, impact, signature id) of the analysis' signatures, any run.
pub async fn signatures_of(
    db: &Db,
    webid: &str,
) -> Result<Vec<(String, Option<i64>, Option<String>)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT description, impact, sig_id FROM signatures WHERE webid = ?
          ORDER BY description, impact, sig_id",
    )
    .bind(webid)
    .fetch_all(db.pool())
    .await?)
}

/// (technique, name, tactic) of the analysis' ATT&CK techniques, any run.
pub async fn techniques_of(
    db: &Db,
    webid: &str,
) -> Result<Vec<(String, Option<String>, Option<String>)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT technique, name, tactic FROM attack_techniques WHERE webid = ?
          ORDER BY technique, name, tactic",
    )
    .bind(webid)
    .fetch_all(db.pool())
    .await?)
}
