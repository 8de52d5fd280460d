//! The pipeline (submit → reconcile → poll → download) against the simulator, driven one
//! step at a time through the workers' `run_once` functions. Test names cite the
//! RELIABILITY.md case they implement.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jbxd::app::{App, PauseReason, StepOutcome};
use jbxd::db::url_queue::{Applied, UrlDecision};
use jbxd::db::{self, Item, ItemState, NewFile};
use jbxd::pipeline::{self, download, poll, reconcile, submit};
use jbxd::simulator::{Fault, FaultRule, SimConfig};
use jbxd::testing::{TestEnv, all_terminal, drive_until};

// ---- helpers ----------------------------------------------------------------------------

async fn start(sim: SimConfig) -> TestEnv {
    TestEnv::start(sim, |_| {}).await
}

/// Stages `content` into quarantine and records it as a queued file item.
async fn add_file(app: &App, name: &str, content: &[u8]) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload");
    std::fs::write(&path, content).unwrap();
    let store = app.store.clone();
    let staged = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).unwrap();
        store.stage_sample(&mut file)
    })
    .await
    .unwrap()
    .unwrap();
    let new = NewFile {
        name: name.to_owned(),
        raw_name: name.as_bytes().to_vec(),
        sha256: staged.sha256,
        md5: staged.md5,
        sha1: staged.sha1,
        size: staged.size as i64,
        sample_path: staged.rel_path,
        dev: 0,
        ino: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        source: "drop",
        params: None,
        force: false,
    };
    db::items::insert_files(&app.db, &[new], db::SampleDedup::Off)
        .await
        .unwrap()[0]
        .0
}

/// Queues a URL as a producer would, and lets intake accept it.
async fn add_url(app: &App, url: &str, params: Option<&str>) -> i64 {
    let row = db::url_queue::insert(&app.db, url, params).await.unwrap();
    let decision = UrlDecision::Accept {
        url: url.to_owned(),
        params: params.map(str::to_owned),
        force: false,
    };
    match db::url_queue::apply(&app.db, &[(row, decision)], 0)
        .await
        .unwrap()[0]
    {
        Applied::Queued(id) => id,
        other => panic!("not queued: {other:?}"),
    }
}

async fn item(app: &App, id: i64) -> Item {
    db::items::get(&app.db, id).await.unwrap().unwrap()
}

async fn drive_to_end(app: &App) -> Vec<Item> {
    drive_until(app, Duration::from_secs(20), all_terminal).await
}

fn rule(endpoint: &str, fault: Fault, times: u32) -> FaultRule {
    FaultRule::times(Some(endpoint), fault, times)
}

fn requests_to(env: &TestEnv, endpoint: &str) -> usize {
    env.sim
        .request_log()
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .count()
}

/// Every report of the item's analyses.
async fn reports_of(app: &App, item_id: i64) -> Vec<db::ReportRow> {
    let mut out = Vec::new();
    for a in db::analyses::for_item(&app.db, item_id).await.unwrap() {
        out.extend(db::analyses::reports_for(&app.db, &a.webid).await.unwrap());
    }
    out
}

/// The bytes the simulator serves for a report now.
async fn served(app: &App, webid: &str, report_type: &str) -> Vec<u8> {
    let download = app
        .client
        .analysis_download(webid, report_type, None)
        .await
        .unwrap();
    let mut bytes = Vec::new();
    download.write_to(&mut bytes, |_| {}).await.unwrap();
    bytes
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Asserts every stored report is intact (recorded size and hash, no exec bit) and equals
/// what the simulator serves.
async fn assert_reports_intact(app: &App, item_id: i64) {
    let reports = reports_of(app, item_id).await;
    assert!(!reports.is_empty());
    for r in reports
        .iter()
        .filter(|r| r.state == jbxd::db::ReportState::Stored)
    {
        let path = r.path.as_deref().unwrap();
        assert!(
            app.store
                .verify(path, r.size.unwrap() as u64, r.sha256.as_deref().unwrap())
                .unwrap(),
            "{path} does not verify"
        );
        let mode = std::fs::metadata(app.store.abs(path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0, "{path} has an exec bit");
        let on_disk = std::fs::read(app.store.abs(path)).unwrap();
        assert_eq!(
            on_disk,
            served(app, &r.webid, &r.report_type).await,
            "{path}"
        );
    }
}

const MALICIOUS: &[u8] = b"MZ... JBXD-MALICIOUS payload";

// ---- happy paths --------------------------------------------------------------------------

#[tokio::test]
async fn a_url_and_a_file_are_submitted_polled_indexed_and_their_reports_stored() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let url = add_url(app, "https://malware.example/dropper", None).await;
    let file = add_file(app, "invoice.exe", MALICIOUS).await;
    let items = drive_to_end(app).await;
    assert!(
        items.iter().all(|i| i.state == ItemState::Done),
        "{items:#?}"
    );
    assert_eq!(env.sim.accepted_submissions().len(), 2);

    for id in [url, file] {
        let i = item(app, id).await;
        assert!(i.submission_id.is_some());
        let analyses = db::analyses::for_item(&app.db, id).await.unwrap();
        assert_eq!(analyses.len(), 1);
        let a = &analyses[0];
        assert_eq!(a.detection.as_deref(), Some("malicious"));
        assert!(a.score.is_some_and(|s| s > 0));
        assert!(a.systems.is_some());
        let reports = reports_of(app, id).await;
        let mut types: Vec<_> = reports.iter().map(|r| r.report_type.as_str()).collect();
        types.sort();
        assert_eq!(types, ["html", "irjsonfixed", "xml"]);
        assert!(
            reports
                .iter()
                .all(|r| r.state == jbxd::db::ReportState::Stored),
            "{reports:#?}"
        );
        for r in &reports {
            let expected = format!(
                "reports/{}/{}.{}",
                r.webid,
                r.report_type,
                jbxd::api::ReportType::extension(&r.report_type)
            );
            assert_eq!(r.path.as_deref(), Some(expected.as_str()));
        }
        assert_reports_intact(app, id).await;
    }
    let sha = item(app, file).await.sha256.unwrap();
    let a = &db::analyses::for_item(&app.db, file).await.unwrap()[0];
    assert_eq!(a.sha256.as_deref(), Some(sha.as_str()));
    // The producer's row follows its item.
    let rows = db::url_queue::counts_by_status(&app.db).await.unwrap();
    assert_eq!(rows, vec![("done".to_owned(), 1)]);
}

#[tokio::test]
async fn the_sample_and_archives_are_downloaded_when_configured_and_the_sample_is_read_only() {
    let env = TestEnv::start(SimConfig::default(), |c| {
        c.reports.sample = true;
        c.reports.archives = true;
    })
    .await;
    let app = &env.app;
    let file = add_file(app, "x.exe", MALICIOUS).await;
    drive_to_end(app).await;
    assert_eq!(item(app, file).await.state, ItemState::Done);
    let reports = reports_of(app, file).await;
    let sample = reports.iter().find(|r| r.report_type == "sample").unwrap();
    assert_eq!(sample.state, jbxd::db::ReportState::Stored, "{sample:?}");
    let path = sample.path.as_deref().unwrap();
    assert!(path.ends_with("/sample.bin"));
    let mode = std::fs::metadata(app.store.abs(path))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o400);
    for t in ["bins", "unpackpe"] {
        let r = reports.iter().find(|r| r.report_type == t).unwrap();
        assert!(
            r.state == jbxd::db::ReportState::Stored || r.state == jbxd::db::ReportState::Failed,
            "{r:?}"
        );
        if r.state == jbxd::db::ReportState::Stored {
            assert!(r.path.as_deref().unwrap().ends_with(&format!("/{t}.zip")));
        }
    }
    assert_reports_intact(app, file).await;
}

