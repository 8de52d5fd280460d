//! `api::report::parse` on hand-written documents shaped like the real reports (the fixtures in
//! `tests/fixtures/reports/`: full `jsonfixed` and `xml` renderings of one analysis, a plain
//! `json` with `@isArray` keys and collapsed single items, a real-shaped `irjsonfixed` and
//! `irxml`), every quirk of the report reference, the caps, and malformed input.

use std::io::Read;

use jbxd::api::ReportType;
use jbxd::api::report::{
    MAX_SIGNATURES, MAX_STRING, RawIndicator, ReportError, ReportFacts, ReportFamily, ReportFormat,
    parse,
};
use jbxd::ioc::Kind;
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/reports/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(doc: &[u8]) -> ReportFacts {
    parse(doc, ReportFormat::Json)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(doc)))
}

fn xml(doc: &[u8]) -> ReportFacts {
    parse(doc, ReportFormat::Xml)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(doc)))
}

/// The indicators as (kind, value, malicious, section), for compact assertions.
fn iocs(facts: &ReportFacts) -> Vec<(Kind, &str, Option<bool>, &str)> {
    facts
        .indicators
        .iter()
        .map(|i| (i.kind, i.value.as_str(), i.malicious, i.section))
        .collect()
}

fn find<'a>(facts: &'a ReportFacts, kind: Kind, value: &str) -> Option<&'a RawIndicator> {
    facts
        .indicators
        .iter()
        .find(|i| i.kind == kind && i.value == value)
}

#[test]
fn a_jsonfixed_report_yields_its_verdict_indicators_signatures_techniques_yara_configs_and_errors()
{
    let facts = json(&fixture("full.jsonfixed.json"));
    assert_eq!(facts.family, Some(ReportFamily::Full));
    let verdict = facts
        .verdict
        .as_ref()
        .expect("the empiric strategy's verdict");
    assert_eq!(verdict.detection.as_deref(), Some("malicious"));
    assert_eq!(verdict.score, Some(100));
    assert_eq!(verdict.threatname.as_deref(), Some("AgentTesla"));
    assert_eq!(verdict.confidence, None);

    let ip = find(&facts, Kind::Ip, "192.168.2.1").expect("the private address");
    assert_eq!(
        (ip.private, ip.malicious, ip.section),
        (Some(true), Some(false), "ipinfo")
    );
    let domain = find(&facts, Kind::Domain, "evil.example.com").unwrap();
    assert_eq!(
        (domain.malicious, domain.section),
        (Some(true), "domaininfo")
    );
    assert_eq!(
        find(&facts, Kind::Domain, "unresolved.example.org").map(|d| d.malicious),
        Some(Some(false))
    );
    assert!(
        find(&facts, Kind::Ip, "unknown").is_none(),
        "`unknown` is no address"
    );
    let dropped_md5 = find(&facts, Kind::Md5, "E08D380A908030FFCEF0CA56F7A64D22").unwrap();
    assert_eq!(
        (dropped_md5.malicious, dropped_md5.section),
        (Some(true), "droppedinfo")
    );
    for (kind, prefix) in [
        (Kind::Sha1, "9E647BCB"),
        (Kind::Sha256, "08B022FE"),
        (Kind::Sha512, "AB12"),
    ] {
        assert!(
            facts
                .indicators
                .iter()
                .any(|i| i.kind == kind && i.value.starts_with(prefix)),
            "{kind:?}"
        );
    }
    let sample: Vec<_> = facts
        .indicators
        .iter()
        .filter(|i| i.section == "fileinfo")
        .map(|i| (i.kind, i.value.as_str()))
        .collect();
    assert_eq!(
        sample,
        [
            (Kind::FileName, "invoice.exe"),
            (Kind::Md5, "4892683440e84dec6e04b9ea4b1e3e2c"),
            (Kind::Sha1, "8f3c6e8cbb52e3d3bcf6a35b3c2b0e6a7c6f2ab1"),
            (
                Kind::Sha256,
                "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
            ),
        ],
        "the empty sha512 is no fact"
    );
    assert!(find(&facts, Kind::Url, "http://evil.example.com/gate.php").is_some());
    assert!(
        !facts
            .indicators
            .iter()
            .any(|i| i.section.starts_with("behavior")),
        "behavior is skipped"
    );

    let sigs: Vec<_> = facts
        .signatures
        .iter()
        .map(|s| (s.id.as_deref(), s.description.as_str(), s.impact))
        .collect();
    assert_eq!(
        sigs,
        [
            (Some("1234"), "Creates an autostart registry key", Some(2)),
            (Some("77"), "Queries the volume information", Some(0)),
        ],
        "sighits of a domain are not signatures"
    );
    let techniques: Vec<_> = facts
        .techniques
        .iter()
        .map(|t| (t.id.as_str(), t.tactic.as_deref()))
        .collect();
    assert_eq!(
        techniques,
        [
            ("T1547", Some("Persistence")),
            ("T1055", Some("Defense Evasion")),
            ("T1027", Some("Defense Evasion")),
        ]
    );
    assert_eq!(
        facts.techniques[1].name.as_deref(),
        Some("Process Injection")
    );
    let yara: Vec<_> = facts
        .yara
        .iter()
        .map(|y| (y.rule.as_str(), y.scope.as_str()))
        .collect();
    assert_eq!(
        yara,
        [
            ("Embedded_PE", "sample"),
            ("AgentTesla_1", "memorydumps"),
            ("JoeSecurity_AgentTesla", "memorydumps"),
        ]
    );
    assert_eq!(facts.configs.len(), 1);
    assert_eq!(facts.configs[0].threatname.as_deref(), Some("AgentTesla"));
    let config: serde_json::Value = serde_json::from_str(&facts.configs[0].json).unwrap();
    assert_eq!(config["host"], "smtp.evil.example.com");
    assert_eq!(config["port"], 587);
    assert_eq!(facts.errors, ["Sample crashed after 10 s"]);
    assert!(!facts.truncated);
}

