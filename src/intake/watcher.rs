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
    /// The inotify cookie of the last `IN_MOVED_FROM` of a temp name in the folder: the
    /// matching `IN_MOVED_TO` (the next event) completes the pair.
    temp_moved_from: Mutex<Option<usize>>,
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
                temp_moved_from: Mutex::new(None),
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
            // The `To` half of a rename is the event right after its `From` half: whatever
            // comes next ends the wait for it.
            let pending = shared
                .temp_moved_from
                .lock()
                .expect("rename cookie lock")
                .take();
            match rename_half(&event, &shared.drop_dir) {
                Some(RenameHalf::FromTempName(cookie)) => {
                    // A temp name going away changes nothing the scanner takes; its new name
                    // (next event) wakes it.
                    *shared.temp_moved_from.lock().expect("rename cookie lock") = Some(cookie);
                    return;
                }
                Some(RenameHalf::To(cookie, name))
                    if pending == Some(cookie) && !is_temp_name(name.as_bytes()) =>
                {
                    // Noted before the wake-up below, so the scan it causes sees it.
                    shared.renamed_in.note(name);
                }
                _ => {}
            }
            if watch_died(&event, &shared.drop_dir) {
                shared.mark_dead(
                    generation,
                    "the drop folder was removed or moved away".into(),
                );
            } else if !event.need_rescan() && only_temp_names(&event, &shared.drop_dir) {
                // A writer filling `.x.tmp` is of no interest until the rename: waking on its
                // writes started the 100 ms burst delay just before the rename came (P4).
                return;
            }
        }
        Err(e) => shared.mark_dead(generation, format!("watch error: {}", describe_error(&e))),
    }
    wake.scan.notify_one();
}

/// Whether an event is only about temp names in the folder, which the scanner never takes.
fn only_temp_names(event: &Event, drop_dir: &Path) -> bool {
    !event.paths.is_empty()
        && event.paths.iter().all(|p| {
            p.parent() == Some(drop_dir)
                && p.file_name()
                    .is_some_and(|name| is_temp_name(name.as_bytes()))
        })
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

/// One half of a rename inside the drop folder, as inotify reports it (notify passes the
/// cookie as the event's tracker).
#[derive(Debug, PartialEq)]
enum RenameHalf<'a> {
    /// `IN_MOVED_FROM` of a temp name (`.x.tmp`, `x.part`, ...).
    FromTempName(usize),
    /// `IN_MOVED_TO` of a name in the folder.
    To(usize, &'a OsStr),
}

/// Recognises the halves of a rename from a temp name to a name the scanner takes: the
/// writer's "complete" signal. notify also emits a combined `RenameMode::Both` event, but only
/// after the `To` half has already woken the scanner, so the pairing is done here, on `From`.
fn rename_half<'a>(event: &'a Event, drop_dir: &Path) -> Option<RenameHalf<'a>> {
    use notify::event::{ModifyKind, RenameMode};
    let EventKind::Modify(ModifyKind::Name(mode)) = event.kind else {
        return None;
    };
    let [path] = event.paths.as_slice() else {
        return None;
    };
    if path.parent() != Some(drop_dir) {
        return None;
    }
    let name = path.file_name()?;
    let cookie = event.tracker()?;
    match mode {
        RenameMode::From if is_temp_name(name.as_bytes()) => Some(RenameHalf::FromTempName(cookie)),
        RenameMode::To => Some(RenameHalf::To(cookie, name)),
        _ => None,
    }
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
            temp_moved_from: Mutex::new(None),
        }
    }

    /// The two halves of a rename, as notify's inotify backend delivers them.
    fn rename(cookie: usize, from: &str, to: &str) -> [Event; 2] {
        [
            Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::From)))
                .add_path(PathBuf::from(from))
                .set_tracker(cookie),
            Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
                .add_path(PathBuf::from(to))
                .set_tracker(cookie),
        ]
    }

    #[test]
    fn a_rename_from_a_temp_name_inside_the_folder_is_noted_before_the_scanner_wakes() {
        let s = shared(Path::new("/drop"));
        let wake = Wakers::default();
        for (cookie, from, to) in [
            (1, "/drop/.a.exe.tmp", "/drop/a.exe"),
            (2, "/drop/b.part", "/drop/b"),
            (3, "/drop/c.crdownload", "/drop/c.pdf"),
        ] {
            let woke = || {
                let notified = wake.scan.notified();
                futures_util::pin_mut!(notified);
                futures_util::FutureExt::now_or_never(notified).is_some()
            };
            let [from, to] = rename(cookie, from, to);
            on_event(&s, &wake, 1, Ok(from));
            assert!(!woke(), "a temp name going away wakes nothing");
            on_event(&s, &wake, 1, Ok(to));
            assert!(woke(), "the new name wakes the scanner");
        }
        for name in ["a.exe", "b", "c.pdf"] {
            assert!(s.renamed_in.take(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn other_renames_are_not_trusted() {
        let s = shared(Path::new("/drop"));
        let wake = Wakers::default();
        for (i, (from, to)) in [
            // not from a temp name: the writer may still be writing
            ("/drop/x", "/drop/y"),
            // to a temp name: not taken anyway
            ("/drop/.x.tmp", "/drop/.y.tmp"),
            // out of and into a subfolder
            ("/drop/.w.tmp", "/drop/sub/w"),
            ("/drop/sub/.v.tmp", "/drop/v"),
        ]
        .into_iter()
        .enumerate()
        {
            let [from, to] = rename(20 + i, from, to);
            on_event(&s, &wake, 1, Ok(from));
            on_event(&s, &wake, 1, Ok(to));
        }
        // Halves that do not pair (a `To` from an unwatched directory, another cookie).
        let [_, lone] = rename(8, "/elsewhere/.z.tmp", "/drop/z");
        on_event(&s, &wake, 1, Ok(lone));
        let [from, _] = rename(9, "/drop/.u.tmp", "/drop/u");
        let [_, other] = rename(10, "/drop/.t.tmp", "/drop/t");
        on_event(&s, &wake, 1, Ok(from));
        on_event(&s, &wake, 1, Ok(other));
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

    #[test]
    fn writes_to_a_temp_name_do_not_wake_the_scanner() {
        use notify::event::{AccessKind, AccessMode, CreateKind, DataChange};
        let s = shared(Path::new("/drop"));
        let wake = Wakers::default();
        let woke = |kind: EventKind, path: &str| {
            on_event(&s, &wake, 1, Ok(Event::new(kind).add_path(path.into())));
            let notified = wake.scan.notified();
            futures_util::pin_mut!(notified);
            futures_util::FutureExt::now_or_never(notified).is_some()
        };
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        for kind in [EventKind::Create(CreateKind::File), write, closed] {
            assert!(!woke(kind, "/drop/.upload.tmp"));
            assert!(woke(kind, "/drop/upload"));
        }
        // The folder itself is never a temp name, and a subfolder's temp file is not ours.
        assert!(woke(write, "/drop/sub/.x.tmp"));
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
