//! `jbxd import`: analyses submitted elsewhere (here: straight to the simulator through the
//! API client, as the web interface or another tool would) brought into the daemon's index by
//! the real binary, with the daemon's configuration file; and `jbxd export` of what the index
//! then holds.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jbxd::api::SubmissionParams;
use jbxd::db::{self, Db, ReportState};
use jbxd::simulator::SimConfig;
use jbxd::testing::{TEST_API_KEY, TestEnv};
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

async fn jbxd(args: &[&str]) -> Run {
    let mut command = common::jbxd_command();
    command.args(args).env("JBX_API_KEY", TEST_API_KEY);
    let output = command.output().await.expect("jbxd runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A daemon's data directory (database created, nothing in it) and a configuration file
/// naming it and the simulator.
async fn setup() -> (TestEnv, PathBuf) {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let config = common::write_config(
        env.dir.path(),
        &env.app.config.data_dir,
        &env.app.config.drop_dir,
        &format!(
            "[api]\nurl = {:?}\naccept_tac = true\n[pipeline]\nretry_base_secs = 0\n\
             retry_cap_secs = 1\n",
            env.sim.api_url()
        ),
    );
    (env, config)
}

/// Submits a URL the way another tool would and waits for its finished analysis.
async fn submitted_elsewhere(env: &TestEnv, url: &str) -> String {
    let id = env
        .app
        .client
        .submit_url(url, &SubmissionParams::new())
        .await
        .expect("submitted");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let info = env.app.client.submission_info(&id).await.expect("info");
        if info.status.as_deref() == Some("finished")
            && let Some(a) = info.analyses.unwrap_or_default().first()
        {
            return a.webid.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the simulator did not finish {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (type, state, path, sha256, downloaded_at) of every report of `webid`.
async fn reports(
    db: &Db,
    webid: &str,
) -> Vec<(
    String,
    ReportState,
    Option<String>,
    Option<String>,
    Option<String>,
)> {
    db::analyses::reports_for(db, webid)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.report_type, r.state, r.path, r.sha256, r.downloaded_at))
        .collect()
}

fn row<'a>(doc: &'a Value, webid: &str) -> &'a Value {
    doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["webid"] == webid)
        .unwrap_or_else(|| panic!("no row for {webid}: {doc}"))
}

