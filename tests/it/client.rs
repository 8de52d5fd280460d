//! The API client against the in-process simulator: wire behaviour, error classes, retries and
//! the no-blind-retry rule for submissions.

use std::path::Path;
use std::time::{Duration, Instant};

use jbxd::api::{
    ApiError, ApiErrorKind, ApiKey, ClientSettings, Endpoint, JoeClient, RetryPolicy, SampleUpload,
    SearchQuery, SubmissionParams, SubmitError,
};
use jbxd::simulator::{Fault, FaultRule, SimConfig, SimMode, Simulator};

const SENTINEL_KEY: &str = "JBXD-SENTINEL-7f3c-client-tests";

async fn simulator(config: SimConfig) -> Simulator {
    Simulator::start(SimConfig {
        api_key: SENTINEL_KEY.into(),
        ..config
    })
    .await
    .expect("simulator starts")
}

fn settings(sim: &Simulator) -> ClientSettings {
    let mut s = ClientSettings::new(sim.api_url(), ApiKey::new(SENTINEL_KEY).unwrap());
    s.accept_tac = true;
    s.retry = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
    };
    s
}

fn client(sim: &Simulator) -> JoeClient {
    JoeClient::new(settings(sim)).unwrap()
}

fn rule(endpoint: &str, fault: Fault, times: u32) -> FaultRule {
    FaultRule {
        endpoint: Some(endpoint.into()),
        fault,
        times: Some(times),
        skip: 0,
    }
}

fn requests_to(sim: &Simulator, endpoint: &str) -> usize {
    sim.request_log()
        .iter()
        .filter(|r| r.endpoint == endpoint)
        .count()
}

fn assert_no_key(error: &ApiError) {
    let text = format!("{error} {error:?}");
    assert!(!text.contains(SENTINEL_KEY), "the key leaked: {text}");
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn finished(client: &JoeClient, sim: &Simulator, id: &str) -> jbxd::api::types::Submission {
    for _ in 0..200 {
        let info = client.submission_info(id).await.unwrap();
        if info.is_finished() {
            return info;
        }
        sim.advance_clock(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("submission {id} never finished");
}

#[tokio::test]
async fn a_large_file_is_uploaded_in_ten_mebibyte_chunks_and_hashes_match() {
    let sim = simulator(SimConfig::default()).await;
    let client = client(&sim);
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..25 * 1024 * 1024 + 123)
        .map(|i| (i % 251) as u8)
        .collect();
    let path = write_file(dir.path(), "big.bin", &content);

    let id = client
        .submit_sample(&path, &SubmissionParams::new(), &SampleUpload::default())
        .await
        .unwrap();

    assert_eq!(requests_to(&sim, "submission/chunked-sample"), 3);
    let info = finished(&client, &sim, &id).await;
    let analysis = &info.analyses.unwrap()[0];
    let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&content));
    assert_eq!(analysis.sha256.as_deref(), Some(expected.as_str()));
    assert_eq!(analysis.filename.as_deref(), Some("big.bin"));
}

/// An on-premise server without chunked upload, and a client for it.
async fn server_without_chunks() -> (Simulator, JoeClient) {
    let sim = simulator(SimConfig {
        chunked_upload: false,
        mode: SimMode::OnPrem,
        ..SimConfig::default()
    })
    .await;
    let mut s = settings(&sim);
    s.server_url = sim.onprem_api_url();
    let client = JoeClient::new(s).unwrap();
    (sim, client)
}

#[tokio::test]
async fn a_server_without_chunked_upload_gets_one_plain_multipart_upload() {
    let (sim, client) = server_without_chunks().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "eleven.bin", &vec![7u8; 11 * 1024 * 1024]);

    let id = client
        .submit_sample(&path, &SubmissionParams::new(), &SampleUpload::default())
        .await
        .unwrap();

    assert_eq!(sim.accepted_submissions(), vec![id]);
    assert_eq!(requests_to(&sim, "submission/chunked-sample"), 0);
    assert_eq!(
        requests_to(&sim, "submission/new"),
        2,
        "refused chunked, then plain"
    );
}

/// 21 MiB: three chunks at the default threshold.
fn big_file(dir: &Path) -> std::path::PathBuf {
    write_file(dir, "big.bin", &vec![9u8; 21 * 1024 * 1024])
}