#[tokio::test]
async fn a_finished_submission_without_analyses_is_done_with_a_note() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    // An empty ZIP: only the end-of-central-directory record.
    let mut empty_zip = b"PK\x05\x06".to_vec();
    empty_zip.resize(22, 0);
    let id = add_file(app, "empty.zip", &empty_zip).await;
    drive_to_end(app).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Done, "{i:?}");
    assert!(
        i.note.as_deref().unwrap().contains("without any analysis"),
        "{i:?}"
    );
    assert!(i.error.is_none());
    assert!(
        db::analyses::for_item(&app.db, id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_sample_already_analysed_on_the_server_is_reused_instead_of_submitted() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    // Someone analysed this sample before, outside jbxd.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known.exe");
    std::fs::write(&path, MALICIOUS).unwrap();
    let earlier = app
        .client
        .submit_sample(&path, &Default::default(), &Default::default())
        .await
        .unwrap();
    assert!(
        jbxd::testing::wait_until(Duration::from_secs(5), || async {
            app.client
                .submission_info(&earlier)
                .await
                .unwrap()
                .is_finished()
        })
        .await
    );
    let id = add_file(app, "known.exe", MALICIOUS).await;
    drive_to_end(app).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Done, "{i:?}");
    assert!(i.submission_id.is_none());
    assert!(
        i.note.as_deref().unwrap().starts_with("reused analysis "),
        "{i:?}"
    );
    assert_eq!(env.sim.accepted_submissions(), vec![earlier]);
    assert_reports_intact(app, id).await;
}

// ---- A: crash points ----------------------------------------------------------------------

#[tokio::test]
async fn a_crash_after_the_last_report_was_stored_completes_the_item_at_the_restart() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/last-report", None).await;
    drive_to_end(app).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
    // As if the process died between the last `report_stored` and the item's completion.
    sqlx::query("UPDATE items SET state = 'downloading', finished_at = NULL WHERE id = ?")
        .bind(id)
        .execute(app.db.pool())
        .await
        .unwrap();
    let report = pipeline::recover(app).await.unwrap();
    assert_eq!(report.completed_items, 1);
    assert_eq!(item(app, id).await.state, ItemState::Done);
}

#[tokio::test]
async fn case_11_a_poll_claim_left_by_a_crash_does_not_delay_polling_after_the_restart() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/eleven", None).await;
    assert!(matches!(
        submit::run_once(app).await.unwrap(),
        StepOutcome::Worked(1)
    ));
    // The poll worker claims the item (a ten-minute lease), then the process "dies".
    db::pipeline::resume_polling(&app.db, 0).await.unwrap();
    let claimed = db::items::claim_for_poll(&app.db, 10, 600_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let report = pipeline::recover(app).await.unwrap();
    assert_eq!(report.resumed_polls, 1);
    let due = db::items::claim_for_poll(&app.db, 10, 1000).await.unwrap();
    assert_eq!(due.len(), 1, "due at once, not after the lease");
    assert_eq!(due[0].id, id);
}

#[tokio::test]
async fn case_6_a_crash_after_the_intent_commit_is_reconciled_then_submitted_once_with_a_new_key() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/six", None).await;
    // The claim commits the intent; then the process "dies" before sending anything.
    let claimed = db::items::claim_for_submit(&app.db, 10, 0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let report = pipeline::recover(app).await.unwrap();
    assert_eq!(report.unreconciled_submissions, 1);
    drive_to_end(app).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Done);
    assert_eq!(i.attempts, 0, "a crash uses no attempt");
    assert_eq!(env.sim.accepted_submissions().len(), 1);
    let attempts = db::items::attempts_of(&app.db, id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attempts[0].outcome,
        Some(jbxd::db::AttemptOutcome::NotFound)
    );
    assert_eq!(
        attempts[1].outcome,
        Some(jbxd::db::AttemptOutcome::Accepted)
    );
    assert!(attempts[1].attempt_key.ends_with("-2"));
    let log = env.sim.request_log();
    let new: Vec<_> = log
        .iter()
        .filter(|r| r.endpoint == "submission/new")
        .collect();
    assert_eq!(new.len(), 1);
    assert!(
        new[0]
            .comments
            .as_deref()
            .unwrap()
            .ends_with(&attempts[1].attempt_key)
    );
}

