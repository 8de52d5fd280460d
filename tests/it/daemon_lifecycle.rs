//! The daemon's lifecycle in-process: readiness order, stop on cancellation, watchdog pings,
//! the single-instance lock, and the health check driving the global pause (catalog groups G
//! and I).
//!
//! systemd is stood in for by a Unix datagram socket in a temporary directory; the daemon
//! gets it through `RunOptions::notifier` rather than `NOTIFY_SOCKET`, so tests need no
//! process-wide environment and run in parallel.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use jbxd::api::{ApiKey, ClientSettings, JoeClient, RetryPolicy};
use jbxd::app::{App, PauseReason};
use jbxd::config::LoadOptions;
use jbxd::daemon::{self, DaemonOptions, Notifier, RunOptions, health};
use jbxd::db::{self, Db, ItemState};
use jbxd::simulator::{SimConfig, SimMode};
use jbxd::testing::{TestEnv, client_for, wait_until};
use tokio::net::UnixDatagram;
use tokio_util::sync::CancellationToken;

/// A stand-in for systemd's notify socket: every datagram with the time it arrived.
struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
    seen: Vec<(Instant, String)>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        Self {
            path,
            socket,
            seen: Vec::new(),
        }
    }

    fn notifier(&self) -> Notifier {
        Notifier::to_socket(&self.path)
    }

    /// Reads datagrams until one contains `needle` (returns its arrival time) or `timeout`.
    async fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut buf = vec![0u8; 4096];
            match tokio::time::timeout(left, self.socket.recv(&mut buf)).await {
                Ok(Ok(len)) => {
                    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                    let at = Instant::now();
                    let hit = text.lines().any(|l| l.starts_with(needle));
                    self.seen.push((at, text));
                    if hit {
                        return Some(at);
                    }
                }
                Ok(Err(e)) => panic!("notify socket: {e}"),
                Err(_) => return None,
            }
        }
    }

    /// Collects everything that arrives during `period`.
    async fn collect(&mut self, period: Duration) {
        let _ = self.wait_for("\u{0}never", period).await;
    }

    /// Lets `settle` pass (pings already on their way may still come), then asserts that no
    /// watchdog ping arrives during `window`.
    async fn assert_no_pings(&mut self, settle: Duration, window: Duration, why: &str) {
        self.collect(settle).await;
        let since = Instant::now();
        self.collect(window).await;
        assert_eq!(self.count("WATCHDOG=1", since), 0, "{why}");
    }

    /// Asserts that a watchdog ping arrives within 2 s.
    async fn assert_pings_resume(&mut self, why: &str) {
        let resumed = self.wait_for("WATCHDOG=1", Duration::from_secs(2)).await;
        assert!(resumed.is_some(), "{why}");
    }

    fn count(&self, needle: &str, since: Instant) -> usize {
        self.seen
            .iter()
            .filter(|(at, text)| *at >= since && text.lines().any(|l| l.starts_with(needle)))
            .count()
    }

    fn lines(&self) -> Vec<String> {
        self.seen
            .iter()
            .flat_map(|(_, t)| t.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }
}

fn options(notifier: Notifier) -> RunOptions {
    RunOptions {
        stop_timeout: Duration::from_secs(2),
        notifier,
        stall_after: None,
        status_interval: Duration::from_millis(100),
    }
}

type Daemon = tokio::task::JoinHandle<anyhow::Result<()>>;

fn start(app: &App, cancel: &CancellationToken, opts: RunOptions) -> Daemon {
    tokio::spawn(daemon::run(app.clone(), cancel.clone(), opts))
}

async fn item_states(db: &Db) -> Vec<ItemState> {
    db::items::list(db, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.state)
        .collect()
}

