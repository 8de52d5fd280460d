//! STIX 2.1: one `bundle` per analysis.
//!
//! * an `identity` for jbxd (`identity_class: system`), the creator of every object;
//! * a `malware-analysis` SDO with the verdict (`result`: `malicious` | `suspicious` |
//!   `benign` | `unknown`), the threat name (`result_name`), the sample (`sample_ref`), what
//!   was observed (`analysis_sco_refs`) and, as custom properties, the score and the
//!   signatures (`x_jbxd_score`, `x_jbxd_signatures`);
//! * one observable (SCO) per indicator: `domain-name`, `ipv4-addr` / `ipv6-addr`, `url`,
//!   `file` (hashes or name). SCO ids are the spec's deterministic ones (UUIDv5 in the STIX
//!   namespace over the id-contributing property), so the same domain is one object in every
//!   bundle;
//! * one `indicator` per indicator that points at harm: the report calls it malicious, or it
//!   says nothing of it and the whole analysis is malicious (never a private address, never a
//!   bare file name it does not call malicious). Its pattern is `[domain-name:value = '…']`,
//!   `[ipv4-addr:value = '…']`, `[url:value = '…']`, `[file:hashes.'SHA-256' = '…']`, with
//!   quotes and backslashes escaped; a `based-on` relationship ties it to its observable;
//! * one `attack-pattern` per ATT&CK technique with its `mitre-attack` external reference.
//!
//! An IP the index holds that does not parse as an address is left out of the bundle (a STIX
//! consumer would reject the whole bundle for one bad `ipv4-addr`).

use std::net::IpAddr;

use serde_json::{Value, json};

use super::{ExportIndicator, ExportInput, JBXD_NAMESPACE, rfc3339, uuid_v5};
use crate::ioc::Kind;

/// The namespace STIX 2.1 (§2.9) prescribes for the ids of cyber-observable objects.
const STIX_SCO_NAMESPACE: [u8; 16] = [
    0x00, 0xab, 0xed, 0xb4, 0xaa, 0x42, 0x46, 0x6c, 0x9c, 0x01, 0xfe, 0xd2, 0x33, 0x15, 0xa9, 0xb7,
];

/// A STIX pattern's string literal: quotes and backslashes escaped (STIX 2.1 §9.2).
pub fn pattern_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The observable of one indicator: (SCO type, the SCO object without its id, pattern).
fn observable(ind: &ExportIndicator) -> Option<(&'static str, Value, String)> {
    let lit = pattern_literal(&ind.value);
    Some(match ind.kind {
        Kind::Domain => (
            "domain-name",
            json!({ "value": ind.value }),
            format!("[domain-name:value = {lit}]"),
        ),
        Kind::Url => (
            "url",
            json!({ "value": ind.value }),
            format!("[url:value = {lit}]"),
        ),
        Kind::Ip => match ind.value.parse::<IpAddr>().ok()? {
            IpAddr::V4(ip) => (
                "ipv4-addr",
                json!({ "value": ip.to_string() }),
                format!("[ipv4-addr:value = {}]", pattern_literal(&ip.to_string())),
            ),
            IpAddr::V6(ip) => (
                "ipv6-addr",
                json!({ "value": ip.to_string() }),
                format!("[ipv6-addr:value = {}]", pattern_literal(&ip.to_string())),
            ),
        },
        Kind::Md5 | Kind::Sha1 | Kind::Sha256 | Kind::Sha512 => {
            let algo = hash_algorithm(ind.kind)?;
            (
                "file",
                json!({ "hashes": { algo: ind.value } }),
                format!("[file:hashes.'{algo}' = {lit}]"),
            )
        }
        Kind::FileName => (
            "file",
            json!({ "name": ind.value }),
            format!("[file:name = {lit}]"),
        ),
    })
}

/// STIX's hash-algorithm vocabulary.
fn hash_algorithm(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Md5 => Some("MD5"),
        Kind::Sha1 => Some("SHA-1"),
        Kind::Sha256 => Some("SHA-256"),
        Kind::Sha512 => Some("SHA-512"),
        _ => None,
    }
}

/// STIX's `malware-result-ov` for the API's verdict words.
fn result(detection: Option<&str>) -> &'static str {
    match detection {
        Some("malicious") => "malicious",
        Some("suspicious") => "suspicious",
        Some("clean") => "benign",
        _ => "unknown",
    }
}

