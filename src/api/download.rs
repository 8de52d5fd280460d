//! `analysis/download` replies: the server's file name and a streamed, length-checked body.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::ApiError;
use super::throttle::Throttle;
use super::transport;

/// A download whose headers have arrived; the body is read by [`Download::write_to`].
#[derive(Debug)]
pub struct Download {
    pub(crate) response: reqwest::Response,
    pub(crate) server_filename: Option<String>,
    pub(crate) content_length: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
    /// Longest silence between two pieces of the body.
    pub(crate) idle_timeout: Duration,
    /// Minimum bytes per second over each `rate_window`; 0 = none.
    pub(crate) min_rate: u64,
    pub(crate) rate_window: Duration,
    pub(crate) throttle: Arc<Throttle>,
}

/// What [`Download::write_to`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadSummary {
    pub bytes: u64,
    pub sha256: String,
}

impl Download {
    /// The file name from `Content-Disposition`, decoded but NOT sanitised: metadata only, never
    /// a path. Use `storage::safe_file_name` to derive a name to store under.
    pub fn server_filename(&self) -> Option<&str> {
        self.server_filename.as_deref()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Streams the body into `sink`, hashing it, enforcing the size cap while reading and
    /// checking the total against `Content-Length`. On error the sink holds a partial body: the
    /// caller must discard it (storage's atomic files do that on drop).
    ///
    /// Two deadlines guard the body (RELIABILITY.md case 70): a silence longer than
    /// the read-idle timeout is a stall, and fewer than `min_rate × window` bytes in any
    /// window of `throughput_window` is a slowloris that would otherwise hold a worker for
    /// hours. Both are transient errors; the caller retries later.
    pub async fn write_to<W: AsyncWrite + Unpin>(
        self,
        sink: &mut W,
        progress: impl FnMut(u64),
    ) -> Result<DownloadSummary, ApiError> {
        let throttle = Arc::clone(&self.throttle);
        let result = self.stream_into(sink, progress).await;
        throttle.record(&result);
        result
    }

    async fn stream_into<W: AsyncWrite + Unpin>(
        self,
        sink: &mut W,
        mut progress: impl FnMut(u64),
    ) -> Result<DownloadSummary, ApiError> {
        let mut hasher = BackgroundSha256::start();
        let mut received: u64 = 0;
        let mut body = self.response.bytes_stream();
        let rate_window = self.rate_window.max(Duration::from_millis(100));
        let mut last_data = Instant::now();
        let mut window_start = last_data;
        let mut window_bytes: u64 = 0;
        loop {
            let idle_deadline = last_data + self.idle_timeout;
            let window_end = window_start + rate_window;
            let deadline = if self.min_rate > 0 {
                idle_deadline.min(window_end)
            } else {
                idle_deadline
            };
            let next = tokio::time::timeout_at(deadline, body.next()).await;
            let now = Instant::now();
            if self.min_rate > 0 && now >= window_end {
                let needed = (self.min_rate as f64 * rate_window.as_secs_f64()) as u64;
                if window_bytes < needed {
                    return Err(ApiError::Transport {
                        detail: format!(
                            "the download is too slow: {window_bytes} bytes in {:?}, below the \
                             minimum of {} bytes/s",
                            rate_window, self.min_rate
                        ),
                    });
                }
                window_start = now;
                window_bytes = 0;
            }
            let chunk = match next {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                // `next()` is cancel-safe: the window check passed, keep reading.
                Err(_) if now < idle_deadline => continue,
                Err(_) => {
                    return Err(ApiError::Transport {
                        detail: format!(
                            "the download stalled: no data for {:?} (read-idle timeout)",
                            self.idle_timeout
                        ),
                    });
                }
            };
            let chunk = chunk.map_err(|e| transport::body_error(&e))?;
            last_data = now;
            window_bytes += chunk.len() as u64;
            received += chunk.len() as u64;
            if let Some(limit) = self.max_bytes
                && received > limit
            {
                return Err(ApiError::TooLarge { limit });
            }
            // SHA-256 is the largest CPU cost of a download (~0.65 s per GiB with SHA-NI); on
            // its own thread it overlaps receiving and writing (P8).
            hasher.update(&chunk).await?;
            sink.write_all(&chunk)
                .await
                .map_err(|e| ApiError::io("writing the download", e))?;
            progress(received);
        }
        if let Some(expected) = self.content_length
            && expected != received
        {
            return Err(ApiError::Truncated { expected, received });
        }
        sink.flush()
            .await
            .map_err(|e| ApiError::io("writing the download", e))?;
        Ok(DownloadSummary {
            bytes: received,
            sha256: hasher.finish().await?,
        })
    }
}

/// Size of the hashing thread's buffers, and how many exist at most (4 MiB in all; 8 measured
/// no faster). The body is copied into them (a memory copy costs a tenth of hashing) rather
/// than handing the thread the received `Bytes` themselves: a `Bytes` still held stops the HTTP
/// stack from reusing its read buffer, and the fresh buffers it allocates instead cost
/// 50,000–70,000 page faults per GiB (BENCHMARKS.md P8).
const HASH_BLOCK: usize = 1 << 20;
const HASH_BUFFERS: usize = 4;

/// SHA-256 of a stream, computed on a blocking thread while the caller goes on receiving and
/// writing. Memory is bounded by [`HASH_BUFFERS`] × [`HASH_BLOCK`]: the thread hands each
/// buffer back after hashing it, and the caller waits for one when all are queued. Dropping it
/// (any error path of the download) closes the queue: the thread hashes what is queued and
/// ends, nobody waits for it.
struct BackgroundSha256 {
    /// The buffer being filled.
    current: Vec<u8>,
    full: mpsc::Sender<Vec<u8>>,
    empty: mpsc::Receiver<Vec<u8>>,
    allocated: usize,
    worker: JoinHandle<String>,
}

impl BackgroundSha256 {
    fn start() -> Self {
        let (full, mut to_hash) = mpsc::channel::<Vec<u8>>(HASH_BUFFERS);
        let (give_back, empty) = mpsc::channel::<Vec<u8>>(HASH_BUFFERS);
        let worker = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(mut buffer) = to_hash.blocking_recv() {
                hasher.update(&buffer);
                buffer.clear();
                // Capacity for every buffer, so this never blocks; a gone caller is fine.
                let _ = give_back.try_send(buffer);
            }
            hex::encode(hasher.finalize())
        });
        Self {
            current: Vec::new(),
            full,
            empty,
            allocated: 0,
            worker,
        }
    }

    /// Adds `data`, handing each full buffer to the thread.
    async fn update(&mut self, mut data: &[u8]) -> Result<(), ApiError> {
        while !data.is_empty() {
            if self.current.capacity() == 0 {
                self.current = self.next_buffer().await?;
            }
            let n = data.len().min(HASH_BLOCK - self.current.len());
            self.current.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.current.len() == HASH_BLOCK {
                self.hand_over().await?;
            }
        }
        Ok(())
    }

    /// Queues the current buffer (there is room: at most `HASH_BUFFERS` exist).
    async fn hand_over(&mut self) -> Result<(), ApiError> {
        let buffer = std::mem::take(&mut self.current);
        self.full
            .send(buffer)
            .await
            // The receiver only goes away if the thread died (a panic).
            .map_err(|_| hash_thread_failed(None))
    }

    /// A buffer handed back by the thread, or a new one while fewer than the maximum exist.
    async fn next_buffer(&mut self) -> Result<Vec<u8>, ApiError> {
        if let Ok(buffer) = self.empty.try_recv() {
            return Ok(buffer);
        }
        if self.allocated < HASH_BUFFERS {
            self.allocated += 1;
            return Ok(Vec::with_capacity(HASH_BLOCK));
        }
        self.empty
            .recv()
            .await
            .ok_or_else(|| hash_thread_failed(None))
    }

    /// Queues what is left, closes the queue and returns the hex digest of everything.
    async fn finish(mut self) -> Result<String, ApiError> {
        if !self.current.is_empty() {
            self.hand_over().await?;
        }
        let Self { full, worker, .. } = self;
        drop(full);
        worker.await.map_err(|e| hash_thread_failed(Some(e)))
    }

    /// What dropping does, with the thread's handle kept (for tests).
    #[cfg(test)]
    fn abandon(self) -> JoinHandle<String> {
        let Self { full, worker, .. } = self;
        drop(full);
        worker
    }
}

