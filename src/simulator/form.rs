//! Request bodies: `application/x-www-form-urlencoded` and `multipart/form-data`, as jbxapi
//! (python-requests) sends them.
//!
//! Repeated keys (`systems[]`, `tags[]`) are kept in order. The `sample` file part is streamed to
//! a temporary file while being hashed and scanned for verdict markers, so even multi-gigabyte
//! uploads never sit in memory; `chunk` (10 MiB) and `cookbook` parts are small and kept in memory.

use std::path::Path;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use super::envelope::ApiError;
use super::verdict::{MarkerScanner, Markers};

/// Upper bound for an urlencoded body or a text part (urls, comments, ...).
const TEXT_LIMIT: usize = 16 << 20;
/// Upper bound for an in-memory file part; jbxapi's chunks are exactly 10 MiB.
const MEMORY_PART_LIMIT: usize = 64 << 20;
/// How many leading bytes of a file are kept for type sniffing.
const HEAD_LEN: usize = 64;

/// Hashes, size, entropy, markers and leading bytes of a file, computed in one pass.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FileFacts {
    pub(crate) size: u64,
    pub(crate) md5: String,
    pub(crate) sha1: String,
    pub(crate) sha256: String,
    /// For the full report's `fileinfo`, which lists SHA-512 too.
    pub(crate) sha512: String,
    /// Shannon entropy in bits per byte (0–8), the full report's `fileinfo/entropy`.
    pub(crate) entropy: f64,
    pub(crate) markers: Markers,
    pub(crate) head: Vec<u8>,
}

/// Incremental computation of [`FileFacts`].
#[derive(Clone, Debug)]
pub(crate) struct Digester {
    sha256: Sha256,
    sha512: Sha512,
    sha1: Sha1,
    md5: Md5,
    byte_counts: [u64; 256],
    scanner: MarkerScanner,
    size: u64,
    head: Vec<u8>,
}

impl Default for Digester {
    fn default() -> Self {
        Self {
            sha256: Sha256::default(),
            sha512: Sha512::default(),
            sha1: Sha1::default(),
            md5: Md5::default(),
            byte_counts: [0; 256],
            scanner: MarkerScanner::default(),
            size: 0,
            head: Vec::new(),
        }
    }
}

impl Digester {
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        self.sha512.update(data);
        for &byte in data {
            self.byte_counts[usize::from(byte)] += 1;
        }
        self.sha1.update(data);
        self.md5.update(data);
        self.scanner.update(data);
        self.size += data.len() as u64;
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
    }

    pub(crate) fn finish(self) -> FileFacts {
        FileFacts {
            size: self.size,
            md5: hex::encode(self.md5.finalize()),
            sha1: hex::encode(self.sha1.finalize()),
            sha256: hex::encode(self.sha256.finalize()),
            sha512: hex::encode(self.sha512.finalize()),
            entropy: entropy(&self.byte_counts, self.size),
            markers: self.scanner.markers(),
            head: self.head,
        }
    }
}

/// Shannon entropy of a byte histogram, in bits per byte.
fn entropy(counts: &[u64; 256], total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let total = total as f64;
    counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = n as f64 / total;
            -p * p.log2()
        })
        .sum()
}

/// A sample streamed to disk. The file is deleted when this value is dropped, so whoever owns it
/// (a submission, an analysis) owns the file's lifetime.
#[derive(Debug)]
pub(crate) struct StoredFile {
    pub(crate) path: TempPath,
    pub(crate) facts: FileFacts,
}

#[derive(Debug)]
pub(crate) enum FileContent {
    Memory(Bytes),
    Disk(StoredFile),
}

#[derive(Debug)]
pub(crate) struct FilePart {
    pub(crate) field: String,
    pub(crate) file_name: String,
    pub(crate) content: FileContent,
}

/// The fields of one request, in the order they arrived.
#[derive(Debug, Default)]
pub(crate) struct FormData {
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) files: Vec<FilePart>,
}

impl FormData {
    /// The last value of a field (PHP semantics for repeated scalar keys).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The value of a field, treating an empty value like an absent one.
    pub(crate) fn get_nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|value| !value.is_empty())
    }

    /// Every value of a repeated field (`systems[]`).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|(key, _)| key == name) || self.file(name).is_some()
    }

    pub(crate) fn file(&self, name: &str) -> Option<&FilePart> {
        self.files.iter().find(|part| part.field == name)
    }

    pub(crate) fn take_file(&mut self, name: &str) -> Option<FilePart> {
        let index = self.files.iter().position(|part| part.field == name)?;
        Some(self.files.remove(index))
    }

    /// Every parameter name, text fields and file parts alike, in arrival order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .map(|(key, _)| key.as_str())
            .chain(self.files.iter().map(|part| part.field.as_str()))
    }
}

/// The outcome of reading a body: the form (or why it could not be read), whether the body was
/// read to its end, and how many body bytes arrived.
pub(crate) struct ParsedBody {
    pub(crate) form: Result<FormData, ApiError>,
    pub(crate) complete: bool,
    pub(crate) bytes: u64,
}

