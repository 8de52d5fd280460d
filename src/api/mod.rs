//! The Joe Sandbox API v2 client: the only module that knows the vendor's URLs, form fields and
//! JSON shapes.
//!
//! * [`JoeClient`] (`client.rs`): the handle; its methods live by concern in `settings.rs`
//!   ([`ClientSettings`], the API base), `request.rs` (plumbing: hold-off, envelope, the one
//!   retry helper, paging), `submission.rs` (`submission/new` and the chunked-upload
//!   protocol, with the hook that records a chunked submission's id before its first chunk)
//!   and `endpoints.rs` ([`Endpoint`] names, one method per read or delete endpoint).
//! * `upload.rs` / `download.rs`: streaming bodies; `wire.rs`: form names several files share.
//! * [`SubmissionParams`] / [`SearchQuery`]: typed request parameters and their wire encoding.
//! * [`types`]: tolerant reply types.
//! * `lookup`: finding an attempt's submission by the marker in its comments (search, and the
//!   submission list with `submission/info`), and deleting what must not stay.
//! * [`ReportType`]: the report types `analysis/download` knows, the one list the CLI, the
//!   configuration and the download worker use.
//! * [`report`]: reading downloaded reports (full and incident, JSON and XML) into facts.
//! * [`ApiError`]: the classified failure.

mod client;
mod download;
mod endpoints;
mod error;
mod lookup;
mod params;
pub mod report;
mod reports;
mod request;
mod retry;
mod secret;
mod settings;
mod submission;
mod throttle;
mod transport;
pub mod types;
mod upload;
mod wire;

pub use client::JoeClient;
pub use download::{Download, DownloadSummary, parse_content_disposition};
pub use endpoints::Endpoint;
pub use error::{ApiError, ApiErrorKind};
pub use lookup::{FoundSubmission, MarkerFindings, Unidentified, carries_marker, submission_time};
pub use params::{
    KNOWN_PARAMS, Param, ParamError, ParamType, ParamValue, SEARCH_FILTERS, SearchQuery,
    SubmissionParams, param_type, parse_bool,
};
pub use reports::ReportType;
pub use retry::{RetryPolicy, parse_retry_after};
pub use secret::{ApiKey, ApiKeyError, Secret};
pub use settings::{ClientSettings, DEFAULT_SERVER_URL, api_base};
pub use submission::{SampleUpload, SubmitError};
pub use throttle::HoldOff;
pub use upload::wire_file_name;
pub use upload::{CHUNK_SIZE, Progress};

/// Fuzzing and property tests only (`fuzz/fuzz_targets/reply.rs`, `tests/it/properties.rs`): runs
/// the reply parser over `status` and `body` the way every call does, then the typed decoders
/// of the replies the daemon depends on (`submission/info`, `analysis/search`,
/// `account/info`), and renders any error as it would be logged. Returns how many decoders
/// accepted the payload. The property: whatever the server sends, this returns, never panics.
#[doc(hidden)]
pub fn parse_reply_for_fuzzing(status: u16, body: &[u8]) -> Result<usize, ApiError> {
    let envelope = match transport::parse_reply(status, None, body) {
        Ok(envelope) => envelope,
        Err(error) => {
            let _ = (error.to_string(), error.kind(), error.is_transient());
            return Err(error);
        }
    };
    let data = envelope.data;
    let decoded = [
        serde_json::from_value::<types::Submission>(data.clone()).is_ok(),
        serde_json::from_value::<Vec<types::Analysis>>(data.clone()).is_ok(),
        serde_json::from_value::<types::AccountInfo>(data.clone()).is_ok(),
        serde_json::from_value::<types::NewSubmission>(data.clone()).is_ok(),
        serde_json::from_value::<types::Analysis>(data).is_ok(),
    ];
    Ok(decoded.into_iter().filter(|ok| *ok).count())
}