#[test]
fn the_xml_and_the_jsonfixed_rendering_of_one_analysis_give_the_same_facts() {
    let from_json = json(&fixture("full.jsonfixed.json"));
    let from_xml = xml(&fixture("full.xml"));
    assert!(from_json.indicators.len() > 10, "the fixture has facts");
    assert_eq!(from_xml, from_json);
}

#[test]
fn a_plain_json_report_with_isarray_keys_and_collapsed_single_items_yields_every_item() {
    let facts = json(&fixture("full-plain.json"));
    assert_eq!(facts.family, Some(ReportFamily::Full));
    let verdict = facts.verdict.as_ref().unwrap();
    assert_eq!(verdict.detection.as_deref(), Some("suspicious"));
    assert_eq!(verdict.score, Some(45), "a numeric string is a number");
    assert_eq!(verdict.threatname, None, "`Unknown` is no threat name");
    assert_eq!(
        iocs(&facts),
        [
            (Kind::FileName, "one.doc", None, "fileinfo"),
            (
                Kind::Md5,
                "AAAABBBBCCCCDDDDEEEEFFFF00001111",
                None,
                "fileinfo"
            ),
            (
                Kind::Domain,
                "Single.Example.NET",
                Some(false),
                "domaininfo"
            ),
            (Kind::Ip, "198.51.100.9", None, "domaininfo"),
            (Kind::Ip, "198.51.100.9", Some(false), "ipinfo"),
            (Kind::FileName, "C:\\t\\x.vbs", Some(false), "droppedinfo"),
            (
                Kind::Sha256,
                "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
                Some(false),
                "droppedinfo"
            ),
        ]
    );
    assert_eq!(facts.signatures.len(), 1);
    assert_eq!(facts.signatures[0].impact, Some(1));
    assert_eq!(facts.techniques[0].id, "t1059.005", "as spelled");
    assert_eq!(facts.techniques[0].tactic.as_deref(), Some("Execution"));
    assert_eq!(facts.yara[0].rule, "Office_Macro");
    assert!(facts.configs.is_empty() && facts.errors.is_empty());
}