fn config_arg(config: &Path) -> &str {
    config.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn import_records_analyses_without_items_downloads_their_reports_and_twice_changes_nothing() {
    let (env, config) = setup().await;
    let evil = submitted_elsewhere(&env, "http://evil.example/").await;
    let clean = submitted_elsewhere(&env, "https://example.org/").await;
    let run = jbxd(&[
        "--config",
        config_arg(&config),
        "import",
        &evil,
        &clean,
        "987654321",
        "--json",
    ])
    .await;
    // The unknown webid fails on its own, named; the others are imported.
    assert_eq!(run.code, 3, "{run:?}");
    let doc = run.json();
    assert_eq!(row(&doc, &evil)["origin"], "imported", "{doc}");
    assert_eq!(row(&doc, &evil)["detection"], "malicious", "{doc}");
    assert_eq!(row(&doc, &clean)["origin"], "imported", "{doc}");
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{doc}");
    assert_eq!(errors[0]["indicator"], "987654321");
    assert!(run.stderr.contains("webid 987654321"), "{run:?}");
    assert!(
        run.stderr.contains("Partially Successful: 2 of 3"),
        "{run:?}"
    );

    let db = Db::open_existing(&env.app.config.db_path()).await.unwrap();
    let types = jbxd::pipeline::report_types(&env.app.config);
    let mut before = Vec::new();
    for webid in [&evil, &clean] {
        let analysis = db::analyses::get(&db, webid).await.unwrap().unwrap();
        assert_eq!(analysis.item_id, None, "an imported analysis has no item");
        assert!(
            db::imports::imported_at(&db, webid)
                .await
                .unwrap()
                .is_some()
        );
        let stored = reports(&db, webid).await;
        assert_eq!(stored.len(), types.len(), "{stored:?}");
        for (report_type, state, path, sha256, _) in &stored {
            assert_eq!(*state, ReportState::Stored, "{report_type}: {stored:?}");
            let file = env.app.config.data_dir.join(path.as_deref().unwrap());
            let bytes = std::fs::read(&file).unwrap();
            assert_eq!(
                hex_sha256(&bytes),
                sha256.clone().unwrap(),
                "{}",
                file.display()
            );
        }
        assert_eq!(
            row(&doc, webid)["stored"].as_array().unwrap().len(),
            types.len()
        );
        before.push(stored);
    }
    assert!(
        db::items::list(&db, 10).await.unwrap().is_empty(),
        "no item was made"
    );
    let iocs = |webid: String| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM iocs WHERE webid = ?")
                .bind(webid)
                .fetch_one(db.pool())
                .await
                .unwrap()
        }
    };
    let evil_iocs = iocs(evil.clone()).await;
    assert!(evil_iocs > 0, "the imported analysis is indexed");
    assert_eq!(row(&doc, &evil)["index_failed"], serde_json::json!([]));

    let again = jbxd(&[
        "--config",
        config_arg(&config),
        "import",
        &evil,
        &clean,
        "--json",
    ])
    .await;
    assert_eq!(again.code, 0, "{again:?}");
    let doc = again.json();
    assert_eq!(row(&doc, &evil)["origin"], "already imported", "{doc}");
    let mut after = Vec::new();
    for webid in [&evil, &clean] {
        after.push(reports(&db, webid).await);
    }
    assert_eq!(before, after, "importing twice changed the reports");
    assert_eq!(
        iocs(evil.clone()).await,
        evil_iocs,
        "importing twice changed the index"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM analyses")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 2);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_since_a_day_finds_the_accounts_analyses_and_a_later_day_finds_none() {
    let (env, config) = setup().await;
    let webid = submitted_elsewhere(&env, "http://phish.example/").await;
    let today = chrono::Local::now().date_naive();
    let run = jbxd(&[
        "--config",
        config_arg(&config),
        "import",
        "--since",
        &today.format("%Y-%m-%d").to_string(),
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(row(&run.json(), &webid)["origin"], "imported");
    let tomorrow = today.succ_opt().unwrap().format("%Y-%m-%d").to_string();
    let none = jbxd(&[
        "--config",
        config_arg(&config),
        "import",
        "--since",
        &tomorrow,
        "--json",
    ])
    .await;
    assert_eq!(none.code, 0, "{none:?}");
    assert_eq!(none.json()["data"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_day_is_a_usage_error_naming_it() {
    let (_env, config) = setup().await;
    let run = jbxd(&[
        "--config",
        config_arg(&config),
        "import",
        "--since",
        "last-week",
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("last-week"), "{run:?}");
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread")]
async fn export_writes_the_same_stix_bundle_and_misp_event_for_an_indexed_analysis_every_time() {
    let (env, config) = setup().await;
    let file = env.dir.path().join("invoice.exe");
    std::fs::write(&file, b"MZ JBXD-MALICIOUS payload").unwrap();
    let id = env
        .app
        .client
        .submit_sample(&file, &SubmissionParams::new(), &Default::default())
        .await
        .expect("submitted");
    let webid = loop {
        let info = env.app.client.submission_info(&id).await.unwrap();
        if info.status.as_deref() == Some("finished")
            && let Some(a) = info.analyses.unwrap_or_default().first()
        {
            break a.webid.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let imported = jbxd(&["--config", config_arg(&config), "import", &webid]).await;
    assert_eq!(imported.code, 0, "{imported:?}");
    let sha256 = hex_sha256(b"MZ JBXD-MALICIOUS payload");

    let stix = jbxd(&[
        "--config",
        config_arg(&config),
        "export",
        &webid,
        "--format",
        "stix",
    ])
    .await;
    assert_eq!(stix.code, 0, "{stix:?}");
    let bundle: Value = serde_json::from_str(&stix.stdout).unwrap();
    assert_eq!(bundle["type"], "bundle");
    let objects = bundle["objects"].as_array().unwrap();
    let analysis = objects
        .iter()
        .find(|o| o["type"] == "malware-analysis")
        .expect("a malware-analysis");
    assert_eq!(analysis["result"], "malicious", "{analysis}");
    assert_eq!(analysis["x_jbxd_webid"], webid.as_str());
    let pattern = format!("[file:hashes.'SHA-256' = '{sha256}']");
    assert!(
        objects.iter().any(|o| o["pattern"] == pattern.as_str()),
        "{bundle}"
    );
    // The indicators of the stored reports: the simulator's malicious samples contact domains.
    assert!(
        objects.iter().any(|o| o["pattern"]
            .as_str()
            .is_some_and(|p| p.starts_with("[domain-name:value = '"))),
        "{bundle}"
    );
    assert!(
        stix.stderr.is_empty(),
        "every report was readable: {stix:?}"
    );
    let again = jbxd(&[
        "--config",
        config_arg(&config),
        "export",
        &webid,
        "--format",
        "stix",
    ])
    .await;
    assert_eq!(again.stdout, stix.stdout, "exports are reproducible");

    let misp = jbxd(&[
        "--config",
        config_arg(&config),
        "export",
        &webid,
        "--format",
        "misp",
    ])
    .await;
    assert_eq!(misp.code, 0, "{misp:?}");
    let event: Value = serde_json::from_str(&misp.stdout).unwrap();
    assert_eq!(event["Event"]["threat_level_id"], "1");
    assert!(
        event["Event"]["Attribute"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "sha256" && a["value"] == sha256.as_str() && a["to_ids"] == true),
        "{event}"
    );

    let attributes = event["Event"]["Attribute"].as_array().unwrap();
    assert!(
        attributes
            .iter()
            .any(|a| a["type"] == "domain" && a["to_ids"] == true),
        "{event}"
    );
    assert!(
        attributes.iter().any(|a| a["type"] == "text"),
        "signatures: {event}"
    );
    let unknown = jbxd(&[
        "--config",
        config_arg(&config),
        "export",
        "123123",
        "--format",
        "misp",
    ])
    .await;
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown.stderr.contains("webid 123123 is not in the index"),
        "{unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_analysis_still_running_is_not_imported_and_the_message_says_why() {
    let env = TestEnv::start(
        SimConfig {
            // Listed after a tenth of it (4 s), then running for half a minute more.
            analysis_seconds: 40,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    let config = common::write_config(
        env.dir.path(),
        &env.app.config.data_dir,
        &env.app.config.drop_dir,
        &format!("[api]\nurl = {:?}\naccept_tac = true\n", env.sim.api_url()),
    );
    let id = env
        .app
        .client
        .submit_url("https://example.org/", &SubmissionParams::new())
        .await
        .unwrap();
    let webid = loop {
        let info = env.app.client.submission_info(&id).await.unwrap();
        if let Some(a) = info.analyses.unwrap_or_default().first() {
            break a.webid.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let run = jbxd(&["--config", config_arg(&config), "import", &webid]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("has not finished"), "{run:?}");
    let db = Db::open_existing(&env.app.config.db_path()).await.unwrap();
    assert!(db::analyses::get(&db, &webid).await.unwrap().is_none());
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_beside_a_running_daemon_downloads_every_report_exactly_once() {
    let (env, config) = setup().await;
    let mut webids = Vec::new();
    for url in [
        "http://evil.example/a",
        "http://phish.example/b",
        "https://example.org/c",
    ] {
        webids.push(submitted_elsewhere(&env, url).await);
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    let options = jbxd::daemon::RunOptions {
        notifier: jbxd::daemon::Notifier::disabled(),
        ..Default::default()
    };
    let daemon = tokio::spawn(jbxd::daemon::run(env.app.clone(), cancel.clone(), options));
    let mut args = vec!["--config", config_arg(&config), "import", "--json"];
    args.extend(webids.iter().map(String::as_str));
    let run = jbxd(&args).await;
    cancel.cancel();
    daemon.await.unwrap().unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    let types = jbxd::pipeline::report_types(&env.app.config);
    // The daemon closed its handle when it stopped.
    let db = Db::open_existing(&env.app.config.db_path()).await.unwrap();
    for webid in &webids {
        let stored = reports(&db, webid).await;
        assert!(
            stored.iter().all(|r| r.1 == ReportState::Stored),
            "{webid}: {stored:?}"
        );
    }
    // Whoever claimed a report (the daemon's worker or the command) downloaded it; nobody twice.
    let downloads = env
        .sim
        .request_log()
        .iter()
        .filter(|r| r.endpoint == "analysis/download")
        .count();
    assert_eq!(downloads, webids.len() * types.len());
}
