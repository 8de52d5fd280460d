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

#[tokio::test]
async fn the_daemon_indexes_the_reports_of_a_finished_item() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let cancel = CancellationToken::new();
    let options = RunOptions {
        notifier: Notifier::disabled(),
        ..RunOptions::default()
    };
    let daemon = tokio::spawn(daemon::run(env.app.clone(), cancel.clone(), options));
    drop_file(env.drop_dir(), "evil.exe", MALICIOUS);
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