#[tokio::test]
async fn case_7_a_submission_accepted_but_unanswered_is_adopted_with_its_id_and_no_duplicate() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    env.sim
        .faults()
        .add(rule("submission/new", Fault::ResetAfterBody, 1));
    let id = add_url(app, "https://example.com/seven", None).await;
    submit::run_once(app).await.unwrap();
    let i = item(app, id).await;
    assert_eq!(
        i.state,
        ItemState::Submitting,
        "unknown outcome stays submitting"
    );
    drive_to_end(app).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Done, "{i:?}");
    assert_eq!(env.sim.accepted_submissions().len(), 1);
    assert_eq!(
        requests_to(&env, "submission/new"),
        1,
        "never resubmitted blindly"
    );
    assert!(i.note.as_deref().unwrap().contains("adopted"), "{i:?}");
    // Found through the submission list, which names the submission: followed by its id.
    assert_eq!(
        i.submission_id,
        Some(env.sim.accepted_submissions()[0].clone())
    );
    assert_eq!(db::analyses::for_item(&app.db, id).await.unwrap().len(), 1);
    assert_reports_intact(app, id).await;
}

#[tokio::test]
async fn case_7_a_crash_after_the_server_accepted_is_adopted_after_restart() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    env.sim
        .faults()
        .add(rule("submission/new", Fault::ResetAfterBody, 1));
    let id = add_file(app, "seven.exe", MALICIOUS).await;
    submit::run_once(app).await.unwrap();
    // "Restart": recovery, then the workers.
    pipeline::recover(app).await.unwrap();
    drive_to_end(app).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
    assert_eq!(env.sim.accepted_submissions().len(), 1);
}

/// The live submissions on the simulator whose comments carry the item's key.
fn live_of(env: &TestEnv, item: &Item) -> Vec<jbxd::simulator::LiveSubmission> {
    let prefix = format!("jbxd:{}-", item.item_key);
    env.sim
        .live_submissions()
        .into_iter()
        .filter(|s| s.comments.contains(&prefix))
        .collect()
}

#[tokio::test]
async fn case_115_lost_replies_under_search_lag_longer_than_the_grace_leave_one_live_submission_per_item()
 {
    // Search lags an hour behind; the grace is 0 s: search alone would find nothing.
    let env = start(SimConfig {
        search_lag: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await;
    let app = &env.app;
    const N: usize = 6;
    env.sim
        .faults()
        .add(rule("submission/new", Fault::ResetAfterBody, N as u32 + 2));
    let mut ids = Vec::new();
    for n in 0..N {
        ids.push(add_url(app, &format!("https://example.com/lag-{n}"), None).await);
    }
    ids.push(add_file(app, "lag-a.exe", MALICIOUS).await);
    ids.push(add_file(app, "lag-b.exe", b"harmless bytes").await);
    drive_to_end(app).await;
    assert_eq!(
        requests_to(&env, "submission/new"),
        N + 2,
        "every reply was lost and nothing was sent twice"
    );
    for id in ids {
        let i = item(app, id).await;
        assert_eq!(i.state, ItemState::Done, "{i:?}");
        let live = live_of(&env, &i);
        assert_eq!(live.len(), 1, "{i:?}: {live:?}");
        assert_eq!(
            i.submission_id.as_deref(),
            Some(live[0].submission_id.as_str())
        );
        assert!(i.note.as_deref().unwrap().contains("adopted"), "{i:?}");
    }
    assert_eq!(env.sim.live_submissions().len(), N + 2);
    assert_eq!(env.sim.accepted_submissions().len(), N + 2);
}

/// Search lags an hour, analyses stay `accepted` for 60 s (10 % of 600 s) and the first
/// `submission/new` reply is lost after the server acted; look-ups go on for `window_secs`.
async fn lost_reply_under_search_lag(window_secs: u64) -> TestEnv {
    let env = TestEnv::start(
        SimConfig {
            search_lag: Duration::from_secs(3600),
            analysis_seconds: 600,
            ..SimConfig::default()
        },
        |c| c.pipeline.reconcile_window_secs = window_secs,
    )
    .await;
    env.sim
        .faults()
        .add(rule("submission/new", Fault::ResetAfterBody, 1));
    env
}

#[tokio::test]
async fn case_115_a_lost_submission_not_yet_analysed_is_waited_for_past_the_window_and_adopted_not_resubmitted()
 {
    // While a submission's analyses are still `accepted` (the first 10 % of 600 s) its info
    // shows no comments, and search lags an hour: only its name says it may be ours.
    let env = lost_reply_under_search_lag(2).await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/queued", None).await;
    submit::run_once(app).await.unwrap();
    // Well past the window: still waiting for the look-alike, never a second submission.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        reconcile::run_once(app).await.unwrap();
        submit::run_once(app).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Submitting, "{i:?}");
    assert_eq!(env.sim.accepted_submissions().len(), 1);
    // Once the server analyses it, its comments identify it: adopted, with its id.
    env.sim.advance_clock(Duration::from_secs(61));
    let deadline = Instant::now() + Duration::from_secs(10);
    while item(app, id).await.state == ItemState::Submitting && Instant::now() < deadline {
        reconcile::run_once(app).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Submitted, "{i:?}");
    assert_eq!(
        i.submission_id.as_deref(),
        Some(env.sim.accepted_submissions()[0].as_str())
    );
    assert_eq!(env.sim.accepted_submissions().len(), 1, "never resubmitted");
}

#[tokio::test]
async fn case_8_and_115_a_lost_submission_unidentified_past_the_waiting_time_is_sent_again_and_the_late_extra_deleted()
 {
    // While a submission's analyses are still `accepted` (the first 10 % of 600 s) its info
    // shows no comments, and search lags an hour: nothing identifies the lost submission. The
    // look-alike (same name, no analyses) is waited for ten windows past the window (1 + 10 s
    // here); then it is sent again, and the extra found later is deleted.
    let env = lost_reply_under_search_lag(1).await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/eight", None).await;
    let started = Instant::now();
    submit::run_once(app).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    reconcile::run_once(app).await.unwrap();
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Submitting, "still looking: {i:?}");
    assert!(
        i.next_attempt_at > db::now_ms(),
        "the next look-up is scheduled: {i:?}"
    );
    // It keeps looking until the window and the waiting time have passed, then submits again.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut gave_up_after = None;
    while item(app, id).await.state != ItemState::Submitted && Instant::now() < deadline {
        reconcile::run_once(app).await.unwrap();
        if gave_up_after.is_none() && item(app, id).await.state == ItemState::Queued {
            gave_up_after = Some(started.elapsed());
        }
        submit::run_once(app).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gave_up_after = gave_up_after.expect("requeued once the window ended");
    assert!(
        gave_up_after >= Duration::from_secs(11),
        "not before the window and the waiting time ended: {gave_up_after:?}"
    );
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Submitted, "{i:?}");
    assert_eq!(env.sim.accepted_submissions().len(), 2);
    // The first one becomes visible by the time the second one finished: deleted then.
    env.sim.advance_clock(Duration::from_secs(3601));
    drive_to_end(app).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Done, "{i:?}");
    let live = live_of(&env, &i);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(
        i.submission_id.as_deref(),
        Some(live[0].submission_id.as_str())
    );
    let first = env.sim.accepted_submissions()[0].clone();
    assert!(live.iter().all(|s| s.submission_id != first));
    let attempts = db::items::attempts_of(&app.db, id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attempts[0].outcome,
        Some(jbxd::db::AttemptOutcome::Abandoned)
    );
    assert_eq!(attempts[0].submission_id.as_deref(), Some(first.as_str()));
    let detail = attempts[0].detail.as_deref().unwrap();
    assert!(
        detail.starts_with("duplicate submission") && detail.contains("deleted on the server"),
        "{attempts:?}"
    );
    assert_eq!(
        attempts[1].outcome,
        Some(jbxd::db::AttemptOutcome::Accepted)
    );
    assert!(
        i.note.as_deref().unwrap().contains("duplicate submission"),
        "{i:?}"
    );
    // Reports are downloaded once: for the analysis of the followed submission only.
    let analyses = db::analyses::for_item(&app.db, id).await.unwrap();
    assert_eq!(analyses.len(), 1);
    assert_eq!(reports_of(app, id).await.len(), 3);
}

