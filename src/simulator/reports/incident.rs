//! The incident report (`irxml`, `irjson`, `irjsonfixed`): Joe's small flat report, in the
//! element order of the real ones.
//!
//! ```text
//! analysis
//!   version reporttype=IR errors{error*} id starttime startdate sample url cookbook system arch
//!   hashes{md5 sha1 sha256}                                    lower-case
//!   filetype
//!   detection{malicious suspicious clean unknown score minscore maxscore}   lower-case minscore
//!   confidence{score minscore maxscore expertadviceneeded}      0–5
//!   dropped[isArray file]{name malicious md5 sha1 sha256}       UPPER-case hashes
//!   contacted{ips[isArray ip]{ip@malicious text}  domains[isArray domain]{name malicious ip}}
//!   signatures{signare*}    no isArray: one signature is a bare string even in irjsonfixed
//! ```

use super::ReportInput;
use super::full::{VERSION, sample_name};
use super::iocs::iocs;
use super::tree::Element;
use crate::simulator::catalog;
use crate::simulator::verdict::Detection;

pub(crate) fn report(input: &ReportInput) -> Element {
    let iocs = iocs(input);
    let d = input.detection();
    let (md5, sha1, sha256, filetype) = match &input.facts {
        Some(facts) => (
            facts.md5.as_str(),
            facts.sha1.as_str(),
            facts.sha256.as_str(),
            super::documents::file_type(&facts.head),
        ),
        None => ("", "", "", ""),
    };
    // How sure the sandbox is (0–5); unclear verdicts ask for an expert.
    let (confidence, expert) = match d {
        Detection::Malicious => (5u32, false),
        Detection::Suspicious => (3, true),
        Detection::Clean => (4, false),
        Detection::Unknown => (1, true),
    };
    let dropped = iocs
        .dropped
        .iter()
        .map(|f| {
            Element::new("file")
                .child(Element::leaf("name", &f.path))
                .child(Element::leaf("malicious", f.malicious))
                .child(Element::leaf("md5", f.md5.to_ascii_uppercase()))
                .child(Element::leaf("sha1", f.sha1.to_ascii_uppercase()))
                .child(Element::leaf("sha256", f.sha256.to_ascii_uppercase()))
        })
        .collect();
    let ips = iocs
        .ips
        .iter()
        .map(|ip| {
            Element::new("ip")
                .attr("malicious", ip.malicious)
                .text(&ip.ip)
        })
        .collect();
    let domains = iocs
        .domains
        .iter()
        .map(|domain| {
            Element::new("domain")
                .child(Element::leaf("name", &domain.name))
                .child(Element::leaf("malicious", domain.malicious))
                .child(Element::leaf(
                    "ip",
                    domain.ip.as_deref().unwrap_or("unknown"),
                ))
        })
        .collect();
    Element::new("analysis")
        .child(Element::leaf("version", VERSION))
        .child(Element::leaf("reporttype", "IR"))
        .child(
            Element::new("errors").children(
                input
                    .verdict
                    .run_error
                    .iter()
                    .map(|e| Element::leaf("error", e)),
            ),
        )
        .child(Element::leaf("id", input.webid))
        .child(Element::leaf(
            "starttime",
            input.time.format("%H:%M:%S").to_string(),
        ))
        .child(Element::leaf(
            "startdate",
            input.time.format("%d/%m/%Y").to_string(),
        ))
        .child(Element::leaf("sample", sample_name(input)))
        .child(Element::leaf("url", input.url.as_deref().unwrap_or("")))
        .child(Element::leaf("cookbook", &input.scriptname))
        .child(Element::leaf(
            "system",
            catalog::system_description(&input.system),
        ))
        .child(Element::leaf("arch", input.arch))
        .child(
            Element::new("hashes")
                .child(Element::leaf("md5", md5))
                .child(Element::leaf("sha1", sha1))
                .child(Element::leaf("sha256", sha256)),
        )
        .child(Element::leaf("filetype", filetype))
        .child(
            Element::new("detection")
                .child(Element::leaf("malicious", d == Detection::Malicious))
                .child(Element::leaf("suspicious", d == Detection::Suspicious))
                .child(Element::leaf("clean", d == Detection::Clean))
                .child(Element::leaf("unknown", d == Detection::Unknown))
                .child(Element::leaf("score", input.verdict.score))
                .child(Element::leaf("minscore", 0u32))
                .child(Element::leaf("maxscore", 100u32)),
        )
        .child(
            Element::new("confidence")
                .child(Element::leaf("score", confidence))
                .child(Element::leaf("minscore", 0u32))
                .child(Element::leaf("maxscore", 5u32))
                .child(Element::leaf("expertadviceneeded", expert)),
        )
        .child(Element::list("dropped", "file", dropped))
        .child(
            Element::new("contacted")
                .child(Element::list("ips", "ip", ips))
                .child(Element::list("domains", "domain", domains)),
        )
        .child(
            Element::new("signatures").children(
                iocs.signatures
                    .iter()
                    .map(|s| Element::leaf("signare", &s.desc)),
            ),
        )
}