#[tokio::test]
async fn the_record_hook_gets_the_chunked_submission_id_before_the_first_chunk_is_sent() {
    let sim = simulator(SimConfig::default()).await;
    let client = client(&sim);
    let dir = tempfile::tempdir().unwrap();
    let path = big_file(dir.path());
    let seen = std::sync::Mutex::new(None);

    let id = client
        .submit_sample_recorded(
            &path,
            &SubmissionParams::new(),
            &SampleUpload::default(),
            |id| async {
                let chunks_so_far = requests_to(&sim, Endpoint::SubmissionChunkedSample.as_str());
                *seen.lock().unwrap() = Some((id, chunks_so_far));
                Ok::<(), std::io::Error>(())
            },
        )
        .await
        .unwrap();

    assert_eq!(seen.into_inner().unwrap(), Some((id.clone(), 0)));
    assert_eq!(
        requests_to(&sim, Endpoint::SubmissionChunkedSample.as_str()),
        3
    );
    assert_eq!(sim.accepted_submissions(), vec![id]);
}

#[tokio::test]
async fn a_record_hook_that_fails_stops_the_upload_and_the_empty_submission_is_deleted() {
    let sim = simulator(SimConfig::default()).await;
    let client = client(&sim);
    let dir = tempfile::tempdir().unwrap();
    let path = big_file(dir.path());

    let error = client
        .submit_sample_recorded(
            &path,
            &SubmissionParams::new(),
            &SampleUpload::default(),
            |_| async { Err(std::io::Error::other("database is locked")) },
        )
        .await
        .unwrap_err();

    let SubmitError::NotRecorded {
        submission_id,
        deleted,
        source,
    } = error
    else {
        panic!("expected NotRecorded, got {error:?}");
    };
    assert!(deleted, "the empty submission is deleted");
    assert_eq!(source.to_string(), "database is locked");
    assert_eq!(sim.accepted_submissions(), vec![submission_id]);
    assert!(sim.live_submissions().is_empty());
    assert_eq!(
        requests_to(&sim, Endpoint::SubmissionChunkedSample.as_str()),
        0
    );
}

#[tokio::test]
async fn a_failed_chunk_deletes_the_incomplete_submission_and_names_the_chunk() {
    let sim = simulator(SimConfig::default()).await;
    sim.faults().add(FaultRule {
        skip: 1,
        ..rule(
            Endpoint::SubmissionChunkedSample.as_str(),
            Fault::Error {
                http_status: 500,
                code: 6,
                message: "chunk store failed".into(),
            },
            1,
        )
    });
    let client = client(&sim);
    let dir = tempfile::tempdir().unwrap();
    let path = big_file(dir.path());

    let error = client
        .submit_sample(&path, &SubmissionParams::new(), &SampleUpload::default())
        .await
        .unwrap_err();

    assert!(!error.is_chunked_unsupported());
    let ApiError::ChunkFailed {
        submission_id,
        chunk,
        deleted,
        source,
    } = error
    else {
        panic!("expected ChunkFailed, got {error:?}");
    };
    assert_eq!((chunk, deleted), (2, true));
    assert!(
        matches!(*source, ApiError::UnknownOutcome { .. }),
        "{source:?}"
    );
    assert_eq!(sim.accepted_submissions(), vec![submission_id]);
    assert!(sim.live_submissions().is_empty());
}

#[tokio::test]
async fn plain_uploads_and_the_fallback_without_chunks_never_call_the_record_hook() {
    let dir = tempfile::tempdir().unwrap();
    let big = big_file(dir.path());
    let small = write_file(dir.path(), "small.bin", b"MZ small");
    let cloud = simulator(SimConfig::default()).await;
    let (onprem, onprem_client) = server_without_chunks().await;
    let cases = [
        (client(&cloud), &small, &cloud),
        (onprem_client, &big, &onprem),
    ];
    for (client, path, sim) in cases {
        let id = client
            .submit_sample_recorded(
                path,
                &SubmissionParams::new(),
                &SampleUpload::default(),
                |id| async move { panic!("the hook was called for {id}") },
            )
            .await
            .map_err(|e: SubmitError<std::convert::Infallible>| e.to_string())
            .unwrap();
        assert_eq!(sim.accepted_submissions(), vec![id]);
    }
}

