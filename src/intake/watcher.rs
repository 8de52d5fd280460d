//! The drop-folder watcher: notify (inotify) as a wake-up hint for the scanner.
//!
//! Every event just wakes the scanner (`app.wake.scan`), which lists the folder and decides;
//! a lost event only costs latency until the periodic scan. The callback runs on notify's own
//! thread and never blocks: it sets flags and calls `Notify::notify_one`.
//!
//! When the watch cannot be installed (inotify limits, folder missing) or dies (the folder is
//! removed, renamed or unmounted, or notify reports an error), the watcher is marked not alive
//! and intake falls back to the periodic scan; every [`RECHECK_INTERVAL`] a supervisor task
//! checks the folder's identity and re-installs the watch, then wakes a rescan. Starting never
//! fails: the worst case is polling.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio_util::sync::CancellationToken;

use super::RenamedIn;
use super::scanner::is_temp_name;
use crate::app::{App, Wakers};

/// How often a dead watch is re-installed and a live one's folder identity re-checked.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(10);

/// What the watcher is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchStatus {
    /// inotify watches the drop folder; the periodic scan is a safety net.
    Watching,
    /// No watch: only the periodic scan finds files.
    Polling { reason: String },
}

struct Shared {
    drop_dir: PathBuf,
    alive: AtomicBool,
    /// Incremented per installation, so a late event from a replaced watch cannot mark the
    /// new one dead.
    generation: AtomicU64,
    reason: Mutex<String>,
    /// (dev, ino) of the folder the live watch was installed on.
    identity: Mutex<Option<(u64, u64)>>,
    /// Where renames from a temp name are noted for the scanner.
    renamed_in: Arc<RenamedIn>,
}

impl Shared {
    /// Marks the watch dead (once per installation: one log line per state change).
    fn mark_dead(&self, generation: u64, reason: String) {
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if self.alive.swap(false, Ordering::SeqCst) {
            tracing::warn!(drop_dir = %self.drop_dir.display(), reason = %reason,
                "drop folder watch lost; polling until it can be re-installed");
        }
        *self.reason.lock().expect("watcher reason lock") = reason;
    }

    fn status(&self) -> WatchStatus {
        if self.alive.load(Ordering::SeqCst) {
            WatchStatus::Watching
        } else {
            WatchStatus::Polling {
                reason: self.reason.lock().expect("watcher reason lock").clone(),
            }
        }
    }
}

/// A cheap, clonable view of the watcher's liveness for the health check.
#[derive(Clone)]
pub struct WatcherLiveness(Arc<Shared>);

impl WatcherLiveness {
    pub fn is_alive(&self) -> bool {
        self.0.alive.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> WatchStatus {
        self.0.status()
    }
}

impl std::fmt::Debug for WatcherLiveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WatcherLiveness")
            .field(&self.status())
            .finish()
    }
}

/// Owns the notify watcher (dropping it stops watching) and its supervisor task.
pub struct Watcher {
    shared: Arc<Shared>,
    wake: Arc<Wakers>,
    inner: Arc<Mutex<Option<RecommendedWatcher>>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("drop_dir", &self.shared.drop_dir)
            .field("status", &self.status())
            .finish()
    }
}

