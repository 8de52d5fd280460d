//! The periodic health check (reliability.md §2.4): server online, API key valid, quota left,
//! database writable (and its WAL not grown behind a long reader, catalog 31), free disk, a
//! spot check of stored files (catalog 34), watcher alive. Each result is stored in the `health` table
//! (`jbxd status` shows it) and drives the global pause: a cause seen puts its pause in force,
//! a cause seen cleared lifts it, which is the only way pauses end. Also: the last storage
//! write (`storage_writes`), and a `Retry-After` hold-off reported instead of waited out
//! (RELIABILITY.md case 118). One log line per change of a check's status, not per run.
//!
//! It runs on `health.schedule` ([`super::health_job`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::{ApiError, ApiErrorKind};
use crate::app::{App, PauseReason};
use crate::db;
use crate::intake::watcher::{WatchStatus, WatcherLiveness};

/// How long the database write probe may take before the database counts as unwritable.
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Above this size the WAL counts as grown (catalog 31). SQLite checkpoints every ~4 MiB of
/// WAL, so a WAL this large means checkpoints have been held off for a long time.
const WAL_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

/// Stored samples and stored reports each picked at random per run (catalog 34).
const SPOT_CHECK_PER_KIND: usize = 2;

/// Bytes hashed per spot check at most: a file that does not fit the rest of the budget gets
/// the type, size and mode checks only, so a run never reads gigabytes.
const SPOT_CHECK_HASH_BUDGET: u64 = 64 * 1024 * 1024;

/// `daemon_state` key of the stored files found damaged: re-checked every run, so storage
/// stays degraded until they are restored (a random pick would miss them again), and each
/// problem is logged once, when first found.
const STORAGE_PROBLEMS_KEY: &str = "storage_problems";

/// At most this many damaged files are remembered (a wiped tree would otherwise grow the
/// list by every pick); the ones past it are neither logged nor remembered, but the detail
/// still counts them.
const MAX_REMEMBERED_PROBLEMS: usize = 100;

/// The state of one check, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Working with a handicap (maintenance, disk low, quota used up, polling).
    Degraded,
    /// No progress possible (invalid key, database unwritable).
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Failed => "failed",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

/// The result of one health run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthReport {
    pub checks: Vec<Check>,
    /// Why the results could not all be stored (the database refused the write), if so:
    /// `jbxd status` would show the previous results, so the daemon says it from memory
    /// (`STATUS=`, the log) and the stale `checked_at` tells the CLI (RELIABILITY.md case 118).
    pub unrecorded: Option<String>,
}

impl HealthReport {
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The worst status of all checks.
    pub fn overall(&self) -> Status {
        let mut worst = Status::Ok;
        for check in &self.checks {
            match check.status {
                Status::Failed => return Status::Failed,
                Status::Degraded => worst = Status::Degraded,
                Status::Ok => {}
            }
        }
        worst
    }

    fn push(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }
}

/// One health run without a watcher to ask (tests, or a process without intake).
pub async fn check_once(app: &App) -> HealthReport {
    check(app, None).await
}

/// One health run: every check, results stored, pauses put in force or lifted.
///
/// The local checks run and are stored first, the server's after: a server that keeps
/// requests waiting (a `Retry-After` hold-off, timeouts) must not freeze the rows of the
/// database, the disk and the storage (RELIABILITY.md case 118).
pub async fn check(app: &App, watcher: Option<&WatcherLiveness>) -> HealthReport {
    let mut local = HealthReport::default();
    check_db(app, &mut local, WAL_LIMIT_BYTES).await;
    check_disk(app, &mut local).await;
    check_storage(app, &mut local, SPOT_CHECK_HASH_BUDGET).await;
    check_storage_writes(app, &mut local);
    check_watcher(app, &mut local, watcher);
    let stored_local = store(app, &local).await;

    let mut report = HealthReport::default();
    check_api(app, &mut report).await;
    check_terms(app, &mut report).await;
    let stored_remote = store(app, &report).await;
    report.checks.extend(local.checks);
    report.unrecorded = stored_local.err().or(stored_remote.err());
    report
}

