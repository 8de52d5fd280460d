//! Joe Sandbox's report formats: reading a downloaded report (full `xml`/`json`/`jsonfixed` and
//! their `light*` variants, the incident report `irxml`/`irjson`/`irjsonfixed`, plain or inside
//! the AES zip of an encrypted analysis) into [`ReportFacts`], the vendor-neutral facts the index
//! records. Knowing the report's shape is vendor knowledge, so it lives in `api` beside the wire
//! format; what the facts mean to jbxd (normal forms, tables) belongs to `ioc` and `index`.
//!
//! The values in [`ReportFacts`] are as the report spells them (upper-case hashes, `hxxp`-free
//! but otherwise raw); `ioc::normalize` turns them into the index's normal form. Placeholders the
//! reports use for "nothing" (`"unknown"`, empty strings, `null`) never become facts.
//!
//! [`parse`] streams: real JSON reports run to hundreds of MB, almost all of it `behavior`,
//! which is skipped unread. `json.rs` is a pull reader over a 1 MiB buffer, `xml.rs` walks
//! `quick-xml` events; both follow one table (`extract::child`) and capture only the records
//! that carry facts (`node.rs`), each within a size budget, which `extract::Collector` turns
//! into facts within the caps below. Memory is therefore bounded by the caps, whatever the
//! document's size; a cap reached sets [`ReportFacts::truncated`].

mod extract;
mod json;
mod model;
mod node;
mod open;
mod xml;

pub use model::{
    RawConfig, RawIndicator, RawSignature, RawTechnique, RawYaraHit, ReportFacts, ReportFamily,
    ReportVerdict,
};
pub use open::{OpenError, is_encrypted_archive, open_stored};

use std::io::Read;

/// At most this many indicators are kept from one report.
pub const MAX_INDICATORS: usize = 100_000;
/// At most this many signatures.
pub const MAX_SIGNATURES: usize = 10_000;
/// At most this many ATT&CK techniques.
pub const MAX_TECHNIQUES: usize = 10_000;
/// At most this many YARA hits.
pub const MAX_YARA: usize = 10_000;
/// At most this many malware configurations.
pub const MAX_CONFIGS: usize = 256;
/// At most this many error texts.
pub const MAX_ERRORS: usize = 1_000;
/// Any one kept string (a value, a description) is cut to this many bytes.
pub const MAX_STRING: usize = 4096;
/// One captured record (a domain, a dropped file, a malware configuration) keeps at most this
/// much text; what lies beyond is skipped.
pub const MAX_RECORD: usize = 64 * 1024;
/// All kept facts together take at most about this much memory.
pub const MAX_KEPT_BYTES: usize = 48 * 1024 * 1024;
/// Containers nest at most this deep.
pub const MAX_DEPTH: usize = 256;
/// One XML tag or text run may be at most this long (the XML reader holds one at a time).
pub const MAX_XML_EVENT: usize = 16 * 1024 * 1024;

/// The two syntaxes Joe renders reports in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Xml,
}

/// Why a report could not be read. `to_string()` is one line, fit for the report's row.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading the report failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the report is not valid JSON: {0}")]
    NotJson(String),
    #[error("the report is not valid XML: {0}")]
    NotXml(String),
    #[error("the document is not a Joe Sandbox report: {0}")]
    NotAReport(String),
    #[error("the report nests containers deeper than {MAX_DEPTH} levels (at byte {0})")]
    TooDeep(u64),
    #[error("the report has one XML tag or text longer than {MAX_XML_EVENT} bytes (near byte {0})")]
    TooLarge(u64),
}

/// Reads one report document into its facts, streaming (see the module docs). The family
/// (full or incident) comes from the document itself, not from the report type's name.
pub fn parse(reader: impl Read, format: ReportFormat) -> Result<ReportFacts, ReportError> {
    match format {
        ReportFormat::Json => json::parse(reader),
        ReportFormat::Xml => xml::parse(reader),
    }
}
