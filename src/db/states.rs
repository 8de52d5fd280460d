//! The typed values of the database's text state columns: `items.state` ([`ItemState`]),
//! `items.kind` ([`ItemKind`]), `submit_attempts.outcome` ([`AttemptOutcome`]) and
//! `reports.state` ([`ReportState`]). Each maps to exactly the text the schema's `CHECK`
//! constraints allow (`migrations/0001_initial.sql`); those texts are public (`url_queue`,
//! `items`, the `verdicts` view) and do not change. [`AttemptCost`] is how a requeue counts.

use serde::Serialize;

/// The life of an item. Every arrow is one committed transaction:
/// `queued → submitting → submitted → downloading → done`, and at any point the terminal
/// `rejected` (bad input, never retried), `failed` (gave up, with the last error) or
/// `duplicate` (linked to an earlier item).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, Serialize)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Queued,
    Submitting,
    Submitted,
    Downloading,
    Done,
    Rejected,
    Failed,
    Duplicate,
}

impl ItemState {
    pub const ALL: [ItemState; 8] = [
        Self::Queued,
        Self::Submitting,
        Self::Submitted,
        Self::Downloading,
        Self::Done,
        Self::Rejected,
        Self::Failed,
        Self::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Submitting => "submitting",
            Self::Submitted => "submitted",
            Self::Downloading => "downloading",
            Self::Done => "done",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Duplicate => "duplicate",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Done | Self::Rejected | Self::Failed | Self::Duplicate
        )
    }
}

/// What an item is (`items.kind`): a dropped or submitted file, or a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, Serialize)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    File,
    Url,
}

impl ItemKind {
    pub const ALL: [ItemKind; 2] = [Self::File, Self::Url];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Url => "url",
        }
    }
}

impl std::fmt::Display for ItemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of a submission attempt (`submit_attempts.outcome`, NULL while it is in
/// flight or was interrupted by a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, Serialize)]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The server took it; the item followed its submission.
    Accepted,
    /// A request went out and its fate is unknown: looked up before anything is sent again.
    Unknown,
    /// The server refused it (or it was never sent for a pause or bad parameters): it created
    /// nothing.
    Refused,
    /// Looked for within the look-up window and not found; looked up once more when the
    /// item's analysis finishes.
    NotFound,
    /// A chunked upload whose submission id is recorded but whose chunks were not all confirmed.
    ChunkedPending,
    /// What it created is gone (deleted as incomplete, orphaned or duplicate) or it was not sent.
    Abandoned,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 6] = [
        Self::Accepted,
        Self::Unknown,
        Self::Refused,
        Self::NotFound,
        Self::ChunkedPending,
        Self::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Unknown => "unknown",
            Self::Refused => "refused",
            Self::NotFound => "not_found",
            Self::ChunkedPending => "chunked_pending",
            Self::Abandoned => "abandoned",
        }
    }
}

/// Whether sending an item back (to `queued`, or a report to `pending`) uses up one of its
/// attempts: a global pause or an unreachable server is not the item's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptCost {
    /// The attempt counts towards `pipeline.max_attempts`.
    Counted,
    /// The attempt is given back.
    Free,
}

impl AttemptCost {
    /// 1 when the attempt counts, for `attempts = attempts + ?`.
    pub(crate) fn counted(self) -> i64 {
        i64::from(self == Self::Counted)
    }
}

/// The life of a report file (`reports.state`): `pending → downloading → stored`, or
/// `failed` (not available, too large: recorded, not retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, Serialize)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ReportState {
    Pending,
    Downloading,
    Stored,
    Failed,
}

impl ReportState {
    pub const ALL: [ReportState; 4] =
        [Self::Pending, Self::Downloading, Self::Stored, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Downloading => "downloading",
            Self::Stored => "stored",
            Self::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    /// Writes `value` into a scratch table through sqlx's mapping and reads back the text.
    async fn stored_text<T>(db: &Db, value: T) -> String
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send,
    {
        sqlx::query("DELETE FROM scratch")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO scratch (v) VALUES (?)")
            .bind(value)
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query_scalar("SELECT v FROM scratch")
            .fetch_one(db.pool())
            .await
            .unwrap()
    }

    fn serde_text(value: impl Serialize) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The texts a column's `CHECK (x IN (...))` allows, read from the schema itself.
    async fn allowed(db: &Db, table: &str, column: &str) -> Vec<String> {
        let sql: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = ?")
            .bind(table)
            .fetch_one(db.pool())
            .await
            .unwrap();
        let start = sql.find(&format!("CHECK ({column} IN (")).unwrap();
        let list = &sql[start..];
        let list = &list[list.find("IN (").unwrap() + 4..list.find(')').unwrap()];
        list.split(',')
            .map(|v| v.trim().trim_matches('\'').to_owned())
            .collect()
    }

    /// Every value of a column's type is stored as its `as_str` text, serialises to it, and
    /// together they are the schema's `CHECK` list, in order.
    async fn check_column<T>(db: &Db, values: &[T], text: fn(T) -> &'static str, table: &str)
    where
        T: Copy + Serialize + for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
        T: Send,
    {
        let (table, column) = table.split_once('.').unwrap();
        for &v in values {
            assert_eq!(stored_text(db, v).await, text(v));
            assert_eq!(serde_text(v), text(v));
        }
        let texts: Vec<String> = values.iter().map(|&v| text(v).to_owned()).collect();
        assert_eq!(texts, allowed(db, table, column).await, "{table}.{column}");
    }

    #[tokio::test]
    async fn every_state_is_stored_as_the_text_the_schema_allows_and_json_shows() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        sqlx::query("CREATE TABLE scratch (v TEXT)")
            .execute(db.pool())
            .await
            .unwrap();
        check_column(&db, &ItemState::ALL, ItemState::as_str, "items.state").await;
        check_column(&db, &ItemKind::ALL, ItemKind::as_str, "items.kind").await;
        let outcomes = &AttemptOutcome::ALL;
        check_column(
            &db,
            outcomes,
            AttemptOutcome::as_str,
            "submit_attempts.outcome",
        )
        .await;
        check_column(&db, &ReportState::ALL, ReportState::as_str, "reports.state").await;
    }
}