impl Watcher {
    /// Installs a non-recursive watch on `drop_dir` and starts the supervisor (when called
    /// inside a tokio runtime). Never fails: without a watch, intake polls.
    pub fn start(app: &App) -> Watcher {
        let watcher = Watcher {
            shared: Arc::new(Shared {
                drop_dir: app.config.drop_dir.clone(),
                alive: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                reason: Mutex::new("not installed yet".into()),
                identity: Mutex::new(None),
                renamed_in: app.renamed_in.clone(),
            }),
            wake: app.wake.clone(),
            inner: Arc::new(Mutex::new(None)),
            stop: CancellationToken::new(),
        };
        install(&watcher.shared, &watcher.wake, &watcher.inner, true);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (shared, wake, inner, stop) = (
                watcher.shared.clone(),
                watcher.wake.clone(),
                watcher.inner.clone(),
                watcher.stop.clone(),
            );
            runtime.spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(RECHECK_INTERVAL) => {}
                    }
                    let (shared, wake, inner) = (shared.clone(), wake.clone(), inner.clone());
                    // notify's watch() waits for its event loop thread: keep it off the runtime.
                    let _ =
                        tokio::task::spawn_blocking(move || recheck(&shared, &wake, &inner)).await;
                }
            });
        }
        watcher
    }

    pub fn status(&self) -> WatchStatus {
        self.shared.status()
    }

    pub fn liveness(&self) -> WatcherLiveness {
        WatcherLiveness(self.shared.clone())
    }

    /// Runs the supervisor's check now (tests, or the health check wanting a fresh answer):
    /// re-checks the folder's identity and re-installs a dead watch. Blocking (briefly).
    pub fn recheck(&self) {
        recheck(&self.shared, &self.wake, &self.inner);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The identity of the drop folder, if it is a real directory.
fn folder_identity(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.is_dir().then(|| (meta.dev(), meta.ino()))
}

fn recheck(shared: &Arc<Shared>, wake: &Arc<Wakers>, inner: &Mutex<Option<RecommendedWatcher>>) {
    if shared.alive.load(Ordering::SeqCst) {
        let installed = *shared.identity.lock().expect("watcher identity lock");
        let now = folder_identity(&shared.drop_dir);
        if now.is_some() && now == installed {
            return;
        }
        let generation = shared.generation.load(Ordering::SeqCst);
        shared.mark_dead(
            generation,
            "the drop folder was removed, replaced or unmounted".into(),
        );
        wake.scan.notify_one();
    }
    install(shared, wake, inner, false);
}

/// (Re-)installs the watch. `first`: the start-up installation (its failures are logged even
/// when the reason did not change).
fn install(
    shared: &Arc<Shared>,
    wake: &Arc<Wakers>,
    inner: &Mutex<Option<RecommendedWatcher>>,
    first: bool,
) {
    let mut slot = inner.lock().expect("watcher lock");
    // The old watch (if any) is gone or dead; drop it before a new inotify instance is made.
    *slot = None;
    let generation = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
    let identity = folder_identity(&shared.drop_dir);
    let result = match identity {
        None => Err(format!(
            "the drop folder {} is missing or not a directory",
            shared.drop_dir.display()
        )),
        Some(_) => try_watch(shared, wake, generation),
    };
    match result {
        Ok(watcher) => {
            *slot = Some(watcher);
            *shared.identity.lock().expect("watcher identity lock") = identity;
            shared.alive.store(true, Ordering::SeqCst);
            tracing::info!(drop_dir = %shared.drop_dir.display(), "watching the drop folder");
            if !first {
                // Files may have arrived while nothing watched.
                wake.scan.notify_one();
            }
        }
        Err(reason) => {
            let mut last = shared.reason.lock().expect("watcher reason lock");
            if first || *last != reason {
                tracing::error!(drop_dir = %shared.drop_dir.display(), reason = %reason,
                    "cannot watch the drop folder; polling instead");
            }
            *last = reason;
            shared.alive.store(false, Ordering::SeqCst);
        }
    }
}

fn try_watch(
    shared: &Arc<Shared>,
    wake: &Arc<Wakers>,
    generation: u64,
) -> Result<RecommendedWatcher, String> {
    let handler = {
        let shared = shared.clone();
        let wake = wake.clone();
        move |event: notify::Result<Event>| on_event(&shared, &wake, generation, event)
    };
    let mut watcher = notify::recommended_watcher(handler).map_err(|e| describe_error(&e))?;
    watcher
        .watch(&shared.drop_dir, RecursiveMode::NonRecursive)
        .map_err(|e| describe_error(&e))?;
    Ok(watcher)
}

/// The notify callback (notify's thread): flags and wake-ups only, never blocking.
fn on_event(shared: &Shared, wake: &Wakers, generation: u64, event: notify::Result<Event>) {
    match event {
        Ok(event) => {
            if event.need_rescan() {
                tracing::warn!("event queue overflow, rescanning");
            } else if is_read_only_access(&event.kind) {
                // Every scan opens the folder and the files it takes: waking on those events
                // made an idle daemon rescan every 100 ms forever (BENCHMARKS.md P6).
                return;
            }
            if let Some(name) = renamed_from_temp_name(&event, &shared.drop_dir) {
                shared.renamed_in.note(name);
            }
            if watch_died(&event, &shared.drop_dir) {
                shared.mark_dead(
                    generation,
                    "the drop folder was removed or moved away".into(),
                );
            }
        }
        Err(e) => shared.mark_dead(generation, format!("watch error: {}", describe_error(&e))),
    }
    wake.scan.notify_one();
}

/// Opening or reading an entry (`IN_OPEN`, `IN_ACCESS`, `IN_CLOSE_NOWRITE`) changes nothing
/// in the folder; close-after-write and every other event still wake the scanner.
fn is_read_only_access(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
        )
    )
}

