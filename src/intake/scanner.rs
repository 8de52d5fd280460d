//! The drop-folder scanner (reliability.md §2.6). The directory listing is the truth; the
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
//! Settled files are taken in batches of [`BATCH`] through a pipeline ([`Flusher`]): every
//! blocking step works on a whole batch, and copying, recording and unlinking of consecutive
//! batches overlap (BENCHMARKS.md P3).
//!
//! Crash safety needs no "discovered" state: a crash before the insert leaves the source in
//! place and it is staged again (content-addressed, so no second copy); a crash after the
//! insert but before the unlink is recognised on the rescan: the source is copied and hashed
//! like any file, and an item with its identity (dev, ino, size, mtime, ctime) *and* the
//! copy's sha256 means it is already recorded, so the copy is dropped and the source removed.
//! (dev, ino, size, mtime) alone never suffices: file systems recycle inode numbers and
//! `cp -p`, `rsync -a` and `tar x` keep mtimes, so a new file can carry an old item's
//! identity; its content decides, and its ctime (which no copy tool sets) tells the same
//! content dropped again from a source still waiting to be removed (RELIABILITY.md case 112).
//! A source is unlinked only once an item naming its content is committed.
//!
//! A rejected entry is recorded (`rejected`, with its reason and exact name bytes) and renamed
//! into `<drop_dir>/rejected/<unix-ms>-<name>`: never retried, never silently deleted.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{escape_name, floor};
use crate::app::{App, StepOutcome};
use crate::db::{self, NewFile};
use crate::storage::{StagedTemp, Store};
use crate::worker::{self, Backoff, Turn, Woken, Worker};

/// jbxd's own subfolder of the drop folder, for entries moved aside.
pub const REJECTED_DIR: &str = "rejected";

/// Files recorded per transaction.
pub const BATCH: usize = 100;

const WORKER: &str = "scanner";

/// Why a drop-folder entry was refused. `Display` is the reason stored in `items.error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("symlink")]
    Symlink,
    #[error("not a regular file")]
    NotRegular,
    #[error("hard-linked file")]
    HardLinked,
    #[error("empty file")]
    Empty,
    #[error("too large ({size} bytes > {limit})")]
    TooLarge { size: u64, limit: u64 },
    #[error("permission denied")]
    PermissionDenied,
}

/// Whether a name is a temporary one that waits for its rename (browsers, rsync, Office,
/// Syncthing and most downloaders write under such names).
pub fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(b".")
        || name.starts_with(b"~")
        || name.ends_with(b".part")
        || name.ends_with(b".tmp")
        || name.ends_with(b".crdownload")
}

/// What `lstat`/`fstat` say about a file, for the stability rule and for recognising it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stamp {
    /// How the database recognises the source of a recorded item.
    fn identity(&self) -> db::items::SourceIdentity {
        (
            self.dev as i64,
            self.ino as i64,
            self.size as i64,
            self.mtime_ns,
            self.ctime_ns,
        )
    }

    fn of(m: &Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            ctime_ns: m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
        }
    }

    /// Neither data nor metadata changed for at least `settle` (going by the timestamps).
    fn quiet_for(&self, settle: Duration) -> bool {
        let now_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let last = self.mtime_ns.max(self.ctime_ns);
        now_ns.saturating_sub(last) >= settle.as_nanos() as i64
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    stamp: Stamp,
    stable_since: Instant,
    /// Whether the timestamps alone already proved it settled when first seen.
    quiet: bool,
}

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
    let interval = floor(Duration::from_secs(app.config.intake.scan_interval_secs));
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
                .map_or(interval, |due| interval.min(floor(due)));
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
                Woken::SettleUntil(tokio::time::Instant::now() + super::MIN_DELAY)
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

fn settle_period(app: &App) -> Duration {
    floor(Duration::from_millis(app.config.intake.settle_ms))
}

/// A taken file once its copy is published: what the commit and the unlink need.
struct Recorded {
    file: NewFile,
    path: PathBuf,
    stamp: Stamp,
}

/// A staged file waiting for the batch's commit.
struct Taken {
    file: NewFile,
    path: PathBuf,
    stamp: Stamp,
    /// The unpublished copy in `quarantine/incoming`.
    temp: StagedTemp,
}

