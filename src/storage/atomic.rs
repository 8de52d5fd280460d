//! Files that appear complete or not at all.

use std::path::{Path, PathBuf};

use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

/// Temporary files start with this prefix and end with [`TEMP_SUFFIX`]; recovery code and the
/// drop-folder scanner recognise and skip them.
pub const TEMP_PREFIX: &str = ".jbxd-";
pub const TEMP_SUFFIX: &str = ".part";

/// A file being written under a temporary name in its final directory. [`AtomicFile::commit`]
/// makes it durable and visible under its final name; dropping it uncommitted removes the
/// temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
    mode: u32,
}

impl AtomicFile {
    /// Creates `dir/<temp name>` exclusively (never following a symlink), to become
    /// `dir/name` with permission bits `mode` on commit. `name` must be a single component.
    pub async fn create(dir: &Path, name: &str, mode: u32) -> std::io::Result<Self> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("refusing to create a file named {name:?}"),
            ));
        }
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{:016x}{TEMP_SUFFIX}",
            fastrand::u64(..)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_o_nofollow())
            .open(&temp)
            .await?;
        Ok(Self {
            file: Some(file),
            temp,
            target: dir.join(name),
            mode,
        })
    }

    /// The file to write into.
    pub fn file_mut(&mut self) -> &mut File {
        self.file.as_mut().expect("file present until commit")
    }

    /// Where the file will appear.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes, fsyncs, sets the final mode, renames into place (replacing an older file of the
    /// same name) and fsyncs the directory.
    pub async fn commit(mut self) -> std::io::Result<PathBuf> {
        let mut file = self.file.take().expect("file present until commit");
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::set_permissions(&self.temp, std::fs::Permissions::from_mode(self.mode)).await?;
        tokio::fs::rename(&self.temp, &self.target).await?;
        if let Some(dir) = self.target.parent() {
            File::open(dir).await?.sync_all().await?;
        }
        Ok(std::mem::take(&mut self.target))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            // Not committed: the content is incomplete and must not survive.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

use std::os::unix::fs::PermissionsExt;

/// `O_NOFOLLOW` on Linux: the temporary name is fresh, but a planted symlink must never be
/// followed.
fn libc_o_nofollow() -> i32 {
    0o400000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_committed_file_appears_with_its_mode_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AtomicFile::create(dir.path(), "report.html", 0o400)
            .await
            .unwrap();
        f.file_mut().write_all(b"<html/>").await.unwrap();
        let path = f.commit().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"<html/>");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn an_uncommitted_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut f = AtomicFile::create(dir.path(), "x.bin", 0o600)
                .await
                .unwrap();
            f.file_mut().write_all(b"partial").await.unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn names_with_separators_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "a/b", "..", ""] {
            assert!(
                AtomicFile::create(dir.path(), bad, 0o600).await.is_err(),
                "{bad}"
            );
        }
    }
}
