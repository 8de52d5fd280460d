//! Intake end to end on a real temporary drop folder and database: the scanner and the URL
//! queue worker driven one step at a time (`run_once`), and the real inotify watcher.
//! RELIABILITY.md groups C (drop folder) and E (URL queue input).

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use jbxd::app::{App, StepOutcome};
use jbxd::db::{self, ItemState, NewFile};
use jbxd::intake::scanner::{self, ScanState};
use jbxd::intake::urls;
use jbxd::intake::watcher::{WatchStatus, Watcher};
use jbxd::simulator::SimConfig;
use jbxd::testing::TestEnv;
use sha2::{Digest, Sha256};

const SETTLE_MS: u64 = 200;

async fn env() -> TestEnv {
    env_with(|_| {}).await
}

async fn env_with(tweak: impl FnOnce(&mut jbxd::config::Config)) -> TestEnv {
    let _ = rustls::crypto::ring::default_provider().install_default();
    TestEnv::start(SimConfig::default(), |c| {
        c.intake.settle_ms = SETTLE_MS;
        tweak(c);
    })
    .await
}

fn settle() -> Duration {
    Duration::from_millis(SETTLE_MS + 100)
}

/// Two scans a settle period apart: the first sees fresh files, the second takes them.
async fn scan_settled(app: &App, state: &mut ScanState) -> usize {
    let mut n = worked(scanner::run_once(app, state).await.unwrap());
    tokio::time::sleep(settle()).await;
    n += worked(scanner::run_once(app, state).await.unwrap());
    n
}

fn worked(outcome: StepOutcome) -> usize {
    match outcome {
        StepOutcome::Worked(n) => n,
        _ => 0,
    }
}

/// Every item, oldest first, with its exact raw name.
async fn items(app: &App) -> Vec<(db::Item, Option<Vec<u8>>)> {
    let mut list = db::items::list(&app.db, 10_000).await.unwrap();
    list.reverse();
    let mut out = Vec::new();
    for item in list {
        // Reading `raw_name` as the producer-facing schema documents it.
        let raw: Option<Vec<u8>> = sqlx::query_scalar("SELECT raw_name FROM items WHERE id = ?")
            .bind(item.id)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
        out.push((item, raw));
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Invariant (e): every recorded sample exists, has mode 0400 and matches its sha256.
async fn assert_samples_intact(app: &App) {
    for (item, _) in items(app).await {
        let Some(rel) = item.sample_path.as_deref() else {
            continue;
        };
        let sha = item.sha256.as_deref().unwrap();
        assert!(
            app.store
                .verify(rel, item.size.unwrap() as u64, sha)
                .unwrap(),
            "sample of item {} does not verify",
            item.id
        );
        let mode = fs::metadata(app.store.abs(rel))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400, "sample of item {}", item.id);
    }
}

fn rejected_dir(app: &App) -> std::path::PathBuf {
    app.config.drop_dir.join(scanner::REJECTED_DIR)
}

/// Names in `rejected/`, without their `<unix-ms>-` prefix.
fn moved_aside(app: &App) -> Vec<Vec<u8>> {
    let Ok(entries) = fs::read_dir(rejected_dir(app)) else {
        return Vec::new();
    };
    let mut names: Vec<Vec<u8>> = entries
        .map(|e| {
            let name = e.unwrap().file_name();
            let bytes = name.as_bytes();
            let dash = bytes.iter().position(|b| *b == b'-').unwrap();
            bytes[dash + 1..].to_vec()
        })
        .collect();
    names.sort();
    names
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

async fn scan_no_hang(app: &App, state: &mut ScanState) -> StepOutcome {
    tokio::time::timeout(Duration::from_secs(10), scanner::run_once(app, state))
        .await
        .expect("the scan must not hang")
        .unwrap()
}

#[tokio::test]
async fn case_35_a_slow_writer_is_held_until_its_file_settles() {
    let env = env().await;
    let app = &env.app;
    let mut state = ScanState::new();
    let path = env.drop_dir().join("slow.bin");
    let mut file = fs::File::create(&path).unwrap();
    let mut content = Vec::new();
    for round in 0..6u8 {
        let chunk = vec![round; 64 * 1024];
        file.write_all(&chunk).unwrap();
        file.flush().unwrap();
        content.extend_from_slice(&chunk);
        assert_eq!(
            scanner::run_once(app, &mut state).await.unwrap(),
            StepOutcome::Idle,
            "round {round}: taken while still being written"
        );
        assert_eq!(state.pending(), 1);
        tokio::time::sleep(Duration::from_millis(SETTLE_MS / 3)).await;
    }
    drop(file);
    tokio::time::sleep(settle()).await;
    assert_eq!(
        scanner::run_once(app, &mut state).await.unwrap(),
        StepOutcome::Worked(1)
    );
    let all = items(app).await;
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].0.sha256.as_deref(),
        Some(sha256_hex(&content).as_str())
    );
    assert_eq!(all[0].0.state, ItemState::Queued);
    assert_eq!(all[0].0.source, "drop");
    assert!(!path.exists(), "the source is removed once recorded");
    assert_samples_intact(app).await;
}

#[tokio::test]
async fn case_37_temp_names_are_never_taken_and_a_rename_in_is_taken_once() {
    let env = env().await;
    let app = &env.app;
    let mut state = ScanState::new();
    let temps = [
        ".x.tmp",
        "x.part",
        ".syncthing.x.tmp",
        "~$x.docx",
        "x.crdownload",
        "~x",
        ".hidden",
    ];
    for name in temps {
        fs::write(env.drop_dir().join(name), name.as_bytes()).unwrap();
    }
    assert_eq!(scan_settled(app, &mut state).await, 0);
    assert_eq!(scan_settled(app, &mut state).await, 0);
    assert!(items(app).await.is_empty());
    for name in temps {
        assert!(env.drop_dir().join(name).exists(), "{name} was touched");
    }
    fs::rename(env.drop_dir().join("x.part"), env.drop_dir().join("x")).unwrap();
    assert_eq!(scan_settled(app, &mut state).await, 1);
    assert_eq!(scan_settled(app, &mut state).await, 0);
    let all = items(app).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.as_deref(), Some(&b"x"[..]));
    assert_eq!(
        all[0].0.sha256.as_deref(),
        Some(sha256_hex(b"x.part").as_str())
    );
    assert_samples_intact(app).await;
}

