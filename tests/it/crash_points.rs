//! Crash points (reliability catalog group A, cases 3–16): the real `jbxd run`, built with
//! `--features fault-injection`, kills itself with SIGKILL at a named point
//! (`JBXD_CRASHPOINT`, see `src/crashpoint.rs`) while files and URLs flow through the
//! simulator; the harness checks it died by SIGKILL, looks at what the crash left, restarts it
//! without the variable, waits until every input is terminal, stops it with SIGTERM and runs
//! the shared invariant check (`jbxd::testing::check_invariants`).
//!
//! Run: `cargo test --features fault-injection --test it crash_points::`.

use crate::crash_harness;

use std::time::Duration;

use crash_harness::{Harness, content, has_file_with_prefix, killed_by_sigkill, signal, wait_exit};
use jbxd::api::CHUNK_SIZE;
use jbxd::db::{self, Db, ItemState};
use jbxd::simulator::SimConfig;
use jbxd::storage::TEMP_PREFIX;
use jbxd::testing::{InvariantReport, TEST_API_KEY, check_invariants, wait_until};

/// Small files, so the copy is one block.
const SMALL: usize = 4096;

/// A file over the chunked threshold: two chunks, the second one short.
const BIG: usize = CHUNK_SIZE as usize + 512 * 1024;

async fn harness() -> Harness {
    Harness::new(
        SimConfig {
            analysis_seconds: 1,
            ..SimConfig::default()
        },
        "",
    )
    .await
}

/// Feeds two small files (plus one over the chunked threshold when `big`) and two URLs to a
/// daemon started with `JBXD_CRASHPOINT=point`, and waits for it to kill itself.
async fn crash_at(point: &str, big: bool) -> (Harness, Db) {
    let mut h = harness().await;
    h.drop_file("first.exe", &content(1, SMALL));
    h.drop_file("second.doc", &content(2, SMALL));
    if big {
        h.drop_file("big.bin", &content(3, BIG));
    }
    let child = h.spawn(Some(point));
    let db = h.db().await;
    h.queue_url(&db, "https://crash.example/first").await;
    h.queue_url(&db, "https://crash.example/second").await;
    let status = wait_exit(child, Duration::from_secs(120)).await;
    assert!(
        killed_by_sigkill(&status),
        "{point}: expected death by SIGKILL, got {status:?}\n{}",
        h.log_tail()
    );
    (h, db)
}

/// Restarts without a crash point, drains, stops with SIGTERM and checks the invariants; every
/// input must end `done` with no duplicate submission.
async fn recover_and_check(h: &mut Harness, db: &Db) -> InvariantReport {
    let child = h.spawn(None);
    let drained = h.wait_drained(db, Duration::from_secs(120)).await;
    signal(&child, libc::SIGTERM);
    let status = wait_exit(child, Duration::from_secs(60)).await;
    assert!(
        drained,
        "not drained: {:?}\n{}",
        db::items::list(db, 100).await,
        h.log_tail()
    );
    assert!(
        status.success(),
        "SIGTERM exit: {status:?}\n{}",
        h.log_tail()
    );
    let report = check_invariants(&h.data_dir(), &h.drop_dir(), &h.sim, &h.expected)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", h.log_tail()));
    assert_eq!(
        report.done,
        h.expected.len(),
        "{report:?}\n{}",
        h.log_tail()
    );
    assert_eq!(report.duplicate_submissions, 0, "{report:?}");
    assert_eq!(report.accepted_submissions, h.expected.len(), "{report:?}");
    assert!(
        !h.all_logs().contains(TEST_API_KEY),
        "the key leaked into a log"
    );
    report
}

fn submits(h: &Harness) -> usize {
    h.sim
        .request_log()
        .iter()
        .filter(|r| r.endpoint == "submission/new")
        .count()
}

fn endpoint_count(h: &Harness, endpoint: &str) -> usize {
    h.sim
        .request_log()
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .count()
}

