//! The report types of `analysis/download`: the one list the CLI, the configuration check and
//! the download worker use, and the file extension of each.

use super::report::ReportFormat;

/// Report type names and what is known about them. A name is text (`"irjsonfixed"`): the
/// configuration and the command line carry names, and a server newer than this build may
/// offer types this list does not know (the CLI passes those through; the server decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportType;

impl ReportType {
    /// Every type `analysis/download` knows (see the API notes).
    pub const ALL: &'static [&'static str] = &[
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

    /// The analysed sample itself.
    pub const SAMPLE: &'static str = "sample";

    /// What `reports.archives` adds: the dropped binaries and the unpacked PE files.
    pub const ARCHIVES: &'static [&'static str] = &["bins", "unpackpe"];

    /// Types whose file is a zip archive.
    const ZIPPED: &'static [&'static str] =
        &["bins", "unpackpe", "memdumps", "unpack", "ida", "shoots"];

    /// Whether `name` is a type this build knows.
    pub fn is_known(name: &str) -> bool {
        Self::ALL.contains(&name)
    }

    /// Whether `name` is the sample rather than a report.
    pub fn is_sample(name: &str) -> bool {
        name == Self::SAMPLE
    }

    /// The syntax a report type is rendered in, for the types `report::parse` reads (the full
    /// and incident reports); `None` for every other type (HTML, PDF, STIX, archives, ...).
    pub fn format(name: &str) -> Option<ReportFormat> {
        match name.to_ascii_lowercase().as_str() {
            "json" | "jsonfixed" | "lightjson" | "lightjsonfixed" | "irjson" | "irjsonfixed" => {
                Some(ReportFormat::Json)
            }
            "xml" | "lightxml" | "irxml" => Some(ReportFormat::Xml),
            _ => None,
        }
    }

    /// The extension of a type's file (a fixed table; unknown types are `bin`).
    pub fn extension(name: &str) -> &'static str {
        let t = name.to_ascii_lowercase();
        if Self::ZIPPED.contains(&t.as_str()) {
            "zip"
        } else if t.ends_with("html") || t == "executive" {
            "html"
        } else if t.contains("json") {
            "json"
        } else if t.contains("xml") {
            "xml"
        } else if t.contains("pdf") {
            "pdf"
        } else if t.starts_with("pcap") {
            "pcap"
        } else {
            "bin"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_type_gets_the_extension_of_its_format() {
        for (t, ext) in [
            ("html", "html"),
            ("executive", "html"),
            ("chathtml", "html"),
            ("irjsonfixed", "json"),
            ("classxml", "xml"),
            ("pdfexecutive", "pdf"),
            ("pcapslim", "pcap"),
            ("shoots", "zip"),
            ("stix", "bin"),
            ("SAMPLE", "bin"),
        ] {
            assert_eq!(ReportType::extension(t), ext, "{t}");
        }
    }

    #[test]
    fn only_the_full_and_incident_reports_have_a_format_to_parse() {
        for t in [
            "json",
            "jsonfixed",
            "lightjson",
            "LightJsonFixed",
            "irjson",
            "irjsonfixed",
        ] {
            assert_eq!(ReportType::format(t), Some(ReportFormat::Json), "{t}");
        }
        for t in ["xml", "lightxml", "irxml"] {
            assert_eq!(ReportType::format(t), Some(ReportFormat::Xml), "{t}");
        }
        for t in [
            "iocjson",
            "classxml",
            "clusterxml",
            "iocxml",
            "html",
            "misp",
            "stix",
            "bins",
        ] {
            assert_eq!(ReportType::format(t), None, "{t}");
        }
    }

    #[test]
    fn the_sample_and_the_archives_are_known_types() {
        assert!(ReportType::is_known(ReportType::SAMPLE));
        assert!(ReportType::ARCHIVES.iter().all(|t| ReportType::is_known(t)));
        assert!(!ReportType::is_known("htm"));
        assert!(ReportType::is_sample("sample") && !ReportType::is_sample("bins"));
    }
}