#[tokio::test]
async fn case_42_files_present_before_start_are_taken_by_the_first_scan() {
    let env = env().await;
    let app = &env.app;
    for i in 0..150 {
        fs::write(
            env.drop_dir().join(format!("early-{i:03}")),
            format!("file {i}"),
        )
        .unwrap();
    }
    // They were written "while jbxd was down": older than the settle period at start-up.
    tokio::time::sleep(settle()).await;
    let mut state = ScanState::new();
    assert_eq!(
        scanner::run_once(app, &mut state).await.unwrap(),
        StepOutcome::Worked(150)
    );
    let all = items(app).await;
    assert_eq!(all.len(), 150);
    assert!(all.iter().all(|(i, _)| i.state == ItemState::Queued));
    assert_eq!(fs::read_dir(env.drop_dir()).unwrap().count(), 0);
    assert_eq!(
        scanner::run_once(app, &mut state).await.unwrap(),
        StepOutcome::Idle
    );
    assert_samples_intact(app).await;
}

#[tokio::test]
async fn a_drop_of_several_batches_is_recorded_and_removed_in_full_by_the_scan_that_takes_it() {
    let env = env().await;
    let app = &env.app;
    // 350 files = four batches in flight through copy, record and unlink; every 50th file
    // repeats the content of file 0 (duplicates within and across batches), one is empty.
    for i in 0..350 {
        let content = if i % 50 == 0 {
            "same".to_owned()
        } else {
            format!("file {i}")
        };
        fs::write(env.drop_dir().join(format!("f-{i:03}")), content).unwrap();
    }
    fs::write(env.drop_dir().join("empty"), b"").unwrap();
    tokio::time::sleep(settle()).await;
    let mut state = ScanState::new();
    assert_eq!(
        scanner::run_once(app, &mut state).await.unwrap(),
        StepOutcome::Worked(351)
    );
    // When the scan returns, every source is gone (only jbxd's `rejected/` remains).
    let left: Vec<_> = fs::read_dir(env.drop_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("rejected")]);
    let all = items(app).await;
    assert_eq!(all.len(), 351);
    let count = |state: ItemState| all.iter().filter(|(i, _)| i.state == state).count();
    assert_eq!(count(ItemState::Queued), 344);
    assert_eq!(count(ItemState::Duplicate), 6);
    assert_eq!(count(ItemState::Rejected), 1);
    // Listing order is the file system's: whichever "same" file came first is the original.
    let same = sha256_hex(b"same");
    let first_same = all
        .iter()
        .find(|(i, _)| i.sha256.as_deref() == Some(same.as_str()) && i.state == ItemState::Queued)
        .map(|(i, _)| i.id)
        .unwrap();
    assert!(
        all.iter()
            .filter(|(i, _)| i.state == ItemState::Duplicate)
            .all(|(i, _)| i.duplicate_of == Some(first_same))
    );
    assert_samples_intact(app).await;
}

#[tokio::test]
async fn case_45_symlinks_are_rejected_and_moved_aside_never_followed() {
    let env = env().await;
    let app = &env.app;
    let drop = env.drop_dir();
    let outside = env.dir.path().join("secret.txt");
    fs::write(&outside, b"top secret").unwrap();
    let fifo = env.dir.path().join("fifo");
    mkfifo(&fifo);
    fs::write(drop.join("target.bin"), b"target content").unwrap();
    std::os::unix::fs::symlink(&outside, drop.join("to-outside")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", drop.join("to-shadow")).unwrap();
    std::os::unix::fs::symlink(&fifo, drop.join("to-fifo")).unwrap();
    std::os::unix::fs::symlink("target.bin", drop.join("to-sibling")).unwrap();
    std::os::unix::fs::symlink("nowhere", drop.join("dangling")).unwrap();
    let mut state = ScanState::new();
    scan_no_hang(app, &mut state).await;
    tokio::time::sleep(settle()).await;
    scan_no_hang(app, &mut state).await;

    let all = items(app).await;
    let mut rejected: Vec<_> = all
        .iter()
        .filter(|(i, _)| i.state == ItemState::Rejected)
        .map(|(i, raw)| {
            assert_eq!(i.error.as_deref(), Some("symlink"));
            assert!(i.sample_path.is_none());
            raw.clone().unwrap()
        })
        .collect();
    rejected.sort();
    let links: Vec<Vec<u8>> = [
        "dangling",
        "to-fifo",
        "to-outside",
        "to-shadow",
        "to-sibling",
    ]
    .iter()
    .map(|n| n.as_bytes().to_vec())
    .collect();
    assert_eq!(rejected, links);
    // The links themselves were moved, not their targets.
    assert_eq!(moved_aside(app), links);
    for entry in fs::read_dir(rejected_dir(app)).unwrap() {
        assert!(entry.unwrap().file_type().unwrap().is_symlink());
    }
    assert_eq!(fs::read(&outside).unwrap(), b"top secret");
    let taken: Vec<_> = all
        .iter()
        .filter(|(i, _)| i.state == ItemState::Queued)
        .collect();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].1.as_deref(), Some(&b"target.bin"[..]));
    // Nothing secret reached quarantine.
    let samples = env.app.store.abs("quarantine/samples");
    assert_eq!(fs::read_dir(samples).unwrap().count(), 1);
    assert_eq!(
        fs::metadata(rejected_dir(app))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // Rejections are final: nothing is recorded twice.
    scan_no_hang(app, &mut state).await;
    assert_eq!(items(app).await.len(), all.len());
}