/// The WAL was folded into the database at shutdown.
fn assert_checkpointed(app: &App) {
    let wal = PathBuf::from(format!("{}-wal", app.config.db_path().display()));
    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(size, 0, "WAL left with {size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_100_status_then_ready_only_after_the_watch_is_in_place() {
    // A scan interval of an hour: after the start-up scan only the watcher can find a file.
    let env = TestEnv::start(SimConfig::default(), |c| c.intake.scan_interval_secs = 3600).await;
    let mut sock = NotifySocket::bind(env.dir.path());
    let cancel = CancellationToken::new();
    let started = Instant::now();
    // With the watchdog on: no ping may come before READY=1.
    let notifier = sock
        .notifier()
        .with_watchdog(Some(Duration::from_millis(200)));
    let daemon = start(&env.app, &cancel, options(notifier));

    let ready = sock
        .wait_for("READY=1", Duration::from_secs(5))
        .await
        .expect("READY=1 within 5 s on an empty database");
    assert!(ready - started < Duration::from_secs(5));
    let lines = sock.lines();
    let ready_at = lines.iter().position(|l| l == "READY=1").unwrap();
    assert!(
        lines[0].starts_with("STATUS=starting"),
        "first message: {lines:?}"
    );
    assert!(
        lines[..ready_at]
            .iter()
            .any(|l| l.starts_with("STATUS=starting: recovering")),
        "recovery precedes READY: {lines:?}"
    );
    assert!(
        !lines[..ready_at].iter().any(|l| l.starts_with("WATCHDOG")),
        "{lines:?}"
    );

    // Dropped right after READY, found through the watch.
    std::fs::write(
        env.drop_dir().join("after-ready.exe"),
        b"MZ sample after ready",
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            !item_states(&env.app.db).await.is_empty()
        })
        .await,
        "a file dropped after READY is picked up without a periodic scan"
    );

    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("run returns")
        .unwrap();
    result.unwrap();
    assert_checkpointed(&env.app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_101_cancel_sends_stopping_at_once_and_work_resumes_after_restart() {
    let env = TestEnv::start(
        SimConfig {
            analysis_seconds: 2,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    let mut sock = NotifySocket::bind(env.dir.path());
    let cancel = CancellationToken::new();
    let daemon = start(&env.app, &cancel, options(sock.notifier()));
    sock.wait_for("READY=1", Duration::from_secs(5))
        .await
        .unwrap();

    for i in 0..3 {
        let path = env.drop_dir().join(format!("sample-{i}.bin"));
        std::fs::write(&path, format!("sample {i} payload")).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(8), || async {
            item_states(&env.app.db)
                .await
                .contains(&ItemState::Submitted)
        })
        .await,
        "some item reaches submitted"
    );

    let cancelled = Instant::now();
    cancel.cancel();
    let stopping = sock
        .wait_for("STOPPING=1", Duration::from_secs(2))
        .await
        .expect("STOPPING=1 sent");
    assert!(
        stopping - cancelled < Duration::from_millis(500),
        "STOPPING=1 after {:?}",
        stopping - cancelled
    );
    tokio::time::timeout(Duration::from_secs(4), daemon)
        .await
        .expect("run returns within the stop timeout")
        .unwrap()
        .unwrap();
    assert!(cancelled.elapsed() < Duration::from_secs(4));
    assert_checkpointed(&env.app);

    // Restart on the same data: everything finishes.
    let config = (*env.app.config).clone();
    let db = Db::open(&config.db_path()).await.unwrap();
    let app = App::new(config.clone(), db, client_for(&config));
    let cancel = CancellationToken::new();
    let daemon = start(&app, &cancel, options(Notifier::disabled()));
    assert!(
        wait_until(Duration::from_secs(15), || async {
            let states = item_states(&app.db).await;
            states.len() == 3 && states.iter().all(|s| *s == ItemState::Done)
        })
        .await,
        "all items done after the restart: {:?}",
        item_states(&app.db).await
    );
    assert_eq!(env.sim.accepted_submissions().len(), 3, "no duplicates");
    cancel.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_102_watchdog_pings_only_while_the_database_and_workers_make_progress() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let mut sock = NotifySocket::bind(env.dir.path());
    let cancel = CancellationToken::new();
    let mut opts = options(
        sock.notifier()
            .with_watchdog(Some(Duration::from_millis(1000))),
    );
    opts.stall_after = Some(Duration::from_secs(3));
    let daemon = start(&env.app, &cancel, opts);
    sock.wait_for("READY=1", Duration::from_secs(5))
        .await
        .unwrap();
    // A worker asleep for a minute is alive: it beats no more, yet (checked below, more than
    // the 3 s stall limit later) the pings go on.
    env.app
        .heartbeats
        .sleeping_until("sleeping-test-worker", Duration::from_secs(60));
    let slept = Instant::now();

    // Half the interval: about two pings a second.
    let t0 = Instant::now();
    sock.collect(Duration::from_millis(1600)).await;
    let pings = sock.count("WATCHDOG=1", t0);
    assert!((2..=5).contains(&pings), "{pings} pings in 1.6 s");

    // Stall the database writer: another connection holds the write lock.
    let tx = env.app.db.begin_write().await.unwrap();
    sock.assert_no_pings(
        Duration::from_millis(1200),
        Duration::from_millis(1500),
        "no pings while the database is stalled",
    )
    .await;
    tx.rollback().await.unwrap();
    sock.assert_pings_resume("pings resume once the database takes writes again")
        .await;

    assert!(
        slept.elapsed() > Duration::from_secs(3),
        "{:?}",
        slept.elapsed()
    );
    let t_asleep = Instant::now();
    sock.collect(Duration::from_millis(1200)).await;
    assert!(
        sock.count("WATCHDOG=1", t_asleep) > 0,
        "a sleeping worker does not stop the pings"
    );

    // A sleeper not back 3 s after its wake-up time stops them; its next beat resumes them.
    env.app
        .heartbeats
        .sleeping_until("overdue-test-worker", Duration::from_millis(300));
    sock.assert_no_pings(
        Duration::from_millis(3800),
        Duration::from_millis(1200),
        "no pings while a sleeping worker is overdue",
    )
    .await;
    env.app.heartbeats.beat("overdue-test-worker");
    sock.assert_pings_resume("pings resume once the worker beats again")
        .await;

    // A worker that stops beating (injected: a name that beats once) stops the pings too.
    env.app.heartbeats.beat("stalled-test-worker");
    sock.assert_no_pings(
        Duration::from_millis(3500),
        Duration::from_millis(1200),
        "no pings while a worker is stalled",
    )
    .await;

    cancel.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_inserted_by_another_process_is_taken_at_once_without_polling_for_it() {
    use sqlx::Connection as _;
    // An hour between polls: only the database watch can explain a quick pickup.
    let env = TestEnv::start(SimConfig::default(), |c| c.intake.url_poll_ms = 3_600_000).await;
    let mut sock = NotifySocket::bind(env.dir.path());
    let cancel = CancellationToken::new();
    let daemon = start(&env.app, &cancel, options(sock.notifier()));
    sock.wait_for("READY=1", Duration::from_secs(5))
        .await
        .unwrap();
    // Let start-up's own writes and the first poll pass.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A producer: its own connection, as `sqlite3` from another process would be.
    let mut producer = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(env.app.config.db_path())
            .busy_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    sqlx::query("INSERT INTO url_queue (url) VALUES ('https://example.com/producer')")
        .execute(&mut producer)
        .await
        .unwrap();
    let inserted = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            !item_states(&env.app.db).await.is_empty()
        })
        .await,
        "the row was not taken"
    );
    assert!(
        inserted.elapsed() < Duration::from_secs(3),
        "taken after {:?}",
        inserted.elapsed()
    );
    producer.close().await.unwrap();
    cancel.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_103_no_watchdog_pings_without_watchdog_usec_or_for_another_pid() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let mut sock = NotifySocket::bind(env.dir.path());
    let path = sock.path.to_string_lossy().into_owned();
    // WATCHDOG_USEC set, but WATCHDOG_PID names another process: inherited, not ours.
    let notifier = Notifier::from_vars(Some(&path), Some("1000000"), Some("1"), std::process::id());
    assert_eq!(notifier.watchdog(), None);
    let cancel = CancellationToken::new();
    let daemon = start(&env.app, &cancel, options(notifier));
    let t0 = Instant::now();
    sock.wait_for("READY=1", Duration::from_secs(5))
        .await
        .unwrap();
    sock.collect(Duration::from_millis(1500)).await;
    assert_eq!(sock.count("WATCHDOG", t0), 0, "{:?}", sock.lines());
    cancel.cancel();
    daemon.await.unwrap().unwrap();

    // No WATCHDOG_USEC at all.
    let notifier = Notifier::from_vars(Some(&path), None, None, std::process::id());
    assert_eq!(notifier.watchdog(), None);
}

