//! The simulated service's data: submissions, analyses, ids, quota usage, and how their status
//! follows from the clock.
//!
//! Status is never stored; it is computed from when a submission's data became complete, the
//! configured analysis time and the (virtual) clock, so advancing the clock moves every
//! submission forward consistently.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use chrono::{DateTime, Datelike, Local};
use tempfile::TempPath;

use super::clock::SimInstant;
use super::form::{Digester, StoredFile};
use super::verdict::{Detection, Verdict};

pub(crate) const FIRST_SUBMISSION_ID: u64 = 100;
pub(crate) const FIRST_WEBID: u64 = 1000;

/// Where a submission (and its analyses) stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Progress {
    Accepted,
    Submitted,
    Running,
    Finished,
}

impl Progress {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Progress::Accepted => "accepted",
            Progress::Submitted => "submitted",
            Progress::Running => "running",
            Progress::Finished => "finished",
        }
    }

    /// Position on the timeline: the first 10 % accepted, the next 10 % submitted, then running
    /// until the full analysis time has passed. Zero analysis time means finished at once.
    pub(crate) fn at(elapsed: Duration, analysis_time: Duration) -> Self {
        if analysis_time.is_zero() || elapsed >= analysis_time {
            return Progress::Finished;
        }
        let fraction = elapsed.as_secs_f64() / analysis_time.as_secs_f64();
        if fraction < 0.1 {
            Progress::Accepted
        } else if fraction < 0.2 {
            Progress::Submitted
        } else {
            Progress::Running
        }
    }
}

/// What the submitter asked for, beyond the thing to analyse.
#[derive(Clone, Debug, Default)]
pub(crate) struct SubmissionOptions {
    pub(crate) systems: Vec<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) comments: String,
    pub(crate) encrypt_password: Option<String>,
    pub(crate) archive_password: String,
    pub(crate) archive_no_unpack: bool,
    /// `(file name, content)` of an attached cookbook.
    pub(crate) cookbook: Option<(String, Bytes)>,
}

/// An in-progress chunked upload (§6 of the API notes).
#[derive(Debug)]
pub(crate) struct ChunkUpload {
    pub(crate) file_name: String,
    pub(crate) path: TempPath,
    pub(crate) plan: Option<ChunkPlan>,
    /// 1-based index of the chunk expected next.
    pub(crate) next_index: u64,
    pub(crate) received: u64,
    pub(crate) digester: Digester,
    /// Set while a chunk is being written, so a concurrent duplicate is refused.
    pub(crate) busy: bool,
}

/// The upload geometry announced with every chunk; it must not change between chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkPlan {
    pub(crate) file_size: u64,
    pub(crate) chunk_size: u64,
    pub(crate) chunk_count: u64,
}

#[derive(Debug)]
pub(crate) enum Phase {
    /// Waiting for chunks; stays here forever if they never come (orphans are harmless).
    AwaitingChunks(Box<ChunkUpload>),
    /// All data is here and the analyses are being prepared (archive extraction).
    Preparing,
    /// Analyses exist; progression runs from this instant.
    Started(SimInstant),
}

#[derive(Debug)]
pub(crate) struct Submission {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) created: SimInstant,
    pub(crate) time: DateTime<Local>,
    pub(crate) options: SubmissionOptions,
    pub(crate) phase: Phase,
    pub(crate) webids: Vec<u64>,
    /// The submitted sample; shared with the analysis of it, deleted with the last owner.
    pub(crate) sample: Option<Arc<StoredFile>>,
}

/// What an analysis looked at.
#[derive(Clone, Debug)]
pub(crate) enum Subject {
    File(Arc<StoredFile>),
    /// Website analysis (`url`) or a sample the service downloads itself (`sample-url`).
    Url(String),
    /// `command-line` or cookbook-only submissions: nothing with hashes.
    Other,
}

/// An analysis ready to be attached to a submission.
#[derive(Clone, Debug)]
pub(crate) struct PreparedAnalysis {
    pub(crate) filename: String,
    pub(crate) subject: Subject,
    pub(crate) extracted_from: Option<String>,
    pub(crate) verdict: Verdict,
}

