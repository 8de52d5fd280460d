//! Finding what a submission attempt created on the server, by the marker its `comments`
//! carry, through every means the API offers (RELIABILITY case 115).
//!
//! * `analysis/search` matches the marker inside `comments`, but a busy server's search index
//!   lags behind new submissions (minutes are normal).
//! * `submission/list` is not searched, it lists the account's own submissions as soon as they
//!   exist; its entries carry only `submission_id`, `name`, `status` and `time`, so each entry
//!   that may be the one looked for is opened with `submission/info`, whose analyses carry the
//!   `comments`.
//! * A submission with no analyses yet (still `accepted`, or a chunked submission whose chunks
//!   never came) shows no comments at all: it is reported as [`Unidentified`] with its name and
//!   time, and the caller decides (RELIABILITY case 116: an empty chunked submission of ours is
//!   found by the upload name and the attempt's time window).
//!
//! Assumption, as for `analysis/list` and in the simulator: `submission/list` is newest first,
//! so paging stops at the first page that lies entirely before the window.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use super::client::JoeClient;
use super::endpoints::Endpoint;
use super::error::{ApiError, ApiErrorKind};
use super::params::SearchQuery;
use super::types::{Analysis, SubmissionStub};

/// One submission whose analyses carry a marker.
#[derive(Debug, Clone)]
pub struct FoundSubmission {
    /// `None` when only `analysis/search` saw it (search does not name the submission).
    pub submission_id: Option<String>,
    pub analyses: Vec<Analysis>,
}

/// A listed submission that shows no analyses, hence no comments to match.
#[derive(Debug, Clone)]
pub struct Unidentified {
    pub submission_id: String,
    /// The file name (or URL) the submission was made with.
    pub name: Option<String>,
    pub status: Option<String>,
    pub time: Option<DateTime<Utc>>,
    /// It has analyses (not showing their comments yet); an empty chunked upload has none.
    pub has_analyses: bool,
}

/// What [`JoeClient::find_by_markers`] found.
#[derive(Debug, Clone, Default)]
pub struct MarkerFindings {
    /// Per marker, every submission carrying it (usually one).
    pub found: BTreeMap<String, Vec<FoundSubmission>>,
    /// Candidates that could not be told apart by their comments.
    pub unidentified: Vec<Unidentified>,
}

impl MarkerFindings {
    pub fn for_marker(&self, marker: &str) -> &[FoundSubmission] {
        self.found.get(marker).map_or(&[], Vec::as_slice)
    }
}

