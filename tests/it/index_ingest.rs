//! The indicator index (issue 10 §2): migration 0003's tables and view, indexing one analysis
//! in one transaction, re-indexing, broken reports, the worker beside the pipeline, lookups.
//!
//! The report parser is replaced here by a small line format read by [`fake_extract`], so
//! that these tests say exactly which facts a report yields (and which report breaks); the
//! end-to-end tests with real-shaped reports from the simulator live in `index_e2e`.

use std::path::Path;
use std::time::Duration;

use jbxd::api::report::{RawIndicator, RawSignature, RawTechnique, RawYaraHit, ReportFacts};
use jbxd::app::StepOutcome;
use jbxd::db::indicators::{self, Replaced, SightingFilter};
use jbxd::db::{self, Db, ItemState};
use jbxd::index::{self, index_analysis};
use jbxd::ioc::{Kind, lookup_forms};
use jbxd::simulator::SimConfig;
use jbxd::testing::{TestEnv, all_terminal, drive_until};

/// A report of this test's own format, one fact per line:
/// `ioc KIND VALUE [mal|clean|-]`, `sig ID IMPACT DESCRIPTION...`, `ttp ID TACTIC`,
/// `yara RULE SCOPE`; a file saying `broken` cannot be read, one saying `panic` panics.
pub(crate) fn fake_extract(
    path: &Path,
    _type: &str,
    _password: Option<&[u8]>,
) -> Result<ReportFacts, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot open: {e}"))?;
    if text.trim() == "broken" {
        return Err("not a report: unexpected end of document\nat line 1".into());
    }
    if text.trim() == "panic" {
        panic!("parser bug");
    }
    let mut facts = ReportFacts::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ioc", kind, value, rest @ ..] => facts.indicators.push(RawIndicator {
                kind: Kind::parse(kind).unwrap(),
                value: (*value).to_owned(),
                malicious: match rest.first() {
                    Some(&"mal") => Some(true),
                    Some(&"clean") => Some(false),
                    _ => None,
                },
                private: None,
                section: "testinfo",
            }),
            ["sig", id, impact, description @ ..] => facts.signatures.push(RawSignature {
                id: Some((*id).to_owned()),
                description: description.join(" "),
                impact: impact.parse().ok(),
            }),
            ["ttp", id, tactic] => facts.techniques.push(RawTechnique {
                id: (*id).to_owned(),
                name: Some("Process Injection".into()),
                tactic: Some((*tactic).to_owned()),
            }),
            ["yara", rule, scope] => facts.yara.push(RawYaraHit {
                rule: (*rule).to_owned(),
                scope: (*scope).to_owned(),
            }),
            [] => {}
            other => return Err(format!("bad test line {other:?}")),
        }
    }
    Ok(facts)
}

pub(crate) const MALWARE: &str = "ioc domain Evil.Example.COM. mal
ioc ip 10.0.0.7
ioc ip ::ffff:203.0.113.9 mal
ioc url HTTP://Evil.Example.com:80/gate.php mal
ioc sha256 E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855 mal
ioc md5 not-a-hash
sig 1234 3 Injects into explorer.exe
ttp t1055.001 Defense-Evasion
yara Win_Trojan_Test sample";

