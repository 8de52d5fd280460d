//! Reliability catalog group B (RELIABILITY.md): SQLite lock contention
//! (21–23), the write-transaction rule (24), a full or failing state volume (25, 26), a
//! database from a newer jbxd (27), a damaged database (28), the database deleted or replaced
//! under a running daemon (29), stored files deleted or altered behind jbxd's back (34) and the
//! lock file deleted under a running daemon (114, with 29 the tests that run the real binary
//! as systemd would). Each test names its case.
//!
//! The external writer of 21–23 is a separate SQLite connection to the daemon's file, as an
//! operator's `sqlite3` or a URL producer would open it. The disk cases mount a small tmpfs as
//! `data_dir` (root only); where mounting is not allowed they say so and pass vacuously.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jbxd::app::{PauseReason, StepOutcome};
use jbxd::daemon;
use jbxd::db::{self, Db, ItemState};
use jbxd::intake::scanner::{self, ScanState};
use jbxd::pipeline::{download, poll, submit};
use jbxd::simulator::SimConfig;
use jbxd::testing::{TEST_API_KEY, TestEnv, wait_until};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};
use tokio_util::sync::CancellationToken;

/// A connection of another process's kind: its own busy timeout, no pool.
async fn external_connection(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("external connection")
}

/// Another process's connection that has taken the write lock (`BEGIN IMMEDIATE`) and holds it
/// until it commits, rolls back or is dropped.
async fn hold_write_lock(path: &Path) -> SqliteConnection {
    let mut writer = external_connection(path).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut writer)
        .await
        .unwrap();
    writer
}

/// Queues `n` URLs `https://example.com/<tag>/<i>`.
async fn queue_urls(db: &Db, tag: &str, n: usize) {
    for i in 0..n {
        db::url_queue::insert(db, &format!("https://example.com/{tag}/{i}"), None)
            .await
            .unwrap();
    }
}

