//! The pipeline: submit → poll → download → index.
//!
//! Four workers move items through the state machine of reliability.md §2.1, each as a loop
//! (`run`) around a one-step function (`run_once`) that tests drive directly:
//!
//! | worker | claims | does |
//! | --- | --- | --- |
//! | [`submit`] | `queued` items (outbox row with a new attempt key committed first) | server dedup lookup, `submission/new` (plain, chunked or URL) |
//! | [`reconcile`] | `submitting` items whose time has come | looks every attempt key up ([`lookup`]: search and the submission list) within the look-up window, adopts or requeues; deletes dangling and orphaned chunked submissions and duplicates |
//! | [`poll`] | `submitted` items due for a poll | `submission/info` (or `analysis/info`), adaptive schedule, deadline |
//! | [`download`] | `pending` report rows | `analysis/download` into `reports/<webid>/<type>.<ext>`, then the item is `done` |
//!
//! Every failed API call goes through [`classify`]; pauses (maintenance, invalid key, terms,
//! quota, disk) are checked before claiming and never consume attempts.
//!
//! # Crash points (reliability.md §2.2, the part this module owns)
//!
//! [`recover`] runs at start-up, before READY and before any worker:
//!
//! | found at start-up | what happens | worst case |
//! | --- | --- | --- |
//! | item `queued` | normal scheduling | none |
//! | item `submitting`, attempt outcome NULL (crash after the intent commit, maybe mid-request) | rescheduled to `now + reconcile_grace`; [`reconcile`] looks every attempt key up (search and submission list) until `reconcile_window_secs` have passed: found → adopted, not found → `queued` with a new key (no attempt consumed: the crash was not the item's fault) | an extra submission only if the server hides it from search *and* its list for the whole window; deleted when it shows up before the item finishes |
//! | item `submitting`, attempt `unknown` (lost reply) | the same; the attempt counts; a chunked creation's empty submission is found by name and time and deleted | as above |
//! | item `submitting`, attempt `chunked_pending` with a submission id | [`reconcile`] asks `submission/info`: no analyses yet (chunks missing) → `submission/delete`, then a new attempt; anything else → adopted | none (a complete upload whose reply was lost may be deleted and sent again) |
//! | item `submitted` | due at once: a poll claim's lease (10 min) left by the crash cannot be told from a scheduled poll, so every `submitted` item is polled again now | 1 extra poll |
//! | poll saw `finished`, crash before the commit | polled again | 1 extra poll |
//! | report `downloading` (its `.part` file is removed by the daemon through the store) | back to `pending`, downloaded again | re-transfer |
//! | item `downloading`, every report already settled (crash between the last `report_stored` and the item's completion) | `done` at once | none |
//! | report renamed into place, crash before `stored` | back to `pending` (it was `downloading`), downloaded again and renamed over the same `<type>.<ext>` name | re-transfer; still one file per (analysis, type) |
//!
//! # Decisions
//!
//! * **Adoption with or without a submission id.** Reconciliation finds analyses by the key in
//!   their comments. Found through the submission list (`submission/info` of a listed
//!   submission), the item is adopted with that submission id; found only by `analysis/search`,
//!   which does not say which submission they belong to, it becomes `submitted` without one
//!   (unless the attempt row recorded the id: chunked uploads record it before the first
//!   chunk), and [`poll`] follows its recorded analyses with `analysis/info` instead of
//!   `submission/info`. The server dedup lookup adopts the latter way.
//! * **Look-up window (RELIABILITY case 115).** An attempt that may have reached the server is
//!   looked for until `pipeline.reconcile_window_secs` (default 1 h) since it began have
//!   passed before a new attempt is made; the price is that an item whose request really never
//!   arrived waits that long (a crash mid-submission, a 5xx from a proxy).
//! * **Pauses.** A pause-class error (maintenance, invalid key, terms, quota) puts the global
//!   pause in force through `App::pause` and gives the item back (`requeue` without counting,
//!   or the report back to `pending` without counting). Workers check `may_submit` /
//!   `may_call_api` / `may_write_locally` before claiming and return `StepOutcome::Paused`.
//!   Lifting a pause is the health check's job (`App::resume`).
//! * **Unknown outcomes count as attempts** (a request went out and failed), so a server that
//!   answers every submission with a 500 ends in `failed` after `pipeline.max_attempts`
//!   instead of looping forever; an attempt orphaned by a crash does not count.

