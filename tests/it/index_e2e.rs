//! The index end to end: the daemon (in-process, against the simulator) downloads the reports
//! of a dropped sample, completes the item, and its index worker, woken by the download
//! worker, indexes the stored reports with the built-in extractor.

use std::path::Path;
use std::time::Duration;

use jbxd::daemon::{self, Notifier, RunOptions};
use jbxd::db::indicators::{self, SightingFilter};
use jbxd::db::{self, Db, ItemState};
use jbxd::ioc::lookup_forms;
use jbxd::simulator::SimConfig;
use jbxd::testing::{TestEnv, wait_until};
use tokio_util::sync::CancellationToken;

/// kind, value, malicious, private.
type IocRow = (String, String, Option<bool>, Option<bool>);

const MALICIOUS: &[u8] = b"MZ payload JBXD-MALICIOUS index\n";

fn drop_file(drop_dir: &Path, name: &str, content: &[u8]) {
    let temp = drop_dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, content).unwrap();
    std::fs::rename(&temp, drop_dir.join(name)).unwrap();
}

async fn index_states(db: &Db) -> Vec<(String, Option<String>, Option<String>)> {
    sqlx::query_as("SELECT type, index_state, index_error FROM reports ORDER BY type")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

/// Runs the daemon until the one dropped sample is done and every stored report has an index
/// state other than pending, then stops it; the reports' (type, index state, error).
async fn run_until_indexed(
    env: &TestEnv,
    name: &str,
) -> Vec<(String, Option<String>, Option<String>)> {
    let cancel = CancellationToken::new();
    let options = RunOptions {
        notifier: Notifier::disabled(),
        ..RunOptions::default()
    };
    let daemon = tokio::spawn(daemon::run(env.app.clone(), cancel.clone(), options));
    drop_file(env.drop_dir(), name, MALICIOUS);
    let db = env.app.db.clone();
    let settled = wait_until(Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            let items = db::items::list(&db, 10).await.unwrap();
            let states = index_states(&db).await;
            items.len() == 1
                && items[0].state == ItemState::Done
                && !states.is_empty()
                && states
                    .iter()
                    .all(|(_, s, _)| s.is_some() && s.as_deref() != Some("pending"))
        }
    })
    .await;
    let states = index_states(&db).await;
    assert!(settled, "not indexed: {states:#?}");
    cancel.cancel();
    daemon.await.unwrap().unwrap();
    states
}

#[tokio::test]
async fn the_daemon_indexes_the_reports_of_a_finished_item() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let states = run_until_indexed(&env, "evil.exe").await;
    // Default report types: html (not read by the index), irjsonfixed and xml, both read.
    let by_type = |t: &str| states.iter().find(|(ty, _, _)| ty == t).unwrap().clone();
    assert_eq!(by_type("html").1.as_deref(), Some("not_indexable"));
    for t in ["irjsonfixed", "xml"] {
        assert_eq!(by_type(t), (t.to_owned(), Some("indexed".to_owned()), None));
    }
    // The daemon closed its pool when it stopped.
    let db = Db::open_existing(&env.app.config.db_path()).await.unwrap();
    let webid: String = sqlx::query_scalar("SELECT webid FROM analyses")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let rows: Vec<IocRow> =
        sqlx::query_as("SELECT kind, value, malicious, private FROM iocs WHERE webid = ?")
            .bind(&webid)
            .fetch_all(db.pool())
            .await
            .unwrap();
    let kinds: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    for kind in ["domain", "ip", "sha256"] {
        assert!(kinds.contains(kind), "no {kind} indexed: {rows:#?}");
    }
    assert!(
        rows.iter().any(|r| r.0 == "ip" && r.3 == Some(true)),
        "the private address: {rows:#?}"
    );
    assert!(rows.iter().any(|r| r.2 == Some(true)), "{rows:#?}");
    // Values are in their normal form, whatever case the reports use.
    for (kind, value, ..) in &rows {
        if kind != "file_name" && kind != "url" {
            assert_eq!(value, &value.to_lowercase(), "{kind}");
        }
    }
    let techniques: i64 =
        sqlx::query_scalar("SELECT count(*) FROM attack_techniques WHERE webid = ?")
            .bind(&webid)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(techniques > 0);
    // The item's own hash is found as pasted (upper case) and joined to the verdict.
    let sha256 = db::items::list(&db, 1).await.unwrap()[0]
        .sha256
        .clone()
        .unwrap();
    let found = indicators::sightings(
        &db,
        &SightingFilter {
            values: Some(lookup_forms(&sha256.to_uppercase(), None)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        !found.is_empty(),
        "the sample's sha256 is not in the index: {rows:#?}"
    );
    assert_eq!(found[0].detection.as_deref(), Some("malicious"));
    assert_eq!(found[0].item_name.as_deref(), Some("evil.exe"));
}

/// Issue 10 §4: with `reports.encrypt = true` every analysis is encrypted on the server, the
/// daemon keeps the downloaded AES zips as they came, and the index still reads their content
/// with the configured report password.
#[tokio::test]
async fn the_daemon_keeps_encrypted_reports_as_zips_and_indexes_their_content() {
    use std::os::unix::fs::PermissionsExt;
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("report_password");
    std::fs::write(&password_file, "index-e2e-report-password\n").unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = TestEnv::start(SimConfig::default(), |config| {
        config.reports.encrypt = true;
        config.reports.password_file = Some(password_file.clone());
    })
    .await;
    run_until_indexed(&env, "locked.exe").await;
    let db = Db::open_existing(&env.app.config.db_path()).await.unwrap();
    let (webid, encrypted): (String, Option<i64>) =
        sqlx::query_as("SELECT webid, encrypted FROM analyses")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        encrypted,
        Some(1),
        "the server did not encrypt the analysis"
    );
    for t in ["irjsonfixed", "xml"] {
        let (path, state, error): (String, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT path, index_state, index_error FROM reports WHERE webid = ? AND type = ?",
        )
        .bind(&webid)
        .bind(t)
        .fetch_one(db.pool())
        .await
        .unwrap();
        let stored = std::fs::read(env.app.config.data_dir.join(&path)).unwrap();
        assert!(
            stored.starts_with(b"PK\x03\x04"),
            "{t} is not kept as the zip"
        );
        assert_eq!(
            (state.as_deref(), error.as_deref()),
            (Some("indexed"), None),
            "{t}"
        );
    }
    let domains: i64 =
        sqlx::query_scalar("SELECT count(*) FROM iocs WHERE webid = ? AND kind = 'domain'")
            .bind(&webid)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(domains > 0, "no domain read from the encrypted reports");
}
