//! The URL-queue worker: turns producers' `url_queue` rows (`status = 'new'`) into items or
//! rejects them with a reason.
//!
//! Each batch (≤ 100 rows and ≤ [`BATCH_BYTES`]; values over their bounds are left unread and
//! the row rejected with its size, RELIABILITY.md case 117) is read, validated in memory, and
//! decided in one write transaction
//! (`db::url_queue::apply`), which re-checks that every row is still `new`: a row the producer
//! changed in between is skipped, never taken twice. Validation is pure, so no transaction is
//! held across anything but SQL.
//!
//! Producers cannot wake the worker, so it watches the database's WAL for commits
//! ([`WalWatch`]) and polls soon after each, with a slow poll as a safety net: an idle daemon
//! does not read the queue twice a second (P6).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{params, url_validate};
use crate::app::{App, StepOutcome};
use crate::db::url_queue::{self, Applied, UrlDecision};
use crate::worker::{self, Backoff, MIN_DELAY, Turn, Woken, Worker};

/// Rows read and decided per transaction.
pub const BATCH: i64 = 100;

/// Bytes of `url` and `params` per batch (RELIABILITY.md case 117), counted whether read or
/// not (deciding a row rewrites it): a hundred ordinary rows are a few kilobytes; large rows
/// make a batch end sooner, and a row larger than this comes alone.
pub const BATCH_BYTES: u64 = 1024 * 1024;

/// What one pass may read: [`BATCH`] rows, [`BATCH_BYTES`], URLs up to
/// `intake.max_url_length` and params up to [`params::MAX_PARAMS_BYTES`]. Anything larger is
/// left unread in the database and rejected with its size and the limit.
pub fn read_bounds(max_url_length: usize) -> url_queue::ReadBounds {
    url_queue::ReadBounds {
        rows: BATCH,
        url_bytes: max_url_length as u64,
        params_bytes: params::MAX_PARAMS_BYTES as u64,
        batch_bytes: BATCH_BYTES,
    }
}

const WORKER: &str = "urls";

/// How often the queue is polled while the WAL watch works and the database has not changed
/// for [`HOT_WINDOW`]: only a safety net for a lost event (or `intake.url_poll_ms` when that is
/// longer).
pub const QUIET_POLL: Duration = Duration::from_secs(5);

/// After the database changed, the queue is polled every [`EVENT_SPACING`] for this long: the
/// event comes with the producer's WAL write, and its row becomes visible only after its
/// fsync, so the first poll after the event may come too early to see it.
pub const HOT_WINDOW: Duration = Duration::from_secs(2);

/// The shortest time between two polls caused by database changes (or `intake.url_poll_ms`
/// when that is shorter): while the daemon itself writes a lot, its own writes must not make
/// the worker poll more often than the old fixed twice a second.
pub const EVENT_SPACING: Duration = Duration::from_millis(500);

/// Polls `url_queue` until cancelled: soon after the database's WAL changes (see [`WalWatch`])
/// and for [`HOT_WINDOW`] after, every [`QUIET_POLL`] otherwise, every `intake.url_poll_ms`
/// when the WAL cannot be watched, and when `app.wake.urls` fires. Errors are logged and
/// retried with a growing delay; they never end the loop.
pub async fn run(app: App, cancel: CancellationToken) -> anyhow::Result<()> {
    let interval = Duration::from_millis(app.config.intake.url_poll_ms).max(MIN_DELAY);
    let spacing = interval.min(EVENT_SPACING);
    let watch = {
        let db_path = app.config.db_path();
        // notify's watch() waits for its event-loop thread: keep it off the runtime.
        tokio::task::spawn_blocking(move || WalWatch::start(&db_path)).await?
    };
    // When the database last changed (set by the wake-up, read by the step's pacing).
    let changed_at: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let (app, watch, changed_at) = (&app, &watch, &changed_at);
    let worker = Worker {
        name: WORKER,
        heartbeats: &app.heartbeats,
        status: &app.wake.status,
        cancel: &cancel,
        backoff: Backoff {
            first: interval,
            cap: interval.max(Duration::from_secs(30)),
        },
    };
    worker::run(
        worker,
        || async move {
            let (outcome, full) = pass(app).await?;
            let hot = || {
                changed_at
                    .lock()
                    .expect("changed_at lock")
                    .is_some_and(|at| at.elapsed() < HOT_WINDOW)
            };
            let next = if full {
                // A full batch (by rows or by bytes): more rows are probably waiting.
                None
            } else if !watch.is_alive() {
                Some(interval)
            } else if hot() {
                Some(spacing)
            } else {
                Some(interval.max(QUIET_POLL))
            };
            Ok(Turn { outcome, next })
        },
        |polled| async move {
            tokio::select! {
                _ = app.wake.urls.notified() => Woken::Now,
                _ = watch.changed() => {
                    let now = Instant::now();
                    *changed_at.lock().expect("changed_at lock") = Some(now);
                    // A commit is a burst of writes: let it pass, and keep to the spacing.
                    Woken::SettleUntil((now + MIN_DELAY).max(polled + spacing))
                }
            }
        },
    )
    .await
}