#[test]
fn booleans_as_strings_and_numbers_as_strings_read_like_typed_ones() {
    let typed = br#"{"analysis": {"reporttype": "IR",
        "detection": {"malicious": true, "suspicious": false, "score": 84},
        "confidence": {"score": 4},
        "dropped": {"file": [{"name": "a.exe", "malicious": true}]}}}"#;
    let strings = br#"{"analysis": {"reporttype": "IR",
        "detection": {"malicious": "true", "suspicious": "false", "score": "84"},
        "confidence": {"score": "4"},
        "dropped": {"file": {"name": "a.exe", "malicious": "TRUE"}}}}"#;
    let (a, b) = (json(typed), json(strings));
    assert_eq!(a, b);
    let verdict = a.verdict.unwrap();
    assert_eq!(
        (
            verdict.detection.as_deref(),
            verdict.score,
            verdict.confidence
        ),
        (Some("malicious"), Some(84), Some(4))
    );
    assert_eq!(a.indicators[0].malicious, Some(true));
}

#[test]
fn an_irjsonfixed_report_with_one_signature_as_a_bare_string_yields_it() {
    let facts = json(&fixture("ir-suspicious.irjsonfixed.json"));
    assert_eq!(facts.family, Some(ReportFamily::Incident));
    let verdict = facts.verdict.as_ref().unwrap();
    assert_eq!(
        (
            verdict.detection.as_deref(),
            verdict.score,
            verdict.confidence
        ),
        (Some("suspicious"), Some(22), Some(3))
    );
    assert_eq!(facts.signatures.len(), 1);
    assert_eq!(
        facts.signatures[0].description,
        "Document contains an embedded VBA macro which may execute code"
    );
    assert_eq!(
        (facts.signatures[0].id.as_ref(), facts.signatures[0].impact),
        (None, None)
    );
    assert_eq!(
        iocs(&facts),
        [
            (
                Kind::Md5,
                "51c374cb0a1b2c3d4e5f60718293a4b5",
                None,
                "hashes"
            ),
            (
                Kind::Sha1,
                "3a5d9e2f0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                None,
                "hashes"
            ),
            (
                Kind::Sha256,
                "82eb448f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5",
                None,
                "hashes"
            ),
            (
                Kind::FileName,
                "C:\\Users\\user\\AppData\\Local\\Temp\\~WRS{A1B2}.tmp",
                Some(false),
                "dropped"
            ),
            (
                Kind::Md5,
                "FF291ADF0A1B2C3D4E5F60718293A4B5",
                Some(false),
                "dropped"
            ),
            (
                Kind::Sha1,
                "9E647BCB0A1B2C3D4E5F60718293A4B5C6D7E8F9",
                Some(false),
                "dropped"
            ),
            (
                Kind::Sha256,
                "08B022FE0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5",
                Some(false),
                "dropped"
            ),
            (Kind::Ip, "192.168.1.20", Some(false), "contacted.ips"),
            (
                Kind::Domain,
                "bad.example",
                Some(false),
                "contacted.domains"
            ),
        ],
        "the domain's `ip: unknown` is no address"
    );
    assert!(facts.errors.is_empty(), "`errors: null` is no error");
}

#[test]
fn an_irxml_report_yields_the_incident_facts_with_the_older_domain_form() {
    let facts = xml(&fixture("ir-malicious.irxml.xml"));
    assert_eq!(facts.family, Some(ReportFamily::Incident));
    let verdict = facts.verdict.as_ref().unwrap();
    assert_eq!(
        (
            verdict.detection.as_deref(),
            verdict.score,
            verdict.confidence
        ),
        (Some("malicious"), Some(80), Some(5))
    );
    assert_eq!(
        find(&facts, Kind::Ip, "80.82.67.21").map(|i| i.malicious),
        Some(Some(true))
    );
    assert_eq!(
        find(&facts, Kind::Ip, "10.0.0.5").map(|i| i.malicious),
        Some(None),
        "an address without @malicious"
    );
    let domain = find(&facts, Kind::Domain, "c2.bad.example").expect("text + @malicious");
    assert_eq!(
        (domain.malicious, domain.section),
        (Some(true), "contacted.domains")
    );
    assert_eq!(
        find(
            &facts,
            Kind::FileName,
            "C:\\Users\\user\\Desktop\\~$resume.doc"
        )
        .map(|f| f.malicious),
        Some(Some(true))
    );
    let sigs: Vec<_> = facts
        .signatures
        .iter()
        .map(|s| s.description.as_str())
        .collect();
    assert_eq!(
        sigs,
        [
            "Document contains an embedded VBA macro",
            "Yara detected Netwire RAT"
        ]
    );
    assert!(facts.errors.is_empty(), "an empty <errors/> is no error");
}

