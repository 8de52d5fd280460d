//! When a drop-folder entry is ready to be taken: temp names wait for their rename, what
//! `lstat` alone decides (directories ignored; symlinks, FIFOs, sockets and devices rejected
//! without being opened), and the settle rule for regular files — size, mtime and ctime unchanged
//! for `intake.settle_ms`, or a file the watcher saw renamed in from a temp name.

use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::ScanState;
use super::reject::{REJECTED_DIR, Rejection, reject};
use crate::app::App;
use crate::db;
use crate::intake::escape_name;
use crate::worker::MIN_DELAY;

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
pub(super) struct Stamp {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
    pub(super) ctime_ns: i64,
}

impl Stamp {
    /// How the database recognises the source of a recorded item.
    pub(super) fn identity(&self) -> db::items::SourceIdentity {
        (
            self.dev as i64,
            self.ino as i64,
            self.size as i64,
            self.mtime_ns,
            self.ctime_ns,
        )
    }

    pub(super) fn of(m: &Metadata) -> Self {
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
pub(super) struct Candidate {
    pub(super) stamp: Stamp,
    pub(super) stable_since: Instant,
    /// Whether the timestamps alone already proved it settled when first seen.
    pub(super) quiet: bool,
}

pub(super) fn settle_period(app: &App) -> Duration {
    Duration::from_millis(app.config.intake.settle_ms).max(MIN_DELAY)
}

/// What looking at one entry came to.
pub(super) enum Examined {
    /// Finished with this many entries (rejected), or nothing to do yet (0).
    Done(usize),
    /// A regular file that settled: to be taken.
    Settled(OsString, Metadata),
}

/// Looks at one listed entry: ignores directories, rejects what is not a regular file, and
/// applies the stability rule to regular files.
pub(super) async fn examine(
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
}
