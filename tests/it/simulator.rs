//! Black-box tests of the embedded Joe Sandbox simulator over real HTTP, as a client sees it.

use std::io::Read;
use std::time::Duration;

use jbxd::simulator::{Fault, FaultRule, SimConfig, SimMode, Simulator};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

const KEY: &str = "sim-api-key";
const MIB10: usize = 10 * 1024 * 1024;

struct Harness {
    sim: Simulator,
    client: reqwest::Client,
}

async fn start(config: SimConfig) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start(config).await.expect("simulator starts");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    Harness { sim, client }
}

async fn start_default() -> Harness {
    start(SimConfig::default()).await
}

impl Harness {
    fn url(&self, endpoint: &str) -> String {
        format!("{}/v2/{endpoint}", self.sim.api_url())
    }

    /// POST an urlencoded form (apikey added) and decode the JSON reply.
    async fn call(&self, endpoint: &str, fields: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut form: Vec<(&str, &str)> = vec![("apikey", KEY)];
        form.extend_from_slice(fields);
        let response = self
            .client
            .post(self.url(endpoint))
            .form(&form)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let body = response.json().await.expect("JSON body");
        (status, body)
    }

    async fn data(&self, endpoint: &str, fields: &[(&str, &str)]) -> Value {
        let (status, body) = self.call(endpoint, fields).await;
        assert_eq!(status, StatusCode::OK, "{endpoint}: {body}");
        body["data"].clone()
    }

    async fn submit_url(&self, url: &str, comments: &str) -> String {
        let data = self
            .data(
                "submission/new",
                &[("url", url), ("accept-tac", "1"), ("comments", comments)],
            )
            .await;
        data["submission_id"].as_str().expect("id").to_owned()
    }

    async fn submit_file(&self, name: &str, content: Vec<u8>, extra: &[(&str, &str)]) -> String {
        let mut form = Form::new().text("apikey", KEY).text("accept-tac", "1");
        for (key, value) in extra {
            form = form.text((*key).to_owned(), (*value).to_owned());
        }
        form = form.part("sample", Part::bytes(content).file_name(name.to_owned()));
        let response = self
            .client
            .post(self.url("submission/new"))
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]["submission_id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    async fn first_webid(&self, submission_id: &str) -> String {
        let info = self
            .data("submission/info", &[("submission_id", submission_id)])
            .await;
        info["analyses"][0]["webid"]
            .as_str()
            .expect("webid")
            .to_owned()
    }

    async fn download(&self, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = vec![("apikey", KEY)];
        form.extend_from_slice(fields);
        self.client
            .post(self.url("analysis/download"))
            .form(&form)
            .send()
            .await
            .expect("download request")
    }
}

fn error_code(body: &Value) -> i64 {
    body["errors"][0]["code"].as_i64().expect("error code")
}

fn chunk_form(id: &str, file_size: usize, count: usize, index: usize, chunk: Vec<u8>) -> Form {
    Form::new()
        .text("apikey", KEY)
        .text("submission_id", id.to_owned())
        .text("file-size", file_size.to_string())
        .text("chunk-size", MIB10.to_string())
        .text("chunk-count", count.to_string())
        .text("current-chunk-index", index.to_string())
        .text("current-chunk-size", chunk.len().to_string())
        .part("chunk", Part::bytes(chunk).file_name("chunk"))
}

#[tokio::test]
async fn server_online_answers_in_the_data_envelope() {
    let h = start_default().await;
    let (status, body) = h.call("server/online", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"data": {"online": true}}));
    // The on-premise base path serves the same API.
    let response = h
        .client
        .post(format!("{}/v2/server/online/", h.sim.onprem_api_url()))
        .form(&[("apikey", KEY)])
        .send()
        .await
        .expect("on-prem path");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_missing_key_is_code_2_and_a_wrong_key_is_code_4_with_403() {
    let h = start_default().await;
    let response = h
        .client
        .post(h.url("server/info"))
        .form(&[("x", "y")])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body,
        json!({"errors": [{"code": 2, "message": "Missing parameter apikey."}]})
    );
    let response = h
        .client
        .post(h.url("server/info"))
        .form(&[("apikey", "wrong")])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), 4);
}

#[tokio::test]
async fn unknown_endpoints_are_code_8_and_get_requests_are_refused() {
    let h = start_default().await;
    let (status, body) = h.call("server/nope", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), 8);
    let response = h
        .client
        .get(h.url("server/online"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), 8);
}