pub mod breaker;
pub mod classify;
pub mod download;
pub mod lookup;
pub mod poll;
pub mod reconcile;
pub mod schedule;
pub mod submit;

use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::{App, StepOutcome};
use crate::db;

pub use classify::{Action, Backoff, Call, MIN_DELAY, classify};
pub use schedule::PollPlan;

/// How often a paused worker asks again whether it may work (the breaker's probe is sent from
/// that gate; lifting a pause also wakes every worker).
const PAUSED_INTERVAL: Duration = Duration::from_secs(1);

/// The longest an idle worker sleeps: it sleeps until its next row is due, and a wake-up comes
/// sooner when new work arrives, so this only bounds the cost of a missed wake-up.
const IDLE_CAP: Duration = Duration::from_secs(30);

/// Where a worker's next due time is read from while it is idle.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DueFrom {
    Items(db::ItemState),
    Reports,
}

/// How long an idle worker may sleep: until the earliest due row of its kind, within
/// [`MIN_DELAY`, `IDLE_CAP`]. Database errors give the cap's floor (the next step reports them).
async fn idle_wait(app: &App, due: DueFrom) -> Duration {
    let next = match due {
        DueFrom::Items(state) => db::pipeline::next_due_item(&app.db, state).await,
        DueFrom::Reports => db::pipeline::next_due_report(&app.db).await,
    };
    match next {
        Ok(Some(at)) => {
            let ms = u64::try_from(at.saturating_sub(db::now_ms())).unwrap_or(0);
            Duration::from_millis(ms).clamp(MIN_DELAY, IDLE_CAP)
        }
        Ok(None) => IDLE_CAP,
        Err(_) => PAUSED_INTERVAL,
    }
}

/// What start-up recovery found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Reports that were being downloaded, back to `pending`.
    pub interrupted_downloads: u64,
    /// Items left in `submitting`, due for reconciliation after the grace period.
    pub unreconciled_submissions: u64,
    /// `submitted` items made due now (a crash leaves poll claims' leases behind).
    pub resumed_polls: u64,
    /// `downloading` items whose reports were all settled before the crash, now `done`.
    pub completed_items: u64,
}

/// Start-up recovery of the pipeline's state (see the crash-point table above). Call it once,
/// before the workers start: it assumes nothing is in flight. The daemon removes temporary
/// files through `Store::remove_temporaries`.
pub async fn recover(app: &App) -> anyhow::Result<RecoveryReport> {
    let interrupted_downloads = db::analyses::reset_interrupted_downloads(&app.db).await?;
    let grace = grace(app);
    let unreconciled_submissions = db::pipeline::reschedule_submitting(&app.db, at(grace)).await?;
    let resumed_polls = db::pipeline::resume_polling(&app.db, db::now_ms()).await?;
    let completed_items = db::pipeline::complete_settled_downloads(&app.db).await?;
    let report = RecoveryReport {
        interrupted_downloads,
        unreconciled_submissions,
        resumed_polls,
        completed_items,
    };
    if report != RecoveryReport::default() {
        info!(
            interrupted_downloads,
            unreconciled_submissions,
            resumed_polls,
            completed_items,
            "pipeline recovery: interrupted work rescheduled"
        );
    }
    Ok(report)
}

/// Runs all four workers until `cancel` fires.
pub async fn run(app: App, cancel: CancellationToken) -> anyhow::Result<()> {
    tokio::try_join!(
        submit::run(app.clone(), cancel.clone()),
        reconcile::run(app.clone(), cancel.clone()),
        poll::run(app.clone(), cancel.clone()),
        download::run(app, cancel),
    )?;
    Ok(())
}