/// The server, the key and the quota; during a `Retry-After` hold-off, only what it is (no
/// request would go out before its end, and the check would wait with it).
async fn check_api(app: &App, report: &mut HealthReport) {
    if let Some(hold_off) = app.client.hold_off() {
        held_off(report, hold_off);
        return;
    }
    let mut changes = app.client.hold_off_changes();
    changes.mark_unchanged();
    let mut api = HealthReport::default();
    let checked = {
        let run = async {
            if check_server(app, &mut api).await {
                check_account(app, &mut api).await;
            }
        };
        tokio::select! {
            _ = run => true,
            // A hold-off began mid-check: say so instead of waiting it out.
            _ = changes.changed() => false,
        }
    };
    match (checked, app.client.hold_off()) {
        (false, Some(hold_off)) => held_off(report, hold_off),
        _ => report.checks.extend(api.checks),
    }
}

fn held_off(report: &mut HealthReport, hold_off: crate::api::HoldOff) {
    let until =
        chrono::Utc::now() + chrono::Duration::from_std(hold_off.remaining).unwrap_or_default();
    report.push(
        "server",
        Status::Degraded,
        format!(
            "held off: the server answered HTTP {} with Retry-After; no API request before {} \
             ({} s from now)",
            hold_off.status,
            db::time_text(until),
            hold_off.remaining.as_secs()
        ),
    );
}

/// The last storage write (staging copy, publish, report) failed: storage is not usable,
/// whatever the free space says (RELIABILITY.md case 118).
fn check_storage_writes(app: &App, report: &mut HealthReport) {
    match app.store.last_write_failure() {
        Some(failure) => report.push(
            "storage_writes",
            Status::Failed,
            format!(
                "the last write to data_dir failed: {failure}; dropped files stay in the drop \
                 folder and reports are retried until writes succeed again"
            ),
        ),
        None => report.push(
            "storage_writes",
            Status::Ok,
            "no failed write since the last successful one",
        ),
    }
}

fn check_watcher(app: &App, report: &mut HealthReport, watcher: Option<&WatcherLiveness>) {
    if let Some(watcher) = watcher {
        match watcher.status() {
            WatchStatus::Watching => report.push(
                "watcher",
                Status::Ok,
                format!("watching {}", app.config.drop_dir.display()),
            ),
            WatchStatus::Polling { reason } => report.push(
                "watcher",
                Status::Degraded,
                format!("polling the drop folder: {reason}"),
            ),
        }
    }
}

async fn set_pause(app: &App, reason: PauseReason, on: bool, detail: &str) {
    let result = if on {
        app.pause(reason, detail).await
    } else {
        app.resume(reason).await
    };
    if let Err(error) = result {
        tracing::error!(%error, ?reason, "cannot record the pause state");
    }
}

/// `server/online`. Returns whether the server answered and is online (the account checks
/// only make sense then).
async fn check_server(app: &App, report: &mut HealthReport) -> bool {
    // While the breaker is open this is one of its probes: a single request, no retries.
    let online = if app.breaker_open() {
        app.client.probe_online().await
    } else {
        app.client.server_online().await
    };
    match online {
        Ok(true) => {
            set_pause(app, PauseReason::Maintenance, false, "").await;
            report.push("server", Status::Ok, "online");
            true
        }
        Ok(false) => {
            maintenance(app, report, "the server's online check reports maintenance").await;
            false
        }
        Err(e) if e.kind() == Some(ApiErrorKind::ServerOffline) => {
            maintenance(app, report, &e.server_message()).await;
            false
        }
        // server/online needs the key too; the account check says what is wrong with it.
        Err(e) if e.kind() == Some(ApiErrorKind::InvalidApiKey) => {
            set_pause(app, PauseReason::Maintenance, false, "").await;
            report.push("server", Status::Ok, "reachable");
            true
        }
        Err(e) => {
            // Unreachable or erroring: the workers' own retries cope; nothing to pause.
            report.push("server", Status::Degraded, format!("unreachable: {e}"));
            false
        }
    }
}