#[tokio::test]
async fn case_46_a_hard_linked_file_is_rejected_without_being_read() {
    let env = env().await;
    let app = &env.app;
    let a = env.drop_dir().join("a.bin");
    fs::write(&a, b"linked content").unwrap();
    let outside = env.dir.path().join("other-name");
    fs::hard_link(&a, &outside).unwrap();
    let mut state = ScanState::new();
    scan_settled(app, &mut state).await;
    let all = items(app).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0.state, ItemState::Rejected);
    assert_eq!(all[0].0.error.as_deref(), Some("hard-linked file"));
    assert_eq!(all[0].0.size, Some(14));
    assert_eq!(moved_aside(app), vec![b"a.bin".to_vec()]);
    assert_eq!(
        fs::read_dir(app.store.abs("quarantine/samples"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(fs::metadata(&outside).unwrap().nlink(), 2);
}

#[tokio::test]
async fn case_46_hard_links_are_taken_when_allowed() {
    let env = env_with(|c| c.intake.allow_hardlinks = true).await;
    let app = &env.app;
    let a = env.drop_dir().join("a.bin");
    fs::write(&a, b"linked content").unwrap();
    fs::hard_link(&a, env.dir.path().join("other-name")).unwrap();
    let mut state = ScanState::new();
    assert_eq!(scan_settled(app, &mut state).await, 1);
    assert_eq!(items(app).await[0].0.state, ItemState::Queued);
    assert_samples_intact(app).await;
}

#[tokio::test]
async fn case_47_fifos_and_sockets_are_rejected_unopened_and_subdirectories_ignored() {
    let env = env().await;
    let app = &env.app;
    let drop = env.drop_dir();
    // A FIFO with no writer: opening it for reading without O_NONBLOCK would hang forever.
    mkfifo(&drop.join("pipe"));
    let _listener = std::os::unix::net::UnixListener::bind(drop.join("sock")).unwrap();
    fs::create_dir(drop.join("sub")).unwrap();
    fs::write(drop.join("sub").join("inner.bin"), b"inside a subdirectory").unwrap();
    let mut state = ScanState::new();
    scan_no_hang(app, &mut state).await;
    tokio::time::sleep(settle()).await;
    scan_no_hang(app, &mut state).await;
    let all = items(app).await;
    assert_eq!(all.len(), 2, "{all:?}");
    for (item, _) in &all {
        assert_eq!(item.state, ItemState::Rejected);
        assert_eq!(item.error.as_deref(), Some("not a regular file"));
    }
    assert_eq!(moved_aside(app), vec![b"pipe".to_vec(), b"sock".to_vec()]);
    assert!(drop.join("sub").join("inner.bin").exists(), "not recursed");
}

#[tokio::test]
async fn case_48_an_empty_file_is_rejected_as_empty() {
    let env = env().await;
    let app = &env.app;
    fs::write(env.drop_dir().join("empty.bin"), b"").unwrap();
    let mut state = ScanState::new();
    assert_eq!(scan_settled(app, &mut state).await, 1);
    let all = items(app).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0.state, ItemState::Rejected);
    assert_eq!(all[0].0.error.as_deref(), Some("empty file"));
    assert_eq!(moved_aside(app), vec![b"empty.bin".to_vec()]);
    assert!(!env.drop_dir().join("empty.bin").exists());
}

#[tokio::test]
async fn case_49_an_oversize_sparse_file_is_rejected_from_fstat_and_nothing_is_copied() {
    let env = env_with(|c| c.intake.max_file_size = 10 * 1024 * 1024).await;
    let app = &env.app;
    let file = fs::File::create(env.drop_dir().join("huge.iso")).unwrap();
    file.set_len(5 * 1024 * 1024 * 1024).unwrap();
    drop(file);
    let mut state = ScanState::new();
    let started = std::time::Instant::now();
    assert_eq!(scan_settled(app, &mut state).await, 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "nothing was read"
    );
    let all = items(app).await;
    assert_eq!(all[0].0.state, ItemState::Rejected);
    assert_eq!(
        all[0].0.error.as_deref(),
        Some("too large (5368709120 bytes > 10485760)")
    );
    assert_eq!(all[0].0.size, Some(5368709120));
    for dir in ["quarantine/samples", "quarantine/incoming"] {
        assert_eq!(
            fs::read_dir(app.store.abs(dir)).unwrap().count(),
            0,
            "{dir}"
        );
    }
    assert_eq!(moved_aside(app), vec![b"huge.iso".to_vec()]);
}

#[tokio::test]
async fn case_50_an_unreadable_file_is_retried_then_rejected_as_permission_denied() {
    if running_as_root() {
        // root reads mode-000 files; the case needs an unprivileged user.
        eprintln!("skipped: running as root");
        return;
    }
    let env = env_with(|c| c.intake.unreadable_grace_secs = 0).await;
    let app = &env.app;
    let path = env.drop_dir().join("locked.bin");
    fs::write(&path, b"locked").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    let mut state = ScanState::new();
    scan_settled(app, &mut state).await;
    tokio::time::sleep(settle()).await;
    scanner::run_once(app, &mut state).await.unwrap();
    let all = items(app).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0.error.as_deref(), Some("permission denied"));
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[tokio::test]
async fn case_51_odd_names_become_one_item_each_with_their_exact_bytes() {
    let env = env().await;
    let app = &env.app;
    let names: Vec<Vec<u8>> = vec![
        b"new\nline".to_vec(),
        b"tab\there".to_vec(),
        b"-rf".to_vec(),
        b"\xff\xfe".to_vec(),
        vec![b'n'; 255],
        b"\x1b[31mred".to_vec(),
        b"rejected".to_vec(),
        b"back\\slash".to_vec(),
    ];
    for (i, name) in names.iter().enumerate() {
        fs::write(
            env.drop_dir().join(OsStr::from_bytes(name)),
            format!("odd {i}"),
        )
        .unwrap();
    }
    let mut state = ScanState::new();
    assert_eq!(scan_settled(app, &mut state).await, names.len());
    let all = items(app).await;
    assert_eq!(all.len(), names.len());
    let mut raw: Vec<Vec<u8>> = all.iter().map(|(_, r)| r.clone().unwrap()).collect();
    raw.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(raw, expected);
    for (item, raw) in &all {
        assert_eq!(item.state, ItemState::Queued);
        assert!(
            !item.name.chars().any(char::is_control),
            "escaped name {:?}",
            item.name
        );
        let i = names
            .iter()
            .position(|n| n == raw.as_ref().unwrap())
            .unwrap();
        assert_eq!(
            item.sha256.as_deref(),
            Some(sha256_hex(format!("odd {i}").as_bytes()).as_str())
        );
    }
    assert_eq!(fs::read_dir(env.drop_dir()).unwrap().count(), 0);
    assert_samples_intact(app).await;
}

#[tokio::test]
async fn case_52_same_content_twice_is_a_duplicate_and_same_name_new_content_is_new() {
    let env = env().await;
    let app = &env.app;
    let drop = env.drop_dir();
    fs::write(drop.join("first.bin"), b"same bytes").unwrap();
    fs::write(drop.join("second.bin"), b"same bytes").unwrap();
    let mut state = ScanState::new();
    assert_eq!(scan_settled(app, &mut state).await, 2);
    fs::write(drop.join("first.bin"), b"new bytes").unwrap();
    assert_eq!(scan_settled(app, &mut state).await, 1);
    let all = items(app).await;
    assert_eq!(all.len(), 3);
    let states: Vec<_> = all.iter().map(|(i, _)| i.state).collect();
    assert_eq!(
        states,
        [ItemState::Queued, ItemState::Duplicate, ItemState::Queued]
    );
    assert_eq!(all[1].0.duplicate_of, Some(all[0].0.id));
    assert_eq!(all[0].0.sha256, all[1].0.sha256);
    assert_ne!(all[0].0.sha256, all[2].0.sha256);
    assert_eq!(all[2].1.as_deref(), Some(&b"first.bin"[..]));
    // Content-addressed: one stored copy per distinct content.
    assert_eq!(
        fs::read_dir(app.store.abs("quarantine/samples"))
            .unwrap()
            .count(),
        2
    );
    assert_samples_intact(app).await;
}

#[tokio::test]
async fn case_53_a_source_modified_during_the_copy_is_taken_again_with_its_new_content() {
    let env = env().await;
    let app = &env.app;
    let path = env.drop_dir().join("moving.bin");
    fs::write(&path, b"old content").unwrap();
    let mut state = ScanState::new();
    let modified = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = modified.clone();
    state.set_after_copy_hook(move |source| {
        if !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut f = fs::OpenOptions::new().append(true).open(source).unwrap();
            f.write_all(b" and more").unwrap();
        }
    });
    assert_eq!(
        scan_settled(app, &mut state).await,
        0,
        "the mixed copy is not recorded"
    );
    assert!(modified.load(std::sync::atomic::Ordering::SeqCst));
    assert!(items(app).await.is_empty());
    assert_eq!(scan_settled(app, &mut state).await, 1);
    let all = items(app).await;
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].0.sha256.as_deref(),
        Some(sha256_hex(b"old content and more").as_str())
    );
    assert!(!path.exists());
    assert_samples_intact(app).await;
}

