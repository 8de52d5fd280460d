//! `jbxd analysis download --password-file FILE`: the reports of an analysis submitted with a
//! report password arrive as a single-member AES zip; the user gets the document inside.
//!
//! The password comes from a file only (never argv, where every user of the machine can read
//! it, and never a log line or an error message). The encrypted download goes to an unnamed
//! temporary file in the output directory first; the decrypted document is then streamed into
//! the atomic file the plain download would have used (same name), so a wrong password, a
//! corrupt archive or a broken download leaves no file behind, and a large report never sits
//! in memory.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::api::ApiError;
use crate::api::report::open_stored;
use crate::cli::CliError;
use crate::storage::AtomicFile;

const CHUNK: usize = 1 << 20;

/// A report password read from a file; shown as `[REDACTED]` if ever debug-printed.
#[derive(Clone)]
pub struct ReportPassword(Vec<u8>);

impl std::fmt::Debug for ReportPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReportPassword([REDACTED])")
    }
}

impl ReportPassword {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The file's content without one trailing line break (`echo pw > file` works). An
    /// unreadable or empty file is a usage error naming the file, never its content.
    pub fn from_file(path: &Path) -> Result<Self, CliError> {
        let mut bytes = std::fs::read(path).map_err(|e| {
            CliError::Usage(format!(
                "--password-file {}: cannot read it: {e}",
                path.display()
            ))
        })?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(CliError::Usage(format!(
                "--password-file {}: the file is empty",
                path.display()
            )));
        }
        Ok(Self(bytes))
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
    fn the_password_file_loses_one_line_break_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, b"s3cret\r\n").unwrap();
        assert_eq!(
            ReportPassword::from_file(&path).unwrap().as_bytes(),
            b"s3cret"
        );
        std::fs::write(&path, b" two words \n\n").unwrap();
        assert_eq!(
            ReportPassword::from_file(&path).unwrap().as_bytes(),
            b" two words \n"
        );
        std::fs::write(&path, b"\n").unwrap();
        let err = ReportPassword::from_file(&path).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        assert!(format!("{:?}", ReportPassword(b"x".to_vec())).contains("REDACTED"));
    }
}