async fn maintenance(app: &App, report: &mut HealthReport, detail: &str) {
    set_pause(app, PauseReason::Maintenance, true, detail).await;
    report.push("server", Status::Degraded, format!("maintenance: {detail}"));
}

fn is_key_refusal(e: &ApiError) -> bool {
    e.kind() == Some(ApiErrorKind::InvalidApiKey)
}

/// The key (and, on the cloud, the quota): `account/info`, or `server/info` on on-premise
/// servers that do not have `account/info`.
async fn check_account(app: &App, report: &mut HealthReport) {
    match app.client.account_info().await {
        Ok(info) => {
            key_valid(app, report).await;
            let mut exhausted = None;
            let mut parts = Vec::new();
            if let Some(quotas) = &info.quota {
                for (period, quota) in [("daily", &quotas.daily), ("monthly", &quotas.monthly)] {
                    let Some(quota) = quota else { continue };
                    match (quota.remaining, quota.limit) {
                        (Some(remaining), limit) => {
                            parts.push(format!("{period} {remaining} left"));
                            if remaining <= 0 && exhausted.is_none() {
                                exhausted = Some(format!(
                                    "{period} quota used up (limit {})",
                                    limit.map_or("?".into(), |l| l.to_string())
                                ));
                            }
                        }
                        (None, _) => parts.push(format!("{period} unlimited")),
                    }
                }
            }
            match exhausted {
                Some(detail) => {
                    set_pause(app, PauseReason::QuotaExceeded, true, &detail).await;
                    report.push("quota", Status::Degraded, detail);
                }
                None => {
                    set_pause(app, PauseReason::QuotaExceeded, false, "").await;
                    let detail = if parts.is_empty() {
                        "no quota reported".to_owned()
                    } else {
                        parts.join(", ")
                    };
                    report.push("quota", Status::Ok, detail);
                }
            }
        }
        Err(e) if is_key_refusal(&e) => key_invalid(app, report, &e).await,
        Err(e)
            if matches!(
                e.kind(),
                Some(ApiErrorKind::UnknownEndpoint | ApiErrorKind::PermissionDenied)
            ) =>
        {
            // On-premise: no account/info and no quota; server/info proves the key.
            match app.client.server_info().await {
                Ok(_) => {
                    key_valid(app, report).await;
                    set_pause(app, PauseReason::QuotaExceeded, false, "").await;
                    report.push("quota", Status::Ok, "not applicable (on-premise)");
                }
                Err(e) if is_key_refusal(&e) => key_invalid(app, report, &e).await,
                Err(e) => report.push("api_key", Status::Degraded, format!("cannot check: {e}")),
            }
        }
        Err(e) => report.push("api_key", Status::Degraded, format!("cannot check: {e}")),
    }
}

async fn key_valid(app: &App, report: &mut HealthReport) {
    set_pause(app, PauseReason::InvalidApiKey, false, "").await;
    report.push("api_key", Status::Ok, "accepted");
}

async fn key_invalid(app: &App, report: &mut HealthReport, e: &ApiError) {
    let detail = format!("refused: {}", e.server_message());
    set_pause(app, PauseReason::InvalidApiKey, true, &detail).await;
    report.push("api_key", Status::Failed, detail);
}

/// Acceptance of the terms cannot be tested without submitting; the pause (set by a refused
/// submission) is lifted once `api.accept_tac` is on.
async fn check_terms(app: &App, report: &mut HealthReport) {
    let paused = app
        .pauses()
        .await
        .map(|p| p.iter().any(|p| p.reason == PauseReason::TermsNotAccepted))
        .unwrap_or(false);
    if app.config.api.accept_tac {
        if paused {
            set_pause(app, PauseReason::TermsNotAccepted, false, "").await;
        }
        report.push("terms", Status::Ok, "accepted (api.accept_tac = true)");
    } else if paused {
        report.push(
            "terms",
            Status::Failed,
            "the server requires accepting the terms: set api.accept_tac = true",
        );
    } else {
        report.push(
            "terms",
            Status::Ok,
            "not accepted (only the cloud requires it)",
        );
    }
}