async fn url_rows(db: &Db) -> Vec<(i64, String, Option<i64>)> {
    sqlx::query("SELECT id, status, item_id FROM url_queue ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Every row taken exactly once: none left `new`, one distinct item per row, and no item
/// that does not come from a row.
async fn assert_each_row_taken_once(db: &Db, rows: usize) {
    let taken = url_rows(db).await;
    assert_eq!(taken.len(), rows);
    let left: Vec<_> = taken.iter().filter(|(_, s, _)| s == "new").collect();
    assert!(left.is_empty(), "rows not taken: {left:?}");
    let mut items: Vec<i64> = taken.iter().filter_map(|(_, _, item)| *item).collect();
    assert_eq!(items.len(), rows, "rows without an item");
    items.sort_unstable();
    items.dedup();
    assert_eq!(items.len(), rows, "an item shared by two rows");
    let all = db::items::list(db, 1_000_000).await.unwrap();
    assert_eq!(all.len(), rows, "items not from a row");
}

async fn drain_urls(env: &TestEnv) {
    while let StepOutcome::Worked(_) = jbxd::intake::urls::run_once(&env.app).await.unwrap() {}
}

#[tokio::test(flavor = "multi_thread")]
async fn case_21_a_writer_holding_the_lock_3_s_is_waited_for_and_nothing_is_lost() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let app = &env.app;
    queue_urls(&app.db, "before", 20).await;
    let mut writer = hold_write_lock(&app.config.db_path()).await;
    sqlx::query("INSERT INTO url_queue (url) VALUES ('https://example.com/external')")
        .execute(&mut writer)
        .await
        .unwrap();
    let held = Instant::now();

    // jbxd's writers while the lock is held: the URL worker's claim, a producer insert, and
    // the health check's write probe.
    let claim = tokio::spawn({
        let app = app.clone();
        async move { jbxd::intake::urls::run_once(&app).await }
    });
    let insert = tokio::spawn({
        let db = app.db.clone();
        async move { db::url_queue::insert(&db, "https://example.com/during", None).await }
    });
    let probe = tokio::spawn({
        let db = app.db.clone();
        async move { db.write_probe().await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!claim.is_finished() && !insert.is_finished() && !probe.is_finished());
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();

    assert_eq!(claim.await.unwrap().unwrap(), StepOutcome::Worked(20));
    insert.await.unwrap().unwrap();
    let waited = probe.await.unwrap().unwrap();
    assert!(
        waited >= Duration::from_millis(2900),
        "the probe did not wait: {waited:?}"
    );
    assert!(
        held.elapsed() < Duration::from_secs(5),
        "waited past the lock"
    );
    drain_urls(&env).await;
    // The 20 rows, the external writer's row and jbxd's own insert: all there, each one item.
    assert_each_row_taken_once(&app.db, 22).await;
    assert_eq!(app.db.integrity_check().await.unwrap(), "ok");
    writer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn case_22_a_lock_held_past_the_busy_timeout_fails_writes_that_are_retried_and_health_sees_it()
 {
    // The catalog holds the lock 30 s against a 5 s busy timeout; 6.5 s shows the same thing:
    // every write attempt during the hold fails with SQLITE_BUSY after 5 s, the workers retry,
    // the health check reports the database failed, and work resumes at the release.
    const HOLD: Duration = Duration::from_millis(6500);
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let app = env.app.clone();
    queue_urls(&app.db, "held", 30).await;
    let mut writer = hold_write_lock(&app.config.db_path()).await;
    let held = Instant::now();
    let cancel = CancellationToken::new();
    let worker = tokio::spawn(jbxd::intake::urls::run(app.clone(), cancel.clone()));
    let probe = tokio::spawn({
        let db = app.db.clone();
        async move {
            let started = Instant::now();
            (db.write_probe().await, started.elapsed())
        }
    });
    let health = tokio::spawn({
        let app = app.clone();
        async move { daemon::check_once(&app).await }
    });

    let (probe, took) = probe.await.unwrap();
    let error = probe
        .expect_err("a write during the hold fails")
        .to_string();
    assert!(error.contains("locked"), "{error}");
    assert!(
        took >= Duration::from_millis(4500),
        "failed before the busy timeout: {took:?}"
    );
    tokio::time::sleep(HOLD.saturating_sub(held.elapsed())).await;
    assert!(
        url_rows(&app.db).await.iter().all(|(_, s, _)| s == "new"),
        "nothing can be taken while the lock is held"
    );
    sqlx::query("ROLLBACK").execute(&mut writer).await.unwrap();
    let released = Instant::now();

    let report = health.await.unwrap();
    let check = report.get("database").expect("database check");
    assert_eq!(check.status, daemon::health::Status::Failed, "{check:?}");
    assert!(check.detail.contains("locked"), "{check:?}");

    let db = app.db.clone();
    let resumed = wait_until(Duration::from_secs(10), || {
        let db = db.clone();
        async move { url_rows(&db).await.iter().all(|(_, s, _)| s != "new") }
    })
    .await;
    assert!(
        resumed,
        "processing did not resume within 10 s of the release"
    );
    eprintln!(
        "case 22: resumed {} ms after the release",
        released.elapsed().as_millis()
    );
    cancel.cancel();
    worker.await.unwrap().unwrap();
    assert_each_row_taken_once(&app.db, 30).await;
    let after = daemon::check_once(&app).await;
    assert_eq!(
        after.get("database").unwrap().status,
        daemon::health::Status::Ok
    );
    writer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn case_23_a_fast_producer_sees_no_errors_and_every_row_is_claimed_once() {
    // Short version of 1,000 rows/s for 60 s: 1,000 rows/s for 2 s from a separate connection
    // (autocommit inserts, busy_timeout 5 s) while the URL worker claims.
    const ROWS: usize = 2000;
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let app = env.app.clone();
    let cancel = CancellationToken::new();
    let worker = tokio::spawn(jbxd::intake::urls::run(app.clone(), cancel.clone()));
    let mut producer = external_connection(&app.config.db_path()).await;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut errors = Vec::new();
    let mut latencies = Vec::with_capacity(ROWS);
    let started = Instant::now();
    for i in 0..ROWS {
        tick.tick().await;
        let t = Instant::now();
        let inserted = sqlx::query("INSERT INTO url_queue (url) VALUES (?)")
            .bind(format!("https://example.com/produced/{i}"))
            .execute(&mut producer)
            .await;
        latencies.push(t.elapsed());
        if let Err(e) = inserted {
            errors.push(e.to_string());
        }
    }
    let produced_in = started.elapsed();
    assert!(errors.is_empty(), "the producer saw errors: {errors:?}");
    let db = app.db.clone();
    let drained = wait_until(Duration::from_secs(20), || {
        let db = db.clone();
        async move { url_rows(&db).await.iter().all(|(_, s, _)| s != "new") }
    })
    .await;
    assert!(drained, "rows left unclaimed");
    cancel.cancel();
    worker.await.unwrap().unwrap();
    assert_each_row_taken_once(&app.db, ROWS).await;
    latencies.sort_unstable();
    let p99 = latencies[ROWS * 99 / 100];
    eprintln!(
        "case 23: {ROWS} rows in {} ms, producer insert p50 {:?} p99 {:?} max {:?}",
        produced_in.as_millis(),
        latencies[ROWS / 2],
        p99,
        latencies[ROWS - 1]
    );
    producer.close().await.unwrap();
}

/// The source files of the `db` module (the only module with SQL).
fn db_sources() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/db");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    out.sort();
    out
}

/// Drops `//` comments, so prose mentioning `begin()` does not count.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many SQL statements in `code` write: string literals starting with a writing verb.
fn writing_statements(code: &str) -> usize {
    let mut count = 0;
    for (i, _) in code.match_indices('"') {
        let rest = code[i + 1..].trim_start();
        let upper: String = rest
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_uppercase();
        if ["INSERT", "UPDATE", "DELETE", "REPLACE"]
            .iter()
            .any(|verb| upper.starts_with(verb))
        {
            count += 1;
        }
    }
    count
}

#[test]
fn case_24_every_transaction_is_begin_immediate_and_other_writes_are_single_statements() {
    let sources = db_sources();
    assert!(sources.len() >= 5, "src/db not found");
    let mut problems = Vec::new();
    for (path, text) in &sources {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let code = code_only(text);
        // A deferred transaction (sqlx's `begin()`, or BEGIN in SQL text) would take the write
        // lock only at its first write and fail with SQLITE_BUSY on the upgrade.
        for pattern in [
            ".begin()",
            "BEGIN DEFERRED",
            "BEGIN TRANSACTION",
            "\"BEGIN\"",
        ] {
            if code.contains(pattern) {
                problems.push(format!("{name}: uses {pattern}"));
            }
        }
        for (i, _) in code.match_indices("begin_with(") {
            if !code[i..].starts_with("begin_with(\"BEGIN IMMEDIATE\")") {
                problems.push(format!("{name}: begin_with without BEGIN IMMEDIATE"));
            }
        }
        // Every transaction variable comes from `begin_write`.
        for line in code.lines() {
            let l = line.trim();
            if (l.starts_with("let mut tx") || l.starts_with("let tx"))
                && l.contains('=')
                && !l.contains("begin_write()")
            {
                problems.push(format!("{name}: transaction not from begin_write: {l}"));
            }
        }
        // A function without a transaction may write with one statement only (autocommit is
        // then atomic on its own).
        let starts: Vec<usize> = code
            .match_indices("fn ")
            .map(|(i, _)| i)
            .filter(|&i| i == 0 || !code.as_bytes()[i - 1].is_ascii_alphanumeric())
            .collect();
        for (n, &start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(code.len());
            let body = &code[start..end];
            let fn_name: String = body[3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if body.contains("mod tests") || code[..start].contains("mod tests {") {
                continue;
            }
            let writes = writing_statements(body);
            if writes > 1 && !body.contains("begin_write()") {
                problems.push(format!(
                    "{name}: fn {fn_name} issues {writes} writing statements outside a transaction"
                ));
            }
        }
    }
    // Nothing outside `db` opens transactions.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("db") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let code = code_only(&std::fs::read_to_string(&path).unwrap());
                if code.contains(".begin()") || code.contains("begin_with(") {
                    problems.push(format!(
                        "{}: opens a transaction outside db",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---- disk full and storage write failures (25, 26) ---------------------------------------

/// A tmpfs mounted for one test, unmounted (lazily) when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` at `path`, or explains why not and returns `None`.
    fn mount(path: &Path, size_mib: u64) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(path)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self {
                path: path.to_owned(),
            }),
            Ok(out) => {
                eprintln!(
                    "not applicable here: cannot mount a tmpfs ({}); run as root",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("not applicable here: no mount command ({e})");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the filesystem of `dir` with `name` until at most `leave` bytes are free.
fn fill(dir: &Path, name: &str, leave: u64) {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join(name)).unwrap();
    let block = vec![0xa5u8; 64 * 1024];
    loop {
        let free = jbxd::storage::free_bytes(dir).unwrap();
        if free <= leave {
            break;
        }
        let n = (free - leave).min(block.len() as u64) as usize;
        if let Err(e) = file.write_all(&block[..n.max(1)]) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            break;
        }
    }
    let _ = file.sync_all();
}

/// Files below `dir` whose name marks them as temporary (`.jbxd-*.part`).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry
                .file_name()
                .to_string_lossy()
                .starts_with(jbxd::storage::TEMP_PREFIX)
            {
                out.push(path);
            }
        }
    }
    out
}

async fn paused_for_disk(env: &TestEnv) -> bool {
    env.app
        .pauses()
        .await
        .unwrap()
        .iter()
        .any(|p| p.reason == PauseReason::DiskLow)
}

#[tokio::test(flavor = "multi_thread")]
async fn case_25_a_full_state_volume_pauses_then_fails_cleanly_and_resumes_after_space_is_freed() {
    let root = tempfile::tempdir().unwrap();
    let mount = root.path().join("state");
    let Some(_tmpfs) = Tmpfs::mount(&mount, 24) else {
        return;
    };
    let data_dir = mount.clone();
    // Reports of 3 MiB: they cannot fit once the volume is full.
    let sim = SimConfig {
        html_padding_bytes: 3 * 1024 * 1024,
        ..SimConfig::default()
    };
    let env = TestEnv::start(sim, |c| {
        c.data_dir = data_dir;
        c.health.min_free_disk_mb = 8;
        c.reports.types = vec!["html".into()];
        c.pipeline.max_attempts = 50;
    })
    .await;
    let app = &env.app;

    // An item that reaches `downloading`, with its report still to fetch.
    std::fs::write(env.drop_dir().join("first.exe"), b"MZ first sample").unwrap();
    let mut scan = ScanState::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while db::items::list(&app.db, 10).await.unwrap().is_empty() {
        scanner::run_once(app, &mut scan).await.unwrap();
        assert!(Instant::now() < deadline, "the first file was not taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        submit::run_once(app).await.unwrap();
        poll::run_once(app).await.unwrap();
        let items = db::items::list(&app.db, 10).await.unwrap();
        if items[0].state == ItemState::Downloading {
            break;
        }
        assert!(Instant::now() < deadline, "not downloading: {items:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 25: free space below health.min_free_disk_mb → the health check pauses local writes;
    // the scanner leaves the drop folder alone and downloads wait.
    fill(&mount, "filler-low", 4 * 1024 * 1024);
    let report = daemon::check_once(app).await;
    let disk = report.get("disk").unwrap();
    assert_eq!(disk.status, daemon::health::Status::Degraded, "{disk:?}");
    assert!(disk.detail.contains("MiB free"), "{disk:?}");
    assert!(paused_for_disk(&env).await);
    std::fs::write(env.drop_dir().join("second.exe"), b"MZ second sample").unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        scanner::run_once(app, &mut scan).await.unwrap(),
        StepOutcome::Paused
    );
    assert_eq!(download::run_once(app).await.unwrap(), StepOutcome::Paused);
    assert!(env.drop_dir().join("second.exe").exists());

    // Then the volume full before the health check could notice: lift the pause by hand, fill
    // the rest, and every write path fails cleanly — SQLite included (SQLITE_FULL).
    app.resume(PauseReason::DiskLow).await.unwrap();
    fill(&mount, "filler-full", 0);
    let error = format!(
        "{:#}",
        scanner::run_once(app, &mut scan)
            .await
            .expect_err("staging fails on a full disk")
    );
    assert!(
        error.contains("No space left") && error.contains("second.exe"),
        "{error}"
    );
    assert!(
        error.contains(&mount.display().to_string()),
        "the error names the path: {error}"
    );
    assert!(env.drop_dir().join("second.exe").exists(), "source kept");
    assert_eq!(db::items::list(&app.db, 10).await.unwrap().len(), 1);
    // The download step cannot even claim (the database cannot grow): an error the worker
    // loop logs and backs off from; nothing recorded, no temporary file.
    let outcome = download::run_once(app).await;
    eprintln!("case 25: download on a full disk: {outcome:?}");
    let item = db::items::list(&app.db, 10).await.unwrap()[0].clone();
    let reports = db::analyses::for_item(&app.db, item.id).await.unwrap();
    for analysis in &reports {
        for row in db::analyses::reports_for(&app.db, &analysis.webid)
            .await
            .unwrap()
        {
            assert_ne!(row.state, jbxd::db::ReportState::Stored, "{row:?}");
            if let Some(error) = &row.error {
                assert!(error.contains("No space left"), "{row:?}");
            }
        }
    }
    assert!(temporaries(&mount).is_empty(), "{:?}", temporaries(&mount));
    assert_eq!(app.db.integrity_check().await.unwrap(), "ok");

    // Space freed → the next health check lifts the pause and work resumes: the second file
    // is taken and the report stored complete.
    std::fs::remove_file(mount.join("filler-full")).unwrap();
    std::fs::remove_file(mount.join("filler-low")).unwrap();
    let report = daemon::check_once(app).await;
    assert_eq!(
        report.get("disk").unwrap().status,
        daemon::health::Status::Ok
    );
    assert!(!paused_for_disk(&env).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while db::items::list(&app.db, 10).await.unwrap().len() < 2 {
        scanner::run_once(app, &mut scan).await.unwrap();
        assert!(Instant::now() < deadline, "the second file was not taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!env.drop_dir().join("second.exe").exists());
    let db2 = app.db.clone();
    let app2 = app.clone();
    let done = wait_until(Duration::from_secs(30), || {
        let (db, app) = (db2.clone(), app2.clone());
        async move {
            let _ = download::run_once(&app).await;
            db::items::get(&db, item.id).await.unwrap().unwrap().state == ItemState::Done
        }
    })
    .await;
    assert!(done, "the report was not stored after space was freed");
    for analysis in db::analyses::for_item(&app.db, item.id).await.unwrap() {
        for row in db::analyses::reports_for(&app.db, &analysis.webid)
            .await
            .unwrap()
        {
            let (Some(path), Some(size), Some(sha)) = (&row.path, row.size, &row.sha256) else {
                panic!("not stored: {row:?}");
            };
            assert!(app.store.verify(path, size as u64, sha).unwrap(), "{row:?}");
        }
    }
    assert!(temporaries(&mount).is_empty());
    assert_eq!(app.db.integrity_check().await.unwrap(), "ok");
    app.db.close().await;
}

// ---- database files from elsewhere (27, 28) ------------------------------------------------

fn write_config(dir: &Path, data_dir: &Path) -> PathBuf {
    let path = dir.join("jbxd.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\ndrop_dir = {:?}\n[api]\nurl = \"http://127.0.0.1:9/api\"\n",
            data_dir.to_str().unwrap(),
            dir.join("drop").to_str().unwrap()
        ),
    )
    .unwrap();
    path
}

/// `jbxd run` with a scrubbed environment; (exit code, stderr).
async fn jbxd_run(config: &Path) -> (i32, String) {
    let mut command = common::jbxd_command();
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        command
            .args(["run", "--config", config.to_str().unwrap()])
            .env("JBX_API_KEY", TEST_API_KEY)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("jbxd run exits by itself")
    .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn case_27_a_database_from_a_newer_jbxd_exits_78_and_stays_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let db = Db::open_in(&data_dir).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (7000000000000, 'from the future', 1, x'00', 0)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    db.close().await;
    let db_path = data_dir.join("jbxd.db");
    let before = std::fs::read(&db_path).unwrap();

    let (code, stderr) = jbxd_run(&write_config(dir.path(), &data_dir)).await;
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("7000000000000") && stderr.contains("newer than this jbxd"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&db_path).unwrap(), before, "the file changed");
    assert!(!stderr.contains(TEST_API_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn case_28_a_damaged_database_exits_78_pointing_to_backup_and_is_left_unmodified() {
    let dir = tempfile::tempdir().unwrap();
    let source_dir = dir.path().join("source");
    std::fs::create_dir_all(&source_dir).unwrap();
    let db = Db::open_in(&source_dir).await.unwrap();
    for i in 0..400 {
        db::url_queue::insert(
            &db,
            &format!("https://example.com/{i}/{}", "x".repeat(200)),
            None,
        )
        .await
        .unwrap();
    }
    db.close().await;
    let page_size = 4096;
    let mut bytes = std::fs::read(source_dir.join("jbxd.db")).unwrap();
    assert!(bytes.len() > 20 * page_size, "{} bytes", bytes.len());

    // Case 28a: one damaged page in the middle of the file (the header still says SQLite).
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let page = bytes.len() / page_size - 3;
    for b in &mut bytes[page * page_size..(page + 1) * page_size] {
        *b = 0xff;
    }
    let db_path = data_dir.join("jbxd.db");
    std::fs::write(&db_path, &bytes).unwrap();
    let (code, stderr) = jbxd_run(&write_config(dir.path(), &data_dir)).await;
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("is damaged") && stderr.contains("backup"),
        "{stderr}"
    );
    assert!(stderr.contains(&db_path.display().to_string()), "{stderr}");
    assert_eq!(std::fs::read(&db_path).unwrap(), bytes, "the file changed");

    // Case 28b: the header itself destroyed: not a database at all.
    let mut header = bytes.clone();
    header[..100].fill(0x41);
    std::fs::write(&db_path, &header).unwrap();
    let (code, stderr) = jbxd_run(&write_config(dir.path(), &data_dir)).await;
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert_eq!(std::fs::read(&db_path).unwrap(), header, "the file changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn case_26_a_report_write_failing_mid_download_records_nothing_and_is_retried() {
    // The reports directory on its own small volume: the database stays writable, so the
    // failure is recorded and retried, while the file write itself fails mid-body (ENOSPC).
    let sim = SimConfig {
        html_padding_bytes: 3 * 1024 * 1024,
        ..SimConfig::default()
    };
    let env = TestEnv::start(sim, |c| {
        c.reports.types = vec!["html".into()];
        c.pipeline.max_attempts = 50;
    })
    .await;
    let app = &env.app;
    let reports = app.store.abs("reports");
    let Some(_tmpfs) = Tmpfs::mount(&reports, 8) else {
        return;
    };
    fill(&reports, "filler", 1024 * 1024);

    std::fs::write(env.drop_dir().join("sample.exe"), b"MZ sample").unwrap();
    let mut scan = ScanState::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (item, row) = loop {
        scanner::run_once(app, &mut scan).await.unwrap();
        submit::run_once(app).await.unwrap();
        poll::run_once(app).await.unwrap();
        download::run_once(app).await.unwrap();
        let rows = match db::items::list(&app.db, 10).await.unwrap().first() {
            Some(item) => {
                let mut rows = Vec::new();
                for a in db::analyses::for_item(&app.db, item.id).await.unwrap() {
                    rows.extend(db::analyses::reports_for(&app.db, &a.webid).await.unwrap());
                }
                rows.into_iter()
                    .find(|r| r.attempts > 0)
                    .map(|r| (item.clone(), r))
            }
            None => None,
        };
        if let Some(found) = rows {
            break found;
        }
        assert!(Instant::now() < deadline, "no download attempted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row.state, jbxd::db::ReportState::Pending, "{row:?}");
    assert!(row.path.is_none() && row.sha256.is_none(), "{row:?}");
    let error = row.error.clone().unwrap_or_default();
    assert!(error.contains("No space left"), "{row:?}");
    assert!(
        error.contains(&reports.display().to_string()),
        "the error names the path: {row:?}"
    );
    assert!(
        temporaries(&reports).is_empty(),
        "{:?}",
        temporaries(&reports)
    );
    assert_ne!(
        db::items::get(&app.db, item.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ItemState::Done
    );

    std::fs::remove_file(reports.join("filler")).unwrap();
    let app2 = app.clone();
    let done = wait_until(Duration::from_secs(20), || {
        let app = app2.clone();
        async move {
            download::run_once(&app).await.unwrap();
            db::items::get(&app.db, item.id)
                .await
                .unwrap()
                .unwrap()
                .state
                == ItemState::Done
        }
    })
    .await;
    assert!(done, "the report was not stored once space was back");
    let stored = db::analyses::reports_for(&app.db, &row.webid)
        .await
        .unwrap();
    let stored = &stored[0];
    assert!(
        app.store
            .verify(
                stored.path.as_deref().unwrap(),
                stored.size.unwrap() as u64,
                stored.sha256.as_deref().unwrap()
            )
            .unwrap()
    );
    assert!(temporaries(&reports).is_empty());
    assert_eq!(app.db.integrity_check().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn case_29_a_database_file_deleted_while_running_fails_the_health_check() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let app = &env.app;
    let before = daemon::check_once(app).await;
    assert_eq!(
        before.get("database").unwrap().status,
        daemon::health::Status::Ok
    );
    let path = app.config.db_path();
    std::fs::remove_file(&path).unwrap();
    // The open connections would write happily into the unlinked inode: writes are refused.
    let refused = app.db.write_probe().await.unwrap_err();
    assert!(matches!(refused, db::DbError::Replaced { .. }), "{refused}");
    let after = daemon::check_once(app).await;
    let check = after.get("database").unwrap();
    assert_eq!(check.status, daemon::health::Status::Failed, "{check:?}");
    assert!(
        check.detail.contains(&path.display().to_string())
            && check.detail.contains("gone or was replaced"),
        "{check:?}"
    );
    assert_eq!(after.overall(), daemon::health::Status::Failed);
}

#[tokio::test(flavor = "multi_thread")]
async fn case_29_after_the_swap_intake_leaves_dropped_files_and_nothing_is_claimed_for_submission()
{
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let app = &env.app;
    // One item recorded and queued before the swap, not yet submitted.
    std::fs::write(env.drop_dir().join("before.exe"), b"MZ recorded before").unwrap();
    let mut scan = ScanState::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.drop_dir().join("before.exe").exists() {
        assert!(Instant::now() < deadline, "the first file was not taken");
        scanner::run_once(app, &mut scan).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let other = Db::open(&env.dir.path().join("other.db")).await.unwrap();
    other.close().await;
    std::fs::rename(env.dir.path().join("other.db"), app.config.db_path()).unwrap();

    let after = env.drop_dir().join("after.exe");
    std::fs::write(&after, b"MZ dropped after the swap").unwrap();
    // Past the settle time: the scanner stages the file, then its record is refused.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut scan = ScanState::default();
    let mut refusals = 0;
    for _ in 0..3 {
        if let Err(error) = scanner::run_once(app, &mut scan).await {
            assert!(
                format!("{error:#}").contains("gone or was replaced"),
                "{error:#}"
            );
            refusals += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(refusals > 0, "the record of the new file was not refused");
    assert!(after.exists(), "a file dropped after the swap was taken");
    let error = submit::run_once(app).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("gone or was replaced"),
        "{error:#}"
    );
    assert!(
        env.sim.accepted_submissions().is_empty(),
        "submitted after the swap"
    );
}

// ---- the real binary: the database swapped, the lock file deleted (29, 114) ---------------

/// `jbxd run` as systemd starts it (a notify socket), waited for until `READY=1`.
struct RunningDaemon {
    child: tokio::process::Child,
    pid: u32,
}

impl RunningDaemon {
    async fn start(dir: &Path, config: &Path, extra: &[&str]) -> Self {
        let notify_path = dir.join(format!("notify-{}.sock", fastrand::u32(..)));
        let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
        let child = common::jbxd_command()
            .args(["run", "--config", config.to_str().unwrap()])
            .args(extra)
            .env("JBX_API_KEY", TEST_API_KEY)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            let mut buf = vec![0u8; 4096];
            loop {
                let n = notify.recv(&mut buf).await.unwrap();
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    return;
                }
            }
        })
        .await
        .expect("READY=1 within 30 s");
        let pid = child.id().unwrap();
        Self { child, pid }
    }

    /// Waits (up to `within`) for the daemon to exit by itself: (exit code, stderr).
    async fn exited(self, within: Duration) -> (i32, String) {
        let output = tokio::time::timeout(within, self.child.wait_with_output())
            .await
            .expect("the daemon exits by itself")
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// SIGTERM, then the exit.
    async fn stop(self) -> (i32, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        self.exited(Duration::from_secs(30)).await
    }
}

/// A data directory, a drop folder and a `jbxd.toml` with fast timings against `api_url`.
fn daemon_config(dir: &Path, api_url: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (data_dir, drop_dir) = (dir.join("data"), dir.join("drop"));
    std::fs::create_dir_all(&drop_dir).unwrap();
    let config = common::write_config(
        dir,
        &data_dir,
        &drop_dir,
        &format!(
            "[api]\nurl = {api_url:?}\naccept_tac = true\n[intake]\nsettle_ms = 200\n\
             scan_interval_secs = 1\n[poll]\nexpected_analysis_secs = 0\nmin_interval_secs = 0\n\
             max_interval_secs = 1\n[health]\nmin_free_disk_mb = 1\n"
        ),
    );
    (config, data_dir, drop_dir)
}

/// Drops `name` the proper way (written under a temporary name, renamed in).
fn drop_named(drop_dir: &Path, name: &str, content: &[u8]) {
    let temp = drop_dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, content).unwrap();
    std::fs::rename(&temp, drop_dir.join(name)).unwrap();
}

/// Drops one file and waits until the daemon took it and the simulator accepted it.
async fn one_submission(sim: &jbxd::simulator::Simulator, drop_dir: &Path) {
    drop_named(drop_dir, "before.exe", b"MZ taken before the swap");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            sim.accepted_submissions().len() == 1 && !drop_dir.join("before.exe").exists()
        })
        .await,
        "the first file was not submitted"
    );
}

/// Drops three files at once after the swap; returns their paths.
fn drop_after_swap(drop_dir: &Path) -> Vec<PathBuf> {
    (0..3)
        .map(|i| {
            let name = format!("after-{i}.exe");
            drop_named(
                drop_dir,
                &name,
                format!("MZ dropped after the swap {i}").as_bytes(),
            );
            drop_dir.join(name)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn case_29_a_database_deleted_under_the_daemon_stops_it_with_exit_75_and_a_restart_refuses_without_new_database()
 {
    let sim = jbxd::testing::simulator(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, data_dir, drop_dir) = daemon_config(dir.path(), &sim.api_url());
    let daemon = RunningDaemon::start(dir.path(), &config, &[]).await;
    one_submission(&sim, &drop_dir).await;

    let db_path = data_dir.join("jbxd.db");
    let swapped = Instant::now();
    std::fs::remove_file(&db_path).unwrap();
    let after = drop_after_swap(&drop_dir);
    let (code, stderr) = daemon.exited(Duration::from_secs(10)).await;
    assert_eq!(code, 75, "{stderr}");
    assert!(
        stderr.contains("was deleted or replaced")
            && stderr.contains(&db_path.display().to_string()),
        "{stderr}"
    );
    assert!(swapped.elapsed() < Duration::from_secs(10));
    for path in &after {
        assert!(path.exists(), "{} was taken after the swap", path.display());
    }
    assert_eq!(
        sim.accepted_submissions().len(),
        1,
        "submitted after the swap"
    );
    assert!(
        !db_path.exists(),
        "an empty database was created in its place"
    );

    // The restart finds storage but no database: exit 78, naming what is there.
    let (code, stderr) = jbxd_run(&config).await;
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("refusing to create a new database next to existing storage (1 samples")
            && stderr.contains(&data_dir.display().to_string())
            && stderr.contains("--new-database"),
        "{stderr}"
    );
    assert!(!db_path.exists());

    // Told to: it starts on a new database and takes the files left in the folder.
    let daemon = RunningDaemon::start(dir.path(), &config, &["--new-database"]).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            sim.accepted_submissions().len() == 4 && after.iter().all(|p| !p.exists())
        })
        .await,
        "the files left in the folder were not taken after the restart"
    );
    let (code, stderr) = daemon.stop().await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn case_29_a_database_replaced_under_the_daemon_stops_it_with_exit_75_and_takes_nothing_more()
{
    let sim = jbxd::testing::simulator(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, data_dir, drop_dir) = daemon_config(dir.path(), &sim.api_url());
    let daemon = RunningDaemon::start(dir.path(), &config, &[]).await;
    one_submission(&sim, &drop_dir).await;

    // Another (valid) database moved over it, as a careless restore would.
    let other = Db::open(&dir.path().join("other.db")).await.unwrap();
    other.close().await;
    let replacement = std::fs::read(dir.path().join("other.db")).unwrap();
    std::fs::rename(dir.path().join("other.db"), data_dir.join("jbxd.db")).unwrap();
    let after = drop_after_swap(&drop_dir);
    let (code, stderr) = daemon.exited(Duration::from_secs(10)).await;
    assert_eq!(code, 75, "{stderr}");
    assert!(stderr.contains("was deleted or replaced"), "{stderr}");
    for path in &after {
        assert!(path.exists(), "{} was taken after the swap", path.display());
    }
    assert_eq!(
        sim.accepted_submissions().len(),
        1,
        "submitted after the swap"
    );
    // Nothing of the old database's WAL was written into the replacement.
    assert_eq!(
        std::fs::read(data_dir.join("jbxd.db")).unwrap(),
        replacement,
        "the replacement was written to"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn case_114_with_the_lock_file_deleted_a_second_daemon_is_refused_and_the_first_keeps_working()
 {
    let sim = jbxd::testing::simulator(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, data_dir, drop_dir) = daemon_config(dir.path(), &sim.api_url());
    let first = RunningDaemon::start(dir.path(), &config, &[]).await;
    std::fs::remove_file(data_dir.join(daemon::lock::LOCK_FILE)).unwrap();

    let (code, stderr) = jbxd_run(&config).await;
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another instance (pid {}) holds the lock",
            first.pid
        )),
        "{stderr}"
    );
    assert!(
        !data_dir.join(daemon::lock::LOCK_FILE).exists(),
        "the refused daemon created a lock file"
    );

    for i in 0..5 {
        drop_named(
            &drop_dir,
            &format!("s{i}.exe"),
            format!("MZ sample {i}").as_bytes(),
        );
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            sim.accepted_submissions().len() == 5
        })
        .await,
        "the first daemon stopped working"
    );
    let db = Db::open_existing(&data_dir.join("jbxd.db")).await.unwrap();
    assert_eq!(
        db::items::list(&db, 100).await.unwrap().len(),
        5,
        "one item per file"
    );
    db.close().await;
    let (code, stderr) = first.stop().await;
    assert_eq!(code, 0, "{stderr}");
}

/// Drops one sample and runs the pipeline steps until its item is done; returns the item.
async fn one_item_done(env: &TestEnv) -> db::Item {
    let app = &env.app;
    std::fs::write(env.drop_dir().join("sample.exe"), b"MZ spot-checked sample").unwrap();
    let mut scan = ScanState::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        scanner::run_once(app, &mut scan).await.unwrap();
        submit::run_once(app).await.unwrap();
        poll::run_once(app).await.unwrap();
        download::run_once(app).await.unwrap();
        if let Some(item) = db::items::list(&app.db, 10).await.unwrap().first()
            && item.state == ItemState::Done
        {
            return item.clone();
        }
        assert!(Instant::now() < deadline, "the item was not done in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every stored report of `item`: (relative path, original bytes).
async fn stored_reports(app: &jbxd::app::App, item: &db::Item) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for analysis in db::analyses::for_item(&app.db, item.id).await.unwrap() {
        for row in db::analyses::reports_for(&app.db, &analysis.webid)
            .await
            .unwrap()
        {
            if row.state == jbxd::db::ReportState::Stored {
                let path = row.path.unwrap();
                let bytes = std::fs::read(app.store.abs(&path)).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out
}

/// Writes `bytes` over a stored (read-only) file, keeping its mode.
fn overwrite_keeping_mode(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn case_34_a_deleted_sample_and_an_altered_report_degrade_storage_until_restored() {
    let env = TestEnv::start(SimConfig::default(), |c| {
        c.reports.types = vec!["html".into()];
    })
    .await;
    let app = &env.app;
    let item = one_item_done(&env).await;
    let before = daemon::check_once(app).await;
    let storage = before.get("storage").unwrap();
    assert_eq!(storage.status, daemon::health::Status::Ok, "{storage:?}");
    assert!(storage.detail.contains("all match"), "{storage:?}");

    // The pick cannot miss: this is the only stored sample (a pick past the last stored
    // file wraps to the first), and every stored report gets its byte flipped.
    let sample_rel = item.sample_path.clone().unwrap();
    let samples = db::items::list(&app.db, 10)
        .await
        .unwrap()
        .iter()
        .filter(|i| i.sample_path.is_some())
        .count();
    assert_eq!(samples, 1);
    let sample = app.store.abs(&sample_rel);
    let sample_bytes = std::fs::read(&sample).unwrap();
    let reports = stored_reports(app, &item).await;
    assert!(!reports.is_empty());
    std::fs::remove_file(&sample).unwrap();
    for (rel, bytes) in &reports {
        let mut altered = bytes.clone();
        altered[0] ^= 0x01;
        overwrite_keeping_mode(&app.store.abs(rel), &altered);
    }

    let after = daemon::check_once(app).await;
    let storage = after.get("storage").unwrap();
    assert_eq!(
        storage.status,
        daemon::health::Status::Degraded,
        "{storage:?}"
    );
    assert!(
        storage
            .detail
            .contains(&format!("{}: missing", sample.display())),
        "{storage:?}"
    );
    assert!(
        reports
            .iter()
            .any(|(rel, _)| storage.detail.contains(&format!(
                "{}: sha256 mismatch",
                app.store.abs(rel).display()
            ))),
        "{storage:?}"
    );
    assert_eq!(after.overall(), daemon::health::Status::Degraded);
    let shown = db::health::all(&app.db).await.unwrap();
    let row = shown.iter().find(|r| r.name == "storage").unwrap();
    assert_eq!(row.status, "degraded", "jbxd status shows it: {row:?}");

    // Found once, the problems stay reported (re-checked each run) until the files are
    // restored; nothing is repaired by the check.
    let again = daemon::check_once(app).await;
    assert_eq!(
        again.get("storage").unwrap().status,
        daemon::health::Status::Degraded
    );
    let remembered = db::health::get_state(&app.db, "storage_problems")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(remembered.contains(&sample_rel), "{remembered}");
    assert!(!sample.exists());
    std::fs::write(&sample, &sample_bytes).unwrap();
    std::fs::set_permissions(&sample, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    for (rel, bytes) in &reports {
        overwrite_keeping_mode(&app.store.abs(rel), bytes);
    }
    let restored = daemon::check_once(app).await;
    let storage = restored.get("storage").unwrap();
    assert_eq!(storage.status, daemon::health::Status::Ok, "{storage:?}");
    let remembered = db::health::get_state(&app.db, "storage_problems")
        .await
        .unwrap();
    assert_eq!(remembered, None);
}

// ---- storage writes failing while the database is fine (118) -------------------------------

/// `path` bind-mounted onto itself read-only for one test (root only), unmounted when dropped.
struct ReadOnlyBind {
    path: PathBuf,
}

impl ReadOnlyBind {
    fn mount(path: &Path) -> Option<Self> {
        let bind = Command::new("mount")
            .arg("--bind")
            .arg(path)
            .arg(path)
            .output();
        match bind {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!(
                    "not applicable here: cannot bind-mount ({}); run as root",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                eprintln!("not applicable here: no mount command ({e})");
                return None;
            }
        }
        let bind = Self {
            path: path.to_owned(),
        };
        let ro = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(path)
            .status()
            .unwrap();
        assert!(ro.success(), "cannot make the bind mount read-only");
        Some(bind)
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn case_118_a_read_only_storage_tree_fails_storage_writes_in_health_and_status_until_a_write_succeeds()
 {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let app = &env.app;
    let report = daemon::check_once(app).await;
    let check = report.get("storage_writes").unwrap();
    assert_eq!(check.status, daemon::health::Status::Ok, "{check:?}");
    assert_eq!(report.unrecorded, None);

    // The quarantine (and only it) turns read-only; the database stays writable.
    let quarantine = app.config.data_dir.join("quarantine");
    let Some(read_only) = ReadOnlyBind::mount(&quarantine) else {
        return;
    };
    let dropped = env.drop_dir().join("blocked.exe");
    std::fs::write(&dropped, b"MZ cannot be staged").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut scan = ScanState::default();
    let _ = scanner::run_once(app, &mut scan).await;
    assert!(dropped.exists(), "the source must stay");
    let failure = app
        .store
        .last_write_failure()
        .expect("the failed staging copy is noted");
    assert!(failure.error.contains("Read-only"), "{failure:?}");
    assert!(
        failure.path.starts_with(&quarantine.display().to_string()),
        "{failure:?}"
    );

    // Free space is fine, the disk check says ok: the storage_writes check does not.
    let report = daemon::check_once(app).await;
    assert_eq!(
        report.get("disk").unwrap().status,
        daemon::health::Status::Ok
    );
    let check = report.get("storage_writes").unwrap();
    assert_eq!(check.status, daemon::health::Status::Failed, "{check:?}");
    assert!(
        check.detail.contains("copying a sample into quarantine"),
        "{check:?}"
    );
    assert_eq!(report.overall(), daemon::health::Status::Failed);
    assert!(
        daemon::status_line(app)
            .await
            .contains("storage write failed"),
        "{}",
        daemon::status_line(app).await
    );
    // Recorded (the database takes writes), so `jbxd status` in another process sees it.
    let config = common::write_config(
        env.dir.path(),
        &app.config.data_dir,
        &app.config.drop_dir,
        "",
    );
    let status = common::jbxd_command()
        .args(["--config", config.to_str().unwrap(), "--json", "status"])
        .output()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["overall"]["status"], "failed", "{doc}");
    assert!(
        doc["overall"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("storage_writes failed")),
        "{doc}"
    );

    // Writable again: the next staging succeeds, and the check with it.
    drop(read_only);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dropped.exists() {
        assert!(
            Instant::now() < deadline,
            "the file was not taken once writable"
        );
        let _ = scanner::run_once(app, &mut scan).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.store.last_write_failure(), None);
    let report = daemon::check_once(app).await;
    let check = report.get("storage_writes").unwrap();
    assert_eq!(check.status, daemon::health::Status::Ok, "{check:?}");
}