#[tokio::test]
async fn case_116_a_lost_reply_to_a_chunked_submission_deletes_the_empty_submission_before_a_new_one()
 {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    // The chunked `submission/new` is answered with a reset: no id, so no chunk goes out.
    env.sim
        .faults()
        .add(rule("submission/new", Fault::ResetAfterBody, 1));
    let mut big = vec![b'C'; 21 * 1024 * 1024];
    big[..MALICIOUS.len()].copy_from_slice(MALICIOUS);
    let id = add_file(app, "big3.bin", &big).await;
    submit::run_once(app).await.unwrap();
    assert_eq!(item(app, id).await.state, ItemState::Submitting);
    // A second chunk-sized item, named differently, must not lose its submission to it.
    let other = add_file(app, "other.bin", &vec![b'D'; 21 * 1024 * 1024]).await;
    drive_until(app, Duration::from_secs(60), all_terminal).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Done, "{i:?}");
    assert_eq!(item(app, other).await.state, ItemState::Done);
    let orphan = env.sim.accepted_submissions()[0].clone();
    let live = live_of(&env, &i);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_ne!(live[0].submission_id, orphan, "the empty one is gone");
    assert_eq!(live_of(&env, &item(app, other).await).len(), 1);
    let attempts = db::items::attempts_of(&app.db, id).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        attempts[0].outcome,
        Some(jbxd::db::AttemptOutcome::Abandoned)
    );
    assert_eq!(attempts[0].submission_id.as_deref(), Some(orphan.as_str()));
    assert!(
        attempts[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("empty submission"),
        "{attempts:?}"
    );
    assert_eq!(
        attempts[1].outcome,
        Some(jbxd::db::AttemptOutcome::Accepted)
    );
    // The orphan was deleted before anything was sent again.
    let log = env.sim.request_log();
    let deleted_at = log
        .iter()
        .find(|r| r.endpoint == "submission/delete")
        .map(|r| r.seq)
        .expect("a delete");
    let resubmitted_at = log
        .iter()
        .filter(|r| {
            r.endpoint == "submission/new"
                && r.comments
                    .as_deref()
                    .is_some_and(|c| c.contains(&i.item_key))
        })
        .nth(1)
        .map(|r| r.seq)
        .expect("a second submission/new");
    assert!(deleted_at < resubmitted_at, "{log:#?}");
}

