//! Rejection: a rejected entry is recorded (`rejected`, with its reason and exact name bytes)
//! and renamed into `<drop_dir>/rejected/<unix-ms>-<name>`: never retried, never silently
//! deleted. An entry that cannot be moved is remembered (`ScanState::stuck`) and not recorded
//! again.

use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::ScanState;
use crate::app::App;
use crate::db;
use crate::intake::escape_name;

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

/// jbxd's own subfolder of the drop folder, for entries moved aside.
pub const REJECTED_DIR: &str = "rejected";

/// Records a rejected entry and moves it into `rejected/`.
pub(super) async fn reject(
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
