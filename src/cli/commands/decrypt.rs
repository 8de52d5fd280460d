//! `jbxd analysis download --password-file FILE`: the reports of an analysis submitted with a
//! report password arrive as a single-member AES zip; the user gets the document inside.
//!
//! The password comes from a file only, checked like the key file (never argv, where every
//! user of the machine can read it, and never a log line or an error message). The encrypted download goes to an unnamed
//! temporary file in the output directory first; the decrypted document is then streamed into
//! the atomic file the plain download would have used (same name), so a wrong password, a
//! corrupt archive or a broken download leaves no file behind, and a large report never sits
//! in memory.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::api::report::open_stored;
use crate::api::{ApiError, Secret};
use crate::cli::CliError;
use crate::config::{self, Config};
use crate::storage::AtomicFile;

const CHUNK: usize = 1 << 20;

/// A report password, from `--password-file` or the configuration (`[reports]`).
#[derive(Clone, Debug)]
pub struct ReportPassword(Secret);

impl ReportPassword {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.expose_bytes()
    }

    /// The file given with `--password-file`, read with the key-file checks every secret
    /// file passes (regular file, mode 0600, owned by this user or root, not empty); a bad
    /// file is a configuration error (exit 78) naming the file, never its content.
    pub fn from_file(path: &Path) -> Result<Self, CliError> {
        Ok(Self(config::secret_from_flag_file(
            "report password",
            path,
        )?))
    }

    /// The configured report password (`[reports] password_file`, `password_credential`,
    /// `password_command`), if any.
    pub fn configured(config: &Config) -> Result<Option<Self>, CliError> {
        Ok(config::report_password(config)?.map(Self))
    }
}

/// A temporary file in `dir` for the encrypted body (deleted when dropped), and an async
/// handle to write the download into.
pub fn encrypted_temp(dir: &Path) -> Result<(tempfile::NamedTempFile, tokio::fs::File), ApiError> {
    let temp = tempfile::Builder::new()
        .prefix(".jbxd-")
        .suffix(".zip.part")
        .tempfile_in(dir)
        .map_err(|e| ApiError::Io {
            context: format!("cannot create a temporary file in {}", dir.display()),
            source: e,
        })?;
    let handle = temp.reopen().map_err(|e| ApiError::Io {
        context: format!("cannot open {}", temp.path().display()),
        source: e,
    })?;
    Ok((temp, tokio::fs::File::from_std(handle)))
}

/// Decrypts the downloaded body at `encrypted` into `dir/name` (atomically, `mode`): returns
/// the stored path, its size and its sha256. A plain body (the analysis was not encrypted
/// after all) is stored as it is.
pub async fn store_decrypted(
    encrypted: &Path,
    password: &ReportPassword,
    dir: &Path,
    name: &str,
    mode: u32,
) -> Result<(PathBuf, u64, String), ApiError> {
    let source = encrypted.to_owned();
    let password = password.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    // The archive is read with blocking I/O; chunks cross to the async writer.
    let reader = tokio::task::spawn_blocking(move || {
        let mut member = match open_stored(&source, Some(password.as_bytes())) {
            Ok(member) => member,
            Err(error) => return Err(error.to_string()),
        };
        loop {
            let mut chunk = vec![0u8; CHUNK];
            match member.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(chunk)).is_err() {
                        return Ok(());
                    }
                }
                Err(error) => {
                    let _ = tx.blocking_send(Err(error));
                    return Ok(());
                }
            }
        }
    });
    let mut file = AtomicFile::create(dir, name, mode)
        .await
        .map_err(|e| ApiError::Io {
            context: format!("cannot create a file in {}", dir.display()),
            source: e,
        })?;
    let decrypt_failed = |detail: String| ApiError::Io {
        context: format!("cannot decrypt the report {name}"),
        source: std::io::Error::other(detail),
    };
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(|e| decrypt_failed(e.to_string()))?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        file.file_mut()
            .write_all(&chunk)
            .await
            .map_err(|e| ApiError::Io {
                context: format!("cannot write {name} in {}", dir.display()),
                source: e,
            })?;
    }
    // Dropping `file` on any error below removes the partial document.
    reader
        .await
        .map_err(|e| decrypt_failed(e.to_string()))?
        .map_err(decrypt_failed)?;
    let path = file.commit().await.map_err(|e| ApiError::Io {
        context: format!("cannot store {name} in {}", dir.display()),
        source: e,
    })?;
    Ok((path, bytes, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_passes_the_key_file_checks_and_never_shows_its_content() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, b"s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = ReportPassword::from_file(&path).unwrap_err().to_string();
        assert!(open.contains("chmod 600"), "{open}");
        assert!(!open.contains("s3cret"), "{open}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let password = ReportPassword::from_file(&path).unwrap();
        assert_eq!(password.as_bytes(), b"s3cret");
        assert!(!format!("{password:?}").contains("s3cret"));
    }
}
