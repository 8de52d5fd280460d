//! The single-instance lock: `flock(LOCK_EX | LOCK_NB)` on `data_dir/jbxd.lock`, holding the
//! owner's pid (reliability.md §2.3).
//!
//! The kernel drops an flock when its descriptor closes, so a crashed daemon never blocks the
//! next start, and no stale-pid guessing is needed. The pid in the file is only for the
//! message a second instance prints.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file name inside `data_dir`.
pub const LOCK_FILE: &str = "jbxd.lock";

/// Held while the daemon runs; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
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

/// Takes the lock or says who holds it.
pub fn acquire(path: &Path) -> Result<InstanceLock, LockError> {
    let io_err = |source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    // No O_TRUNC: the holder's pid must survive our failed attempt. O_NOFOLLOW: a symlink
    // planted in data_dir must not make us write elsewhere.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err)?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held {
                path: path.to_owned(),
                pid: text.trim().parse().ok(),
            });
        }
        return Err(io_err(error));
    }
    let pid = std::process::id();
    file.set_len(0).map_err(io_err)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    writeln!(file, "{pid}").map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(InstanceLock {
        _file: file,
        path: path.to_owned(),
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
}
