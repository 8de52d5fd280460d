//! The rendered reports against the shapes of real Joe reports: the XML→JSON rules, fixed vs
//! plain, the incident report's quirks, empty sections, runs, determinism and escaping.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sxd_xpath::{Context, Factory, Value as XValue};

use super::iocs::iocs;
use super::tests::{file_input, url_input};
use super::{ReportInput, render};

fn bytes(download_type: &str, input: &ReportInput) -> Vec<u8> {
    render(download_type, input)
        .expect("renders")
        .payload
        .into_bytes()
        .expect("bytes")
        .to_vec()
}

fn json_of(download_type: &str, input: &ReportInput) -> Value {
    serde_json::from_slice(&bytes(download_type, input)).expect("valid JSON")
}

fn xml_of(download_type: &str, input: &ReportInput) -> String {
    String::from_utf8(bytes(download_type, input)).expect("utf-8")
}

fn empiric(doc: &Value) -> &Value {
    doc["analysis"]["signaturedetections"]["strategy"]
        .as_array()
        .expect("strategy list")
        .iter()
        .find(|s| s["@name"] == "empiric")
        .expect("empiric strategy")
}

/// Text of every node an XPath selects in `xml`.
fn xpath(xml: &str, expr: &str) -> Vec<String> {
    let package = sxd_document::parser::parse(xml).expect("well-formed XML");
    let document = package.as_document();
    let xpath = Factory::new()
        .build(expr)
        .expect("valid expression")
        .expect("non-empty");
    match xpath
        .evaluate(&Context::new(), document.root())
        .expect("evaluates")
    {
        XValue::Nodeset(nodes) => nodes
            .document_order()
            .iter()
            .map(|n| n.string_value())
            .collect(),
        other => vec![other.string()],
    }
}

fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

struct Samples {
    _dir: tempfile::TempDir,
    malicious: ReportInput,
    suspicious: ReportInput,
    clean: ReportInput,
}

fn samples() -> Samples {
    let dir = tempfile::tempdir().expect("tempdir");
    Samples {
        malicious: file_input(dir.path(), "invoice.exe", b"MZ JBXD-MALICIOUS"),
        suspicious: file_input(dir.path(), "tool.exe", b"MZ JBXD-SUSPICIOUS"),
        clean: file_input(dir.path(), "notes.txt", b"hello"),
        _dir: dir,
    }
}

#[test]
fn the_empiric_strategy_carries_the_analysis_verdict_beside_atleastonemalicioussig() {
    let s = samples();
    let doc = json_of("jsonfixed", &s.malicious);
    let strategies = doc["analysis"]["signaturedetections"]["strategy"]
        .as_array()
        .expect("list");
    assert_eq!(strategies[0]["@name"], "atleastonemalicioussig");
    assert_eq!(strategies[0]["$"], "true");
    assert!(strategies[0]["@count"].as_str().is_some_and(|c| c != "0"));
    let e = empiric(&doc);
    assert_eq!(e["detection"], "MAL");
    assert_eq!(e["score"], json!(s.malicious.verdict.score));
    assert_eq!(e["threatname"], json!(s.malicious.verdict.threatname));
    assert_eq!((&e["minScore"], &e["maxScore"]), (&json!(0), &json!(100)));
    assert_eq!(
        [
            &e["malicious"],
            &e["suspicious"],
            &e["clean"],
            &e["unknown"]
        ],
        [&json!(true), &json!(false), &json!(false), &json!(false)]
    );
    assert_eq!(
        empiric(&json_of("jsonfixed", &s.suspicious))["detection"],
        "SUS"
    );
    let clean = json_of("jsonfixed", &s.clean);
    assert_eq!(empiric(&clean)["detection"], "CLEAN");
    assert_eq!(empiric(&clean)["threatname"], "Unknown");
    assert_eq!(
        clean["analysis"]["signaturedetections"]["strategy"][0]["$"],
        "false"
    );
}

