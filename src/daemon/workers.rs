//! The daemon's long-running workers: spawned in one place, each named, and supervised so
//! that the first one to end (always a bug) stops the daemon (RELIABILITY.md case 98).

use std::collections::HashMap;

use anyhow::anyhow;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{db_watch, hold_off};
use crate::app::App;
use crate::{index, intake, pipeline};

/// The spawned tasks and their names.
pub(super) struct Workers {
    pub(super) set: JoinSet<anyhow::Result<()>>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl Workers {
    pub(super) fn new() -> Self {
        Self {
            set: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    pub(super) fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    pub(super) fn name(&self, id: tokio::task::Id) -> &'static str {
        self.names.get(&id).copied().unwrap_or("unknown worker")
    }
}

/// Every long-running worker of the daemon, in one place.
pub(super) fn spawn_workers(workers: &mut Workers, app: &App, cancel: &CancellationToken) {
    // First: while the database is not the file at its path, nothing else may act.
    workers.spawn(db_watch::WORKER, db_watch::run(app.clone(), cancel.clone()));
    workers.spawn(
        "intake scanner",
        intake::scanner::run(app.clone(), cancel.clone()),
    );
    workers.spawn("url intake", intake::urls::run(app.clone(), cancel.clone()));
    workers.spawn(hold_off::WORKER, hold_off::run(app.clone(), cancel.clone()));
    workers.spawn("submit", pipeline::submit::run(app.clone(), cancel.clone()));
    workers.spawn(
        "reconcile",
        pipeline::reconcile::run(app.clone(), cancel.clone()),
    );
    workers.spawn("poll", pipeline::poll::run(app.clone(), cancel.clone()));
    workers.spawn(
        "download",
        pipeline::download::run(app.clone(), cancel.clone()),
    );
    // The report password opens the AES zips of encrypted analyses. Start-up already resolved
    // it once (a bad source stops the daemon there); if it cannot be had now, such reports are
    // recorded as failed to index with the opener's reason, and nothing else changes.
    let password = crate::config::report_password(&app.config).unwrap_or_else(|error| {
        tracing::warn!(%error, "report password unavailable; encrypted reports are not indexed");
        None
    });
    workers.spawn(
        index::worker::WORKER,
        index::worker::run(app.clone(), index::READ_REPORT, password, cancel.clone()),
    );
}

/// Waits for a stop request (`None`) or the first worker to end, which is always a bug: a
/// worker returning, failing or panicking is fatal (`Some`, naming it), and the daemon stops
/// so systemd restarts it with clean state.
pub(super) async fn supervise(
    cancel: &CancellationToken,
    workers: &mut Workers,
) -> Option<anyhow::Error> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        joined = workers.set.join_next_with_id() => Some(match joined {
            Some(Ok((id, Ok(())))) => anyhow!("worker `{}` stopped unexpectedly", workers.name(id)),
            // As context, so the cause can still be told apart (`DatabaseReplaced`).
            Some(Ok((id, Err(error)))) => {
                error.context(format!("worker `{}` failed", workers.name(id)))
            }
            Some(Err(error)) => {
                let name = workers.name(error.id());
                // The panic payload is not repeated: it could carry anything a worker held.
                if error.is_panic() {
                    anyhow!("worker `{name}` panicked")
                } else {
                    anyhow!("worker `{name}` was cancelled")
                }
            }
            None => anyhow!("no workers are running"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn case_98_a_panicking_worker_is_fatal_and_named() {
        let cancel = CancellationToken::new();
        let mut workers = Workers::new();
        let waiting = cancel.clone();
        workers.spawn("patient", async move {
            waiting.cancelled().await;
            Ok(())
        });
        workers.spawn("faulty", async {
            tokio::task::yield_now().await;
            panic!("injected failure");
        });
        let error = supervise(&cancel, &mut workers).await.expect("fatal");
        assert_eq!(error.to_string(), "worker `faulty` panicked");

        let mut workers = Workers::new();
        workers.spawn("quitter", async { Ok(()) });
        let error = supervise(&cancel, &mut workers).await.expect("fatal");
        assert_eq!(error.to_string(), "worker `quitter` stopped unexpectedly");

        let mut workers = Workers::new();
        workers.spawn("patient", std::future::pending());
        cancel.cancel();
        assert!(supervise(&cancel, &mut workers).await.is_none());
    }
}
