//! Queries over the local report index: the analyses recorded in SQLite and the report files
//! stored beside them. Read-only.

pub mod export;
pub mod xpath;

pub use xpath::{XPathError, XPathMatch, compile_check, search_reports};
