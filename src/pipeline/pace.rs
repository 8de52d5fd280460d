//! When the pipeline's workers act: the shared worker loop with each worker's idle wait (until
//! its earliest due row), unix-millisecond due times, the reconciliation grace period, the
//! per-item backoff and an item's poll plan. Used by every worker; uses none of them.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::classify::{Backoff, MIN_DELAY};
use super::schedule::PollPlan;
use crate::app::{App, StepOutcome};
use crate::db::{self, Item};
use crate::worker::{self, Turn, Worker};

/// How often a paused worker asks again whether it may work (the breaker's probe is sent from
/// that gate; lifting a pause also wakes every worker).
const PAUSED_INTERVAL: Duration = Duration::from_secs(1);

/// The longest an idle worker sleeps: it sleeps until its next row is due, and a wake-up comes
/// sooner when new work arrives, so this only bounds the cost of a missed wake-up.
const IDLE_CAP: Duration = Duration::from_secs(30);

/// A failed step waits 2 s, doubling up to 32 s.
const STEP_BACKOFF: worker::Backoff = worker::Backoff {
    first: Duration::from_secs(2),
    cap: Duration::from_secs(32),
};

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

/// A pipeline worker on the shared loop (`worker::run`): after work it steps again at once;
/// idle, it sleeps until its next due row (or `wake`); paused, it asks again in a second.
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
    let worker = Worker {
        name,
        heartbeats: &app.heartbeats,
        status: &app.wake.status,
        cancel,
        backoff: STEP_BACKOFF,
    };
    worker::run(
        worker,
        || {
            let stepped = step();
            async move {
                let outcome = stepped.await?;
                let next = match outcome {
                    StepOutcome::Worked(_) => None,
                    StepOutcome::Idle => Some(idle_wait(app, due).await),
                    StepOutcome::Paused => Some(PAUSED_INTERVAL),
                };
                Ok(Turn { outcome, next })
            }
        },
        |_| worker::notified(wake),
    )
    .await
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

/// The poll plan of an item: from its own `analysis-time`, else the configured default one.
pub(crate) fn plan_for(app: &App, item: &Item) -> PollPlan {
    PollPlan::new(&app.config.poll, super::params::analysis_time(app, item))
}
