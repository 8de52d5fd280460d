//! Open-and-check: a settled file is opened with `O_NOFOLLOW|O_NONBLOCK` (a symlink or FIFO
//! swapped in after the `lstat` cannot be followed or hang us), compared with its `lstat`, and
//! judged by `fstat` (regular, one link, not empty, not too large). [`Rejection`] (in `reject.rs`) is the reason
//! stored in `items.error`; an unreadable file gets a grace period before it is rejected.

use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ScanState;
use super::reject::{Rejection, reject};
use super::settle::Stamp;
use crate::app::App;
use crate::intake::escape_name;
use crate::worker::MIN_DELAY;

/// A settled file opened and checked, ready to be copied.
pub(super) struct Opened {
    pub(super) name: OsString,
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) before: Stamp,
}

/// What checking an opened file came to.
pub(super) enum Checked {
    /// Finished with this many entries (rejected or vanished), or nothing to do yet (0).
    Done(usize),
    Ready(Opened),
}

/// Judges a settled file after `open`: the open's error, a swap since the `lstat`, and the
/// `fstat` rules (regular, one link, not empty, not too large).
pub(super) async fn check_opened(
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

pub(super) fn open_source(path: &Path) -> io::Result<(File, Metadata)> {
    // O_NOFOLLOW: a symlink swapped in is refused; O_NONBLOCK: a FIFO swapped in cannot hang us.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
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
    let grace = Duration::from_secs(app.config.intake.unreadable_grace_secs).max(MIN_DELAY);
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
