//! The drop-folder scanner (RELIABILITY.md group C). The directory listing is the truth; the
//! watcher only makes the next scan come sooner.
//!
//! For each direct entry of `drop_dir`:
//! * temp names (`.*`, `*.part`, `*.tmp`, `*.crdownload`, `~*`) are skipped: they wait for
//!   their rename;
//! * subdirectories are ignored (one INFO each), never recursed; `rejected/` is ours;
//! * symlinks, FIFOs, sockets and devices are rejected from `lstat` without being opened;
//! * a regular file becomes a candidate and is taken once its size, mtime and ctime stayed the
//!   same for the settle period (or its mtime and ctime are already older than that). It is
//!   opened with `O_NOFOLLOW|O_NONBLOCK`, checked with `fstat` (one link, not empty, not too
//!   large), copied into quarantine through that descriptor while hashing, re-`fstat`ed (a
//!   change during the copy starts it over), recorded in a group commit, and only then
//!   unlinked from the folder;
//! * a file the watcher saw renamed in from a temp name (`.x.tmp` → `x`, see
//!   [`crate::intake::RenamedIn`]) skips the settle period: the rename is the writer's signal
//!   that it is complete. Everything after that is the same.
//!
//! One scan ([`run_once`]) lists the folder and `lstat`s every entry in one blocking task, then
//! hands each part of the work to the file that holds that concern:
//! * `settle.rs`: temp names, what `lstat` alone decides, and the settle rule (`Stamp`);
//! * `check.rs`: open with `O_NOFOLLOW` and the `fstat` rules;
//! * `batch.rs`: the batch pipeline — copy | publish + record | unlink, each stage in order —
//!   and the crash-safety argument that lets a source be unlinked;
//! * `reject.rs`: the reasons of a [`Rejection`], recording a rejected entry and moving it into
//!   `<drop_dir>/rejected/`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app::{App, StepOutcome};
use crate::worker::{self, Backoff, MIN_DELAY, Turn, Woken, Worker};

mod batch;
mod check;
mod reject;
mod settle;

pub use batch::BATCH;
pub use reject::REJECTED_DIR;
pub use reject::Rejection;
pub use settle::is_temp_name;

use batch::{Flusher, take_batch};
use settle::{Candidate, Examined, examine, settle_period};

const WORKER: &str = "scanner";

type Hook = Arc<dyn Fn(&Path) + Send + Sync>;

/// What the scanner remembers between scans: candidates still settling, unreadable files
/// waiting out their grace period, directories already reported.
#[derive(Default)]
pub struct ScanState {
    candidates: HashMap<OsString, Candidate>,
    unreadable: HashMap<OsString, Instant>,
    dirs_reported: HashSet<(u64, u64)>,
    /// Rejected entries that could not be moved aside: recorded once, not again.
    stuck: HashSet<(OsString, u64, u64)>,
    after_copy_hook: Option<Hook>,
}

impl std::fmt::Debug for ScanState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanState")
            .field("candidates", &self.candidates.len())
            .field("unreadable", &self.unreadable.len())
            .finish_non_exhaustive()
    }
}

impl ScanState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Files seen but not yet settled.
    pub fn pending(&self) -> usize {
        self.candidates.len()
    }

    /// How long until the earliest pending candidate may have settled (`None`: nothing waits).
    pub fn next_due(&self, settle: Duration) -> Option<Duration> {
        let now = Instant::now();
        self.candidates
            .values()
            .map(|c| (c.stable_since + settle).saturating_duration_since(now))
            .min()
    }

    /// Test hook: called on the copying thread after a file was copied into quarantine and
    /// before its source is checked again (so a test can modify the source mid-take).
    #[doc(hidden)]
    pub fn set_after_copy_hook(&mut self, hook: impl Fn(&Path) + Send + Sync + 'static) {
        self.after_copy_hook = Some(Arc::new(hook));
    }
}

/// Scans at start, every `intake.scan_interval_secs`, when a pending candidate is due, and when
/// `app.wake.scan` fires, until cancelled. Errors (drop folder missing, disk trouble) are
/// logged once per distinct message and retried; they never end the loop.
pub async fn run(app: App, cancel: CancellationToken) -> anyhow::Result<()> {
    let interval = Duration::from_secs(app.config.intake.scan_interval_secs).max(MIN_DELAY);
    let settle = settle_period(&app);
    // The step's state, borrowed by one step at a time (a lock, as the step is a future).
    let state = tokio::sync::Mutex::new(ScanState::new());
    let (app, cancel, state) = (&app, &cancel, &state);
    let worker = Worker {
        name: WORKER,
        heartbeats: &app.heartbeats,
        status: &app.wake.status,
        cancel,
        // A failing scan (the folder gone, a permission) is tried again within the interval.
        backoff: Backoff {
            first: Duration::from_secs(1),
            cap: interval.max(Duration::from_secs(1)),
        },
    };
    worker::run(
        worker,
        || async move {
            let mut state = state.lock().await;
            let outcome = scan(app, &mut state, Some(cancel)).await?;
            // The next scan: after the interval, or when the next candidate may have settled.
            let next = state
                .next_due(settle)
                .map_or(interval, |due| interval.min(due.max(MIN_DELAY)));
            Ok(Turn {
                outcome,
                next: Some(next),
            })
        },
        |_| async move {
            app.wake.scan.notified().await;
            // Events come in bursts (one per write): let a burst pass so it costs one scan.
            // A file renamed in from a temp name is complete: no need to wait for more.
            if app.renamed_in.is_empty() {
                Woken::SettleUntil(tokio::time::Instant::now() + MIN_DELAY)
            } else {
                Woken::Now
            }
        },
    )
    .await
}

