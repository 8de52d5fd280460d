//! The full report (`xml`, `json`, `jsonfixed`) and its light variants, as one element tree:
//!
//! ```text
//! analysis
//!   generalinfo   id version product reporttype startdate starttime duration arch
//!                 systemdescription target{sample url cookbook submissionpath}
//!   fileinfo      filename filetype filesize md5 sha1 sha256 sha512 entropy   (file analyses)
//!   signaturedetections[isArray strategy]
//!                 strategy@name=atleastonemalicioussig@count (text true|false)
//!                 strategy@name=empiric{detection score minScore maxScore malicious suspicious
//!                                       clean unknown whitelisted threatname}
//!   signatureinfo[isArray sig]   sig@id@desc@impact{sources[isArray source]{source@id@op@process}}
//!   domaininfo[isArray domain]   domain@name@ip@active@malicious@targetid@currentpath...
//!   ipinfo[isArray ip]           ip@ip@country@countrycode@asnname@private@pingable@malicious...
//!   urlinfo[isArray url]         url@name@ip@fromMemory@malicious@targetid@currentpath
//!   droppedinfo[isArray hash]    hash@id@file@type@size@malicious@process@category{value@algo}
//!   behavior      system{startupoverview processes[isArray process]} network{tcp udp dns}
//!   mitreattack[isArray tactic]  tactic{id name technique{id name}}
//!   yara          sample droppedfiles memorydumps unpackedpes [isArray hit]{rule}
//!   malware_configs[isArray config]  config@threatname{c2 botnet version}
//!   errorinfo     error*
//! ```
//!
//! Sections without content are empty elements (`null` in JSON), never left out.

use super::ReportInput;
use super::behavior::{self, Detail};
use super::iocs::{Iocs, iocs};
use super::tree::Element;
use crate::simulator::catalog;
use crate::simulator::verdict::Detection;

/// The product version the reports carry (a real release name of the 44 series).
pub(crate) const VERSION: &str = "44.0.0 Smoke Quartz";

/// The report of one run, `reporttype` as the type's own name (`full`, `light`, `class`...).
pub(crate) fn report(input: &ReportInput, reporttype: &str, detail: Detail) -> Element {
    let iocs = iocs(input);
    let behavior = behavior::section(input, &iocs, detail);
    document(input, &iocs, reporttype, behavior)
}

/// The document around a given `behavior` section (the benchmark generator streams its own).
pub(crate) fn document(
    input: &ReportInput,
    iocs: &Iocs,
    reporttype: &str,
    behavior: Element,
) -> Element {
    let mut analysis = Element::new("analysis").child(general_info(input, reporttype));
    if let Some(facts) = &input.facts {
        analysis = analysis.child(
            Element::new("fileinfo")
                .child(Element::leaf("filename", &input.filename))
                .child(Element::leaf(
                    "filetype",
                    super::documents::file_type(&facts.head),
                ))
                .child(Element::leaf("filesize", facts.size))
                .child(Element::leaf("md5", &facts.md5))
                .child(Element::leaf("sha1", &facts.sha1))
                .child(Element::leaf("sha256", &facts.sha256))
                .child(Element::leaf("sha512", &facts.sha512))
                .child(Element::leaf("entropy", facts.entropy)),
        );
    }
    analysis
        .child(signature_detections(input, iocs))
        .child(signature_info(iocs))
        .child(domain_info(iocs))
        .child(ip_info(iocs))
        .child(url_info(iocs))
        .child(dropped_info(iocs))
        .child(behavior)
        .child(mitre_attack(iocs))
        .child(yara(iocs))
        .child(malware_configs(iocs))
        .child(
            Element::new("errorinfo").children(
                input
                    .verdict
                    .run_error
                    .iter()
                    .map(|e| Element::leaf("error", e)),
            ),
        )
}

/// The IOC report (`iocxml`, `iocjson`): the full report's indicator sections only.
pub(crate) fn ioc_document(input: &ReportInput) -> Element {
    let iocs = iocs(input);
    Element::new("analysis")
        .child(general_info(input, "ioc"))
        .child(signature_detections(input, &iocs))
        .child(domain_info(&iocs))
        .child(ip_info(&iocs))
        .child(url_info(&iocs))
        .child(dropped_info(&iocs))
}

