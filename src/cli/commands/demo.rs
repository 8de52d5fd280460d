//! `jbxd demo`: the daemon's whole job, offline, in seconds. The README's first command, so it
//! must work on a fresh checkout with no configuration, no account and no network.
//!
//! It starts the simulator on a free loopback port and the daemon (in-process, the same
//! `daemon::run` as `jbxd run`) on a data directory of its own, drops three sample files into
//! the drop folder the proper way (written under a temporary name, then renamed in), queues
//! three URLs in `url_queue`, shows progress until every item is in a terminal state, stops
//! the daemon cleanly and prints the verdict table and the stored report paths. The data
//! directory is kept so the reports (and `jbxd.db`) can be opened afterwards.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::cli::output::{cell, print_json, table};
use crate::cli::{CliError, Context, Outcome};
use crate::daemon::{self, Notifier, RunOptions};
use crate::db::{self, Db, Item};
use crate::simulator::{SimConfig, Simulator};
use crate::testing;

use super::reports::{AnalysisWithReports, report_table, with_reports};

/// The URLs queued: one clean, one malicious and one suspicious by the simulator's rules.
const DEMO_URLS: &[&str] = &[
    "https://example.com/",
    "http://malware.example/evil",
    "https://phish.example/login",
];
/// One clean file and two that the simulator's verdict rules recognise by their markers.
const DEMO_FILES: &[(&str, &[u8])] = &[
    ("notes.txt", b"Meeting notes: nothing to see here.\n"),
    ("invoice.exe", b"MZ demo payload JBXD-MALICIOUS\n"),
    ("macro.doc", b"document with a macro JBXD-SUSPICIOUS\n"),
];
/// How long a simulated analysis takes.
const ANALYSIS_SECONDS: u64 = 3;
/// Every item must be done by then.
const DEADLINE: Duration = Duration::from_secs(90);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo's directory (data directory `DIR/data` with `jbxd.db` and the reports, drop
    /// folder `DIR/drop`). Default: a new directory under the system's temp dir, kept after
    /// the demo so you can open the reports.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// One item of the demo with its analyses and their reports (`--json`).
#[derive(Debug, Serialize)]
struct DemoItem {
    id: i64,
    kind: String,
    name: String,
    state: String,
    error: Option<String>,
    note: Option<String>,
    duplicate_of: Option<i64>,
    analyses: Vec<AnalysisWithReports>,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct DemoDocument<'a> {
    data_dir: &'a Path,
    drop_dir: &'a Path,
    database: PathBuf,
    items: &'a [DemoItem],
}

pub async fn run(context: &Context, args: DemoArgs) -> Result<Outcome, CliError> {
    Ok(demo(context, args).await?)
}