fn hash_thread_failed(error: Option<tokio::task::JoinError>) -> ApiError {
    let detail = error.map_or_else(|| "it stopped".to_owned(), |e| e.to_string());
    ApiError::io(
        "hashing the download",
        std::io::Error::other(format!("the hashing thread failed: {detail}")),
    )
}

/// Extracts the file name from a `Content-Disposition` value, tolerating what servers really
/// send: `filename="x";` with the trailing semicolon Joe Sandbox uses, unquoted names,
/// backslash escapes, and RFC 5987 `filename*=UTF-8''...` (preferred when present).
pub fn parse_content_disposition(value: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for (key, raw) in parameters(value) {
        match key.to_ascii_lowercase().as_str() {
            "filename*" => extended = decode_ext_value(&raw),
            "filename" => plain = Some(raw),
            _ => {}
        }
    }
    extended.or(plain).filter(|name| !name.is_empty())
}

/// Splits `type; a=b; c="d;e"` into its parameters, honouring quotes.
fn parameters(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = value;
    // Skip the disposition type.
    match rest.find(';') {
        Some(i) => rest = &rest[i + 1..],
        None => return out,
    }
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let mut val = String::new();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            val.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => val.push(c),
                }
            }
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            val = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        out.push((key, val));
    }
    out
}

