//! The index end to end: the daemon (in-process, against the simulator) downloads the reports
//! of a dropped sample, completes the item, and its index worker, woken by the download
//! worker, indexes the stored reports with the built-in extractor.

use std::path::Path;
use std::time::Duration;

use jbxd::daemon::{self, Notifier, RunOptions};
use jbxd::db::{self, Db, ItemState};
use jbxd::simulator::SimConfig;
use jbxd::testing::{TestEnv, wait_until};
use tokio_util::sync::CancellationToken;

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
    // Default report types: html (not read by the index), irjsonfixed and xml.
    let by_type = |t: &str| states.iter().find(|(ty, _, _)| ty == t).unwrap().clone();
    assert_eq!(by_type("html").1.as_deref(), Some("not_indexable"));
    for t in ["irjsonfixed", "xml"] {
        let (_, state, error) = by_type(t);
        assert!(
            matches!(state.as_deref(), Some("indexed" | "failed")),
            "{t}: {state:?}"
        );
        assert_eq!(
            state.as_deref() == Some("failed"),
            error.is_some(),
            "{t}: {error:?}"
        );
    }
}