#[tokio::test]
async fn a_url_submission_finishes_with_a_consistent_verdict() {
    let h = start_default().await;
    let id = h.submit_url("http://evil.example/x", "jbxd:key-1").await;
    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    assert_eq!(info["status"], "finished");
    assert_eq!(info["name"], "http://evil.example/x");
    let analysis = &info["analyses"][0];
    assert_eq!(analysis["detection"], "malicious");
    assert_eq!(analysis["scriptname"], "browseurl.jbs");
    assert_eq!(analysis["md5"], "");
    assert_eq!(analysis["webid"], analysis["analysisid"]);
    assert_eq!(analysis["runs"][0]["system"], "w10x64_office");
    assert!(analysis["runs"][0]["error"].is_null());
    assert_eq!(
        info["most_relevant_analysis"],
        json!({"webid": analysis["webid"], "detection": "malicious", "score": 100})
    );
    let same = h
        .data(
            "analysis/info",
            &[("webid", analysis["webid"].as_str().expect("webid"))],
        )
        .await;
    assert_eq!(&same, analysis);
}

#[tokio::test]
async fn an_uploaded_file_keeps_its_hashes_and_downloads_back_byte_for_byte() {
    let h = start_default().await;
    let content = b"hello JBXD-SUSPICIOUS world".to_vec();
    let id = h
        .submit_file(
            "t\u{e4}st.exe",
            content.clone(),
            &[("systems[]", "w7x64"), ("systems[]", "w10x64")],
        )
        .await;
    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    let analysis = &info["analyses"][0];
    assert_eq!(analysis["filename"], "t\u{e4}st.exe");
    assert_eq!(analysis["detection"], "suspicious");
    assert_eq!(analysis["score"], 50);
    assert_eq!(analysis["runs"].as_array().map(Vec::len), Some(2));
    use sha2::Digest;
    assert_eq!(
        analysis["sha256"],
        hex::encode(sha2::Sha256::digest(&content))
    );
    assert_eq!(analysis["md5"], hex::encode(md5::Md5::digest(&content)));
    let webid = analysis["webid"].as_str().expect("webid").to_owned();
    let response = h.download(&[("webid", &webid), ("type", "sample")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let disposition = response
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .expect("disposition")
        .to_owned();
    assert_eq!(
        disposition,
        format!("attachment; filename=\"{webid}.dontrun\";")
    );
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        content.as_slice()
    );
}

#[tokio::test]
async fn report_downloads_are_named_with_a_trailing_quote_semicolon_and_reproducible() {
    let h = start_default().await;
    let id = h
        .submit_file("a.exe", b"MZ JBXD-MALICIOUS".to_vec(), &[])
        .await;
    let webid = h.first_webid(&id).await;
    for kind in [
        "html",
        "json",
        "irjsonfixed",
        "xml",
        "pdf",
        "pcap",
        "bins",
        "memdumps",
    ] {
        let first = h.download(&[("webid", &webid), ("type", kind)]).await;
        assert_eq!(first.status(), StatusCode::OK, "{kind}");
        let disposition = first.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            disposition.starts_with("attachment; filename=\""),
            "{disposition}"
        );
        assert!(disposition.ends_with("\";"), "{disposition}");
        let first = first.bytes().await.expect("body");
        let second = h
            .download(&[("webid", &webid), ("type", kind)])
            .await
            .bytes()
            .await
            .expect("body");
        assert_eq!(first, second, "{kind} must be reproducible");
    }
    let json_report: Value = h
        .download(&[("webid", &webid), ("type", "irjsonfixed"), ("run", "0")])
        .await
        .json()
        .await
        .expect("json report");
    assert_eq!(json_report["analysis"]["detection"]["malicious"], true);
    assert_eq!(
        json_report["analysis"]["id"],
        json!(webid.parse::<u64>().expect("numeric"))
    );

    let bins = h
        .download(&[("webid", &webid), ("type", "bins")])
        .await
        .bytes()
        .await
        .expect("bins");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bins)).expect("zip");
    let mut member = archive
        .by_index_decrypt(0, b"infected")
        .expect("password infected");
    let mut data = Vec::new();
    member.read_to_end(&mut data).expect("member");
    assert!(data.starts_with(b"MZ"));
}

