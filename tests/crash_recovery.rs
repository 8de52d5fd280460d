//! The real binary under kill -9: `jbxd run` is killed while a submission is in flight (the
//! server has created it, the reply has not arrived), restarted, and must reconcile the
//! submission by its key instead of submitting again (reliability catalog case 7), then finish
//! the item. Also: SIGTERM stops it cleanly with exit 0 (case 101) and a second instance is
//! refused (case 17).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jbxd::db::{self, Db};
use jbxd::simulator::{Fault, FaultRule, SimConfig, Simulator};
use jbxd::testing::{TEST_API_KEY, wait_until};

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    sim: Simulator,
}

impl Setup {
    async fn new() -> Self {
        let sim = Simulator::start(SimConfig {
            api_key: TEST_API_KEY.into(),
            analysis_seconds: 1,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let drop = dir.path().join("drop");
        std::fs::create_dir_all(&drop).unwrap();
        let config = dir.path().join("jbxd.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"
drop_dir = "{drop}"

[api]
url = "{url}"
accept_tac = true
request_timeout_secs = 60

[intake]
settle_ms = 200
scan_interval_secs = 1
url_poll_ms = 50

[pipeline]
retry_base_secs = 0
retry_cap_secs = 1
reconcile_grace_secs = 0

[poll]
expected_analysis_secs = 0
min_interval_secs = 0
max_interval_secs = 1

[health]
schedule = "*/5 * * * * *"
min_free_disk_mb = 1
"#,
                data = data.display(),
                drop = drop.display(),
                url = sim.api_url(),
            ),
        )
        .unwrap();
        Self { dir, config, sim }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn drop_dir(&self) -> PathBuf {
        self.dir.path().join("drop")
    }

    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_jbxd"))
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("JBX_API_KEY", TEST_API_KEY)
            .env("JBXD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("jbxd run starts")
    }

    async fn db(&self) -> Db {
        let path = self.data_dir().join("jbxd.db");
        let ready = wait_until(Duration::from_secs(30), || {
            let path = path.clone();
            async move { Db::open_existing(&path).await.is_ok() }
        })
        .await;
        assert!(ready, "the daemon never created its database");
        Db::open_existing(&path).await.unwrap()
    }
}

fn sigterm(child: &Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

async fn wait_exit(mut child: Child, within: Duration) -> (std::process::ExitStatus, String) {
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .ok();
                return (status, stderr);
            }
            if std::time::Instant::now() > deadline {
                child.kill().ok();
                panic!("jbxd did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap()
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
    let setup = Setup::new().await;
    // The server creates the submission at once but holds the reply back: the daemon is
    // killed in exactly the window between "accepted" and "recorded".
    setup.sim.faults().add(FaultRule {
        endpoint: Some("submission/new".into()),
        fault: Fault::Latency { ms: 60_000 },
        times: Some(1),
        skip: 0,
    });
    let first = setup.spawn();
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
    let mut first = first;
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

    let second = setup.spawn();
    let done = wait_until(Duration::from_secs(60), || {
        let db = db.clone();
        async move { item_state(&db, item_id).await.as_deref() == Some("done") }
    })
    .await;
    sigterm(&second);
    let (status, stderr) = wait_exit(second, Duration::from_secs(30)).await;
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
    let setup = Setup::new().await;
    let first = setup.spawn();
    let db = setup.db().await;
    // A file dropped while the daemon runs is taken and finished.
    let staging = setup.drop_dir().join(".sample.tmp");
    std::fs::write(&staging, b"JBXD-MALICIOUS crash test sample").unwrap();
    std::fs::rename(&staging, setup.drop_dir().join("sample.exe")).unwrap();

    let second = setup.spawn();
    let (status, stderr) = wait_exit(second, Duration::from_secs(10)).await;
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
    sigterm(&first);
    let (status, stderr) = wait_exit(first, Duration::from_secs(30)).await;
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