#[test]
fn ir_domains_in_the_current_and_the_older_form_yield_the_same_domain() {
    let current = json(
        br#"{"analysis": {"reporttype": "IR", "contacted": {"domains": {"domain":
            [{"name": "x.example", "malicious": true, "ip": "unknown"}]}}}}"#,
    );
    let older = json(
        br#"{"analysis": {"reporttype": "IR", "contacted": {"domains": {"domain":
            {"@malicious": "true", "$": "x.example"}}}}}"#,
    );
    let older_xml = xml(
        br#"<analysis><reporttype>IR</reporttype><contacted><domains>
            <domain malicious="true">x.example</domain></domains></contacted></analysis>"#,
    );
    let current_xml = xml(
        br#"<analysis><reporttype>IR</reporttype><contacted><domains><domain>
            <name>x.example</name><malicious>true</malicious><ip>unknown</ip></domain>
            </domains></contacted></analysis>"#,
    );
    let expected = [(Kind::Domain, "x.example", Some(true), "contacted.domains")];
    for facts in [&current, &older, &older_xml, &current_xml] {
        assert_eq!(iocs(facts), expected);
    }
}

#[test]
fn ir_addresses_as_bare_strings_and_urls_with_string_booleans_are_read() {
    let facts = json(
        br#"{"analysis": {"reporttype": "IR", "contacted": {
            "ips": {"ip": ["198.51.100.1", "unknown", {"@malicious": "true", "$": "198.51.100.2"}]},
            "urls": {"url": {"name": "http://x.example/a", "malicious": "true", "ip": "198.51.100.2"}}}}}"#,
    );
    assert_eq!(
        iocs(&facts),
        [
            (Kind::Ip, "198.51.100.1", None, "contacted.ips"),
            (Kind::Ip, "198.51.100.2", Some(true), "contacted.ips"),
            (
                Kind::Url,
                "http://x.example/a",
                Some(true),
                "contacted.urls"
            ),
            (Kind::Ip, "198.51.100.2", None, "contacted.urls"),
        ]
    );
}

