//! A file that another program fills, published like every file jbxd creates.
//!
//! `jbxd backup` hands SQLite's `VACUUM INTO` a path to write. SQLite neither fsyncs that file
//! nor removes it after a failure, so the path is a [`ReservedFile`]: an empty file created
//! exclusively (never following a symlink) under a temporary name next to its destination,
//! removed on drop, and published by [`ReservedFile::publish_new`] — fsync, a rename that never
//! replaces an existing file, and a directory fsync.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::atomic::{TEMP_PREFIX, TEMP_SUFFIX};

/// Why a reserved file was not published; callers branch on `Exists`.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0} already exists")]
    Exists(PathBuf),
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An empty file under a temporary name in the directory of `dest`, to become `dest`.
#[derive(Debug)]
pub struct ReservedFile {
    path: PathBuf,
    dest: PathBuf,
    published: bool,
}

impl ReservedFile {
    /// Creates the empty temporary with permission bits `mode` (an outside writer that keeps
    /// the mode of an existing file, as `VACUUM INTO` does, never widens it).
    pub fn create(dest: &Path, mode: u32) -> io::Result<Self> {
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path does not end in a file name",
            )
        })?;
        let path = dest.with_file_name(format!(
            "{TEMP_PREFIX}{}-{:016x}{TEMP_SUFFIX}",
            crate::text::truncate_keeping_extension(&name.to_string_lossy(), 200),
            fastrand::u64(..)
        ));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        Ok(Self {
            path,
            dest: dest.to_owned(),
            published: false,
        })
    }

    /// The temporary path for the outside writer.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the content durable and visible as the destination, unless the destination
    /// appeared meanwhile (then nothing is replaced and the temporary is removed).
    pub fn publish_new(mut self) -> Result<(), PublishError> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| PublishError::Io {
                action,
                path,
                source,
            }
        };
        File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(io("cannot fsync", &self.path))?;
        rename_noreplace(&self.path, &self.dest).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => PublishError::Exists(self.dest.clone()),
            _ => io("cannot rename into place", &self.dest)(e),
        })?;
        self.published = true;
        let dir = match self.dest.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("cannot fsync the directory", dir))
    }
}

impl Drop for ReservedFile {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `renameat2(RENAME_NOREPLACE)`; where the file system lacks it, a hard link (which fails on
/// an existing name too) and an unlink of the old name.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_rename_never_replaces_a_file_that_appeared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&from, b"new").unwrap();
        std::fs::write(&to, b"old").unwrap();
        let error = rename_noreplace(&from, &to).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"old");
        std::fs::remove_file(&to).unwrap();
        rename_noreplace(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
        assert!(!from.exists());
    }

    #[test]
    fn a_reserved_file_is_published_with_its_mode_or_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("copy.db");
        let reserved = ReservedFile::create(&dest, 0o600).unwrap();
        std::fs::write(reserved.path(), b"content").unwrap();
        let temp = reserved.path().to_owned();
        reserved.publish_new().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"content");
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!temp.exists());

        let again = ReservedFile::create(&dest, 0o600).unwrap();
        let temp = again.path().to_owned();
        assert!(matches!(again.publish_new(), Err(PublishError::Exists(_))));
        assert_eq!(std::fs::read(&dest).unwrap(), b"content");
        assert!(
            !temp.exists(),
            "the temporary of a refused publish is removed"
        );

        let dropped = ReservedFile::create(&dir.path().join("other"), 0o600).unwrap();
        let temp = dropped.path().to_owned();
        drop(dropped);
        assert!(!temp.exists());
    }
}
