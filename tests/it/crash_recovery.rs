//! The real binary under kill -9: `jbxd run` is killed while a submission is in flight (the
//! server has created it, the reply has not arrived), restarted, and must reconcile the
//! submission by its key instead of submitting again (reliability catalog case 7), then finish
//! the item. Also: SIGTERM stops it cleanly with exit 0 (case 101) and a second instance is
//! refused (case 17).

use crate::crash_harness;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crash_harness::{Harness, signal, wait_exit};
use jbxd::db::{self, Db};
use jbxd::simulator::{Fault, FaultRule, SimConfig};
use jbxd::testing::{TEST_API_KEY, wait_until};

/// The crash harness with a simulator whose analyses take 1 s.
async fn harness() -> Harness {
    Harness::new(
        SimConfig {
            analysis_seconds: 1,
            ..SimConfig::default()
        },
        "",
    )
    .await
}

async fn item_state(db: &Db, id: i64) -> Option<String> {
    db::items::get(db, id)
        .await
        .ok()
        .flatten()
        .map(|i| i.state.as_str().to_owned())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_7_a_kill_after_the_server_accepted_the_submission_is_reconciled_without_a_duplicate()
{
    let mut setup = harness().await;
    // The server creates the submission at once but holds the reply back: the daemon is
    // killed in exactly the window between "accepted" and "recorded".
    setup.sim.faults().add(FaultRule {
        endpoint: Some("submission/new".into()),
        fault: Fault::Latency { ms: 60_000 },
        times: Some(1),
        skip: 0,
    });
    let mut first = setup.spawn(None);
    let db = setup.db().await;
    let queue_id = db::url_queue::insert(&db, "https://crash.example/case-7", None)
        .await
        .unwrap();
    let sim = &setup.sim;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            sim.accepted_submissions().len() == 1
        })
        .await,
        "the submission never reached the simulator"
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let item_id: i64 = sqlx::query_scalar("SELECT item_id FROM url_queue WHERE id = ?")
        .bind(queue_id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        item_state(&db, item_id).await.as_deref(),
        Some("submitting")
    );

    let second = setup.spawn(None);
    let done = wait_until(Duration::from_secs(60), || {
        let db = db.clone();
        async move { item_state(&db, item_id).await.as_deref() == Some("done") }
    })
    .await;
    signal(&second, libc::SIGTERM);
    let status = wait_exit(second, Duration::from_secs(30)).await;
    // Both runs' logs: the key must be in neither.
    let stderr = setup.all_logs();
    assert!(
        done,
        "item not done: {:?}\n{stderr}",
        db::items::get(&db, item_id).await
    );
    assert!(status.success(), "SIGTERM exit: {status:?}\n{stderr}");

    assert_eq!(
        setup.sim.accepted_submissions().len(),
        1,
        "exactly one submission on the server"
    );
    let submits = setup
        .sim
        .request_log()
        .iter()
        .filter(|r| r.endpoint == "submission/new")
        .count();
    assert_eq!(submits, 1, "nothing was sent again");
    let (status, submission_id): (String, Option<String>) =
        sqlx::query_as("SELECT status, submission_id FROM url_queue WHERE id = ?")
            .bind(queue_id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(status, "done");
    // Adopted through search, which finds analyses, not submissions: the submission id is
    // only known when the reply arrived. Either way it can only be the one submission.
    assert!(
        submission_id.is_none()
            || submission_id == setup.sim.accepted_submissions().first().cloned(),
        "{submission_id:?}"
    );
    let analyses = db::analyses::for_item(&db, item_id).await.unwrap();
    assert_eq!(analyses.len(), 1, "{analyses:?}");
    assert_eq!(
        analyses[0].filename.as_deref(),
        Some("https://crash.example/case-7")
    );
    assert!(
        !stderr.contains(TEST_API_KEY),
        "the key leaked into the log"
    );

    // Every stored report matches its recorded hash; no temporary files are left.
    let store = jbxd::storage::Store::new(&setup.data_dir());
    let stored = db::analyses::stored_paths(&db).await.unwrap();
    assert!(!stored.is_empty());
    for (path, size, sha256) in stored {
        assert!(store.verify(&path, size as u64, &sha256).unwrap(), "{path}");
    }
    let mut files = Vec::new();
    walk(&setup.data_dir(), &mut files);
    assert!(
        !files.iter().any(|p| p.to_string_lossy().ends_with(".part")),
        "{files:?}"
    );
    assert_eq!(db.integrity_check().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_17_a_second_instance_is_refused_and_case_101_sigterm_exits_cleanly() {
    let mut setup = harness().await;
    let first = setup.spawn(None);
    let db = setup.db().await;
    // A file dropped while the daemon runs is taken and finished.
    let staging = setup.drop_dir().join(".sample.tmp");
    std::fs::write(&staging, b"JBXD-MALICIOUS crash test sample").unwrap();
    std::fs::rename(&staging, setup.drop_dir().join("sample.exe")).unwrap();

    let second = setup.spawn(None);
    let status = wait_exit(second, Duration::from_secs(10)).await;
    let stderr = setup.last_log();
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("another instance"), "{stderr}");
    assert!(
        stderr.contains(&first.id().to_string()),
        "names the pid: {stderr}"
    );

    let finished = wait_until(Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            db::items::list(&db, 10)
                .await
                .map(|items| items.len() == 1 && items[0].state.is_terminal())
                .unwrap_or(false)
        }
    })
    .await;
    signal(&first, libc::SIGTERM);
    let status = wait_exit(first, Duration::from_secs(30)).await;
    let stderr = setup.all_logs();
    assert!(finished, "{:?}\n{stderr}", db::items::list(&db, 10).await);
    assert!(status.success(), "{status:?}\n{stderr}");
    let items = db::items::list(&db, 10).await.unwrap();
    assert_eq!(items[0].state.as_str(), "done", "{items:?}");
    assert!(!setup.drop_dir().join("sample.exe").exists());
    // A clean stop checkpoints the WAL: the database file alone holds everything.
    let wal = setup.data_dir().join("jbxd.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "WAL not checkpointed"
    );
}
