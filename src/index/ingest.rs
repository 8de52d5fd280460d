//! Indexing one analysis: its stored reports → the best readable document per report family
//! and run ([`super::choose`]) → [`ReportFacts`] (parsed on a blocking thread) → normal forms
//! (`ioc::normal`) → every row of the analysis written in one transaction
//! (`db::indicators::replace_analysis`) together with the index state of each report.
//!
//! A report that cannot be read (missing file, broken document, wrong password, even a
//! panicking parser) is marked `failed` with a one-line reason and the next candidate of its
//! family and run is tried; the other reports of the analysis still count. Nothing here
//! touches the item: it was `done` when its last report settled, before indexing began.
//!
//! The same function serves the daemon's index worker and `jbxd index rebuild`: it always
//! re-reads every stored report of the analysis and replaces all its rows, so running it again
//! (after an extractor upgrade, or beside the daemon) converges on the same rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::api::report::{ReportFacts, ReportFamily};
use crate::db::indicators::{
    self, AnalysisFacts, ConfigRow, IndexState, IocRow, Replaced, ReportMark, SignatureRow,
    StoredReport, TechniqueRow, YaraRow,
};
use crate::db::{Db, DbError};
use crate::ioc;
use crate::text::one_line;

/// Reads one stored report file into facts: `(path, report type, report password)`. Runs on a
/// blocking thread; its error is the one-line reason recorded on the report.
pub type Extract = fn(&Path, &str, Option<&[u8]>) -> Result<ReportFacts, String>;

/// The readable reports of one family and run, with their rank (0 = best).
type Candidates<'a> = Vec<(usize, &'a StoredReport)>;

/// The longest reason recorded in `reports.index_error`.
const REASON_CHARS: usize = 300;

/// What indexing one analysis did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed {
    pub outcome: Replaced,
    /// The report types the facts were taken from.
    pub used: Vec<String>,
    /// `(report type, reason)` of the reports that could not be read.
    pub failed: Vec<(String, String)>,
    /// Values dropped because they were no indicator of their kind (`"unknown"`, bad hashes).
    pub skipped: usize,
}

/// Indexes `webid` from its stored reports under `data_dir`.
pub async fn index_analysis(
    db: &Db,
    data_dir: &Path,
    webid: &str,
    password: Option<&[u8]>,
    extract: Extract,
) -> Result<Indexed, DbError> {
    let reports = indicators::stored_reports(db, webid).await?;
    let mut marks = Vec::with_capacity(reports.len());
    // (family, run) → candidates, best first. Full before incident, so that the section a
    // merged indicator keeps is the full report's.
    let mut groups: BTreeMap<(u8, Option<i64>), Candidates> = BTreeMap::new();
    for report in &reports {
        match super::choose::preference(&report.report_type) {
            Some((family, rank)) => groups
                .entry((family_order(family), report.run))
                .or_default()
                .push((rank, report)),
            None => marks.push(ReportMark {
                report_id: report.id,
                state: IndexState::NotIndexable,
                error: None,
            }),
        }
    }
    let mut rows = Rows::default();
    let mut used = Vec::new();
    let mut failed = Vec::new();
    for candidates in groups.values_mut() {
        candidates.sort_by_key(|(rank, report)| (*rank, report.id));
        let mut found = false;
        for (_, report) in candidates.iter() {
            if found {
                // Its facts are those of the preferred document already read.
                marks.push(mark(report, IndexState::Indexed, None));
                continue;
            }
            match read(data_dir, report, password, extract).await {
                Ok(facts) => {
                    let note = facts.truncated.then(|| {
                        "indexed in part: the report has more facts than the index keeps".to_owned()
                    });
                    rows.add(report, facts);
                    marks.push(mark(report, IndexState::Indexed, note));
                    used.push(report.report_type.clone());
                    found = true;
                }
                Err(reason) => {
                    let reason = one_line(&reason, REASON_CHARS);
                    marks.push(mark(report, IndexState::Failed, Some(reason.clone())));
                    failed.push((report.report_type.clone(), reason));
                }
            }
        }
    }
    let skipped = rows.skipped;
    let outcome =
        indicators::replace_analysis(db, webid, &reports, &rows.into_facts(), &marks).await?;
    Ok(Indexed {
        outcome,
        used,
        failed,
        skipped,
    })
}

fn family_order(family: ReportFamily) -> u8 {
    match family {
        ReportFamily::Full => 0,
        ReportFamily::Incident => 1,
    }
}

fn mark(report: &StoredReport, state: IndexState, error: Option<String>) -> ReportMark {
    ReportMark {
        report_id: report.id,
        state,
        error,
    }
}