#[tokio::test]
async fn case_116_a_crash_while_a_chunked_submission_new_was_in_flight_leaves_no_orphan_after_the_restart()
 {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let id = add_file(app, "slow.bin", &vec![b'E'; 21 * 1024 * 1024]).await;
    // The intent is committed and the chunked creation reaches the server, but the process is
    // killed before the reply (a slow server): no id on record, no chunk sent.
    let claimed = db::items::claim_for_submit(&app.db, 10, 0).await.unwrap();
    let (claimed_item, key) = claimed.into_iter().next().unwrap();
    let defaults = submit::default_params(&app.config.submission).unwrap();
    let params = submit::attempt_params(
        claimed_item.params.as_deref(),
        &defaults,
        &app.config.submission,
        &key,
    )
    .unwrap();
    // The submission is dropped mid-flight once the server has assigned the id: nothing is
    // recorded, no chunk goes out.
    let path = app.store.abs(claimed_item.sample_path.as_deref().unwrap());
    let (assigned, orphan) = tokio::sync::oneshot::channel();
    let named = jbxd::api::SampleUpload {
        name: Some(claimed_item.name.clone()),
        progress: None,
    };
    let upload =
        app.client
            .submit_sample_recorded(&path, &params, &named, |submission_id| async move {
                let _ = assigned.send(submission_id);
                std::future::pending::<Result<(), std::convert::Infallible>>().await
            });
    let orphan = tokio::select! {
        outcome = upload => panic!("the upload ended: {outcome:?}"),
        id = orphan => id.unwrap(),
    };
    // The restart.
    assert_eq!(
        pipeline::recover(app)
            .await
            .unwrap()
            .unreconciled_submissions,
        1
    );
    drive_until(app, Duration::from_secs(60), all_terminal).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Done, "{i:?}");
    assert_eq!(i.attempts, 0, "a crash uses no attempt");
    let live = live_of(&env, &i);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_ne!(live[0].submission_id, orphan);
    assert_eq!(live[0].analyses, 1);
    let attempts = db::items::attempts_of(&app.db, id).await.unwrap();
    assert_eq!(
        attempts[0].outcome,
        Some(jbxd::db::AttemptOutcome::Abandoned)
    );
    assert_eq!(attempts[0].submission_id.as_deref(), Some(orphan.as_str()));
    assert_eq!(
        attempts[1].outcome,
        Some(jbxd::db::AttemptOutcome::Accepted)
    );
}

#[tokio::test]
async fn case_10_a_failed_chunk_deletes_the_dangling_submission_then_one_complete_upload() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    env.sim.faults().add(rule(
        "submission/chunked-sample",
        Fault::Error {
            http_status: 500,
            code: 6,
            message: "chunk store failed".into(),
        },
        1,
    ));
    let mut big = vec![b'A'; 21 * 1024 * 1024];
    big[..MALICIOUS.len()].copy_from_slice(MALICIOUS);
    let id = add_file(app, "big.bin", &big).await;
    drive_until(app, Duration::from_secs(30), all_terminal).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Done, "{i:?}");
    assert_eq!(requests_to(&env, "submission/delete"), 1);
    let remaining = app.client.submission_list().await.unwrap();
    assert_eq!(remaining.len(), 1, "exactly one complete submission left");
    assert_eq!(remaining[0].submission_id, i.submission_id.clone().unwrap());
    let attempts = db::items::attempts_of(&app.db, id).await.unwrap();
    assert_eq!(
        attempts[0].outcome,
        Some(jbxd::db::AttemptOutcome::Abandoned)
    );
    assert!(
        attempts[0].submission_id.is_some(),
        "recorded before the first chunk"
    );
    assert_eq!(
        attempts[1].outcome,
        Some(jbxd::db::AttemptOutcome::Accepted)
    );
}

#[tokio::test]
async fn case_10_a_dangling_chunked_submission_that_could_not_be_deleted_is_deleted_by_reconciliation()
 {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    env.sim
        .faults()
        .add(rule("submission/chunked-sample", Fault::ResetBeforeBody, 1));
    // The client tries 3 times; all fail, so the submission is left on the server.
    env.sim.faults().add(rule(
        "submission/delete",
        Fault::Error {
            http_status: 500,
            code: 6,
            message: "busy".into(),
        },
        3,
    ));
    let big = vec![b'B'; 21 * 1024 * 1024];
    let id = add_file(app, "big2.bin", &big).await;
    submit::run_once(app).await.unwrap();
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Submitting, "{i:?}");
    drive_until(app, Duration::from_secs(30), all_terminal).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
    assert_eq!(app.client.submission_list().await.unwrap().len(), 1);
    let attempts = db::items::attempts_of(&app.db, id).await.unwrap();
    assert_eq!(
        attempts[0].outcome,
        Some(jbxd::db::AttemptOutcome::Abandoned)
    );
}

#[tokio::test]
async fn case_12_an_interrupted_download_is_redone_after_restart_with_identical_bytes() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/twelve", None).await;
    until_downloading(app).await;
    // A crash mid-download: rows claimed (`downloading`), a temporary file left behind.
    let claimed = db::analyses::claim_reports(&app.db, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let dir = app.store.abs(&format!("reports/{}", claimed[0].webid));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".jbxd-0123456789abcdef.part"), b"half").unwrap();
    assert_eq!(download::run_once(app).await.unwrap(), StepOutcome::Idle);
    // Restart.
    assert_eq!(app.store.remove_temporaries().unwrap(), 1);
    let report = pipeline::recover(app).await.unwrap();
    assert_eq!(report.interrupted_downloads, 3);
    drive_to_end(app).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
    assert_reports_intact(app, id).await;
    let mut files = Vec::new();
    walk(&dir, &mut files);
    assert_eq!(files.len(), 3, "{files:?}");
}