#[test]
fn attributes_are_strings_text_beside_them_is_dollar_and_leaves_are_typed() {
    let s = samples();
    let doc = json_of("jsonfixed", &s.malicious);
    let a = &doc["analysis"];
    assert_eq!(a["generalinfo"]["id"], json!(1000));
    assert_eq!(a["generalinfo"]["version"], "44.0.0 Smoke Quartz");
    assert!(a["fileinfo"]["filesize"].is_u64());
    assert!(a["fileinfo"]["entropy"].is_f64());
    assert_eq!(a["fileinfo"]["sha256"], json!(s.malicious.sha256()));
    let domain = &a["domaininfo"]["domain"][0];
    for key in ["@malicious", "@active", "@targetid", "@ip", "@name"] {
        assert!(domain[key].is_string(), "{key}: {domain}");
    }
    let ip = &a["ipinfo"]["ip"][0];
    assert!(
        ip["@private"].is_string() && ip["@asnnbr"].is_string(),
        "{ip}"
    );
    let value = &a["droppedinfo"]["hash"][0]["value"];
    let algos: Vec<&str> = value
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v["@algo"].as_str().expect("algo"))
        .collect();
    assert_eq!(algos, ["MD5", "SHA", "SHA-256", "SHA-512"]);
    let md5 = value[0]["$"].as_str().expect("text");
    assert_eq!(md5, md5.to_ascii_uppercase());
    assert_eq!(md5.len(), 32);
    assert!(a["behavior"]["system"]["processes"]["process"][0]["general"]["pid"].is_u64());
    assert!(a["signatureinfo"]["sig"][0]["@impact"].is_string());
    let technique = &a["mitreattack"]["tactic"][0]["technique"][0];
    assert!(
        technique["id"]
            .as_str()
            .is_some_and(|id| id.starts_with('T'))
    );
    assert_eq!(
        a["malware_configs"]["config"][0]["@threatname"],
        json!(s.malicious.verdict.threatname)
    );
}

#[test]
fn fixed_reports_always_list_flagged_sections_and_plain_ones_collapse_a_single_item() {
    let s = samples();
    // A suspicious sample fired one signature, mapped one technique and dropped one file.
    let fixed = json_of("jsonfixed", &s.suspicious);
    let plain = json_of("json", &s.suspicious);
    for (section, item) in [
        ("signatureinfo", "sig"),
        ("mitreattack", "tactic"),
        ("droppedinfo", "hash"),
    ] {
        let f = &fixed["analysis"][section];
        let p = &plain["analysis"][section];
        assert!(
            f[item].as_array().is_some_and(|l| l.len() == 1),
            "{section}: {f}"
        );
        assert!(f.get("@isArray").is_none(), "{section}");
        assert_eq!(p["@isArray"], "true", "{section}");
        assert!(p[item].is_object(), "{section}: {p}");
    }
    assert_eq!(
        plain["analysis"]["signatureinfo"]["sig"]["@desc"],
        fixed["analysis"]["signatureinfo"]["sig"][0]["@desc"]
    );
    // Two strategies are a list in both.
    assert!(plain["analysis"]["signaturedetections"]["strategy"].is_array());
    // The light variants follow the same rules.
    let light = json_of("lightjson", &s.suspicious);
    assert!(light["analysis"]["signatureinfo"]["sig"].is_object());
    assert!(
        json_of("lightjsonfixed", &s.suspicious)["analysis"]["signatureinfo"]["sig"].is_array()
    );
}

#[test]
fn a_clean_sample_has_every_section_present_and_null() {
    let s = samples();
    for t in ["jsonfixed", "json", "lightjsonfixed"] {
        let doc = json_of(t, &s.clean);
        let a = doc["analysis"].as_object().expect("object");
        for section in [
            "signatureinfo",
            "domaininfo",
            "ipinfo",
            "urlinfo",
            "droppedinfo",
            "mitreattack",
            "yara",
            "malware_configs",
            "errorinfo",
        ] {
            assert_eq!(a.get(section), Some(&Value::Null), "{t} {section}");
        }
        assert!(a["behavior"]["network"].is_object(), "{t}");
    }
    let ir = json_of("irjsonfixed", &s.clean);
    let a = &ir["analysis"];
    assert_eq!(a["dropped"], Value::Null);
    assert_eq!(a["contacted"], json!({"ips": null, "domains": null}));
    assert_eq!(a["signatures"], Value::Null);
    assert_eq!(a["errors"], Value::Null);
    let xml = xml_of("xml", &s.clean);
    assert!(xml.contains("<domaininfo isArray=\"true\"/>"), "{xml}");
    assert!(xml.contains("<errorinfo/>"), "{xml}");
}

