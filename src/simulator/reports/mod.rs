//! `analysis/download` resources: every type of §7.2, with deterministic content.
//!
//! A resource is rendered from a [`ReportInput`] snapshot (taken under the store lock, rendered
//! without it). Joe's own reports (full, light, IR, IOC) are one element tree each
//! ([`tree`], built by [`full`] and [`incident`] from the run's indicators, [`iocs`]) written
//! as XML or JSON by [`render`], so every rendering of a report says the same thing. Large
//! things are never built in memory: the `sample` type streams the stored file, HTML padding
//! for benchmarks is generated as a stream, and [`generator`] streams padded reports. File names follow §7.3 where
//! known: `report-<analysisid>.<ext>` by default, `report-<md5>.xml` for the full XML of a file
//! analysis, `class-<md5>.html`, `dump-<md5>.pcap`, `<type>-<webid>.zip` for archives,
//! `<webid>.dontrun` for the sample and the cookbook's own name for `cookbook`.

mod archives;
mod behavior;
mod documents;
mod findings;
mod full;
mod generator;
mod incident;
mod iocs;
mod json;
mod payload;
mod render;
#[cfg(test)]
mod shape_tests;
mod tree;
mod xml;

use std::sync::Arc;

use axum::body::Bytes;
use chrono::{DateTime, Local};

pub use generator::write_report_document;
pub(crate) use iocs::host_of;
pub(crate) use payload::{Payload, encrypt};

use super::envelope::ApiError;
use super::form::{FileFacts, StoredFile};
use super::verdict::{Detection, Verdict};

/// Everything a report may show about one run of one analysis.
#[derive(Clone, Debug)]
pub(crate) struct ReportInput {
    pub(crate) webid: u64,
    pub(crate) run: usize,
    pub(crate) system: String,
    pub(crate) arch: &'static str,
    pub(crate) filename: String,
    pub(crate) scriptname: String,
    pub(crate) url: Option<String>,
    /// The stored sample, for the `sample` download.
    pub(crate) file: Option<Arc<StoredFile>>,
    /// What the reports say about the sample; `None` for URL and command-line analyses.
    pub(crate) facts: Option<FileFacts>,
    pub(crate) verdict: Verdict,
    pub(crate) comments: String,
    pub(crate) tags: Vec<String>,
    pub(crate) time: DateTime<Local>,
    pub(crate) duration_secs: u64,
    pub(crate) cookbook: Option<(String, Bytes)>,
    pub(crate) product: &'static str,
    pub(crate) html_padding: u64,
}

impl ReportInput {
    pub(crate) fn md5(&self) -> &str {
        self.facts.as_ref().map_or("", |f| f.md5.as_str())
    }
    pub(crate) fn sha1(&self) -> &str {
        self.facts.as_ref().map_or("", |f| f.sha1.as_str())
    }
    pub(crate) fn sha256(&self) -> &str {
        self.facts.as_ref().map_or("", |f| f.sha256.as_str())
    }
    pub(crate) fn detection(&self) -> Detection {
        self.verdict.detection
    }
    /// "0h 2m 0s", the duration format of the JSON/XML reports.
    pub(crate) fn duration_text(&self) -> String {
        let s = self.duration_secs;
        format!("{}h {}m {}s", s / 3600, (s / 60) % 60, s % 60)
    }
    /// Stable pseudo-random bytes for this analysis (ids, dropped-file contents, ...).
    pub(crate) fn seed(&self, purpose: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.webid.to_le_bytes());
        hasher.update(self.run.to_le_bytes());
        hasher.update(self.sha256().as_bytes());
        hasher.update(self.filename.as_bytes());
        hasher.update(purpose.as_bytes());
        hasher.finalize().into()
    }
    /// Like [`ReportInput::seed`] but the same for every run of the analysis: what all its
    /// runs share (the indicators, the dropped files).
    pub(crate) fn analysis_seed(&self, purpose: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.webid.to_le_bytes());
        hasher.update(self.sha256().as_bytes());
        hasher.update(self.filename.as_bytes());
        hasher.update(purpose.as_bytes());
        hasher.finalize().into()
    }
}