#[tokio::test]
async fn case_12_a_truncated_download_is_retried_until_the_bytes_are_complete() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    env.sim.faults().add(rule(
        "analysis/download",
        Fault::TruncateDownload { bytes: 100 },
        2,
    ));
    let id = add_url(app, "https://example.com/truncated", None).await;
    drive_to_end(app).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
    let reports = reports_of(app, id).await;
    assert!(
        reports
            .iter()
            .all(|r| r.state == jbxd::db::ReportState::Stored),
        "{reports:#?}"
    );
    assert!(reports.iter().any(|r| r.attempts > 1), "{reports:#?}");
    assert_reports_intact(app, id).await;
}

#[tokio::test]
async fn case_13_a_report_renamed_but_not_recorded_is_replaced_by_one_verified_file() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/thirteen", None).await;
    until_downloading(app).await;
    let claimed = db::analyses::claim_reports(&app.db, 10).await.unwrap();
    // The file made it to its final name, the crash came before `stored`.
    let webid = &claimed[0].webid;
    let dir = app.store.abs(&format!("reports/{webid}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("html.html"), b"stale").unwrap();
    pipeline::recover(app).await.unwrap();
    drive_to_end(app).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
    assert_reports_intact(app, id).await;
    let mut files = Vec::new();
    walk(&dir, &mut files);
    assert_eq!(files.len(), 3, "one file per type: {files:?}");
}

/// Runs everything but the download worker until every item waits for its reports.
async fn until_downloading(app: &App) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        submit::run_once(app).await.unwrap();
        reconcile::run_once(app).await.unwrap();
        poll::run_once(app).await.unwrap();
        let items = db::items::list(&app.db, 100).await.unwrap();
        if items.iter().all(|i| i.state == ItemState::Downloading) {
            return;
        }
        assert!(Instant::now() < deadline, "{items:#?}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

// ---- D: network and HTTP ------------------------------------------------------------------

#[tokio::test]
async fn case_59_a_submission_whose_reply_never_comes_is_reconciled_not_resent() {
    let env = TestEnv::start(SimConfig::default(), |c| c.api.request_timeout_secs = 1).await;
    let app = &env.app;
    env.sim
        .faults()
        .add(rule("submission/new", Fault::Latency { ms: 2500 }, 1));
    let id = add_url(app, "https://example.com/slow", None).await;
    submit::run_once(app).await.unwrap();
    assert_eq!(item(app, id).await.state, ItemState::Submitting);
    drive_to_end(app).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
    assert_eq!(env.sim.accepted_submissions().len(), 1);
    assert_eq!(requests_to(&env, "submission/new"), 1);
}

#[tokio::test]
async fn case_60_a_reset_after_the_body_is_reconciled_with_exactly_one_submission() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    env.sim
        .faults()
        .add(rule("submission/new", Fault::ResetAfterBody, 1));
    let id = add_file(app, "sixty.doc", b"harmless document").await;
    drive_to_end(app).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
    assert_eq!(env.sim.accepted_submissions().len(), 1);
    assert_eq!(requests_to(&env, "submission/new"), 1);
    assert!(
        requests_to(&env, "analysis/search") >= 2,
        "looked up by key"
    );
}

#[tokio::test]
async fn case_61_a_reset_before_the_body_ends_with_exactly_one_submission() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    env.sim
        .faults()
        .add(rule("submission/new", Fault::ResetBeforeBody, 1));
    let id = add_url(app, "https://example.com/sixty-one", None).await;
    drive_to_end(app).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
    assert_eq!(env.sim.accepted_submissions().len(), 1);
}

#[tokio::test]
async fn case_62_a_rate_limited_submission_waits_for_retry_after_and_is_not_failed() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    // More 429s than the client's own attempts: the item itself has to wait.
    env.sim.faults().add(rule(
        "submission/new",
        Fault::RateLimit {
            retry_after: Some("1".into()),
        },
        3,
    ));
    let id = add_url(app, "https://example.com/limited", None).await;
    let started = Instant::now();
    submit::run_once(app).await.unwrap();
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Queued, "{i:?}");
    assert_eq!(i.attempts, 1);
    assert!(
        i.next_attempt_at >= db::now_ms() + 500,
        "waits for Retry-After"
    );
    drive_to_end(app).await;
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(item(app, id).await.state, ItemState::Done);
    assert_eq!(env.sim.accepted_submissions().len(), 1);
}

#[tokio::test]
async fn case_64_a_server_error_storm_fails_no_item_and_creates_no_duplicate() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let faults = env.sim.faults();
    for status in [500, 502] {
        faults.add(rule(
            "submission/new",
            Fault::Error {
                http_status: status,
                code: 6,
                message: "Internal Server Error".into(),
            },
            2,
        ));
    }
    faults.add(rule(
        "submission/new",
        Fault::NonJson { http_status: 504 },
        1,
    ));
    faults.add(rule(
        "submission/info",
        Fault::NonJson { http_status: 503 },
        4,
    ));
    faults.add(rule(
        "analysis/download",
        Fault::NonJson { http_status: 502 },
        4,
    ));
    faults.add(rule(
        "analysis/search",
        Fault::NonJson { http_status: 500 },
        2,
    ));
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(add_url(app, &format!("https://example.com/storm/{n}"), None).await);
    }
    let items = drive_to_end(app).await;
    assert!(
        items.iter().all(|i| i.state == ItemState::Done),
        "{items:#?}"
    );
    assert_eq!(env.sim.accepted_submissions().len(), 3, "0 duplicates");
    // Every submission that got a server error was looked up before the next one.
    let log = env.sim.request_log();
    let failed_submits = log
        .iter()
        .filter(|r| r.endpoint == "submission/new" && r.http_status != Some(200))
        .count();
    assert_eq!(failed_submits, 5);
    assert!(requests_to(&env, "analysis/search") >= failed_submits);
    for id in ids {
        assert_reports_intact(app, id).await;
    }
}