async fn demo(context: &Context, args: DemoArgs) -> anyhow::Result<Outcome> {
    let root = match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir
        }
        None => tempfile::Builder::new()
            .prefix("jbxd-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?
            .keep(),
    };
    // The simulator's uploads are its own business: removed when the demo ends.
    let sim_dir = tempfile::Builder::new()
        .prefix("jbxd-demo-simulator-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let sim = Simulator::start(SimConfig {
        analysis_seconds: ANALYSIS_SECONDS,
        api_key: testing::TEST_API_KEY.to_owned(),
        data_dir: Some(sim_dir.path().to_owned()),
        ..SimConfig::default()
    })
    .await
    .context("cannot start the simulator")?;
    eprintln!("simulator listening on {}", sim.api_url());

    let mut config = testing::fast_config(&root, &sim.api_url());
    // Long enough for the demo's own writes; short enough not to be noticed.
    config.intake.settle_ms = 300;
    for dir in [&config.data_dir, &config.drop_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let db = Db::open(&config.db_path())
        .await
        .context("cannot open the demo database")?;
    // Items of an earlier demo in the same --out directory are not this run's business.
    let baseline = db::items::list(&db, 1)
        .await?
        .first()
        .map_or(0, |item| item.id);
    let client = testing::client_for(&config);
    let app = App::new(config.clone(), db.clone(), client);
    app.store
        .prepare()
        .context("cannot prepare the storage tree")?;
    let operator_config = write_operator_config(&root, &config);
    eprintln!("daemon data directory {}", config.data_dir.display());
    eprintln!("drop folder {}", config.drop_dir.display());

    let cancel = CancellationToken::new();
    let options = RunOptions {
        notifier: Notifier::disabled(),
        stop_timeout: Duration::from_secs(5),
        ..RunOptions::default()
    };
    let mut daemon = tokio::spawn(daemon::run(app.clone(), cancel.clone(), options));

    let fed = feed(&config.drop_dir, &db).await;
    let waited = match fed {
        Ok(()) => wait_for_items(&db, baseline, &mut daemon).await,
        Err(error) => Err(error),
    };
    // Stop the daemon cleanly whatever happened: it checkpoints and closes the database.
    cancel.cancel();
    let stopped = if daemon.is_finished() {
        None
    } else {
        Some(daemon.await)
    };
    sim.shutdown().await;
    waited?;
    match stopped {
        Some(Ok(Ok(()))) | None => {}
        Some(Ok(Err(error))) => bail!("the daemon failed while stopping: {error:#}"),
        Some(Err(error)) => bail!("the daemon task failed: {error}"),
    }
    eprintln!("daemon stopped");

    // Read back the way an operator would: the existing database, never migrated.
    let db = Db::open_existing(&config.db_path()).await?;
    let items = collect(&db, &config.data_dir, baseline).await?;
    let database = db.path().to_owned();
    db.close().await;

    if context.json {
        print_json(&DemoDocument {
            data_dir: &config.data_dir,
            drop_dir: &config.drop_dir,
            database,
            items: &items,
        })?;
    } else {
        println!("{}", verdict_table(&items));
        println!(
            "{}",
            report_table(items.iter().flat_map(|item| &item.analyses))
        );
        println!("reports and database are in {}", config.data_dir.display());
        if let Some(file) = &operator_config {
            println!(
                "look around: jbxd --config {} status  (or: reports, analysis search --xpath \
                 \"/analysis/signaturedetections/strategy[@name='empiric']/detection[text()='MAL']\")",
                file.display()
            );
        }
    }
    let done = items
        .iter()
        .filter(|item| matches!(item.state.as_str(), "done" | "duplicate"))
        .count();
    Ok(Outcome {
        succeeded: done,
        failed: items.len() - done,
    })
}

/// Writes `DIR/jbxd.toml` naming the demo's directories, so that the operator commands can be
/// tried on the result (`jbxd --config DIR/jbxd.toml status`). Best effort: `None` when the
/// paths are not UTF-8 or the file cannot be written.
fn write_operator_config(root: &Path, config: &crate::config::Config) -> Option<PathBuf> {
    // A JSON string is a valid TOML basic string (same escapes).
    let quote = |path: &Path| path.to_str().and_then(|p| serde_json::to_string(p).ok());
    let text = format!(
        "# Written by `jbxd demo`: the demo's directories, for the operator commands.\n\
         data_dir = {}\ndrop_dir = {}\n",
        quote(&config.data_dir)?,
        quote(&config.drop_dir)?
    );
    let path = root.join("jbxd.toml");
    std::fs::write(&path, text).ok()?;
    Some(path)
}

/// Drops the sample files (temporary name, then rename: the scanner takes only complete files)
/// and queues the URLs (as any producer would: a row in `url_queue`).
async fn feed(drop_dir: &Path, db: &Db) -> anyhow::Result<()> {
    for (name, content) in DEMO_FILES {
        let temp = drop_dir.join(format!(".{name}.tmp"));
        std::fs::write(&temp, content)
            .with_context(|| format!("cannot write {}", temp.display()))?;
        let path = drop_dir.join(name);
        std::fs::rename(&temp, &path)
            .with_context(|| format!("cannot rename {} into place", temp.display()))?;
        eprintln!("dropped {}", path.display());
    }
    for url in DEMO_URLS {
        let id = db::url_queue::insert(db, url, None).await?;
        eprintln!("queued {url} (url_queue row {id})");
    }
    Ok(())
}

/// This run's items (ids above `baseline`), oldest first.
async fn new_items(db: &Db, baseline: i64) -> anyhow::Result<Vec<Item>> {
    let mut items: Vec<Item> = db::items::list(db, 10_000)
        .await?
        .into_iter()
        .filter(|item| item.id > baseline)
        .collect();
    items.reverse();
    Ok(items)
}