#[tokio::test]
async fn a_reset_after_the_submission_was_received_is_an_unknown_outcome_never_retried() {
    let sim = simulator(SimConfig::default()).await;
    sim.faults()
        .add(rule("submission/new", Fault::ResetAfterBody, 1));
    let client = client(&sim);

    let err = client
        .submit_url("https://example.com/", &SubmissionParams::new())
        .await
        .unwrap_err();

    assert!(matches!(err, ApiError::UnknownOutcome { .. }), "{err:?}");
    assert_no_key(&err);
    assert_eq!(requests_to(&sim, "submission/new"), 1, "no blind retry");
    assert_eq!(
        sim.accepted_submissions().len(),
        1,
        "the server did create it"
    );
}

#[tokio::test]
async fn a_submission_that_times_out_is_an_unknown_outcome_never_retried() {
    let sim = simulator(SimConfig::default()).await;
    sim.faults()
        .add(rule("submission/new", Fault::Latency { ms: 3000 }, 1));
    let mut s = settings(&sim);
    s.request_timeout = Duration::from_millis(500);
    let client = JoeClient::new(s).unwrap();

    let err = client
        .submit_url("https://example.com/", &SubmissionParams::new())
        .await
        .unwrap_err();

    assert!(matches!(err, ApiError::UnknownOutcome { .. }), "{err:?}");
    assert_eq!(requests_to(&sim, "submission/new"), 1, "no blind retry");
}