fn general_info(input: &ReportInput, reporttype: &str) -> Element {
    let paths = super::iocs::paths(input.arch);
    Element::new("generalinfo")
        .child(Element::leaf("id", input.webid))
        .child(Element::leaf("version", VERSION))
        .child(Element::leaf("product", input.product))
        .child(Element::leaf("reporttype", reporttype))
        .child(Element::leaf(
            "startdate",
            input.time.format("%d/%m/%Y").to_string(),
        ))
        .child(Element::leaf(
            "starttime",
            input.time.format("%H:%M:%S").to_string(),
        ))
        .child(Element::leaf("duration", input.duration_text()))
        .child(Element::leaf("arch", input.arch))
        .child(Element::leaf(
            "systemdescription",
            catalog::system_description(&input.system),
        ))
        .child(
            Element::new("target")
                .child(Element::leaf("sample", sample_name(input)))
                .child(Element::leaf("url", input.url.as_deref().unwrap_or("")))
                .child(Element::leaf("cookbook", &input.scriptname))
                .child(Element::leaf(
                    "submissionpath",
                    if input.url.is_some() {
                        ""
                    } else {
                        paths.desktop
                    },
                )),
        )
}

/// The sample's name for `target/sample` and the IR `sample`: empty for URL analyses.
pub(crate) fn sample_name(input: &ReportInput) -> &str {
    if input.url.is_some() {
        ""
    } else {
        &input.filename
    }
}

/// `MAL` | `SUS` | `CLEAN` | `UNKNOWN`, the empiric strategy's words.
pub(crate) fn detection_word(detection: Detection) -> &'static str {
    match detection {
        Detection::Malicious => "MAL",
        Detection::Suspicious => "SUS",
        Detection::Clean => "CLEAN",
        Detection::Unknown => "UNKNOWN",
    }
}

fn signature_detections(input: &ReportInput, iocs: &Iocs) -> Element {
    let d = input.detection();
    let malicious_sigs = iocs.signatures.iter().filter(|s| s.impact >= 2).count();
    let threatname = if input.verdict.threatname.is_empty() {
        "Unknown"
    } else {
        input.verdict.threatname.as_str()
    };
    Element::list(
        "signaturedetections",
        "strategy",
        vec![
            Element::new("strategy")
                .attr("name", "atleastonemalicioussig")
                .attr("count", malicious_sigs)
                .text(malicious_sigs > 0),
            Element::new("strategy")
                .attr("name", "empiric")
                .child(Element::leaf("detection", detection_word(d)))
                .child(Element::leaf("score", input.verdict.score))
                .child(Element::leaf("minScore", 0u32))
                .child(Element::leaf("maxScore", 100u32))
                .child(Element::leaf("malicious", d == Detection::Malicious))
                .child(Element::leaf("suspicious", d == Detection::Suspicious))
                .child(Element::leaf("clean", d == Detection::Clean))
                .child(Element::leaf("unknown", d == Detection::Unknown))
                .child(Element::leaf("whitelisted", false))
                .child(Element::leaf("threatname", threatname)),
        ],
    )
}

fn process_path(iocs: &Iocs, targetid: u32) -> &str {
    iocs.processes
        .iter()
        .find(|p| p.targetid == targetid)
        .map_or("unknown", |p| p.path.as_str())
}

fn signature_info(iocs: &Iocs) -> Element {
    Element::list(
        "signatureinfo",
        "sig",
        iocs.signatures
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Element::new("sig")
                    .attr("id", s.id)
                    .attr("desc", &s.desc)
                    .attr("impact", s.impact)
                    .child(Element::list(
                        "sources",
                        "source",
                        vec![
                            Element::new("source")
                                .attr("id", format!("s{}", i + 1))
                                .attr("op", s.op)
                                .attr("process", process_path(iocs, s.targetid))
                                .text(&s.evidence),
                        ],
                    ))
            })
            .collect(),
    )
}

fn domain_info(iocs: &Iocs) -> Element {
    Element::list(
        "domaininfo",
        "domain",
        iocs.domains
            .iter()
            .map(|d| {
                Element::new("domain")
                    .attr("name", &d.name)
                    .attr("ip", d.ip.as_deref().unwrap_or("unknown"))
                    .attr("active", d.ip.is_some())
                    .attr("malicious", d.malicious)
                    .attr("targetid", d.targetid)
                    .attr("currentpath", process_path(iocs, d.targetid))
                    .attr("email", "unknown")
                    .attr("registrar", "unknown")
                    .attr("nameservers", "unknown")
                    .attr("reputation", if d.malicious { "low" } else { "unknown" })
            })
            .collect(),
    )
}

