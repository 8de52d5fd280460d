//! The one call site of the report parser: a stored report file → [`ReportFacts`]. Everything
//! else in `index` takes an [`Extract`], so tests can say exactly which facts a report yields.

use std::path::Path;

use super::ingest::Extract;
use crate::api::ReportType;
use crate::api::report::{self, ReportFacts};

/// The extractor the daemon and `jbxd index rebuild` use.
pub const READ_REPORT: Extract = read_report;

/// Reads the stored report at `path` of type `report_type`, streaming (`api::report::parse`
/// keeps only the facts, whatever the document's size). The error is one line for the
/// report's row.
///
/// `password` opens the AES zip of an encrypted analysis (`api::report::open_stored`); a plain
/// report is read as stored whatever the password.
pub fn read_report(
    path: &Path,
    report_type: &str,
    password: Option<&[u8]>,
) -> Result<ReportFacts, String> {
    let format = ReportType::format(report_type)
        .ok_or_else(|| format!("{report_type} is not a JSON or XML report"))?;
    let document = report::open_stored(path, password).map_err(|e| e.to_string())?;
    report::parse(document, format).map_err(|e| e.to_string())
}
