//! The pipeline: submit → poll → download → index.
//!
//! Four workers move items through the item state machine (ARCHITECTURE.md), each as a loop
//! (`run`: the shared [`crate::worker::run`] through `pace::worker_loop`) around a one-step
//! function (`run_once`) that tests drive directly. What they share lives in [`outcomes`]
//! (what an analysis becomes, requeue or give up, report types) and [`pace`] (due times,
//! grace, backoff, poll plans); those use no worker, and no worker uses another:
//!
//! | worker | claims | does |
//! | --- | --- | --- |
//! | [`submit`] | `queued` items (outbox row with a new attempt key committed first) | server dedup lookup, `submission/new` (plain, chunked or URL) |
//! | [`reconcile`] | `submitting` items whose time has come | looks every attempt key up ([`lookup`]: search and the submission list) within the look-up window, adopts or requeues; deletes dangling and orphaned chunked submissions and duplicates |
//! | [`poll`] | `submitted` items due for a poll | `submission/info` (or `analysis/info`), adaptive schedule, deadline |
//! | [`download`] | `pending` report rows | `analysis/download` into `reports/<webid>/<type>.<ext>`, then the item is `done` |
//!
//! Every failed API call goes through [`classify`]; pauses (maintenance, invalid key, terms,
//! quota, disk) and the circuit breaker ([`crate::breaker`]) are checked before claiming and
//! never consume attempts.
//!
//! # Crash points (RELIABILITY.md group A, the part this module owns)
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

pub mod classify;
pub mod download;
pub mod lookup;
pub mod outcomes;
pub mod pace;
pub mod params;
pub mod poll;
pub mod reconcile;
pub mod schedule;
mod server_dedup;
pub mod submit;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::app::App;
use crate::db;

pub use classify::{Action, Backoff, Call, MIN_DELAY, classify};
pub use outcomes::report_types;
pub use schedule::PollPlan;
// `download` names these through its parent.
pub(crate) use outcomes::all_done;
pub(crate) use pace::{DueFrom, at, backoff, worker_loop};

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
    let grace = pace::grace(app);
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
