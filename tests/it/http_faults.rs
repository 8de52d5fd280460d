//! HTTP faults (RELIABILITY.md group D): the client-wide `Retry-After` hold-off,
//! full-jitter backoff, the daemon's circuit breaker, download stalls and slowloris bodies,
//! truncated bodies and HTML where JSON was expected. Test names cite the catalog case.
//!
//! Timings are shrunk: the breaker probes every `pipeline.retry_cap_secs` (1 s in the test
//! configuration) instead of 60 s, `Retry-After` values are a few seconds, and the download
//! deadlines are a second.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use jbxd::api::{ApiKey, ClientSettings, JoeClient, RetryPolicy, SubmissionParams};
use jbxd::app::{App, StepOutcome};
use jbxd::breaker;
use jbxd::db::url_queue::{Applied, UrlDecision};
use jbxd::db::{self, Db, Item, ItemState};
use jbxd::pipeline::{self, poll, reconcile, submit};
use jbxd::simulator::{Fault, FaultRule, RequestRecord, SimConfig, Simulator};
use jbxd::testing::{
    TEST_API_KEY, TestEnv, all_terminal, client_for, drive_until, fast_config, wait_until,
};
use tokio_util::sync::CancellationToken;

// ---- helpers ----------------------------------------------------------------------------

/// Queues a URL as a producer would, and lets intake accept it.
async fn add_url(app: &App, url: &str) -> i64 {
    let row = db::url_queue::insert(&app.db, url, None).await.unwrap();
    let decision = UrlDecision::Accept {
        url: url.to_owned(),
        params: None,
        force: false,
    };
    match db::url_queue::apply(&app.db, &[(row, decision)], 0)
        .await
        .unwrap()[0]
    {
        Applied::Queued(id) => id,
        ref other => panic!("not queued: {other:?}"),
    }
}

async fn items(app: &App) -> Vec<Item> {
    db::items::list(&app.db, 1000).await.unwrap()
}

async fn item(app: &App, id: i64) -> Item {
    db::items::get(&app.db, id).await.unwrap().unwrap()
}

/// Steps the workers until every item is terminal, or panics after `timeout`.
async fn drive_to_end(app: &App, timeout: Duration) -> Vec<Item> {
    drive_until(app, timeout, all_terminal).await
}

fn rule(endpoint: &str, fault: Fault, times: u32) -> FaultRule {
    FaultRule::times(Some(endpoint), fault, times)
}

/// The simulator's log in arrival order.
fn log(sim: &Simulator) -> Vec<RequestRecord> {
    let mut log = sim.request_log();
    log.sort_by_key(|r| (r.at_ms, r.seq));
    log
}

/// An address on loopback where nothing listens (bound, then released).
fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// An App on `dir` talking to `api_url` (which may be down), with the test configuration.
async fn app_at(dir: &Path, api_url: &str, tweak: impl FnOnce(&mut jbxd::config::Config)) -> App {
    let mut config = fast_config(dir, api_url);
    tweak(&mut config);
    std::fs::create_dir_all(&config.drop_dir).unwrap();
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let db = Db::open(&config.db_path()).await.unwrap();
    let client = client_for(&config);
    let app = App::new(config, db, client);
    app.store.prepare().unwrap();
    app
}

/// The App of `env` with another client (same configuration and database).
fn with_client(env: &TestEnv, client: JoeClient) -> App {
    App::new((*env.app.config).clone(), env.app.db.clone(), client)
}

fn fast_settings(sim: &Simulator) -> ClientSettings {
    let mut s = ClientSettings::new(sim.api_url(), ApiKey::new(TEST_API_KEY).unwrap());
    s.accept_tac = true;
    s.retry = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
    };
    s
}

async fn health_row(app: &App, name: &str) -> Option<db::health::HealthRow> {
    db::health::all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == name)
}

/// Starts the pipeline's worker loops.
fn run_workers(
    app: &App,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(pipeline::run(app.clone(), cancel.clone()));
    app.wake_all();
    (cancel, handle)
}

async fn stop_workers(
    (cancel, handle): (
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ),
) {
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("workers stop")
        .unwrap()
        .unwrap();
}

