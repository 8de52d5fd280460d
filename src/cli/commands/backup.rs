//! `jbxd backup DEST`: a consistent copy of the daemon's database, taken while it runs.
//!
//! Like the other operator commands it opens the existing database (never creates it, takes
//! no daemon lock) and needs no API key; the copy itself is [`db::backup`](crate::db::backup).

use std::path::PathBuf;

use clap::Args;

use crate::cli::output::print_json;
use crate::cli::{CliError, Context, Outcome};
use crate::db::backup::{self, BackupError, BackupSummary};

use super::operator::open;

/// Copy the daemon's database to DEST while the daemon runs.
///
/// The copy is one consistent snapshot (SQLite `VACUUM INTO`, one read transaction): every
/// change committed before the command started is in it, the daemon keeps working meanwhile.
/// DEST is a compact standalone SQLite file (no -wal file to copy along), mode 0600. It is
/// written under a temporary name in DEST's directory, fsynced, checked with `PRAGMA
/// integrity_check` and only then renamed to DEST, so a crash never leaves half a backup
/// there. DEST must not exist. To restore: stop the daemon, remove jbxd.db, jbxd.db-wal and
/// jbxd.db-shm from `data_dir`, copy the backup to `data_dir/jbxd.db`, start the daemon.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to create (refused if it exists).
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

pub async fn run(context: &Context, args: BackupArgs) -> Result<Outcome, CliError> {
    let (_config, db) = open(context).await?;
    let result = backup::backup_to(&db, &args.dest).await;
    // No checkpoint on the way out: the daemon owns the WAL, the backup only read it.
    db.pool().close().await;
    let summary = result.map_err(backup_failed)?;
    if context.json {
        print_json(&summary)?;
    } else {
        print_text(&summary);
    }
    Ok(Outcome::success())
}

/// An existing destination is an unusable argument (exit 2); the rest is a failure (exit 1).
fn backup_failed(error: BackupError) -> CliError {
    match error {
        BackupError::DestinationExists(_) | BackupError::NotAFileName(_) => {
            CliError::Usage(error.to_string())
        }
        other => CliError::Failed(anyhow::Error::new(other)),
    }
}

fn print_text(summary: &BackupSummary) {
    println!(
        "backup written: {} ({} bytes, {} items, {} url_queue rows, integrity {})",
        summary.path.display(),
        summary.size_bytes,
        summary.items,
        summary.url_queue_rows,
        summary.integrity
    );
}
