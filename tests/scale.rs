//! Catalog case 57 (`reliability.md` group C): many files already in the drop folder when the
//! daemon starts. The real binary, as systemd runs it (`NOTIFY_SOCKET`), against a closed API
//! port so that only intake works.
//!
//! CI runs it with 3,000 files; the catalog's size is one documented command:
//!
//! ```sh
//! JBXD_CASE57_FILES=100000 cargo test --release --test scale -- --nocapture
//! ```
//!
//! Expected (catalog): READY within 5 s (the scan runs after READY), peak RSS ≤ 256 MiB, every
//! file recorded exactly once within 10 minutes, and the folder empty afterwards.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use jbxd::testing::TEST_API_KEY;
use tokio::net::UnixDatagram;

const READY_WITHIN: Duration = Duration::from_secs(5);
const ALL_QUEUED_WITHIN: Duration = Duration::from_secs(600);
const MAX_RSS_KIB: u64 = 256 * 1024;

fn file_count() -> usize {
    std::env::var("JBXD_CASE57_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

/// Variables that would change what the binary does if the host happened to set them.
const HOST_ENV: &[&str] = &[
    "JBX_API_URL",
    "JBX_API_KEY",
    "JBXD_LOG",
    "RUST_LOG",
    "CREDENTIALS_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

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

#[tokio::test(flavor = "multi_thread")]
async fn case_57_files_present_at_start_up_are_ready_first_and_all_queued_exactly_once() {
    let files = file_count();
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, drop_dir) = (dir.path().join("data"), dir.path().join("drop"));
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::create_dir_all(&drop_dir).unwrap();
    let config = dir.path().join("jbxd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ndrop_dir = {:?}\n[api]\nurl = \"http://127.0.0.1:9/api\"\n",
            data_dir.to_str().unwrap(),
            drop_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    write_files(&drop_dir, files);
    // Older than the settle period: taken at first sight, as after a stop.
    tokio::time::sleep(Duration::from_millis(2_200)).await;

    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_jbxd"));
    for name in HOST_ENV {
        command.env_remove(name);
    }
    let started = Instant::now();
    let mut child = command
        .args(["run", "--config", config.to_str().unwrap()])
        .env("JBX_API_KEY", TEST_API_KEY)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();

    let ready = tokio::time::timeout(READY_WITHIN, async {
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
    .unwrap_or_else(|_| panic!("READY=1 within {READY_WITHIN:?} with {files} files waiting"));

    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(data_dir.join("jbxd.db"))
                .read_only(true),
        )
        .await
        .unwrap();
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
            child.try_wait().unwrap().is_none(),
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

    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the daemon stops on SIGTERM")
        .unwrap();

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
