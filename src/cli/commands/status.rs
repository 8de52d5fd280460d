//! `jbxd status`: what the daemon is doing, read from its database (works whether the daemon
//! runs or not): item counts by state, `url_queue` counts by status, report counts by state,
//! health checks, pauses in force, the oldest pending item with its age and the recent errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::app::{Pause, PauseReason};
use crate::cli::output::{cell, print_json, table};
use crate::cli::{CliError, Context, Outcome};
use crate::db::health::HealthRow;
use crate::db::{self, Db, DbError, Item};

use super::operator::{db_failed, open};

/// How many recent errors are shown.
const RECENT_ERRORS: i64 = 10;

/// Every pause reason, in the order `App::pauses` reports them.
const PAUSE_REASONS: [PauseReason; 5] = [
    PauseReason::Maintenance,
    PauseReason::InvalidApiKey,
    PauseReason::TermsNotAccepted,
    PauseReason::QuotaExceeded,
    PauseReason::DiskLow,
];

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct StatusDocument {
    pub data_dir: PathBuf,
    pub database: PathBuf,
    /// Item counts per state; every state is listed.
    pub items: BTreeMap<String, i64>,
    /// `url_queue` rows per status (only statuses that occur).
    pub url_queue: BTreeMap<String, i64>,
    /// Report rows per state (only states that occur).
    pub reports: BTreeMap<String, i64>,
    pub health: Vec<HealthRow>,
    pub pauses: Vec<PauseView>,
    pub oldest_pending: Option<PendingView>,
    pub recent_errors: Vec<ErrorView>,
}

#[derive(Debug, Serialize)]
pub struct PauseView {
    pub reason: PauseReason,
    pub description: &'static str,
    pub detail: String,
    pub since: String,
}

#[derive(Debug, Serialize)]
pub struct PendingView {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub state: String,
    pub created_at: String,
    /// Seconds since the item was recorded.
    pub age_secs: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct ErrorView {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub state: String,
    pub error: String,
    pub updated_at: String,
}

pub async fn run(context: &Context) -> Result<Outcome, CliError> {
    let (config, db) = open(context).await?;
    let document = collect(&db, config.data_dir.clone())
        .await
        .map_err(db_failed)?;
    db.close().await;
    if context.json {
        print_json(&document)?;
    } else {
        print_text(&document);
    }
    Ok(Outcome::success())
}

/// Reads everything `status` shows.
pub async fn collect(db: &Db, data_dir: PathBuf) -> Result<StatusDocument, DbError> {
    let items = db::items::counts_by_state(db)
        .await?
        .into_iter()
        .map(|(state, n)| (state.as_str().to_owned(), n))
        .collect();
    let url_queue = db::url_queue::counts_by_status(db)
        .await?
        .into_iter()
        .collect();
    let reports = db::analyses::report_counts(db).await?.into_iter().collect();
    let health = db::health::all(db).await?;
    let pauses = pauses(db).await?;
    let oldest_pending = db::items::oldest_pending(db)
        .await?
        .map(|item| PendingView {
            age_secs: age_secs(&item.created_at),
            id: item.id,
            kind: item.kind.to_string(),
            name: item.name,
            state: item.state.as_str().to_owned(),
            created_at: item.created_at,
        });
    let recent_errors = db::items::recent_errors(db, RECENT_ERRORS)
        .await?
        .into_iter()
        .map(error_view)
        .collect();
    Ok(StatusDocument {
        database: db.path().to_owned(),
        data_dir,
        items,
        url_queue,
        reports,
        health,
        pauses,
        oldest_pending,
        recent_errors,
    })
}

/// The pauses in force, read from `daemon_state` (`pause:<reason>`) like `App::pauses`, but
/// without building an `App` (no API client, no key).
async fn pauses(db: &Db) -> Result<Vec<PauseView>, DbError> {
    let mut out = Vec::new();
    for reason in PAUSE_REASONS {
        let name = serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let Some(value) = db::health::get_state(db, &format!("pause:{name}")).await? else {
            continue;
        };
        // A value this build cannot parse is still a pause: show it with what is known.
        let (detail, since) = match serde_json::from_str::<Pause>(&value) {
            Ok(pause) => (pause.detail, pause.since),
            Err(_) => (value, String::new()),
        };
        out.push(PauseView {
            reason,
            description: reason.describe(),
            detail,
            since,
        });
    }
    Ok(out)
}

fn error_view(item: Item) -> ErrorView {
    ErrorView {
        id: item.id,
        kind: item.kind.to_string(),
        name: item.name,
        state: item.state.as_str().to_owned(),
        error: item.error.unwrap_or_default(),
        updated_at: item.updated_at,
    }
}

fn age_secs(created_at: &str) -> Option<i64> {
    let created = db::parse_time(created_at)?;
    Some((chrono::Utc::now() - created).num_seconds().max(0))
}

/// `3 d 4 h`, `5 h 2 min`, `7 min 3 s`, `12 s`.
fn human_age(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    }
}