struct Fixture {
    dir: tempfile::TempDir,
    db: Db,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).await.unwrap();
        Self { dir, db }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// An item, its analysis (with a verdict) and nothing else.
    async fn analysis(&self, webid: &str, item_name: Option<&str>) {
        let item_id: Option<i64> = match item_name {
            Some(name) => Some(
                sqlx::query_scalar(
                    "INSERT INTO items (kind, source, item_key, name, state)
                     VALUES ('url', 'url_queue', ?, ?, 'done') RETURNING id",
                )
                .bind(format!("key-{webid}"))
                .bind(name)
                .fetch_one(self.db.pool())
                .await
                .unwrap(),
            ),
            None => None,
        };
        sqlx::query(
            "INSERT INTO analyses (webid, item_id, detection, score, threatname)
             VALUES (?, ?, 'malicious', 88, 'TestRAT')",
        )
        .bind(webid)
        .bind(item_id)
        .execute(self.db.pool())
        .await
        .unwrap();
    }

    /// A stored report file with `content`, as the download worker leaves it (→ `pending`).
    async fn report(&self, webid: &str, report_type: &str, run: Option<i64>, content: &str) {
        let rel = format!("reports/{webid}/{report_type}-{run:?}.txt");
        let path = self.data_dir().join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO reports (webid, type, run, state) VALUES (?, ?, ?, 'downloading')
             RETURNING id",
        )
        .bind(webid)
        .bind(report_type)
        .bind(run)
        .fetch_one(self.db.pool())
        .await
        .unwrap();
        let sha = format!("{:x}", content.len());
        db::analyses::report_stored(&self.db, id, &rel, content.len() as i64, &sha, None)
            .await
            .unwrap();
    }

    async fn index(&self, webid: &str) -> index::Indexed {
        index_analysis(&self.db, self.data_dir(), webid, None, fake_extract)
            .await
            .unwrap()
    }

    async fn iocs(&self, webid: &str) -> Vec<(String, String, Option<bool>, Option<bool>)> {
        sqlx::query_as(
            "SELECT kind, value, malicious, private FROM iocs WHERE webid = ?
              ORDER BY kind, value",
        )
        .bind(webid)
        .fetch_all(self.db.pool())
        .await
        .unwrap()
    }

    async fn index_states(&self, webid: &str) -> Vec<(String, Option<String>, Option<String>)> {
        sqlx::query_as(
            "SELECT type, index_state, index_error FROM reports WHERE webid = ? ORDER BY type",
        )
        .bind(webid)
        .fetch_all(self.db.pool())
        .await
        .unwrap()
    }
}

fn value(
    kind: &str,
    v: &str,
    malicious: Option<bool>,
    private: Option<bool>,
) -> (String, String, Option<bool>, Option<bool>) {
    (kind.into(), v.into(), malicious, private)
}

#[tokio::test]
async fn a_stored_report_is_pending_and_indexing_writes_normal_forms_into_the_tables() {
    let f = Fixture::new().await;
    f.analysis("100", Some("https://evil.example/")).await;
    f.report("100", "jsonfixed", None, MALWARE).await;
    f.report("100", "html", None, "<html/>").await;
    assert_eq!(
        f.index_states("100").await,
        vec![
            ("html".into(), Some("pending".into()), None),
            ("jsonfixed".into(), Some("pending".into()), None),
        ]
    );
    assert_eq!(
        indicators::due_analyses(&f.db, 10).await.unwrap(),
        vec!["100"]
    );

    let indexed = f.index("100").await;
    assert_eq!(indexed.outcome, Replaced::Written);
    assert_eq!(indexed.used, vec!["jsonfixed"]);
    assert_eq!(indexed.skipped, 1, "the md5 that is no md5");
    assert_eq!(
        f.iocs("100").await,
        vec![
            value("domain", "evil.example.com", Some(true), None),
            value("ip", "10.0.0.7", None, Some(true)),
            value("ip", "203.0.113.9", Some(true), Some(false)),
            value(
                "sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                Some(true),
                None
            ),
            value("url", "http://evil.example.com/gate.php", Some(true), None),
        ]
    );
    let technique: (String, Option<String>) =
        sqlx::query_as("SELECT technique, tactic FROM attack_techniques WHERE webid = '100'")
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert_eq!(
        technique,
        ("T1055.001".into(), Some("Defense-Evasion".into()))
    );
    let sig: (Option<String>, String, Option<i64>) =
        sqlx::query_as("SELECT sig_id, description, impact FROM signatures WHERE webid = '100'")
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert_eq!(
        sig,
        (
            Some("1234".into()),
            "Injects into explorer.exe".into(),
            Some(3)
        )
    );
    let yara: i64 =
        sqlx::query_scalar("SELECT count(*) FROM yara_hits WHERE rule = 'Win_Trojan_Test'")
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert_eq!(yara, 1);
    assert_eq!(
        f.index_states("100").await,
        vec![
            ("html".into(), Some("not_indexable".into()), None),
            ("jsonfixed".into(), Some("indexed".into()), None),
        ]
    );
    assert!(
        indicators::due_analyses(&f.db, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The view joins the verdict and the item.
    let row: (
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT value, detection, score, item_source, item_name FROM ioc_sightings
          WHERE kind = 'domain'",
    )
    .fetch_one(f.db.pool())
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "evil.example.com".into(),
            Some("malicious".into()),
            Some(88),
            Some("url_queue".into()),
            Some("https://evil.example/".into())
        )
    );
}