/// Writes a config file and a 0600 key file for the bootstrap.
fn bootstrap_config(root: &Path, api_url: &str, extra: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let key = root.join("api_key");
    std::fs::write(&key, jbxd::testing::TEST_API_KEY).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = root.join("jbxd.toml");
    let text = format!(
        "data_dir = \"{}\"\ndrop_dir = \"{}\"\n{extra}\n[api]\nurl = \"{api_url}\"\nkey_file = \"{}\"\n[log]\nlevel = \"error\"\n",
        root.join("boot-data").display(),
        root.join("boot-drop").display(),
        key.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_17_a_second_instance_exits_78_naming_the_lock_holder() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let root = env.dir.path();
    let path = bootstrap_config(root, &env.sim.api_url(), "");
    let data = root.join("boot-data");
    std::fs::create_dir_all(&data).unwrap();
    let lock_path = data.join(daemon::lock::LOCK_FILE);
    let held = daemon::lock::acquire(&lock_path).unwrap();
    let code = daemon::main(DaemonOptions {
        load: LoadOptions {
            config_file: Some(path),
            overrides: vec![],
        },
        new_database: false,
    })
    .await;
    assert_eq!(code, ExitCode::from(78));
    let text = daemon::lock::acquire(&lock_path).unwrap_err().to_string();
    assert!(
        text.contains(&format!(
            "another instance (pid {}) holds the lock {}",
            std::process::id(),
            lock_path.display()
        )),
        "{text}"
    );
    // The second instance touched nothing: no database was created.
    assert!(!data.join("jbxd.db").exists());
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_104_configuration_errors_exit_78_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = bootstrap_config(dir.path(), "http://127.0.0.1:9", "bogus_key = 1");
    let code = daemon::main(DaemonOptions {
        load: LoadOptions {
            config_file: Some(path),
            overrides: vec![],
        },
        new_database: false,
    })
    .await;
    assert_eq!(code, ExitCode::from(78));
    assert!(!dir.path().join("boot-data").exists());
}

fn wrong_key_client(app: &App) -> JoeClient {
    let mut s = ClientSettings::new(&app.config.api.url, ApiKey::new("not-the-key").unwrap());
    s.retry = RetryPolicy::none();
    JoeClient::new(s).unwrap()
}

async fn paused(app: &App, reason: PauseReason) -> bool {
    app.pauses()
        .await
        .unwrap()
        .iter()
        .any(|p| p.reason == reason)
}

async fn stored_status(app: &App, name: &str) -> String {
    db::health::all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.status)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_111_maintenance_pauses_within_one_check_and_clears_after() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let report = health::check_once(&env.app).await;
    assert_eq!(report.overall(), health::Status::Ok, "{report:?}");
    for name in ["server", "api_key", "quota", "database", "disk", "terms"] {
        assert_eq!(stored_status(&env.app, name).await, "ok", "{name}");
    }

    env.sim.set_maintenance(true);
    let report = health::check_once(&env.app).await;
    assert_eq!(
        report.get("server").unwrap().status,
        health::Status::Degraded
    );
    assert!(paused(&env.app, PauseReason::Maintenance).await);
    assert_eq!(stored_status(&env.app, "server").await, "degraded");
    assert!(!env.app.may_call_api().await.unwrap());

    env.sim.set_maintenance(false);
    health::check_once(&env.app).await;
    assert!(!paused(&env.app, PauseReason::Maintenance).await);
    assert_eq!(stored_status(&env.app, "server").await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_111_an_invalid_key_pauses_and_a_valid_one_resumes() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let bad = App {
        client: wrong_key_client(&env.app),
        ..env.app.clone()
    };
    let report = health::check_once(&bad).await;
    assert_eq!(
        report.get("api_key").unwrap().status,
        health::Status::Failed
    );
    assert_eq!(report.overall(), health::Status::Failed);
    assert!(paused(&env.app, PauseReason::InvalidApiKey).await);
    assert_eq!(stored_status(&env.app, "api_key").await, "failed");
    let text = format!("{report:?}");
    assert!(!text.contains(jbxd::testing::TEST_API_KEY));

    health::check_once(&env.app).await;
    assert!(!paused(&env.app, PauseReason::InvalidApiKey).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_111_quota_disk_and_terms_drive_their_pauses() {
    let env = TestEnv::start(
        SimConfig {
            daily_quota: Some(0),
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    // Terms: a refused submission paused; accept_tac is on in the test config, so the check
    // lifts it.
    env.app
        .pause(PauseReason::TermsNotAccepted, "refused")
        .await
        .unwrap();
    let report = health::check_once(&env.app).await;
    assert_eq!(
        report.get("quota").unwrap().status,
        health::Status::Degraded
    );
    assert!(paused(&env.app, PauseReason::QuotaExceeded).await);
    assert!(!env.app.may_submit().await.unwrap());
    assert!(env.app.may_call_api().await.unwrap(), "polls go on");
    assert!(!paused(&env.app, PauseReason::TermsNotAccepted).await);

    // Disk: a threshold no disk meets.
    let mut config = (*env.app.config).clone();
    config.health.min_free_disk_mb = u64::MAX / (1024 * 1024);
    let low = App {
        config: std::sync::Arc::new(config),
        ..env.app.clone()
    };
    health::check_once(&low).await;
    assert!(paused(&env.app, PauseReason::DiskLow).await);
    assert!(!env.app.may_write_locally().await.unwrap());
    health::check_once(&env.app).await;
    assert!(!paused(&env.app, PauseReason::DiskLow).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_premise_servers_prove_the_key_with_server_info() {
    let env = TestEnv::start(
        SimConfig {
            mode: SimMode::OnPrem,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    let report = health::check_once(&env.app).await;
    assert_eq!(
        report.get("api_key").unwrap().status,
        health::Status::Ok,
        "{report:?}"
    );
    assert!(report.get("quota").unwrap().detail.contains("on-premise"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_job_runs_on_schedule_and_status_lines_show_the_pause() {
    // fast_config schedules the health check every second.
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let mut sock = NotifySocket::bind(env.dir.path());
    let cancel = CancellationToken::new();
    let daemon = start(&env.app, &cancel, options(sock.notifier()));
    sock.wait_for("READY=1", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || async {
            stored_status(&env.app, "watcher").await == "ok"
        })
        .await,
        "the first check runs at start and sees the watch"
    );

    env.sim.set_maintenance(true);
    assert!(
        sock.wait_for(
            "STATUS=idle, no items; paused: maintenance",
            Duration::from_secs(4)
        )
        .await
        .is_some(),
        "{:?}",
        sock.lines()
    );
    env.sim.set_maintenance(false);
    assert!(
        sock.wait_for("STATUS=idle, no items", Duration::from_secs(4))
            .await
            .is_some()
    );
    assert!(!paused(&env.app, PauseReason::Maintenance).await);

    cancel.cancel();
    daemon.await.unwrap().unwrap();

    // The job stopped with the daemon: no check runs any more.
    let db = Db::open(&env.app.config.db_path()).await.unwrap();
    let before = db::health::all(&db).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(db::health::all(&db).await.unwrap(), before);
}
