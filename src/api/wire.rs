//! Form field names more than one file of `api` needs. A leaf module (it imports nothing), so
//! the files that share a name do not import each other for it.

/// Carries the API key on every request.
pub(super) const KEY: &str = "apikey";

/// Names the sample of a chunked `submission/new`; a server without chunked upload refuses
/// it by this name (`Unknown parameter chunked-sample.`).
pub(super) const CHUNKED_SAMPLE: &str = "chunked-sample";

/// Carries the next page's token of a paginated list.
pub(super) const PAGINATION_NEXT: &str = "pagination_next";
