//! `analysis/download` replies: the server's file name and a streamed, length-checked body.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};
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
    /// Two deadlines guard the body (reliability.md §2.7, catalog 70): a silence longer than
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
        let mut hasher = Sha256::new();
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
            hasher.update(&chunk);
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
            sha256: hex::encode(hasher.finalize()),
        })
    }
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