#[tokio::test]
async fn case_5_a_crash_between_recording_and_removal_leaves_no_second_item() {
    let env = env().await;
    let app = &env.app;
    let path = env.drop_dir().join("recorded.bin");
    fs::write(&path, b"recorded before the crash").unwrap();
    // What the scanner did before "dying": staged and recorded, but not yet unlinked.
    let mut source = fs::File::open(&path).unwrap();
    let meta = source.metadata().unwrap();
    let staged = app.store.stage_sample(&mut source).unwrap();
    db::items::insert_files(
        &app.db,
        &[NewFile {
            name: "recorded.bin".into(),
            raw_name: b"recorded.bin".to_vec(),
            sha256: staged.sha256,
            md5: staged.md5,
            sha1: staged.sha1,
            size: staged.size as i64,
            sample_path: staged.rel_path,
            dev: meta.dev() as i64,
            ino: meta.ino() as i64,
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            source: "drop",
            params: None,
            force: false,
        }],
        db::SampleDedup::BySha256,
    )
    .await
    .unwrap();
    drop(source);
    // The restarted scanner finds the source and recognises it.
    let mut state = ScanState::new();
    scan_settled(app, &mut state).await;
    assert!(!path.exists(), "the recorded source is removed");
    let all = items(app).await;
    assert_eq!(all.len(), 1, "no second item");
    assert_eq!(all[0].0.state, ItemState::Queued);
    assert_samples_intact(app).await;
}

/// A directory on a file system that gives a freed inode number to the next new file (ext4
/// does; tmpfs counts up and never repeats one): a folder of the test's temp dir when its file
/// system behaves so, else a small ext4 image mounted for the test (root only, unmounted when
/// dropped). `None`, with a printed "not applicable here", when neither is possible.
struct RecyclingDir {
    path: std::path::PathBuf,
    mount: Option<std::path::PathBuf>,
}

impl RecyclingDir {
    fn find(scratch: &Path) -> Option<Self> {
        let path = scratch.join("recycling");
        fs::create_dir(&path).unwrap();
        if recycles_inodes(&path) {
            return Some(Self { path, mount: None });
        }
        let image = scratch.join("ext4.img");
        let run = |program: &str, args: &[&std::ffi::OsStr]| {
            std::process::Command::new(program)
                .args(args)
                .output()
                .map(|out| out.status.success())
                .unwrap_or(false)
        };
        let mounted = run(
            "truncate",
            &["-s".as_ref(), "16M".as_ref(), image.as_os_str()],
        ) && run(
            "mkfs.ext4",
            &["-q".as_ref(), "-F".as_ref(), image.as_os_str()],
        ) && run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                path.as_os_str(),
            ],
        );
        if !mounted {
            eprintln!(
                "not applicable here: the temp dir does not recycle inode numbers and an ext4 \
                 image cannot be mounted (needs root and loop devices)"
            );
            return None;
        }
        let dir = Self {
            path: path.join("drop"),
            mount: Some(path),
        };
        fs::create_dir(&dir.path).unwrap();
        if !recycles_inodes(&dir.path) {
            eprintln!("not applicable here: even ext4 did not recycle an inode number");
            return None;
        }
        Some(dir)
    }
}

