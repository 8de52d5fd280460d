//! JSON renderings: the `{"analysis": {...}}` reports (full, light, IR; `*fixed` keeps every
//! list an array, the plain variants collapse one-element lists into objects as the service's
//! XML-to-JSON conversion does) and the IOC/STIX/MISP/MAEC/graph exports.

use serde_json::{Value, json};

use super::ReportInput;
use super::documents;
use crate::simulator::clock::iso8601;
use crate::simulator::verdict::Detection;

fn detection(input: &ReportInput) -> Value {
    let d = input.detection();
    json!({
        "malicious": d == Detection::Malicious,
        "suspicious": d == Detection::Suspicious,
        "clean": d == Detection::Clean,
        "unknown": d == Detection::Unknown,
        "score": input.verdict.score,
        "minscore": 0,
        "maxscore": 100,
    })
}

/// Non-fixed variants turn one-element lists into the element itself.
fn list(items: Vec<Value>, fixed: bool) -> Value {
    if !fixed && items.len() == 1 {
        items.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    }
}

pub(crate) fn report(reporttype: &str, fixed: bool, input: &ReportInput) -> Value {
    let url = input.url.clone().unwrap_or_default();
    let sample = if input.url.is_some() {
        String::new()
    } else {
        input.filename.clone()
    };
    let signatures: Vec<Value> = documents::signatures(input)
        .into_iter()
        .map(|(name, score)| json!({"@name": name, "score": score}))
        .collect();
    let mut analysis = json!({
        "id": input.webid,
        "version": "40.0.0 Simulated Sapphire",
        "product": input.product,
        "reporttype": reporttype,
        "sample": sample,
        "url": url,
        "cookbook": input.scriptname,
        "system": input.system,
        "arch": input.arch,
        "hashes": {"md5": input.md5(), "sha1": input.sha1(), "sha256": input.sha256()},
        "detection": detection(input),
        "confidence": {"score": 4, "minscore": 0, "maxscore": 5, "expertadviceneeded": false},
        "threatname": input.verdict.threatname,
        "generalinfo": {
            "id": input.webid,
            "version": "40.0.0 Simulated Sapphire",
            "product": input.product,
            "reporttype": reporttype,
            "startdate": input.time.format("%d/%m/%Y").to_string(),
            "starttime": input.time.format("%H:%M:%S").to_string(),
            "time": iso8601(&input.time),
            "duration": input.duration_text(),
            "target": {"sample": sample, "url": url, "cookbook": input.scriptname},
            "system": input.system,
            "arch": input.arch,
            "comments": input.comments,
            "tags": input.tags,
        },
        "signaturedetections": {"strategy": list(vec![json!({"@name": "empiric", "sig": list(signatures, fixed)})], fixed)},
        "contacted": {"domains": list(contacted_domains(input), fixed), "ips": []},
        "dropped": {"hash": list(dropped(input), fixed)},
        "errors": input.verdict.run_error.as_ref().map(|e| json!({"error": [e]})),
    });
    if let Some(file) = &input.file {
        analysis["fileinfo"] = json!({
            "filename": input.filename,
            "md5": file.facts.md5,
            "sha1": file.facts.sha1,
            "sha256": file.facts.sha256,
            "filesize": file.facts.size,
            "filetype": documents::file_type(&file.facts.head),
        });
    }
    json!({ "analysis": analysis })
}

fn contacted_domains(input: &ReportInput) -> Vec<Value> {
    match input.url.as_deref().and_then(host_of) {
        Some(host) => vec![json!({
            "@name": host,
            "@ip": "192.0.2.10",
            "@malicious": input.detection() == Detection::Malicious,
        })],
        None => Vec::new(),
    }
}

fn dropped(input: &ReportInput) -> Vec<Value> {
    if input.file.is_some() && input.verdict.dropped_files() {
        let seed = input.seed("dropped");
        vec![
            json!({"@file": "C:\\Users\\user\\AppData\\Local\\Temp\\dropped_1.bin", "@sha256": hex::encode(seed)}),
        ]
    } else {
        Vec::new()
    }
}

/// The host part of a URL, without a port or credentials.
pub(crate) fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

pub(crate) fn ioc(input: &ReportInput) -> Value {
    let urls: Vec<Value> = input
        .url
        .iter()
        .map(|url| json!({"@name": url, "@malicious": input.detection() == Detection::Malicious}))
        .collect();
    json!({"analysis": {
        "id": input.webid,
        "detection": detection(input),
        "urlinfo": {"url": urls},
        "domaininfo": {"domain": contacted_domains(input)},
        "ipinfo": {"ip": []},
        "droppedinfo": {"hash": dropped(input)},
    }})
}