#[derive(Debug)]
pub(crate) struct Analysis {
    pub(crate) webid: u64,
    pub(crate) submission_id: u64,
    pub(crate) filename: String,
    pub(crate) subject: Subject,
    pub(crate) scriptname: String,
    pub(crate) comments: String,
    pub(crate) tags: Vec<String>,
    pub(crate) systems: Vec<String>,
    pub(crate) encrypt_password: Option<String>,
    pub(crate) cookbook: Option<(String, Bytes)>,
    pub(crate) verdict: Verdict,
    pub(crate) started: SimInstant,
    pub(crate) time: DateTime<Local>,
}

impl Analysis {
    pub(crate) fn progress(&self, now: SimInstant, analysis_time: Duration) -> Progress {
        Progress::at(now.saturating_sub(self.started), analysis_time)
    }

    pub(crate) fn file(&self) -> Option<&StoredFile> {
        match &self.subject {
            Subject::File(file) => Some(file),
            _ => None,
        }
    }

    pub(crate) fn url(&self) -> Option<&str> {
        match &self.subject {
            Subject::Url(url) => Some(url),
            _ => None,
        }
    }

    /// Detection and score as currently visible: `unknown`/0 until the analysis finished.
    pub(crate) fn current_verdict(&self, progress: Progress) -> (Detection, u32) {
        if progress == Progress::Finished {
            (self.verdict.detection, self.verdict.score)
        } else {
            (Detection::Unknown, 0)
        }
    }
}

/// Submissions in the current day and month, for `account/info` and quota checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuotaUsage {
    pub(crate) daily: u64,
    pub(crate) monthly: u64,
}

#[derive(Debug)]
pub(crate) struct Store {
    next_submission_id: u64,
    next_webid: u64,
    pub(crate) submissions: BTreeMap<u64, Submission>,
    pub(crate) analyses: BTreeMap<u64, Analysis>,
    accepted: Vec<String>,
    /// Creation time of every accepted submission; deleting one does not refund quota.
    quota_log: Vec<DateTime<Local>>,
    /// Downloads that are not byte-for-byte reproducible (ZipCrypto uses random headers) are
    /// generated once and kept, keyed by `(webid, run, type)`.
    pub(crate) download_cache: HashMap<(u64, usize, String), Bytes>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            next_submission_id: FIRST_SUBMISSION_ID,
            next_webid: FIRST_WEBID,
            submissions: BTreeMap::new(),
            analyses: BTreeMap::new(),
            accepted: Vec::new(),
            quota_log: Vec::new(),
            download_cache: HashMap::new(),
        }
    }
}

impl Store {
    /// Create a submission and count it against the quota. Returns the new id.
    pub(crate) fn create_submission(
        &mut self,
        name: String,
        options: SubmissionOptions,
        phase: Phase,
        sample: Option<Arc<StoredFile>>,
        created: SimInstant,
        time: DateTime<Local>,
    ) -> u64 {
        let id = self.next_submission_id;
        self.next_submission_id += 1;
        self.submissions.insert(
            id,
            Submission {
                id,
                name,
                created,
                time,
                options,
                phase,
                webids: Vec::new(),
                sample,
            },
        );
        self.accepted.push(id.to_string());
        self.quota_log.push(time);
        id
    }

    /// Attach prepared analyses to a submission and start its clock. Returns false if the
    /// submission was deleted in the meantime.
    pub(crate) fn start_analyses(
        &mut self,
        submission_id: u64,
        prepared: Vec<PreparedAnalysis>,
        started: SimInstant,
        time: DateTime<Local>,
    ) -> bool {
        let Some(submission) = self.submissions.get_mut(&submission_id) else {
            return false;
        };
        let options = submission.options.clone();
        let mut webids = Vec::with_capacity(prepared.len());
        for analysis in prepared {
            let webid = self.next_webid;
            self.next_webid += 1;
            webids.push(webid);
            let scriptname = match (&options.cookbook, &analysis.subject) {
                (Some((name, _)), _) => name.clone(),
                (None, Subject::Url(_)) => "browseurl.jbs".to_owned(),
                (None, _) => "default.jbs".to_owned(),
            };
            let comments = match &analysis.extracted_from {
                Some(archive) if options.comments.is_empty() => {
                    format!("Sample was extracted from {archive} archive")
                }
                Some(archive) => format!(
                    "{} (Sample was extracted from {archive} archive)",
                    options.comments
                ),
                None => options.comments.clone(),
            };
            self.analyses.insert(
                webid,
                Analysis {
                    webid,
                    submission_id,
                    filename: analysis.filename,
                    subject: analysis.subject,
                    scriptname,
                    comments,
                    tags: options.tags.clone(),
                    systems: options.systems.clone(),
                    encrypt_password: options.encrypt_password.clone(),
                    cookbook: options.cookbook.clone(),
                    verdict: analysis.verdict,
                    started,
                    time,
                },
            );
        }
        submission.webids = webids;
        submission.phase = Phase::Started(started);
        true
    }