impl Drop for RecyclingDir {
    fn drop(&mut self) {
        if let Some(mount) = &self.mount {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(mount)
                .status();
        }
    }
}

fn recycles_inodes(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    let ino = |()| {
        fs::write(&probe, b"probe").unwrap();
        let ino = fs::metadata(&probe).unwrap().ino();
        fs::remove_file(&probe).unwrap();
        ino
    };
    let first = ino(());
    (0..5).any(|_| ino(()) == first)
}

/// Writes `content` to `path` with the given mtime (as `cp -p` or `rsync -a` would leave it)
/// and returns the file's inode number.
fn write_with_mtime(path: &Path, content: &[u8], mtime: std::time::SystemTime) -> u64 {
    let mut file = fs::File::create(path).unwrap();
    file.write_all(content).unwrap();
    file.set_modified(mtime).unwrap();
    file.metadata().unwrap().ino()
}

/// Writes `content` with `mtime` to `path` until the file lands on inode `ino`. The misses are
/// kept under temp names (which the scanner skips) so that the next try gets another inode.
/// `false`, with a printed "not applicable here", if the inode is not handed out again.
fn write_on_inode(path: &Path, content: &[u8], mtime: std::time::SystemTime, ino: u64) -> bool {
    for attempt in 0..100 {
        if write_with_mtime(path, content, mtime) == ino {
            return true;
        }
        let miss = path.with_file_name(format!(".miss-{attempt}"));
        fs::rename(path, miss).unwrap();
    }
    eprintln!("not applicable here: inode {ino} was not handed out again");
    false
}

#[tokio::test]
async fn case_112_the_same_content_dropped_again_on_a_recycled_inode_is_a_new_drop() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(recycling) = RecyclingDir::find(scratch.path()) else {
        return;
    };
    let drop_dir = recycling.path.clone();
    // Without dedup every drop is submitted: a second drop must not vanish into the first.
    let env = env_with(|c| {
        c.drop_dir = drop_dir;
        c.dedup.samples = false;
    })
    .await;
    let app = &env.app;
    let mut state = ScanState::new();
    let mtime = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let content = b"dropped twice, copied with cp -p";
    let path = env.drop_dir().join("again.bin");
    let first_ino = write_with_mtime(&path, content, mtime);
    scan_settled(app, &mut state).await;
    assert!(!path.exists());
    if !write_on_inode(&path, content, mtime, first_ino) {
        return;
    }
    scan_settled(app, &mut state).await;
    let all = items(app).await;
    assert_eq!(all.len(), 2, "the second drop is recorded: {all:#?}");
    assert!(all.iter().all(|(i, _)| i.state == ItemState::Queued));
    assert!(
        all.iter()
            .all(|(i, _)| i.sha256.as_deref() == Some(sha256_hex(content).as_str()))
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn case_112_a_file_on_a_recycled_inode_is_recorded_not_removed() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(recycling) = RecyclingDir::find(scratch.path()) else {
        return;
    };
    let drop_dir = recycling.path.clone();
    let env = env_with(|c| c.drop_dir = drop_dir).await;
    let app = &env.app;
    let mut state = ScanState::new();
    let mtime = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let (first, second) = (
        &b"the first file: 32 bytes of data"[..],
        &b"another file, same size and time"[..],
    );
    assert_eq!(first.len(), second.len());

    let path = env.drop_dir().join("sample.bin");
    let first_ino = write_with_mtime(&path, first, mtime);
    scan_settled(app, &mut state).await;
    assert!(!path.exists(), "the first file is recorded and removed");
    assert_eq!(items(app).await.len(), 1);

    // A different file with the same size and mtime, on the freed inode.
    if !write_on_inode(&path, second, mtime, first_ino) {
        return;
    }
    scan_settled(app, &mut state).await;

    let all = items(app).await;
    assert_eq!(all.len(), 2, "the new file is its own item: {all:#?}");
    let new = &all[1].0;
    assert_eq!(new.sha256.as_deref(), Some(sha256_hex(second).as_str()));
    assert_eq!(
        new.state,
        ItemState::Queued,
        "not a duplicate: other content"
    );
    assert!(!path.exists(), "removed only once recorded");
    assert_samples_intact(app).await;
    let submitted = jbxd::testing::drive_until(app, Duration::from_secs(20), |items| {
        items.iter().all(|i| i.submission_id.is_some())
    })
    .await;
    assert_eq!(submitted.len(), 2);
}

#[tokio::test]
async fn files_are_left_alone_while_local_writes_are_paused() {
    let env = env().await;
    let app = &env.app;
    fs::write(env.drop_dir().join("wait.bin"), b"wait for disk").unwrap();
    app.pause(jbxd::app::PauseReason::DiskLow, "test")
        .await
        .unwrap();
    let mut state = ScanState::new();
    tokio::time::sleep(settle()).await;
    assert_eq!(
        scanner::run_once(app, &mut state).await.unwrap(),
        StepOutcome::Paused
    );
    assert!(items(app).await.is_empty());
    app.resume(jbxd::app::PauseReason::DiskLow).await.unwrap();
    assert_eq!(
        scanner::run_once(app, &mut state).await.unwrap(),
        StepOutcome::Worked(1)
    );
}

#[tokio::test]
async fn case_56_a_drop_folder_replaced_by_a_symlink_is_refused() {
    let env = env().await;
    let app = &env.app;
    let real = env.dir.path().join("elsewhere");
    fs::create_dir(&real).unwrap();
    fs::write(real.join("x.bin"), b"x").unwrap();
    fs::remove_dir(env.drop_dir()).unwrap();
    std::os::unix::fs::symlink(&real, env.drop_dir()).unwrap();
    let err = scanner::run_once(app, &mut ScanState::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("is a symlink"), "{err:#}");
    assert!(real.join("x.bin").exists());
}

