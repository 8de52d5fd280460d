//! The periodic health check (RELIABILITY.md group I, case 111): server online, API key valid,
//! quota left, database writable (and its WAL not grown behind a long reader, case 31), free
//! disk, a spot check of stored files (case 34), watcher alive. Each result is stored in the
//! `health` table (`jbxd status` shows it) and drives the global pause: a cause seen puts
//! its pause in force, a cause seen cleared lifts it, which is the only way pauses end. Also:
//! the last storage write (`storage_writes`), and a `Retry-After` hold-off reported instead
//! of waited out (case 118). One log line per change of a check's status, not per run.
//!
//! This file holds the report types, the order of a run and the disk check; one file per
//! concern holds the rest: [`remote`] (server, key, quota, terms: via the `api` client),
//! [`database`] (writable, replaced, WAL size), [`spot_check`] (which stored files to verify
//! and what was found; the verification is `storage`'s), [`process`] (the last storage write,
//! the watcher), [`record`] (storing results, logging changes).
//!
//! It runs on `health.schedule` ([`super::health_job`]). A rejected key is re-read once per
//! run before the pause is put in force ([`super::key_reload`]).

use crate::app::{App, PauseReason};
use crate::intake::watcher::WatcherLiveness;

mod database;
mod process;
mod record;
mod remote;
mod spot_check;

use database::{WAL_LIMIT_BYTES, check_db};
use process::{check_storage_writes, check_watcher};
use record::store;
use remote::{check_api, check_terms};
use spot_check::{SPOT_CHECK_HASH_BUDGET, check_storage};

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

    pub(super) fn push(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
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

/// Only the server's checks (server, key, quota, terms), stored: what a SIGHUP that brought a
/// new key runs at once, so the rejected-key pause ends without waiting for the schedule.
pub async fn check_remote(app: &App) -> HealthReport {
    let mut report = HealthReport::default();
    check_api(app, &mut report).await;
    check_terms(app, &mut report).await;
    report.unrecorded = store(app, &report).await.err();
    report
}

pub(super) async fn set_pause(app: &App, reason: PauseReason, on: bool, detail: &str) {
    let result = if on {
        app.pause(reason, detail).await
    } else {
        app.resume(reason).await
    };
    if let Err(error) = result {
        tracing::error!(%error, ?reason, "cannot record the pause state");
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