/// One full scan of the drop folder.
pub async fn run_once(app: &App, state: &mut ScanState) -> anyhow::Result<StepOutcome> {
    scan(app, state, None).await
}

/// One scan: list the folder and `lstat` every entry (one blocking task), judge each entry,
/// then take the settled files in batches of [`BATCH`] (see [`take_batch`]). Every blocking
/// step works on a whole batch: per-file hand-offs between the runtime and blocking threads
/// used to dominate the cost of a large drop (BENCHMARKS.md P3).
async fn scan(
    app: &App,
    state: &mut ScanState,
    cancel: Option<&CancellationToken>,
) -> anyhow::Result<StepOutcome> {
    if !app.may_write_locally().await? {
        return Ok(StepOutcome::Paused);
    }
    let drop_dir = app.config.drop_dir.clone();
    check_drop_dir(&drop_dir)?;
    let (listing, list_error) = {
        let drop_dir = drop_dir.clone();
        tokio::task::spawn_blocking(move || list(&drop_dir)).await?
    }
    .with_context(|| format!("cannot list the drop folder {}", drop_dir.display()))?;
    let cancelled = || cancel.is_some_and(|c| c.is_cancelled());
    let mut seen = HashSet::with_capacity(listing.len());
    let mut settled = Vec::new();
    let mut worked = 0;
    for (name, meta) in listing {
        if cancelled() {
            break;
        }
        seen.insert(name.clone());
        match examine(app, state, &drop_dir, name, meta).await? {
            Examined::Done(n) => worked += n,
            Examined::Settled(name, meta) => settled.push((name, meta)),
        }
    }
    let mut settled = settled.into_iter().peekable();
    let mut flusher = Flusher::default();
    while settled.peek().is_some() && !cancelled() {
        let chunk: Vec<_> = settled.by_ref().take(BATCH).collect();
        let batch = match take_batch(app, state, &drop_dir, chunk).await {
            Ok(batch) => batch,
            Err(e) => {
                flusher.finish().await?;
                return Err(e);
            }
        };
        worked += batch.finished;
        flusher.push(app, batch.taken).await?;
        app.heartbeats.beat(WORKER);
    }
    flusher.finish().await?;
    if let Some(e) = list_error {
        // What was listed before the error is handled; the rest waits for the next scan.
        return Err(e).context("cannot list the drop folder");
    }
    // Forget what is gone (taken, renamed away, deleted by its writer).
    state.candidates.retain(|name, _| seen.contains(name));
    state.unreadable.retain(|name, _| seen.contains(name));
    state.stuck.retain(|(name, _, _)| seen.contains(name));
    Ok(if worked > 0 {
        StepOutcome::Worked(worked)
    } else {
        StepOutcome::Idle
    })
}

/// An entry's `lstat` as the listing saw it.
type Listed = (OsString, io::Result<Metadata>);

/// The folder's entries except temp names, each with its `lstat`, and the error that ended
/// the listing early, if any. Blocking.
fn list(drop_dir: &Path) -> io::Result<(Vec<Listed>, Option<io::Error>)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(drop_dir)? {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Ok((out, Some(e))),
        };
        let name = entry.file_name();
        if is_temp_name(name.as_bytes()) {
            continue;
        }
        let meta = fs::symlink_metadata(entry.path());
        out.push((name, meta));
    }
    Ok((out, None))
}

/// The drop folder must be a real directory: a symlink in its place is refused rather than
/// followed (catalog 56).
fn check_drop_dir(path: &Path) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(path)
        .with_context(|| format!("the drop folder {} is not accessible", path.display()))?;
    if meta.file_type().is_symlink() {
        anyhow::bail!(
            "the drop folder {} is a symlink; refusing to follow it (set drop_dir to the real \
             directory)",
            path.display()
        );
    }
    if !meta.is_dir() {
        anyhow::bail!("the drop folder {} is not a directory", path.display());
    }
    Ok(())
}
