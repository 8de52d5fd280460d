//! JSON exports that are not Joe's XML→JSON reports: STIX, MISP, MAEC and the behaviour graph.
//! They show the same indicators as the reports ([`super::iocs`]).

use serde_json::{Value, json};

use super::ReportInput;
use super::iocs::iocs;
use crate::simulator::clock::iso8601;
use crate::simulator::verdict::Detection;

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

fn stix_quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

/// STIX 2.1: one indicator for the sample (or URL), one per contacted IOC and dropped file.
pub(crate) fn stix(input: &ReportInput) -> Value {
    let main = match &input.url {
        Some(url) => format!("[url:value = '{}']", stix_quote(url)),
        None => format!("[file:hashes.'SHA-256' = '{}']", input.sha256()),
    };
    let iocs = iocs(input);
    let mut patterns = vec![(input.filename.clone(), main)];
    for domain in &iocs.domains {
        patterns.push((
            domain.name.clone(),
            format!("[domain-name:value = '{}']", stix_quote(&domain.name)),
        ));
    }
    for ip in iocs.ips.iter().filter(|ip| !ip.private) {
        patterns.push((ip.ip.clone(), format!("[ipv4-addr:value = '{}']", ip.ip)));
    }
    for url in iocs
        .urls
        .iter()
        .filter(|u| Some(&u.name) != input.url.as_ref())
    {
        patterns.push((
            url.name.clone(),
            format!("[url:value = '{}']", stix_quote(&url.name)),
        ));
    }
    for file in &iocs.dropped {
        patterns.push((
            file.path.clone(),
            format!("[file:hashes.'SHA-256' = '{}']", file.sha256),
        ));
    }
    let objects: Vec<Value> = patterns
        .into_iter()
        .enumerate()
        .map(|(i, (name, pattern))| {
            json!({
                "type": "indicator",
                "spec_version": "2.1",
                "id": format!("indicator--{}", uuid(input, &format!("indicator{i}"))),
                "created": iso8601(&input.time),
                "modified": iso8601(&input.time),
                "name": name,
                "pattern": pattern,
                "pattern_type": "stix",
                "valid_from": iso8601(&input.time),
                "labels": [input.detection().as_str()],
            })
        })
        .collect();
    json!({
        "type": "bundle",
        "id": format!("bundle--{}", uuid(input, "bundle")),
        "objects": objects,
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
    let iocs = iocs(input);
    for domain in &iocs.domains {
        attributes
            .push(json!({"type": "domain", "category": "Network activity", "value": domain.name}));
    }
    for ip in iocs.ips.iter().filter(|ip| !ip.private) {
        attributes.push(json!({"type": "ip-dst", "category": "Network activity", "value": ip.ip}));
    }
    for url in iocs
        .urls
        .iter()
        .filter(|u| Some(&u.name) != input.url.as_ref())
    {
        attributes.push(json!({"type": "url", "category": "Network activity", "value": url.name}));
    }
    for file in &iocs.dropped {
        attributes
            .push(json!({"type": "sha256", "category": "Artifacts dropped", "value": file.sha256}));
        attributes.push(json!({"type": "md5", "category": "Artifacts dropped", "value": file.md5}));
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
    fn stix_and_misp_show_the_reports_indicators() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = file_input(dir.path(), "a.exe", b"JBXD-MALICIOUS");
        let iocs = iocs(&input);
        let stix_text = stix(&input).to_string();
        let misp_text = misp(&input).to_string();
        for domain in &iocs.domains {
            assert!(stix_text.contains(&format!("[domain-name:value = '{}']", domain.name)));
            assert!(misp_text.contains(&domain.name));
        }
        for file in &iocs.dropped {
            assert!(stix_text.contains(&file.sha256));
            assert!(misp_text.contains(&file.md5));
        }
        let private = iocs.ips.iter().find(|ip| ip.private).expect("a private ip");
        assert!(
            !stix_text.contains(&private.ip),
            "private addresses are not indicators"
        );
        let clean = stix(&url_input("https://example.org"));
        assert_eq!(clean["objects"].as_array().map(Vec::len), Some(1));
    }
}