#[tokio::test]
async fn an_analysis_jbxd_did_not_submit_shows_in_the_view_without_item_columns() {
    let f = Fixture::new().await;
    f.analysis("7", None).await;
    f.report("7", "xml", None, "ioc domain a.example").await;
    f.index("7").await;
    let row: (String, Option<i64>, Option<String>) =
        sqlx::query_as("SELECT webid, item_id, item_name FROM ioc_sightings")
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert_eq!(row, ("7".into(), None, None));
}

#[tokio::test]
async fn reindexing_an_analysis_replaces_its_rows_and_never_duplicates_them() {
    let f = Fixture::new().await;
    f.analysis("200", Some("x")).await;
    f.report("200", "jsonfixed", None, MALWARE).await;
    f.report(
        "200",
        "irjsonfixed",
        None,
        "ioc domain evil.example.com clean\nioc domain ir-only.example",
    )
    .await;
    f.index("200").await;
    let first = f.iocs("200").await;
    let counts = indicators::row_counts(&f.db, "200").await.unwrap();
    f.index("200").await;
    f.index("200").await;
    assert_eq!(f.iocs("200").await, first);
    assert_eq!(indicators::row_counts(&f.db, "200").await.unwrap(), counts);
    // Both families count; the full report's "malicious" wins over the IR's "clean".
    assert!(first.contains(&value("domain", "ir-only.example", None, None)));
    assert!(first.contains(&value("domain", "evil.example.com", Some(true), None)));
    assert_eq!(counts.iocs, 6);

    // An upgraded extractor that finds less: the old rows go.
    std::fs::write(
        f.data_dir().join("reports/200/jsonfixed-None.txt"),
        "ioc domain only.example",
    )
    .unwrap();
    f.index("200").await;
    let now: Vec<String> = f.iocs("200").await.into_iter().map(|r| r.1).collect();
    assert_eq!(
        now,
        vec!["evil.example.com", "ir-only.example", "only.example"]
    );
}

#[tokio::test]
async fn a_failure_mid_way_through_the_transaction_leaves_the_old_rows_and_states() {
    let f = Fixture::new().await;
    f.analysis("300", Some("x")).await;
    f.report("300", "jsonfixed", None, MALWARE).await;
    f.index("300").await;
    let before = f.iocs("300").await;
    let states = f.index_states("300").await;
    // The report now yields one more indicator, and the database refuses that one insert.
    std::fs::write(
        f.data_dir().join("reports/300/jsonfixed-None.txt"),
        format!("{MALWARE}\nioc domain boom.example"),
    )
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON iocs WHEN NEW.value = 'boom.example'
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(f.db.pool())
    .await
    .unwrap();
    let error = index_analysis(&f.db, f.data_dir(), "300", None, fake_extract)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("injected failure"), "{error}");
    assert_eq!(f.iocs("300").await, before, "the delete was rolled back");
    assert_eq!(f.index_states("300").await, states);
}

