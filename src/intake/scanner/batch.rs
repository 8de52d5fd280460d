//! The batch pipeline. Settled files are taken in batches of [`BATCH`]: a batch is opened and
//! checked ([`super::check`]) and copied into `quarantine/incoming` while hashing
//! ([`take_batch`]), stripped of what is already recorded ([`skip_recorded`]), published and
//! recorded in one transaction ([`record`]), and its sources are unlinked last. Every blocking
//! step works on a whole batch, and copying, recording and unlinking of consecutive batches
//! overlap ([`Flusher`], BENCHMARKS.md P3).
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

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use tokio::task::JoinHandle;

use super::check::{Checked, Opened, check_opened, open_source};
use super::settle::{Candidate, Stamp};
use super::{Hook, ScanState};
use crate::app::App;
use crate::db::{self, NewFile};
use crate::intake::escape_name;
use crate::storage::{self, StagedTemp, Store};

/// Files recorded per transaction.
pub const BATCH: usize = 100;

/// A taken file once its copy is published: what the commit and the unlink need.
struct Recorded {
    file: NewFile,
    path: PathBuf,
    stamp: Stamp,
}

/// A staged file waiting for the batch's commit.
pub(super) struct Taken {
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

/// The back half of intake as a pipeline, so that on two cores the stages of consecutive
/// batches overlap: while batch N+2 is copied (CPU: hashing), batch N+1 is made durable and
/// recorded (mostly waiting for the disk and SQLite) and the sources of the batches recorded
/// before are unlinked (the file system's work). Each stage handles one batch at a time, in
/// order, and a batch's sources are unlinked only after its transaction committed.
#[derive(Default)]
pub(super) struct Flusher {
    /// Publishing and recording a batch; yields the sources to remove.
    recording: Option<JoinHandle<anyhow::Result<Vec<Source>>>>,
    /// Removing the sources of the batch recorded before.
    unlinking: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Passes the batch being recorded on to the unlinking stage, then starts recording `batch`.
    /// On an error every stage still in flight is waited for first.
    pub(super) async fn push(&mut self, app: &App, batch: Vec<Taken>) -> anyhow::Result<()> {
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
    pub(super) async fn finish(&mut self) -> anyhow::Result<()> {
        let recorded = self.advance().await;
        if let Some(unlinking) = self.unlinking.take() {
            unlinking.await?;
        }
        recorded
    }
}

/// A batch taken from the folder: the staged files to record, and how many entries were
/// finished in all (those plus rejected and already-recorded ones).
pub(super) struct TakenBatch {
    pub(super) taken: Vec<Taken>,
    pub(super) finished: usize,
}

/// Takes a batch of settled files: opens them all (one blocking task), checks each, copies
/// them into quarantine while hashing (one blocking task), then skips those already recorded
/// (one query, [`skip_recorded`]). The caller publishes, records and unlinks the rest
/// ([`Flusher`], [`record`]).
pub(super) async fn take_batch(
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
                let free = storage::free_bytes(root)
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
