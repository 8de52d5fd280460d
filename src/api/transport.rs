//! Turning HTTP replies and reqwest errors into [`Envelope`]s and [`ApiError`]s.
//!
//! Pure functions over status, headers and bytes, so the error model is unit-tested without a
//! server.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::error::{ApiError, ApiErrorKind};
use super::retry::parse_retry_after;

/// A successful reply: the `data` payload and the pagination token, if more pages exist.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    pub data: Value,
    pub next: Option<String>,
}

/// The `Retry-After` header of a reply, parsed.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// The first bytes of a body, printable on one log line.
pub(crate) fn snippet(body: &[u8]) -> String {
    crate::text::one_line(&String::from_utf8_lossy(&body[..body.len().min(200)]), 200)
}

/// Decodes a reply the way jbxapi does: status < 400 is success and must carry `data`;
/// status ≥ 400 carries `{"errors": [{"code", "message"}]}`, of which the first entry counts.
pub(crate) fn parse_reply(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Envelope, ApiError> {
    let unexpected = || ApiError::UnexpectedFormat {
        status,
        snippet: snippet(body),
    };
    let json: Value = serde_json::from_slice(body).map_err(|_| unexpected())?;
    if status < 400 {
        let Value::Object(mut map) = json else {
            return Err(unexpected());
        };
        let data = map.remove("data").ok_or_else(unexpected)?;
        // jbxapi only knows a missing key as "no more pages"; a null or empty token ends the
        // list too, so a sloppy server cannot make us loop.
        let next = map
            .get("pagination")
            .and_then(|p| p.get("next"))
            .and_then(|n| match n {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        return Ok(Envelope { data, next });
    }
    let first = json
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
        .ok_or_else(unexpected)?;
    let code = first.get("code").and_then(Value::as_i64).unwrap_or(0);
    // The server's text goes into log lines, the database and the CLI's output: one printable
    // line of bounded length, whatever the server sent (RELIABILITY.md case 119).
    let message = first.get("message").and_then(Value::as_str).map_or_else(
        || "(no message)".to_owned(),
        |m| crate::text::one_line(m, 1000),
    );
    Err(ApiError::Api {
        kind: ApiErrorKind::from_code(code, &message),
        code,
        message,
        status,
        retry_after,
    })
}

/// The error and all its causes on one line (reqwest's own text hides the interesting part,
/// e.g. "connection refused", in the source chain).
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Classifies a failed `send()`. Only a connect failure proves that nothing reached the server;
/// for a non-idempotent call everything else is an unknown outcome.
pub(crate) fn send_error(
    error: &reqwest::Error,
    url: &str,
    timeout: Duration,
    idempotent: bool,
) -> ApiError {
    if error.is_connect() {
        return ApiError::Unreachable {
            url: url.to_owned(),
            detail: chain(error),
        };
    }
    if !idempotent {
        return ApiError::UnknownOutcome {
            detail: chain(error),
            status: None,
        };
    }
    if error.is_timeout() {
        ApiError::Timeout { after: timeout }
    } else {
        ApiError::Transport {
            detail: chain(error),
        }
    }
}

/// Classifies a failure while reading a body.
pub(crate) fn body_error(error: &reqwest::Error) -> ApiError {
    if error.is_timeout() {
        ApiError::Transport {
            detail: format!("timed out while reading the reply: {}", chain(error)),
        }
    } else {
        ApiError::Transport {
            detail: chain(error),
        }
    }
}

/// For `submission/new` and chunk uploads: a server-side failure after the body was sent may
/// have created the submission, so it becomes an unknown outcome instead of a retryable error.
pub(crate) fn submission_outcome(error: ApiError) -> ApiError {
    match error {
        ApiError::Api {
            status,
            kind,
            message,
            ..
        } if matches!(status, 500 | 502 | 504) || kind == ApiErrorKind::InternalServerError => {
            ApiError::UnknownOutcome {
                detail: format!("HTTP {status}: {message}"),
                status: Some(status),
            }
        }
        ApiError::UnexpectedFormat { status, snippet } if !(400..500).contains(&status) => {
            ApiError::UnknownOutcome {
                detail: format!("HTTP {status} with an unexpected reply: {snippet}"),
                status: Some(status),
            }
        }
        ApiError::Timeout { .. } | ApiError::Transport { .. } => ApiError::UnknownOutcome {
            detail: error.to_string(),
            status: None,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn success_returns_data_and_the_next_page_token() {
        let env = parse_reply(
            200,
            None,
            br#"{"data": [{"webid": "1"}], "pagination": {"next": "abc"}}"#,
        )
        .unwrap();
        assert_eq!(env.data, json!([{"webid": "1"}]));
        assert_eq!(env.next.as_deref(), Some("abc"));
    }

    #[test]
    fn a_missing_or_null_pagination_ends_the_list() {
        assert_eq!(
            parse_reply(200, None, br#"{"data": []}"#).unwrap().next,
            None
        );
        assert_eq!(
            parse_reply(200, None, br#"{"data": [], "pagination": null}"#)
                .unwrap()
                .next,
            None
        );
    }

    #[test]
    fn case_119_a_server_message_is_one_printable_line_of_bounded_length() {
        let body = format!(
            r#"{{"errors": [{{"code": 2, "message": "a\r\nb\u001b[2K{}"}}]}}"#,
            "x".repeat(5000)
        );
        let err = parse_reply(400, None, body.as_bytes()).unwrap_err();
        let message = err.server_message();
        assert!(message.starts_with("a\\r\\nb\\u{1b}[2K"), "{message}");
        assert!(!message.chars().any(char::is_control));
        assert_eq!(
            message.chars().count(),
            1001,
            "1000 characters and the ellipsis"
        );
    }

    #[test]
    fn errors_carry_code_message_and_status() {
        let err = parse_reply(
            403,
            None,
            br#"{"errors": [{"code": 4, "message": "Invalid API key."}, {"code": 9}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.kind(), Some(ApiErrorKind::InvalidApiKey));
        assert_eq!(err.status(), Some(403));
        assert_eq!(err.server_message(), "Invalid API key.");
    }

    #[test]
    fn html_or_json_without_data_is_an_unexpected_format_that_hints_at_the_url() {
        let err = parse_reply(200, None, b"<html>login</html>").unwrap_err();
        assert!(matches!(
            err,
            ApiError::UnexpectedFormat { status: 200, .. }
        ));
        assert!(err.to_string().contains("API URL"), "{err}");
        let err = parse_reply(200, None, br#"{"result": 1}"#).unwrap_err();
        assert!(matches!(err, ApiError::UnexpectedFormat { .. }));
        let err = parse_reply(502, None, b"<html>502 Bad Gateway</html>").unwrap_err();
        assert!(err.is_transient());
    }

    #[test]
    fn server_errors_on_a_submission_become_unknown_outcomes() {
        let err = parse_reply(
            500,
            None,
            br#"{"errors": [{"code": 6, "message": "Internal error."}]}"#,
        )
        .unwrap_err();
        assert!(matches!(
            submission_outcome(err),
            ApiError::UnknownOutcome {
                status: Some(500),
                ..
            }
        ));
        let refused = parse_reply(
            400,
            None,
            br#"{"errors": [{"code": 3, "message": "Unknown parameter x."}]}"#,
        )
        .unwrap_err();
        assert!(matches!(
            submission_outcome(refused),
            ApiError::Api { code: 3, .. }
        ));
    }

    #[test]
    fn snippets_are_one_escaped_line() {
        assert_eq!(snippet(b"a\nb\x1b"), "a\\nb\\u{1b}");
    }
}