#[test]
fn a_single_signature_in_an_ir_report_is_a_bare_string() {
    let s = samples();
    let one = json_of("irjsonfixed", &s.suspicious);
    assert_eq!(
        one["analysis"]["signatures"]["signare"],
        "Sample contains suspicious strings"
    );
    let many = json_of("irjsonfixed", &s.malicious);
    assert!(
        many["analysis"]["signatures"]["signare"]
            .as_array()
            .is_some_and(|l| l.len() > 1)
    );
}

#[test]
fn the_ir_report_is_flat_with_its_own_spellings() {
    let s = samples();
    let doc = json_of("irjsonfixed", &s.malicious);
    let a = &doc["analysis"];
    assert_eq!(a["reporttype"], "IR");
    assert_eq!(a["id"], json!(1000));
    assert_eq!(a["hashes"]["md5"], json!(s.malicious.md5()));
    assert_eq!(
        a["detection"],
        json!({"malicious": true, "suspicious": false, "clean": false, "unknown": false,
               "score": s.malicious.verdict.score, "minscore": 0, "maxscore": 100})
    );
    assert_eq!(a["confidence"]["maxscore"], 5);
    let file = &a["dropped"]["file"][0];
    let md5 = file["md5"].as_str().expect("md5");
    assert_eq!(md5, md5.to_ascii_uppercase());
    assert!(file["malicious"].is_boolean());
    let ips = a["contacted"]["ips"]["ip"].as_array().expect("list");
    assert!(
        ips.iter()
            .all(|ip| ip["@malicious"].is_string() && ip["$"].is_string())
    );
    assert!(
        ips.iter()
            .any(|ip| ip["$"].as_str().is_some_and(|t| t.starts_with("192.168.")))
    );
    let domains = a["contacted"]["domains"]["domain"]
        .as_array()
        .expect("list");
    assert!(domains.iter().all(|d| d["malicious"].is_boolean()));
    assert!(domains.iter().any(|d| d["ip"] == "unknown"));
    assert!(a.get("generalinfo").is_none(), "the IR report is flat");
    // Plain irjson collapses nothing here (several items) but keeps the flags.
    assert_eq!(
        json_of("irjson", &s.malicious)["analysis"]["dropped"]["@isArray"],
        "true"
    );
}

