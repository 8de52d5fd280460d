//! MISP event JSON (`{"Event": {...}}`, what MISP's "Add event from JSON" and
//! `/events/add` take).
//!
//! * `info` names the analysis, its verdict and threat name; `threat_level_id` follows the
//!   verdict (1 high = malicious, 2 medium = suspicious, 3 low = clean, 4 undefined);
//!   `analysis` is 2 (completed: the sandbox run is over); `distribution` 0 (this
//!   organisation only: sharing further is the analyst's decision, not an exporter's);
//! * one `Attribute` per indicator: `domain`, `ip-dst`, `url`, `md5` / `sha1` / `sha256` /
//!   `sha512`, `filename`, in MISP's category for it; `to_ids` is true only for what the report
//!   calls malicious (and for the sample's hashes when the verdict is malicious), so MISP
//!   never turns an unrated or benign value into a detection rule;
//! * one `text` attribute per signature, never for IDS;
//! * one `Tag` per ATT&CK technique, in the galaxy's form
//!   `misp-galaxy:mitre-attack-pattern="Process Injection - T1055"`.

use serde_json::{Value, json};

use super::{ExportInput, JBXD_NAMESPACE, uuid_v5};
use crate::ioc::Kind;

/// (MISP attribute type, category) of an indicator kind.
fn attribute_type(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Domain => ("domain", "Network activity"),
        Kind::Ip => ("ip-dst", "Network activity"),
        Kind::Url => ("url", "Network activity"),
        Kind::Md5 => ("md5", "Payload delivery"),
        Kind::Sha1 => ("sha1", "Payload delivery"),
        Kind::Sha256 => ("sha256", "Payload delivery"),
        Kind::Sha512 => ("sha512", "Payload delivery"),
        Kind::FileName => ("filename", "Payload delivery"),
    }
}

fn threat_level(detection: Option<&str>) -> &'static str {
    match detection {
        Some("malicious") => "1",
        Some("suspicious") => "2",
        Some("clean") => "3",
        _ => "4",
    }
}