/// Prints a progress line every second until every dropped file and queued URL is an item in
/// a terminal state; fails with what is stuck after [`DEADLINE`] or if the daemon stops.
async fn wait_for_items(
    db: &Db,
    baseline: i64,
    daemon: &mut tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let expected = DEMO_FILES.len() + DEMO_URLS.len();
    let started = Instant::now();
    let mut last_line = String::new();
    loop {
        let items = new_items(db, baseline).await?;
        let line = progress_line(&items);
        let secs = started.elapsed().as_secs();
        if line != last_line || secs.is_multiple_of(5) {
            eprintln!("[{secs:>3} s] {line}");
            last_line = line;
        }
        if items.len() >= expected && items.iter().all(|item| item.state.is_terminal()) {
            return Ok(());
        }
        if daemon.is_finished() {
            match daemon.await {
                Ok(Ok(())) => bail!("the daemon stopped before the items were done"),
                Ok(Err(error)) => bail!("the daemon failed: {error:#}"),
                Err(error) => bail!("the daemon task failed: {error}"),
            }
        }
        if started.elapsed() > DEADLINE {
            bail!(
                "not every item was done within {} s: {}",
                DEADLINE.as_secs(),
                stuck(&items, expected)
            );
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    }
}

/// `items 6: queued 1, submitted 4, done 1`.
fn progress_line(items: &[Item]) -> String {
    let counts: Vec<String> = db::ItemState::ALL
        .iter()
        .map(|state| {
            (
                state,
                items.iter().filter(|item| item.state == *state).count(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .map(|(state, n)| format!("{} {n}", state.as_str()))
        .collect();
    if counts.is_empty() {
        "waiting for the daemon to take the files and URLs".to_owned()
    } else {
        format!("items {}: {}", items.len(), counts.join(", "))
    }
}

/// What keeps the demo from finishing.
fn stuck(items: &[Item], expected: usize) -> String {
    let mut parts: Vec<String> = items
        .iter()
        .filter(|item| !item.state.is_terminal())
        .map(|item| {
            let why = item
                .error
                .as_deref()
                .or(item.note.as_deref())
                .map(|text| format!(" ({text})"))
                .unwrap_or_default();
            format!(
                "item {} {} is still {}{why}",
                item.id,
                item.name,
                item.state.as_str()
            )
        })
        .collect();
    if items.len() < expected {
        parts.push(format!(
            "only {} of {expected} files and URLs became items",
            items.len()
        ));
    }
    parts.join("; ")
}

async fn collect(db: &Db, data_dir: &Path, baseline: i64) -> anyhow::Result<Vec<DemoItem>> {
    let mut out = Vec::new();
    for item in new_items(db, baseline).await? {
        let analyses = db::analyses::for_item(db, item.id).await?;
        out.push(DemoItem {
            analyses: with_reports(db, data_dir, analyses).await?,
            id: item.id,
            kind: item.kind.to_string(),
            name: item.name,
            state: item.state.as_str().to_owned(),
            error: item.error,
            note: item.note,
            duplicate_of: item.duplicate_of,
        });
    }
    Ok(out)
}

/// One line per item and analysis: what the `verdicts` view shows.
fn verdict_table(items: &[DemoItem]) -> comfy_table::Table {
    let mut out = table(&[
        "item",
        "kind",
        "file/URL",
        "state",
        "webid",
        "detection",
        "score",
        "threat name",
    ]);
    for item in items {
        let head = [
            item.id.to_string(),
            item.kind.clone(),
            item.name.clone(),
            item.state.clone(),
        ];
        if item.analyses.is_empty() {
            let why = item.error.clone().or(item.note.clone()).unwrap_or_default();
            out.add_row(head.clone().into_iter().chain([
                String::new(),
                why,
                String::new(),
                String::new(),
            ]));
        }
        for entry in &item.analyses {
            let a = &entry.analysis;
            out.add_row(head.clone().into_iter().chain([
                a.webid.clone(),
                cell(a.detection.as_deref()),
                cell(a.score),
                cell(a.threatname.as_deref()),
            ]));
        }
    }
    out
}