fn counts_line(counts: &BTreeMap<String, i64>, order: &[&str]) -> String {
    let mut parts: Vec<String> = order
        .iter()
        .filter_map(|name| counts.get(*name).map(|n| (name, n)))
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    parts.extend(
        counts
            .iter()
            .filter(|(name, n)| !order.contains(&name.as_str()) && **n > 0)
            .map(|(name, n)| format!("{name} {n}")),
    );
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

const STATE_ORDER: &[&str] = &[
    "new",
    "queued",
    "submitting",
    "submitted",
    "downloading",
    "done",
    "rejected",
    "failed",
    "duplicate",
];

fn print_text(doc: &StatusDocument) {
    println!("database:  {}", doc.database.display());
    println!("items:     {}", counts_line(&doc.items, STATE_ORDER));
    println!("url_queue: {}", counts_line(&doc.url_queue, STATE_ORDER));
    println!(
        "reports:   {}",
        counts_line(
            &doc.reports,
            &["pending", "downloading", "stored", "failed"]
        )
    );
    if doc.pauses.is_empty() {
        println!("paused:    no");
    } else {
        for pause in &doc.pauses {
            println!(
                "paused:    {} since {} ({})",
                pause.description, pause.since, pause.detail
            );
        }
    }
    match &doc.oldest_pending {
        Some(item) => println!(
            "oldest pending: item {} ({}, {}) {}, recorded {}{}",
            item.id,
            item.kind,
            item.state,
            item.name,
            item.created_at,
            item.age_secs
                .map(|s| format!(", {} ago", human_age(s)))
                .unwrap_or_default()
        ),
        None => println!("oldest pending: none"),
    }
    if doc.health.is_empty() {
        println!("health:    no checks recorded yet");
    } else {
        let mut health = table(&["check", "status", "detail", "checked at"]);
        for row in &doc.health {
            health.add_row(vec![
                row.name.clone(),
                row.status.clone(),
                cell(row.detail.as_deref()),
                row.checked_at.clone(),
            ]);
        }
        println!("health:");
        println!("{health}");
    }
    if doc.recent_errors.is_empty() {
        println!("recent errors: none");
    } else {
        let mut errors = table(&["item", "state", "name", "error", "at"]);
        for row in &doc.recent_errors {
            errors.add_row(vec![
                row.id.to_string(),
                row.state.clone(),
                row.name.clone(),
                row.error.clone(),
                row.updated_at.clone(),
            ]);
        }
        println!("recent errors:");
        println!("{errors}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        assert_eq!(human_age(12), "12 s");
        assert_eq!(human_age(7 * 60 + 3), "7 min 3 s");
        assert_eq!(human_age(5 * 3600 + 120), "5 h 2 min");
        assert_eq!(human_age(3 * 86400 + 4 * 3600), "3 d 4 h");
    }

    #[test]
    fn count_lines_follow_the_life_of_an_item_and_skip_zeros() {
        let counts: BTreeMap<String, i64> = [("done", 2), ("queued", 1), ("failed", 0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(counts_line(&counts, STATE_ORDER), "queued 1, done 2");
        assert_eq!(counts_line(&BTreeMap::new(), STATE_ORDER), "none");
    }
}