/// Watches the breaker while it is open: every request sent in `window` must be one of its
/// probes, and probes come at most once per probe interval (1 s here, jittered up to +20 %).
async fn assert_only_probes_while_open(app: &App, window: Duration) {
    // Calls that were in flight when it opened finish their own (fast) retries first.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(app.breaker_open());
    let sent_before = app.client.requests_sent();
    let probes_before = app.breaker_status().probes;
    tokio::time::sleep(window).await;
    assert!(app.breaker_open(), "still open");
    let sent = app.client.requests_sent() - sent_before;
    let probes = u64::from(app.breaker_status().probes - probes_before);
    assert_eq!(sent, probes, "only server/online probes while open");
    let interval = breaker::probe_interval(&app.config);
    let most = (window.as_secs_f64() / interval.as_secs_f64()).ceil() as u64 + 1;
    assert!(
        (1..=most).contains(&probes),
        "{probes} probes in {window:?}"
    );
}

// ---- 58 / 78: server down ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_58_server_down_opens_the_breaker_only_probes_fails_nothing_and_drains_after_recovery()
{
    let dir = tempfile::tempdir().unwrap();
    let addr = closed_port();
    // Few attempts per item: without the breaker the outage would fail every item.
    let app = app_at(dir.path(), &format!("http://{addr}/api"), |c| {
        c.pipeline.max_attempts = 2;
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(add_url(&app, &format!("https://example.com/outage/{n}")).await);
    }
    let workers = run_workers(&app);
    assert!(
        wait_until(Duration::from_secs(10), || async { app.breaker_open() }).await,
        "the breaker opens"
    );
    assert_only_probes_while_open(&app, Duration::from_millis(3200)).await;

    // Visible to operators: the health row and the STATUS= line.
    let row = health_row(&app, "breaker").await.expect("breaker row");
    assert_eq!(row.status, "degraded");
    assert!(row.detail.unwrap().contains("unreachable"));
    let status = jbxd::daemon::status_line(&app).await;
    assert!(status.contains("circuit breaker open"), "{status}");
    // None failed; at most the failure before the breaker opened counted (two submissions
    // run at once, so one may finish its tries before the fifth failure).
    for id in &ids {
        let i = item(&app, *id).await;
        assert_eq!(i.state, ItemState::Queued, "{i:?}");
        assert!(i.attempts <= 1, "{i:?}");
    }

    // The server comes back on the same address.
    let sim = Simulator::start(SimConfig {
        listen: addr,
        api_key: TEST_API_KEY.into(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let drained = wait_until(Duration::from_secs(15), || async {
        let all = items(&app).await;
        all.iter().all(|i| i.state == ItemState::Done)
    })
    .await;
    assert!(drained, "{:#?}", items(&app).await);
    assert!(!app.breaker_open());
    assert_eq!(health_row(&app, "breaker").await.unwrap().status, "ok");
    assert_eq!(sim.accepted_submissions().len(), 3, "no duplicates");
    stop_workers(workers).await;
}

#[tokio::test]
async fn case_78_a_dns_failure_is_transient_opens_the_breaker_and_uses_no_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "http://jbxd-test.invalid/api", |c| {
        c.pipeline.max_attempts = 2;
    })
    .await;
    let a = add_url(&app, "https://example.com/dns/a").await;
    let b = add_url(&app, "https://example.com/dns/b").await;
    // Two submissions, three tries each: six failures, the breaker opens.
    submit::run_once(&app).await.unwrap();
    assert!(app.breaker_open());
    for id in [a, b] {
        let i = item(&app, id).await;
        // Only a failure before the fifth one can count; nothing fails.
        assert_eq!(i.state, ItemState::Queued, "{i:?}");
        assert!(i.attempts <= 1, "{i:?}");
        let error = i.error.unwrap();
        assert!(error.contains("cannot connect"), "{error}");
        assert!(!error.contains(TEST_API_KEY));
    }
    // While open the workers claim nothing.
    let sent = app.client.requests_sent();
    assert_eq!(
        submit::run_once(&app).await.unwrap(),
        StepOutcome::Paused,
        "no probe is due yet"
    );
    assert_eq!(poll::run_once(&app).await.unwrap(), StepOutcome::Paused);
    assert_eq!(app.client.requests_sent(), sent);
    // After the probe interval the next gate probes (one request) and stays closed.
    tokio::time::sleep(breaker::probe_interval(&app.config).mul_f64(1.25)).await;
    assert_eq!(submit::run_once(&app).await.unwrap(), StepOutcome::Paused);
    assert_eq!(app.client.requests_sent(), sent + 1);
    assert_eq!(app.breaker_status().probes, 1);
    assert!(
        items(&app)
            .await
            .iter()
            .all(|i| i.state == ItemState::Queued)
    );
}

// ---- 62 / 63: rate limits -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_62_retry_after_holds_back_every_api_request_of_the_client_for_the_window() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let client = JoeClient::new(fast_settings(&env.sim)).unwrap();
    env.sim.faults().add(rule(
        "server/info",
        Fault::RateLimit {
            retry_after: Some("2".into()),
        },
        1,
    ));
    let started = Instant::now();
    let limited = tokio::spawn({
        let client = client.clone();
        async move { client.server_info().await }
    });
    // Other calls of other "workers" (clones) start while the hold-off is on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let others = [
        tokio::spawn({
            let client = client.clone();
            async move { client.server_online().await.map(drop) }
        }),
        tokio::spawn({
            let client = client.clone();
            async move { client.server_systems().await.map(drop) }
        }),
    ];
    limited.await.unwrap().unwrap();
    for other in others {
        other.await.unwrap().unwrap();
    }
    assert!(started.elapsed() >= Duration::from_secs(2));

    let log = log(&env.sim);
    let first = &log[0];
    assert_eq!(
        (first.endpoint.as_str(), first.http_status),
        ("server/info", Some(429))
    );
    assert_eq!(log.len(), 4, "{log:#?}");
    for later in &log[1..] {
        assert!(
            later.at_ms >= first.at_ms + 1950,
            "{} sent {} ms after the 429",
            later.endpoint,
            later.at_ms - first.at_ms
        );
    }
    assert_eq!(client.hold_off_remaining(), None);
}