async fn items_in(db: &Db, state: ItemState) -> usize {
    db::items::list(db, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|i| i.state == state)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_3_a_crash_mid_copy_leaves_a_partial_copy_that_is_discarded_and_staged_again() {
    let (mut h, db) = crash_at("mid_copy", false).await;
    let incoming = h.data_dir().join("quarantine/incoming");
    assert!(
        has_file_with_prefix(&incoming, TEMP_PREFIX),
        "the partial copy is there"
    );
    assert_eq!(
        db::items::list(&db, 10)
            .await
            .unwrap()
            .iter()
            .filter(|i| !i.is_url())
            .count(),
        0
    );
    recover_and_check(&mut h, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_2_and_4_a_crash_after_staging_before_the_insert_stages_again_without_a_second_copy() {
    let (mut h, db) = crash_at("after_stage", false).await;
    let samples = h.data_dir().join("quarantine/samples");
    assert_eq!(
        std::fs::read_dir(&samples).unwrap().count(),
        2,
        "both staged"
    );
    assert!(h.drop_dir().join("first.exe").exists(), "sources stay");
    assert!(h.drop_dir().join("second.doc").exists(), "sources stay");
    recover_and_check(&mut h, &db).await;
    assert_eq!(
        std::fs::read_dir(&samples).unwrap().count(),
        2,
        "content-addressed: no second copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_5_a_crash_after_recording_before_the_unlink_removes_the_source_without_a_second_item()
{
    let (mut h, db) = crash_at("after_record", false).await;
    let files = db::items::list(&db, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| !i.is_url())
        .count();
    assert_eq!(files, 2, "both recorded");
    assert!(
        h.drop_dir().join("first.exe").exists(),
        "source not yet removed"
    );
    let report = recover_and_check(&mut h, &db).await;
    assert_eq!(report.items, 4, "no second item: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_5_a_crash_after_the_url_queue_batch_is_applied_submits_each_url_once() {
    let (mut h, db) = crash_at("after_url_claim", false).await;
    let report = recover_and_check(&mut h, &db).await;
    assert_eq!(report.items, 4, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_6_a_crash_after_the_submit_intent_submits_once_with_a_new_key() {
    let (mut h, db) = crash_at("after_submit_intent", false).await;
    assert!(items_in(&db, ItemState::Submitting).await >= 1);
    assert_eq!(submits(&h), 0, "nothing was sent before the crash");
    recover_and_check(&mut h, &db).await;
    assert_eq!(submits(&h), h.expected.len(), "one submission per input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_7_a_crash_after_the_server_accepted_before_our_commit_adopts_the_submission() {
    let (mut h, db) = crash_at("after_submit_response", false).await;
    assert!(items_in(&db, ItemState::Submitting).await >= 1);
    assert!(!h.sim.accepted_submissions().is_empty());
    recover_and_check(&mut h, &db).await;
    assert_eq!(submits(&h), h.expected.len(), "adopted, not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_9_a_crash_mid_upload_deletes_the_incomplete_submission_and_uploads_once() {
    let (mut h, db) = crash_at("mid_upload", true).await;
    assert!(endpoint_count(&h, "submission/chunked-sample") >= 1);
    let report = recover_and_check(&mut h, &db).await;
    assert!(
        endpoint_count(&h, "submission/delete") >= 1,
        "the incomplete submission was deleted"
    );
    assert_eq!(report.deleted_submissions, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_10_a_crash_between_chunked_creation_and_the_first_chunk_deletes_it_and_uploads_once()
{
    let (mut h, db) = crash_at("after_chunked_create", true).await;
    assert_eq!(endpoint_count(&h, "submission/chunked-sample"), 0);
    let report = recover_and_check(&mut h, &db).await;
    assert!(endpoint_count(&h, "submission/delete") >= 1);
    assert_eq!(report.deleted_submissions, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_11_a_crash_after_a_poll_saw_finished_polls_again() {
    let (mut h, db) = crash_at("after_poll_finished", false).await;
    assert!(
        db::analyses::stored_paths(&db).await.unwrap().is_empty(),
        "nothing was recorded as finished"
    );
    recover_and_check(&mut h, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_12_a_crash_mid_download_discards_the_part_file_and_downloads_again() {
    let (mut h, db) = crash_at("mid_download", false).await;
    assert!(
        has_file_with_prefix(&h.data_dir().join("reports"), TEMP_PREFIX),
        "the partial download is there"
    );
    let report = recover_and_check(&mut h, &db).await;
    assert_eq!(report.stored_reports, 3 * h.expected.len(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_13_a_crash_after_the_report_rename_keeps_one_file_per_report() {
    let (mut h, db) = crash_at("after_report_rename", false).await;
    assert!(db::analyses::stored_paths(&db).await.unwrap().is_empty());
    let report = recover_and_check(&mut h, &db).await;
    // One file per (analysis, type) on disk, each recorded.
    let mut files = 0;
    for dir in std::fs::read_dir(h.data_dir().join("reports")).unwrap() {
        files += std::fs::read_dir(dir.unwrap().path()).unwrap().count();
    }
    assert_eq!(files, report.stored_reports, "{report:?}");
    assert_eq!(report.stored_reports, 3 * h.expected.len(), "{report:?}");
}

/// Starts a daemon, waits until work is in flight (something submitted, nothing finished yet
/// for at least one input), then SIGTERM.
async fn stop_while_busy(point: Option<&str>, then_kill_after: Option<Duration>) {
    let mut h = harness().await;
    for n in 1..=4 {
        h.drop_file(&format!("busy-{n}.exe"), &content(n, SMALL));
    }
    let child = h.spawn(point);
    let db = h.db().await;
    for n in 1..=4 {
        h.queue_url(&db, &format!("https://busy.example/{n}")).await;
    }
    let busy = wait_until(Duration::from_secs(60), || async {
        !h.sim.accepted_submissions().is_empty()
    })
    .await;
    assert!(busy, "{}", h.log_tail());
    signal(&child, libc::SIGTERM);
    if let Some(delay) = then_kill_after {
        tokio::time::sleep(delay).await;
        // It may already have exited cleanly: then there is nothing to kill.
        // SAFETY: plain kill(2) on our own (possibly exited, not yet reaped) child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    }
    let status = wait_exit(child, Duration::from_secs(60)).await;
    if point.is_some() {
        assert!(killed_by_sigkill(&status), "{status:?}\n{}", h.log_tail());
    } else {
        assert!(
            killed_by_sigkill(&status) || status.success(),
            "{status:?}\n{}",
            h.log_tail()
        );
    }
    recover_and_check(&mut h, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_16_a_crash_during_graceful_shutdown_loses_nothing() {
    stop_while_busy(Some("during_shutdown"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_16_sigkill_100_ms_after_sigterm_loses_nothing() {
    stop_while_busy(None, Some(Duration::from_millis(100))).await;
}
