//! The README's XPath examples (`jbxd analysis search --xpath`), run by the real binary over the
//! real-shaped XML reports a daemon downloaded from the simulator: Joe's own alert path (the
//! empiric detection), the sample by hash, malicious domains.

use crate::common;

use std::path::Path;
use std::time::Duration;

use jbxd::daemon::{self, Notifier, RunOptions};
use jbxd::db::{self, ItemState};
use jbxd::simulator::SimConfig;
use jbxd::testing::{TestEnv, wait_until};
use tokio_util::sync::CancellationToken;

const MALICIOUS: &[u8] = b"MZ payload JBXD-MALICIOUS\n";
const CLEAN: &[u8] = b"nothing to see here\n";

fn drop_file(drop_dir: &Path, name: &str, content: &[u8]) {
    let temp = drop_dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, content).unwrap();
    std::fs::rename(&temp, drop_dir.join(name)).unwrap();
}

/// (the malicious file's webid, its sha256, the clean file's webid, the config path).
async fn finished(env: &TestEnv) -> (String, String, String, std::path::PathBuf) {
    let cancel = CancellationToken::new();
    let options = RunOptions {
        notifier: Notifier::disabled(),
        ..RunOptions::default()
    };
    let daemon = tokio::spawn(daemon::run(env.app.clone(), cancel.clone(), options));
    drop_file(env.drop_dir(), "evil.exe", MALICIOUS);
    drop_file(env.drop_dir(), "clean.txt", CLEAN);
    let db = env.app.db.clone();
    let done = wait_until(Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            let items = db::items::list(&db, 10).await.unwrap();
            items.len() == 2 && items.iter().all(|i| i.state == ItemState::Done)
        }
    })
    .await;
    assert!(done, "the daemon did not finish");
    let items = db::items::list(&env.app.db, 10).await.unwrap();
    let webid_of = |name: &str| {
        let item = items.iter().find(|i| i.name == name).unwrap();
        (item.id, item.sha256.clone().unwrap())
    };
    let (evil_item, evil_sha256) = webid_of("evil.exe");
    let (clean_item, _) = webid_of("clean.txt");
    let evil = db::analyses::for_item(&env.app.db, evil_item)
        .await
        .unwrap()[0]
        .webid
        .clone();
    let clean = db::analyses::for_item(&env.app.db, clean_item)
        .await
        .unwrap()[0]
        .webid
        .clone();
    cancel.cancel();
    daemon.await.unwrap().unwrap();
    let config = common::write_config(
        env.dir.path(),
        &env.app.config.data_dir,
        &env.app.config.drop_dir,
        "",
    );
    (evil, evil_sha256, clean, config)
}

async fn search(config: &Path, expr: &str) -> Vec<String> {
    let output = common::jbxd_command()
        .args([
            "--config",
            config.to_str().unwrap(),
            "--json",
            "analysis",
            "search",
        ])
        .args(["--xpath", expr])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{expr}: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut webids: Vec<String> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["webid"].as_str().unwrap().to_owned())
        .collect();
    webids.sort();
    webids
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_xpath_examples_find_the_malicious_analysis_in_real_shaped_reports() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let (evil, sha256, clean, config) = finished(&env).await;
    assert_ne!(evil, clean);
    let alert = "/analysis/signaturedetections/strategy[@name='empiric']/detection[text()='MAL']";
    assert_eq!(search(&config, alert).await, vec![evil.clone()]);
    let clean_alert =
        "/analysis/signaturedetections/strategy[@name='empiric']/detection[text()='CLEAN']";
    assert_eq!(search(&config, clean_alert).await, vec![clean.clone()]);
    let by_hash = format!("/analysis/fileinfo[sha256='{sha256}']");
    assert_eq!(search(&config, &by_hash).await, vec![evil.clone()]);
    assert_eq!(
        search(&config, "/analysis/domaininfo/domain[@malicious='true']").await,
        vec![evil.clone()]
    );
}