/// A drop-folder source to remove once it is recorded (unless it changed since).
struct Source {
    path: PathBuf,
    stamp: Stamp,
    shown: String,
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

/// What looking at one entry came to.
enum Examined {
    /// Finished with this many entries (rejected), or nothing to do yet (0).
    Done(usize),
    /// A regular file that settled: to be taken.
    Settled(OsString, Metadata),
}

/// Looks at one listed entry: ignores directories, rejects what is not a regular file, and
/// applies the stability rule to regular files.
async fn examine(
    app: &App,
    state: &mut ScanState,
    drop_dir: &Path,
    name: OsString,
    meta: io::Result<Metadata>,
) -> anyhow::Result<Examined> {
    let shown = escape_name(name.as_bytes());
    let meta = match meta {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(name = %shown, "vanished before it could be examined");
            state.candidates.remove(&name);
            return Ok(Examined::Done(0));
        }
        Err(e) => {
            tracing::warn!(name = %shown, error = %e, "cannot stat drop folder entry");
            return Ok(Examined::Done(0));
        }
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        let ours = name == OsStr::new(REJECTED_DIR);
        if !ours && state.dirs_reported.insert((meta.dev(), meta.ino())) {
            tracing::info!(name = %shown, "subdirectory in the drop folder ignored (not recursed)");
        }
        return Ok(Examined::Done(0));
    }
    if state
        .stuck
        .contains(&(name.clone(), meta.dev(), meta.ino()))
    {
        return Ok(Examined::Done(0));
    }
    if kind.is_symlink() {
        let n = reject(app, state, drop_dir, &name, &meta, None, Rejection::Symlink).await?;
        return Ok(Examined::Done(n));
    }
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "fifo"
        } else if kind.is_socket() {
            "socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "device"
        } else {
            "other"
        };
        tracing::debug!(name = %shown, kind = what, "not a regular file; not opened");
        let why = Rejection::NotRegular;
        let n = reject(app, state, drop_dir, &name, &meta, None, why).await?;
        return Ok(Examined::Done(n));
    }

    // Renamed in from a temp name: the writer says it is complete.
    if app.renamed_in.take(&name) {
        tracing::debug!(name = %shown, "renamed in from a temp name; taken without settling");
        return Ok(Examined::Settled(name, meta));
    }
    // The stability rule: same size, mtime and ctime over the settle period.
    let settle = settle_period(app);
    let stamp = Stamp::of(&meta);
    let now = Instant::now();
    let settled = match state.candidates.get(&name) {
        Some(c) if c.stamp == stamp => c.quiet || now.duration_since(c.stable_since) >= settle,
        _ => {
            let quiet = stamp.quiet_for(settle);
            if !quiet {
                tracing::debug!(name = %shown, size = stamp.size, "candidate; waiting for it to settle");
            }
            state.candidates.insert(
                name.clone(),
                Candidate {
                    stamp,
                    stable_since: now,
                    quiet,
                },
            );
            quiet
        }
    };
    Ok(if settled {
        Examined::Settled(name, meta)
    } else {
        Examined::Done(0)
    })
}

/// A settled file opened and checked, ready to be copied.
struct Opened {
    name: OsString,
    path: PathBuf,
    file: File,
    before: Stamp,
}

/// The back half of intake as a pipeline, so that on two cores the stages of consecutive
/// batches overlap: while batch N+2 is copied (CPU: hashing), batch N+1 is made durable and
/// recorded (mostly waiting for the disk and SQLite) and the sources of the batches recorded
/// before are unlinked (the file system's work). Each stage handles one batch at a time, in
/// order, and a batch's sources are unlinked only after its transaction committed.
#[derive(Default)]
struct Flusher {
    /// Publishing and recording a batch; yields the sources to remove.
    recording: Option<JoinHandle<anyhow::Result<Vec<Source>>>>,
    /// Removing the sources of the batch recorded before.
    unlinking: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Passes the batch being recorded on to the unlinking stage, then starts recording `batch`.
    /// On an error every stage still in flight is waited for first.
    async fn push(&mut self, app: &App, batch: Vec<Taken>) -> anyhow::Result<()> {
        if let Err(e) = self.advance().await {
            self.finish().await.ok();
            return Err(e);
        }
        if !batch.is_empty() {
            self.recording = Some(tokio::spawn(record(app.clone(), batch)));
        }
        Ok(())
    }

