//! `jbxd status`: what the daemon is doing, read from its database (works whether the daemon
//! runs or not): an overall verdict, item counts by state, `url_queue` counts by status, report
//! counts by state, health checks (and whether they are stale), a `Retry-After` hold-off in
//! force, pauses in force, the oldest pending item with its age and the recent errors.
//!
//! The verdict is "ok" only when every stored check is ok, the checks are fresh, no hold-off
//! and no pause is in force (RELIABILITY.md case 118). Health rows are stale when the last
//! one was recorded more than two health intervals ago: the daemon is not running, or cannot
//! write its database (a full disk, a read-only `data_dir`), so what they say is old news.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::app::{Pause, PauseReason};
use crate::cli::output::{cell, print_json, table};
use crate::cli::{CliError, Context, Outcome};
use crate::db::health::{HealthRow, HealthRun, HoldOffRecord};
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
    /// Everything below in one word, with the reasons it is not "ok".
    pub overall: OverallView,
    /// Item counts per state; every state is listed.
    pub items: BTreeMap<String, i64>,
    /// `url_queue` rows per status (only statuses that occur).
    pub url_queue: BTreeMap<String, i64>,
    /// Report rows per state (only states that occur).
    pub reports: BTreeMap<String, i64>,
    /// The indicator index: stored reports per index state, the IOC count, the latest failure.
    pub index: db::indicators::IndexStatus,
    pub health: Vec<HealthRow>,
    /// How fresh the health rows are (`None`: no health run recorded yet).
    pub health_freshness: Option<FreshnessView>,
    /// The server's `Retry-After` hold-off, while it lasts.
    pub hold_off: Option<HoldOffView>,
    pub pauses: Vec<PauseView>,
    pub oldest_pending: Option<PendingView>,
    pub recent_errors: Vec<ErrorView>,
}