#[tokio::test]
async fn case_62_an_http_date_retry_after_is_honoured() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let client = JoeClient::new(fast_settings(&env.sim)).unwrap();
    let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    env.sim.faults().add(rule(
        "server/info",
        Fault::RateLimit {
            retry_after: Some(when),
        },
        1,
    ));
    client.server_info().await.unwrap();
    let log = log(&env.sim);
    assert_eq!(log.len(), 2);
    let gap = log[1].at_ms - log[0].at_ms;
    // The date has whole seconds: 2 to 3 s from the 429.
    assert!((1900..=3500).contains(&gap), "gap {gap} ms");
}

#[tokio::test]
async fn case_62_a_garbage_or_negative_retry_after_is_ignored_and_backoff_used() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let client = JoeClient::new(fast_settings(&env.sim)).unwrap();
    for value in ["soon", "-5", ""] {
        env.sim.faults().add(rule(
            "server/info",
            Fault::RateLimit {
                retry_after: Some(value.into()),
            },
            1,
        ));
        let started = Instant::now();
        client.server_info().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{value:?}: backoff (≤ 200 ms), not a server wait"
        );
        assert_eq!(client.hold_off_remaining(), None, "{value:?}");
    }
}

#[tokio::test]
async fn case_62_a_huge_retry_after_is_capped_at_an_hour_and_holds_everything() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let client = JoeClient::new(fast_settings(&env.sim)).unwrap();
    env.sim.faults().add(rule(
        "server/info",
        Fault::RateLimit {
            retry_after: Some("999999".into()),
        },
        1,
    ));
    // Longer than this caller's max_retry_after (5 s): the call ends with the server's error.
    let error = client.server_info().await.unwrap_err();
    assert_eq!(error.status(), Some(429));
    let left = client.hold_off_remaining().expect("holding");
    assert!(
        left <= Duration::from_secs(3600) && left > Duration::from_secs(3590),
        "{left:?}"
    );
    // Any other request of the client waits too.
    let held = tokio::time::timeout(Duration::from_millis(500), client.server_online()).await;
    assert!(held.is_err(), "held back");
    assert_eq!(env.sim.request_log().len(), 1);
}

