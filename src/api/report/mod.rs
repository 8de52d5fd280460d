//! Joe Sandbox's report formats: reading a downloaded report (full `xml`/`json`/`jsonfixed` and
//! their `light*` variants, the incident report `irxml`/`irjson`/`irjsonfixed`, plain or inside
//! the AES zip of an encrypted analysis) into [`ReportFacts`], the vendor-neutral facts the index
//! records. Knowing the report's shape is vendor knowledge, so it lives in `api` beside the wire
//! format; what the facts mean to jbxd (normal forms, tables) belongs to `ioc` and `index`.
//!
//! The values in [`ReportFacts`] are as the report spells them (upper-case hashes, `hxxp`-free
//! but otherwise raw); `ioc::normalize` turns them into the index's normal form. Placeholders the
//! reports use for "nothing" (`"unknown"`, empty strings, `null`) never become facts.

mod model;
mod open;

pub use model::{
    RawConfig, RawIndicator, RawSignature, RawTechnique, RawYaraHit, ReportFacts, ReportFamily,
    ReportVerdict,
};
pub use open::{OpenError, is_encrypted_archive, open_stored};