#[tokio::test]
async fn a_broken_report_is_failed_with_a_one_line_reason_and_the_next_candidate_is_used() {
    let f = Fixture::new().await;
    f.analysis("400", Some("x")).await;
    f.report("400", "jsonfixed", None, "broken").await;
    f.report("400", "xml", None, "ioc domain from-xml.example")
        .await;
    f.report("400", "irjsonfixed", None, "panic").await;
    let indexed = f.index("400").await;
    assert_eq!(indexed.used, vec!["xml"]);
    assert_eq!(indexed.failed.len(), 2);
    let states = f.index_states("400").await;
    assert_eq!(states[0].0, "irjsonfixed");
    assert_eq!(states[0].1.as_deref(), Some("failed"));
    assert!(
        states[0].2.as_deref().unwrap().contains("parser failed"),
        "{states:?}"
    );
    assert_eq!(states[1].1.as_deref(), Some("failed"));
    let reason = states[1].2.as_deref().unwrap();
    assert!(
        reason.contains("unexpected end of document") && !reason.contains('\n'),
        "{reason}"
    );
    assert_eq!(states[2], ("xml".into(), Some("indexed".into()), None));
    assert_eq!(
        f.iocs("400").await,
        vec![value("domain", "from-xml.example", None, None)]
    );

    let status = indicators::status(&f.db).await.unwrap();
    assert_eq!((status.failed, status.indexed, status.pending), (2, 1, 0));
    let latest = status.latest_failure.unwrap();
    assert_eq!(latest.webid, "400");
    assert!(latest.error.is_some());
}

#[tokio::test]
async fn per_run_reports_are_indexed_per_run_and_a_missing_file_fails_only_its_report() {
    let f = Fixture::new().await;
    f.analysis("500", Some("x")).await;
    f.report("500", "jsonfixed", Some(0), "ioc domain run0.example")
        .await;
    f.report(
        "500",
        "jsonfixed",
        Some(1),
        "ioc domain run1.example\nioc domain run0.example",
    )
    .await;
    f.report("500", "irjsonfixed", None, "ioc domain relevant.example")
        .await;
    std::fs::remove_file(f.data_dir().join("reports/500/irjsonfixed-None.txt")).unwrap();
    let indexed = f.index("500").await;
    assert_eq!(indexed.failed.len(), 1);
    assert!(
        indexed.failed[0].1.contains("cannot open"),
        "{:?}",
        indexed.failed
    );
    let runs: Vec<(Option<i64>, String)> =
        sqlx::query_as("SELECT run, value FROM iocs WHERE webid = '500' ORDER BY run, value")
            .fetch_all(f.db.pool())
            .await
            .unwrap();
    assert_eq!(
        runs,
        vec![
            (Some(0), "run0.example".into()),
            (Some(1), "run0.example".into()),
            (Some(1), "run1.example".into()),
        ]
    );
}

#[tokio::test]
async fn an_analysis_with_a_report_still_downloading_is_not_due_for_indexing() {
    let f = Fixture::new().await;
    f.analysis("600", Some("x")).await;
    f.report("600", "jsonfixed", None, MALWARE).await;
    sqlx::query("INSERT INTO reports (webid, type, state) VALUES ('600', 'xml', 'downloading')")
        .execute(f.db.pool())
        .await
        .unwrap();
    assert!(
        indicators::due_analyses(&f.db, 10)
            .await
            .unwrap()
            .is_empty()
    );
    sqlx::query("UPDATE reports SET state = 'failed', error = 'gone' WHERE type = 'xml'")
        .execute(f.db.pool())
        .await
        .unwrap();
    assert_eq!(
        indicators::due_analyses(&f.db, 10).await.unwrap(),
        vec!["600"]
    );
}

#[tokio::test]
async fn a_report_stored_again_while_it_was_read_is_not_overwritten_with_stale_facts() {
    let f = Fixture::new().await;
    f.analysis("700", Some("x")).await;
    f.report("700", "jsonfixed", None, MALWARE).await;
    let read = indicators::stored_reports(&f.db, "700").await.unwrap();
    // The download worker stores it again (new hash) before the indexer commits.
    sqlx::query("UPDATE reports SET sha256 = 'new' WHERE webid = '700'")
        .execute(f.db.pool())
        .await
        .unwrap();
    let outcome = indicators::replace_analysis(&f.db, "700", &read, &Default::default(), &[])
        .await
        .unwrap();
    assert_eq!(outcome, Replaced::ReportsChanged);
    assert_eq!(f.index_states("700").await[0].1.as_deref(), Some("pending"));
}