/// The one place a stored report is read: on a blocking thread, so a 200 MiB document never
/// stalls the runtime; a panic in the parser is this report's failure, not the worker's.
async fn read(
    data_dir: &Path,
    report: &StoredReport,
    password: Option<&[u8]>,
    extract: Extract,
) -> Result<ReportFacts, String> {
    let path: PathBuf = data_dir.join(&report.path);
    let report_type = report.report_type.clone();
    let password = password.map(<[u8]>::to_vec);
    match tokio::task::spawn_blocking(move || extract(&path, &report_type, password.as_deref()))
        .await
    {
        Ok(result) => result,
        Err(error) if error.is_panic() => {
            Err("the report parser failed on this document (a bug: please report it)".into())
        }
        Err(error) => Err(format!("the report was not read: {error}")),
    }
}

/// The rows of one analysis, one per unique key (the tables' unique indexes), merged where
/// several reports or sections name the same fact.
#[derive(Default)]
struct Rows {
    iocs: BTreeMap<(Option<i64>, ioc::Kind, String), IocRow>,
    signatures: BTreeMap<(Option<i64>, Option<String>, String), SignatureRow>,
    techniques: BTreeMap<(Option<i64>, String, Option<String>), TechniqueRow>,
    yara: BTreeMap<(Option<i64>, String, String), YaraRow>,
    configs: BTreeMap<(Option<i64>, Option<String>, String), ConfigRow>,
    skipped: usize,
}

/// Trimmed text, `None` when nothing is left.
fn text(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl Rows {
    fn add(&mut self, report: &StoredReport, facts: ReportFacts) {
        let run = report.run;
        let from = || report.report_type.to_ascii_lowercase();
        for raw in facts.indicators {
            let Some(normal) = ioc::normalize(raw.kind, &raw.value) else {
                self.skipped += 1;
                continue;
            };
            // Ours from the address, or the report's own judgement when it says private.
            let private = normal.private.map(|ours| ours || raw.private == Some(true));
            let key = (run, raw.kind, normal.value.clone());
            match self.iocs.get_mut(&key) {
                // "Malicious" anywhere wins; a known "not malicious" beats "not said".
                Some(row) => {
                    row.malicious = row.malicious.max(raw.malicious);
                    row.private = row.private.max(private);
                }
                None => {
                    self.iocs.insert(
                        key,
                        IocRow {
                            run,
                            kind: raw.kind,
                            value: normal.value,
                            malicious: raw.malicious,
                            private,
                            report_type: from(),
                            section: raw.section.to_owned(),
                        },
                    );
                }
            }
        }
        for sig in facts.signatures {
            let Some(description) = text(Some(&sig.description)) else {
                self.skipped += 1;
                continue;
            };
            let sig_id = text(sig.id.as_deref());
            let row = self
                .signatures
                .entry((run, sig_id.clone(), description.clone()))
                .or_insert_with(|| SignatureRow {
                    run,
                    sig_id,
                    description,
                    impact: None,
                    report_type: from(),
                });
            row.impact = row.impact.max(sig.impact);
        }
        for t in facts.techniques {
            let Some(technique) = ioc::technique(&t.id) else {
                self.skipped += 1;
                continue;
            };
            let tactic = text(t.tactic.as_deref());
            let row = self
                .techniques
                .entry((run, technique.clone(), tactic.clone()))
                .or_insert_with(|| TechniqueRow {
                    run,
                    technique,
                    tactic,
                    name: None,
                    report_type: from(),
                });
            if row.name.is_none() {
                row.name = text(t.name.as_deref());
            }
        }
        for hit in facts.yara {
            let (Some(rule), Some(scope)) = (text(Some(&hit.rule)), text(Some(&hit.scope))) else {
                self.skipped += 1;
                continue;
            };
            self.yara
                .entry((run, rule.clone(), scope.clone()))
                .or_insert_with(|| YaraRow {
                    run,
                    rule,
                    scope,
                    report_type: from(),
                });
        }
        for config in facts.configs {
            let family = text(config.threatname.as_deref());
            self.configs
                .entry((run, family.clone(), config.json.clone()))
                .or_insert_with(|| ConfigRow {
                    run,
                    family,
                    config_json: config.json,
                    report_type: from(),
                });
        }
    }

    fn into_facts(self) -> AnalysisFacts {
        AnalysisFacts {
            iocs: self.iocs.into_values().collect(),
            signatures: self.signatures.into_values().collect(),
            techniques: self.techniques.into_values().collect(),
            yara: self.yara.into_values().collect(),
            configs: self.configs.into_values().collect(),
        }
    }
}