#[test]
fn the_family_comes_from_the_document_not_from_the_type_name() {
    // A full report saved under an IR type name is still a full report, and the other way.
    assert_eq!(ReportType::format("irjsonfixed"), Some(ReportFormat::Json));
    let full = json(&fixture("full.jsonfixed.json"));
    let ir = json(&fixture("ir-suspicious.irjsonfixed.json"));
    assert_eq!(
        (full.family, ir.family),
        (Some(ReportFamily::Full), Some(ReportFamily::Incident))
    );
    let by_keys = json(br#"{"analysis": {"detection": {"clean": true, "score": 0}}}"#);
    assert_eq!(
        by_keys.family,
        Some(ReportFamily::Incident),
        "IR keys without reporttype"
    );
    assert_eq!(by_keys.verdict.unwrap().detection.as_deref(), Some("clean"));
    assert_eq!(json(br#"{"analysis": {"id": 1}}"#).family, None);
}

#[test]
fn missing_sections_nulls_unknown_keys_and_empty_containers_yield_no_facts() {
    for doc in [
        &br#"{"analysis": {}}"#[..],
        br#"{"analysis": {"domaininfo": null, "ipinfo": {"ip": null}, "urlinfo": {"url": []},
            "droppedinfo": {"hash": [{"@file": "", "value": null}]}, "signatureinfo": "",
            "mitreattack": {"tactic": [{"technique": null}]}, "yara": {"sample": null},
            "newsection": {"domain": [{"@name": "not.a.fact"}]}, "errorinfo": null}, "other": 1}"#,
    ] {
        let facts = json(doc);
        assert!(
            facts.indicators.is_empty()
                && facts.signatures.is_empty()
                && facts.techniques.is_empty()
                && facts.yara.is_empty()
                && facts.errors.is_empty()
                && facts.verdict.is_none(),
            "{facts:?}"
        );
    }
    let facts =
        xml(b"<analysis><domaininfo/><ipinfo isArray=\"true\"/><unknown><a/></unknown></analysis>");
    assert_eq!(facts.family, Some(ReportFamily::Full));
    assert!(facts.indicators.is_empty());
}

#[test]
fn escapes_and_entities_decode_to_the_same_text() {
    let from_json = json(
        br#"{"analysis": {"signatureinfo": {"sig": {"@desc": "Caf\u00e9 \"&\" <x> \ud83d\ude00\n"}}}}"#,
    );
    let from_xml = xml(
        "<analysis><signatureinfo><sig desc=\"Caf&#233; &quot;&amp;&quot; &lt;x&gt; \u{1F600}\"/></signatureinfo></analysis>"
            .as_bytes(),
    );
    assert_eq!(from_json.signatures[0].description, "Café \"&\" <x> 😀");
    assert_eq!(from_xml, from_json);
    let text = xml(
        b"<analysis><errorinfo><error>a &amp; b <![CDATA[<c>]]></error></errorinfo></analysis>",
    );
    assert_eq!(text.errors, ["a & b <c>"]);
}

#[test]
fn every_truncation_of_a_report_is_an_error_naming_a_position() {
    for (name, format) in [
        ("full.jsonfixed.json", ReportFormat::Json),
        ("ir-suspicious.irjsonfixed.json", ReportFormat::Json),
        ("full.xml", ReportFormat::Xml),
        ("ir-malicious.irxml.xml", ReportFormat::Xml),
    ] {
        let doc = fixture(name);
        let end = doc.trim_ascii_end().len();
        for cut in (1..end).step_by(7).chain([end - 1]) {
            let error =
                parse(&doc[..cut], format).expect_err(&format!("{name} cut at {cut} was accepted"));
            let text = error.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(
                text.contains("byte") || text.contains("root"),
                "{name} at {cut}: {text}"
            );
        }
    }
}

#[test]
fn garbage_and_documents_that_are_not_reports_are_errors_that_say_which() {
    let cases: &[(&[u8], ReportFormat, &str)] = &[
        (
            b"",
            ReportFormat::Json,
            "not valid JSON: the document is empty",
        ),
        (
            b"hello",
            ReportFormat::Json,
            "not valid JSON: unexpected 'h'",
        ),
        (
            b"{\"analysis\": {\"a\": 1,}}",
            ReportFormat::Json,
            "expected a key, found '}' at byte 21",
        ),
        (
            b"{\"analysis\": {}} x",
            ReportFormat::Json,
            "unexpected 'x' after the document",
        ),
        (
            b"{\"analysis\": [1, 2]}",
            ReportFormat::Json,
            "not a Joe Sandbox report",
        ),
        (b"[1, 2]", ReportFormat::Json, "not a Joe Sandbox report"),
        (
            b"{\"submission\": {}}",
            ReportFormat::Json,
            "no `analysis` object",
        ),
        (
            b"{\"analysis\": {\"score\": 01x}}",
            ReportFormat::Json,
            "invalid number",
        ),
        (
            b"{\"analysis\": {\"s\": \"\\q\"}}",
            ReportFormat::Json,
            "invalid escape",
        ),
        (
            b"{\"analysis\": {\"s\": tru}}",
            ReportFormat::Json,
            "invalid literal",
        ),
        (
            b"<html><body/></html>",
            ReportFormat::Xml,
            "root element is <html>",
        ),
        (b"", ReportFormat::Xml, "no root element"),
        (
            b"<analysis><a></b></analysis>",
            ReportFormat::Xml,
            "not valid XML",
        ),
        (
            b"<analysis></analysis><analysis/>",
            ReportFormat::Xml,
            "a second root element",
        ),
        (
            b"<analysis><a x=1/></analysis>",
            ReportFormat::Xml,
            "not valid XML",
        ),
        (b"{\"analysis\": {}}", ReportFormat::Xml, "not valid XML"),
    ];
    for (doc, format, expected) in cases {
        let error = parse(*doc, *format).expect_err(&String::from_utf8_lossy(doc));
        let text = error.to_string();
        assert!(
            text.contains(expected),
            "{:?}: {text}",
            String::from_utf8_lossy(doc)
        );
        assert!(!text.contains('\n'), "{text}");
    }
}

#[test]
fn a_read_error_of_the_underlying_file_is_an_io_error() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            self.0 = 0;
            out[..14].copy_from_slice(b"{\"analysis\": {");
            Ok(14)
        }
    }
    for format in [ReportFormat::Json, ReportFormat::Xml] {
        let error = parse(Failing(1), format).unwrap_err();
        assert!(matches!(error, ReportError::Io(_)), "{error}");
        assert!(error.to_string().contains("disk on fire"), "{error}");
    }
}