    pub(crate) fn submission_progress(
        &self,
        submission: &Submission,
        now: SimInstant,
        analysis_time: Duration,
    ) -> Progress {
        match &submission.phase {
            // A chunked upload that never got a chunk is indistinguishable from a 0-byte file
            // (jbxapi sends chunk-count 0 and no chunk at all): it counts as an empty sample,
            // finished with no analyses. A late first chunk reopens it (see chunked.rs).
            Phase::AwaitingChunks(upload) if upload.next_index == 1 && !upload.busy => {
                Progress::Finished
            }
            Phase::AwaitingChunks(_) | Phase::Preparing => Progress::Accepted,
            // Nothing to analyse (empty sample or archive): finished at once.
            Phase::Started(_) if submission.webids.is_empty() => Progress::Finished,
            Phase::Started(started) => Progress::at(now.saturating_sub(*started), analysis_time),
        }
    }

    /// Remove a submission and everything belonging to it.
    pub(crate) fn delete_submission(&mut self, id: u64) -> bool {
        let Some(submission) = self.submissions.remove(&id) else {
            return false;
        };
        for webid in submission.webids {
            self.forget_analysis(webid);
        }
        true
    }

    /// Remove one analysis; its submission stays (possibly with no analyses left).
    pub(crate) fn delete_analysis(&mut self, webid: u64) -> bool {
        let Some(analysis) = self.analyses.get(&webid) else {
            return false;
        };
        if let Some(submission) = self.submissions.get_mut(&analysis.submission_id) {
            submission.webids.retain(|id| *id != webid);
        }
        self.forget_analysis(webid);
        true
    }

    fn forget_analysis(&mut self, webid: u64) {
        self.analyses.remove(&webid);
        self.download_cache
            .retain(|(cached, _, _), _| *cached != webid);
    }

    pub(crate) fn accepted_submissions(&self) -> Vec<String> {
        self.accepted.clone()
    }

    pub(crate) fn quota_usage(&self, now: &DateTime<Local>) -> QuotaUsage {
        let daily = self
            .quota_log
            .iter()
            .filter(|t| t.date_naive() == now.date_naive())
            .count() as u64;
        let monthly = self
            .quota_log
            .iter()
            .filter(|t| t.year() == now.year() && t.month() == now.month())
            .count() as u64;
        QuotaUsage { daily, monthly }
    }

