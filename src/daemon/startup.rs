//! The start-up checks of `jbxd run` before the daemon proper: the single-instance lock, a
//! database that must not be created next to existing storage (RELIABILITY.md case 29), and
//! the database opened, migrated and checked. Each failure comes with its exit code and a
//! message naming what is wrong.

use super::lock::{self, InstanceLock, LockError};
use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::config;
use crate::db::{self, Db, DbError};

/// A database about to be created (none at its path, or an empty file) while `data_dir`
/// already holds samples or reports: the database that knew them was deleted or lost, and a
/// new one would silently forget them and take every dropped file again (RELIABILITY.md case
/// 29). Refused unless `--new-database`; the message says what is there and what to do.
pub(super) fn refuse_new_database_next_to_storage(config: &config::Config) -> Result<(), String> {
    let path = config.db_path();
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > 0 => return Ok(()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        // Open reports it, naming the file.
        Err(_) => return Ok(()),
    }
    let store = crate::storage::Store::new(&config.data_dir);
    let (samples, reports) = store.stored_counts().map_err(|error| {
        format!(
            "no database at {}, and cannot look at the storage in {}: {error}",
            path.display(),
            config.data_dir.display()
        )
    })?;
    if samples == 0 && reports == 0 {
        return Ok(());
    }
    Err(format!(
        "no database at {}: refusing to create a new database next to existing storage \
         ({samples} samples, {reports} reports in {}); restore the database from a backup or \
         start with --new-database",
        path.display(),
        config.data_dir.display()
    ))
}

/// Opens and migrates the database, then runs `PRAGMA quick_check` (catalog 28). A damaged
/// file, a newer schema or a failed migration is exit 78: restarting cannot fix them, and the
/// file is left as it is for the operator (a damaged file is never migrated or written).
pub(super) async fn open_checked_db(path: &std::path::Path) -> Result<Db, (u8, String)> {
    let corrupt = |detail: &str| {
        format!(
            "the database {} is damaged ({detail}); stop here and restore it from a backup, or \
             move it aside to start with an empty one (items and reports recorded in it would be \
             forgotten)",
            path.display()
        )
    };
    let db = match Db::open(path).await {
        Ok(db) => db,
        Err(error) if db::checks::is_corruption(&error) => {
            return Err((EXIT_CONFIG, corrupt(&error.to_string())));
        }
        Err(error) => {
            let code = match error {
                DbError::SchemaNewer { .. } | DbError::Migrate { .. } => EXIT_CONFIG,
                _ => EXIT_FAILURE,
            };
            return Err((code, error.to_string()));
        }
    };
    match db::checks::quick_check(&db).await {
        Ok(result) if result == "ok" => Ok(db),
        Ok(problems) => {
            db.pool().close().await;
            let mut shown: String = problems.chars().take(300).collect();
            if shown.len() < problems.len() {
                shown.push('…');
            }
            Err((EXIT_CONFIG, corrupt(&format!("quick_check: {shown}"))))
        }
        Err(error) if db::checks::is_corruption(&error) => {
            db.pool().close().await;
            Err((EXIT_CONFIG, corrupt(&error.to_string())))
        }
        Err(error) => Err((EXIT_FAILURE, format!("cannot check the database: {error}"))),
    }
}

pub(super) fn take_lock(config: &config::Config) -> Result<InstanceLock, (u8, String)> {
    if let Err(error) = crate::storage::Store::new(&config.data_dir).create_root() {
        return Err((
            EXIT_FAILURE,
            format!(
                "cannot create data_dir {}: {error}",
                config.data_dir.display()
            ),
        ));
    }
    let path = config.data_dir.join(lock::LOCK_FILE);
    lock::acquire(&path).map_err(|error| match error {
        LockError::Held { .. } => (EXIT_CONFIG, error.to_string()),
        LockError::Io { .. } => (EXIT_FAILURE, error.to_string()),
    })
}
