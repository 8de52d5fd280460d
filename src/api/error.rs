//! Every way a call to Joe Sandbox can fail, classified so that callers can branch on it.

use std::time::Duration;

/// The Joe Sandbox error codes (`errors[0].code`), as the official client maps them, plus the
/// two code-1 cases that only the message tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorKind {
    /// Code 1 with a quota text: the account's submission quota is used up.
    QuotaExceeded,
    /// Code 1 (or any code) with "Terms and Conditions": `accept-tac` was not set on the cloud.
    TermsNotAccepted,
    /// Code 2.
    MissingParameter,
    /// Code 3; also what the server answers for unknown webids and submission ids.
    InvalidParameter,
    /// Code 4.
    InvalidApiKey,
    /// Code 5: maintenance.
    ServerOffline,
    /// Code 6.
    InternalServerError,
    /// Code 7.
    PermissionDenied,
    /// Code 8.
    UnknownEndpoint,
    /// Any other code.
    Other,
}

impl ApiErrorKind {
    pub fn from_code(code: i64, message: &str) -> Self {
        let lower = message.to_ascii_lowercase();
        if lower.contains("terms and conditions") {
            return Self::TermsNotAccepted;
        }
        match code {
            1 if lower.contains("quota") || lower.contains("allowed submissions") => {
                Self::QuotaExceeded
            }
            2 => Self::MissingParameter,
            3 => Self::InvalidParameter,
            4 => Self::InvalidApiKey,
            5 => Self::ServerOffline,
            6 => Self::InternalServerError,
            7 => Self::PermissionDenied,
            8 => Self::UnknownEndpoint,
            _ => Self::Other,
        }
    }

    /// The official client's class name, which analysts know from jbxapi's output.
    pub fn name(self) -> &'static str {
        match self {
            Self::QuotaExceeded => "QuotaExceeded",
            Self::TermsNotAccepted => "TermsNotAccepted",
            Self::MissingParameter => "MissingParameterError",
            Self::InvalidParameter => "InvalidParameterError",
            Self::InvalidApiKey => "InvalidApiKeyError",
            Self::ServerOffline => "ServerOfflineError",
            Self::InternalServerError => "InternalServerError",
            Self::PermissionDenied => "PermissionError",
            Self::UnknownEndpoint => "UnknownEndpointError",
            Self::Other => "ApiError",
        }
    }
}

/// A failed API call. Built only from status codes, headers and the server's own text — never
/// from the request, whose form carries the API key.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with the Joe error envelope.
    #[error("{message} ({}, code {code}, HTTP {status})", kind.name())]
    Api {
        kind: ApiErrorKind,
        code: i64,
        message: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Nothing reached the server: DNS, refused connection, TLS handshake or certificate failure.
    #[error("cannot connect to {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// A read-only call timed out.
    #[error("no answer from the server within {after:?}")]
    Timeout { after: Duration },
    /// The connection broke during a read-only call.
    #[error("the connection failed during the request: {detail}")]
    Transport { detail: String },
    /// A submission request may or may not have created a submission (timeout, reset or server
    /// error after the body was sent). Never retried blindly: look the submission up first.
    #[error(
        "the outcome of the submission is unknown ({detail}); it may have been created: \
         check `jbxd submission list` before submitting again"
    )]
    UnknownOutcome { detail: String, status: Option<u16> },
    /// The reply was not the Joe JSON envelope: most often a wrong API URL or a proxy page.
    #[error(
        "the server responded with an unexpected format (HTTP {status}); is the API URL right? \
         It usually ends in /api. Reply began with: {snippet}"
    )]
    UnexpectedFormat { status: u16, snippet: String },
    /// A download exceeded the configured size cap.
    #[error("the download is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A download ended before the announced length.
    #[error("the download was truncated: {received} of {expected} bytes received")]
    Truncated { expected: u64, received: u64 },
    /// A chunked upload created a submission but could not send all chunks.
    #[error(
        "chunk {chunk} of the upload into submission {submission_id} failed: {source}{}",
        if *deleted { " (the incomplete submission was deleted)" } else { " (the incomplete submission could not be deleted)" }
    )]
    ChunkFailed {
        submission_id: String,
        chunk: u64,
        deleted: bool,
        #[source]
        source: Box<ApiError>,
    },
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The client settings are unusable (bad URL, unreadable CA file, bad proxy).
    #[error("invalid connection settings: {0}")]
    Config(String),
}