/// The event of one analysis.
pub fn render(input: &ExportInput) -> Value {
    let input = input.canonical();
    let a = &input.analysis;
    let timestamp = a.time.timestamp().max(0).to_string();
    let uuid = |name: &str| uuid_v5(&JBXD_NAMESPACE, &format!("{}|misp|{name}", a.webid));
    let mut attributes: Vec<Value> = Vec::new();
    let mut attribute = |kind: Kind, value: &str, to_ids: bool, comment: String| {
        let (kind_name, category) = attribute_type(kind);
        let key = format!("{kind_name}|{value}");
        if attributes.iter().any(|x| x["uuid"] == uuid(&key)) {
            return;
        }
        attributes.push(json!({
            "uuid": uuid(&key),
            "type": kind_name,
            "category": category,
            "value": value,
            "to_ids": to_ids,
            "comment": comment,
            "timestamp": timestamp,
            "distribution": "5",
        }));
    };
    for (kind, value) in &a.sample_hashes {
        attribute(
            *kind,
            value,
            a.is_malicious(),
            "the analysed sample".to_owned(),
        );
    }
    for ind in &input.indicators {
        let mut comment = match ind.malicious {
            Some(true) => "malicious".to_owned(),
            Some(false) => "not malicious".to_owned(),
            None => "not rated by the report".to_owned(),
        };
        if ind.private == Some(true) {
            comment.push_str(", private address");
        }
        attribute(ind.kind, &ind.value, ind.malicious == Some(true), comment);
    }
    for s in &input.signatures {
        let key = format!("signature|{}", s.description);
        attributes.push(json!({
            "uuid": uuid(&key),
            "type": "text",
            "category": "Other",
            "value": s.description,
            "to_ids": false,
            "comment": match s.impact {
                Some(impact) => format!("signature, impact {impact}"),
                None => "signature".to_owned(),
            },
            "timestamp": timestamp,
            "distribution": "5",
        }));
    }
    let tags: Vec<Value> = input
        .techniques
        .iter()
        .map(|t| {
            let id = t.id.to_ascii_uppercase();
            let name = match &t.name {
                Some(name) => format!("{name} - {id}"),
                None => id,
            };
            json!({ "name": format!("misp-galaxy:mitre-attack-pattern=\"{name}\"") })
        })
        .collect();
    let verdict = a.detection.as_deref().unwrap_or("unknown");
    let mut info = format!("jbxd analysis {}: {verdict}", a.webid);
    if let Some(threat) = &a.threatname {
        info.push_str(&format!(" ({threat})"));
    }
    if let Some(target) = &a.target {
        info.push_str(&format!(" — {target}"));
    }
    json!({
        "Event": {
            "uuid": uuid("event"),
            "info": info,
            "date": a.time.format("%Y-%m-%d").to_string(),
            "timestamp": timestamp,
            "threat_level_id": threat_level(a.detection.as_deref()),
            "analysis": "2",
            "distribution": "0",
            "published": false,
            "Attribute": attributes,
            "Tag": tags,
        }
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::super::{ExportAnalysis, ExportIndicator, ExportSignature, ExportTechnique};
    use super::*;

    fn input() -> ExportInput {
        let ind = |kind, value: &str, malicious, private| ExportIndicator {
            kind,
            value: value.into(),
            malicious,
            private,
        };
        ExportInput {
            analysis: ExportAnalysis {
                webid: "77".into(),
                detection: Some("suspicious".into()),
                score: Some(60),
                threatname: None,
                target: Some("http://site.example/".into()),
                sample_hashes: vec![(Kind::Md5, "ef".repeat(16))],
                time: Utc.with_ymd_and_hms(2026, 12, 1, 8, 30, 0).unwrap(),
            },
            indicators: vec![
                ind(Kind::Domain, "evil.example", Some(true), None),
                ind(Kind::Domain, "good.example", Some(false), None),
                ind(Kind::Ip, "10.0.0.1", None, Some(true)),
                ind(Kind::Url, "http://evil.example/\"x\"", Some(true), None),
                ind(Kind::Sha256, &"12".repeat(32), Some(true), None),
                ind(Kind::FileName, "a.exe", None, None),
            ],
            signatures: vec![ExportSignature {
                description: "Contacts a known C2".into(),
                impact: Some(2),
                id: None,
            }],
            techniques: vec![
                ExportTechnique {
                    id: "t1055".into(),
                    name: Some("Process Injection".into()),
                    tactic: None,
                },
                ExportTechnique {
                    id: "T1071".into(),
                    name: None,
                    tactic: None,
                },
            ],
        }
    }

    fn attribute<'a>(event: &'a Value, kind: &str, value: &str) -> &'a Value {
        event["Event"]["Attribute"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == kind && a["value"] == value)
            .unwrap_or_else(|| panic!("no {kind} {value} in {event}"))
    }

    #[test]
    fn the_event_carries_info_threat_level_and_completed_analysis() {
        let event = render(&input());
        let e = &event["Event"];
        assert_eq!(e["threat_level_id"], "2");
        assert_eq!(e["analysis"], "2");
        assert_eq!(e["date"], "2026-12-01");
        let info = e["info"].as_str().unwrap();
        assert!(info.contains("77") && info.contains("suspicious"), "{info}");
        assert_eq!(e["uuid"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn attributes_are_typed_and_only_malicious_ones_are_for_ids() {
        let event = render(&input());
        assert_eq!(attribute(&event, "domain", "evil.example")["to_ids"], true);
        assert_eq!(attribute(&event, "domain", "good.example")["to_ids"], false);
        let private = attribute(&event, "ip-dst", "10.0.0.1");
        assert_eq!(private["to_ids"], false);
        assert!(private["comment"].as_str().unwrap().contains("private"));
        assert_eq!(
            attribute(&event, "url", "http://evil.example/\"x\"")["category"],
            "Network activity"
        );
        assert_eq!(
            attribute(&event, "sha256", &"12".repeat(32))["to_ids"],
            true
        );
        assert_eq!(attribute(&event, "filename", "a.exe")["to_ids"], false);
        // The sample of a merely suspicious analysis is recorded, not for IDS.
        assert_eq!(attribute(&event, "md5", &"ef".repeat(16))["to_ids"], false);
        let signature = attribute(&event, "text", "Contacts a known C2");
        assert_eq!(signature["to_ids"], false);
        assert_eq!(signature["comment"], "signature, impact 2");
        // Quotes survive as data: the document is JSON, so a reader gets the value back.
        let text = event.to_string();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn techniques_are_galaxy_tags_with_name_and_id() {
        let event = render(&input());
        let tags: Vec<&str> = event["Event"]["Tag"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            tags,
            vec![
                "misp-galaxy:mitre-attack-pattern=\"Process Injection - T1055\"",
                "misp-galaxy:mitre-attack-pattern=\"T1071\"",
            ]
        );
    }

    #[test]
    fn the_same_analysis_gives_the_same_event_and_uuids() {
        let first = render(&input()).to_string();
        let mut again = input();
        again.indicators.reverse();
        again.indicators.push(again.indicators[0].clone());
        assert_eq!(first, render(&again).to_string());
        let mut other = input();
        other.analysis.webid = "78".into();
        let other = render(&other);
        let first: Value = serde_json::from_str(&first).unwrap();
        assert_ne!(first["Event"]["uuid"], other["Event"]["uuid"]);
        assert_ne!(
            attribute(&first, "domain", "evil.example")["uuid"],
            attribute(&other, "domain", "evil.example")["uuid"]
        );
    }

    #[test]
    fn a_malicious_verdict_puts_the_sample_hashes_up_for_ids() {
        let mut malicious = input();
        malicious.analysis.detection = Some("malicious".into());
        let event = render(&malicious);
        assert_eq!(event["Event"]["threat_level_id"], "1");
        assert_eq!(attribute(&event, "md5", &"ef".repeat(16))["to_ids"], true);
    }
}