#[tokio::test]
async fn lookups_find_defanged_upper_case_and_slash_variants_of_stored_values() {
    let f = Fixture::new().await;
    f.analysis("800", Some("x")).await;
    f.report("800", "jsonfixed", None, MALWARE).await;
    f.index("800").await;
    let find = |text: &'static str, kind: Option<Kind>| {
        let db = f.db.clone();
        async move {
            let filter = SightingFilter {
                values: Some(lookup_forms(text, kind)),
                ..Default::default()
            };
            indicators::sightings(&db, &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|s| (s.kind, s.value))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        find("evil[.]example(.)COM", None).await,
        vec![("domain".to_owned(), "evil.example.com".to_owned())]
    );
    assert_eq!(
        find("hxxp://EVIL.example[.]com/gate.php/", None).await,
        vec![(
            "url".to_owned(),
            "http://evil.example.com/gate.php".to_owned()
        )]
    );
    assert_eq!(
        find(
            " 'E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855' ",
            None
        )
        .await
        .len(),
        1
    );
    assert_eq!(find("203.0.113[.]9", Some(Kind::Ip)).await.len(), 1);
    assert!(find("203.0.113.9", Some(Kind::Domain)).await.is_empty());
    let analyses = indicators::analyses_that_saw(&f.db, &lookup_forms("EVIL.example.com", None), 0)
        .await
        .unwrap();
    assert_eq!(analyses.len(), 1);
    assert_eq!(analyses[0].detection.as_deref(), Some("malicious"));
}

#[tokio::test]
async fn a_report_the_index_cannot_read_is_failed_while_its_item_is_done() {
    let env = TestEnv::start(SimConfig::default(), |_| {}).await;
    let app = &env.app;
    let row = db::url_queue::insert(&app.db, "https://index-test.example/", None)
        .await
        .unwrap();
    let decision = db::url_queue::UrlDecision::Accept {
        url: "https://index-test.example/".into(),
        params: None,
        force: false,
    };
    db::url_queue::apply(&app.db, &[(row, decision)], 0)
        .await
        .unwrap();
    let items = drive_until(app, Duration::from_secs(20), all_terminal).await;
    assert_eq!(items[0].state, ItemState::Done);

    fn unreadable(_: &Path, _: &str, _: Option<&[u8]>) -> Result<ReportFacts, String> {
        Err("this document is not a report".into())
    }
    let outcome = index::worker::run_once(app, unreadable, None)
        .await
        .unwrap();
    assert_eq!(outcome, StepOutcome::Worked(1));
    assert_eq!(
        index::worker::run_once(app, unreadable, None)
            .await
            .unwrap(),
        StepOutcome::Idle
    );
    let item = db::items::get(&app.db, items[0].id).await.unwrap().unwrap();
    assert_eq!(item.state, ItemState::Done);
    let status = indicators::status(&app.db).await.unwrap();
    // Default report types: html (not indexable), irjsonfixed and xml (both unreadable here).
    assert_eq!((status.failed, status.not_indexable), (2, 1));
    assert_eq!(
        status.latest_failure.unwrap().error.as_deref(),
        Some("this document is not a report")
    );
}

#[tokio::test]
async fn reports_stored_before_the_index_existed_are_pending_after_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    // A v2 database: only the migrations before the index's.
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.starts_with("0001") || name.starts_with("0002") {
            std::fs::copy(&path, old.join(name)).unwrap();
        }
    }
    let path = dir.path().join("jbxd.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO analyses (webid) VALUES ('1');
         INSERT INTO reports (webid, type, state, path) VALUES ('1', 'xml', 'stored', 'r/x.xml');
         INSERT INTO reports (webid, type, state) VALUES ('1', 'json', 'failed');",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let db = Db::open(&path).await.unwrap();
    let states: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT type, index_state FROM reports ORDER BY type")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        states,
        vec![
            ("json".into(), None),
            ("xml".into(), Some("pending".into()))
        ]
    );
    assert_eq!(indicators::due_analyses(&db, 10).await.unwrap(), vec!["1"]);
}
