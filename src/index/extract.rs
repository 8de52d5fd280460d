//! The one call site of the report parser: a stored report file (plain, or the AES zip of an
//! encrypted analysis) → [`ReportFacts`]. Everything else in `index` takes an [`Extract`], so
//! tests can say exactly which facts a report yields.

use std::path::Path;

use super::ingest::Extract;
use crate::api::report::ReportFacts;

/// The extractor the daemon and `jbxd index rebuild` use.
pub const READ_REPORT: Extract = read_report;

/// Reads the stored report at `path` of type `report_type`.
///
/// INTERIM (branch h/index only, until `api::report::{parse, open_stored}` are merged): no
/// parser is linked yet, so every readable report is recorded as failed with this reason.
pub fn read_report(
    _path: &Path,
    report_type: &str,
    _password: Option<&[u8]>,
) -> Result<ReportFacts, String> {
    Err(format!(
        "this build cannot parse {report_type} reports yet (the report parser is not linked)"
    ))
}