#[tokio::test]
async fn case_65_maintenance_pauses_everything_and_consumes_no_attempt() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    env.sim.set_maintenance(true);
    let url = add_url(app, "https://example.com/maint", None).await;
    let file = add_file(app, "maint.exe", MALICIOUS).await;
    submit::run_once(app).await.unwrap();
    let pauses = app.pauses().await.unwrap();
    assert_eq!(pauses.len(), 1);
    assert_eq!(pauses[0].reason, PauseReason::Maintenance);
    for id in [url, file] {
        let i = item(app, id).await;
        assert_eq!((i.state, i.attempts), (ItemState::Queued, 0), "{i:?}");
    }
    assert_eq!(submit::run_once(app).await.unwrap(), StepOutcome::Paused);
    assert_eq!(poll::run_once(app).await.unwrap(), StepOutcome::Paused);
    assert_eq!(download::run_once(app).await.unwrap(), StepOutcome::Paused);
    assert_eq!(reconcile::run_once(app).await.unwrap(), StepOutcome::Paused);
    // The server returns; the health check lifts the pause.
    env.sim.set_maintenance(false);
    app.resume(PauseReason::Maintenance).await.unwrap();
    let items = drive_to_end(app).await;
    assert!(
        items
            .iter()
            .all(|i| i.state == ItemState::Done && i.attempts == 0)
    );
    assert_eq!(env.sim.accepted_submissions().len(), 2);
}

#[tokio::test]
async fn case_66_an_invalid_key_halts_api_traffic_and_leaves_items_untouched() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/key", None).await;
    env.sim.faults().add(FaultRule::always(
        None,
        Fault::Error {
            http_status: 403,
            code: 4,
            message: "Invalid API key.".into(),
        },
    ));
    submit::run_once(app).await.unwrap();
    let pauses = app.pauses().await.unwrap();
    assert_eq!(pauses[0].reason, PauseReason::InvalidApiKey);
    assert!(!pauses[0].detail.contains(jbxd::testing::TEST_API_KEY));
    let i = item(app, id).await;
    assert_eq!((i.state, i.attempts), (ItemState::Queued, 0));
    let before = env.sim.request_log().len();
    for _ in 0..3 {
        assert_eq!(submit::run_once(app).await.unwrap(), StepOutcome::Paused);
        assert_eq!(poll::run_once(app).await.unwrap(), StepOutcome::Paused);
    }
    assert_eq!(
        env.sim.request_log().len(),
        before,
        "no API traffic while halted"
    );
    env.sim.faults().clear();
    app.resume(PauseReason::InvalidApiKey).await.unwrap();
    drive_to_end(app).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
}

#[tokio::test]
async fn case_67_an_invalid_parameter_rejects_that_item_with_the_servers_message_only() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let bad = add_url(
        app,
        "https://example.com/bad",
        Some(r#"{"systems": ["no-such-system"]}"#),
    )
    .await;
    let good = add_url(app, "https://example.com/good", None).await;
    drive_to_end(app).await;
    let b = item(app, bad).await;
    assert_eq!(b.state, ItemState::Rejected, "{b:?}");
    let reason = b.error.unwrap();
    assert!(!reason.is_empty() && !reason.contains("jbxd:"), "{reason}");
    assert_eq!(b.attempts, 0, "never retried");
    assert_eq!(item(app, good).await.state, ItemState::Done);
    assert_eq!(env.sim.accepted_submissions().len(), 1);
}

#[tokio::test]
async fn case_68_a_permission_error_rejects_the_url_with_the_message_and_files_continue() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    env.sim.faults().add(rule(
        "submission/new",
        Fault::Error {
            http_status: 403,
            code: 7,
            message: "URL analysis is not allowed for this account.".into(),
        },
        1,
    ));
    let url = add_url(app, "https://example.com/not-allowed", None).await;
    drive_until(app, Duration::from_secs(10), all_terminal).await;
    let file = add_file(app, "ok.exe", b"plain file").await;
    drive_to_end(app).await;
    let u = item(app, url).await;
    assert_eq!(u.state, ItemState::Rejected);
    assert_eq!(
        u.error.as_deref(),
        Some("URL analysis is not allowed for this account.")
    );
    assert_eq!(item(app, file).await.state, ItemState::Done);
}

#[tokio::test]
async fn case_69_quota_exhausted_pauses_submissions_while_polls_and_downloads_continue() {
    let env = start(SimConfig {
        daily_quota: Some(1),
        analysis_seconds: 1,
        ..SimConfig::default()
    })
    .await;
    let app = &env.app;
    let first = add_url(app, "https://example.com/first", None).await;
    submit::run_once(app).await.unwrap();
    assert_eq!(item(app, first).await.state, ItemState::Submitted);
    let second = add_url(app, "https://example.com/second", None).await;
    submit::run_once(app).await.unwrap();
    let pauses = app.pauses().await.unwrap();
    assert_eq!(pauses[0].reason, PauseReason::QuotaExceeded, "{pauses:?}");
    let s = item(app, second).await;
    assert_eq!((s.state, s.attempts), (ItemState::Queued, 0), "{s:?}");
    // The first item still finishes.
    drive_until(app, Duration::from_secs(20), |items| {
        items
            .iter()
            .any(|i| i.id == first && i.state == ItemState::Done)
    })
    .await;
    let s = item(app, second).await;
    assert_eq!((s.state, s.attempts), (ItemState::Queued, 0));
    assert_eq!(env.sim.accepted_submissions().len(), 1);
}

