//! The storage spot check's bookkeeping (RELIABILITY.md case 34): which stored files to
//! verify this run (a few random ones from the database, plus those found damaged before),
//! handing them to [`Store::spot_check`], which decides whether each matches its record, and
//! remembering and logging what it found. The verification itself is storage's.

use super::{HealthReport, Status};
use crate::app::App;
use crate::db::{self, health::StoredFile};
use crate::storage::{Recorded, Store};

/// Stored samples and stored reports each picked at random per run.
const SPOT_CHECK_PER_KIND: usize = 2;

/// Bytes hashed per spot check at most: a file that does not fit the rest of the budget gets
/// the type, size and mode checks only, so a run never reads gigabytes.
pub(super) const SPOT_CHECK_HASH_BUDGET: u64 = 64 * 1024 * 1024;

/// `daemon_state` key of the stored files found damaged: re-checked every run, so storage
/// stays degraded until they are restored (a random pick would miss them again), and each
/// problem is logged once, when first found.
const STORAGE_PROBLEMS_KEY: &str = "storage_problems";

/// At most this many damaged files are remembered (a wiped tree would otherwise grow the
/// list by every pick); the ones past it are neither logged nor remembered, but the detail
/// still counts them.
const MAX_REMEMBERED_PROBLEMS: usize = 100;

/// A stored file found not to match its record, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct StorageProblem {
    file: StoredFile,
    problem: String,
}

/// The storage spot check (catalog 34: a stored file deleted by an antivirus, or altered): a
/// few random stored samples and reports, plus those found damaged before, verified against
/// their records (exists, regular, size, no exec bit, sha256 within `hash_budget` bytes).
/// Nothing is repaired: the operator restores from backup.
pub(super) async fn check_storage(app: &App, report: &mut HealthReport, hash_budget: u64) {
    let known = known_storage_problems(app).await;
    let picked = match db::health::pick_stored_files(&app.db, SPOT_CHECK_PER_KIND).await {
        Ok(picked) => picked,
        Err(e) => {
            report.push(
                "storage",
                Status::Degraded,
                format!("cannot pick stored files to check: {e}"),
            );
            return;
        }
    };
    let mut files: Vec<StoredFile> = known.iter().map(|p| p.file.clone()).collect();
    for file in picked {
        if !files.contains(&file) {
            files.push(file);
        }
    }
    let checked = files.len();
    let store = app.store.clone();
    let problems =
        match tokio::task::spawn_blocking(move || inspect(&store, files, hash_budget)).await {
            Ok(problems) => problems,
            Err(e) => {
                report.push(
                    "storage",
                    Status::Degraded,
                    format!("spot check failed: {e}"),
                );
                return;
            }
        };
    note_storage_problems(app, &known, &problems).await;
    if problems.is_empty() {
        report.push(
            "storage",
            Status::Ok,
            format!("{checked} stored files spot-checked, all match their records"),
        );
        return;
    }
    let listed: Vec<String> = problems
        .iter()
        .take(5)
        .map(|p| format!("{}: {}", app.store.abs(&p.file.path).display(), p.problem))
        .collect();
    let more = problems.len().saturating_sub(listed.len());
    report.push(
        "storage",
        Status::Degraded,
        format!(
            "{} stored file(s) do not match their records: {}{}; restore them from backup \
             (jbxd does not repair them)",
            problems.len(),
            listed.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ),
    );
}

async fn known_storage_problems(app: &App) -> Vec<StorageProblem> {
    match db::health::get_state(&app.db, STORAGE_PROBLEMS_KEY).await {
        Ok(Some(json)) => serde_json::from_str(&json).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Logs each problem not seen in the last run and each one that is gone, and remembers this
/// run's problems for the next.
async fn note_storage_problems(app: &App, known: &[StorageProblem], found: &[StorageProblem]) {
    let found = &found[..found.len().min(MAX_REMEMBERED_PROBLEMS)];
    for p in found.iter().filter(|p| !known.contains(p)) {
        tracing::warn!(
            path = %app.store.abs(&p.file.path).display(),
            problem = %p.problem,
            "storage spot check: a stored file does not match its record"
        );
    }
    for p in known
        .iter()
        .filter(|k| !found.iter().any(|f| f.file == k.file))
    {
        tracing::info!(
            path = %app.store.abs(&p.file.path).display(),
            "storage spot check: a file found damaged earlier matches its record again"
        );
    }
    if known == found {
        return;
    }
    let stored = if found.is_empty() {
        db::health::clear_state(&app.db, STORAGE_PROBLEMS_KEY).await
    } else {
        let json = serde_json::to_string(found).unwrap_or_default();
        db::health::set_state(&app.db, STORAGE_PROBLEMS_KEY, &json).await
    };
    if let Err(error) = stored {
        tracing::error!(%error, "cannot record the storage spot check's findings");
    }
}

/// [`Store::spot_check`] on `files` (blocking), its findings as [`StorageProblem`]s.
fn inspect(store: &Store, files: Vec<StoredFile>, hash_budget: u64) -> Vec<StorageProblem> {
    let recorded: Vec<Recorded<'_>> = files
        .iter()
        .map(|f| Recorded {
            path: &f.path,
            size: u64::try_from(f.size).unwrap_or(u64::MAX),
            sha256: &f.sha256,
        })
        .collect();
    let found = store.spot_check(&recorded, hash_budget);
    found
        .into_iter()
        .map(|(index, problem)| StorageProblem {
            file: files[index].clone(),
            problem,
        })
        .collect()
}
