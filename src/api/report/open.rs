//! Opening a stored report for reading: the plain document, or the AES zip an analysis
//! submitted with `encrypt-with-password` is downloaded as (one member, AES-256, the way the
//! official client's `--password` unpacks it with pyzipper).
//!
//! The daemon keeps every download as it came, so whoever reads a report (the index, the XPath
//! search, `jbxd analysis download --password-file`) opens it here and never needs to know
//! which of the two it holds. The member is streamed through a bounded channel from a thread
//! that owns the archive (a `zip` member borrows its archive, so it cannot be returned by
//! itself; a channel rather than an OS pipe, so a reader that stops early can never raise
//! SIGPIPE in the CLI, which keeps its default disposition): nothing
//! holds the whole document in memory, and a failure inside the member (a corrupt stream, an
//! AES authentication code that does not match at the end) reaches the reader as an error, not
//! as a silently short document.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use zip::ZipArchive;
use zip::result::ZipError;

/// Chunks in flight between the unzip thread and the reader: memory stays at a few MiB
/// whatever the member's size.
const CHUNK: usize = 256 * 1024;
const CHANNEL_DEPTH: usize = 4;

/// A zip archive starts with a local file header.
const ZIP_MAGIC: &[u8; 4] = b"PK\x03\x04";

/// Why a stored report cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read the report {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the report {} is encrypted (an analysis submitted with a report password); \
         a password is needed to read it",
        path.display()
    )]
    PasswordNeeded { path: PathBuf },
    #[error("the password does not open the encrypted report {}", path.display())]
    WrongPassword { path: PathBuf },
    #[error(
        "the report {} is a zip archive with {members} members, not the single-document \
         archive of an encrypted analysis",
        path.display()
    )]
    NotSingleMember { path: PathBuf, members: usize },
    #[error("the report {} is not a readable zip archive: {detail}", path.display())]
    BadArchive { path: PathBuf, detail: String },
}

impl OpenError {
    /// Whether a (better) password would help: callers count such reports instead of failing.
    pub fn wants_password(&self) -> bool {
        matches!(
            self,
            Self::PasswordNeeded { .. } | Self::WrongPassword { .. }
        )
    }
}

/// Whether the stored report at `path` is an encrypted archive (starts like a zip).
pub fn is_encrypted_archive(path: &Path) -> Result<bool, OpenError> {
    let mut file = File::open(path).map_err(|source| io_error(path, source))?;
    starts_like_zip(&mut file).map_err(|source| io_error(path, source))
}

/// Opens the stored report at `path`: the document itself, or the one member of an encrypted
/// analysis's AES zip decrypted with `password`. The password is checked before this returns
/// (AES keeps a password verifier in the member's header), so a wrong one is
/// [`OpenError::WrongPassword`], not a read error later.
pub fn open_stored(
    path: &Path,
    password: Option<&[u8]>,
) -> Result<Box<dyn Read + Send>, OpenError> {
    let mut file = File::open(path).map_err(|source| io_error(path, source))?;
    if !starts_like_zip(&mut file).map_err(|source| io_error(path, source))? {
        return Ok(Box::new(BufReader::new(file)));
    }
    let mut archive = ZipArchive::new(file).map_err(|e| zip_error(path, e))?;
    if archive.len() != 1 {
        return Err(OpenError::NotSingleMember {
            path: path.to_owned(),
            members: archive.len(),
        });
    }
    let encrypted = archive
        .by_index_data(0)
        .map_err(|e| zip_error(path, e))?
        .encrypted();
    let password = match (encrypted, password) {
        (false, _) => None,
        (true, None) => {
            return Err(OpenError::PasswordNeeded {
                path: path.to_owned(),
            });
        }
        (true, Some(password)) => Some(password.to_vec()),
    };
    // Check the password (and the member's header) here, where the error can still be typed.
    open_member(&mut archive, password.as_deref()).map_err(|e| zip_error(path, e))?;
    let (sender, receiver) = mpsc::sync_channel::<io::Result<Vec<u8>>>(CHANNEL_DEPTH);
    std::thread::Builder::new()
        .name("jbxd-unzip".into())
        .spawn(move || {
            let mut member = match open_member(&mut archive, password.as_deref()) {
                Ok(member) => member,
                Err(error) => {
                    let _ = sender.send(Err(io::Error::other(error)));
                    return;
                }
            };
            loop {
                let mut chunk = vec![0u8; CHUNK];
                let sent = match member.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => {
                        chunk.truncate(n);
                        sender.send(Ok(chunk))
                    }
                    Err(error) => {
                        let _ = sender.send(Err(error));
                        return;
                    }
                };
                // The reader was dropped: nobody wants the rest.
                if sent.is_err() {
                    return;
                }
            }
        })
        .map_err(|source| io_error(path, source))?;
    Ok(Box::new(MemberReader {
        receiver,
        chunk: Vec::new(),
        at: 0,
    }))
}

