//! The test harness (tests and benchmarks only, see the parent module): a temporary data
//! directory and drop folder with the simulator on loopback, the pipeline driven one step at a
//! time, `wait_until`, and the reliability invariant check of the crash and torture tests.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{TEST_API_KEY, client_for, fast_config};
use crate::api::{ApiKey, ClientSettings, Endpoint, JoeClient};
use crate::app::App;
use crate::config::Config;
use crate::db::{Db, Item};
use crate::simulator::{SimConfig, Simulator};

/// A temporary directory, a running simulator and an [`App`] wired to both.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
    pub app: App,
}

impl TestEnv {
    /// Starts the simulator (with the test key) and opens a fresh database; `tweak` adjusts the
    /// fast configuration before anything is created.
    pub async fn start(sim_config: SimConfig, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = simulator(sim_config).await;
        let mut config = fast_config(dir.path(), &sim.api_url());
        tweak(&mut config);
        std::fs::create_dir_all(&config.drop_dir).expect("drop dir");
        std::fs::create_dir_all(&config.data_dir).expect("data dir");
        let db = Db::open(&config.db_path()).await.expect("db opens");
        let client = client_for(&config);
        let app = App::new(config, db, client);
        app.store.prepare().expect("storage tree");
        Self { dir, sim, app }
    }

    pub fn drop_dir(&self) -> &Path {
        &self.app.config.drop_dir
    }
}

/// One step of every pipeline worker, in the order an item moves through them.
pub async fn step_workers(app: &App) {
    use crate::pipeline::{download, poll, reconcile, submit};
    submit::run_once(app).await.expect("submit step");
    reconcile::run_once(app).await.expect("reconcile step");
    poll::run_once(app).await.expect("poll step");
    download::run_once(app).await.expect("download step");
}