#[tokio::test]
async fn a_file_renamed_in_from_a_temp_name_is_taken_without_waiting_to_settle() {
    // A settle period far longer than the test: only the rename can make the file ready.
    let env = env_with(|c| c.intake.settle_ms = 600_000).await;
    let app = env.app.clone();
    let watcher = Watcher::start(&app);
    assert_eq!(watcher.status(), WatchStatus::Watching);
    let cancel = tokio_util::sync::CancellationToken::new();
    let scan = tokio::spawn(scanner::run(app.clone(), cancel.clone()));
    // The writer's convention: write under a temp name, rename when complete.
    let temp = env.drop_dir().join(".report.pdf.tmp");
    fs::write(&temp, b"complete").unwrap();
    fs::rename(&temp, env.drop_dir().join("report.pdf")).unwrap();
    // A plain file written in place waits for the settle period.
    fs::write(env.drop_dir().join("in-place.bin"), b"still settling").unwrap();
    let taken = jbxd::testing::wait_until(Duration::from_secs(10), || {
        let app = app.clone();
        async move { !db::items::list(&app.db, 10).await.unwrap().is_empty() }
    })
    .await;
    assert!(taken, "the renamed-in file is taken at once");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = items(&app).await;
    assert_eq!(all.len(), 1, "only the renamed-in file is taken");
    assert_eq!(all[0].1.as_deref(), Some(&b"report.pdf"[..]));
    assert!(env.drop_dir().join("in-place.bin").exists());
    cancel.cancel();
    scan.await.unwrap().unwrap();
    drop(watcher);
}

#[tokio::test]
async fn the_real_watcher_wakes_the_scanner_for_a_file_renamed_in() {
    let env = env().await;
    let app = &env.app;
    let watcher = Watcher::start(app);
    assert_eq!(watcher.status(), WatchStatus::Watching);
    let liveness = watcher.liveness();
    assert!(liveness.is_alive());
    // Written elsewhere on the same filesystem, then renamed in: only IN_MOVED_TO fires.
    let staging = env.dir.path().join("upload.tmp");
    fs::write(&staging, b"renamed in").unwrap();
    fs::rename(&staging, env.drop_dir().join("renamed.bin")).unwrap();
    tokio::time::timeout(Duration::from_secs(10), app.wake.scan.notified())
        .await
        .expect("the watcher wakes the scanner");
    let mut state = ScanState::new();
    assert_eq!(scan_settled(app, &mut state).await, 1);
    assert_eq!(items(app).await[0].1.as_deref(), Some(&b"renamed.bin"[..]));

    // Case 55: the folder disappears → polling; it comes back → watching again.
    fs::remove_dir_all(env.drop_dir()).unwrap();
    assert!(
        jbxd::testing::wait_until(Duration::from_secs(10), || {
            let l = liveness.clone();
            async move { !l.is_alive() }
        })
        .await,
        "the watcher notices the folder is gone"
    );
    assert!(matches!(watcher.status(), WatchStatus::Polling { .. }));
    assert!(scanner::run_once(app, &mut state).await.is_err());
    watcher.recheck();
    assert!(!liveness.is_alive());
    fs::create_dir(env.drop_dir()).unwrap();
    watcher.recheck();
    assert!(liveness.is_alive(), "{:?}", watcher.status());
    // Re-installing asks for a rescan (files may have come while nothing watched).
    tokio::time::timeout(Duration::from_secs(1), app.wake.scan.notified())
        .await
        .expect("a re-installed watch wakes a rescan");
    fs::write(env.dir.path().join("again.tmp"), b"after the return").unwrap();
    fs::rename(
        env.dir.path().join("again.tmp"),
        env.drop_dir().join("again.bin"),
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            app.wake.scan.notified().await;
            if env.drop_dir().join("again.bin").exists() {
                break;
            }
        }
    })
    .await
    .expect("the re-installed watch wakes the scanner");
    assert_eq!(scan_settled(app, &mut state).await, 1);
    assert_samples_intact(app).await;
}

// ---- E. URL queue input -------------------------------------------------------------------

/// (status, error, item url) of one url_queue row.
async fn url_row(app: &App, id: i64) -> (String, Option<String>, Option<String>) {
    sqlx::query_as(
        "SELECT q.status, q.error, i.url FROM url_queue q LEFT JOIN items i ON i.id = q.item_id
          WHERE q.id = ?",
    )
    .bind(id)
    .fetch_one(app.db.pool())
    .await
    .unwrap()
}

async fn queue(app: &App, url: &str) -> i64 {
    db::url_queue::insert(&app.db, url, None).await.unwrap()
}

#[tokio::test]
async fn case_84_only_http_and_https_urls_are_queued() {
    let env = env().await;
    let app = &env.app;
    let bad = [
        (
            "javascript:alert(1)",
            "URL scheme javascript is not allowed",
        ),
        ("data:text/html,x", "URL scheme data is not allowed"),
        ("file:///etc/passwd", "URL scheme file is not allowed"),
        ("ftp://x", "URL scheme ftp is not allowed"),
        ("mailto:a@b", "URL scheme mailto is not allowed"),
        ("example.com", "URL has no scheme"),
        ("http:/x", "URL must start with http:// or https://"),
    ];
    let mut ids = Vec::new();
    for (url, _) in bad {
        ids.push(queue(app, url).await);
    }
    let good_http = queue(app, "http://example.com/a").await;
    let good_https = queue(app, "https://example.org/b").await;
    assert_eq!(urls::run_once(app).await.unwrap(), StepOutcome::Worked(9));
    for (id, (url, reason)) in ids.iter().zip(bad) {
        let (status, error, item_url) = url_row(app, *id).await;
        assert_eq!(status, "rejected", "{url}");
        assert!(
            error.as_deref().unwrap().starts_with(reason),
            "{url}: {error:?}"
        );
        assert_eq!(item_url, None, "{url} never becomes an item");
    }
    assert_eq!(
        url_row(app, good_http).await,
        ("queued".into(), None, Some("http://example.com/a".into()))
    );
    assert_eq!(
        url_row(app, good_https).await,
        ("queued".into(), None, Some("https://example.org/b".into()))
    );
    assert_eq!(urls::run_once(app).await.unwrap(), StepOutcome::Idle);
}

