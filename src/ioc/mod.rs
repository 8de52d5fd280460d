//! Indicators of compromise as jbxd indexes them: their kinds ([`Kind`]), the normal forms
//! values are stored in ([`normal`]: lower-case hex, lower-case punycode host names, canonical
//! IPs, `url`-crate URLs) and the lookup forms of what people paste ([`lookup`]: defanged,
//! upper-case, quoted, with or without a trailing slash). Knows nothing of any vendor or of SQL.

pub mod lookup;
pub mod normal;

pub use lookup::{lookup_forms, refang};
pub use normal::{Normal, is_private, normalize, technique};

/// What an indicator is. The strings are the `iocs.kind` column (public contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Domain,
    Ip,
    Url,
    Md5,
    Sha1,
    Sha256,
    Sha512,
    FileName,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Domain,
        Kind::Ip,
        Kind::Url,
        Kind::Md5,
        Kind::Sha1,
        Kind::Sha256,
        Kind::Sha512,
        Kind::FileName,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Domain => "domain",
            Kind::Ip => "ip",
            Kind::Url => "url",
            Kind::Md5 => "md5",
            Kind::Sha1 => "sha1",
            Kind::Sha256 => "sha256",
            Kind::Sha512 => "sha512",
            Kind::FileName => "file_name",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == text)
    }
}