#[tokio::test]
async fn download_errors_are_code_3() {
    let h = start(SimConfig {
        analysis_seconds: 600,
        ..SimConfig::default()
    })
    .await;
    let id = h.submit_url("http://example.org", "").await;
    h.sim.advance_clock(Duration::from_secs(300));
    let webid = h.first_webid(&id).await;
    let (status, body) = h
        .call("analysis/download", &[("webid", &webid), ("type", "html")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"][0]["message"],
        "Analysis is not finished yet."
    );
    h.sim.advance_clock(Duration::from_secs(300));
    let (_, body) = h
        .call("analysis/download", &[("webid", &webid), ("type", "nope")])
        .await;
    assert_eq!(error_code(&body), 3);
    let (_, body) = h
        .call(
            "analysis/download",
            &[("webid", &webid), ("type", "html"), ("run", "1")],
        )
        .await;
    assert_eq!(error_code(&body), 3);
    let (_, body) = h
        .call("analysis/download", &[("webid", &webid), ("type", "bins")])
        .await;
    assert_eq!(error_code(&body), 3, "a URL analysis drops nothing");
    let (_, body) = h.call("analysis/download", &[("webid", &webid)]).await;
    assert_eq!(error_code(&body), 2);
}

#[tokio::test]
async fn a_chunked_upload_is_analysed_after_its_last_chunk() {
    let h = start_default().await;
    let size: usize = 25 * 1024 * 1024 + 5;
    let mut content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    content[MIB10 + 10..MIB10 + 24].copy_from_slice(b"JBXD-MALICIOUS");
    let data = h
        .data(
            "submission/new",
            &[("chunked-sample", "big.bin"), ("accept-tac", "1")],
        )
        .await;
    let id = data["submission_id"].as_str().expect("id").to_owned();
    let count = size.div_ceil(MIB10);
    assert_eq!(count, 3);

    // Out of order: chunk 2 first.
    let response = h
        .client
        .post(h.url("submission/chunked-sample"))
        .multipart(chunk_form(
            &id,
            size,
            count,
            2,
            content[MIB10..2 * MIB10].to_vec(),
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    for index in 1..=count {
        let start = (index - 1) * MIB10;
        let end = (start + MIB10).min(size);
        let response = h
            .client
            .post(h.url("submission/chunked-sample"))
            .multipart(chunk_form(
                &id,
                size,
                count,
                index,
                content[start..end].to_vec(),
            ))
            .send()
            .await
            .expect("chunk sent");
        assert_eq!(response.status(), StatusCode::OK, "chunk {index}");
        if index == 1 {
            let info = h.data("submission/info", &[("submission_id", &id)]).await;
            assert_eq!(info["status"], "accepted");
            assert!(info.get("analyses").is_none());
        }
    }
    // A duplicate of the last chunk after completion is refused.
    let response = h
        .client
        .post(h.url("submission/chunked-sample"))
        .multipart(chunk_form(
            &id,
            size,
            count,
            3,
            content[2 * MIB10..].to_vec(),
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    assert_eq!(info["status"], "finished");
    let analysis = &info["analyses"][0];
    assert_eq!(analysis["filename"], "big.bin");
    assert_eq!(analysis["detection"], "malicious");
    use sha2::Digest;
    let expected = hex::encode(sha2::Sha256::digest(&content));
    assert_eq!(analysis["sha256"], expected);
}

#[tokio::test]
async fn a_zero_byte_chunked_submission_finishes_without_analyses() {
    let h = start_default().await;
    let data = h
        .data(
            "submission/new",
            &[("chunked-sample", "empty.bin"), ("accept-tac", "1")],
        )
        .await;
    let id = data["submission_id"].as_str().expect("id");
    let info = h.data("submission/info", &[("submission_id", id)]).await;
    assert_eq!(info["status"], "finished");
    assert_eq!(info["most_relevant_analysis"], Value::Null);
    assert_eq!(info["analyses"], json!([]));
}

#[tokio::test]
async fn chunked_sample_is_an_unknown_parameter_when_disabled() {
    let h = start(SimConfig {
        chunked_upload: false,
        mode: SimMode::OnPrem,
        ..SimConfig::default()
    })
    .await;
    let (status, body) = h
        .call(
            "submission/new",
            &[("chunked-sample", "x.bin"), ("accept-tac", "0")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"errors": [{"code": 3, "message": "Unknown parameter chunked-sample."}]})
    );
}

#[tokio::test]
async fn cloud_and_on_prem_modes_refuse_each_others_parameters() {
    let cloud = start_default().await;
    let (status, body) = cloud
        .call("submission/new", &[("url", "http://a.example")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["code"], 1);
    assert_eq!(
        body["errors"][0]["message"],
        "You have to agree to the Terms and Conditions!"
    );
    let (_, body) = cloud
        .call(
            "submission/new",
            &[
                ("url", "http://a.example"),
                ("accept-tac", "1"),
                ("priority", "5"),
            ],
        )
        .await;
    assert_eq!(body["errors"][0]["message"], "Unknown parameter priority.");
    let (_, body) = cloud
        .call(
            "submission/new",
            &[
                ("url", "http://a"),
                ("accept-tac", "1"),
                ("internet-access", "yes"),
            ],
        )
        .await;
    assert_eq!(error_code(&body), 3);
    let (_, body) = cloud.call("submission/new", &[("accept-tac", "1")]).await;
    assert_eq!(error_code(&body), 2);
    let (_, body) = cloud
        .call(
            "submission/new",
            &[
                ("accept-tac", "1"),
                ("url", "http://a"),
                ("command-line", "x"),
            ],
        )
        .await;
    assert_eq!(error_code(&body), 2);

    let onprem = start(SimConfig {
        mode: SimMode::OnPrem,
        ..SimConfig::default()
    })
    .await;
    let (_, body) = onprem
        .call(
            "submission/new",
            &[("url", "http://a.example"), ("delete-after-days", "3")],
        )
        .await;
    assert_eq!(
        body,
        json!({"errors": [{"code": 3, "message": "Unknown parameter delete-after-days."}]})
    );
    let data = onprem
        .data(
            "submission/new",
            &[
                ("url", "http://a.example"),
                ("accept-tac", "0"),
                ("priority", "3"),
            ],
        )
        .await;
    assert!(data["submission_id"].is_string());
    let (status, body) = onprem.call("account/info", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), 8);
}

#[tokio::test]
async fn lists_paginate_and_omit_the_key_on_the_last_page() {
    let h = start(SimConfig {
        page_size: 2,
        ..SimConfig::default()
    })
    .await;
    for i in 0..3 {
        h.submit_url(&format!("http://site{i}.example"), "").await;
    }
    let (_, first) = h.call("submission/list", &[]).await;
    assert_eq!(first["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["data"][0]["submission_id"], "102");
    let next = first["pagination"]["next"]
        .as_str()
        .expect("token")
        .to_owned();
    let (_, last) = h
        .call("submission/list", &[("pagination_next", &next)])
        .await;
    assert_eq!(last["data"].as_array().map(Vec::len), Some(1));
    assert!(last.get("pagination").is_none(), "{last}");

    let (_, all) = h.call("analysis/list", &[]).await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(3));
    assert!(all.get("pagination").is_none());
    let (_, paged) = h.call("analysis/list", &[("pagination", "1")]).await;
    assert_eq!(paged["data"].as_array().map(Vec::len), Some(2));
    assert!(
        paged["data"][0]
            .as_object()
            .is_some_and(|o| o.len() == 1 && o.contains_key("webid"))
    );
    assert!(paged["pagination"]["next"].is_string());
}

#[tokio::test]
async fn states_progress_with_the_virtual_clock() {
    let h = start(SimConfig {
        analysis_seconds: 100,
        ..SimConfig::default()
    })
    .await;
    let id = h.submit_url("http://example.org", "").await;
    let status = |info: &Value| info["status"].as_str().map(str::to_owned);
    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    assert_eq!(status(&info).as_deref(), Some("accepted"));
    assert!(info.get("most_relevant_analysis").is_none());
    h.sim.advance_clock(Duration::from_secs(15));
    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    assert_eq!(status(&info).as_deref(), Some("submitted"));
    assert_eq!(info["analyses"][0]["status"], "submitted");
    assert_eq!(info["analyses"][0]["detection"], "unknown");
    let queue = h.data("server/info", &[]).await;
    assert_eq!(queue["queuesize"], 1);
    let submitted_at = chrono::DateTime::parse_from_rfc3339(info["time"].as_str().expect("time"))
        .expect("ISO 8601 time");
    let analysed_at =
        chrono::DateTime::parse_from_rfc3339(info["analyses"][0]["time"].as_str().expect("time"))
            .expect("ISO 8601 time");
    let gap = (analysed_at - submitted_at).num_seconds();
    assert!(
        (4..=6).contains(&gap),
        "analysis starts a few seconds later: {gap}"
    );
    h.sim.advance_clock(Duration::from_secs(50));
    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    assert_eq!(status(&info).as_deref(), Some("running"));
    h.sim.advance_clock(Duration::from_secs(40));
    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    assert_eq!(status(&info).as_deref(), Some("finished"));
    assert_eq!(info["analyses"][0]["duration"], 100);
    assert_eq!(h.data("server/info", &[]).await["queuesize"], 0);
}

#[tokio::test]
async fn search_matches_comments_and_honours_the_lag() {
    let h = start(SimConfig {
        search_lag: Duration::from_secs(120),
        ..SimConfig::default()
    })
    .await;
    h.submit_url("http://a.example", "jbxd:item-7-1").await;
    let hits = h.data("analysis/search", &[("q", "ITEM-7")]).await;
    assert_eq!(hits, json!([]));
    h.sim.advance_clock(Duration::from_secs(121));
    let hits = h.data("analysis/search", &[("q", "ITEM-7")]).await;
    assert_eq!(hits.as_array().map(Vec::len), Some(1));
    assert_eq!(hits[0]["comments"], "jbxd:item-7-1");
    let hits = h
        .data(
            "analysis/search",
            &[("comments", "item-7"), ("detection", "malicious")],
        )
        .await;
    assert_eq!(hits, json!([]));
    let (_, body) = h.call("analysis/search", &[]).await;
    assert_eq!(error_code(&body), 2);
}

#[tokio::test]
async fn case_115_the_submission_list_and_info_show_a_new_submission_at_once_while_search_lags() {
    let h = start(SimConfig {
        search_lag: Duration::from_secs(600),
        page_size: 1,
        ..SimConfig::default()
    })
    .await;
    let older = h.submit_url("http://older.example", "jbxd:other-1").await;
    let id = h.submit_url("http://lag.example", "jbxd:item-9-1").await;
    assert_eq!(
        h.data("analysis/search", &[("q", "item-9")]).await,
        json!([])
    );
    // The list is not searched: both are there at once, newest first, one per page.
    let (_, first) = h.call("submission/list", &[]).await;
    assert_eq!(first["data"][0]["submission_id"], id.as_str());
    assert_eq!(first["data"][0]["name"], "http://lag.example");
    assert!(first["data"][0]["time"].is_string());
    assert!(
        first["data"][0].get("comments").is_none(),
        "entries carry no comments"
    );
    let next = first["pagination"]["next"]
        .as_str()
        .expect("token")
        .to_owned();
    let (_, second) = h
        .call("submission/list", &[("pagination_next", &next)])
        .await;
    assert_eq!(second["data"][0]["submission_id"], older.as_str());
    // The info's analyses carry the comments.
    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    assert_eq!(info["analyses"][0]["comments"], "jbxd:item-9-1");
    // Deleting removes it from the list, the info and (after the lag) the search.
    assert_eq!(
        h.data("submission/delete", &[("submission_id", &id)]).await,
        json!({})
    );
    let (_, after) = h.call("submission/list", &[]).await;
    assert_eq!(after["data"][0]["submission_id"], older.as_str());
    let (status, body) = h.call("submission/info", &[("submission_id", &id)]).await;
    assert_eq!((status.as_u16(), error_code(&body)), (404, 3));
    h.sim.advance_clock(Duration::from_secs(601));
    assert_eq!(
        h.data("analysis/search", &[("q", "item-9")]).await,
        json!([])
    );
    assert_eq!(h.sim.live_submissions().len(), 1);
    assert_eq!(h.sim.accepted_submissions().len(), 2);
}

#[tokio::test]
async fn archives_yield_one_analysis_per_member() {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .with_aes_encryption(zip::AesMode::Aes256, "infected");
    writer.start_file("a.txt", options).expect("a");
    writer.write_all(b"plain").expect("a");
    writer.start_file("dir/b.exe", options).expect("b");
    writer
        .write_all(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD")
        .expect("b");
    let archive = writer.finish().expect("zip").into_inner();

    let h = start_default().await;
    let id = h
        .submit_file("bundle.zip", archive, &[("comments", "jbxd:k")])
        .await;
    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    let analyses = info["analyses"].as_array().expect("analyses");
    assert_eq!(analyses.len(), 2);
    assert_eq!(analyses[1]["filename"], "b.exe");
    assert_eq!(analyses[1]["threatname"], "EICAR-Test-File");
    assert!(
        analyses[0]["comments"]
            .as_str()
            .is_some_and(|c| c.starts_with("jbxd:k") && c.contains("bundle.zip"))
    );
    assert_eq!(
        info["most_relevant_analysis"]["webid"],
        analyses[1]["webid"]
    );
}

#[tokio::test]
async fn encrypted_analyses_download_as_single_member_aes_zips() {
    let h = start_default().await;
    let id = h
        .submit_file(
            "a.txt",
            b"text".to_vec(),
            &[("encrypt-with-password", "s3cret")],
        )
        .await;
    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    assert_eq!(info["analyses"][0]["encrypted"], true);
    let webid = info["analyses"][0]["webid"]
        .as_str()
        .expect("webid")
        .to_owned();
    let bytes = h
        .download(&[("webid", &webid), ("type", "sample")])
        .await
        .bytes()
        .await
        .expect("body");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    assert_eq!(archive.len(), 1);
    let mut member = archive.by_index_decrypt(0, b"s3cret").expect("decrypt");
    let mut text = String::new();
    member.read_to_string(&mut text).expect("read");
    assert_eq!(text, "text");
}

#[tokio::test]
async fn deleting_a_submission_removes_its_analyses() {
    let h = start_default().await;
    let id = h.submit_url("http://a.example", "").await;
    let webid = h.first_webid(&id).await;
    h.data("submission/delete", &[("submission_id", &id)]).await;
    let (status, body) = h.call("analysis/info", &[("webid", &webid)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), 3);
    let (status, _) = h.call("submission/info", &[("submission_id", &id)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(h.sim.accepted_submissions(), vec![id]);
}

#[tokio::test]
async fn the_daily_quota_is_enforced_with_code_1_and_429() {
    let h = start(SimConfig {
        daily_quota: Some(2),
        ..SimConfig::default()
    })
    .await;
    h.submit_url("http://a.example", "").await;
    h.submit_url("http://b.example", "").await;
    let (status, body) = h
        .call(
            "submission/new",
            &[("url", "http://c.example"), ("accept-tac", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&body), 1);
    assert_eq!(
        body["errors"][0]["message"],
        "number of allowed submissions (2) per day have been reached"
    );
    let account = h.data("account/info", &[]).await;
    assert_eq!(
        account["quota"]["daily"],
        json!({"current": 2, "limit": 2, "remaining": 0})
    );
}

#[tokio::test]
async fn maintenance_takes_everything_but_online_offline() {
    let h = start_default().await;
    h.sim.set_maintenance(true);
    assert_eq!(h.data("server/online", &[]).await, json!({"online": false}));
    let (status, body) = h.call("server/info", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), 5);
    h.sim.set_maintenance(false);
    assert_eq!(h.data("server/online", &[]).await, json!({"online": true}));
}

#[tokio::test]
async fn a_reset_before_the_body_is_a_transport_error_and_creates_nothing() {
    let h = start_default().await;
    h.sim.faults().add(FaultRule::times(
        Some("submission/new"),
        Fault::ResetBeforeBody,
        1,
    ));
    let result = h
        .client
        .post(h.url("submission/new"))
        .form(&[
            ("apikey", KEY),
            ("url", "http://a.example"),
            ("accept-tac", "1"),
        ])
        .send()
        .await;
    assert!(
        result.is_err(),
        "expected a transport error, got {result:?}"
    );
    assert!(h.sim.accepted_submissions().is_empty());
    // The rule is used up; the retry goes through.
    h.submit_url("http://a.example", "").await;
    assert_eq!(h.sim.accepted_submissions().len(), 1);
    let log = h.sim.request_log();
    assert_eq!(log[0].fault.as_deref(), Some("reset_before_body"));
    assert_eq!(log[0].http_status, None);
    assert!(!log[0].body_complete);
}

#[tokio::test]
async fn a_reset_after_the_body_still_creates_the_submission() {
    let h = start_default().await;
    h.sim.faults().add(FaultRule::times(
        Some("submission/new"),
        Fault::ResetAfterBody,
        1,
    ));
    let result = h
        .client
        .post(h.url("submission/new"))
        .form(&[
            ("apikey", KEY),
            ("url", "http://a.example"),
            ("accept-tac", "1"),
            ("comments", "jbxd:k-1"),
        ])
        .send()
        .await;
    assert!(
        result.is_err(),
        "expected a transport error, got {result:?}"
    );
    assert_eq!(h.sim.accepted_submissions().len(), 1);
    let record = &h.sim.request_log()[0];
    assert_eq!(record.http_status, None);
    assert!(record.body_complete);
    assert_eq!(record.comments.as_deref(), Some("jbxd:k-1"));
    assert_eq!(record.submission_id.as_deref(), Some("100"));
}

#[tokio::test]
async fn a_truncated_download_fails_on_the_client() {
    let h = start(SimConfig {
        html_padding_bytes: 1 << 20,
        ..SimConfig::default()
    })
    .await;
    let id = h.submit_url("http://a.example", "").await;
    let webid = h.first_webid(&id).await;
    let full = h.download(&[("webid", &webid), ("type", "html")]).await;
    let length = full.content_length().expect("length");
    let body = full.bytes().await.expect("full body");
    assert_eq!(body.len() as u64, length);
    assert!(length > 1 << 20);

    h.sim.faults().add(FaultRule::times(
        None,
        Fault::TruncateDownload { bytes: 1000 },
        1,
    ));
    let response = h.download(&[("webid", &webid), ("type", "html")]).await;
    assert_eq!(response.content_length(), Some(length));
    assert!(
        response.bytes().await.is_err(),
        "a short body must be an error"
    );
}

#[tokio::test]
async fn injected_errors_rate_limits_and_html_pages_reach_the_client() {
    let h = start_default().await;
    let faults = h.sim.faults();
    faults.add(FaultRule::times(
        Some("server/info"),
        Fault::Error {
            http_status: 500,
            code: 6,
            message: "Internal error.".into(),
        },
        1,
    ));
    faults.add(FaultRule::times(
        Some("server/info"),
        Fault::RateLimit {
            retry_after: Some("30".into()),
        },
        1,
    ));
    faults.add(FaultRule::times(
        Some("server/info"),
        Fault::NonJson { http_status: 502 },
        1,
    ));
    let (status, body) = h.call("server/info", &[]).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::INTERNAL_SERVER_ERROR, 6)
    );
    let response = h
        .client
        .post(h.url("server/info"))
        .form(&[("apikey", KEY)])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "30");
    let response = h
        .client
        .post(h.url("server/info"))
        .form(&[("apikey", KEY)])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("502 Bad Gateway")
    );
    assert_eq!(h.data("server/info", &[]).await["queuesize"], 0);
}

#[tokio::test]
async fn a_slow_submit_that_times_out_on_the_client_still_creates_one_submission() {
    let h = start_default().await;
    h.sim.faults().add(FaultRule::times(
        Some("submission/new"),
        Fault::Latency { ms: 2000 },
        1,
    ));
    let result = h
        .client
        .post(h.url("submission/new"))
        .timeout(Duration::from_millis(300))
        .form(&[
            ("apikey", KEY),
            ("url", "http://a.example"),
            ("accept-tac", "1"),
        ])
        .send()
        .await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    assert_eq!(h.sim.accepted_submissions().len(), 1);
}

#[tokio::test]
async fn hostile_file_names_are_sent_verbatim() {
    let h = start_default().await;
    let id = h.submit_url("http://a.example", "").await;
    let webid = h.first_webid(&id).await;
    h.sim.faults().add(FaultRule::times(
        Some("analysis/download"),
        Fault::HostileFilename {
            filename: "../../../../etc/cron.d/x".into(),
        },
        1,
    ));
    let response = h.download(&[("webid", &webid), ("type", "json")]).await;
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"../../../../etc/cron.d/x\";"
    );
}

#[tokio::test]
async fn the_control_api_drives_faults_clock_and_maintenance() {
    let h = start(SimConfig {
        analysis_seconds: 1000,
        ..SimConfig::default()
    })
    .await;
    let base = format!("http://{}", h.sim.addr());
    let rule = json!({"endpoint": "server/online", "fault": {"kind": "error", "http_status": 503, "code": 5, "message": "Offline."}, "times": 1});
    let response = h
        .client
        .post(format!("{base}/_sim/faults"))
        .json(&rule)
        .send()
        .await
        .expect("add");
    assert_eq!(response.status(), StatusCode::OK);
    let (status, _) = h.call("server/online", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let id = h.submit_url("http://a.example", "").await;
    h.client
        .post(format!("{base}/_sim/clock"))
        .json(&json!({"advance_seconds": 1000}))
        .send()
        .await
        .expect("clock");
    let info = h.data("submission/info", &[("submission_id", &id)]).await;
    assert_eq!(info["status"], "finished");

    h.client
        .post(format!("{base}/_sim/maintenance"))
        .json(&json!({"on": true}))
        .send()
        .await
        .expect("maintenance");
    assert_eq!(h.data("server/online", &[]).await["online"], false);

    let state: Value = h
        .client
        .get(format!("{base}/_sim/state"))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert_eq!(state["mode"], "cloud");
    assert_eq!(state["maintenance"], true);
    assert_eq!(state["accepted_submissions"], 1);
    let log: Value = h
        .client
        .get(format!("{base}/_sim/log"))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    assert_eq!(log[0]["fault"], "error");
    assert_eq!(log[1]["submission_id"], id);
    let response = h
        .client
        .delete(format!("{base}/_sim/faults"))
        .send()
        .await
        .expect("clear");
    assert_eq!(response.status(), StatusCode::OK);
}

/// The official Python client against the simulator: chunked upload, the fallback to a single
/// upload, pagination, download names and decryption. Needs `python3` with jbxapi 3.25.0 and
/// pyzipper: `cargo test --test simulator -- --ignored`.
#[tokio::test]
#[ignore = "needs python3 with jbxapi 3.25.0 and pyzipper installed"]
async fn the_official_python_client_works_against_the_simulator() {
    const SCRIPT: &str = r#"
import io, os, sys, zipfile, jbxapi
url, fallback_url = sys.argv[1], sys.argv[2]
j = jbxapi.JoeSandbox(apikey="sim-api-key", apiurl=url, accept_tac=True, timeout=60)
assert j.server_online() == {"online": True}
data = os.urandom(21 * 1024 * 1024) + b"JBXD-MALICIOUS"
sid = j.submit_sample(("big.exe", io.BytesIO(data)), params={"systems": ["w10x64", "w7x64"], "comments": "jbxd:py"})["submission_id"]
info = j.submission_info(sid)
assert info["status"] == "finished" and info["most_relevant_analysis"]["detection"] == "malicious", info
webid = info["most_relevant_analysis"]["webid"]
name, content = j.analysis_download(webid, "sample")
assert name == webid + ".dontrun" and content == data
name, content = j.analysis_download(webid, "json")
assert name == "report-%s.json" % webid, name
z = zipfile.ZipFile(io.BytesIO(j.analysis_download(webid, "bins")[1]))
z.setpassword(b"infected")
assert all(z.read(n) for n in z.namelist())
empty = j.submission_info(j.submit_sample(("empty.bin", io.BytesIO(b"")))["submission_id"])
assert empty["analyses"] == [] and empty["most_relevant_analysis"] is None, empty
for i in range(5):
    j.submit_url("http://site%d.example" % i)
assert len(list(j.submission_list())) == 7
assert len(list(j.analysis_list_paged())) == 6
assert [a["webid"] for a in j.analysis_search("jbxd:py")] == [webid]
enc = j.submit_sample(("e.txt", io.BytesIO(b"secret")), params={"encrypt-with-password": "pw"})
ewebid = j.submission_info(enc["submission_id"])["analyses"][0]["webid"]
assert j.analysis_download(ewebid, "sample", password=b"pw")[1] == b"secret"
try:
    j.analysis_info("424242")
    raise SystemExit("expected InvalidParameterError")
except jbxapi.InvalidParameterError:
    pass
old = jbxapi.JoeSandbox(apikey="sim-api-key", apiurl=fallback_url, accept_tac=False)
assert old.submission_info(old.submit_sample(("x.exe", io.BytesIO(b"abc")))["submission_id"])["status"] == "finished"
print("jbxapi OK")
"#;
    let cloud = start(SimConfig {
        page_size: 3,
        ..SimConfig::default()
    })
    .await;
    let onprem = start(SimConfig {
        mode: SimMode::OnPrem,
        chunked_upload: false,
        ..SimConfig::default()
    })
    .await;
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(cloud.sim.api_url())
        .arg(format!("{}/", onprem.sim.onprem_api_url()))
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