/// The loop shared by the workers: one step, then immediately again if it worked, else wait
/// for the wake-up, the idle interval or cancellation. Errors are logged and backed off,
/// never returned: a worker that stops is a bug.
///
/// The worker beats before every step; before a wait it records until when it sleeps
/// (`Heartbeats::sleeping_until`), so the watchdog knows it is alive without the sleep being
/// cut into one-second pieces (idle wake-ups cost CPU for nothing, P6).
pub(crate) async fn worker_loop<F, Fut>(
    app: &App,
    cancel: &CancellationToken,
    name: &'static str,
    wake: Option<&Notify>,
    due: DueFrom,
    mut step: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<StepOutcome>>,
{
    let mut failures: u32 = 0;
    let mut last = Outcome::Idle;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        app.heartbeats.beat(name);
        let (outcome, wait) = match step().await {
            Ok(StepOutcome::Worked(_)) => {
                failures = 0;
                (Outcome::Worked, None)
            }
            Ok(StepOutcome::Idle) => {
                failures = 0;
                (Outcome::Idle, Some(idle_wait(app, due).await))
            }
            Ok(StepOutcome::Paused) => {
                failures = 0;
                (Outcome::Paused, Some(PAUSED_INTERVAL))
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let wait = Duration::from_secs(1u64 << failures.min(5));
                warn!(worker = name, error = %format!("{error:#}"), ?wait, "worker step failed; backing off");
                (Outcome::Failed, Some(wait))
            }
        };
        if outcome.changes_status(last) {
            app.wake.status.notify_one();
        }
        last = outcome;
        let Some(wait) = wait else {
            tokio::task::yield_now().await;
            continue;
        };
        app.heartbeats.sleeping_until(name, wait);
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = async {
                match wake {
                    Some(notify) => notify.notified().await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// What one step of a worker loop came to, for the `STATUS=` refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Worked,
    Idle,
    Paused,
    Failed,
}

impl Outcome {
    /// Whether the `STATUS=` line may have changed: work moved items, or the worker went from
    /// idle to paused or failing (a pause, the circuit breaker) or back. A worker that stays
    /// idle, or paused, changes nothing there.
    fn changes_status(self, last: Outcome) -> bool {
        self == Outcome::Worked || self != last
    }
}

/// Unix milliseconds `delay` from now.
pub(crate) fn at(delay: Duration) -> i64 {
    db::now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2))
}

/// The reconciliation grace period (floored like every configured delay).
pub(crate) fn grace(app: &App) -> Duration {
    Duration::from_secs(app.config.pipeline.reconcile_grace_secs).max(MIN_DELAY)
}

pub(crate) fn backoff(app: &App) -> Backoff {
    Backoff::from_config(&app.config.pipeline)
}

/// The report types downloaded for every analysis: `reports.types`, plus `sample` and the
/// archives when configured, without repeats.
pub fn report_types(config: &crate::config::Config) -> Vec<String> {
    use crate::api::ReportType;
    let mut types: Vec<String> = Vec::new();
    let sample = config.reports.sample.then_some(ReportType::SAMPLE);
    let archives = config.reports.archives.then_some(ReportType::ARCHIVES);
    let extra = sample
        .into_iter()
        .chain(archives.into_iter().flatten().copied());
    for t in config.reports.types.iter().map(String::as_str).chain(extra) {
        let t = t.trim();
        if !t.is_empty() && !types.iter().any(|x| x == t) {
            types.push(t.to_owned());
        }
    }
    types
}

/// Text from outside (a server file name, a message) made safe for one log line or a DB note.
pub(crate) fn escaped(text: &str, max_chars: usize) -> String {
    text.chars()
        .flat_map(char::escape_default)
        .take(max_chars)
        .collect()
}

/// Waits for all `futures` and returns the first error, after every one has finished (so a
/// failing item never abandons its siblings mid-flight).
pub(crate) async fn all_done<Fut>(futures: impl IntoIterator<Item = Fut>) -> anyhow::Result<()>
where
    Fut: Future<Output = anyhow::Result<()>>,
{
    let results = futures_util::future::join_all(futures).await;
    let mut first = None;
    for result in results {
        if let Err(error) = result {
            warn!(error = %format!("{error:#}"), "pipeline step failed");
            first.get_or_insert(error);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_types_add_sample_and_archives_once() {
        let mut config = crate::config::Config::default();
        assert_eq!(report_types(&config), ["html", "irjsonfixed", "xml"]);
        config.reports.sample = true;
        config.reports.archives = true;
        config.reports.types.push("html".into());
        assert_eq!(
            report_types(&config),
            ["html", "irjsonfixed", "xml", "sample", "bins", "unpackpe"]
        );
    }

    #[test]
    fn only_work_or_a_change_of_outcome_refreshes_the_status_line() {
        use Outcome::*;
        assert!(Worked.changes_status(Worked));
        assert!(Worked.changes_status(Idle));
        assert!(Paused.changes_status(Idle));
        assert!(Idle.changes_status(Failed));
        assert!(!Idle.changes_status(Idle));
        assert!(!Paused.changes_status(Paused));
        assert!(!Failed.changes_status(Failed));
    }

    #[test]
    fn escaped_text_is_one_printable_line() {
        assert_eq!(escaped("a\nb\0../x", 100), "a\\nb\\u{0}../x");
        assert_eq!(escaped("abcdef", 3), "abc");
    }
}