    /// Waits for the batch being recorded, then queues its sources for unlinking (after the
    /// sources of the batches recorded before).
    async fn advance(&mut self) -> anyhow::Result<()> {
        let Some(recording) = self.recording.take() else {
            return Ok(());
        };
        let sources = recording.await??;
        if !sources.is_empty() {
            // Chained rather than awaited here: unlinking is the slowest stage on some disks
            // (BENCHMARKS.md P3) and nothing downstream waits for it except the end of the scan.
            let previous = self.unlinking.take();
            self.unlinking = Some(tokio::spawn(async move {
                if let Some(previous) = previous {
                    previous.await.ok();
                }
                remove_sources(sources).await.ok();
            }));
        }
        Ok(())
    }

    /// Drains the pipeline: every batch in flight is recorded and its sources removed.
    async fn finish(&mut self) -> anyhow::Result<()> {
        let recorded = self.advance().await;
        if let Some(unlinking) = self.unlinking.take() {
            unlinking.await?;
        }
        recorded
    }
}

/// A batch taken from the folder: the staged files to record, and how many entries were
/// finished in all (those plus rejected and already-recorded ones).
struct TakenBatch {
    taken: Vec<Taken>,
    finished: usize,
}

/// Takes a batch of settled files: opens them all (one blocking task), checks each, copies
/// them into quarantine while hashing (one blocking task), then skips those already recorded
/// (one query, [`skip_recorded`]). The caller publishes, records and unlinks the rest
/// ([`Flusher`], [`record`]).
async fn take_batch(
    app: &App,
    state: &mut ScanState,
    drop_dir: &Path,
    chunk: Vec<(OsString, Metadata)>,
) -> anyhow::Result<TakenBatch> {
    let opened = {
        let drop_dir = drop_dir.to_owned();
        tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|(name, lmeta)| {
                    let opened = open_source(&drop_dir.join(&name));
                    (name, lmeta, opened)
                })
                .collect::<Vec<_>>()
        })
        .await?
    };
    let mut worked = 0;
    let mut ready = Vec::with_capacity(opened.len());
    for (name, lmeta, result) in opened {
        match check_opened(app, state, drop_dir, name, &lmeta, result).await? {
            Checked::Done(n) => worked += n,
            Checked::Ready(opened) => ready.push(opened),
        }
    }

    let copies = {
        let store = app.store.clone();
        let hook = state.after_copy_hook.clone();
        tokio::task::spawn_blocking(move || copy_all(&store, hook.as_ref(), ready)).await?
    };
    let mut batch = Vec::with_capacity(copies.len());
    for copy in copies {
        let Copied {
            name,
            path,
            before,
            result,
        } = copy;
        let shown = escape_name(name.as_bytes());
        let (staged, after) = match result {
            Ok(done) => done,
            // Our side is out of space or read-only: every other file would fail the same way.
            // The batch's unpublished copies are deleted; the sources stay for the next scan.
            Err(e) if is_local_resource_error(&e) => {
                // Name the directory and its free space: the operator's first two questions.
                let root = app.store.root();
                let free = crate::daemon::health::free_bytes(root)
                    .map_or_else(|_| "unknown".to_owned(), |b| b.to_string());
                return Err(e).with_context(|| {
                    format!(
                        "cannot copy {shown} into quarantine in {} ({free} bytes free)",
                        root.display()
                    )
                });
            }
            // Most likely this one source (e.g. an I/O error reading it): the others go on,
            // and this file is tried again on the next scan.
            Err(e) => {
                tracing::warn!(name = %shown, error = %e, "cannot copy into quarantine; will retry");
                continue;
            }
        };
        if after != before || staged.sample().size != before.size {
            // Written to while we copied: the copy may mix old and new bytes. The unpublished
            // copy is deleted (dropped) and the file settles again.
            tracing::info!(name = %shown, "changed while being copied; waiting for it to settle again");
            state.candidates.insert(
                name,
                Candidate {
                    stamp: after,
                    stable_since: Instant::now(),
                    quiet: false,
                },
            );
            continue;
        }
        state.candidates.remove(&name);
        let sample = staged.sample().clone();
        batch.push(Taken {
            file: NewFile {
                name: shown,
                raw_name: name.as_bytes().to_vec(),
                sha256: sample.sha256,
                md5: sample.md5,
                sha1: sample.sha1,
                size: sample.size as i64,
                sample_path: sample.rel_path,
                dev: before.dev as i64,
                ino: before.ino as i64,
                mtime_ns: before.mtime_ns,
                ctime_ns: before.ctime_ns,
                source: "drop",
                params: None,
                force: false,
            },
            path,
            stamp: before,
            temp: staged,
        });
    }
    worked += batch.len();
    let batch = skip_recorded(app, batch).await?;
    Ok(TakenBatch {
        taken: batch,
        finished: worked,
    })
}