fn ip_info(iocs: &Iocs) -> Element {
    Element::list(
        "ipinfo",
        "ip",
        iocs.ips
            .iter()
            .map(|ip| {
                Element::new("ip")
                    .attr("ip", &ip.ip)
                    .attr("country", ip.country)
                    .attr("countrycode", ip.countrycode)
                    .attr("countrycode2l", ip.countrycode2l)
                    .attr("asnname", ip.asnname)
                    .attr("asnnbr", ip.asnnbr)
                    .attr("private", ip.private)
                    .attr("pingable", "unknown")
                    .attr("openports", "unknown")
                    .attr("domain", ip.domain.as_deref().unwrap_or("unknown"))
                    .attr("malicious", ip.malicious)
                    .attr("targetid", ip.targetid)
                    .attr("currentpath", process_path(iocs, ip.targetid))
            })
            .collect(),
    )
}

fn url_info(iocs: &Iocs) -> Element {
    Element::list(
        "urlinfo",
        "url",
        iocs.urls
            .iter()
            .map(|u| {
                let (targetid, currentpath) = if u.from_memory {
                    ("-1".to_owned(), "unknown")
                } else {
                    (u.targetid.to_string(), process_path(iocs, u.targetid))
                };
                Element::new("url")
                    .attr("name", &u.name)
                    .attr("ip", u.ip.as_deref().unwrap_or("unknown"))
                    .attr("fromMemory", u.from_memory)
                    .attr("source", if u.from_memory { "Memory" } else { "Network" })
                    .attr("malicious", u.malicious)
                    .attr("targetid", targetid)
                    .attr("currentpath", currentpath)
            })
            .collect(),
    )
}

fn dropped_info(iocs: &Iocs) -> Element {
    Element::list(
        "droppedinfo",
        "hash",
        iocs.dropped
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let file_name = d.path.rsplit(['\\', '/']).next().unwrap_or(&d.path);
                let value = |algo: &'static str, hex: &str| {
                    Element::new("value")
                        .attr("algo", algo)
                        .text(hex.to_ascii_uppercase())
                };
                Element::new("hash")
                    .attr("id", format!("dr_{}", i + 1))
                    .attr("file", &d.path)
                    .attr("dump", format!("{file_name}.{i}.dr"))
                    .attr("type", d.file_type)
                    .attr("size", d.content.len())
                    .attr("malicious", d.malicious)
                    .attr("encrypted", false)
                    .attr("whitelisted", false)
                    .attr("reputation", "unknown")
                    .attr("process", process_path(iocs, d.targetid))
                    .attr("targetid", d.targetid)
                    .attr("category", "dropped")
                    .array("value")
                    .children([
                        value("MD5", &d.md5),
                        value("SHA", &d.sha1),
                        value("SHA-256", &d.sha256),
                        value("SHA-512", &d.sha512),
                    ])
            })
            .collect(),
    )
}

fn mitre_attack(iocs: &Iocs) -> Element {
    let mut tactics: Vec<Element> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for technique in &iocs.techniques {
        if seen.contains(&technique.tactic_id) {
            continue;
        }
        seen.push(technique.tactic_id);
        let members = iocs
            .techniques
            .iter()
            .filter(|t| t.tactic_id == technique.tactic_id)
            .map(|t| {
                Element::new("technique")
                    .child(Element::leaf("id", t.id))
                    .child(Element::leaf("name", t.name))
            });
        tactics.push(
            Element::new("tactic")
                .array("technique")
                .child(Element::leaf("id", technique.tactic_id))
                .child(Element::leaf("name", technique.tactic))
                .children(members),
        );
    }
    Element::list("mitreattack", "tactic", tactics)
}

fn yara(iocs: &Iocs) -> Element {
    if iocs.yara.is_empty() {
        return Element::new("yara");
    }
    Element::new("yara").children(
        ["sample", "droppedfiles", "memorydumps", "unpackedpes"].map(|scope| {
            Element::list(
                scope,
                "hit",
                iocs.yara
                    .iter()
                    .filter(|hit| hit.scope == scope)
                    .map(|hit| Element::new("hit").child(Element::leaf("rule", &hit.rule)))
                    .collect(),
            )
        }),
    )
}

fn malware_configs(iocs: &Iocs) -> Element {
    Element::list(
        "malware_configs",
        "config",
        iocs.config
            .iter()
            .map(|c| {
                Element::new("config")
                    .attr("threatname", &c.threatname)
                    .array("c2")
                    .children(c.c2.iter().map(|c2| Element::leaf("c2", c2)))
                    .child(Element::leaf("botnet", &c.botnet))
                    .child(Element::leaf("version", c.version))
            })
            .collect(),
    )
}