/// An inotify watch on `data_dir` for writes to the database's WAL (`<db>-wal`), as a
/// wake-up hint for the URL worker: producers insert into `url_queue` from other processes
/// and cannot wake it, but every commit in WAL mode appends to that file, whoever makes it.
/// The daemon's own writes wake the worker too (one cheap poll). The directory is watched,
/// not the file, because SQLite deletes and re-creates the WAL when the last connection
/// closes. Starting never fails: without a watch (or after a watch error) the worker polls
/// every `intake.url_poll_ms` as before; a watch lost without an error (`data_dir` removed)
/// leaves the [`QUIET_POLL`] safety net.
pub struct WalWatch {
    /// Dropping it ends the watch.
    _watcher: Option<RecommendedWatcher>,
    changed: Arc<Notify>,
    alive: Arc<AtomicBool>,
}

impl WalWatch {
    /// Watches the WAL of the database at `db_path`. Blocking (briefly).
    pub fn start(db_path: &Path) -> WalWatch {
        let changed = Arc::new(Notify::new());
        // Alive from the start, so an error event during the installation is not overwritten.
        let alive = Arc::new(AtomicBool::new(true));
        let wal = wal_path(db_path);
        let watcher = match try_watch(&wal, &changed, &alive) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                alive.store(false, Ordering::SeqCst);
                tracing::warn!(wal = %wal.display(), %error,
                    "cannot watch the database for url_queue inserts; polling every intake.url_poll_ms");
                None
            }
        };
        WalWatch {
            _watcher: watcher,
            changed,
            alive,
        }
    }

    /// Whether events can be relied on (the watch is installed and reported no error).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Resolves once the WAL was written since the last call (at once if it was meanwhile).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// `<db>-wal`, where SQLite appends every commit in WAL mode.
fn wal_path(db_path: &Path) -> PathBuf {
    let mut name = OsString::from(db_path.as_os_str());
    name.push("-wal");
    PathBuf::from(name)
}

fn try_watch(
    wal: &Path,
    changed: &Arc<Notify>,
    alive: &Arc<AtomicBool>,
) -> Result<RecommendedWatcher, notify::Error> {
    let dir = wal
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let wal_name = wal.file_name().unwrap_or_default().to_os_string();
    let handler = {
        let (changed, alive) = (changed.clone(), alive.clone());
        move |event: notify::Result<Event>| match event {
            Ok(event) => {
                if event.need_rescan() || is_wal_write(&event, &wal_name) {
                    changed.notify_one();
                }
            }
            Err(error) => {
                if alive.swap(false, Ordering::SeqCst) {
                    tracing::warn!(%error, "database watch failed; polling url_queue every intake.url_poll_ms");
                }
                changed.notify_one();
            }
        }
    };
    let mut watcher = notify::recommended_watcher(handler)?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// A write to (or the creation of) the WAL; every other file of `data_dir`, and opening the
/// WAL, is no news. (Only the watched directory's entries are reported, so the name suffices.)
fn is_wal_write(event: &Event, wal_name: &OsStr) -> bool {
    matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_))
        && event.paths.iter().any(|p| p.file_name() == Some(wal_name))
}

/// One pass: reads a batch of new rows within [`read_bounds`], decides each, applies the
/// decisions in one transaction and wakes the submit worker when something was queued.
pub async fn run_once(app: &App) -> anyhow::Result<StepOutcome> {
    Ok(pass(app).await?.0)
}

