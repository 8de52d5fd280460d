//! Catalog cases at scale: 19 (restart with a large history) and 57 (many files in the drop
//! folder at start-up). The real binary, as systemd runs it (`NOTIFY_SOCKET`), against a
//! closed API port so that nothing leaves the machine.
//!
//! CI runs them at a small size; the catalog's sizes are one documented command each:
//!
//! ```sh
//! JBXD_CASE19_ROWS=1000000 cargo test --release --test it scale::case_19 -- --nocapture
//! JBXD_CASE57_FILES=100000 cargo test --release --test it scale::case_57 -- --nocapture
//! ```
//!
//! Expected (catalog): 19 — 1,000,000 history rows and 10,000 non-terminal rows → READY within
//! 10 s. 57 — READY within 5 s (the scan runs after READY), peak RSS ≤ 256 MiB, every file
//! recorded exactly once within 10 minutes, and the folder empty afterwards.

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use jbxd::testing::TEST_API_KEY;
use tokio::net::UnixDatagram;

const READY_WITHIN: Duration = Duration::from_secs(5);
const ALL_QUEUED_WITHIN: Duration = Duration::from_secs(600);
const MAX_RSS_KIB: u64 = 256 * 1024;

/// A size from the environment, or the CI default.
fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmHWM` (peak resident set) of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

async fn count(pool: &sqlx::SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or(0)
}

fn write_files(drop_dir: &Path, n: usize) {
    for i in 0..n {
        // Unique content per file (so none is a duplicate of another), 16 KiB like P3.
        let mut content = vec![0u8; 16 * 1024];
        content[..8].copy_from_slice(&(i as u64).to_le_bytes());
        std::fs::write(drop_dir.join(format!("sample-{i:06}.bin")), content).unwrap();
    }
}

/// A temporary `data_dir`, `drop_dir` and `jbxd.toml` pointing at a closed API port.
struct Setup {
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    drop_dir: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (data_dir, drop_dir) = (dir.path().join("data"), dir.path().join("drop"));
        std::fs::create_dir_all(&data_dir).unwrap();
        std::fs::create_dir_all(&drop_dir).unwrap();
        let config = common::write_config(
            dir.path(),
            &data_dir,
            &drop_dir,
            "[api]\nurl = \"http://127.0.0.1:9/api\"\n",
        );
        Self {
            dir,
            data_dir,
            drop_dir,
            config,
        }
    }

    /// Starts `jbxd run` with a notify socket and waits for `READY=1`; panics after `within`.
    async fn start(&self, within: Duration) -> Running {
        let notify_path = self.dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let mut command = common::jbxd_command();
        let started = Instant::now();
        let child = command
            .args(["run", "--config", self.config.to_str().unwrap()])
            .env("JBX_API_KEY", TEST_API_KEY)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let ready = tokio::time::timeout(within, async {
            let mut buf = vec![0u8; 4096];
            loop {
                let n = notify.recv(&mut buf).await.unwrap();
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    return started.elapsed();
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("READY=1 within {within:?}"));
        Running {
            pid: child.id().unwrap(),
            child,
            started,
            ready,
        }
    }

    /// A read-only connection to the daemon's database.
    async fn reader(&self) -> sqlx::SqlitePool {
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.data_dir.join("jbxd.db"))
                    .read_only(true),
            )
            .await
            .unwrap()
    }
}

/// A running daemon.
struct Running {
    child: tokio::process::Child,
    pid: u32,
    started: Instant,
    /// From spawn to `READY=1`.
    ready: Duration,
}

impl Running {
    /// SIGTERM; the exit status.
    async fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the daemon stops on SIGTERM")
            .unwrap()
    }
}

/// Fills a fresh database with `history` finished items (each with its analysis and a stored
/// report row) and `pending` non-terminal ones (half queued, half `submitting` with an
/// unknown-outcome attempt, which start-up must not wait for).
async fn seed_history(data_dir: &Path, history: usize, pending: usize) {
    let db = jbxd::db::Db::open_in(data_dir).await.unwrap();
    let pool = db.pool();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO items (kind, source, item_key, name, sha256, md5, sha1, size, state,
                            submission_id, submitted_at, finished_at)
         SELECT 'file', 'drop', printf('hist-%d', i), printf('sample-%d.exe', i),
                printf('%064x', i), printf('%032x', i), printf('%040x', i), 16384, 'done',
                printf('%d', i), '2026-01-01T00:00:00Z', '2026-01-01T00:05:00Z'
           FROM n",
    )
    .bind(history as i64)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO analyses (webid, item_id, submission_id, status, detection, score,
                               filename, md5, sha1, sha256, systems, time, duration, info_json)
         SELECT printf('%d', id), id, submission_id, 'finished',
                CASE id % 3 WHEN 0 THEN 'malicious' WHEN 1 THEN 'clean' ELSE 'suspicious' END,
                id % 100, name, md5, sha1, sha256, 'w10x64', submitted_at, 120,
                json_object('webid', printf('%d', id), 'detection', 'clean')
           FROM items",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO reports (webid, type, state, path, size, sha256, downloaded_at)
         SELECT webid, 'html', 'stored', 'reports/' || webid || '/report.html', 1000, sha256,
                time
           FROM analyses",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO items (kind, source, item_key, name, url, state, attempts)
         SELECT 'url', 'cli', printf('pending-%d', i), printf('https://pending.example/%d', i),
                printf('https://pending.example/%d', i),
                CASE i % 2 WHEN 0 THEN 'queued' ELSE 'submitting' END, i % 2
           FROM n",
    )
    .bind(pending as i64)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO submit_attempts (item_id, attempt_key, outcome)
         SELECT id, item_key || '-1', 'unknown' FROM items WHERE state = 'submitting'",
    )
    .execute(pool)
    .await
    .unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn case_19_a_restart_with_a_large_history_is_ready_within_10_s() {
    let history = size("JBXD_CASE19_ROWS", 20_000);
    let pending = (history / 100).max(100);
    let setup = Setup::new();
    seed_history(&setup.data_dir, history, pending).await;
    let db_bytes = std::fs::metadata(setup.data_dir.join("jbxd.db"))
        .unwrap()
        .len();

    let daemon = setup.start(Duration::from_secs(10)).await;
    let ready = daemon.ready;
    let reader = setup.reader().await;
    let rows = count(&reader, "SELECT count(*) FROM items").await;
    reader.close().await;
    let status = daemon.stop().await;
    println!(
        "case 19: {history} finished items (+ as many analyses and reports), {pending} \
         non-terminal; database {:.0} MiB; READY after {} ms",
        db_bytes as f64 / (1024.0 * 1024.0),
        ready.as_millis()
    );
    assert_eq!(rows, (history + pending) as i64, "nothing lost at start-up");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn case_57_files_present_at_start_up_are_ready_first_and_all_queued_exactly_once() {
    let files = size("JBXD_CASE57_FILES", 3_000);
    let setup = Setup::new();
    let drop_dir = setup.drop_dir.clone();
    write_files(&drop_dir, files);
    // Older than the settle period: taken at first sight, as after a stop.
    tokio::time::sleep(Duration::from_millis(2_200)).await;

    let mut daemon = setup.start(READY_WITHIN).await;
    let (started, ready, pid) = (daemon.started, daemon.ready, daemon.pid);
    let pool = setup.reader().await;
    let deadline = started + ALL_QUEUED_WITHIN;
    let mut last_progress = (0, Instant::now());
    loop {
        let now = count(&pool, "SELECT count(*) FROM items").await;
        if now >= files as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all {files} files queued within {ALL_QUEUED_WITHIN:?}"
        );
        if now != last_progress.0 {
            last_progress = (now, Instant::now());
        }
        assert!(
            last_progress.1.elapsed() < Duration::from_secs(60),
            "intake stalled at {now} of {files} items"
        );
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "the daemon exited during intake"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_queued = started.elapsed();
    // The scan returns once its unlinks are done: wait for the folder to empty.
    let emptied = jbxd::testing::wait_until(Duration::from_secs(120), || {
        let drop_dir = drop_dir.clone();
        async move { std::fs::read_dir(&drop_dir).unwrap().next().is_none() }
    })
    .await;
    let rss_kib = peak_rss_kib(pid);

    // Exactly once: one row per file name, none rejected or a duplicate.
    let rows = count(&pool, "SELECT count(*) FROM items").await;
    // The submit worker may be trying some of them against the closed port meanwhile.
    let taken = count(
        &pool,
        "SELECT count(*) FROM items WHERE state IN ('queued', 'submitting')",
    )
    .await;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM items")
        .fetch_all(&pool)
        .await
        .unwrap();
    let distinct: HashSet<&String> = names.iter().collect();
    pool.close().await;

    let status = daemon.stop().await;

    println!(
        "case 57: {files} files; READY after {} ms; all queued after {:.2} s; peak RSS {:.1} MiB; \
         folder emptied: {emptied}",
        ready.as_millis(),
        all_queued.as_secs_f64(),
        rss_kib as f64 / 1024.0
    );
    assert_eq!(rows, files as i64, "one row per file");
    assert_eq!(distinct.len(), files, "no file recorded twice");
    assert_eq!(
        taken, files as i64,
        "every file queued (none rejected or duplicate)"
    );
    assert!(emptied, "every source removed from the drop folder");
    assert!(
        rss_kib <= MAX_RSS_KIB,
        "peak RSS {rss_kib} KiB over {MAX_RSS_KIB}"
    );
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