    /// Analyses not finished yet (including those whose submission is still preparing).
    pub(crate) fn queue_size(&self, now: SimInstant, analysis_time: Duration) -> usize {
        self.analyses
            .values()
            .filter(|a| a.progress(now, analysis_time) != Progress::Finished)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_follows_the_share_of_analysis_time_elapsed() {
        let total = Duration::from_secs(100);
        assert_eq!(Progress::at(Duration::ZERO, total), Progress::Accepted);
        assert_eq!(
            Progress::at(Duration::from_secs(9), total),
            Progress::Accepted
        );
        assert_eq!(
            Progress::at(Duration::from_secs(10), total),
            Progress::Submitted
        );
        assert_eq!(
            Progress::at(Duration::from_secs(20), total),
            Progress::Running
        );
        assert_eq!(
            Progress::at(Duration::from_secs(99), total),
            Progress::Running
        );
        assert_eq!(
            Progress::at(Duration::from_secs(100), total),
            Progress::Finished
        );
        assert_eq!(
            Progress::at(Duration::ZERO, Duration::ZERO),
            Progress::Finished
        );
    }

    fn prepared(name: &str) -> PreparedAnalysis {
        PreparedAnalysis {
            filename: name.into(),
            subject: Subject::Url(name.into()),
            extracted_from: None,
            verdict: super::super::verdict::url_verdict(name),
        }
    }

    #[test]
    fn submissions_move_forward_with_the_clock() {
        let mut store = Store::default();
        let time = Local::now();
        let id = store.create_submission(
            "x".into(),
            SubmissionOptions::default(),
            Phase::Preparing,
            None,
            Duration::ZERO,
            time,
        );
        let total = Duration::from_secs(10);
        let progress =
            |store: &Store, now| store.submission_progress(&store.submissions[&id], now, total);
        assert_eq!(
            progress(&store, Duration::from_secs(50)),
            Progress::Accepted
        );
        assert!(store.start_analyses(
            id,
            vec![prepared("http://a")],
            Duration::from_secs(50),
            time
        ));
        assert_eq!(
            progress(&store, Duration::from_secs(51)),
            Progress::Submitted
        );
        assert_eq!(progress(&store, Duration::from_secs(55)), Progress::Running);
        assert_eq!(
            progress(&store, Duration::from_secs(60)),
            Progress::Finished
        );
        assert_eq!(store.queue_size(Duration::from_secs(55), total), 1);
        assert_eq!(store.queue_size(Duration::from_secs(60), total), 0);
    }

    #[test]
    fn ids_increase_and_deleting_a_submission_cascades() {
        let mut store = Store::default();
        let time = Local::now();
        let first = store.create_submission(
            "a".into(),
            SubmissionOptions::default(),
            Phase::Preparing,
            None,
            Duration::ZERO,
            time,
        );
        let second = store.create_submission(
            "b".into(),
            SubmissionOptions::default(),
            Phase::Preparing,
            None,
            Duration::ZERO,
            time,
        );
        assert_eq!(first, FIRST_SUBMISSION_ID);
        assert_eq!(second, first + 1);
        store.start_analyses(
            first,
            vec![prepared("u1"), prepared("u2")],
            Duration::ZERO,
            time,
        );
        assert_eq!(
            store.submissions[&first].webids,
            vec![FIRST_WEBID, FIRST_WEBID + 1]
        );
        assert!(store.delete_submission(first));
        assert!(store.analyses.is_empty());
        assert!(!store.delete_submission(first));
        assert_eq!(
            store.accepted_submissions(),
            vec!["100".to_string(), "101".to_string()]
        );
        assert_eq!(
            store.quota_usage(&time),
            QuotaUsage {
                daily: 2,
                monthly: 2
            }
        );
    }

    #[test]
    fn a_submission_with_nothing_to_analyse_finishes_at_once() {
        let mut store = Store::default();
        let time = Local::now();
        let id = store.create_submission(
            "empty".into(),
            SubmissionOptions::default(),
            Phase::Preparing,
            None,
            Duration::ZERO,
            time,
        );
        store.start_analyses(id, Vec::new(), Duration::ZERO, time);
        let progress = store.submission_progress(
            &store.submissions[&id],
            Duration::ZERO,
            Duration::from_secs(600),
        );
        assert_eq!(progress, Progress::Finished);
    }

    #[test]
    fn extracted_members_note_their_archive_in_comments() {
        let mut store = Store::default();
        let time = Local::now();
        let options = SubmissionOptions {
            comments: "jbxd:key-1".into(),
            ..SubmissionOptions::default()
        };
        let id = store.create_submission(
            "a.zip".into(),
            options,
            Phase::Preparing,
            None,
            Duration::ZERO,
            time,
        );
        let mut member = prepared("inner.exe");
        member.extracted_from = Some("a.zip".into());
        store.start_analyses(id, vec![member], Duration::ZERO, time);
        let analysis = &store.analyses[&FIRST_WEBID];
        assert!(analysis.comments.starts_with("jbxd:key-1"));
        assert!(
            analysis
                .comments
                .contains("Sample was extracted from a.zip archive")
        );
    }
}
