//! The database file's identity, watched while the daemon runs (RELIABILITY.md case 29).
//!
//! SQLite keeps writing into a deleted file's inode without complaint, so a database deleted
//! or replaced under a running daemon used to go on taking files from the drop folder and
//! submitting them, recorded in a file nobody will ever open again. Two layers stop that:
//!
//! * **the guarantee**: [`Db::begin_write`](crate::db::Db::begin_write) compares the file at
//!   the path with the one opened (one `stat`) inside every write transaction, and refuses
//!   with `DbError::Replaced`. Intake unlinks a dropped file only after its record committed,
//!   and a submission is sent only after its claim committed, so no transaction that starts
//!   after the swap can lead to an unlink or a submission. The window is one transaction
//!   already past its check (milliseconds), plus an upload whose claim committed before;
//! * **the exit**: this worker watches `data_dir` with inotify for the database's name being
//!   removed, renamed or created (and for the directory itself going away), and re-checks the
//!   identity on each such event; without a watch it polls every [`FALLBACK_POLL`], with one
//!   it still checks every [`SAFETY_POLL`]. On a change it ends with [`DatabaseReplaced`],
//!   which the supervisor treats as fatal: the daemon stops and `jbxd run` exits with
//!   [`EXIT_DATABASE_REPLACED`].
//!
//! Idle, it costs nothing: inotify reports only the directory's entries, and the WAL's
//! writes are filtered out in the notify thread.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// Exit code of `jbxd run` when the database file was deleted or replaced while it ran
/// (EX_TEMPFAIL). systemd restarts on it (it is not in `RestartPreventExitStatus=`): the new
/// start opens a restored database, or refuses with 78 to create a new one next to existing
/// storage.
pub const EXIT_DATABASE_REPLACED: u8 = 75;

/// The worker's name (heartbeats, the supervisor's messages).
pub const WORKER: &str = "database watch";

/// How often the identity is checked when no inotify watch could be installed.
pub const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// How often it is checked besides the events (an event lost to a full inotify queue).
pub const SAFETY_POLL: Duration = Duration::from_secs(30);

/// Why the daemon stopped: the file at the database's path is not the one it opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database file {} was deleted or replaced while jbxd ran: stopped at once, nothing \
     more is taken from the drop folder or submitted; restore the database from a backup (or \
     put the right file back) and start jbxd again",
    path.display()
)]
pub struct DatabaseReplaced {
    pub path: PathBuf,
}

/// Runs until `stop` fires (Ok) or the database file changes (Err([`DatabaseReplaced`])).
pub async fn run(app: App, stop: CancellationToken) -> anyhow::Result<()> {
    let path = app.db.path().to_owned();
    let changed = Arc::new(Notify::new());
    let watch = match watch(&path, &changed) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(database = %path.display(), %error,
                "cannot watch the database's directory; checking the database file every second");
            None
        }
    };
    let poll = if watch.is_some() {
        SAFETY_POLL
    } else {
        FALLBACK_POLL
    };
    loop {
        let db = app.db.clone();
        let replaced = tokio::task::spawn_blocking(move || db.file_replaced())
            .await
            .unwrap_or(true);
        if replaced {
            let error = DatabaseReplaced { path };
            tracing::error!("{error}");
            return Err(error.into());
        }
        app.heartbeats.sleeping_until(WORKER, poll);
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = changed.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

fn watch(db: &Path, changed: &Arc<Notify>) -> Result<RecommendedWatcher, notify::Error> {
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = db.file_name().unwrap_or_default().to_os_string();
    let handler = {
        let (changed, dir) = (changed.clone(), dir.clone());
        move |event: notify::Result<Event>| match event {
            Ok(event) if concerns_the_database(&event, &dir, &name) => changed.notify_one(),
            Ok(_) => {}
            // A watch that fails may have missed the event: look now.
            Err(_) => changed.notify_one(),
        }
    };
    let mut watcher = notify::recommended_watcher(handler)?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// An entry named like the database created, removed or renamed, the directory itself
/// removed or moved, or events lost: worth a `stat`. Writes (the WAL's, every commit) are not.
fn concerns_the_database(event: &Event, dir: &Path, name: &OsString) -> bool {
    if event.need_rescan() {
        return true;
    }
    let structural = matches!(
        event.kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(notify::event::ModifyKind::Name(_))
            | EventKind::Any
            | EventKind::Other
    );
    structural
        && event
            .paths
            .iter()
            .any(|p| p.file_name() == Some(name.as_os_str()) || p == dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_the_database_name_changing_hands_or_the_directory_going_is_worth_a_look() {
        let dir = Path::new("/var/lib/jbxd");
        let name = OsString::from("jbxd.db");
        let yes = [
            event(EventKind::Remove(RemoveKind::File), "/var/lib/jbxd/jbxd.db"),
            event(EventKind::Create(CreateKind::File), "/var/lib/jbxd/jbxd.db"),
            event(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/var/lib/jbxd/jbxd.db",
            ),
            event(EventKind::Remove(RemoveKind::Folder), "/var/lib/jbxd"),
        ];
        for e in &yes {
            assert!(concerns_the_database(e, dir, &name), "{e:?}");
        }
        let no = [
            event(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                "/var/lib/jbxd/jbxd.db-wal",
            ),
            event(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                "/var/lib/jbxd/jbxd.db",
            ),
            event(
                EventKind::Create(CreateKind::File),
                "/var/lib/jbxd/jbxd.db-wal",
            ),
            event(
                EventKind::Remove(RemoveKind::File),
                "/var/lib/jbxd/jbxd.lock",
            ),
        ];
        for e in &no {
            assert!(!concerns_the_database(e, dir, &name), "{e:?}");
        }
    }
}