fn full_indicators(doc: &Value) -> [BTreeSet<String>; 4] {
    let a = &doc["analysis"];
    let strings = |v: &Value, key: &str| -> BTreeSet<String> {
        list(v)
            .iter()
            .map(|i| i[key].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    [
        strings(&a["domaininfo"]["domain"], "@name"),
        strings(&a["ipinfo"]["ip"], "@ip"),
        list(&a["droppedinfo"]["hash"])
            .iter()
            .map(|h| h["value"][2]["$"].as_str().unwrap_or_default().to_owned())
            .collect(),
        strings(&a["signatureinfo"]["sig"], "@desc"),
    ]
}

fn ir_indicators(doc: &Value) -> [BTreeSet<String>; 4] {
    let a = &doc["analysis"];
    let strings = |v: &Value, key: &str| -> BTreeSet<String> {
        list(v)
            .iter()
            .map(|i| i[key].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    [
        strings(&a["contacted"]["domains"]["domain"], "name"),
        strings(&a["contacted"]["ips"]["ip"], "$"),
        strings(&a["dropped"]["file"], "sha256"),
        list(&a["signatures"]["signare"])
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_owned())
            .collect(),
    ]
}

#[test]
fn full_and_ir_reports_of_a_run_name_the_same_indicators() {
    let s = samples();
    for input in [&s.malicious, &s.suspicious, &s.clean] {
        let full = full_indicators(&json_of("jsonfixed", input));
        let ir = ir_indicators(&json_of("irjsonfixed", input));
        assert_eq!(full, ir, "{}", input.filename);
    }
    let full = full_indicators(&json_of("jsonfixed", &s.malicious));
    assert!(full.iter().all(|set| !set.is_empty()));
}

#[test]
fn xml_and_json_renderings_of_a_report_agree() {
    let s = samples();
    let xml = xml_of("xml", &s.malicious);
    let doc = json_of("jsonfixed", &s.malicious);
    let [domains, ips, dropped, sigs] = full_indicators(&doc);
    let set = |expr: &str| xpath(&xml, expr).into_iter().collect::<BTreeSet<_>>();
    assert_eq!(set("/analysis/domaininfo/domain/@name"), domains);
    assert_eq!(set("/analysis/ipinfo/ip/@ip"), ips);
    assert_eq!(
        set("/analysis/droppedinfo/hash/value[@algo='SHA-256']"),
        dropped
    );
    assert_eq!(set("/analysis/signatureinfo/sig/@desc"), sigs);
    assert_eq!(
        xpath(&xml, "/analysis/generalinfo/systemdescription"),
        [doc["analysis"]["generalinfo"]["systemdescription"]
            .as_str()
            .expect("text")]
    );
    let irxml = xml_of("irxml", &s.malicious);
    let ir = ir_indicators(&json_of("irjsonfixed", &s.malicious));
    let ir_set = |expr: &str| xpath(&irxml, expr).into_iter().collect::<BTreeSet<_>>();
    assert_eq!(ir_set("/analysis/contacted/domains/domain/name"), ir[0]);
    assert_eq!(ir_set("/analysis/contacted/ips/ip"), ir[1]);
    assert_eq!(ir_set("/analysis/signatures/signare"), ir[3]);
    assert_eq!(
        xpath(&irxml, "/analysis/contacted/ips/ip[1]/@malicious").len(),
        1
    );
}

#[test]
fn the_readme_xpaths_select_the_simulated_xml_report() {
    let s = samples();
    let mal = xml_of("xml", &s.malicious);
    let verdict = "/analysis/signaturedetections/strategy[@name='empiric']/detection[text()='MAL']";
    assert_eq!(xpath(&mal, verdict), ["MAL"]);
    let by_hash = format!("/analysis/fileinfo[sha256='{}']", s.malicious.sha256());
    assert_eq!(xpath(&mal, &by_hash).len(), 1);
    assert!(!xpath(&mal, "/analysis/domaininfo/domain[@malicious='true']").is_empty());
    let clean = xml_of("xml", &s.clean);
    assert!(xpath(&clean, verdict).is_empty());
    assert!(xpath(&clean, &by_hash).is_empty());
    assert!(xpath(&clean, "/analysis/domaininfo/domain[@malicious='true']").is_empty());
    assert!(
        !xpath(
            &clean,
            "/analysis/signaturedetections/strategy[@name='empiric']/detection[text()='CLEAN']"
        )
        .is_empty()
    );
}

#[test]
fn runs_differ_in_system_and_by_one_url_and_the_first_run_is_the_most_relevant() {
    let s = samples();
    let first = s.malicious.clone();
    let second = ReportInput {
        run: 1,
        system: "lnxubuntu22".into(),
        arch: "LINUX",
        ..s.malicious.clone()
    };
    let (a, b) = (json_of("jsonfixed", &first), json_of("jsonfixed", &second));
    let general = |d: &Value, k: &str| d["analysis"]["generalinfo"][k].clone();
    assert_ne!(
        general(&a, "systemdescription"),
        general(&b, "systemdescription")
    );
    assert_eq!(general(&b, "arch"), "LINUX");
    let urls = |d: &Value| list(&d["analysis"]["urlinfo"]["url"]).len();
    assert_eq!(urls(&a), urls(&b) + 1);
    let (ia, ib) = (full_indicators(&a), full_indicators(&b));
    assert_eq!(
        ia[..2],
        ib[..2],
        "runs share the domains and IPs they contacted"
    );
    assert_eq!(empiric(&a), empiric(&b), "runs share the verdict");
    assert_ne!(bytes("irjsonfixed", &first), bytes("irjsonfixed", &second));
}

#[test]
fn the_same_run_renders_the_same_bytes_and_another_sample_other_indicators() {
    let s = samples();
    for t in [
        "xml",
        "jsonfixed",
        "irjsonfixed",
        "irxml",
        "lightjson",
        "iocjson",
    ] {
        assert_eq!(bytes(t, &s.malicious), bytes(t, &s.malicious), "{t}");
    }
    let other = ReportInput {
        webid: 1234,
        ..s.malicious.clone()
    };
    assert_ne!(
        iocs(&s.malicious).domains[1].name,
        iocs(&other).domains[1].name
    );
}

#[test]
fn hostile_sample_names_are_escaped_in_xml_and_kept_in_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "a\"><b>&'x\u{1}.exe";
    let input = file_input(dir.path(), "placeholder.exe", b"MZ JBXD-MALICIOUS");
    let input = ReportInput {
        filename: name.into(),
        ..input
    };
    for (t, path) in [
        ("xml", "/analysis/fileinfo/filename"),
        ("lightxml", "/analysis/generalinfo/target/sample"),
        ("irxml", "/analysis/sample"),
        ("iocxml", "/analysis/generalinfo/target/sample"),
    ] {
        let xml = xml_of(t, &input);
        assert!(!xml.contains("<b>&"), "{t}");
        // The name survives, minus the control character XML cannot carry.
        assert_eq!(xpath(&xml, path), ["a\"><b>&'x.exe"], "{t}");
    }
    let doc = json_of("jsonfixed", &input);
    assert_eq!(doc["analysis"]["fileinfo"]["filename"], name);
    assert_eq!(json_of("irjsonfixed", &input)["analysis"]["sample"], name);
}

#[test]
fn light_reports_keep_the_processes_but_not_their_call_lists() {
    let s = samples();
    let full = json_of("jsonfixed", &s.malicious);
    let light = json_of("lightjsonfixed", &s.malicious);
    let process =
        |d: &Value| d["analysis"]["behavior"]["system"]["processes"]["process"][0].clone();
    assert!(process(&full).get("fileactivities").is_some());
    assert!(process(&light).get("fileactivities").is_none());
    assert_eq!(process(&full)["general"], process(&light)["general"]);
    assert_eq!(light["analysis"]["generalinfo"]["reporttype"], "light");
    assert_eq!(full_indicators(&full), full_indicators(&light));
}

#[test]
fn a_url_analysis_has_no_fileinfo_and_names_its_url_as_the_target() {
    let input = url_input("http://evil.example/landing?a=1&b=2");
    let doc = json_of("jsonfixed", &input);
    let a = &doc["analysis"];
    assert!(a.get("fileinfo").is_none());
    assert_eq!(
        a["generalinfo"]["target"]["url"],
        "http://evil.example/landing?a=1&b=2"
    );
    assert_eq!(a["generalinfo"]["target"]["sample"], "");
    assert_eq!(
        a["urlinfo"]["url"][0]["@name"],
        "http://evil.example/landing?a=1&b=2"
    );
    assert_eq!(a["domaininfo"]["domain"][0]["@name"], "evil.example");
    assert_eq!(a["droppedinfo"], Value::Null);
    let memory: Vec<Value> = list(&a["urlinfo"]["url"])
        .into_iter()
        .filter(|u| u["@targetid"] == "-1")
        .collect();
    assert_eq!(memory.len(), 1);
    assert_eq!(memory[0]["@currentpath"], "unknown");
    let ioc = json_of("iocjson", &input);
    assert_eq!(ioc["analysis"]["urlinfo"]["url"][0]["@malicious"], "true");
}

#[test]
fn the_generator_streams_a_parsable_report_of_about_the_requested_size() {
    let pad = 2u64 << 20;
    let mut out = Vec::new();
    let written = super::write_report_document("jsonfixed", pad, &mut out).expect("writes");
    assert_eq!(written, out.len() as u64);
    let mut base = Vec::new();
    let unpadded = super::write_report_document("jsonfixed", 0, &mut base).expect("writes");
    assert!(
        written >= unpadded + pad * 9 / 10 && written <= unpadded + pad * 11 / 10,
        "{written} for {pad} of padding over {unpadded}"
    );
    let doc: Value = serde_json::from_slice(&out).expect("valid JSON");
    assert_eq!(empiric(&doc)["detection"], "MAL");
    let processes = doc["analysis"]["behavior"]["system"]["processes"]["process"]
        .as_array()
        .expect("list");
    assert!(processes.len() > 10, "{}", processes.len());
    assert!(
        processes[5]["fileactivities"]["fileCreated"]["call"]
            .as_array()
            .is_some_and(|c| c.len() > 10)
    );
    let mut again = Vec::new();
    super::write_report_document("jsonfixed", pad, &mut again).expect("writes");
    assert!(again == out, "deterministic");

    let mut xml = Vec::new();
    super::write_report_document("xml", 1 << 20, &mut xml).expect("writes");
    let xml = String::from_utf8(xml).expect("utf-8");
    assert_eq!(
        xpath(
            &xml,
            "/analysis/signaturedetections/strategy[@name='empiric']/detection"
        ),
        ["MAL"]
    );
    let error = super::write_report_document("irjsonfixed", 10, &mut Vec::new())
        .expect_err("not generated");
    assert!(error.to_string().contains("irjsonfixed"), "{error}");
}