#[tokio::test]
async fn a_server_error_on_submission_is_an_unknown_outcome_never_retried() {
    let sim = simulator(SimConfig::default()).await;
    sim.faults().add(rule(
        "submission/new",
        Fault::Error {
            http_status: 500,
            code: 6,
            message: "Internal server error.".into(),
        },
        1,
    ));
    let err = client(&sim)
        .submit_url("https://example.com/", &SubmissionParams::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::UnknownOutcome {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(requests_to(&sim, "submission/new"), 1);
}

#[tokio::test]
async fn a_rate_limited_submission_is_retried_after_retry_after_and_created_once() {
    let sim = simulator(SimConfig::default()).await;
    sim.faults().add(rule(
        "submission/new",
        Fault::RateLimit {
            retry_after: Some("1".into()),
        },
        1,
    ));
    let started = Instant::now();
    let id = client(&sim)
        .submit_url("https://example.com/", &SubmissionParams::new())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After honoured"
    );
    assert_eq!(sim.accepted_submissions(), vec![id]);
    assert_eq!(requests_to(&sim, "submission/new"), 2);
}

#[tokio::test]
async fn read_only_calls_retry_rate_limits_server_errors_resets_and_html_pages() {
    let sim = simulator(SimConfig::default()).await;
    let client = client(&sim);
    let id = client
        .submit_url("https://example.com/", &SubmissionParams::new())
        .await
        .unwrap();
    for fault in [
        Fault::RateLimit { retry_after: None },
        Fault::Error {
            http_status: 502,
            code: 6,
            message: "Bad gateway.".into(),
        },
        Fault::NonJson { http_status: 502 },
        Fault::ResetBeforeBody,
    ] {
        sim.faults().clear();
        sim.faults().add(rule("submission/info", fault.clone(), 2));
        let before = requests_to(&sim, "submission/info");
        let info = client.submission_info(&id).await;
        assert!(info.is_ok(), "{fault:?}: {info:?}");
        assert_eq!(
            requests_to(&sim, "submission/info") - before,
            3,
            "{fault:?}"
        );
    }
}

#[tokio::test]
async fn retries_stop_after_the_configured_attempts_with_the_last_error() {
    let sim = simulator(SimConfig::default()).await;
    sim.faults()
        .add(rule("server/info", Fault::NonJson { http_status: 503 }, 10));
    let err = client(&sim).server_info().await.unwrap_err();
    assert!(
        matches!(err, ApiError::UnexpectedFormat { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(requests_to(&sim, "server/info"), 4);
}

#[tokio::test]
async fn joe_error_codes_map_to_their_kinds_with_status_and_message() {
    let sim = simulator(SimConfig::default()).await;
    let client = client(&sim);
    let err = client.analysis_info("999999999").await.unwrap_err();
    assert_eq!(err.kind(), Some(ApiErrorKind::InvalidParameter));
    assert!(err.status().is_some());

    let mut wrong = settings(&sim);
    wrong.api_key = ApiKey::new("not-the-key").unwrap();
    let err = JoeClient::new(wrong)
        .unwrap()
        .server_info()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(ApiErrorKind::InvalidApiKey));
    assert_eq!(err.status(), Some(403));

    sim.set_maintenance(true);
    assert!(!client.server_online().await.unwrap());
    let err = client.server_info().await.unwrap_err();
    assert_eq!(err.kind(), Some(ApiErrorKind::ServerOffline));
    sim.set_maintenance(false);

    let err = client.raw_call("nope/nothing", vec![]).await.unwrap_err();
    assert_eq!(err.kind(), Some(ApiErrorKind::UnknownEndpoint));
}

#[tokio::test]
async fn the_cloud_refuses_submissions_without_accepted_terms() {
    let sim = simulator(SimConfig::default()).await;
    let mut s = settings(&sim);
    s.accept_tac = false;
    let err = JoeClient::new(s)
        .unwrap()
        .submit_url("https://example.com/", &SubmissionParams::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(ApiErrorKind::TermsNotAccepted));
    assert!(sim.accepted_submissions().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_such() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut s = ClientSettings::new(
        format!("http://127.0.0.1:{port}"),
        ApiKey::new(SENTINEL_KEY).unwrap(),
    );
    s.retry = RetryPolicy::none();
    let err = JoeClient::new(s)
        .unwrap()
        .server_online()
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Unreachable { .. }), "{err:?}");
    assert_no_key(&err);
}

#[tokio::test]
async fn lists_follow_pagination_to_the_end() {
    let sim = simulator(SimConfig {
        page_size: 2,
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            client
                .submit_url(
                    &format!("https://example.com/{i}"),
                    &SubmissionParams::new(),
                )
                .await
                .unwrap(),
        );
    }
    let listed: Vec<String> = client
        .submission_list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.submission_id)
        .collect();
    for id in &ids {
        assert!(listed.contains(id), "{id} missing from {listed:?}");
    }
    for id in &ids {
        finished(&client, &sim, id).await;
    }
    assert_eq!(client.analysis_list().await.unwrap().len(), 5);
}

#[tokio::test]
async fn case_115_a_lagging_submission_is_found_by_its_key_through_the_list_and_only_the_whole_key_matches()
 {
    let sim = simulator(SimConfig {
        search_lag: Duration::from_secs(600),
        page_size: 2,
        ..SimConfig::default()
    })
    .await;
    let client = client(&sim);
    let mut ids = Vec::new();
    for (n, comments) in ["jbxd:k-1", "jbxd:k-10", "jbxd:other-1"].iter().enumerate() {
        let mut params = SubmissionParams::new();
        params.set("comments", comments).unwrap();
        ids.push(
            client
                .submit_url(&format!("https://example.com/key-{n}"), &params)
                .await
                .unwrap(),
        );
    }
    let hour = chrono::Duration::hours(1);
    let listed = client
        .list_submissions_since(chrono::Utc::now() - hour)
        .await
        .unwrap();
    assert_eq!(listed.len(), 3, "all pages: {listed:?}");
    // A window after every submission: the first page already lies before it, paging stops.
    let before = sim.request_log().len();
    let none = client
        .list_submissions_since(chrono::Utc::now() + hour)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(sim.request_log().len(), before + 1, "one page only");

    let markers = vec!["jbxd:k-1".to_owned()];
    let findings = client.find_by_markers(&markers, &listed).await.unwrap();
    let found = findings.for_marker("jbxd:k-1");
    assert_eq!(found.len(), 1, "k-10 is not k-1: {found:?}");
    assert_eq!(found[0].submission_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(found[0].analyses.len(), 1);
    // Search alone finds nothing while it lags; once it caught up it finds the analysis, but
    // without naming the submission.
    let by_search = client.find_by_markers(&markers, &[]).await.unwrap();
    assert!(by_search.for_marker("jbxd:k-1").is_empty());
    sim.advance_clock(Duration::from_secs(601));
    let by_search = client.find_by_markers(&markers, &[]).await.unwrap();
    let found = by_search.for_marker("jbxd:k-1");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].submission_id, None);
    // Deleting twice is fine: the second time it is already gone.
    client.delete_submission_if_present(&ids[0]).await.unwrap();
    client.delete_submission_if_present(&ids[0]).await.unwrap();
    assert_eq!(sim.live_submissions().len(), 2);
}

