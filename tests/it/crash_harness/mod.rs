//! Shared by `crash_points.rs`, `torture.rs` and `crash_recovery.rs`: the real `jbxd run` as a
//! child process against the in-process simulator, with its configuration file in a temporary
//! directory, helpers to feed it files and URLs, to wait for its death or for the queue to
//! drain, and to stop it.

#![allow(dead_code)] // each test binary uses its own part

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use jbxd::db::{self, Db};
use jbxd::simulator::{SimConfig, Simulator};
use jbxd::testing::{ExpectedInput, TEST_API_KEY, wait_until};
use sha2::{Digest, Sha256};

pub struct Harness {
    /// The test directory: `data/`, `drop/` and `jbxd.toml`, nothing else (invariant f).
    pub dir: tempfile::TempDir,
    /// The daemon's stderr, one file per run, outside the test directory.
    pub logs: tempfile::TempDir,
    pub config: PathBuf,
    pub sim: Simulator,
    pub expected: Vec<ExpectedInput>,
    /// Extra environment for every run (e.g. `JBXD_PIPELINE__SUBMIT_CONCURRENCY`).
    pub env: Vec<(String, String)>,
    runs: usize,
}

impl Harness {
    pub async fn new(sim: SimConfig, extra_toml: &str) -> Self {
        let sim = jbxd::testing::simulator(sim).await;
        let dir = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
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
reconcile_window_secs = 2

[poll]
expected_analysis_secs = 0
min_interval_secs = 0
max_interval_secs = 1

[health]
schedule = "*/5 * * * * *"
min_free_disk_mb = 1
{extra_toml}"#,
                data = data.display(),
                drop = drop.display(),
                url = sim.api_url(),
            ),
        )
        .unwrap();
        Self {
            dir,
            logs,
            config,
            sim,
            expected: Vec::new(),
            env: Vec::new(),
            runs: 0,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn drop_dir(&self) -> PathBuf {
        self.dir.path().join("drop")
    }

    /// Starts `jbxd run`, with `JBXD_CRASHPOINT=crashpoint` when given.
    pub fn spawn(&mut self, crashpoint: Option<&str>) -> Child {
        self.runs += 1;
        let log = std::fs::File::create(self.log_path(self.runs)).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_jbxd"));
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("JBX_API_KEY", TEST_API_KEY)
            .env("JBXD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        if let Some(point) = crashpoint {
            command.env("JBXD_CRASHPOINT", point);
        }
        // A test that fails (or is killed) must not leave a daemon behind: the child gets
        // SIGKILL when the test's thread ends.
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.spawn().expect("jbxd run starts")
    }

    /// The log of the latest run.
    pub fn last_log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.runs)).unwrap_or_default()
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.logs.path().join(format!("run-{run}.log"))
    }

    /// The last lines of every run's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for run in 1..=self.runs {
            let text = std::fs::read_to_string(self.log_path(run)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- run {run} (last 30 lines)\n"));
            for line in &lines[lines.len().saturating_sub(30)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Every run's full log (the key must never appear in it).
    pub fn all_logs(&self) -> String {
        (1..=self.runs)
            .map(|run| std::fs::read_to_string(self.log_path(run)).unwrap_or_default())
            .collect()
    }

    /// Waits for the daemon's database and opens it.
    pub async fn db(&self) -> Db {
        let path = self.data_dir().join("jbxd.db");
        let ready = wait_until(Duration::from_secs(30), || {
            let path = path.clone();
            async move { Db::open_existing(&path).await.is_ok() }
        })
        .await;
        assert!(ready, "the daemon never created its database");
        Db::open_existing(&path).await.unwrap()
    }

    /// Drops a file (written under a temporary name, then renamed, as producers should).
    pub fn drop_file(&mut self, name: &str, content: &[u8]) {
        let temp = self.drop_dir().join(format!(".{name}.tmp"));
        std::fs::write(&temp, content).unwrap();
        std::fs::rename(&temp, self.drop_dir().join(name)).unwrap();
        self.expected.push(ExpectedInput::File {
            name: name.to_owned(),
            sha256: hex::encode(Sha256::digest(content)),
        });
    }

    pub async fn queue_url(&mut self, db: &Db, url: &str) {
        let queue_id = db::url_queue::insert(db, url, None).await.unwrap();
        self.expected.push(ExpectedInput::Url { queue_id });
    }

    /// Whether every input has a terminal item and nothing else is in flight.
    pub async fn drained(&self, db: &Db) -> bool {
        let Ok(items) = db::items::list(db, i64::MAX).await else {
            return false;
        };
        let Ok(queue) = db::invariants::url_queue_rows(db).await else {
            return false;
        };
        let files_seen = self.expected.iter().all(|input| match input {
            ExpectedInput::File { sha256, .. } => items
                .iter()
                .any(|i| i.sha256.as_deref() == Some(sha256.as_str())),
            ExpectedInput::Url { queue_id } => queue.iter().any(|(id, _, _)| id == queue_id),
        });
        files_seen
            && items.iter().all(|i| i.state.is_terminal())
            && queue.iter().all(|(_, status, _)| {
                matches!(
                    status.as_str(),
                    "done" | "rejected" | "failed" | "duplicate"
                )
            })
    }

    /// Waits until every input is terminal (`within`); returns whether it happened.
    pub async fn wait_drained(&self, db: &Db, within: Duration) -> bool {
        wait_until(within, || async { self.drained(db).await }).await
    }
}

/// The 1-based content of test file `n`: unique bytes (distinct sha256) of about `size` bytes.
pub fn content(n: usize, size: usize) -> Vec<u8> {
    let mut out = format!("JBXD crash test sample {n}\n").into_bytes();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ n as u64;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size.max(1));
    out
}

pub fn signal(child: &Child, signal: i32) {
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0, "kill({}, {signal})", child.id());
}

/// Waits for the child to exit (killing it and panicking after `within`).
pub async fn wait_exit(mut child: Child, within: Duration) -> ExitStatus {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().ok();
                child.wait().ok();
                panic!("jbxd did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
    .await
    .unwrap()
}

pub fn killed_by_sigkill(status: &ExitStatus) -> bool {
    status.signal() == Some(libc::SIGKILL)
}

/// Whether any file under `dir` has a name starting with `prefix`.
pub fn has_file_with_prefix(dir: &Path, prefix: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            has_file_with_prefix(&path, prefix)
        } else {
            e.file_name().to_string_lossy().starts_with(prefix)
        }
    })
}