#[test]
fn case_63_full_jitter_backoff_with_a_seeded_rng_gives_the_precomputed_sequence() {
    let policy = RetryPolicy {
        max_attempts: 40,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(300),
        max_retry_after: Duration::from_secs(3600),
    };
    let mut rng = fastrand::Rng::with_seed(63);
    let gaps: Vec<Duration> = (1..=30).map(|a| policy.backoff_with(a, &mut rng)).collect();
    // The same seed gives the same sequence: each gap is its ceiling times the next draw.
    let mut check = fastrand::Rng::with_seed(63);
    for (i, gap) in gaps.iter().enumerate() {
        let attempt = i as u32 + 1;
        let ceiling = Duration::from_secs(1u64 << (attempt - 1).min(20)).min(policy.cap);
        assert_eq!(policy.ceiling(attempt), ceiling);
        assert_eq!(*gap, ceiling.mul_f64(check.f64()), "attempt {attempt}");
        assert!(*gap <= ceiling);
    }
    assert!(gaps.iter().any(|g| *g != gaps[0]), "gaps not all equal");
    // After 10 consecutive 429s the ceiling is the cap; full jitter averages cap / 2. Over 20
    // draws the mean is cap/2 ± 19 s (one standard deviation), so the catalog's "≥ 2 min" is a
    // likely outcome, not a law: assert the honest bound for 20 draws, and cap/2 ± 5 % over
    // many.
    let later = &gaps[10..30];
    let mean = later.iter().sum::<Duration>() / later.len() as u32;
    assert!(
        mean >= Duration::from_secs(75) && mean <= Duration::from_secs(225),
        "mean gap {mean:?}"
    );
    assert!(later.iter().all(|g| *g <= policy.cap));
    let many: Duration = (0..2000).map(|_| policy.backoff_with(20, &mut rng)).sum();
    let mean = many / 2000;
    assert!(
        mean >= Duration::from_secs(142) && mean <= Duration::from_secs(158),
        "mean gap over many {mean:?}"
    );
}

#[tokio::test]
async fn case_63_repeated_429s_without_retry_after_back_off_exponentially_with_jitter() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let mut settings = fast_settings(&env.sim);
    settings.retry = RetryPolicy {
        max_attempts: 7,
        base: Duration::from_millis(40),
        cap: Duration::from_millis(400),
        max_retry_after: Duration::from_secs(5),
    };
    let policy = settings.retry.clone();
    let client = JoeClient::new(settings).unwrap();
    env.sim.faults().add(rule(
        "server/info",
        Fault::RateLimit { retry_after: None },
        6,
    ));
    client.server_info().await.unwrap();
    let log = log(&env.sim);
    assert_eq!(log.len(), 7);
    let gaps: Vec<u64> = log.windows(2).map(|w| w[1].at_ms - w[0].at_ms).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let ceiling = policy.ceiling(i as u32 + 1).as_millis() as u64;
        // Full jitter: anywhere in [0, ceiling], plus the request's own time.
        assert!(*gap <= ceiling + 150, "gap {i}: {gap} ms > {ceiling} ms");
    }
    assert!(gaps.iter().any(|g| g.abs_diff(gaps[0]) > 2), "{gaps:?}");
}