/// The `time` of a listed submission (ISO 8601 with an offset) as UTC.
pub fn submission_time(stub: &SubmissionStub) -> Option<DateTime<Utc>> {
    stub.time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Whether `comments` contains `marker` as a whole token (not as the prefix of a longer key:
/// search is a substring match, so `…-1` must not match `…-10`).
pub fn carries_marker(comments: &str, marker: &str) -> bool {
    comments.match_indices(marker).any(|(i, m)| {
        comments[i + m.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    })
}

fn carries(analysis: &Analysis, marker: &str) -> bool {
    analysis
        .comments
        .as_deref()
        .is_some_and(|c| carries_marker(c, marker))
}

fn not_found(error: &ApiError) -> bool {
    error.kind() == Some(ApiErrorKind::InvalidParameter)
}

impl JoeClient {
    /// `submission/list`, page by page, keeping the entries whose `time` is at or after
    /// `since` (entries without a readable time are kept: they might be recent). Stops at the
    /// first page with no entry in the window.
    pub async fn list_submissions_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<SubmissionStub>, ApiError> {
        self.call_paged(
            Endpoint::SubmissionList.as_str(),
            vec![],
            |page: Vec<SubmissionStub>, kept| {
                let before = kept.len();
                kept.extend(
                    page.into_iter()
                        .filter(|s| submission_time(s).is_none_or(|t| t >= since)),
                );
                kept.len() > before
            },
        )
        .await
    }

    /// Looks every marker up: `submission/info` for each of `candidates` (listed submissions
    /// the caller cannot account for), then `analysis/search` for each marker. A submission
    /// seen both ways is reported once, with its id. Deleted meanwhile → skipped.
    pub async fn find_by_markers(
        &self,
        markers: &[String],
        candidates: &[SubmissionStub],
    ) -> Result<MarkerFindings, ApiError> {
        let mut findings = MarkerFindings::default();
        let mut seen_webids: HashSet<String> = HashSet::new();
        for stub in candidates {
            let submission = match self.submission_info(&stub.submission_id).await {
                Ok(s) => s,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            let analyses = submission.analyses.clone().unwrap_or_default();
            // No analysis yet, or analyses that do not show their comments yet (still
            // `accepted`): the markers cannot be read, so it cannot be told whose it is.
            if analyses.iter().all(|a| a.comments.is_none()) {
                findings.unidentified.push(Unidentified {
                    submission_id: stub.submission_id.clone(),
                    name: submission.name.clone().or_else(|| stub.name.clone()),
                    status: submission.status.clone(),
                    time: submission_time(stub),
                    has_analyses: !analyses.is_empty(),
                });
                continue;
            }
            for marker in markers {
                if analyses.iter().any(|a| carries(a, marker)) {
                    seen_webids.extend(analyses.iter().map(|a| a.webid.clone()));
                    findings
                        .found
                        .entry(marker.clone())
                        .or_default()
                        .push(FoundSubmission {
                            submission_id: Some(stub.submission_id.clone()),
                            analyses: analyses.clone(),
                        });
                }
            }
        }
        for marker in markers {
            let hits = self
                .analysis_search(&SearchQuery::Text(marker.clone()))
                .await?;
            let mut rest = Vec::new();
            for hit in hits {
                if seen_webids.contains(&hit.webid) {
                    continue;
                }
                let analysis = if hit.comments.is_some() {
                    hit
                } else {
                    // A `{webid}` stub: the comments come with the full object.
                    match self.analysis_info(&hit.webid).await {
                        Ok(a) => a,
                        Err(e) if not_found(&e) => continue,
                        Err(e) => return Err(e),
                    }
                };
                if carries(&analysis, marker) {
                    seen_webids.insert(analysis.webid.clone());
                    rest.push(analysis);
                }
            }
            if !rest.is_empty() {
                findings
                    .found
                    .entry(marker.clone())
                    .or_default()
                    .push(FoundSubmission {
                        submission_id: None,
                        analyses: rest,
                    });
            }
        }
        Ok(findings)
    }

    /// Deletes a submission (and, on the server, its analyses); one already gone counts as
    /// deleted.
    pub async fn delete_submission_if_present(&self, submission_id: &str) -> Result<(), ApiError> {
        match self.submission_delete(submission_id).await {
            Err(e) if not_found(&e) => Ok(()),
            other => other,
        }
    }

    /// Deletes an analysis; one already gone counts as deleted.
    pub async fn delete_analysis_if_present(&self, webid: &str) -> Result<(), ApiError> {
        match self.analysis_delete(webid).await {
            Err(e) if not_found(&e) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_counts_as_a_hit() {
        let m = "jbxd:abc-1";
        assert!(carries_marker("jbxd:abc-1", m));
        assert!(carries_marker("user text jbxd:abc-1", m));
        assert!(carries_marker(
            "jbxd:abc-1\nSample was extracted from a.zip",
            m
        ));
        assert!(!carries_marker("jbxd:abc-10", m));
        assert!(!carries_marker("jbxd:abc-1x", m));
        assert!(!carries_marker("jbxd:abc-", m));
        assert!(carries_marker("jbxd:abc-10 jbxd:abc-1", m));
    }

    #[test]
    fn listed_times_with_offsets_are_read_as_utc() {
        let stub: SubmissionStub =
            serde_json::from_str(r#"{"submission_id": "7", "time": "2025-02-04T15:44:06+01:00"}"#)
                .unwrap();
        assert_eq!(
            submission_time(&stub).unwrap().to_rfc3339(),
            "2025-02-04T14:44:06+00:00"
        );
        let bad: SubmissionStub =
            serde_json::from_str(r#"{"submission_id": "8", "time": "yesterday"}"#).unwrap();
        assert!(submission_time(&bad).is_none());
    }
}