/// A deterministic UUID-shaped id for STIX objects.
fn uuid(input: &ReportInput, purpose: &str) -> String {
    let h = hex::encode(&input.seed(purpose)[..16]);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

pub(crate) fn stix(input: &ReportInput) -> Value {
    let pattern = match &input.url {
        Some(url) => format!(
            "[url:value = '{}']",
            url.replace('\\', "\\\\").replace('\'', "\\'")
        ),
        None => format!("[file:hashes.'SHA-256' = '{}']", input.sha256()),
    };
    json!({
        "type": "bundle",
        "id": format!("bundle--{}", uuid(input, "bundle")),
        "objects": [{
            "type": "indicator",
            "spec_version": "2.1",
            "id": format!("indicator--{}", uuid(input, "indicator")),
            "created": iso8601(&input.time),
            "modified": iso8601(&input.time),
            "name": input.filename,
            "pattern": pattern,
            "pattern_type": "stix",
            "valid_from": iso8601(&input.time),
            "labels": [input.detection().as_str()],
        }],
    })
}

pub(crate) fn misp(input: &ReportInput) -> Value {
    let mut attributes = Vec::new();
    if let Some(url) = &input.url {
        attributes.push(json!({"type": "url", "category": "Network activity", "value": url}));
    } else {
        for (kind, value) in [
            ("md5", input.md5()),
            ("sha1", input.sha1()),
            ("sha256", input.sha256()),
        ] {
            attributes.push(json!({"type": kind, "category": "Payload delivery", "value": value}));
        }
        attributes.push(
            json!({"type": "filename", "category": "Payload delivery", "value": input.filename}),
        );
    }
    json!({"Event": {
        "info": format!("Joe Sandbox analysis {}", input.webid),
        "date": input.time.format("%Y-%m-%d").to_string(),
        "threat_level_id": match input.detection() { Detection::Malicious => "1", Detection::Suspicious => "2", _ => "4" },
        "analysis": "2",
        "uuid": uuid(input, "misp"),
        "Attribute": attributes,
    }})
}

pub(crate) fn maec(input: &ReportInput) -> Value {
    json!({
        "type": "package",
        "id": format!("package--{}", uuid(input, "maec")),
        "schema_version": "5.0",
        "maec_objects": [{
            "type": "malware-instance",
            "id": format!("malware-instance--{}", uuid(input, "instance")),
            "instance_object_refs": ["0"],
            "analysis_metadata": [{
                "is_automated": true,
                "analysis_type": "dynamic",
                "tool_refs": ["1"],
                "conclusion": input.detection().as_str(),
            }],
        }],
        "observable_objects": {
            "0": {"type": "file", "name": input.filename, "hashes": {"MD5": input.md5(), "SHA-256": input.sha256()}},
            "1": {"type": "software", "name": "Joe Sandbox Simulator"},
        },
    })
}

pub(crate) fn graph(input: &ReportInput) -> Value {
    json!({
        "analysis": input.webid,
        "nodes": [
            {"id": 0, "type": "sample", "label": input.filename, "detection": input.detection().as_str()},
            {"id": 1, "type": "process", "label": "explorer.exe"},
        ],
        "edges": [{"from": 1, "to": 0, "label": "starts"}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::reports::tests::{file_input, url_input};

    #[test]
    fn fixed_reports_keep_arrays_and_plain_ones_collapse_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "a.exe", b"JBXD-MALICIOUS");
        let fixed = report("IR", true, &input);
        assert!(fixed["analysis"]["signaturedetections"]["strategy"].is_array());
        assert_eq!(fixed["analysis"]["id"], json!(1000));
        assert_eq!(fixed["analysis"]["detection"]["malicious"], json!(true));
        assert_eq!(
            fixed["analysis"]["fileinfo"]["sha256"],
            json!(input.sha256())
        );
        let plain = report("full", false, &input);
        assert!(plain["analysis"]["signaturedetections"]["strategy"].is_object());
    }

    #[test]
    fn ioc_reports_list_the_url() {
        let value = ioc(&url_input("http://evil.example/x"));
        assert_eq!(
            value["analysis"]["urlinfo"]["url"][0]["@name"],
            json!("http://evil.example/x")
        );
        assert_eq!(
            value["analysis"]["urlinfo"]["url"][0]["@malicious"],
            json!(true)
        );
        assert_eq!(
            value["analysis"]["domaininfo"]["domain"][0]["@name"],
            json!("evil.example")
        );
    }

    #[test]
    fn hosts_are_taken_from_the_authority() {
        assert_eq!(
            host_of("https://u:p@Example.org:8443/a?b").as_deref(),
            Some("example.org")
        );
        assert_eq!(host_of("example.org/x").as_deref(), Some("example.org"));
        assert_eq!(host_of("http:///x"), None);
    }
}