#[test]
fn nesting_deeper_than_the_limit_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let mut doc = b"{\"analysis\": {\"behavior\": ".to_vec();
    doc.extend(std::iter::repeat_n(b'[', depth));
    doc.extend(std::iter::repeat_n(b']', depth));
    doc.extend(b"}}");
    let error = parse(&doc[..], ReportFormat::Json).unwrap_err();
    assert!(matches!(error, ReportError::TooDeep(_)), "{error}");

    let mut doc = b"<analysis><behavior>".to_vec();
    for _ in 0..depth {
        doc.extend(b"<a>");
    }
    let error = parse(&doc[..], ReportFormat::Xml).unwrap_err();
    assert!(matches!(error, ReportError::TooDeep(_)), "{error}");
}

#[test]
fn more_signatures_than_the_cap_keep_the_cap_and_mark_the_facts_truncated() {
    let mut doc = String::from(r#"{"analysis": {"signatureinfo": {"sig": ["#);
    for i in 0..MAX_SIGNATURES + 5 {
        if i > 0 {
            doc.push(',');
        }
        doc.push_str(&format!(
            r#"{{"@id": "{i}", "@desc": "signature {i}", "@impact": "1"}}"#
        ));
    }
    doc.push_str("]}}}");
    let facts = json(doc.as_bytes());
    assert_eq!(facts.signatures.len(), MAX_SIGNATURES);
    assert!(facts.truncated);
    assert_eq!(
        facts.signatures.last().unwrap().description,
        format!("signature {}", MAX_SIGNATURES - 1)
    );
}

#[test]
fn a_long_string_is_cut_to_the_string_cap_and_a_huge_config_to_its_budget() {
    let long = "a".repeat(3 * 1024 * 1024);
    let doc = format!(
        r#"{{"analysis": {{"domaininfo": {{"domain": {{"@name": "{long}.example", "@malicious": "true"}}}},
            "malware_configs": {{"config": {{"@threatname": "Big", "blobs": ["{long}", "{long}"],
            "keys": [{}]}}}}}}}}"#,
        (0..50_000)
            .map(|i| format!("\"k{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let facts = json(doc.as_bytes());
    assert_eq!(facts.indicators[0].value.len(), MAX_STRING);
    assert_eq!(
        facts.indicators[0].malicious,
        Some(true),
        "attributes after the long one are read"
    );
    let config = &facts.configs[0];
    assert_eq!(config.threatname.as_deref(), Some("Big"));
    assert!(
        config.json.len() <= 80 * 1024,
        "{} bytes",
        config.json.len()
    );
    serde_json::from_str::<serde_json::Value>(&config.json).expect("still valid JSON");
    assert!(facts.truncated, "the config was cut");
}

#[test]
fn an_xml_text_longer_than_the_event_limit_is_an_error() {
    let mut doc = b"<analysis><behavior><x>".to_vec();
    doc.resize(doc.len() + jbxd::api::report::MAX_XML_EVENT + 10, b'a');
    doc.extend(b"</x></behavior></analysis>");
    let error = parse(&doc[..], ReportFormat::Xml).unwrap_err();
    assert!(matches!(error, ReportError::TooLarge(_)), "{error}");
}

fn seeds() -> Vec<(Vec<u8>, ReportFormat)> {
    [
        ("full.jsonfixed.json", ReportFormat::Json),
        ("full-plain.json", ReportFormat::Json),
        ("ir-suspicious.irjsonfixed.json", ReportFormat::Json),
        ("full.xml", ReportFormat::Xml),
        ("ir-malicious.irxml.xml", ReportFormat::Xml),
    ]
    .into_iter()
    .map(|(name, format)| (fixture(name), format))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_an_error_or_facts_never_a_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        as_xml in any::<bool>(),
    ) {
        let format = if as_xml { ReportFormat::Xml } else { ReportFormat::Json };
        if let Err(error) = parse(&body[..], format) {
            prop_assert!(!error.to_string().contains('\n'));
        }
    }

    #[test]
    fn mutated_reports_are_an_error_or_facts_never_a_panic(
        seed in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let (mut doc, format) = seeds().swap_remove(seed);
        for (at, byte, op) in edits {
            let i = at.index(doc.len());
            match op {
                0 => doc[i] = byte,
                1 => doc.insert(i, byte),
                _ => { doc.remove(i); }
            }
        }
        if let Ok(facts) = parse(&doc[..], format) {
            prop_assert!(facts.indicators.len() <= jbxd::api::report::MAX_INDICATORS);
        }
    }
}