// ---- 64: 5xx storm ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_64_a_5xx_storm_opens_the_breaker_fails_nothing_and_duplicates_nothing() {
    let env = TestEnv::start(SimConfig::default(), |c| c.pipeline.max_attempts = 3).await;
    let app = &env.app;
    let faults = env.sim.faults();
    faults.add(FaultRule::times(
        None,
        Fault::Error {
            http_status: 500,
            code: 6,
            message: "Internal Server Error".into(),
        },
        2,
    ));
    faults.add(FaultRule::times(
        None,
        Fault::NonJson { http_status: 502 },
        2,
    ));
    faults.add(FaultRule::times(
        None,
        Fault::NonJson { http_status: 504 },
        2,
    ));
    faults.add(FaultRule::always(None, Fault::NonJson { http_status: 503 }));
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(add_url(app, &format!("https://example.com/storm/{n}")).await);
    }
    let workers = run_workers(app);
    assert!(
        wait_until(Duration::from_secs(10), || async { app.breaker_open() }).await,
        "the breaker opens"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = env.sim.request_log().len() as u64;
    assert_only_probes_while_open(app, Duration::from_millis(2200)).await;
    let during: Vec<String> = log(&env.sim)
        .into_iter()
        .filter(|r| r.seq >= before)
        .map(|r| r.endpoint)
        .collect();
    assert!(!during.is_empty());
    assert!(during.iter().all(|e| e == "server/online"), "{during:?}");
    assert!(
        items(app)
            .await
            .iter()
            .all(|i| i.state != ItemState::Failed)
    );

    // The storm ends.
    faults.clear();
    let drained = wait_until(Duration::from_secs(20), || async {
        items(app).await.iter().all(|i| i.state == ItemState::Done)
    })
    .await;
    assert!(drained, "{:#?}", items(app).await);
    assert_eq!(env.sim.accepted_submissions().len(), 3, "0 duplicates");
    assert!(!app.breaker_open());
    stop_workers(workers).await;
}

// ---- 70 / 72: slow and truncated downloads ----------------------------------------------

/// Files under `dir` whose name marks a temporary (`.part`).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".part") {
                out.push(path);
            }
        }
    }
    out
}

/// Every stored report of the item equals what the simulator serves.
async fn assert_reports_complete(app: &App, item_id: i64) {
    let mut count = 0;
    for a in db::analyses::for_item(&app.db, item_id).await.unwrap() {
        for r in db::analyses::reports_for(&app.db, &a.webid).await.unwrap() {
            assert_eq!(r.state, jbxd::db::ReportState::Stored, "{r:?}");
            let on_disk = std::fs::read(app.store.abs(r.path.as_deref().unwrap())).unwrap();
            let download = app
                .client
                .analysis_download(&r.webid, &r.report_type, None)
                .await
                .unwrap();
            let mut served = Vec::new();
            download.write_to(&mut served, |_| {}).await.unwrap();
            assert_eq!(on_disk, served, "{}", r.report_type);
            count += 1;
        }
    }
    assert!(count > 0);
}

/// Download deadlines shrunk: 1 s read-idle, at least 1 KiB/s over every 2 s.
fn slow_settings(sim: &Simulator) -> ClientSettings {
    let mut settings = fast_settings(sim);
    settings.read_timeout = Duration::from_secs(1);
    settings.throughput_window = Duration::from_secs(2);
    settings.min_download_rate = 1024;
    settings
}

#[tokio::test]
async fn case_70_the_client_aborts_a_stalled_body_and_a_slowloris_body() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let client = JoeClient::new(slow_settings(&env.sim)).unwrap();
    let submission = client
        .submit_url("https://example.com/slow-client", &SubmissionParams::new())
        .await
        .unwrap();
    let info = client.submission_info(&submission).await.unwrap();
    let webid = info.analyses.unwrap()[0].webid.clone();
    for (fault, expected, within) in [
        (
            (0, 0),
            ["stalled", "timed out"],
            Duration::from_millis(1900),
        ),
        (
            (1, 200),
            ["too slow", "too slow"],
            Duration::from_millis(2900),
        ),
    ] {
        env.sim.faults().add(rule(
            "analysis/download",
            Fault::SlowDownload {
                bytes: fault.0,
                every_ms: fault.1,
            },
            1,
        ));
        let download = client
            .analysis_download(&webid, "html", None)
            .await
            .unwrap();
        let started = Instant::now();
        let mut sink = Vec::new();
        let error = download.write_to(&mut sink, |_| {}).await.unwrap_err();
        assert!(started.elapsed() < within, "{:?}", started.elapsed());
        assert!(error.is_transient(), "{error}");
        let text = error.to_string();
        assert!(expected.iter().any(|e| text.contains(e)), "{text}");
    }
}

