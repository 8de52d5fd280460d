//! The simulator's real-shaped reports over HTTP: what `analysis/download` serves agrees with
//! `analysis/info`, with the other renderings, with each run's system and with the `bins`
//! archive.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

use jbxd::simulator::{SimConfig, Simulator};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sha2::{Digest, Sha256};

const KEY: &str = "sim-api-key";

struct Sim {
    sim: Simulator,
    client: reqwest::Client,
}

impl Sim {
    async fn start() -> Sim {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = Simulator::start(SimConfig::default())
            .await
            .expect("simulator starts");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Sim { sim, client }
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/v2/{endpoint}", self.sim.api_url())
    }

    async fn data(&self, endpoint: &str, fields: &[(&str, &str)]) -> Value {
        let mut form: Vec<(&str, &str)> = vec![("apikey", KEY)];
        form.extend_from_slice(fields);
        let response = self
            .client
            .post(self.url(endpoint))
            .form(&form)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{endpoint}");
        let body: Value = response.json().await.expect("JSON");
        body["data"].clone()
    }

    /// Submits `content` on `systems` and returns the analysis' `analysis/info`.
    async fn analysed(&self, name: &str, content: &[u8], systems: &[&str]) -> Value {
        let mut form = Form::new().text("apikey", KEY).text("accept-tac", "1");
        for system in systems {
            form = form.text("systems[]", (*system).to_owned());
        }
        form = form.part(
            "sample",
            Part::bytes(content.to_vec()).file_name(name.to_owned()),
        );
        let response = self
            .client
            .post(self.url("submission/new"))
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let body: Value = response.json().await.expect("JSON");
        let id = body["data"]["submission_id"]
            .as_str()
            .expect("id")
            .to_owned();
        let info = self
            .data("submission/info", &[("submission_id", &id)])
            .await;
        let webid = info["analyses"][0]["webid"]
            .as_str()
            .expect("webid")
            .to_owned();
        self.data("analysis/info", &[("webid", &webid)]).await
    }

    async fn download(&self, webid: &str, kind: &str, run: Option<&str>) -> Vec<u8> {
        let mut form: Vec<(&str, &str)> = vec![("apikey", KEY), ("webid", webid), ("type", kind)];
        if let Some(run) = run {
            form.push(("run", run));
        }
        let response = self
            .client
            .post(self.url("analysis/download"))
            .form(&form)
            .send()
            .await
            .expect("download");
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        response.bytes().await.expect("body").to_vec()
    }

    async fn json(&self, webid: &str, kind: &str, run: Option<&str>) -> Value {
        serde_json::from_slice(&self.download(webid, kind, run).await).expect("JSON report")
    }
}

fn empiric(doc: &Value) -> Value {
    doc["analysis"]["signaturedetections"]["strategy"]
        .as_array()
        .expect("strategies")
        .iter()
        .find(|s| s["@name"] == "empiric")
        .cloned()
        .expect("empiric")
}

fn items(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(list) => list.clone(),
        Value::Null => vec![],
        one => vec![one.clone()],
    }
}