#[tokio::test]
async fn search_finds_by_comment_and_by_structured_filters() {
    let sim = simulator(SimConfig::default()).await;
    let client = client(&sim);
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "evil.doc", b"JBXD-MALICIOUS payload");
    let mut params = SubmissionParams::new();
    params.set("comments", "jbxd:item-42").unwrap();
    let id = client
        .submit_sample(&path, &params, &SampleUpload::default())
        .await
        .unwrap();
    let info = finished(&client, &sim, &id).await;
    let webid = info.most_relevant_analysis.unwrap().webid;

    let hits = client
        .analysis_search(&SearchQuery::Text("jbxd:item-42".into()))
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| &h.webid).collect::<Vec<_>>(),
        vec![&webid]
    );
    let hits = client
        .analysis_search(&SearchQuery::Filters(vec![(
            "detection".into(),
            "malicious".into(),
        )]))
        .await
        .unwrap();
    assert!(hits.iter().any(|h| h.webid == webid));
}

#[tokio::test]
async fn downloads_are_complete_or_reported_truncated_and_hostile_names_are_only_text() {
    let sim = simulator(SimConfig::default()).await;
    let client = client(&sim);
    let id = client
        .submit_url("https://example.com/", &SubmissionParams::new())
        .await
        .unwrap();
    let webid = finished(&client, &sim, &id)
        .await
        .most_relevant_analysis
        .unwrap()
        .webid;

    let download = client
        .analysis_download(&webid, "html", None)
        .await
        .unwrap();
    let name = download.server_filename().unwrap().to_owned();
    assert!(name.ends_with(".html"), "{name}");
    let mut full = Vec::new();
    let summary = download.write_to(&mut full, |_| {}).await.unwrap();
    assert_eq!(summary.bytes, full.len() as u64);

    sim.faults().add(rule(
        "analysis/download",
        Fault::TruncateDownload { bytes: 10 },
        1,
    ));
    let download = client
        .analysis_download(&webid, "html", None)
        .await
        .unwrap();
    let err = download
        .write_to(&mut Vec::new(), |_| {})
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");

    sim.faults().add(rule(
        "analysis/download",
        Fault::HostileFilename {
            filename: "../../../../etc/cron.d/x".into(),
        },
        1,
    ));
    let download = client
        .analysis_download(&webid, "html", None)
        .await
        .unwrap();
    assert_eq!(download.server_filename(), Some("../../../../etc/cron.d/x"));
    assert_eq!(
        jbxd::storage::safe_file_name(download.server_filename().unwrap()).as_deref(),
        Some("x")
    );
}

#[tokio::test]
async fn a_download_over_the_size_cap_is_refused() {
    let sim = simulator(SimConfig {
        html_padding_bytes: 1024 * 1024,
        ..SimConfig::default()
    })
    .await;
    let mut s = settings(&sim);
    s.max_download_bytes = Some(64 * 1024);
    let client = JoeClient::new(s).unwrap();
    let id = client
        .submit_url("https://example.com/", &SubmissionParams::new())
        .await
        .unwrap();
    let webid = finished(&client, &sim, &id)
        .await
        .most_relevant_analysis
        .unwrap()
        .webid;
    let err = client
        .analysis_download(&webid, "html", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::TooLarge { limit: 65536 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_wire_form_carries_the_key_tac_and_repeated_systems() {
    let sim = simulator(SimConfig::default()).await;
    let client = client(&sim);
    let mut params = SubmissionParams::new();
    params.systems = vec!["w10x64_office".into(), "w7x64".into()];
    params.set("internet-access", "0").unwrap();
    let id = client
        .submit_url("https://example.com/", &params)
        .await
        .unwrap();
    let info = finished(&client, &sim, &id).await;
    let runs = info.analyses.unwrap()[0].runs.clone().unwrap();
    let systems: Vec<_> = runs.iter().filter_map(|r| r.system.clone()).collect();
    assert_eq!(systems, vec!["w10x64_office", "w7x64"]);
}