pub(crate) async fn parse_body(request: Request, upload_dir: &Path) -> ParsedBody {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        parse_multipart(request, upload_dir).await
    } else {
        // urlencoded, or anything else: a body we cannot read as a form simply has no fields,
        // which then fails as "Missing parameter apikey."
        let urlencoded = content_type.is_empty()
            || content_type.starts_with("application/x-www-form-urlencoded");
        match axum::body::to_bytes(request.into_body(), TEXT_LIMIT).await {
            Ok(bytes) => {
                let mut form = FormData::default();
                if urlencoded {
                    form.fields = form_urlencoded::parse(&bytes).into_owned().collect();
                }
                ParsedBody {
                    form: Ok(form),
                    complete: true,
                    bytes: bytes.len() as u64,
                }
            }
            Err(err) => ParsedBody {
                form: Err(ApiError::invalid(format!(
                    "The request body could not be read: {err}"
                ))),
                complete: false,
                bytes: 0,
            },
        }
    }
}

async fn parse_multipart(request: Request, upload_dir: &Path) -> ParsedBody {
    let mut bytes = 0u64;
    let mut multipart = match Multipart::from_request(request, &()).await {
        Ok(multipart) => multipart,
        Err(rejection) => {
            return ParsedBody {
                form: Err(ApiError::invalid(format!(
                    "Malformed multipart body: {rejection}"
                ))),
                complete: false,
                bytes,
            };
        }
    };
    let mut form = FormData::default();
    let result = async {
        while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            match name.as_str() {
                "sample" => {
                    let stored = stream_to_disk(&mut field, upload_dir, &mut bytes).await?;
                    form.files.push(FilePart {
                        field: name,
                        file_name: file_name.unwrap_or_default(),
                        content: FileContent::Disk(stored),
                    });
                }
                "chunk" | "cookbook" => {
                    let data = read_part(&mut field, MEMORY_PART_LIMIT, &mut bytes).await?;
                    form.files.push(FilePart {
                        field: name,
                        file_name: file_name.unwrap_or_default(),
                        content: FileContent::Memory(data),
                    });
                }
                _ => {
                    let data = read_part(&mut field, TEXT_LIMIT, &mut bytes).await?;
                    if let Some(file_name) = file_name {
                        form.files.push(FilePart {
                            field: name,
                            file_name,
                            content: FileContent::Memory(data),
                        });
                    } else {
                        form.fields
                            .push((name, String::from_utf8_lossy(&data).into_owned()));
                    }
                }
            }
        }
        Ok::<(), ApiError>(())
    }
    .await;
    match result {
        Ok(()) => ParsedBody {
            form: Ok(form),
            complete: true,
            bytes,
        },
        Err(err) => ParsedBody {
            form: Err(err),
            complete: false,
            bytes,
        },
    }
}

fn malformed(err: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::invalid(format!("Malformed multipart body: {}", err.body_text()))
}

async fn read_part(
    field: &mut axum::extract::multipart::Field<'_>,
    limit: usize,
    bytes: &mut u64,
) -> Result<Bytes, ApiError> {
    let mut data = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(malformed)? {
        *bytes += chunk.len() as u64;
        if data.len() + chunk.len() > limit {
            return Err(ApiError::invalid(format!(
                "Parameter {} is too large.",
                field.name().unwrap_or_default()
            )));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(data))
}

async fn stream_to_disk(
    field: &mut axum::extract::multipart::Field<'_>,
    upload_dir: &Path,
    bytes: &mut u64,
) -> Result<StoredFile, ApiError> {
    let (file, path) = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(upload_dir)
        .map_err(|err| ApiError::internal(format!("Cannot store the sample: {err}")))?
        .into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut digester = Digester::default();
    while let Some(chunk) = field.chunk().await.map_err(malformed)? {
        *bytes += chunk.len() as u64;
        digester.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|err| ApiError::internal(format!("Cannot store the sample: {err}")))?;
    }
    file.flush()
        .await
        .map_err(|err| ApiError::internal(format!("Cannot store the sample: {err}")))?;
    Ok(StoredFile {
        path,
        facts: digester.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digester_matches_known_hashes() {
        let mut digester = Digester::default();
        digester.update(b"ab");
        digester.update(b"c");
        let facts = digester.finish();
        assert_eq!(facts.size, 3);
        assert_eq!(facts.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(facts.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            facts.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(facts.head, b"abc");
        assert!(
            facts.sha512.starts_with("ddaf35a193617aba"),
            "{}",
            facts.sha512
        );
        assert!((facts.entropy - 3f64.log2()).abs() < 1e-9);
    }

    #[test]
    fn repeated_keys_keep_every_value_and_get_returns_the_last() {
        let form = FormData {
            fields: vec![
                ("systems[]".into(), "w7x64".into()),
                ("systems[]".into(), "w10x64".into()),
                ("comments".into(), "a".into()),
                ("comments".into(), "b".into()),
            ],
            files: vec![],
        };
        assert_eq!(form.all("systems[]"), vec!["w7x64", "w10x64"]);
        assert_eq!(form.get("comments"), Some("b"));
        assert!(form.has("comments"));
        assert!(!form.has("sample"));
    }
}