/// Drops the files of `batch` that are already recorded — recorded before a crash that came
/// between the insert and the unlink — and removes their sources; returns the rest. One query
/// for the batch, by source identity (ctime included) and content together (see the module
/// docs): a file on a recycled inode with an earlier item's size and mtime stays in the batch
/// and becomes its own item.
async fn skip_recorded(app: &App, batch: Vec<Taken>) -> anyhow::Result<Vec<Taken>> {
    let staged: Vec<_> = batch
        .iter()
        .map(|t| (t.stamp.identity(), t.file.sha256.as_str()))
        .collect();
    let known = db::items::find_recorded_sources(&app.db, &staged).await?;
    if known.is_empty() {
        return Ok(batch);
    }
    let mut rest = Vec::with_capacity(batch.len());
    let mut leftovers = Vec::new();
    for (index, taken) in batch.into_iter().enumerate() {
        let Some(item) = known.get(&index) else {
            rest.push(taken);
            continue;
        };
        tracing::info!(item_id = item, name = %taken.file.name, sha256 = %taken.file.sha256,
            "already recorded (same source and content); removing it from the drop folder");
        // Dropping `taken.temp` deletes the unpublished copy: the item's sample is stored.
        leftovers.push(Source {
            path: taken.path,
            stamp: taken.stamp,
            shown: taken.file.name,
        });
    }
    remove_sources(leftovers).await?;
    Ok(rest)
}

/// What checking an opened file came to.
enum Checked {
    /// Finished with this many entries (rejected or vanished), or nothing to do yet (0).
    Done(usize),
    Ready(Opened),
}

/// Judges a settled file after `open`: the open's error, a swap since the `lstat`, and the
/// `fstat` rules (regular, one link, not empty, not too large).
async fn check_opened(
    app: &App,
    state: &mut ScanState,
    drop_dir: &Path,
    name: OsString,
    lmeta: &Metadata,
    opened: io::Result<(File, Metadata)>,
) -> anyhow::Result<Checked> {
    let shown = escape_name(name.as_bytes());
    let (file, fmeta) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            let n = match e.raw_os_error() {
                // It became a symlink between lstat and open: O_NOFOLLOW refused it.
                Some(libc::ELOOP) => {
                    reject(app, state, drop_dir, &name, lmeta, None, Rejection::Symlink).await?
                }
                Some(libc::ENOENT) => {
                    tracing::debug!(name = %shown, "vanished before it could be opened");
                    state.candidates.remove(&name);
                    0
                }
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    unreadable(app, state, drop_dir, &name, lmeta).await?
                }
                _ => {
                    tracing::warn!(name = %shown, error = %e, "cannot open drop folder file; will retry");
                    0
                }
            };
            return Ok(Checked::Done(n));
        }
    };
    state.unreadable.remove(&name);
    if (fmeta.dev(), fmeta.ino()) != (lmeta.dev(), lmeta.ino()) {
        // Replaced between lstat and open: judge the new file on the next scan.
        state.candidates.remove(&name);
        return Ok(Checked::Done(0));
    }
    let size = fmeta.size();
    let limit = app.config.intake.max_file_size;
    let rejection = if !fmeta.is_file() {
        Some((None, Rejection::NotRegular))
    } else if fmeta.nlink() > 1 && !app.config.intake.allow_hardlinks {
        Some((Some(size), Rejection::HardLinked))
    } else if size == 0 {
        Some((Some(0), Rejection::Empty))
    } else if size > limit {
        Some((Some(size), Rejection::TooLarge { size, limit }))
    } else {
        None
    };
    if let Some((size, why)) = rejection {
        drop(file);
        let n = reject(app, state, drop_dir, &name, &fmeta, size, why).await?;
        return Ok(Checked::Done(n));
    }
    Ok(Checked::Ready(Opened {
        path: drop_dir.join(&name),
        name,
        file,
        before: Stamp::of(&fmeta),
    }))
}

/// One file's copy into quarantine: the staged copy and the source's `fstat` after it.
struct Copied {
    name: OsString,
    path: PathBuf,
    before: Stamp,
    result: io::Result<(StagedTemp, Stamp)>,
}