/// Adds an observable once; its id is the spec's deterministic one (the id-contributing
/// properties are exactly the ones `body` holds: value, hashes or name).
fn add_sco(objects: &mut Vec<Value>, kind: &'static str, mut body: Value) -> String {
    let canonical = serde_json::to_string(&body).unwrap_or_default();
    let id = format!("{kind}--{}", uuid_v5(&STIX_SCO_NAMESPACE, &canonical));
    body["type"] = json!(kind);
    body["spec_version"] = json!("2.1");
    body["id"] = json!(id);
    if !objects.iter().any(|o| o["id"] == body["id"]) {
        objects.push(body);
    }
    id
}

/// The bundle of one analysis.
pub fn render(input: &ExportInput) -> Value {
    let input = input.canonical();
    let a = &input.analysis;
    let time = rfc3339(&a.time);
    let identity_id = format!("identity--{}", uuid_v5(&JBXD_NAMESPACE, "jbxd"));
    let sdo_id = |kind: &str, name: &str| {
        format!(
            "{kind}--{}",
            uuid_v5(&JBXD_NAMESPACE, &format!("{}|{kind}|{name}", a.webid))
        )
    };
    let common = |mut object: Value, kind: &str, id: String| {
        object["type"] = json!(kind);
        object["spec_version"] = json!("2.1");
        object["id"] = json!(id);
        object["created"] = json!(time);
        object["modified"] = json!(time);
        object["created_by_ref"] = json!(identity_id);
        object
    };
    let mut objects = vec![json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id,
        "created": time,
        "modified": time,
        "name": "jbxd",
        "identity_class": "system",
        "description": "jbxd, which ran the analysis and indexed its report",
    })];
    let mut observed = Vec::new();
    let sample_ref = (!a.sample_hashes.is_empty()).then(|| {
        let hashes: serde_json::Map<String, Value> = a
            .sample_hashes
            .iter()
            .filter_map(|(kind, value)| Some((hash_algorithm(*kind)?.to_owned(), json!(value))))
            .collect();
        add_sco(&mut objects, "file", json!({ "hashes": hashes }))
    });
    let mut indicators = Vec::new();
    let sample_indicators = a.sample_hashes.iter().map(|(kind, value)| ExportIndicator {
        kind: *kind,
        value: value.clone(),
        malicious: Some(a.is_malicious()),
        private: None,
    });
    for ind in input.indicators.iter().cloned().chain(sample_indicators) {
        let Some((kind, body, pattern)) = observable(&ind) else {
            continue;
        };
        let sco_id = add_sco(&mut objects, kind, body);
        if !observed.contains(&sco_id) {
            observed.push(sco_id.clone());
        }
        let harmful = match ind.malicious {
            Some(flag) => flag,
            None => a.is_malicious() && ind.kind != Kind::FileName,
        };
        if !harmful || ind.private == Some(true) {
            continue;
        }
        let name = format!("{}|{}", ind.kind.as_str(), ind.value);
        let id = sdo_id("indicator", &name);
        if indicators.iter().any(|(i, _): &(String, String)| *i == id) {
            continue;
        }
        indicators.push((id.clone(), sco_id.clone()));
        objects.push(common(
            json!({
                "name": ind.value,
                "pattern": pattern,
                "pattern_type": "stix",
                "pattern_version": "2.1",
                "valid_from": time,
                "indicator_types": ["malicious-activity"],
                "labels": [ind.kind.as_str()],
            }),
            "indicator",
            id.clone(),
        ));
        objects.push(common(
            json!({
                "relationship_type": "based-on",
                "source_ref": id,
                "target_ref": sco_id,
            }),
            "relationship",
            sdo_id("relationship", &format!("based-on|{name}")),
        ));
    }
    for t in &input.techniques {
        let id = t.id.to_ascii_uppercase();
        let mut pattern = json!({
            "name": t.name.clone().unwrap_or_else(|| id.clone()),
            "external_references": [{
                "source_name": "mitre-attack",
                "external_id": id,
                "url": format!("https://attack.mitre.org/techniques/{}/", id.replace('.', "/")),
            }],
        });
        if let Some(tactic) = &t.tactic {
            pattern["kill_chain_phases"] = json!([{
                "kill_chain_name": "mitre-attack",
                "phase_name": tactic.to_ascii_lowercase().replace(' ', "-"),
            }]);
        }
        objects.push(common(
            pattern,
            "attack-pattern",
            sdo_id("attack-pattern", &id),
        ));
    }
    let signatures: Vec<Value> = input
        .signatures
        .iter()
        .map(|s| json!({ "description": s.description, "impact": s.impact, "id": s.id }))
        .collect();
    let mut analysis = json!({
        "product": "joe-sandbox",
        "result": result(a.detection.as_deref()),
        "submitted": time,
        "x_jbxd_webid": a.webid,
        "x_jbxd_score": a.score,
        "x_jbxd_signatures": signatures,
    });
    if let Some(name) = &a.threatname {
        analysis["result_name"] = json!(name);
    }
    if let Some(target) = &a.target {
        analysis["x_jbxd_target"] = json!(target);
    }
    if let Some(sample) = &sample_ref {
        analysis["sample_ref"] = json!(sample);
    }
    if !observed.is_empty() {
        analysis["analysis_sco_refs"] = json!(observed);
    }
    objects.push(common(
        analysis,
        "malware-analysis",
        sdo_id("malware-analysis", ""),
    ));
    json!({
        "type": "bundle",
        "id": format!("bundle--{}", uuid_v5(&JBXD_NAMESPACE, &format!("{}|bundle", a.webid))),
        "objects": objects,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::super::{ExportAnalysis, ExportSignature, ExportTechnique};
    use super::*;

    fn ind(
        kind: Kind,
        value: &str,
        malicious: Option<bool>,
        private: Option<bool>,
    ) -> ExportIndicator {
        ExportIndicator {
            kind,
            value: value.into(),
            malicious,
            private,
        }
    }

    fn input() -> ExportInput {
        ExportInput {
            analysis: ExportAnalysis {
                webid: "4242".into(),
                detection: Some("malicious".into()),
                score: Some(100),
                threatname: Some("Emotet".into()),
                target: Some("invoice.doc".into()),
                sample_hashes: vec![(Kind::Sha256, "ab".repeat(32))],
                time: Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap(),
            },
            indicators: vec![
                ind(Kind::Domain, "evil.example", Some(true), None),
                ind(Kind::Domain, "windowsupdate.example", Some(false), None),
                ind(Kind::Ip, "192.168.0.10", None, Some(true)),
                ind(Kind::Ip, "2001:db8::1", None, Some(false)),
                ind(Kind::Ip, "198.51.100.7", Some(true), Some(false)),
                ind(
                    Kind::Url,
                    "http://evil.example/it's\\here",
                    Some(true),
                    None,
                ),
                ind(Kind::Sha1, &"cd".repeat(20), None, None),
                ind(Kind::FileName, "dropped.exe", None, None),
                ind(Kind::Ip, "not-an-ip", Some(true), None),
            ],
            signatures: vec![ExportSignature {
                description: "Injects code".into(),
                impact: Some(3),
                id: Some("1".into()),
            }],
            techniques: vec![ExportTechnique {
                id: "T1055".into(),
                name: Some("Process Injection".into()),
                tactic: Some("Defense Evasion".into()),
            }],
        }
    }

    fn of_type<'a>(bundle: &'a Value, kind: &str) -> Vec<&'a Value> {
        bundle["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["type"] == kind)
            .collect()
    }

    fn patterns(bundle: &Value) -> Vec<String> {
        of_type(bundle, "indicator")
            .iter()
            .map(|i| i["pattern"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_bundle_has_an_identity_a_malware_analysis_and_every_object_in_2_1() {
        let bundle = render(&input());
        assert_eq!(bundle["type"], "bundle");
        assert!(bundle["id"].as_str().unwrap().starts_with("bundle--"));
        assert!(
            bundle.get("spec_version").is_none(),
            "2.1 bundles carry none"
        );
        let identity = of_type(&bundle, "identity");
        assert_eq!(identity.len(), 1);
        assert_eq!(identity[0]["name"], "jbxd");
        let analysis = of_type(&bundle, "malware-analysis");
        assert_eq!(analysis.len(), 1);
        assert_eq!(analysis[0]["result"], "malicious");
        assert_eq!(analysis[0]["result_name"], "Emotet");
        assert_eq!(analysis[0]["x_jbxd_score"], 100);
        assert_eq!(analysis[0]["created_by_ref"], identity[0]["id"]);
        assert_eq!(analysis[0]["created"], "2026-12-04T10:00:00.000Z");
        for object in bundle["objects"].as_array().unwrap() {
            assert_eq!(object["spec_version"], "2.1", "{object}");
            let id = object["id"].as_str().unwrap();
            let (kind, uuid) = id.split_once("--").unwrap();
            assert_eq!(kind, object["type"].as_str().unwrap());
            assert_eq!(uuid.len(), 36);
            assert_eq!(&uuid[14..15], "5", "UUIDv5: {id}");
        }
        // Every reference points at an object of the bundle.
        let ids: Vec<&str> = bundle["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap())
            .collect();
        let refs = analysis[0]["analysis_sco_refs"].as_array().unwrap();
        assert!(refs.iter().all(|r| ids.contains(&r.as_str().unwrap())));
        assert!(ids.contains(&analysis[0]["sample_ref"].as_str().unwrap()));
    }

    #[test]
    fn indicators_have_proper_patterns_only_for_harmful_public_values() {
        let bundle = render(&input());
        let sha256 = "ab".repeat(32);
        let sha1 = "cd".repeat(20);
        let mut expected = vec![
            "[domain-name:value = 'evil.example']".to_owned(),
            "[ipv6-addr:value = '2001:db8::1']".to_owned(),
            "[ipv4-addr:value = '198.51.100.7']".to_owned(),
            r"[url:value = 'http://evil.example/it\'s\\here']".to_owned(),
            format!("[file:hashes.'SHA-1' = '{sha1}']"),
            format!("[file:hashes.'SHA-256' = '{sha256}']"),
        ];
        let mut got = patterns(&bundle);
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        // The private address and the benign domain are observed, not indicated.
        let ipv4: Vec<_> = of_type(&bundle, "ipv4-addr")
            .iter()
            .map(|o| o["value"].as_str().unwrap().to_owned())
            .collect();
        assert!(ipv4.contains(&"192.168.0.10".to_owned()), "{ipv4:?}");
        assert!(!bundle.to_string().contains("not-an-ip"));
        let relationships = of_type(&bundle, "relationship");
        assert_eq!(relationships.len(), expected.len());
        assert!(
            relationships
                .iter()
                .all(|r| r["relationship_type"] == "based-on")
        );
    }

    #[test]
    fn pattern_literals_escape_quotes_and_backslashes() {
        assert_eq!(pattern_literal("a'b"), r"'a\'b'");
        assert_eq!(pattern_literal(r"c:\x"), r"'c:\\x'");
        assert_eq!(pattern_literal(r"\'"), r"'\\\''");
    }

    #[test]
    fn techniques_become_attack_patterns_with_their_mitre_reference() {
        let bundle = render(&input());
        let patterns = of_type(&bundle, "attack-pattern");
        assert_eq!(patterns.len(), 1);
        assert_eq!(patterns[0]["name"], "Process Injection");
        assert_eq!(
            patterns[0]["external_references"][0]["external_id"],
            "T1055"
        );
        assert_eq!(
            patterns[0]["kill_chain_phases"][0]["phase_name"],
            "defense-evasion"
        );
    }

    #[test]
    fn the_same_analysis_exports_to_the_same_bytes_and_another_to_other_ids() {
        let first = render(&input()).to_string();
        let mut shuffled = input();
        shuffled.indicators.reverse();
        assert_eq!(first, render(&shuffled).to_string());
        let mut other = input();
        other.analysis.webid = "4243".into();
        let other = render(&other);
        let ids = |b: &Value| -> Vec<String> {
            of_type(b, "indicator")
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let first: Value = serde_json::from_str(&first).unwrap();
        assert!(ids(&first).iter().all(|id| !ids(&other).contains(id)));
        // Observables are the same things whatever analysis saw them.
        assert_eq!(
            of_type(&first, "domain-name")[0]["id"],
            of_type(&other, "domain-name")[0]["id"]
        );
    }

    #[test]
    fn a_clean_analysis_has_a_benign_result_and_no_indicator_for_unrated_values() {
        let mut clean = input();
        clean.analysis.detection = Some("clean".into());
        clean.indicators = vec![ind(Kind::Domain, "cdn.example", None, None)];
        let bundle = render(&clean);
        assert_eq!(of_type(&bundle, "malware-analysis")[0]["result"], "benign");
        assert!(patterns(&bundle).is_empty(), "{:?}", patterns(&bundle));
        assert_eq!(of_type(&bundle, "domain-name").len(), 1);
    }
}