/// The new name of a file renamed inside the drop folder from a temp name to a name the
/// scanner takes (`.x.tmp` → `x`): notify pairs `IN_MOVED_FROM` and `IN_MOVED_TO` by their
/// cookie into one `RenameMode::Both` event with both paths.
fn renamed_from_temp_name<'a>(event: &'a Event, drop_dir: &Path) -> Option<&'a OsStr> {
    use notify::event::{ModifyKind, RenameMode};
    if event.kind != EventKind::Modify(ModifyKind::Name(RenameMode::Both)) {
        return None;
    }
    let [from, to] = event.paths.as_slice() else {
        return None;
    };
    let in_folder = |p: &Path| p.parent() == Some(drop_dir);
    let (from_name, to_name) = (from.file_name()?, to.file_name()?);
    (in_folder(from)
        && in_folder(to)
        && is_temp_name(from_name.as_bytes())
        && !is_temp_name(to_name.as_bytes()))
    .then_some(to_name)
}

/// Whether an event says the watched folder itself went away (`IN_DELETE_SELF` arrives as a
/// removal of the folder's own path, `IN_MOVE_SELF` as a rename-from of it).
fn watch_died(event: &Event, drop_dir: &Path) -> bool {
    let about_folder = event.paths.iter().any(|p| p == drop_dir);
    about_folder
        && matches!(
            event.kind,
            EventKind::Remove(_)
                | EventKind::Modify(notify::event::ModifyKind::Name(
                    notify::event::RenameMode::From
                ))
        )
}

fn read_sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// A watch error as an operator-readable reason; inotify limits name their sysctl and value.
fn describe_error(e: &notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => watches_exhausted(),
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => watches_exhausted(),
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE) => format!(
            "inotify instance limit reached (sysctl fs.inotify.max_user_instances = {}; or the \
             process's open-file limit)",
            read_sysctl("max_user_instances")
        ),
        notify::ErrorKind::PathNotFound => "the drop folder does not exist".into(),
        _ => e.to_string(),
    }
}