#[tokio::test]
async fn case_71_a_report_over_the_size_cap_fails_alone_and_the_item_completes() {
    let env = TestEnv::start(
        SimConfig {
            html_padding_bytes: 256 * 1024,
            ..SimConfig::default()
        },
        |c| c.reports.max_size = 128 * 1024,
    )
    .await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/huge", None).await;
    drive_to_end(app).await;
    assert_eq!(item(app, id).await.state, ItemState::Done);
    let reports = reports_of(app, id).await;
    let html = reports.iter().find(|r| r.report_type == "html").unwrap();
    assert_eq!(html.state, jbxd::db::ReportState::Failed);
    assert_eq!(html.error.as_deref(), Some("too large (limit 131072)"));
    assert!(
        reports
            .iter()
            .filter(|r| r.report_type != "html")
            .all(|r| r.state == jbxd::db::ReportState::Stored)
    );
    let mut files = Vec::new();
    walk(
        &app.store.abs(&format!("reports/{}", html.webid)),
        &mut files,
    );
    assert_eq!(files.len(), 2, "no partial html left: {files:?}");
}

#[tokio::test]
async fn case_75_hostile_content_disposition_names_never_become_paths() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let hostile = ["../../../../etc/cron.d/x", "/etc/passwd", ".bashrc", "a\0b"];
    for name in hostile {
        env.sim.faults().add(rule(
            "analysis/download",
            Fault::HostileFilename {
                filename: name.into(),
            },
            1,
        ));
    }
    let id = add_url(app, "https://example.com/hostile", None).await;
    add_url(app, "https://example.com/hostile2", None).await;
    let items = drive_to_end(app).await;
    assert!(items.iter().all(|i| i.state == ItemState::Done));
    let mut servers_names = Vec::new();
    for i in &items {
        for r in reports_of(app, i.id).await {
            let expected = format!(
                "reports/{}/{}.{}",
                r.webid,
                r.report_type,
                jbxd::api::ReportType::extension(&r.report_type)
            );
            assert_eq!(r.path.as_deref(), Some(expected.as_str()));
            servers_names.extend(r.server_filename);
        }
    }
    assert!(
        servers_names.iter().any(|n| n.contains("etc/cron.d")),
        "{servers_names:?}"
    );
    assert!(servers_names.iter().all(|n| !n.contains('\0')));
    let root = env.dir.path();
    let mut files = Vec::new();
    walk(root, &mut files);
    for f in &files {
        assert!(
            f.starts_with(&app.config.data_dir) || f.starts_with(&app.config.drop_dir),
            "{f:?} outside the roots"
        );
        assert!(
            !f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".bash")
        );
    }
    assert_reports_intact(app, id).await;
}

#[tokio::test]
async fn case_80_an_analysis_ending_in_error_is_recorded_and_not_resubmitted() {
    let env = start(SimConfig::default()).await;
    let app = &env.app;
    let id = add_url(app, "https://unreachable.example/", None).await;
    drive_to_end(app).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Done, "{i:?}");
    assert!(
        i.note.as_deref().unwrap().contains("ended in error"),
        "{i:?}"
    );
    assert_eq!(env.sim.accepted_submissions().len(), 1);
    assert_eq!(db::analyses::for_item(&app.db, id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn case_81_an_analysis_that_never_finishes_fails_as_timed_out() {
    let env = TestEnv::start(
        SimConfig {
            analysis_seconds: 3600,
            ..SimConfig::default()
        },
        |c| c.poll.max_analysis_age_secs = 1,
    )
    .await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/stuck", None).await;
    drive_to_end(app).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Failed);
    assert!(
        i.error
            .as_deref()
            .unwrap()
            .starts_with("timed out: analysis not finished after"),
        "{i:?}"
    );
    assert!(i.poll_count >= 1);
    assert_eq!(env.sim.accepted_submissions().len(), 1);
}

#[tokio::test]
async fn case_82_a_submission_deleted_on_the_server_fails_with_a_clear_reason_and_no_resubmit() {
    let env = start(SimConfig {
        analysis_seconds: 3600,
        ..SimConfig::default()
    })
    .await;
    let app = &env.app;
    let id = add_url(app, "https://example.com/deleted", None).await;
    submit::run_once(app).await.unwrap();
    let i = item(app, id).await;
    app.client
        .submission_delete(i.submission_id.as_deref().unwrap())
        .await
        .unwrap();
    drive_to_end(app).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Failed);
    let reason = i.error.unwrap();
    assert!(reason.contains("no longer known to the server"), "{reason}");
    assert!(reason.contains("not resubmitted"), "{reason}");
    assert_eq!(requests_to(&env, "submission/new"), 1);
}

#[tokio::test]
async fn attempts_run_out_into_failed_with_the_last_error() {
    let env = TestEnv::start(SimConfig::default(), |c| c.pipeline.max_attempts = 2).await;
    let app = &env.app;
    env.sim.faults().add(FaultRule::always(
        Some("submission/new"),
        Fault::Error {
            http_status: 400,
            code: 1,
            message: "Something odd happened.".into(),
        },
    ));
    let id = add_url(app, "https://example.com/odd", None).await;
    drive_to_end(app).await;
    let i = item(app, id).await;
    assert_eq!(i.state, ItemState::Failed);
    let error = i.error.unwrap();
    assert!(error.starts_with("gave up after 2 attempts"), "{error}");
    assert!(error.contains("Something odd happened."), "{error}");
}

#[tokio::test]
async fn the_workers_loop_until_cancelled_and_finish_the_work() {
    let env = start(SimConfig::default()).await;
    let app = env.app.clone();
    let id = add_url(&app, "https://example.com/daemon", None).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let workers = tokio::spawn(pipeline::run(app.clone(), cancel.clone()));
    app.wake_all();
    let done = jbxd::testing::wait_until(Duration::from_secs(20), || async {
        item(&app, id).await.state == ItemState::Done
    })
    .await;
    assert!(done, "{:?}", item(&app, id).await);
    let beats: Vec<_> = app
        .heartbeats
        .snapshot()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(beats, ["download", "poll", "reconcile", "submit"]);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), workers)
        .await
        .expect("workers stop when cancelled")
        .unwrap()
        .unwrap();
}
