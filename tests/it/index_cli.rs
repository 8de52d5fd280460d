//! The index commands of the `jbxd` binary (`iocs`, `reports --ioc`, `status`'s index lines)
//! on a data directory indexed through `index::index_analysis`, as the daemon does it.

use crate::common;
use crate::index_ingest::{MALWARE, fake_extract};

use std::path::Path;

use jbxd::db::{self, Db};
use jbxd::index::index_analysis;
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn jbxd(config: &Path, args: &[&str]) -> Run {
    let mut command = common::jbxd_command();
    command.arg("--config").arg(config).args(args);
    let output = command.output().await.expect("jbxd runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A data directory with analyses 1 (the MALWARE report) and 2 (one CSV-hostile value), and
/// a config naming it.
async fn indexed_data_dir(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = Db::open_in(&data).await.unwrap();
    for (webid, content) in [
        ("1", MALWARE.to_owned()),
        (
            "2",
            "ioc file_name =cmd|'/c,calc'!A1.exe mal\nioc domain other.example".to_owned(),
        ),
    ] {
        sqlx::query("INSERT INTO analyses (webid, detection, score) VALUES (?, 'malicious', 90)")
            .bind(webid)
            .execute(db.pool())
            .await
            .unwrap();
        let rel = format!("reports/{webid}/jsonfixed.json");
        std::fs::create_dir_all(data.join(format!("reports/{webid}"))).unwrap();
        std::fs::write(data.join(&rel), &content).unwrap();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO reports (webid, type, state) VALUES (?, 'jsonfixed', 'downloading')
             RETURNING id",
        )
        .bind(webid)
        .fetch_one(db.pool())
        .await
        .unwrap();
        db::analyses::report_stored(&db, id, &rel, content.len() as i64, "00", None)
            .await
            .unwrap();
        index_analysis(&db, &data, webid, None, fake_extract)
            .await
            .unwrap();
    }
    db.close().await;
    common::write_config(dir, &data, &dir.join("drop"), "")
}

#[tokio::test]
async fn jbxd_iocs_finds_a_defanged_value_and_prints_json_and_safe_csv() {
    let dir = tempfile::tempdir().unwrap();
    let config = indexed_data_dir(dir.path()).await;

    let run = jbxd(
        &config,
        &[
            "iocs",
            "--value",
            "hxxp://evil[.]example[.]com/gate.php/",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["value"], "http://evil.example.com/gate.php");
    assert_eq!(rows[0]["webid"], "1");
    assert_eq!(rows[0]["detection"], "malicious");

    let run = jbxd(&config, &["iocs", "--webid", "2", "--format", "csv"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.split("\r\n").collect();
    assert!(
        lines[0].starts_with("kind,value,malicious,webid"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("file_name,\"'=cmd|'/c,calc'!A1.exe\",yes,2"),
        "{}",
        run.stdout
    );

    let run = jbxd(&config, &["iocs", "--kind", "ip", "--malicious"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("203.0.113.9") && !run.stdout.contains("10.0.0.7"),
        "{}",
        run.stdout
    );

    let run = jbxd(&config, &["iocs", "--kind", "ip", "--value", "nonsense"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("`nonsense` is not an indicator of kind ip"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn jbxd_reports_ioc_lists_every_analysis_that_saw_the_value_with_its_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let config = indexed_data_dir(dir.path()).await;
    let run = jbxd(&config, &["reports", "--ioc", "EVIL.example.com", "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let found: Value = serde_json::from_str(&run.stdout).unwrap();
    let webids: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["webid"].as_str().unwrap())
        .collect();
    assert_eq!(webids, vec!["1"]);
    assert_eq!(found[0]["detection"], "malicious");
    assert_eq!(found[0]["reports"][0]["type"], "jsonfixed");

    let run = jbxd(&config, &["reports", "--ioc", "nobody.example"]).await;
    assert_eq!(run.code, 0);
    assert!(run.stderr.contains("no analyses found"), "{}", run.stderr);
}

#[tokio::test]
async fn jbxd_status_shows_the_index_counts() {
    let dir = tempfile::tempdir().unwrap();
    let config = indexed_data_dir(dir.path()).await;
    let run = jbxd(&config, &["status"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("index:     2 indexed, 0 failed, 0 pending, 0 not indexable; 7 iocs"),
        "{}",
        run.stdout
    );
    let run = jbxd(&config, &["status", "--json"]).await;
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["index"]["iocs"], 7);
}

#[tokio::test]
async fn jbxd_index_rebuild_records_a_report_it_cannot_read_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = indexed_data_dir(dir.path()).await;
    // The file is not a report the built-in extractor reads (this test's own line format).
    let run = jbxd(&config, &["index", "rebuild", "--webid", "1"]).await;
    assert_eq!(run.code, 3, "{} / {}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("webid 1: jsonfixed: "),
        "{}",
        run.stderr
    );
    let run = jbxd(&config, &["status", "--json"]).await;
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["index"]["failed"], 1, "{doc}");
    assert_eq!(doc["index"]["latest_failure"]["webid"], "1");
    let run = jbxd(&config, &["status"]).await;
    assert!(
        run.stdout.contains("index failed: webid 1 jsonfixed: "),
        "{}",
        run.stdout
    );

    let run = jbxd(&config, &["index", "rebuild", "--webid", "nope"]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("webid nope: no stored reports"),
        "{}",
        run.stderr
    );
}