#[derive(Debug, Serialize)]
pub struct OverallView {
    /// `ok`, `degraded`, `failed` or `stale`.
    pub status: &'static str,
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct FreshnessView {
    /// When the newest health result was recorded.
    pub last_recorded: String,
    pub age_secs: i64,
    /// The time between two health runs, from the daemon's last run record.
    pub interval_secs: i64,
    /// Older than two intervals.
    pub stale: bool,
}

#[derive(Debug, Serialize)]
pub struct HoldOffView {
    /// No API request before this time.
    pub until: String,
    pub remaining_secs: i64,
    /// The HTTP status of the reply that asked for it (429 or 503).
    pub http_status: u16,
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
    let index = db::indicators::status(db).await?;
    let health = db::health::all(db).await?;
    let run: Option<HealthRun> = db::health::get_fact(db, db::health::HEALTH_RUN_KEY).await?;
    let health_freshness = freshness(&health, run.as_ref(), chrono::Utc::now());
    let hold_off = db::health::get_fact::<HoldOffRecord>(db, db::health::HOLD_OFF_KEY)
        .await?
        .and_then(|record| hold_off_view(&record, chrono::Utc::now()));
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
    let overall = overall(
        &health,
        health_freshness.as_ref(),
        hold_off.as_ref(),
        &pauses,
    );
    Ok(StatusDocument {
        database: db.path().to_owned(),
        data_dir,
        overall,
        items,
        url_queue,
        reports,
        index,
        health,
        health_freshness,
        hold_off,
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

/// The newest recorded health result and whether it is older than two health intervals
/// (the interval: from the start of the daemon's last run to the next tick it had).
fn freshness(
    rows: &[HealthRow],
    run: Option<&HealthRun>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<FreshnessView> {
    let run = run?;
    let started = db::parse_time(&run.started_at)?;
    let interval = run
        .next_at
        .as_deref()
        .and_then(db::parse_time)
        .map(|next| (next - started).num_seconds().max(1))?;
    let last = rows
        .iter()
        .filter_map(|row| db::parse_time(&row.checked_at))
        .chain(db::parse_time(&run.finished_at))
        .max()?;
    let age = (now - last).num_seconds().max(0);
    Some(FreshnessView {
        last_recorded: db::time_text(last),
        age_secs: age,
        interval_secs: interval,
        stale: age > 2 * interval,
    })
}

/// The hold-off, if its end is still ahead.
fn hold_off_view(
    record: &HoldOffRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<HoldOffView> {
    let until = db::parse_time(&record.until)?;
    let remaining = (until - now).num_seconds();
    (until > now).then(|| HoldOffView {
        until: record.until.clone(),
        remaining_secs: remaining.max(0),
        http_status: record.status,
    })
}

fn overall(
    health: &[HealthRow],
    freshness: Option<&FreshnessView>,
    hold_off: Option<&HoldOffView>,
    pauses: &[PauseView],
) -> OverallView {
    let mut reasons = Vec::new();
    let mut failed = false;
    for row in health.iter().filter(|row| row.status != "ok") {
        failed |= row.status == "failed";
        reasons.push(format!(
            "{} {}: {}",
            row.name,
            row.status,
            row.detail.as_deref().unwrap_or("")
        ));
    }
    let stale = freshness.is_some_and(|f| f.stale);
    if let Some(f) = freshness.filter(|f| f.stale) {
        reasons.insert(0, stale_text(f));
    }
    if let Some(h) = hold_off {
        reasons.push(hold_off_text(h));
    }
    for pause in pauses {
        reasons.push(format!("paused: {}", pause.description));
    }
    let status = if stale {
        "stale"
    } else if failed {
        "failed"
    } else if reasons.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    OverallView { status, reasons }
}

fn stale_text(f: &FreshnessView) -> String {
    format!(
        "stale: last recorded {} ago, checks are due every {}; the daemon is not running or \
         cannot write its database, so the health rows below are old",
        human_age(f.age_secs),
        human_age(f.interval_secs)
    )
}

fn hold_off_text(h: &HoldOffView) -> String {
    format!(
        "held off: the server answered HTTP {} with Retry-After; no API request before {} ({} \
         from now)",
        h.http_status,
        h.until,
        human_age(h.remaining_secs)
    )
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
    if doc.overall.reasons.is_empty() {
        println!("overall:   {}", doc.overall.status);
    } else {
        println!(
            "overall:   {} ({} reason{})",
            doc.overall.status,
            doc.overall.reasons.len(),
            if doc.overall.reasons.len() == 1 {
                ""
            } else {
                "s"
            }
        );
    }
    match &doc.hold_off {
        Some(h) => println!("held off:  {}", hold_off_text(h)),
        None => println!("held off:  no"),
    }
    println!("items:     {}", counts_line(&doc.items, STATE_ORDER));
    println!("url_queue: {}", counts_line(&doc.url_queue, STATE_ORDER));
    println!(
        "reports:   {}",
        counts_line(
            &doc.reports,
            &["pending", "downloading", "stored", "failed"]
        )
    );
    let index = &doc.index;
    println!(
        "index:     {} indexed, {} failed, {} pending, {} not indexable; {} iocs",
        index.indexed, index.failed, index.pending, index.not_indexable, index.iocs
    );
    if let Some(f) = &index.latest_failure {
        let run = f.run.map(|r| format!(" run {r}")).unwrap_or_default();
        println!(
            "index failed: webid {} {}{run}: {} ({})",
            f.webid,
            f.report_type,
            f.error.as_deref().unwrap_or("no reason recorded"),
            f.at.as_deref().unwrap_or("?")
        );
    }
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
        match doc.health_freshness.as_ref().filter(|f| f.stale) {
            Some(f) => println!("health:    {}", stale_text(f)),
            None => println!("health:"),
        }
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

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        db::parse_time(text).unwrap()
    }

    fn row(name: &str, status: &str, checked_at: &str) -> HealthRow {
        HealthRow {
            name: name.into(),
            status: status.into(),
            detail: Some(format!("{name} detail")),
            checked_at: checked_at.into(),
        }
    }

    #[test]
    fn case_118_health_rows_older_than_two_intervals_are_stale_and_the_verdict_says_so() {
        let run = HealthRun {
            started_at: "2026-01-01T00:00:00.000Z".into(),
            finished_at: "2026-01-01T00:00:01.000Z".into(),
            next_at: Some("2026-01-01T00:01:00.000Z".into()),
        };
        let rows = vec![row("database", "ok", "2026-01-01T00:00:00.500Z")];
        let fresh = freshness(&rows, Some(&run), at("2026-01-01T00:02:00.000Z")).unwrap();
        assert_eq!((fresh.interval_secs, fresh.age_secs), (60, 119));
        assert!(!fresh.stale);
        assert_eq!(overall(&rows, Some(&fresh), None, &[]).status, "ok");

        let stale = freshness(&rows, Some(&run), at("2026-01-01T00:02:02.000Z")).unwrap();
        assert!(stale.stale);
        let verdict = overall(&rows, Some(&stale), None, &[]);
        assert_eq!(verdict.status, "stale");
        assert!(
            verdict.reasons[0].contains("last recorded 2 min 1 s ago"),
            "{:?}",
            verdict.reasons
        );
        // No run record (an older daemon, or none yet): nothing to judge by.
        assert!(freshness(&rows, None, at("2030-01-01T00:00:00.000Z")).is_none());
    }

    #[test]
    fn case_118_a_hold_off_or_a_failed_row_is_never_ok_and_an_ended_hold_off_is_not_shown() {
        let record = HoldOffRecord {
            until: "2026-01-01T00:00:30.000Z".into(),
            status: 429,
            recorded_at: "2026-01-01T00:00:00.000Z".into(),
        };
        let held = hold_off_view(&record, at("2026-01-01T00:00:05.000Z")).unwrap();
        assert_eq!((held.remaining_secs, held.http_status), (25, 429));
        let rows = vec![row("database", "ok", "2026-01-01T00:00:00.000Z")];
        let verdict = overall(&rows, None, Some(&held), &[]);
        assert_eq!(verdict.status, "degraded");
        assert!(
            verdict.reasons[0].contains("HTTP 429"),
            "{:?}",
            verdict.reasons
        );
        assert!(hold_off_view(&record, at("2026-01-01T00:00:31.000Z")).is_none());

        let rows = vec![
            row("database", "ok", "2026-01-01T00:00:00.000Z"),
            row("storage_writes", "failed", "2026-01-01T00:00:00.000Z"),
        ];
        let verdict = overall(&rows, None, None, &[]);
        assert_eq!(verdict.status, "failed");
        assert_eq!(
            verdict.reasons,
            vec!["storage_writes failed: storage_writes detail"]
        );
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
