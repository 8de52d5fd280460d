//! Start-up checks of the database file itself (catalog 28): `PRAGMA quick_check`, and telling
//! a damaged file apart from other open failures so the daemon can refuse it with a pointer to
//! backup and restore instead of crash-looping on it.

use super::{Db, DbError};

/// `PRAGMA quick_check`: "ok", or the problems found joined with "; ". Reads every page of
/// the file once (no index cross-checks), so it is cheap enough for every start.
pub async fn quick_check(db: &Db) -> Result<String, DbError> {
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_all(db.pool())
        .await?;
    Ok(rows.join("; "))
}

/// Whether an error says the file is damaged or not a database at all (SQLITE_CORRUPT and its
/// extended codes, SQLITE_NOTADB), as opposed to locked, missing or unwritable.
pub fn is_corruption(error: &DbError) -> bool {
    let DbError::Sqlx(sqlx::Error::Database(e)) = error else {
        return false;
    };
    e.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 11 | 26))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_healthy_database_passes_and_a_non_database_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        assert_eq!(quick_check(&db).await.unwrap(), "ok");
        db.close().await;

        let path = dir.path().join("garbage.db");
        std::fs::write(&path, vec![0x5au8; 8192]).unwrap();
        let error = Db::open(&path).await.unwrap_err();
        assert!(is_corruption(&error), "{error}");
        assert!(!is_corruption(&DbError::Missing(path)));
    }
}