/// Copies every opened file into `quarantine/incoming` while hashing it and re-`fstat`s the
/// source. Stops at the first error that is ours (disk full, read-only): the rest would fail
/// the same way. Blocking.
fn copy_all(store: &Store, hook: Option<&Hook>, ready: Vec<Opened>) -> Vec<Copied> {
    let mut out = Vec::with_capacity(ready.len());
    for Opened {
        name,
        path,
        mut file,
        before,
    } in ready
    {
        let result = store.stage_unsynced(&mut file).and_then(|staged| {
            if let Some(hook) = hook {
                hook(&path);
            }
            Ok((staged, Stamp::of(&file.metadata()?)))
        });
        let ours = matches!(&result, Err(e) if is_local_resource_error(e));
        out.push(Copied {
            name,
            path,
            before,
            result,
        });
        if ours {
            break;
        }
    }
    out
}

fn is_local_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EMFILE | libc::ENFILE)
    )
}

fn open_source(path: &Path) -> io::Result<(File, Metadata)> {
    // O_NOFOLLOW: a symlink swapped in is refused; O_NONBLOCK: a FIFO swapped in cannot hang us.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// Makes the batch's samples durable and publishes them (one `syncfs`, the renames, one
/// directory sync: `Store::publish`) and records them in one transaction. Returns their
/// sources, which may be removed from now on.
async fn record(app: App, batch: Vec<Taken>) -> anyhow::Result<Vec<Source>> {
    let (temps, taken): (Vec<StagedTemp>, Vec<Recorded>) = batch
        .into_iter()
        .map(|t| {
            let recorded = Recorded {
                file: t.file,
                path: t.path,
                stamp: t.stamp,
            };
            (t.temp, recorded)
        })
        .unzip();
    let store = app.store.clone();
    // On an error nothing was recorded and the sources stay: the next scan takes them again.
    tokio::task::spawn_blocking(move || store.publish(temps))
        .await?
        .context("cannot make the staged samples durable in quarantine")?;
    crate::crashpoint::hit("after_stage");
    let files: Vec<NewFile> = taken.iter().map(|t| t.file.clone()).collect();
    let recorded = db::items::insert_files(
        &app.db,
        &files,
        db::SampleDedup::configured(app.config.dedup.samples),
    )
    .await?;
    crate::crashpoint::hit("after_record");
    let mut sources = Vec::with_capacity(taken.len());
    for (t, (id, item_state)) in taken.into_iter().zip(&recorded) {
        tracing::info!(item_id = id, name = %t.file.name, sha256 = %t.file.sha256,
            size = t.file.size, state = item_state.as_str(), "file taken from the drop folder");
        sources.push(Source {
            path: t.path,
            stamp: t.stamp,
            shown: t.file.name,
        });
    }
    app.wake.submit.notify_one();
    Ok(sources)
}

/// Unlinks recorded sources (one blocking task).
async fn remove_sources(sources: Vec<Source>) -> anyhow::Result<()> {
    if sources.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || sources.iter().for_each(remove_source)).await?;
    Ok(())
}

/// Unlinks a recorded source, unless the path now holds something else or the file changed
/// since it was copied (then it stays and is judged as a new candidate: nothing is lost).
/// Blocking.
fn remove_source(source: &Source) {
    let Source { path, stamp, shown } = source;
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() && Stamp::of(&m) == *stamp => {}
        Ok(_) => {
            tracing::info!(name = %shown, "changed after it was recorded; left in place as a new file");
            return;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(name = %shown, error = %e, "cannot stat a recorded source");
            return;
        }
    }
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(name = %shown, error = %e, "recorded, but cannot remove it from the drop folder");
    }
}

/// An unreadable file is retried until `intake.unreadable_grace_secs` have passed since the
/// first refusal (permissions are often fixed a moment later), then rejected.
async fn unreadable(
    app: &App,
    state: &mut ScanState,
    drop_dir: &Path,
    name: &OsString,
    meta: &Metadata,
) -> anyhow::Result<usize> {
    let shown = escape_name(name.as_bytes());
    let grace = floor(Duration::from_secs(app.config.intake.unreadable_grace_secs));
    let first = *state.unreadable.entry(name.clone()).or_insert_with(|| {
        tracing::warn!(name = %shown, grace_secs = grace.as_secs(), "permission denied; will retry");
        Instant::now()
    });
    if first.elapsed() < grace {
        tracing::debug!(name = %shown, "still unreadable");
        return Ok(0);
    }
    state.unreadable.remove(name);
    reject(
        app,
        state,
        drop_dir,
        name,
        meta,
        Some(meta.size()),
        Rejection::PermissionDenied,
    )
    .await
}

