//! The Joe Sandbox API v2 client: the only module that knows the vendor's URLs, form fields and
//! JSON shapes.
//!
//! * [`JoeClient`]: one method per endpoint, with timeouts, retries for read-only calls and the
//!   no-blind-retry rule for submissions.
//! * [`SubmissionParams`] / [`SearchQuery`]: typed request parameters and their wire encoding.
//! * [`types`]: tolerant reply types.
//! * [`ApiError`]: the classified failure.

mod client;
mod download;
mod error;
mod params;
mod retry;
mod secret;
mod transport;
pub mod types;
mod upload;

pub use client::{
    CHUNK_SIZE, ChunkedSubmission, ClientSettings, DEFAULT_SERVER_URL, JoeClient, Progress,
    SampleUpload, api_base,
};
pub use download::{Download, DownloadSummary, parse_content_disposition};
pub use error::{ApiError, ApiErrorKind};
pub use params::{
    KNOWN_PARAMS, ParamError, ParamType, ParamValue, SEARCH_FILTERS, SearchQuery, SubmissionParams,
    param_type, parse_bool,
};
pub use retry::{RetryPolicy, parse_retry_after};
pub use secret::{ApiKey, ApiKeyError};
pub use upload::wire_file_name;

/// Report types `analysis/download` knows (see the API notes); other names are passed through,
/// the server decides.
pub const DOWNLOAD_TYPES: &[&str] = &[
    "html",
    "lighthtml",
    "executive",
    "pdf",
    "pdfexecutive",
    "classhtml",
    "classxml",
    "clusterxml",
    "xml",
    "lightxml",
    "irxml",
    "json",
    "jsonfixed",
    "lightjson",
    "lightjsonfixed",
    "irjson",
    "irjsonfixed",
    "iochtml",
    "iocjson",
    "iocxml",
    "stix",
    "misp",
    "maec",
    "openioc",
    "graphreports",
    "pcap",
    "pcapslim",
    "pcapunified",
    "pcapsslinspection",
    "bins",
    "unpackpe",
    "memdumps",
    "unpack",
    "ida",
    "shoots",
    "memstrings",
    "binstrings",
    "yara",
    "sample",
    "cookbook",
    "chathtml",
    "chatpdf",
];