#[tokio::test]
async fn case_70_a_stalled_and_a_slowloris_download_are_aborted_and_retried_to_completion() {
    let env = TestEnv::start(SimConfig::default(), |c| {
        c.reports.types = vec!["html".into(), "xml".into()];
    })
    .await;
    let app = with_client(&env, JoeClient::new(slow_settings(&env.sim)).unwrap());
    let faults = env.sim.faults();
    // A full stall after the headers, then a drip of a byte every 200 ms (never idle for
    // 1 s, but 5 bytes/s is far below 1 KiB/s).
    faults.add(rule(
        "analysis/download",
        Fault::SlowDownload {
            bytes: 0,
            every_ms: 0,
        },
        1,
    ));
    faults.add(rule(
        "analysis/download",
        Fault::SlowDownload {
            bytes: 1,
            every_ms: 200,
        },
        1,
    ));
    let id = add_url(&app, "https://example.com/slow").await;
    let started = Instant::now();
    let all = drive_to_end(&app, Duration::from_secs(20)).await;
    assert_eq!(all[0].state, ItemState::Done, "{all:#?}");
    // Neither body was waited out: each was given up after about a second.
    assert!(started.elapsed() < Duration::from_secs(12));
    let slow = log(&env.sim)
        .iter()
        .filter(|r| r.fault.as_deref() == Some("slow_download"))
        .count();
    assert_eq!(slow, 2);
    let reports: Vec<_> = {
        let mut out = Vec::new();
        for a in db::analyses::for_item(&app.db, id).await.unwrap() {
            out.extend(db::analyses::reports_for(&app.db, &a.webid).await.unwrap());
        }
        out
    };
    let retried: i64 = reports.iter().map(|r| r.attempts - 1).sum();
    assert_eq!(retried, 2, "{reports:#?}");
    assert!(temporaries(&app.config.data_dir).is_empty());
    assert_reports_complete(&app, id).await;
}

#[tokio::test]
async fn case_72_a_truncated_body_is_retried_until_the_stored_file_is_the_full_body() {
    let env = TestEnv::start(SimConfig::default(), |c| {
        c.reports.types = vec!["html".into()];
    })
    .await;
    let app = &env.app;
    env.sim.faults().add(rule(
        "analysis/download",
        Fault::TruncateDownload { bytes: 64 },
        2,
    ));
    let id = add_url(app, "https://example.com/truncated").await;
    let all = drive_to_end(app, Duration::from_secs(15)).await;
    assert_eq!(all[0].state, ItemState::Done);
    assert!(temporaries(&app.config.data_dir).is_empty());
    assert_reports_complete(app, id).await;
}

// ---- 74: HTML where JSON was expected -------------------------------------------------------

#[tokio::test]
async fn case_74_an_html_page_with_200_is_transient_on_reads_and_an_unknown_outcome_on_submit() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let app = &env.app;
    let faults = env.sim.faults();
    // The submission gets a captive portal: it may or may not have been created.
    faults.add(rule(
        "submission/new",
        Fault::NonJson { http_status: 200 },
        1,
    ));
    let id = add_url(app, "https://example.com/portal").await;
    submit::run_once(app).await.unwrap();
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Submitting, "unknown outcome: {i:?}");

    // Reconciled (nothing was created), submitted once, then a poll also gets the portal.
    let submitted = wait_until(Duration::from_secs(10), || async {
        submit::run_once(app).await.unwrap();
        reconcile::run_once(app).await.unwrap();
        item(app, id).await.state == ItemState::Submitted
    })
    .await;
    assert!(submitted, "{:?}", item(app, id).await);
    faults.add(rule(
        "submission/info",
        Fault::NonJson { http_status: 200 },
        1,
    ));
    let before = item(app, id).await;
    let polled = wait_until(Duration::from_secs(5), || async {
        poll::run_once(app).await.unwrap();
        faults.rules().is_empty()
    })
    .await;
    assert!(polled, "the poll met the page");
    let after = item(app, id).await;
    assert_eq!(after.state, ItemState::Submitted, "no state change");
    assert_eq!(after.attempts, before.attempts);
    assert!(
        db::analyses::for_item(&app.db, id)
            .await
            .unwrap()
            .is_empty(),
        "nothing recorded from the page"
    );
    let all = drive_to_end(app, Duration::from_secs(15)).await;
    assert_eq!(all[0].state, ItemState::Done);
    assert_eq!(env.sim.accepted_submissions().len(), 1);
}
