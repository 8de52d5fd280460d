//! Reliability catalog group F, secrets (RELIABILITY.md): the sentinel-key scan
//! over everything the daemon leaves behind (97) and no core dumps (99). Cases 94–96 are in
//! `tests/config.rs`; 98 is `daemon::tests::case_98_a_panicking_worker_is_fatal_and_named`.
//!
//! Both run the real `jbxd run` binary as a child against the in-process simulator, with the
//! API key passed in a key file (mode 0600) so that the child's environment holds no key.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use jbxd::db::{self, Db};
use jbxd::simulator::{Fault, FaultRule, SimConfig};
use jbxd::testing::{TEST_API_KEY, wait_until};
use sqlx::{Column, Row};

/// A data directory, drop folder, key file and configuration for one `jbxd run`.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    key_file: PathBuf,
}

impl Setup {
    fn new(api_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("api_key");
        std::fs::write(&key_file, format!("{TEST_API_KEY}\n")).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = dir.path().join("jbxd.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\ndrop_dir = {:?}\n\
                 [api]\nurl = {api_url:?}\naccept_tac = true\nkey_file = {:?}\n\
                 [intake]\nsettle_ms = 200\nurl_poll_ms = 100\n\
                 [pipeline]\nretry_base_secs = 0\nretry_cap_secs = 1\nreconcile_grace_secs = 0\n\
                 [poll]\nexpected_analysis_secs = 0\nmin_interval_secs = 0\nmax_interval_secs = 1\n\
                 [health]\nschedule = \"* * * * * *\"\nmin_free_disk_mb = 1\n",
                dir.path().join("data").to_str().unwrap(),
                dir.path().join("drop").to_str().unwrap(),
                key_file.to_str().unwrap(),
            ),
        )
        .unwrap();
        Self {
            dir,
            config,
            key_file,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn drop_dir(&self) -> PathBuf {
        self.dir.path().join("drop")
    }

    fn command(&self) -> tokio::process::Command {
        let mut command = common::jbxd_command();
        command
            .args(["run", "--config", self.config.to_str().unwrap()])
            .current_dir(self.dir.path())
            .kill_on_drop(true);
        command
    }
}

fn sigterm(pid: u32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
}

fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files_below(&path, out);
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every value of every row of every table, as text (the `.dump` equivalent).
pub(crate) async fn dump(db: &Db) -> String {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let mut out = String::new();
    for table in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{table}\"")))
            .fetch_all(db.pool())
            .await
            .unwrap();
        for row in rows {
            out.push_str(&table);
            for (i, column) in row.columns().iter().enumerate() {
                let value = if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                    v.unwrap_or_default()
                } else if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
                    String::from_utf8_lossy(&v.unwrap_or_default()).into_owned()
                } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                    v.map(|v| v.to_string()).unwrap_or_default()
                } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                    v.map(|v| v.to_string()).unwrap_or_default()
                } else {
                    panic!("{table}.{} has a value of no known type", column.name());
                };
                out.push('\t');
                out.push_str(&value);
            }
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn case_97_the_sentinel_key_appears_in_no_log_row_file_argv_or_environment() {
    let sim = jbxd::testing::simulator(SimConfig::default()).await;
    let setup = Setup::new(&sim.api_url());
    std::fs::create_dir_all(setup.drop_dir()).unwrap();
    let child = setup
        .command()
        .env("JBXD_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();

    let db_path = setup.data_dir().join("jbxd.db");
    assert!(
        wait_until(Duration::from_secs(30), || async { db_path.exists() }).await,
        "the daemon did not start"
    );
    // The scenario: files, URLs, an item the server refuses for a bad parameter, a
    // maintenance window, the health job every second.
    for (name, content) in [
        ("evil.exe", &b"MZ payload JBXD-MALICIOUS\n"[..]),
        ("clean.txt", b"nothing here\n"),
    ] {
        let temp = setup.drop_dir().join(format!(".{name}.tmp"));
        std::fs::write(&temp, content).unwrap();
        std::fs::rename(&temp, setup.drop_dir().join(name)).unwrap();
    }
    // The file appears before its migration is committed: wait until it opens as current.
    let mut opened = Db::open_existing(&db_path).await;
    for _ in 0..300 {
        if opened.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        opened = Db::open_existing(&db_path).await;
    }
    let db = opened.expect("the daemon migrated its database");
    db::url_queue::insert(&db, "https://example.com/", None)
        .await
        .unwrap();
    db::url_queue::insert(
        &db,
        "https://example.com/bad",
        Some(r#"{"systems": ["no-such-system"]}"#),
    )
    .await
    .unwrap();
    db::url_queue::insert(&db, "javascript:alert(1)", None)
        .await
        .unwrap();

    // The process's own view of itself while it works.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!contains(&cmdline, TEST_API_KEY.as_bytes()), "argv");
    assert!(!contains(&environ, TEST_API_KEY.as_bytes()), "environ");

    let settled = wait_until(Duration::from_secs(60), || {
        let db = db.clone();
        async move {
            let items = db::items::list(&db, 10).await.unwrap();
            // Two files and two valid URLs; `javascript:` is refused at intake, no item.
            items.len() == 4 && items.iter().all(|i| i.state.is_terminal())
        }
    })
    .await;
    assert!(settled, "{:#?}", db::items::list(&db, 10).await.unwrap());
    let items = db::items::list(&db, 10).await.unwrap();
    assert!(
        items.iter().any(|i| i.state == db::ItemState::Rejected
            && i.url.as_deref() == Some("https://example.com/bad")),
        "{items:#?}"
    );
    sim.set_maintenance(true);
    let paused = wait_until(Duration::from_secs(10), || {
        let db = db.clone();
        async move {
            !db::health::all(&db)
                .await
                .unwrap()
                .iter()
                .all(|h| h.status == "ok")
        }
    })
    .await;
    assert!(paused, "the health check did not see the maintenance");
    sim.set_maintenance(false);
    // One more submission the server refuses with an error reply.
    sim.faults().add(FaultRule::times(
        Some("submission/new"),
        Fault::Error {
            http_status: 400,
            code: 2,
            message: "Missing parameter: accept-tac.".into(),
        },
        1,
    ));
    db::url_queue::insert(&db, "https://example.org/refused", None)
        .await
        .unwrap();
    let refused = wait_until(Duration::from_secs(20), || {
        let db = db.clone();
        async move {
            db::items::list(&db, 10)
                .await
                .unwrap()
                .iter()
                .filter(|i| i.state.is_terminal())
                .count()
                == 5
        }
    })
    .await;
    assert!(refused);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!contains(&environ, TEST_API_KEY.as_bytes()), "environ");
    db.pool().close().await;

    sigterm(pid);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stops after SIGTERM")
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.lines().count() > 20 && stderr.contains("DEBUG"),
        "debug logging was on: {stderr}"
    );
    assert!(!contains(&output.stderr, TEST_API_KEY.as_bytes()), "stderr");
    assert!(!contains(&output.stdout, TEST_API_KEY.as_bytes()), "stdout");

    let db = Db::open_existing(&db_path).await.unwrap();
    let rows = dump(&db).await;
    assert!(rows.contains("example.com/bad"), "the dump has the rows");
    assert!(!rows.contains(TEST_API_KEY), "database rows");
    db.close().await;

    // Every file the run left: database, WAL, samples, reports, lock, rejected inputs.
    let mut files = Vec::new();
    files_below(setup.dir.path(), &mut files);
    files.retain(|f| f != &setup.key_file);
    assert!(files.len() > 5, "{files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !contains(&bytes, TEST_API_KEY.as_bytes()),
            "{} holds the key",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn case_99_jbxd_run_leaves_no_core_dump() {
    // A control process under the same limits proves core dumps work here at all
    // (core_pattern, RLIMIT_CORE); then jbxd, which sets PR_SET_DUMPABLE = 0 first thing,
    // must die of SIGSEGV without one.
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let control_dir = tempfile::tempdir().unwrap();
    let mut control = unlimited_core(tokio::process::Command::new("sleep"))
        .arg("30")
        .current_dir(control_dir.path())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(control.id().unwrap() as i32, libc::SIGSEGV) };
    let status = control.wait().await.unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
    let dumps_work = status.core_dumped();
    eprintln!("case 99: control core dumped: {dumps_work} (core_pattern {pattern:?})");

    let sim = jbxd::testing::simulator(SimConfig::default()).await;
    let setup = Setup::new(&sim.api_url());
    let mut child = unlimited_core(setup.command())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    let db_path = setup.data_dir().join("jbxd.db");
    assert!(wait_until(Duration::from_secs(30), || async { db_path.exists() }).await);
    // Rust's runtime catches the first SIGSEGV (stack-overflow detection), restores the
    // default action and returns; a sent signal is not re-raised, so send a second one.
    let mut died = false;
    for _ in 0..50 {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGSEGV) };
        tokio::time::sleep(Duration::from_millis(100)).await;
        if matches!(child.try_wait(), Ok(Some(_))) {
            died = true;
            break;
        }
    }
    assert!(died, "jbxd survived SIGSEGV");
    let status = child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    assert!(!status.core_dumped(), "jbxd dumped core");
    let mut files = Vec::new();
    files_below(setup.dir.path(), &mut files);
    assert!(
        !files.iter().any(|f| f
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("core"))),
        "{files:?}"
    );
    if !dumps_work {
        eprintln!(
            "case 99: core dumps are disabled on this host anyway; the check above proves \
             only that none was written"
        );
    }
}

/// Lifts RLIMIT_CORE in the child so only PR_SET_DUMPABLE can prevent a dump.
fn unlimited_core(mut command: tokio::process::Command) -> tokio::process::Command {
    // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

#[test]
fn case_99_disable_core_dumps_clears_the_dumpable_flag() {
    // In a forked child, so the test process itself stays dumpable.
    // SAFETY: the child only calls async-signal-safe functions before _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        jbxd::daemon::disable_core_dumps();
        let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        unsafe { libc::_exit(if dumpable == 0 { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}