#[test]
fn a_report_read_one_byte_at_a_time_gives_the_same_facts() {
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            out[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }
    for (name, format) in [
        ("full.jsonfixed.json", ReportFormat::Json),
        ("full.xml", ReportFormat::Xml),
    ] {
        let doc = fixture(name);
        let whole = parse(&doc[..], format).unwrap();
        assert_eq!(parse(Trickle(&doc), format).unwrap(), whole, "{name}");
    }
}

/// The simulator and the parser are written from the same reference by different hands: every
/// full-report rendering the simulator serves must read back into the same facts, and those facts
/// must carry what the simulator put there (a malicious verdict, domains, an IP, dropped hashes,
/// signatures with impacts, ATT&CK ids, a YARA rule and a malware configuration).
#[test]
fn every_simulated_full_report_rendering_reads_back_into_the_same_facts() {
    let render = |report_type: &str| {
        let mut doc = Vec::new();
        jbxd::simulator::write_report_document(report_type, 0, &mut doc).expect(report_type);
        let format = ReportType::format(report_type).expect("a parseable type");
        parse(doc.as_slice(), format).unwrap_or_else(|e| panic!("{report_type}: {e}"))
    };
    let reference = render("jsonfixed");
    let verdict = reference.verdict.clone().expect("a verdict");
    assert_eq!(verdict.detection.as_deref(), Some("malicious"));
    assert_eq!(reference.family, Some(ReportFamily::Full));
    for kind in [Kind::Domain, Kind::Ip, Kind::Url, Kind::Sha256, Kind::Md5] {
        assert!(
            reference.indicators.iter().any(|i| i.kind == kind),
            "no {kind:?} in {:#?}",
            reference.indicators
        );
    }
    assert!(reference.signatures.iter().any(|s| s.impact.is_some()));
    assert!(reference.techniques.iter().any(|t| t.id.starts_with('T')));
    assert!(!reference.yara.is_empty());
    assert!(!reference.configs.is_empty());
    assert!(!reference.truncated);
    for other in ["json", "xml"] {
        assert_eq!(render(other), reference, "{other} differs from jsonfixed");
    }
    for light in ["lightjson", "lightjsonfixed", "lightxml"] {
        let facts = render(light);
        assert_eq!(facts.verdict, reference.verdict, "{light}");
        assert_eq!(facts.indicators, reference.indicators, "{light}");
    }
}