fn watches_exhausted() -> String {
    format!(
        "inotify watch limit reached (sysctl fs.inotify.max_user_watches = {})",
        read_sysctl("max_user_watches")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{Flag, ModifyKind, RemoveKind, RenameMode};

    fn shared(dir: &Path) -> Shared {
        Shared {
            drop_dir: dir.to_owned(),
            alive: AtomicBool::new(true),
            generation: AtomicU64::new(1),
            reason: Mutex::new(String::new()),
            identity: Mutex::new(None),
            renamed_in: Arc::default(),
        }
    }

    fn rename(from: &str, to: &str) -> Event {
        Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path(PathBuf::from(from))
            .add_path(PathBuf::from(to))
    }

    #[test]
    fn a_rename_from_a_temp_name_inside_the_folder_is_noted_for_the_scanner() {
        let s = shared(Path::new("/drop"));
        let wake = Wakers::default();
        for (from, to) in [
            ("/drop/.a.exe.tmp", "/drop/a.exe"),
            ("/drop/b.part", "/drop/b"),
            ("/drop/c.crdownload", "/drop/c.pdf"),
        ] {
            on_event(&s, &wake, 1, Ok(rename(from, to)));
        }
        for name in ["a.exe", "b", "c.pdf"] {
            assert!(s.renamed_in.take(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn other_renames_are_not_trusted() {
        let s = shared(Path::new("/drop"));
        let wake = Wakers::default();
        for (from, to) in [
            // not from a temp name: the writer may still be writing
            ("/drop/x", "/drop/y"),
            // to a temp name: not taken anyway
            ("/drop/.x.tmp", "/drop/.y.tmp"),
            // from outside the folder (only the `To` half is seen as `Both` when both are
            // watched, but be strict about the parents anyway)
            ("/elsewhere/.z.tmp", "/drop/z"),
            ("/drop/.w.tmp", "/drop/sub/w"),
        ] {
            on_event(&s, &wake, 1, Ok(rename(from, to)));
        }
        assert!(s.renamed_in.is_empty());
        // A lone `To` (renamed in from an unwatched directory) is not trusted either.
        let to = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
            .add_path(PathBuf::from("/drop/v"));
        on_event(&s, &wake, 1, Ok(to));
        assert!(s.renamed_in.is_empty());
    }

    #[test]
    fn limit_errors_name_their_sysctl() {
        let e = notify::Error::new(notify::ErrorKind::MaxFilesWatch);
        assert!(describe_error(&e).contains("fs.inotify.max_user_watches = "));
        let e = notify::Error::io(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(describe_error(&e).contains("fs.inotify.max_user_watches"));
        let e = notify::Error::io(std::io::Error::from_raw_os_error(libc::EMFILE));
        assert!(describe_error(&e).contains("fs.inotify.max_user_instances = "));
    }

    #[test]
    fn opening_or_reading_does_not_wake_the_scanner_but_a_close_after_write_does() {
        use notify::event::{AccessKind, AccessMode, CreateKind};
        let s = shared(Path::new("/drop"));
        let wake = Wakers::default();
        let woke = |kind: EventKind| {
            on_event(
                &s,
                &wake,
                1,
                Ok(Event::new(kind).add_path("/drop/x".into())),
            );
            // A stored permit completes `notified()` at once.
            let notified = wake.scan.notified();
            futures_util::pin_mut!(notified);
            futures_util::FutureExt::now_or_never(notified).is_some()
        };
        assert!(!woke(EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!woke(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!woke(EventKind::Access(AccessKind::Read)));
        assert!(woke(EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(woke(EventKind::Create(CreateKind::File)));
    }

    #[tokio::test]
    async fn case_41_an_overflow_wakes_a_rescan_and_keeps_the_watch() {
        let s = shared(Path::new("/drop"));
        let wake = Wakers::default();
        on_event(
            &s,
            &wake,
            1,
            Ok(Event::new(EventKind::Other).set_flag(Flag::Rescan)),
        );
        assert!(s.alive.load(Ordering::SeqCst));
        tokio::time::timeout(Duration::from_secs(1), wake.scan.notified())
            .await
            .expect("scan woken");
    }

    #[test]
    fn removal_or_move_of_the_folder_itself_kills_the_watch_but_children_do_not() {
        let dir = Path::new("/drop");
        let s = shared(dir);
        let wake = Wakers::default();
        let child = Event::new(EventKind::Remove(RemoveKind::File)).add_path(dir.join("x"));
        on_event(&s, &wake, 1, Ok(child));
        assert!(s.alive.load(Ordering::SeqCst));
        let moved = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::From)))
            .add_path(dir.to_owned());
        // A late event from an earlier installation changes nothing.
        on_event(&s, &wake, 0, Ok(moved.clone()));
        assert!(s.alive.load(Ordering::SeqCst));
        on_event(&s, &wake, 1, Ok(moved));
        assert!(!s.alive.load(Ordering::SeqCst));
        assert!(matches!(s.status(), WatchStatus::Polling { reason } if reason.contains("moved")));
        let s = shared(dir);
        on_event(
            &s,
            &wake,
            1,
            Ok(Event::new(EventKind::Remove(RemoveKind::Folder)).add_path(dir.to_owned())),
        );
        assert!(!s.alive.load(Ordering::SeqCst));
        let s = shared(dir);
        on_event(&s, &wake, 1, Err(notify::Error::generic("boom")));
        assert!(!s.alive.load(Ordering::SeqCst));
    }
}