#[tokio::test]
async fn case_85_an_8000_byte_url_is_accepted_and_8001_bytes_are_rejected() {
    let env = env().await;
    let app = &env.app;
    let prefix = "https://example.com/";
    let exact = format!("{prefix}{}", "a".repeat(8000 - prefix.len()));
    let a = queue(app, &exact).await;
    let b = queue(app, &format!("{exact}a")).await;
    urls::run_once(app).await.unwrap();
    assert_eq!(url_row(app, a).await.0, "queued");
    assert_eq!(
        url_row(app, b).await,
        (
            "rejected".into(),
            Some("URL too long (8001 bytes > 8000)".into()),
            None
        )
    );
}

#[tokio::test]
async fn case_86_control_characters_and_spaces_are_rejected() {
    let env = env().await;
    let app = &env.app;
    let mut ids = Vec::new();
    for c in ["\r", "\n", "\t", "\0", " ", "\x7f"] {
        ids.push(queue(app, &format!("http://example.com/a{c}b")).await);
    }
    urls::run_once(app).await.unwrap();
    for id in ids {
        assert_eq!(
            url_row(app, id).await,
            (
                "rejected".into(),
                Some("URL contains control characters or spaces".into()),
                None
            )
        );
    }
}

#[tokio::test]
async fn case_87_credentials_in_a_url_are_rejected_and_not_recorded() {
    let env = env().await;
    let app = &env.app;
    let id = queue(app, "http://user:hunter2@host.example/").await;
    urls::run_once(app).await.unwrap();
    let (status, error, _) = url_row(app, id).await;
    assert_eq!(status, "rejected");
    assert_eq!(error.as_deref(), Some("credentials in URL"));
    assert!(items(app).await.is_empty());
}

#[tokio::test]
async fn case_88_idn_and_escapes_are_normalised_and_the_original_is_kept() {
    let env = env().await;
    let app = &env.app;
    let original = "https://BÜCHER.example/ä b".replace(' ', "%20");
    let id = queue(app, &original).await;
    urls::run_once(app).await.unwrap();
    let (status, _, item_url) = url_row(app, id).await;
    assert_eq!(status, "queued");
    assert_eq!(
        item_url.as_deref(),
        Some("https://xn--bcher-kva.example/%C3%A4%20b")
    );
    let kept: String = sqlx::query_scalar("SELECT url FROM url_queue WHERE id = ?")
        .bind(id)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(kept, original);
}

