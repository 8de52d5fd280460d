//! The local report index: the indicator index built from the stored reports ([`ingest`],
//! choosing the document to read in [`choose`], run by the daemon's [`worker`] and by `jbxd
//! index rebuild`), and queries over the analyses recorded in SQLite and the report files
//! stored beside them ([`xpath`]).

pub mod choose;
pub mod export;
pub mod extract;
pub mod ingest;
pub mod worker;
pub mod xpath;

pub use extract::READ_REPORT;
pub use ingest::{Extract, Indexed, index_analysis};

pub use xpath::{XPathError, XPathMatch, compile_check, search_reports};
