//! End-to-end tests of the `jbxd` binary: the real executable against the in-process simulator.
//!
//! Every test starts its own simulator on port 0 and runs the binary with a scrubbed
//! environment, so nothing leaks in from the host (proxies, a real API key, log settings).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jbxd::api::{ApiKey, ClientSettings, JoeClient, SampleUpload, SubmissionParams};
use jbxd::simulator::{Fault, FaultRule, SimConfig, SimMode, Simulator};
use serde_json::Value;
use tempfile::TempDir;

/// A simulator plus a scratch directory, and a way to run `jbxd` against them.
struct Harness {
    sim: Simulator,
    key: String,
    dir: TempDir,
}

/// What one run of the binary produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

impl Harness {
    async fn start() -> Self {
        Self::with(SimConfig {
            analysis_seconds: 0,
            ..SimConfig::default()
        })
        .await
    }

    async fn with(config: SimConfig) -> Self {
        let key = config.api_key.clone();
        let sim = Simulator::start(config).await.expect("simulator starts");
        Self {
            sim,
            key,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `jbxd` with the simulator's URL and key and the terms accepted, plus `env`.
    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[]).await
    }

    async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut base = vec![
            ("JBX_API_URL", self.sim.api_url()),
            ("JBX_API_KEY", self.key.clone()),
            ("JBX_ACCEPT_TAC", "1".to_owned()),
        ];
        for (name, value) in env {
            base.retain(|(n, _)| n != name);
            base.push((name, (*value).to_owned()));
        }
        run_jbxd(args, &base, Some(self.dir.path())).await
    }

    /// A client for setting up state directly, without going through the binary.
    fn client(&self) -> JoeClient {
        let mut settings = ClientSettings::new(self.sim.api_url(), ApiKey::new(&self.key).unwrap());
        settings.accept_tac = true;
        JoeClient::new(settings).unwrap()
    }

    /// Submits a file with `content` and returns (submission id, webid of its analysis).
    async fn analysed_file(&self, name: &str, content: &[u8]) -> (String, String) {
        let path = self.path(name);
        std::fs::write(&path, content).unwrap();
        let client = self.client();
        let id = client
            .submit_sample(&path, &SubmissionParams::new(), &SampleUpload::default())
            .await
            .unwrap();
        for _ in 0..100 {
            let info = client.submission_info(&id).await.unwrap();
            if info.is_finished() {
                let webid = info.most_relevant_analysis.expect("an analysis").webid;
                return (id, webid);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("submission {id} did not finish");
    }
}

/// Runs the binary with only `env` (on top of a scrubbed host environment).
async fn run_jbxd(args: &[&str], env: &[(&str, String)], cwd: Option<&Path>) -> Run {
    let mut command = common::jbxd_command();
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let output = command.output().await.expect("jbxd runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every file below `root`, relative to it.
fn files_below(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    found.sort();
    found
}

// ---- test-connection ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_says_ok_with_the_account_details() {
    let h = Harness::start().await;
    let run = h.run(&["test-connection"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("OK: connected to"), "{run:?}");
    assert!(
        run.stdout.contains("API key valid, server online"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_names_an_invalid_key() {
    let h = Harness::start().await;
    let run = h
        .run_with(&["test-connection"], &[("JBX_API_KEY", "not-the-key")])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("invalid API key"), "{run:?}");
    assert!(
        !run.stderr.contains("not-the-key"),
        "the key was printed: {run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_names_a_url_that_is_not_a_joe_api() {
    let h = Harness::start().await;
    let wrong = format!("{}/nope", h.sim.api_url().trim_end_matches('/'));
    let run = h
        .run_with(&["test-connection"], &[("JBX_API_URL", &wrong)])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not a Joe Sandbox API"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_names_an_unreachable_server() {
    let h = Harness::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{closed}/api");
    let run = h
        .run_with(
            &["--retries", "1", "test-connection"],
            &[("JBX_API_URL", &url)],
        )
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("unreachable"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_names_maintenance() {
    let h = Harness::start().await;
    h.sim.set_maintenance(true);
    let run = h.run(&["test-connection"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("maintenance"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_names_terms_not_accepted_on_the_cloud() {
    let h = Harness::start().await;
    let run = h
        .run_with(&["test-connection"], &[("JBX_ACCEPT_TAC", "0")])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("terms not accepted"), "{run:?}");
    assert!(run.stderr.contains("JBX_ACCEPT_TAC=1"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_accepts_an_on_premise_server_without_account_info() {
    let h = Harness::with(SimConfig {
        analysis_seconds: 0,
        mode: SimMode::OnPrem,
        ..SimConfig::default()
    })
    .await;
    let run = h
        .run_with(&["--json", "test-connection"], &[("JBX_ACCEPT_TAC", "0")])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["verdict"], "ok");
    assert_eq!(run.json()["deployment"], "on-premise");
}

// ---- configuration ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_api_key_is_a_configuration_error_naming_the_setting() {
    let run = run_jbxd(&["server", "online"], &[], None).await;
    assert_eq!(run.code, 78, "{run:?}");
    assert!(run.stderr.contains("JBX_API_KEY"), "{run:?}");
    assert!(run.stderr.contains("--api-key-file"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_file_is_read_and_wins_over_the_environment() {
    let h = Harness::start().await;
    let key_file = h.path("key");
    std::fs::write(&key_file, format!("{}\n", h.key)).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = h
        .run_with(
            &[
                "--api-key-file",
                key_file.to_str().unwrap(),
                "server",
                "online",
            ],
            &[("JBX_API_KEY", "wrong")],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_url_is_a_configuration_error_naming_its_source() {
    let run = run_jbxd(
        &["server", "online"],
        &[
            ("JBX_API_URL", "ftp://example".to_owned()),
            ("JBX_API_KEY", "k".to_owned()),
        ],
        None,
    )
    .await;
    assert_eq!(run.code, 78, "{run:?}");
    assert!(run.stderr.contains("JBX_API_URL"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn there_is_no_api_key_flag() {
    let run = run_jbxd(&["--api-key", "secret", "server", "online"], &[], None).await;
    assert_eq!(run.code, 2, "{run:?}");
}

// ---- server and account -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn server_online_prints_the_state_and_its_json_is_the_data_payload() {
    let h = Harness::start().await;
    let run = h.run(&["server", "online"]).await;
    assert_eq!((run.code, run.stdout.trim()), (0, "online"), "{run:?}");
    let run = h.run(&["--json", "server", "online"]).await;
    assert_eq!(run.json(), serde_json::json!({"online": true}));
    h.sim.set_maintenance(true);
    let run = h.run(&["server", "online"]).await;
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_info_systems_and_account_info_print_their_payloads() {
    let h = Harness::start().await;
    let info = h.run(&["--json", "server", "info"]).await;
    assert_eq!(info.code, 0, "{info:?}");
    assert!(info.json().get("queuesize").is_some(), "{info:?}");
    let systems = h.run(&["--json", "server", "systems"]).await;
    assert!(
        systems.json().as_array().is_some_and(|s| !s.is_empty()),
        "{systems:?}"
    );
    let table = h.run(&["server", "systems"]).await;
    assert!(table.stdout.contains("name"), "{table:?}");
    let account = h.run(&["--json", "account", "info"]).await;
    assert_eq!(account.code, 0, "{account:?}");
    assert!(account.json()["quota"]["daily"].is_object(), "{account:?}");
}

// ---- submit -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn submit_creates_exactly_one_submission_per_file_and_prints_their_ids() {
    let h = Harness::start().await;
    std::fs::write(h.path("a.txt"), b"hello").unwrap();
    std::fs::write(h.path("b.exe"), b"JBXD-MALICIOUS").unwrap();
    let run = h
        .run(&[
            "--json",
            "submit",
            "a.txt",
            "b.exe",
            "--comments",
            "from the cli test",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let data = run.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["target"], "a.txt");
    assert_eq!(data[0]["kind"], "file");
    assert_eq!(run.json()["errors"], serde_json::json!([]));
    assert_eq!(h.sim.accepted_submissions().len(), 2);
    assert!(
        run.stderr.contains("Successful: 2 of 2 succeeded."),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_expands_a_directory_to_the_regular_files_directly_inside_it() {
    let h = Harness::start().await;
    let drop = h.path("drop");
    std::fs::create_dir_all(drop.join("nested")).unwrap();
    std::fs::write(drop.join("one.txt"), b"1").unwrap();
    std::fs::write(drop.join("two.txt"), b"2").unwrap();
    std::fs::write(drop.join("nested").join("three.txt"), b"3").unwrap();
    let run = h.run(&["submit", "drop", "--jobs", "2"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("one.txt") && run.stdout.contains("two.txt"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("three.txt"), "{run:?}");
    assert_eq!(h.sim.accepted_submissions().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_sends_urls_and_sample_urls() {
    let h = Harness::start().await;
    let run = h
        .run(&[
            "--json",
            "submit",
            "--url",
            "https://example.com/",
            "--sample-url",
            "http://files.example/x.exe",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let data = run.json()["data"].clone();
    assert_eq!(data[0]["kind"], "url");
    assert_eq!(data[1]["kind"], "sample-url");
    assert_eq!(h.sim.accepted_submissions().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn case_120_submit_refuses_the_urls_the_daemon_refuses_and_never_echoes_a_password() {
    let h = Harness::start().await;
    for (url, reason) in [
        (
            "javascript:alert(1)",
            "URL scheme javascript is not allowed",
        ),
        ("ftp://files.example/x", "URL scheme ftp is not allowed"),
        ("data:text/html,hi", "URL scheme data is not allowed"),
        (
            "https://user:hunter2secret@example.com/",
            "credentials in URL",
        ),
        ("https://exa mple.com/", "control characters or spaces"),
        ("example.com", "no scheme"),
    ] {
        for json in [false, true] {
            let mut args = vec!["submit", "--url", "https://ok.example/", "--url", url];
            if json {
                args.insert(0, "--json");
            }
            let run = h.run(&args).await;
            assert_eq!(run.code, 2, "{url}: {run:?}");
            assert!(run.stderr.contains("--url #2 refused: "), "{url}: {run:?}");
            assert!(run.stderr.contains(reason), "{url}: {run:?}");
            assert!(
                run.stderr.contains("nothing was submitted"),
                "{url}: {run:?}"
            );
            let all = format!("{}{}", run.stdout, run.stderr);
            assert!(
                !all.contains("hunter2secret"),
                "{url}: the password was echoed: {run:?}"
            );
        }
    }
    // The first URL was valid, but nothing is sent while any of them is refused.
    assert!(h.sim.accepted_submissions().is_empty());
    let run = h
        .run(&["submit", "--sample-url", "file:///etc/passwd"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--sample-url #1 refused: "), "{run:?}");
    assert!(h.sim.accepted_submissions().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn case_120_allow_any_scheme_sends_ftp_but_still_refuses_javascript_and_credentials() {
    let h = Harness::start().await;
    let run = h.run(&["submit", "--url", "ftp://files.example/x"]).await;
    assert!(
        run.stderr.contains("--allow-any-scheme sends it anyway"),
        "{run:?}"
    );
    let run = h
        .run(&[
            "--json",
            "submit",
            "--allow-any-scheme",
            "--url",
            "FTP://Files.Example/x",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    // Sent in the normalised form, as the daemon would.
    assert_eq!(run.json()["data"][0]["target"], "ftp://files.example/x");
    assert_eq!(h.sim.accepted_submissions().len(), 1);
    for url in [
        "javascript:alert(1)",
        "ftp://u:hunter2secret@files.example/",
        "file:///etc/passwd",
    ] {
        let run = h.run(&["submit", "--allow-any-scheme", "--url", url]).await;
        assert_eq!(run.code, 2, "{url}: {run:?}");
        assert!(!run.stderr.contains("hunter2secret"), "{run:?}");
    }
    assert_eq!(h.sim.accepted_submissions().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_reports_a_missing_file_and_still_submits_the_others() {
    let h = Harness::start().await;
    std::fs::write(h.path("there.txt"), b"x").unwrap();
    let run = h.run(&["submit", "there.txt", "missing.txt"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("Submit Sample File failed."), "{run:?}");
    assert!(
        run.stderr
            .contains("Partially Successful: 1 of 2 succeeded."),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_submission_parameter_is_a_usage_error_naming_it() {
    let h = Harness::start().await;
    std::fs::write(h.path("a.txt"), b"x").unwrap();
    let run = h
        .run(&["submit", "a.txt", "--param", "analysis-time=soon"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("analysis-time"), "{run:?}");
    assert!(h.sim.accepted_submissions().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submission_refused_by_the_server_fails_with_its_message() {
    let h = Harness::start().await;
    let run = h
        .run_with(
            &["submit", "--url", "https://example.com/"],
            &[("JBX_ACCEPT_TAC", "0")],
        )
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("Submit URL failed. Status Code: "),
        "{run:?}"
    );
    assert!(run.stderr.contains("Terms and Conditions"), "{run:?}");
    assert!(run.stderr.contains("Failed: 0 of 1 succeeded."), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submission_with_an_unknown_outcome_is_not_repeated_and_says_what_to_check() {
    let h = Harness::start().await;
    h.sim.faults().add(FaultRule::times(
        Some("submission/new"),
        Fault::ResetAfterBody,
        1,
    ));
    let run = h.run(&["submit", "--url", "https://example.com/"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("Submit URL failed."), "{run:?}");
    assert!(run.stderr.contains("jbxd submission list"), "{run:?}");
    // The server did create it; a blind retry would have made a second one.
    assert_eq!(h.sim.accepted_submissions().len(), 1);
}

// ---- submissions --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn submission_list_and_info_show_the_submission() {
    let h = Harness::start().await;
    let (id, webid) = h.analysed_file("sample.txt", b"JBXD-SUSPICIOUS").await;
    let list = h.run(&["--json", "submission", "list"]).await;
    assert_eq!(list.code, 0, "{list:?}");
    assert!(
        list.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["submission_id"] == id.as_str()),
        "{list:?}"
    );
    let info = h.run(&["submission", "info", &id]).await;
    assert_eq!(info.code, 0, "{info:?}");
    assert!(info.stdout.contains(&webid), "{info:?}");
    assert!(info.stdout.contains("suspicious"), "{info:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn submission_info_of_a_good_and_an_unknown_id_is_partially_successful() {
    let h = Harness::start().await;
    let (id, _) = h.analysed_file("sample.txt", b"x").await;
    let run = h
        .run(&["--json", "submission", "info", &id, "999999"])
        .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .contains("Get Submission Information failed. Status Code: "),
        "{run:?}"
    );
    assert_eq!(run.json()["errors"][0]["indicator"], "999999");
}

#[tokio::test(flavor = "multi_thread")]
async fn submission_delete_removes_the_submission() {
    let h = Harness::start().await;
    let (id, _) = h.analysed_file("sample.txt", b"x").await;
    let run = h.run(&["submission", "delete", &id]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let again = h.run(&["submission", "info", &id]).await;
    assert_eq!(again.code, 1, "{again:?}");
}

// ---- analyses -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn analysis_list_contains_the_webid() {
    let h = Harness::start().await;
    let (_, webid) = h.analysed_file("sample.txt", b"x").await;
    let run = h.run(&["--json", "analysis", "list"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["webid"] == webid.as_str()),
        "{run:?}"
    );
    let table = h.run(&["analysis", "list"]).await;
    assert!(table.stdout.contains(&webid), "{table:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn analysis_info_prints_the_verdict_table() {
    let h = Harness::start().await;
    let (_, webid) = h.analysed_file("evil.exe", b"JBXD-MALICIOUS").await;
    let run = h.run(&["analysis", "info", &webid]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for column in [
        "webid",
        "status",
        "detection",
        "score",
        "threat name",
        "file/URL",
        "time",
    ] {
        assert!(run.stdout.contains(column), "{column}: {run:?}");
    }
    assert!(
        run.stdout.contains("malicious") && run.stdout.contains("evil.exe"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn analysis_info_with_one_unknown_webid_is_partially_successful_in_the_seed_shape() {
    let h = Harness::start().await;
    let (_, webid) = h.analysed_file("sample.txt", b"x").await;
    let run = h
        .run(&["--json", "analysis", "info", &webid, "999999"])
        .await;
    assert_eq!(run.code, 3, "{run:?}");
    let doc = run.json();
    assert_eq!(doc["data"][0]["webid"], webid.as_str());
    assert_eq!(doc["errors"][0]["indicator"], "999999");
    assert!(doc["errors"][0]["status_code"].is_u64(), "{doc}");
    assert!(doc["errors"][0]["message"].is_string(), "{doc}");
    let status = doc["errors"][0]["status_code"].as_u64().unwrap();
    let message = doc["errors"][0]["message"].as_str().unwrap();
    let line =
        format!("Get Analysis Information failed. Status Code: {status}. Message: {message}");
    assert!(run.stderr.contains(&line), "{line} not in {run:?}");
    assert!(
        run.stderr
            .contains("Partially Successful: 1 of 2 succeeded."),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn analysis_info_with_only_unknown_webids_fails() {
    let h = Harness::start().await;
    let run = h.run(&["analysis", "info", "999998", "999999"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("Failed: 0 of 2 succeeded."), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn analysis_delete_removes_the_analysis() {
    let h = Harness::start().await;
    let (_, webid) = h.analysed_file("sample.txt", b"x").await;
    let run = h.run(&["analysis", "delete", &webid]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(h.run(&["analysis", "info", &webid]).await.code, 1);
}

// ---- search -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_an_analysis_by_free_text_and_by_filters() {
    let h = Harness::start().await;
    let (_, webid) = h.analysed_file("findme-4711.exe", b"JBXD-MALICIOUS").await;
    let by_text = h
        .run(&["--json", "analysis", "search", "--query", "findme-4711"])
        .await;
    assert_eq!(by_text.code, 0, "{by_text:?}");
    assert_eq!(by_text.json()[0]["webid"], webid.as_str());
    let sha256 = by_text.json()[0]["sha256"].as_str().unwrap().to_owned();
    let by_filter = h
        .run(&[
            "analysis",
            "search",
            "--sha256",
            &sha256,
            "--detection",
            "malicious",
        ])
        .await;
    assert_eq!(by_filter.code, 0, "{by_filter:?}");
    assert!(by_filter.stdout.contains(&webid), "{by_filter:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn search_with_both_query_and_xpath_or_with_neither_is_a_usage_error() {
    let h = Harness::start().await;
    let both = h
        .run(&["analysis", "search", "--query", "x", "--xpath", "//a"])
        .await;
    assert_eq!(both.code, 2, "{both:?}");
    let neither = h.run(&["analysis", "search"]).await;
    assert_eq!(neither.code, 2, "{neither:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn search_by_xpath_reads_the_local_index_and_never_the_server() {
    let h = Harness::start().await;
    // A data_dir the daemon never ran in: the command says so instead of asking the server.
    let config = h.path("jbxd.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", h.path("data").to_str().unwrap()),
    )
    .unwrap();
    let run = h
        .run(&[
            "--config",
            config.to_str().unwrap(),
            "analysis",
            "search",
            "--xpath",
            "//malicious",
        ])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no database at"), "{run:?}");
    let broken = h
        .run(&[
            "--config",
            config.to_str().unwrap(),
            "analysis",
            "search",
            "--xpath",
            "//malicious[",
        ])
        .await;
    assert_eq!(broken.code, 2, "{broken:?}");
    assert!(broken.stderr.contains("//malicious["), "{broken:?}");
    assert!(
        h.sim
            .request_log()
            .iter()
            .all(|r| !r.endpoint.contains("search")),
        "xpath must not reach the server"
    );
}

// ---- downloads ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn download_writes_every_type_of_every_webid_into_out() {
    let h = Harness::start().await;
    let (_, webid) = h.analysed_file("sample.txt", b"JBXD-SUSPICIOUS").await;
    let run = h
        .run(&[
            "--json",
            "analysis",
            "download",
            &webid,
            "--type",
            "html",
            "--type",
            "irjsonfixed,xml",
            "--out",
            "reports",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let data = run.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 3);
    for item in &data {
        let path = PathBuf::from(item["path"].as_str().unwrap());
        let path = if path.is_absolute() {
            path
        } else {
            h.dir.path().join(path)
        };
        assert!(path.starts_with(h.path("reports")), "{path:?}");
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert_eq!(item["bytes"].as_u64(), Some(bytes));
        assert_eq!(item["sha256"].as_str().map(str::len), Some(64));
    }
    let json = data.iter().find(|d| d["type"] == "irjsonfixed").unwrap();
    let json_path = h.dir.path().join(json["path"].as_str().unwrap());
    let report: Value = serde_json::from_slice(&std::fs::read(json_path).unwrap()).unwrap();
    assert!(report["analysis"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn download_with_a_hostile_server_file_name_writes_only_inside_out() {
    let h = Harness::start().await;
    let (_, webid) = h.analysed_file("sample.txt", b"x").await;
    h.sim.faults().add(FaultRule::always(
        Some("analysis/download"),
        Fault::HostileFilename {
            filename: "../../escape.txt".into(),
        },
    ));
    let before = files_below(h.dir.path());
    std::fs::create_dir_all(h.path("deep/inside")).unwrap();
    let run = h
        .run(&["analysis", "download", &webid, "--out", "deep/inside/out"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let mut after = files_below(h.dir.path());
    after.retain(|p| !before.contains(p));
    assert_eq!(after, vec![PathBuf::from("deep/inside/out/escape.txt")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn download_of_an_unknown_webid_fails_in_the_seed_shape() {
    let h = Harness::start().await;
    let run = h
        .run(&[
            "analysis", "download", "999999", "--type", "html", "--out", "r",
        ])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("Download Report failed. Status Code: "),
        "{run:?}"
    );
    assert!(files_below(&h.path("r")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_download_is_repeated_and_stored_complete() {
    let h = Harness::start().await;
    let (_, webid) = h.analysed_file("sample.txt", b"x").await;
    h.sim.faults().add(FaultRule::times(
        Some("analysis/download"),
        Fault::TruncateDownload { bytes: 10 },
        1,
    ));
    let run = h
        .run(&["--json", "analysis", "download", &webid, "--out", "r"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let item = &run.json()["data"][0];
    let stored = std::fs::metadata(h.dir.path().join(item["path"].as_str().unwrap())).unwrap();
    assert_eq!(Some(stored.len()), item["bytes"].as_u64());
    assert!(stored.len() > 10);
    // No temporary file is left behind.
    assert_eq!(files_below(&h.path("r")).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sample_download_is_stored_read_only_and_never_executable() {
    let h = Harness::start().await;
    let (_, webid) = h.analysed_file("dropper.exe", b"MZ JBXD-MALICIOUS").await;
    let run = h
        .run(&["--json", "analysis", "sample", &webid, "--out", "samples"])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let path = h
        .dir
        .path()
        .join(run.json()["data"][0]["path"].as_str().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), b"MZ JBXD-MALICIOUS");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o400);
}

// ---- simulate (the demo is tested in operator_cli.rs) ------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn simulate_serves_the_api_until_sigterm() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut child = common::jbxd_command()
        .args(["simulate", "--listen", &listen, "--api-key", "sim-test-key"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let env = [
        ("JBX_API_URL", format!("http://{listen}/api")),
        ("JBX_API_KEY", "sim-test-key".to_owned()),
        ("JBX_ACCEPT_TAC", "1".to_owned()),
    ];
    let mut online = None;
    for _ in 0..100 {
        let run = run_jbxd(&["--retries", "1", "server", "online"], &env, None).await;
        if run.code == 0 {
            online = Some(run);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(online.is_some(), "the simulator never answered");
    let pid = child.id().unwrap() as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("simulate stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

// ---- the key file: one resolver for the CLI and the daemon ---------------------------------

/// Cases 94 and 95 through the real binary: for every key-file rule, the CLI refuses the file
/// given with `--api-key-file` (exit 78, even with a valid `JBX_API_KEY` beside it) with the
/// very line `jbxd config check` prints for the same file as `api.key_file`, and nothing
/// reaches the server.
#[tokio::test(flavor = "multi_thread")]
async fn case_94_the_cli_refuses_an_unsafe_key_file_with_the_daemons_message() {
    let h = Harness::start().await;
    let write = |name: &str, text: &str, mode: u32| {
        let path = h.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let readable = write("readable", &h.key, 0o644);
    let link = h.path("link");
    std::os::unix::fs::symlink(&readable, &link).unwrap();
    let directory = h.path("a_directory");
    std::fs::create_dir(&directory).unwrap();
    let mut cases = vec![
        (
            readable,
            "is readable by group/others (mode 0644); run chmod 600",
        ),
        (
            write("writable", &h.key, 0o620),
            "is writable by group/others",
        ),
        // Judged by its target.
        (link, "is readable by group/others (mode 0644)"),
        (write("empty", " \n", 0o600), "is empty"),
        (directory, "is not a regular file"),
        (h.path("missing"), "cannot read the key file"),
    ];
    // Only root can give a file away: run as another user, this one rule is not exercised.
    let foreign = write("foreign", &h.key, 0o600);
    if std::os::unix::fs::chown(&foreign, Some(65534), None).is_ok() {
        cases.push((foreign, "is owned by uid 65534"));
    }
    let error_line = |run: &Run| {
        run.stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no error line: {run:?}"))
    };
    for (path, expected) in cases {
        let shown = path.to_str().unwrap();
        let cli = h.run(&["--api-key-file", shown, "server", "online"]).await;
        assert_eq!(cli.code, 78, "{shown}: {cli:?}");
        assert!(
            cli.stderr.contains(shown) && cli.stderr.contains(expected),
            "{shown}: {cli:?}"
        );
        assert!(!cli.stderr.contains(&h.key), "the key was printed: {cli:?}");

        let config = common::write_config(
            h.dir.path(),
            &h.path("data"),
            &h.path("drop"),
            &format!("[api]\nkey_file = {shown:?}\n"),
        );
        let daemon = run_jbxd(
            &["--config", config.to_str().unwrap(), "config", "check"],
            &[],
            None,
        )
        .await;
        assert_eq!(daemon.code, 78, "{shown}: {daemon:?}");
        assert_eq!(error_line(&cli), error_line(&daemon), "{shown}");
    }
    assert!(
        h.sim.request_log().is_empty(),
        "a request was sent: {:?}",
        h.sim.request_log()
    );
}