#[tokio::test]
async fn downloaded_reports_agree_with_analysis_info_in_every_rendering() {
    let s = Sim::start().await;
    let info = s
        .analysed("evil.exe", b"MZ JBXD-MALICIOUS", &["w10x64", "w7x64"])
        .await;
    let webid = info["webid"].as_str().expect("webid");
    assert_eq!(info["detection"], "malicious");
    assert_eq!(info["has_malwareconfig"], true);
    for kind in ["jsonfixed", "json", "lightjsonfixed"] {
        let doc = s.json(webid, kind, None).await;
        let e = empiric(&doc);
        assert_eq!(e["detection"], "MAL", "{kind}");
        assert_eq!(e["score"], info["score"], "{kind}");
        assert_eq!(e["threatname"], info["threatname"], "{kind}");
        let configs = items(&doc["analysis"]["malware_configs"]["config"]);
        assert_eq!(configs[0]["@threatname"], info["threatname"], "{kind}");
        assert!(
            !doc["analysis"]["yara"].is_null(),
            "{kind}: runs[].yara is true"
        );
        assert_eq!(
            doc["analysis"]["generalinfo"]["id"].to_string(),
            webid,
            "{kind}"
        );
    }
    assert!(
        info["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .all(|r| r["yara"] == true)
    );
    let ir = s.json(webid, "irjsonfixed", None).await;
    assert_eq!(ir["analysis"]["detection"]["malicious"], true);
    assert_eq!(ir["analysis"]["detection"]["score"], info["score"]);
    assert_eq!(ir["analysis"]["hashes"]["sha256"], info["sha256"]);
    let xml = String::from_utf8(s.download(webid, "xml", None).await).expect("utf-8");
    assert!(
        xml.contains("<detection>MAL</detection>"),
        "the XML says what the JSON says"
    );
    assert!(xml.contains(&format!(
        "<sha256>{}</sha256>",
        info["sha256"].as_str().expect("hash")
    )));
}

#[tokio::test]
async fn each_run_has_its_own_report_and_the_default_download_is_the_most_relevant_run() {
    let s = Sim::start().await;
    let info = s
        .analysed("evil.exe", b"MZ JBXD-MALICIOUS", &["w10x64", "lnxubuntu22"])
        .await;
    let webid = info["webid"].as_str().expect("webid");
    let first = s.download(webid, "jsonfixed", Some("0")).await;
    assert_eq!(s.download(webid, "jsonfixed", None).await, first);
    let first: Value = serde_json::from_slice(&first).expect("JSON");
    let second = s.json(webid, "jsonfixed", Some("1")).await;
    let general = |d: &Value, k: &str| d["analysis"]["generalinfo"][k].clone();
    assert_eq!(general(&first, "arch"), "WINDOWS");
    assert_eq!(general(&second, "arch"), "LINUX");
    assert_ne!(
        general(&first, "systemdescription"),
        general(&second, "systemdescription")
    );
    let urls = |d: &Value| items(&d["analysis"]["urlinfo"]["url"]).len();
    assert_eq!(urls(&first), urls(&second) + 1, "run 0 saw the most");
    assert_eq!(empiric(&first), empiric(&second), "runs share the verdict");
}

#[tokio::test]
async fn the_dropped_files_in_bins_are_the_ones_the_reports_hash() {
    let s = Sim::start().await;
    let info = s.analysed("evil.exe", b"MZ JBXD-MALICIOUS", &[]).await;
    let webid = info["webid"].as_str().expect("webid");
    let bins = s.download(webid, "bins", None).await;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bins)).expect("zip");
    let mut in_bins = BTreeSet::new();
    for i in 0..archive.len() {
        let mut member = archive.by_index_decrypt(i, b"infected").expect("decrypt");
        let mut data = Vec::new();
        member.read_to_end(&mut data).expect("read");
        in_bins.insert(hex::encode(Sha256::digest(&data)));
    }
    let full = s.json(webid, "jsonfixed", None).await;
    let in_full: BTreeSet<String> = items(&full["analysis"]["droppedinfo"]["hash"])
        .iter()
        .flat_map(|h| items(&h["value"]))
        .filter(|v| v["@algo"] == "SHA-256")
        .map(|v| v["$"].as_str().expect("hex").to_ascii_lowercase())
        .collect();
    let ir = s.json(webid, "irjsonfixed", None).await;
    let in_ir: BTreeSet<String> = items(&ir["analysis"]["dropped"]["file"])
        .iter()
        .map(|f| f["sha256"].as_str().expect("hex").to_ascii_lowercase())
        .collect();
    assert_eq!(in_bins.len(), 2);
    assert_eq!(in_full, in_bins);
    assert_eq!(in_ir, in_bins);
}

#[tokio::test]
async fn a_clean_sample_downloads_reports_whose_indicator_sections_are_null() {
    let s = Sim::start().await;
    let info = s.analysed("notes.txt", b"hello there", &[]).await;
    let webid = info["webid"].as_str().expect("webid");
    assert_eq!(info["has_malwareconfig"], false);
    assert_eq!(info["runs"][0]["yara"], false);
    let doc = s.json(webid, "jsonfixed", None).await;
    let a = doc["analysis"].as_object().expect("object");
    for section in [
        "domaininfo",
        "ipinfo",
        "urlinfo",
        "droppedinfo",
        "yara",
        "malware_configs",
    ] {
        assert_eq!(a.get(section), Some(&Value::Null), "{section}");
    }
    assert_eq!(empiric(&doc)["detection"], "CLEAN");
    let ir = s.json(webid, "irjsonfixed", None).await;
    assert_eq!(ir["analysis"]["contacted"]["ips"], Value::Null);
    assert_eq!(ir["analysis"]["detection"]["clean"], true);
}