/// The database: still the file at its path, writable, and its WAL below `wal_limit` bytes.
async fn check_db(app: &App, report: &mut HealthReport, wal_limit: u64) {
    // SQLite keeps writing to a deleted file's inode without complaint: look at the path
    // (catalog 29), or the probe below would say all is well while nothing is kept.
    let db = app.db.clone();
    if tokio::task::spawn_blocking(move || db.file_replaced())
        .await
        .unwrap_or(true)
    {
        report.push(
            "database",
            Status::Failed,
            format!(
                "the database file {} is gone or was replaced while jbxd runs; stop jbxd \
                 and restore it",
                app.db.path().display()
            ),
        );
        return;
    }
    let (status, mut detail) =
        match tokio::time::timeout(DB_PROBE_TIMEOUT, app.db.write_probe()).await {
            Ok(Ok(took)) => (
                if took > Duration::from_secs(1) {
                    Status::Degraded
                } else {
                    Status::Ok
                },
                format!("writable (write lock in {} ms)", took.as_millis()),
            ),
            Ok(Err(e)) => (Status::Failed, format!("not writable: {e}")),
            Err(_) => (
                Status::Failed,
                format!(
                    "write lock not obtained within {} s",
                    DB_PROBE_TIMEOUT.as_secs()
                ),
            ),
        };
    if status == Status::Failed {
        report.push("database", status, detail);
        return;
    }
    let wal = wal_path(app.db.path());
    match wal_size(app, &wal, wal_limit).await {
        Ok(bytes) if bytes > wal_limit => {
            detail = format!(
                "{detail}; the WAL {} is {} MiB, over {} MiB: a long-lived reader (e.g. an \
                 open sqlite3 shell or a backup) keeps the WAL from being checkpointed; end \
                 it and the WAL is truncated at the next check",
                wal.display(),
                mib(bytes),
                mib(wal_limit)
            );
            report.push("database", Status::Degraded, detail);
        }
        Ok(bytes) => report.push(
            "database",
            status,
            format!("{detail}; WAL {} MiB", mib(bytes)),
        ),
        Err(e) => report.push(
            "database",
            status,
            format!("{detail}; cannot stat the WAL {}: {e}", wal.display()),
        ),
    }
}