/// Decodes `UTF-8''percent%20encoded` (RFC 5987); other charsets are decoded as UTF-8 lossily.
fn decode_ext_value(raw: &str) -> Option<String> {
    let mut parts = raw.splitn(3, '\'');
    let _charset = parts.next()?;
    let _lang = parts.next()?;
    let encoded = parts.next()?;
    Some(
        percent_encoding::percent_decode_str(encoded)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A download whose body is `pieces`, then `Err(failure)` if given; `Content-Length` is
    /// the sum of the pieces.
    fn download_of(pieces: Vec<Vec<u8>>, failure: Option<&'static str>) -> Download {
        let length = pieces.iter().map(|p| p.len() as u64).sum();
        let mut items: Vec<Result<Bytes, std::io::Error>> =
            pieces.into_iter().map(|p| Ok(Bytes::from(p))).collect();
        if let Some(message) = failure {
            items.push(Err(std::io::Error::other(message)));
        }
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(items));
        Download {
            response: reqwest::Response::from(axum::http::Response::new(body)),
            server_filename: None,
            content_length: Some(length),
            max_bytes: None,
            idle_timeout: Duration::from_secs(5),
            min_rate: 0,
            rate_window: Duration::from_secs(5),
            throttle: Arc::default(),
        }
    }

    /// Pieces that end inside, exactly on and just after the hashing thread's buffers.
    fn uneven_pieces() -> Vec<Vec<u8>> {
        let sizes = [
            1,
            HASH_BLOCK - 1,
            HASH_BLOCK,
            7,
            HASH_BUFFERS * HASH_BLOCK + 5,
            0,
            65_536,
        ];
        let mut next = 0u8;
        sizes
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| {
                        next = next.wrapping_mul(31).wrapping_add(7);
                        next
                    })
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn the_recorded_hash_is_the_sha256_of_the_bytes_across_piece_boundaries() {
        let pieces = uneven_pieces();
        let all = pieces.concat();
        // More than all buffers hold, so buffers must come back from the thread and be reused.
        assert!(all.len() > (HASH_BUFFERS + 2) * HASH_BLOCK);
        let mut sink = Vec::new();
        let summary = download_of(pieces, None)
            .write_to(&mut sink, |_| {})
            .await
            .unwrap();
        assert_eq!(summary.bytes, all.len() as u64);
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(&all)));
        assert!(sink == all, "the sink holds the body");
    }

    #[tokio::test]
    async fn an_empty_body_hashes_to_the_sha256_of_nothing() {
        let summary = download_of(vec![], None)
            .write_to(&mut Vec::new(), |_| {})
            .await
            .unwrap();
        assert_eq!(summary.bytes, 0);
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(b"")));
    }

    #[tokio::test]
    async fn a_body_failing_mid_stream_fails_promptly_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = crate::storage::AtomicFile::create(dir.path(), "report.html", 0o600)
            .await
            .unwrap();
        let download = download_of(uneven_pieces(), Some("connection reset"));
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            download.write_to(file.file_mut(), |_| {}),
        )
        .await
        .expect("the download ends instead of hanging");
        let error = result.unwrap_err();
        assert!(error.is_transient(), "{error}");
        drop(file);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn an_abandoned_hasher_thread_ends_after_what_was_queued() {
        let mut hasher = BackgroundSha256::start();
        for piece in uneven_pieces() {
            hasher.update(&piece).await.unwrap();
        }
        let worker = hasher.abandon();
        tokio::time::timeout(Duration::from_secs(10), worker)
            .await
            .expect("the hashing thread ends once its queue is closed")
            .unwrap();
    }

    #[test]
    fn joe_sandbox_style_header_with_trailing_semicolon() {
        assert_eq!(
            parse_content_disposition(r#"attachment; filename="report-771703.json";"#).as_deref(),
            Some("report-771703.json")
        );
    }

    #[test]
    fn quoted_unquoted_and_escaped_names() {
        assert_eq!(
            parse_content_disposition(r#"attachment; filename="a \"b\".html""#).as_deref(),
            Some(r#"a "b".html"#)
        );
        assert_eq!(
            parse_content_disposition("attachment; filename=dump.pcap").as_deref(),
            Some("dump.pcap")
        );
        assert_eq!(
            parse_content_disposition(r#"attachment; filename="x;y.txt"; size=3"#).as_deref(),
            Some("x;y.txt")
        );
    }

    #[test]
    fn rfc5987_extended_name_is_preferred() {
        assert_eq!(
            parse_content_disposition(
                r#"attachment; filename="fallback.txt"; filename*=UTF-8''b%C3%A4r%20x.txt"#
            )
            .as_deref(),
            Some("bär x.txt")
        );
    }

    #[test]
    fn hostile_names_are_returned_as_text_for_the_caller_to_sanitise() {
        assert_eq!(
            parse_content_disposition(r#"attachment; filename="../../etc/cron.d/x";"#).as_deref(),
            Some("../../etc/cron.d/x")
        );
        assert_eq!(
            parse_content_disposition("attachment; filename*=UTF-8''..%2F..%2Fx").as_deref(),
            Some("../../x")
        );
    }

    #[test]
    fn missing_or_empty_names_give_none() {
        assert_eq!(parse_content_disposition("attachment"), None);
        assert_eq!(
            parse_content_disposition(r#"attachment; filename="""#),
            None
        );
        assert_eq!(parse_content_disposition("inline; size=4"), None);
    }
}