/// Records a rejected entry and moves it into `rejected/`.
async fn reject(
    app: &App,
    state: &mut ScanState,
    drop_dir: &Path,
    name: &OsString,
    meta: &Metadata,
    size: Option<u64>,
    why: Rejection,
) -> anyhow::Result<usize> {
    let shown = escape_name(name.as_bytes());
    let reason = why.to_string();
    state.candidates.remove(name);
    let item = db::items::insert_rejected_file(
        &app.db,
        &shown,
        name.as_bytes(),
        size.map(|s| s as i64),
        &reason,
    )
    .await?;
    tracing::warn!(item_id = item, name = %shown, reason = %reason, "rejected: {reason}");
    let moved = {
        let drop_dir = drop_dir.to_owned();
        let name = name.clone();
        tokio::task::spawn_blocking(move || move_aside(&drop_dir, &name)).await?
    };
    match moved {
        Ok(dest) => {
            tracing::info!(item_id = item, moved_to = %escape_name(dest.as_os_str().as_bytes()),
                "moved aside");
        }
        Err(e) => {
            tracing::error!(item_id = item, name = %shown, error = %e,
                "cannot move the rejected entry into {REJECTED_DIR}/; it stays and is not retried");
            state.stuck.insert((name.clone(), meta.dev(), meta.ino()));
        }
    }
    Ok(1)
}

/// Renames `drop_dir/name` (the entry itself: a symlink is moved, not its target) to
/// `drop_dir/rejected/<unix-ms>-<name>`.
fn move_aside(drop_dir: &Path, name: &OsStr) -> io::Result<PathBuf> {
    let dir = drop_dir.join(REJECTED_DIR);
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{REJECTED_DIR} in the drop folder is not a directory"
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    let mut ms = db::now_ms();
    loop {
        let prefix = format!("{ms}-");
        // Keep the result within NAME_MAX (255 bytes).
        let keep = name.len().min(255 - prefix.len());
        let mut dest_name = prefix.into_bytes();
        dest_name.extend_from_slice(&name.as_bytes()[..keep]);
        let dest = dir.join(OsStr::from_bytes(&dest_name));
        match fs::symlink_metadata(&dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::rename(drop_dir.join(name), &dest)?;
                return Ok(dest);
            }
            Err(e) => return Err(e),
            Ok(_) => ms += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        for temp in [
            ".x.tmp",
            ".hidden",
            "x.part",
            "x.tmp",
            "x.crdownload",
            "~x",
            "~$x.docx",
            ".syncthing.x.tmp",
        ] {
            assert!(is_temp_name(temp.as_bytes()), "{temp}");
        }
        for real in ["x", "x.exe", "part", "x.tmp.exe", "a~b", "-rf", "tmp"] {
            assert!(!is_temp_name(real.as_bytes()), "{real}");
        }
    }

    #[test]
    fn rejection_reasons_read_as_documented() {
        assert_eq!(Rejection::Symlink.to_string(), "symlink");
        assert_eq!(Rejection::NotRegular.to_string(), "not a regular file");
        assert_eq!(Rejection::HardLinked.to_string(), "hard-linked file");
        assert_eq!(Rejection::Empty.to_string(), "empty file");
        assert_eq!(
            Rejection::TooLarge {
                size: 5368709120,
                limit: 10485760
            }
            .to_string(),
            "too large (5368709120 bytes > 10485760)"
        );
        assert_eq!(Rejection::PermissionDenied.to_string(), "permission denied");
    }

    #[test]
    fn moved_aside_names_stay_within_name_max_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let long = vec![b'a'; 255];
        let name = OsStr::from_bytes(&long);
        fs::write(dir.path().join(name), b"1").unwrap();
        let first = move_aside(dir.path(), name).unwrap();
        assert!(first.file_name().unwrap().len() <= 255);
        fs::write(dir.path().join(name), b"2").unwrap();
        let second = move_aside(dir.path(), name).unwrap();
        assert_ne!(first, second);
        assert_eq!(fs::read(first).unwrap(), b"1");
        assert_eq!(fs::read(second).unwrap(), b"2");
        let mode = fs::metadata(dir.path().join(REJECTED_DIR)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
