//! The single-instance lock (RELIABILITY.md cases 17, 18, 114): an exclusive `flock` on the
//! data directory itself, plus `data_dir/jbxd.lock` holding the owner's pid.
//!
//! The directory is what is locked (RELIABILITY.md case 114): a lock *file* can be deleted
//! under a running daemon, and the next daemon then creates a new file, locks that and runs on
//! the same data (40 dropped files became 73 items). A directory cannot be unlinked while it
//! holds the daemon's database, and the lock belongs to the open descriptor, not to a name.
//! `jbxd.lock` is still locked too, so that a jbxd from before this change, which only knows
//! the file, is kept out as well; its content (the pid) is only for the message a second
//! instance prints. When it was deleted, the holder's pid is looked up in `/proc/locks`.
//!
//! The kernel drops an flock when its descriptor closes, so a crashed daemon never blocks the
//! next start, and no stale-pid guessing is needed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file name inside `data_dir`.
pub const LOCK_FILE: &str = "jbxd.lock";

/// Held while the daemon runs; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _dir: File,
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// The lock file (`data_dir/jbxd.lock`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another instance ({}) holds the lock {}", describe_pid(*pid), path.display())]
    Held { path: PathBuf, pid: Option<u32> },
    #[error("cannot take the lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn describe_pid(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".into(),
    }
}

/// Takes the lock whose file is `path` (`data_dir/jbxd.lock`): the directory containing it
/// first, then the file; or says who holds it. Nothing is created or written unless the
/// directory lock was obtained.
pub fn acquire(path: &Path) -> Result<InstanceLock, LockError> {
    let io_err = |source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    let dir_path = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // O_DIRECTORY: the descriptor is the directory itself, whatever its entries become.
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir_path)
        .map_err(io_err)?;
    match dir.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::Held {
                path: path.to_owned(),
                pid: pid_in_file(path).or_else(|| holder_in_proc_locks(&dir)),
            });
        }
        Err(TryLockError::Error(error)) => return Err(io_err(error)),
    }
    // No O_TRUNC: the holder's pid must survive a failed attempt (an old jbxd holding only
    // the file). O_NOFOLLOW: a symlink planted in data_dir must not make us write elsewhere.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held {
                path: path.to_owned(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(TryLockError::Error(error)) => return Err(io_err(error)),
    }
    let pid = std::process::id();
    file.set_len(0).map_err(io_err)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    writeln!(file, "{pid}").map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(InstanceLock {
        _dir: dir,
        _file: file,
        path: path.to_owned(),
    })
}

/// The pid written in the lock file, if it is there and holds one.
fn pid_in_file(path: &Path) -> Option<u32> {
    let mut text = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

/// The pid of the process holding an flock on `dir`, from `/proc/locks` (lines like
/// `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`), for when the lock file was deleted.
/// `None` where `/proc/locks` cannot be read (e.g. under `ProcSubset=pid`).
fn holder_in_proc_locks(dir: &File) -> Option<u32> {
    let meta = dir.metadata().ok()?;
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(
        &text,
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino(),
    )
}

fn holder_in(locks: &str, major: u32, minor: u32, inode: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line has "->" after the number; only holders are of interest.
        let [_, "FLOCK", _, _, pid, id, ..] = fields.as_slice() else {
            return None;
        };
        let mut parts = id.split(':');
        let (maj, min, ino) = (parts.next()?, parts.next()?, parts.next()?);
        let same = u32::from_str_radix(maj, 16).ok()? == major
            && u32::from_str_radix(min, 16).ok()? == minor
            && ino.parse::<u64>().ok()? == inode;
        if same { pid.parse().ok() } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_17_a_second_lock_names_the_holder_and_a_released_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let first = acquire(&path).unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts like a second process would.
        let error = acquire(&path).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "another instance (pid {}) holds the lock",
                std::process::id()
            )),
            "{text}"
        );
        assert!(text.contains(&path.display().to_string()));
        drop(first);
        let again = acquire(&path).unwrap();
        assert_eq!(again.path(), path);
    }

    #[test]
    fn case_114_a_deleted_lock_file_still_keeps_a_second_instance_out_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let _first = acquire(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let error = acquire(&path).unwrap_err();
        assert!(matches!(error, LockError::Held { .. }), "{error}");
        // The refused attempt created nothing.
        assert!(!path.exists());
        // The pid comes from /proc/locks now that the file is gone (where it is readable).
        if std::fs::read_to_string("/proc/locks").is_ok() {
            assert!(
                error
                    .to_string()
                    .contains(&format!("(pid {})", std::process::id())),
                "{error}"
            );
        }
    }

    #[test]
    fn proc_locks_lines_are_matched_by_device_and_inode_and_waiters_are_skipped() {
        let locks = "1: POSIX  ADVISORY  WRITE 11 fd:01:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 5151 fd:01:1234 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 99 08:02:1234 0 EOF\n";
        assert_eq!(holder_in(locks, 0xfd, 1, 1234), Some(4242));
        assert_eq!(holder_in(locks, 8, 2, 1234), Some(99));
        assert_eq!(
            holder_in(locks, 0xfd, 1, 77),
            None,
            "a POSIX lock is not ours"
        );
        assert_eq!(holder_in(locks, 0xfd, 1, 9), None);
    }
}