/// Steps the workers until `done` holds for the items, or panics after `timeout` showing
/// where each item stands.
pub async fn drive_until(
    app: &App,
    timeout: Duration,
    done: impl Fn(&[Item]) -> bool,
) -> Vec<Item> {
    let deadline = Instant::now() + timeout;
    loop {
        step_workers(app).await;
        let items = crate::db::items::list(&app.db, 1000)
            .await
            .expect("list items");
        if done(&items) {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; items: {:#?}",
            items
                .iter()
                .map(|i| (i.id, i.state, i.error.clone(), i.note.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// There is at least one item and every item reached a terminal state.
pub fn all_terminal(items: &[Item]) -> bool {
    !items.is_empty() && items.iter().all(|i| i.state.is_terminal())
}

/// A simulator on loopback (port 0 unless `sim_config` says otherwise) that accepts
/// [`TEST_API_KEY`].
pub async fn simulator(sim_config: SimConfig) -> Simulator {
    Simulator::start(SimConfig {
        api_key: TEST_API_KEY.into(),
        ..sim_config
    })
    .await
    .expect("simulator starts")
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One input a crash test fed the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedInput {
    /// A file dropped under `name` with this content hash.
    File { name: String, sha256: String },
    /// A `url_queue` row.
    Url { queue_id: i64 },
}

/// What [`check_invariants`] found (figures for the torture output).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvariantReport {
    pub inputs: usize,
    pub items: usize,
    pub done: usize,
    pub failed: usize,
    pub rejected: usize,
    pub duplicate_items: usize,
    /// Inputs without exactly one terminal item.
    pub lost: usize,
    /// Submissions created on the server and not deleted.
    pub accepted_submissions: usize,
    /// Submissions created and deleted again (e.g. an incomplete chunked upload).
    pub deleted_submissions: usize,
    /// Accepted submissions beyond the first per item key.
    pub duplicate_submissions: usize,
    pub stored_reports: usize,
    pub stored_samples: usize,
}

/// The invariant check of RELIABILITY.md (promises I1–I3) after a crash test drained and stopped the daemon:
/// (a) every input has exactly one terminal item (files by sha256 and name, gone from the drop
/// folder; every `url_queue` row terminal); (b) at most one accepted (not deleted, finished)
/// submission per item key, from the simulator's log of `jbxd:<item_key>-<n>` comments;
/// (c) no temporary (`.jbxd-*.part`) file under `data_dir`; (d) `PRAGMA integrity_check` is
/// `ok`; (e) every stored report and sample matches its recorded size and sha256 and no file
/// under `data_dir` has an exec bit; (f) nothing exists in the test directory (the parent of
/// `data_dir`) but `data_dir`, `drop_dir` and `*.toml` configuration files.
///
/// `Err` lists every violation, followed by the figures.
pub async fn check_invariants(
    data_dir: &Path,
    drop_dir: &Path,
    sim: &Simulator,
    expected: &[ExpectedInput],
) -> Result<InvariantReport, String> {
    use std::collections::{BTreeMap, BTreeSet};
    use std::os::unix::fs::PermissionsExt;

    use crate::db::{self, ItemState};
    use crate::storage::{Store, TEMP_PREFIX};

    let mut violations: Vec<String> = Vec::new();
    let mut report = InvariantReport {
        inputs: expected.len(),
        ..InvariantReport::default()
    };
    let db = Db::open_existing(&data_dir.join("jbxd.db"))
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    let items = db::items::list(&db, i64::MAX)
        .await
        .map_err(|e| format!("cannot list items: {e}"))?;
    report.items = items.len();
    for item in &items {
        match item.state {
            ItemState::Done => report.done += 1,
            ItemState::Failed => report.failed += 1,
            ItemState::Rejected => report.rejected += 1,
            ItemState::Duplicate => report.duplicate_items += 1,
            other => violations.push(format!(
                "item {} ({}) is not terminal: {}",
                item.id,
                item.name,
                other.as_str()
            )),
        }
    }

    // (a) one terminal item per input.
    let queue = db::invariants::url_queue_rows(&db)
        .await
        .map_err(|e| format!("cannot read url_queue: {e}"))?;
    for (id, status, _) in &queue {
        if !matches!(
            status.as_str(),
            "done" | "rejected" | "failed" | "duplicate"
        ) {
            violations.push(format!("url_queue row {id} is not terminal: {status}"));
        }
    }
    for input in expected {
        let found: Vec<_> = match input {
            ExpectedInput::File { sha256, .. } => items
                .iter()
                .filter(|i| !i.is_url() && i.sha256.as_deref() == Some(sha256))
                .collect(),
            ExpectedInput::Url { queue_id } => items
                .iter()
                .filter(|i| i.url_queue_id == Some(*queue_id))
                .collect(),
        };
        let ok = found.len() == 1 && found[0].state.is_terminal();
        if !ok {
            report.lost += 1;
            violations.push(format!(
                "{input:?}: expected one terminal item, found {:?}",
                found
                    .iter()
                    .map(|i| (i.id, i.state.as_str()))
                    .collect::<Vec<_>>()
            ));
            continue;
        }
        if let ExpectedInput::File { name, .. } = input {
            if &found[0].name != name {
                violations.push(format!("{input:?}: recorded as {:?}", found[0].name));
            }
            if found[0].state != ItemState::Rejected && drop_dir.join(name).exists() {
                violations.push(format!("{name} is still in the drop folder"));
            }
        }
        if let ExpectedInput::Url { queue_id } = input
            && !queue
                .iter()
                .any(|(id, _, item)| id == queue_id && *item == Some(found[0].id))
        {
            violations.push(format!("url_queue row {queue_id} does not name its item"));
        }
    }
    let unsettled = db::invariants::unsettled_reports(&db)
        .await
        .map_err(|e| format!("cannot read reports: {e}"))?;
    if !unsettled.is_empty() {
        violations.push(format!("unsettled reports: {unsettled:?}"));
    }

    // (b) at most one accepted submission per item key.
    let client = JoeClient::new({
        let mut s = ClientSettings::new(sim.api_url(), ApiKey::new(TEST_API_KEY).unwrap());
        s.accept_tac = true;
        s
    })
    .map_err(|e| format!("client: {e}"))?;
    let mut per_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in sim.request_log() {
        if !record.is(Endpoint::SubmissionNew) {
            continue;
        }
        let (Some(id), Some(comments)) = (record.submission_id, record.comments) else {
            continue;
        };
        let Some(key) = comments
            .split_whitespace()
            .find_map(|w| w.strip_prefix("jbxd:"))
            .and_then(|attempt| attempt.rsplit_once('-'))
            .map(|(item_key, _)| item_key.to_owned())
        else {
            violations.push(format!(
                "submission {id} carries no attempt key: {comments:?}"
            ));
            continue;
        };
        per_key.entry(key).or_default().insert(id);
    }
    for (key, ids) in &per_key {
        let mut live = Vec::new();
        for id in ids {
            match client.submission_info(id).await {
                Ok(submission) => {
                    if !submission.is_finished() {
                        violations.push(format!(
                            "submission {id} of item key {key} is incomplete and was not deleted"
                        ));
                    }
                    live.push(id.clone());
                }
                Err(e) if e.status() == Some(404) => report.deleted_submissions += 1,
                Err(e) => violations.push(format!("looking submission {id} up: {e}")),
            }
        }
        report.accepted_submissions += live.len();
        if live.len() > 1 {
            report.duplicate_submissions += live.len() - 1;
            violations.push(format!(
                "item key {key}: {} accepted submissions {live:?}",
                live.len()
            ));
        }
    }

    // (d) the database is intact.
    match db.integrity_check().await {
        Ok(result) if result == "ok" => {}
        Ok(result) => violations.push(format!("integrity_check: {result}")),
        Err(e) => violations.push(format!("integrity_check failed: {e}")),
    }

    // (e) stored files match their records.
    let store = Store::new(data_dir);
    let stored = db::analyses::stored_paths(&db)
        .await
        .map_err(|e| format!("cannot list stored reports: {e}"))?;
    report.stored_reports = stored.len();
    let samples: BTreeSet<(String, i64, String)> = items
        .iter()
        .filter_map(|i| Some((i.sample_path.clone()?, i.size?, i.sha256.clone()?)))
        .collect();
    report.stored_samples = samples.len();
    for (path, size, sha256) in stored.iter().chain(samples.iter()) {
        match store.verify(path, *size as u64, sha256) {
            Ok(true) => {}
            Ok(false) => violations.push(format!("{path} does not match its record")),
            Err(e) => violations.push(format!("{path}: {e}")),
        }
    }
    db.close().await;

    // (c), (e), (f): walk the whole test directory.
    let root = data_dir.parent().unwrap_or(data_dir);
    let mut files = Vec::new();
    walk(root, &mut files);
    for path in files {
        let inside_data = path.starts_with(data_dir);
        let inside_drop = path.starts_with(drop_dir);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if inside_data {
            if name.starts_with(TEMP_PREFIX) {
                violations.push(format!("temporary file left: {}", path.display()));
            }
            if let Ok(meta) = std::fs::symlink_metadata(&path)
                && meta.is_file()
                && meta.permissions().mode() & 0o111 != 0
            {
                violations.push(format!("exec bit on {}", path.display()));
            }
        } else {
            let config_file =
                path.parent() == Some(root) && name.ends_with(".toml") && path.is_file();
            if !inside_drop && !config_file {
                violations.push(format!("outside the configured roots: {}", path.display()));
            }
        }
    }

    if violations.is_empty() {
        Ok(report)
    } else {
        Err(format!(
            "{} invariant violations:\n  {}\n{report:?}",
            violations.len(),
            violations.join("\n  ")
        ))
    }
}

/// Every entry under `dir` that is not a directory, and every directory that is empty.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let before = out.len();
            walk(&path, out);
            if out.len() == before {
                // An empty directory still counts as something that exists.
                out.push(path);
            }
        } else {
            out.push(path);
        }
    }
}