/// [`run_once`], and whether the batch was full (by rows or by bytes), so more may wait.
async fn pass(app: &App) -> anyhow::Result<(StepOutcome, bool)> {
    let max_len = app.config.intake.max_url_length;
    let bounds = read_bounds(max_len);
    let url_queue::NewBatch { rows, more } = url_queue::fetch_new(&app.db, &bounds).await?;
    if rows.is_empty() {
        return Ok((StepOutcome::Idle, false));
    }
    let decisions: Vec<(i64, UrlDecision)> = rows
        .iter()
        .map(|row| (row.id, decide_row(row, max_len)))
        .collect();
    let window =
        i64::try_from(app.config.dedup.url_window_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
    let applied = url_queue::apply(&app.db, &decisions, window).await?;
    crate::crashpoint::hit("after_url_claim");
    let mut queued = 0;
    for ((queue_id, decision), outcome) in decisions.iter().zip(&applied) {
        match (decision, outcome) {
            (UrlDecision::Accept { url, .. }, Applied::Queued(item)) => {
                queued += 1;
                // `url` is the validated form: no credentials, no control characters.
                tracing::info!(item_id = item, url_queue_id = queue_id, url = %url, "url queued");
            }
            (UrlDecision::Accept { url, .. }, Applied::Duplicate { item, of }) => {
                tracing::info!(item_id = item, url_queue_id = queue_id, duplicate_of = of,
                    url = %url, "url is a duplicate of a recent item");
            }
            (UrlDecision::Reject { reason }, Applied::Rejected) => {
                // The input is not logged: it may hold credentials or control characters.
                tracing::warn!(url_queue_id = queue_id, reason = %reason, "url rejected");
            }
            (_, Applied::Skipped) => {
                tracing::info!(
                    url_queue_id = queue_id,
                    "url_queue row changed by its producer before intake took it; skipped"
                );
            }
            (_, other) => {
                tracing::debug!(url_queue_id = queue_id, outcome = ?other, "url decision applied");
            }
        }
    }
    if queued > 0 {
        app.wake.submit.notify_one();
    }
    Ok((StepOutcome::Worked(rows.len()), more))
}

/// The decision for a row as [`url_queue::fetch_new`] read it: [`decide`], after the checks on
/// what it left unread (an oversize URL is rejected by `decide` itself).
fn decide_row(row: &url_queue::NewUrl, max_len: usize) -> UrlDecision {
    let problem = row.params_problem.as_ref().map(|p| match p {
        url_queue::ParamsProblem::TooLarge { size } => params::ParamsError::TooLarge {
            size: *size,
            max: params::MAX_PARAMS_BYTES,
        },
        url_queue::ParamsProblem::NotUtf8 => params::ParamsError::NotUtf8,
    });
    let Some(problem) = problem else {
        return decide(&row.url, row.params.as_deref(), max_len);
    };
    // The URL's own rejection comes first, as in `decide`.
    match decide(&row.url, None, max_len) {
        reject @ UrlDecision::Reject { .. } => reject,
        UrlDecision::Accept { .. } => UrlDecision::Reject {
            reason: problem.to_string(),
        },
    }
}

/// The decision for one row: a valid URL with valid parameters is accepted (normalised), else
/// rejected with the first failing rule's reason.
pub fn decide(
    value: &Result<String, url_queue::UrlValueError>,
    params_json: Option<&str>,
    max_len: usize,
) -> UrlDecision {
    let url = match url_validate::validate_value(value, max_len) {
        Ok(url) => url,
        Err(e) => {
            return UrlDecision::Reject {
                reason: e.to_string(),
            };
        }
    };
    match params::parse(params_json) {
        Ok(p) => UrlDecision::Accept {
            url,
            params: p.json,
            force: p.force,
        },
        Err(e) => UrlDecision::Reject {
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn wakes_within(watch: &WalWatch, limit: Duration) -> bool {
        tokio::time::timeout(limit, watch.changed()).await.is_ok()
    }

    #[tokio::test]
    async fn a_write_to_the_wal_wakes_the_watch_and_other_files_of_data_dir_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("jbxd.db");
        let watch = WalWatch::start(&db);
        assert!(watch.is_alive());

        std::fs::write(&db, b"the database file itself").unwrap();
        std::fs::write(dir.path().join("jbxd.db-shm"), b"shared memory").unwrap();
        std::fs::create_dir(dir.path().join("reports")).unwrap();
        assert!(!wakes_within(&watch, Duration::from_millis(300)).await);

        std::fs::write(dir.path().join("jbxd.db-wal"), b"a frame").unwrap();
        assert!(wakes_within(&watch, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn without_a_directory_to_watch_the_worker_is_told_to_poll() {
        let dir = tempfile::tempdir().unwrap();
        let watch = WalWatch::start(&dir.path().join("missing").join("jbxd.db"));
        assert!(!watch.is_alive());
    }

    #[test]
    fn the_wal_is_the_database_path_with_a_suffix() {
        assert_eq!(
            wal_path(Path::new("/var/lib/jbxd/jbxd.db")),
            Path::new("/var/lib/jbxd/jbxd.db-wal")
        );
    }
}