fn open_member<'a>(
    archive: &'a mut ZipArchive<File>,
    password: Option<&[u8]>,
) -> Result<zip::read::ZipFile<'a, File>, ZipError> {
    match password {
        Some(password) => archive.by_index_decrypt(0, password),
        None => archive.by_index(0),
    }
}

/// The member's bytes as the unzip thread sends them; its error ends the stream as an error,
/// and the end of the channel without one is the end of the member.
struct MemberReader {
    receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.receiver.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(error)) => return Err(error),
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn starts_like_zip(file: &mut File) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(got == magic.len() && &magic == ZIP_MAGIC)
}

fn io_error(path: &Path, source: io::Error) -> OpenError {
    OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

fn zip_error(path: &Path, error: ZipError) -> OpenError {
    let path = path.to_owned();
    match error {
        ZipError::InvalidPassword => OpenError::WrongPassword { path },
        ZipError::UnsupportedArchive(ZipError::PASSWORD_REQUIRED) => {
            OpenError::PasswordNeeded { path }
        }
        ZipError::Io(source) => OpenError::Io { path, source },
        other => OpenError::BadArchive {
            path,
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::{FileOptions, SimpleFileOptions};

    use super::*;

    /// What the simulator serves for an encrypted analysis: one AES-256 member.
    fn aes_zip(dir: &Path, content: &[u8], password: &str) -> PathBuf {
        let path = dir.join("xml.xml");
        let mut writer = zip::ZipWriter::new(File::create(&path).unwrap());
        let options = FileOptions::<()>::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .with_aes_encryption(zip::AesMode::Aes256, password);
        writer.start_file("report-1.xml", options).unwrap();
        writer.write_all(content).unwrap();
        writer.finish().unwrap();
        path
    }

    fn read_all(mut reader: Box<dyn Read + Send>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_plain_report_is_read_as_it_is_with_or_without_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xml.xml");
        std::fs::write(&path, b"<analysis/>").unwrap();
        assert_eq!(
            read_all(open_stored(&path, None).unwrap()).unwrap(),
            b"<analysis/>"
        );
        assert_eq!(
            read_all(open_stored(&path, Some(b"pw")).unwrap()).unwrap(),
            b"<analysis/>"
        );
        assert!(!is_encrypted_archive(&path).unwrap());
    }

    #[test]
    fn an_encrypted_report_is_streamed_decrypted_with_the_right_password() {
        let dir = tempfile::tempdir().unwrap();
        // Several chunks and more than the channel holds, so the thread has to wait for the reader.
        let content: Vec<u8> = (0..300_000u32).flat_map(|n| n.to_le_bytes()).collect();
        let path = aes_zip(dir.path(), &content, "s3cret");
        assert!(is_encrypted_archive(&path).unwrap());
        let got = read_all(open_stored(&path, Some(b"s3cret")).unwrap()).unwrap();
        assert_eq!(got.len(), content.len());
        assert!(got == content);
    }

    #[test]
    fn an_encrypted_report_without_a_password_or_with_a_wrong_one_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let path = aes_zip(dir.path(), b"<analysis/>", "s3cret");
        let none = open_stored(&path, None).err().expect("needs a password");
        assert!(matches!(none, OpenError::PasswordNeeded { .. }), "{none}");
        assert!(none.to_string().contains("a password is needed"), "{none}");
        assert!(none.wants_password());
        let wrong = open_stored(&path, Some(b"guess"))
            .err()
            .expect("wrong password");
        assert!(matches!(wrong, OpenError::WrongPassword { .. }), "{wrong}");
        assert!(wrong.to_string().contains("does not open"), "{wrong}");
        assert!(
            !wrong.to_string().contains("guess"),
            "the password is never shown: {wrong}"
        );
    }

    #[test]
    fn an_archive_with_two_members_is_not_taken_for_an_encrypted_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bins.zip");
        let mut writer = zip::ZipWriter::new(File::create(&path).unwrap());
        for name in ["a", "b"] {
            writer
                .start_file(name, SimpleFileOptions::default())
                .unwrap();
            writer.write_all(b"x").unwrap();
        }
        writer.finish().unwrap();
        let err = open_stored(&path, Some(b"pw")).err().expect("two members");
        assert!(
            matches!(err, OpenError::NotSingleMember { members: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("2 members"), "{err}");
    }

    #[test]
    fn a_missing_report_is_an_io_error_naming_the_file() {
        let err = open_stored(Path::new("/nonexistent/xml.xml"), None)
            .err()
            .expect("missing");
        assert!(matches!(err, OpenError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/xml.xml"), "{err}");
    }

    #[test]
    fn a_corrupted_member_is_a_read_error_not_a_short_document() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..50_000u32).flat_map(|n| n.to_le_bytes()).collect();
        let path = aes_zip(dir.path(), &content, "pw");
        let mut bytes = std::fs::read(&path).unwrap();
        // A byte in the middle of the encrypted data: the header and the central directory
        // stay intact, so only the stream (or the AES authentication at its end) can tell.
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let reader = open_stored(&path, Some(b"pw")).expect("the header is intact");
        assert!(
            read_all(reader).is_err(),
            "a corrupted member must not read as a document"
        );
    }
}