#[tokio::test]
async fn case_89_the_same_url_five_times_is_one_item_and_four_duplicates() {
    let env = env().await;
    let app = &env.app;
    let mut ids = Vec::new();
    for form in [
        "http://example.com/x",
        "HTTP://EXAMPLE.COM/x",
        "http://example.com:80/x",
        "http://example.com/./x",
        "http://example.com/x",
    ] {
        ids.push(queue(app, form).await);
    }
    urls::run_once(app).await.unwrap();
    let mut statuses = Vec::new();
    for id in &ids {
        statuses.push(url_row(app, *id).await.0);
    }
    assert_eq!(
        statuses,
        ["queued", "duplicate", "duplicate", "duplicate", "duplicate"]
    );
    let all = items(app).await;
    assert_eq!(all.len(), 5);
    for (item, _) in &all[1..] {
        assert_eq!(item.duplicate_of, Some(all[0].0.id));
    }
    // `force` resubmits past dedup.
    let forced = db::url_queue::insert(&app.db, "http://example.com/x", Some(r#"{"force": true}"#))
        .await
        .unwrap();
    urls::run_once(app).await.unwrap();
    assert_eq!(url_row(app, forced).await.0, "queued");
}

#[tokio::test]
async fn case_90_sql_metacharacters_are_just_url_text() {
    let env = env().await;
    let app = &env.app;
    let tables = |app: App| async move {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
        n
    };
    let before = tables(app.clone()).await;
    let hostile = [
        "http://x/'); DROP TABLE url_queue;--",
        "http://x/');DROP%20TABLE%20url_queue;--",
        "http://x/100%",
        "http://x/a\\b",
        "http://x/\"quoted\"",
    ];
    let mut ids = Vec::new();
    for url in hostile {
        ids.push(queue(app, url).await);
    }
    urls::run_once(app).await.unwrap();
    let mut outcomes = Vec::new();
    for id in &ids {
        let (status, error, url) = url_row(app, *id).await;
        outcomes.push((status, error, url));
    }
    assert_eq!(outcomes[0].0, "rejected", "the raw space rule applies");
    assert_eq!(
        outcomes[1].2.as_deref(),
        Some("http://x/');DROP%20TABLE%20url_queue;--")
    );
    assert_eq!(outcomes[2].2.as_deref(), Some("http://x/100%"));
    assert_eq!(outcomes[3].2.as_deref(), Some("http://x/a/b"));
    assert_eq!(outcomes[4].2.as_deref(), Some("http://x/%22quoted%22"));
    assert_eq!(tables(app.clone()).await, before);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM url_queue")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(rows, hostile.len() as i64);
}

#[tokio::test]
async fn case_91_wrong_sqlite_types_in_the_url_column_are_rejected_without_panic() {
    let env = env().await;
    let app = &env.app;
    // What a careless producer can insert with sqlite3.
    for sql in [
        "INSERT INTO url_queue (url) VALUES (NULL)",
        "INSERT INTO url_queue (url) VALUES (42)",
        "INSERT INTO url_queue (url) VALUES (4.2)",
        "INSERT INTO url_queue (url) VALUES (x'68747470733a2f2f782f')",
        "INSERT INTO url_queue (url) VALUES (CAST(x'fffe' AS TEXT))",
    ] {
        sqlx::query(sql).execute(app.db.pool()).await.unwrap();
    }
    assert_eq!(urls::run_once(app).await.unwrap(), StepOutcome::Worked(5));
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, error FROM url_queue ORDER BY id")
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 5);
    for (status, error) in rows {
        assert_eq!(status, "rejected");
        assert!(
            error
                .as_deref()
                .unwrap()
                .starts_with("url is not valid UTF-8 text"),
            "{error:?}"
        );
    }
    assert!(items(app).await.is_empty());
}

#[tokio::test]
async fn bad_per_row_params_reject_the_row_naming_the_parameter() {
    let env = env().await;
    let app = &env.app;
    let insert = |params: &'static str| {
        let app = app.clone();
        async move {
            db::url_queue::insert(&app.db, "https://example.com/p", Some(params))
                .await
                .unwrap()
        }
    };
    let not_json = insert("{not json").await;
    let bad_type = insert(r#"{"analysis-time": "soon"}"#).await;
    let reserved = insert(r#"{"apikey": "stolen"}"#).await;
    let good = insert(r#"{"systems": ["w10x64"], "internet-access": false}"#).await;
    urls::run_once(app).await.unwrap();
    assert!(
        url_row(app, not_json)
            .await
            .1
            .unwrap()
            .starts_with("params is not valid JSON")
    );
    assert_eq!(
        url_row(app, bad_type).await.1.as_deref(),
        Some("params: parameter `analysis-time` expects a non-negative integer")
    );
    let (status, error, _) = url_row(app, reserved).await;
    assert_eq!(status, "rejected");
    assert!(!error.unwrap().contains("stolen"));
    assert_eq!(url_row(app, good).await.0, "queued");
    let item = items(app).await.pop().unwrap().0;
    let params = jbxd::intake::params::parse(item.params.as_deref()).unwrap();
    assert_eq!(params.params.systems, ["w10x64"]);
}

#[tokio::test]
async fn the_url_worker_takes_rows_in_batches_of_at_most_100() {
    let env = env().await;
    let app = &env.app;
    for i in 0..250 {
        queue(app, &format!("https://example.com/{i}")).await;
    }
    assert_eq!(urls::run_once(app).await.unwrap(), StepOutcome::Worked(100));
    assert_eq!(urls::run_once(app).await.unwrap(), StepOutcome::Worked(100));
    assert_eq!(urls::run_once(app).await.unwrap(), StepOutcome::Worked(50));
    assert_eq!(urls::run_once(app).await.unwrap(), StepOutcome::Idle);
    // The submit worker was woken.
    tokio::time::timeout(Duration::from_secs(1), app.wake.submit.notified())
        .await
        .unwrap();
}

#[tokio::test]
async fn case_117_oversize_url_queue_rows_are_rejected_unread_and_normal_rows_go_through() {
    let env = env().await;
    let app = &env.app;
    const MB: usize = 1024 * 1024;
    // Written by SQLite itself, as a producer would; the test never holds them either.
    let huge = |sql: &str| {
        let sql = sql.to_owned();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("{sql} RETURNING id")))
                .fetch_one(app.db.pool())
                .await
                .unwrap()
        }
    };
    let mut normal = Vec::new();
    normal.push(queue(app, "https://example.com/before").await);
    let long_url = huge(&format!(
        "INSERT INTO url_queue (url) VALUES ('https://example.com/' || hex(zeroblob({})))",
        2 * MB
    ))
    .await;
    let long_params = huge(&format!(
        "INSERT INTO url_queue (url, params) \
         VALUES ('https://example.com/p', '{{\"comments\": \"' || hex(zeroblob({})) || '\"}}')",
        2 * MB
    ))
    .await;
    let long_blob = huge(&format!(
        "INSERT INTO url_queue (url) VALUES (zeroblob({}))",
        4 * MB
    ))
    .await;
    // A BLOB in params used to fail every read of the queue, stalling it for good.
    let blob_params =
        huge("INSERT INTO url_queue (url, params) VALUES ('https://example.com/b', x'ff')").await;
    for i in 0..150 {
        normal.push(queue(app, &format!("https://example.com/{i}")).await);
    }

    while urls::run_once(app).await.unwrap() != StepOutcome::Idle {}

    let url_size = "https://example.com/".len() + 4 * MB;
    assert_eq!(
        url_row(app, long_url).await,
        (
            "rejected".into(),
            Some(format!("URL too long ({url_size} bytes > 8000)")),
            None
        )
    );
    let params_size = r#"{"comments": ""}"#.len() + 4 * MB;
    assert_eq!(
        url_row(app, long_params).await,
        (
            "rejected".into(),
            Some(format!("params too large ({params_size} bytes > 65536)")),
            None
        )
    );
    assert_eq!(
        url_row(app, long_blob).await.1.as_deref(),
        Some("url is not valid UTF-8 text (found blob)")
    );
    assert_eq!(
        url_row(app, blob_params).await.1.as_deref(),
        Some("params is not valid UTF-8 text")
    );
    for id in normal {
        assert_eq!(url_row(app, id).await.0, "queued", "row {id}");
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM url_queue WHERE status = 'new'")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "none lost");
}

#[tokio::test]
async fn the_workers_run_until_cancelled() {
    let env = env().await;
    let app = env.app.clone();
    let cancel = tokio_util::sync::CancellationToken::new();
    let scan = tokio::spawn(scanner::run(app.clone(), cancel.clone()));
    let url = tokio::spawn(urls::run(app.clone(), cancel.clone()));
    queue(&app, "https://example.com/loop").await;
    fs::write(env.drop_dir().join("loop.bin"), b"taken by the loop").unwrap();
    app.wake.scan.notify_one();
    assert!(
        jbxd::testing::wait_until(Duration::from_secs(10), || {
            let app = app.clone();
            async move { db::items::list(&app.db, 10).await.unwrap().len() == 2 }
        })
        .await
    );
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), async {
        scan.await.unwrap().unwrap();
        url.await.unwrap().unwrap();
    })
    .await
    .expect("workers stop when cancelled");
}
