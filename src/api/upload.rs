//! Streaming request bodies from files on disk (never the whole file in memory), the chunk
//! size they are cut to, and the progress callback they report to.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::error::ApiError;

/// Chunk size of chunked uploads, fixed by the official client at 10 MiB.
pub const CHUNK_SIZE: u64 = 10 * 1024 * 1024;

/// Progress callback: called with the number of bytes transferred so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Read buffer of upload streams: large enough for throughput, small enough for memory.
const READ_BUFFER: usize = 256 * 1024;

/// A body streaming `len` bytes of `path` from `offset`, reporting progress as bytes go out.
pub(crate) async fn file_body(
    path: &Path,
    offset: u64,
    len: u64,
    progress: Option<Progress>,
) -> Result<reqwest::Body, ApiError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ApiError::io(format!("cannot open {}", path.display()), e))?;
    if offset > 0 {
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| ApiError::io(format!("cannot seek in {}", path.display()), e))?;
    }
    let mut sent = 0u64;
    let stream = ReaderStream::with_capacity(file.take(len), READ_BUFFER).map(move |chunk| {
        if let (Ok(bytes), Some(progress)) = (&chunk, &progress) {
            sent += bytes.len() as u64;
            progress(sent);
        }
        chunk
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// Deadline for a transfer of `bytes`: 60 s plus 256 KiB/s, at most one hour.
pub(crate) fn transfer_timeout(bytes: u64) -> Duration {
    let secs = 60 + bytes / (256 * 1024);
    Duration::from_secs(secs.min(3600))
}

/// The base name of `path`, as text, for the server.
pub(crate) fn default_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "sample".to_owned())
}

/// The file name as it goes on the wire: UTF-8 written directly, like jbxapi (HTML5 style),
/// but with the characters that would break the multipart header (quotes, backslashes, control
/// characters) replaced, and cut to 255 bytes at a character boundary keeping the extension.
pub fn wire_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' | '/' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    let cleaned = if cleaned.trim().is_empty() {
        "sample".to_owned()
    } else {
        cleaned
    };
    crate::text::truncate_keeping_extension(&cleaned, 255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_keep_utf8_but_drop_header_breaking_characters() {
        assert_eq!(wire_file_name("bär.exe"), "bär.exe");
        assert_eq!(wire_file_name("a\"b\r\n.doc"), "a_b__.doc");
        assert_eq!(wire_file_name(""), "sample");
    }

    #[test]
    fn long_names_are_cut_to_255_bytes_at_a_character_boundary_keeping_the_extension() {
        let long = format!("{}.docx", "ä".repeat(300));
        let cut = wire_file_name(&long);
        assert!(cut.len() <= 255, "{}", cut.len());
        assert!(cut.ends_with(".docx"));
    }

    #[test]
    fn transfer_deadlines_grow_with_size_and_are_capped() {
        assert_eq!(transfer_timeout(0), Duration::from_secs(60));
        assert_eq!(transfer_timeout(256 * 1024 * 100), Duration::from_secs(160));
        assert_eq!(transfer_timeout(u64::MAX / 2), Duration::from_secs(3600));
    }
}