fn mib(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

/// `<db>-wal`, SQLite's name for the WAL of the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The WAL's size in bytes (0 when there is none). A WAL over `limit` gets one chance to
/// shrink first: a passive checkpoint (never waits, never blocks writers) and, if that folded
/// every frame, i.e. the reader that held it back is gone, a truncation that gives up at once
/// if anyone is busy. SQLite reuses a WAL but never shrinks it, so without this a WAL grown
/// behind a reader that has since gone would be reported until the daemon restarts.
async fn wal_size(app: &App, wal: &Path, limit: u64) -> std::io::Result<u64> {
    let bytes = file_size(wal).await?;
    if bytes <= limit {
        return Ok(bytes);
    }
    match db::health::wal_checkpoint_passive(&app.db).await {
        Ok(checkpoint) if checkpoint.complete() => {
            if let Err(error) = db::health::wal_truncate_if_idle(&app.db).await {
                tracing::debug!(%error, "cannot truncate the WAL");
            }
        }
        Ok(checkpoint) => tracing::debug!(?checkpoint, "the WAL cannot be checkpointed yet"),
        Err(error) => tracing::debug!(%error, "cannot checkpoint the WAL"),
    }
    file_size(wal).await
}

async fn file_size(path: &Path) -> std::io::Result<u64> {
    match tokio::fs::metadata(path).await {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// A stored file found not to match its record, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct StorageProblem {
    file: db::health::StoredFile,
    problem: String,
}

/// The storage spot check (catalog 34: a stored file deleted by an antivirus, or altered): a
/// few random stored samples and reports, plus those found damaged before, verified against
/// their records (exists, regular, size, no exec bit, sha256 within `hash_budget` bytes).
/// Nothing is repaired: the operator restores from backup.
async fn check_storage(app: &App, report: &mut HealthReport, hash_budget: u64) {
    let known = known_storage_problems(app).await;
    let picked = match db::health::pick_stored_files(&app.db, SPOT_CHECK_PER_KIND).await {
        Ok(picked) => picked,
        Err(e) => {
            report.push(
                "storage",
                Status::Degraded,
                format!("cannot pick stored files to check: {e}"),
            );
            return;
        }
    };
    let mut files: Vec<db::health::StoredFile> = known.iter().map(|p| p.file.clone()).collect();
    for file in picked {
        if !files.contains(&file) {
            files.push(file);
        }
    }
    let checked = files.len();
    let store = app.store.clone();
    let problems =
        match tokio::task::spawn_blocking(move || inspect(&store, files, hash_budget)).await {
            Ok(problems) => problems,
            Err(e) => {
                report.push(
                    "storage",
                    Status::Degraded,
                    format!("spot check failed: {e}"),
                );
                return;
            }
        };
    note_storage_problems(app, &known, &problems).await;
    if problems.is_empty() {
        report.push(
            "storage",
            Status::Ok,
            format!("{checked} stored files spot-checked, all match their records"),
        );
        return;
    }
    let listed: Vec<String> = problems
        .iter()
        .take(5)
        .map(|p| format!("{}: {}", app.store.abs(&p.file.path).display(), p.problem))
        .collect();
    let more = problems.len().saturating_sub(listed.len());
    report.push(
        "storage",
        Status::Degraded,
        format!(
            "{} stored file(s) do not match their records: {}{}; restore them from backup \
             (jbxd does not repair them)",
            problems.len(),
            listed.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ),
    );
}

/// Verifies `files` (on a blocking thread), hashing at most `hash_budget` bytes in all.
fn inspect(
    store: &crate::storage::Store,
    files: Vec<db::health::StoredFile>,
    mut hash_budget: u64,
) -> Vec<StorageProblem> {
    let mut problems = Vec::new();
    for file in files {
        let size = u64::try_from(file.size).unwrap_or(u64::MAX);
        let problem = match store.inspect(&file.path, size, &file.sha256, hash_budget) {
            Ok(check) if check.is_ok() => {
                if size <= hash_budget {
                    hash_budget -= size;
                }
                continue;
            }
            Ok(check) => check.to_string(),
            Err(e) => format!("cannot check: {e}"),
        };
        problems.push(StorageProblem { file, problem });
    }
    problems
}

async fn known_storage_problems(app: &App) -> Vec<StorageProblem> {
    match db::health::get_state(&app.db, STORAGE_PROBLEMS_KEY).await {
        Ok(Some(json)) => serde_json::from_str(&json).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Logs each problem not seen in the last run and each one that is gone, and remembers this
/// run's problems for the next.
async fn note_storage_problems(app: &App, known: &[StorageProblem], found: &[StorageProblem]) {
    let found = &found[..found.len().min(MAX_REMEMBERED_PROBLEMS)];
    for p in found.iter().filter(|p| !known.contains(p)) {
        tracing::warn!(
            path = %app.store.abs(&p.file.path).display(),
            problem = %p.problem,
            "storage spot check: a stored file does not match its record"
        );
    }
    for p in known
        .iter()
        .filter(|k| !found.iter().any(|f| f.file == k.file))
    {
        tracing::info!(
            path = %app.store.abs(&p.file.path).display(),
            "storage spot check: a file found damaged earlier matches its record again"
        );
    }
    if known == found {
        return;
    }
    let stored = if found.is_empty() {
        db::health::clear_state(&app.db, STORAGE_PROBLEMS_KEY).await
    } else {
        let json = serde_json::to_string(found).unwrap_or_default();
        db::health::set_state(&app.db, STORAGE_PROBLEMS_KEY, &json).await
    };
    if let Err(error) = stored {
        tracing::error!(%error, "cannot record the storage spot check's findings");
    }
}

async fn check_disk(app: &App, report: &mut HealthReport) {
    let dir = app.config.data_dir.clone();
    let min = app.config.health.min_free_disk_mb;
    let free = tokio::task::spawn_blocking(move || crate::storage::free_bytes(&dir))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match free {
        Ok(bytes) => {
            let mb = bytes / (1024 * 1024);
            if mb < min {
                let detail = format!("{mb} MiB free in data_dir, below {min} MiB");
                set_pause(app, PauseReason::DiskLow, true, &detail).await;
                report.push("disk", Status::Degraded, detail);
            } else {
                set_pause(app, PauseReason::DiskLow, false, "").await;
                report.push("disk", Status::Ok, format!("{mb} MiB free in data_dir"));
            }
        }
        Err(e) => report.push(
            "disk",
            Status::Failed,
            format!(
                "cannot stat data_dir {}: {e}",
                app.config.data_dir.display()
            ),
        ),
    }
}

/// Stores every result, logging each check whose status changed since the stored one.
/// Returns the first storing error.
async fn store(app: &App, report: &HealthReport) -> Result<(), String> {
    let mut first_error = None;
    let previous = db::health::all(&app.db).await.unwrap_or_default();
    for check in &report.checks {
        let before = previous.iter().find(|row| row.name == check.name);
        let changed = before.is_none_or(|row| row.status != check.status.as_str());
        if changed {
            let was = before.map_or("unknown", |row| row.status.as_str());
            match check.status {
                Status::Ok => {
                    tracing::info!(check = check.name, was, detail = %check.detail, "health: ok")
                }
                Status::Degraded => {
                    tracing::warn!(check = check.name, was, detail = %check.detail, "health: degraded")
                }
                Status::Failed => {
                    tracing::error!(check = check.name, was, detail = %check.detail, "health: failed")
                }
            }
        }
        let stored =
            db::health::record(&app.db, check.name, check.status.as_str(), &check.detail).await;
        // When the database is the problem, its check says so; one line per change.
        if let Err(error) = stored {
            if changed {
                tracing::error!(%error, check = check.name, "cannot store the health result");
            }
            first_error.get_or_insert_with(|| format!("cannot store the health results: {error}"));
        }
    }
    match first_error {
        None => Ok(()),
        Some(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use sqlx::{ConnectOptions as _, Connection as _};

    use crate::simulator::SimConfig;
    use crate::testing::TestEnv;

    async fn database_check(app: &App, wal_limit: u64) -> Check {
        let mut report = HealthReport::default();
        check_db(app, &mut report, wal_limit).await;
        report.get("database").unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn case_31_a_wal_grown_behind_a_long_reader_is_degraded_and_named_until_the_reader_ends()
    {
        const LIMIT: u64 = 256 * 1024;
        let env = TestEnv::start(SimConfig::default(), |_| {}).await;
        let app = &env.app;
        let wal = wal_path(app.db.path());
        let check = database_check(app, LIMIT).await;
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(check.detail.contains("WAL"), "{check:?}");

        // An operator's sqlite3 shell in the middle of a read transaction.
        let mut reader = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(app.db.path())
            .connect()
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM health")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        let filler = "x".repeat(8 * 1024);
        for i in 0..100 {
            db::health::set_state(&app.db, &format!("filler{}", i % 10), &filler)
                .await
                .unwrap();
        }
        assert!(std::fs::metadata(&wal).unwrap().len() > LIMIT);
        let check = database_check(app, LIMIT).await;
        assert_eq!(check.status, Status::Degraded, "{check:?}");
        assert!(
            check.detail.contains(&wal.display().to_string())
                && check.detail.contains("long-lived reader")
                && check.detail.contains("MiB"),
            "{check:?}"
        );

        // The reader ends: the next check folds the WAL in and truncates it.
        sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
        reader.close().await.unwrap();
        let check = database_check(app, LIMIT).await;
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(std::fs::metadata(&wal).unwrap().len() <= LIMIT);
    }
}