impl ApiError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The HTTP status the server sent, if it sent one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::UnexpectedFormat { status, .. } => Some(*status),
            Self::UnknownOutcome { status, .. } => *status,
            Self::ChunkFailed { source, .. } => source.status(),
            _ => None,
        }
    }

    /// The Joe error kind, for errors that carry the Joe envelope.
    pub fn kind(&self) -> Option<ApiErrorKind> {
        match self {
            Self::Api { kind, .. } => Some(*kind),
            Self::ChunkFailed { source, .. } => source.kind(),
            _ => None,
        }
    }

    /// The server's own message where there is one, else this error's text.
    pub fn server_message(&self) -> String {
        match self {
            Self::Api { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Whether the server refused the chunked upload itself (code 3 naming the chunked
    /// field): a server without chunked upload, which takes the sample in one request
    /// instead. A failed chunk is not this, whatever its message says.
    pub fn is_chunked_unsupported(&self) -> bool {
        matches!(self, Self::Api { kind: ApiErrorKind::InvalidParameter, message, .. }
            if message.contains(super::wire::CHUNKED_SAMPLE))
    }

    /// How long the server asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether repeating a read-only call can help. Maintenance (code 5) is not retried here:
    /// it lasts longer than any sensible wait inside one command.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::Truncated { .. } => true,
            Self::Api { kind, status, .. } => {
                *kind != ApiErrorKind::ServerOffline
                    && (*status == 429 || *status == 408 || *status >= 500)
            }
            Self::UnexpectedFormat { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_one_is_told_apart_by_its_message() {
        assert_eq!(
            ApiErrorKind::from_code(1, "You have to agree to the Terms and Conditions!"),
            ApiErrorKind::TermsNotAccepted
        );
        assert_eq!(
            ApiErrorKind::from_code(
                1,
                "number of allowed submissions (20) per day have been reached"
            ),
            ApiErrorKind::QuotaExceeded
        );
        assert_eq!(ApiErrorKind::from_code(1, "odd"), ApiErrorKind::Other);
        assert_eq!(ApiErrorKind::from_code(4, "x"), ApiErrorKind::InvalidApiKey);
        assert_eq!(ApiErrorKind::from_code(42, "x"), ApiErrorKind::Other);
    }

    #[test]
    fn maintenance_is_not_transient_but_rate_limits_and_server_errors_are() {
        let api = |kind, status| ApiError::Api {
            kind,
            code: 0,
            message: String::new(),
            status,
            retry_after: None,
        };
        assert!(!api(ApiErrorKind::ServerOffline, 503).is_transient());
        assert!(api(ApiErrorKind::Other, 429).is_transient());
        assert!(api(ApiErrorKind::InternalServerError, 500).is_transient());
        assert!(!api(ApiErrorKind::InvalidParameter, 400).is_transient());
        assert!(!api(ApiErrorKind::InvalidApiKey, 403).is_transient());
    }

    #[test]
    fn only_the_refusal_of_the_chunked_field_means_no_chunked_upload() {
        let refusal = |message: &str| ApiError::Api {
            kind: ApiErrorKind::InvalidParameter,
            code: 3,
            message: message.into(),
            status: 400,
            retry_after: None,
        };
        assert!(refusal("Unknown parameter chunked-sample.").is_chunked_unsupported());
        assert!(!refusal("Invalid system.").is_chunked_unsupported());
        let failed_chunk = ApiError::ChunkFailed {
            submission_id: "7".into(),
            chunk: 2,
            deleted: true,
            source: Box::new(refusal("Unknown parameter chunked-sample.")),
        };
        assert!(!failed_chunk.is_chunked_unsupported());
    }
}