/// A rendered resource, ready to send (or to wrap for an encrypted analysis).
#[derive(Debug)]
pub(crate) struct Rendered {
    pub(crate) name: String,
    pub(crate) content_type: &'static str,
    pub(crate) payload: Payload,
}

/// Rendering that needs blocking work or must be generated only once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cost {
    /// Cheap and byte-for-byte reproducible.
    Cheap,
    /// Encrypted with ZipCrypto, whose random header makes each rendering differ: render once,
    /// cache, and serve the cached bytes afterwards.
    RenderOnce,
}

/// Which of Joe's report documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Doc {
    /// The full report's shape, `reporttype` as given.
    Full(&'static str, behavior::Detail),
    Incident,
    Ioc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Xml,
    /// `fixed`: the `*fixed` types, whose flagged containers are always lists.
    Json {
        fixed: bool,
    },
}

/// How a download type is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Html(&'static str),
    Pdf(&'static str),
    /// One of Joe's own reports, in one of its renderings.
    Report(Doc, Format),
    Stix,
    Misp,
    Maec,
    OpenIoc,
    Graph,
    Pcap,
    Archive(archives::ArchiveKind),
    Strings(&'static str),
    Yara,
    Sample,
    Cookbook,
}

fn kind_of(download_type: &str) -> Option<Kind> {
    use archives::ArchiveKind as A;
    use behavior::Detail;
    Some(match download_type {
        "html" => Kind::Html("Full Report"),
        "lighthtml" => Kind::Html("Light Report"),
        "executive" => Kind::Html("Management Report"),
        "classhtml" => Kind::Html("Class Report"),
        "iochtml" => Kind::Html("IOC Report"),
        "chathtml" => Kind::Html("Reverser Chat"),
        "pdf" => Kind::Pdf("Full Report"),
        "pdfexecutive" => Kind::Pdf("Management Report"),
        "chatpdf" => Kind::Pdf("Reverser Chat"),
        "xml" => Kind::Report(Doc::Full("full", Detail::Full), Format::Xml),
        "lightxml" => Kind::Report(Doc::Full("light", Detail::Light), Format::Xml),
        "irxml" => Kind::Report(Doc::Incident, Format::Xml),
        "classxml" => Kind::Report(Doc::Full("class", Detail::Light), Format::Xml),
        "clusterxml" => Kind::Report(Doc::Full("cluster", Detail::Light), Format::Xml),
        "iocxml" => Kind::Report(Doc::Ioc, Format::Xml),
        "json" => Kind::Report(
            Doc::Full("full", Detail::Full),
            Format::Json { fixed: false },
        ),
        "jsonfixed" => Kind::Report(
            Doc::Full("full", Detail::Full),
            Format::Json { fixed: true },
        ),
        "lightjson" => Kind::Report(
            Doc::Full("light", Detail::Light),
            Format::Json { fixed: false },
        ),
        "lightjsonfixed" => Kind::Report(
            Doc::Full("light", Detail::Light),
            Format::Json { fixed: true },
        ),
        "irjson" => Kind::Report(Doc::Incident, Format::Json { fixed: false }),
        "irjsonfixed" => Kind::Report(Doc::Incident, Format::Json { fixed: true }),
        "iocjson" => Kind::Report(Doc::Ioc, Format::Json { fixed: true }),
        "stix" => Kind::Stix,
        "misp" => Kind::Misp,
        "maec" => Kind::Maec,
        "openioc" => Kind::OpenIoc,
        "graphreports" => Kind::Graph,
        "pcap" | "pcapslim" | "pcapunified" | "pcapsslinspection" => Kind::Pcap,
        "bins" => Kind::Archive(A::Bins),
        "unpackpe" => Kind::Archive(A::UnpackPe),
        "memdumps" => Kind::Archive(A::MemDumps),
        "unpack" => Kind::Archive(A::Unpack),
        "ida" => Kind::Archive(A::Ida),
        "shoots" => Kind::Archive(A::Shoots),
        "memstrings" => Kind::Strings("memory"),
        "binstrings" => Kind::Strings("binary"),
        "yara" => Kind::Yara,
        "sample" => Kind::Sample,
        "cookbook" => Kind::Cookbook,
        _ => return None,
    })
}

/// Check a type name and say how it must be rendered; unknown types are code 3.
pub(crate) fn cost_of(download_type: &str) -> Result<Cost, ApiError> {
    let kind = kind_of(download_type)
        .ok_or_else(|| ApiError::invalid(format!("Unknown type {download_type}.")))?;
    Ok(match kind {
        Kind::Archive(archive) if archive.encrypted() => Cost::RenderOnce,
        _ => Cost::Cheap,
    })
}

/// Render one resource. May do blocking work (archives); call it off the runtime.
pub(crate) fn render(download_type: &str, input: &ReportInput) -> Result<Rendered, ApiError> {
    let kind = kind_of(download_type)
        .ok_or_else(|| ApiError::invalid(format!("Unknown type {download_type}.")))?;
    let id = input.webid;
    let md5_or_id = if input.facts.is_some() {
        input.md5().to_owned()
    } else {
        id.to_string()
    };
    let rendered = match kind {
        Kind::Html(title) => {
            let name = if download_type == "classhtml" {
                format!("class-{md5_or_id}.html")
            } else {
                format!("report-{id}.html")
            };
            let padding = if download_type == "html" {
                input.html_padding
            } else {
                0
            };
            let (head, tail) = documents::html(title, download_type, input);
            Rendered {
                name,
                content_type: "text/html; charset=utf-8",
                payload: Payload::padded(head, padding, tail),
            }
        }
        Kind::Pdf(title) => Rendered {
            name: format!("report-{id}.pdf"),
            content_type: "application/pdf",
            payload: Payload::Bytes(documents::pdf(title, input)),
        },
        Kind::Report(doc, format) => {
            let root = match doc {
                Doc::Full(reporttype, detail) => full::report(input, reporttype, detail),
                Doc::Incident => incident::report(input),
                Doc::Ioc => full::ioc_document(input),
            };
            match format {
                Format::Xml => Rendered {
                    name: if download_type == "xml" && input.facts.is_some() {
                        format!("report-{}.xml", input.md5())
                    } else {
                        format!("report-{id}.xml")
                    },
                    content_type: "application/xml",
                    payload: Payload::Bytes(Bytes::from(render::xml_bytes(root))),
                },
                Format::Json { fixed } => Rendered {
                    name: format!("report-{id}.json"),
                    content_type: "application/json",
                    payload: Payload::Bytes(Bytes::from(render::json_bytes(root, fixed))),
                },
            }
        }
        Kind::Stix => json_rendered(id, json::stix(input)),
        Kind::Misp => json_rendered(id, json::misp(input)),
        Kind::Maec => json_rendered(id, json::maec(input)),
        Kind::Graph => json_rendered(id, json::graph(input)),
        Kind::OpenIoc => Rendered {
            name: format!("report-{id}.ioc"),
            content_type: "application/xml",
            payload: Payload::Bytes(xml::openioc(input)),
        },
        Kind::Pcap => Rendered {
            name: format!("dump-{md5_or_id}.pcap"),
            content_type: "application/vnd.tcpdump.pcap",
            payload: Payload::Bytes(archives::pcap(input)),
        },
        Kind::Archive(archive) => Rendered {
            name: format!("{download_type}-{id}.zip"),
            content_type: "application/zip",
            payload: Payload::Bytes(archives::zip(archive, input)?),
        },
        Kind::Strings(which) => Rendered {
            name: format!("{download_type}-{id}.txt"),
            content_type: "text/plain; charset=utf-8",
            payload: Payload::Bytes(documents::strings(which, input)),
        },
        Kind::Yara => Rendered {
            name: format!("report-{id}.yara"),
            content_type: "text/plain; charset=utf-8",
            payload: Payload::Bytes(documents::yara(input)),
        },
        Kind::Sample => {
            let file = input
                .file
                .as_ref()
                .ok_or_else(|| ApiError::invalid("There is no sample file for this analysis."))?;
            Rendered {
                name: format!("{id}.dontrun"),
                content_type: "application/octet-stream",
                payload: Payload::File(Arc::clone(file)),
            }
        }
        Kind::Cookbook => Rendered {
            name: input.scriptname.clone(),
            content_type: "text/plain; charset=utf-8",
            payload: Payload::Bytes(documents::cookbook(input)),
        },
    };
    Ok(rendered)
}

fn json_rendered(id: u64, value: serde_json::Value) -> Rendered {
    Rendered {
        name: format!("report-{id}.json"),
        content_type: "application/json",
        payload: Payload::Bytes(Bytes::from(value.to_string())),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::simulator::form::Digester;
    use crate::simulator::verdict::file_verdict;

    /// A finished file analysis of `content`, stored in `dir`.
    pub(crate) fn file_input(dir: &std::path::Path, name: &str, content: &[u8]) -> ReportInput {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write sample");
        let mut digester = Digester::default();
        digester.update(content);
        let facts = digester.finish();
        ReportInput {
            webid: 1000,
            run: 0,
            system: "w10x64_office".into(),
            arch: "WINDOWS",
            filename: name.into(),
            scriptname: "default.jbs".into(),
            url: None,
            verdict: file_verdict(facts.markers, &facts.sha256),
            facts: Some(facts.clone()),
            file: Some(Arc::new(StoredFile {
                path: tempfile::TempPath::try_from_path(path).expect("absolute path"),
                facts,
            })),
            comments: "c <&>".into(),
            tags: vec!["t".into()],
            time: Local::now(),
            duration_secs: 125,
            cookbook: None,
            product: "Cloud",
            html_padding: 0,
        }
    }

    pub(crate) fn url_input(url: &str) -> ReportInput {
        ReportInput {
            webid: 1001,
            run: 0,
            system: "w10x64_office".into(),
            arch: "WINDOWS",
            filename: url.into(),
            scriptname: "browseurl.jbs".into(),
            url: Some(url.into()),
            file: None,
            facts: None,
            verdict: crate::simulator::verdict::url_verdict(url),
            comments: String::new(),
            tags: vec![],
            time: Local::now(),
            duration_secs: 0,
            cookbook: None,
            product: "Cloud",
            html_padding: 0,
        }
    }

    #[test]
    fn names_follow_the_observed_patterns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "a.exe", b"JBXD-MALICIOUS");
        let md5 = input.md5().to_owned();
        let name = |t: &str| render(t, &input).expect(t).name;
        assert_eq!(name("json"), "report-1000.json");
        assert_eq!(name("xml"), format!("report-{md5}.xml"));
        assert_eq!(name("lightxml"), "report-1000.xml");
        assert_eq!(name("classhtml"), format!("class-{md5}.html"));
        assert_eq!(name("pcap"), format!("dump-{md5}.pcap"));
        assert_eq!(name("bins"), "bins-1000.zip");
        assert_eq!(name("sample"), "1000.dontrun");
        assert_eq!(name("cookbook"), "default.jbs");
    }

    #[test]
    fn every_documented_type_renders_for_a_malicious_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "a.exe", b"MZ JBXD-MALICIOUS");
        for t in crate::api::ReportType::ALL.iter().copied() {
            let rendered = render(t, &input).unwrap_or_else(|e| panic!("{t}: {e:?}"));
            assert!(rendered.payload.len() > 0, "{t} is empty");
        }
    }

    #[test]
    fn unknown_types_and_impossible_resources_are_code_3() {
        let url = url_input("http://example.org");
        assert_eq!(
            render("nope", &url).map(|_| ()).expect_err("unknown").code,
            3
        );
        assert_eq!(
            render("sample", &url)
                .map(|_| ())
                .expect_err("no sample")
                .code,
            3
        );
        assert_eq!(
            render("bins", &url)
                .map(|_| ())
                .expect_err("nothing dropped")
                .code,
            3
        );
        assert!(cost_of("nope").is_err());
        assert_eq!(cost_of("bins").ok(), Some(Cost::RenderOnce));
        assert_eq!(cost_of("html").ok(), Some(Cost::Cheap));
    }
}
