//! The endpoint names ([`Endpoint`]) and one method per read or delete endpoint (server,
//! account, submissions, analyses, the start of a download). Submitting lives in
//! `submission.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::client::JoeClient;
use super::download::{Download, parse_content_disposition};
use super::error::ApiError;
use super::params::SearchQuery;
use super::request::{Repeat, decode};
use super::types::*;

/// The API v2 endpoints the client calls, by name: callers outside `api` (the simulator's
/// request log, the test invariants) name an endpoint through this, never by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ServerOnline,
    ServerInfo,
    ServerSystems,
    AccountInfo,
    SubmissionNew,
    SubmissionChunkedSample,
    SubmissionInfo,
    SubmissionList,
    SubmissionDelete,
    AnalysisSearch,
    AnalysisInfo,
    AnalysisList,
    AnalysisDownload,
    AnalysisDelete,
}

impl Endpoint {
    /// The path below `<api base>/v2/`, e.g. `submission/new`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerOnline => "server/online",
            Self::ServerInfo => "server/info",
            Self::ServerSystems => "server/systems",
            Self::AccountInfo => "account/info",
            Self::SubmissionNew => "submission/new",
            Self::SubmissionChunkedSample => "submission/chunked-sample",
            Self::SubmissionInfo => "submission/info",
            Self::SubmissionList => "submission/list",
            Self::SubmissionDelete => "submission/delete",
            Self::AnalysisSearch => "analysis/search",
            Self::AnalysisInfo => "analysis/info",
            Self::AnalysisList => "analysis/list",
            Self::AnalysisDownload => "analysis/download",
            Self::AnalysisDelete => "analysis/delete",
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A form of one `name=value` pair.
fn one(name: &str, value: &str) -> Vec<(String, String)> {
    vec![(name.to_owned(), value.to_owned())]
}

/// Every item of a list, all pages.
fn everything<T>(page: Vec<T>, items: &mut Vec<T>) -> bool {
    items.extend(page);
    true
}

impl JoeClient {
    // ---- server / account -------------------------------------------------------------

    /// One `server/online` request without retries: the circuit breaker's probe. `Ok` (online
    /// or not) means the server answered.
    pub async fn probe_online(&self) -> Result<bool, ApiError> {
        let form = self.with_key(vec![]);
        let envelope = self
            .post_once(Endpoint::ServerOnline.as_str(), &form, true)
            .await?;
        let status: OnlineStatus = decode(envelope.data)?;
        Ok(status.online.unwrap_or(false))
    }

    /// `server/online`: false during maintenance.
    pub async fn server_online(&self) -> Result<bool, ApiError> {
        let status: OnlineStatus = self
            .call_data(Endpoint::ServerOnline.as_str(), vec![])
            .await?;
        Ok(status.online.unwrap_or(false))
    }

    pub async fn server_info(&self) -> Result<ServerInfo, ApiError> {
        self.call_data(Endpoint::ServerInfo.as_str(), vec![]).await
    }

    pub async fn server_systems(&self) -> Result<Vec<SystemInfo>, ApiError> {
        self.call_data(Endpoint::ServerSystems.as_str(), vec![])
            .await
    }

    /// `account/info` (cloud only; on-premise servers refuse it).
    pub async fn account_info(&self) -> Result<AccountInfo, ApiError> {
        self.call_data(Endpoint::AccountInfo.as_str(), vec![]).await
    }

    // ---- submissions ------------------------------------------------------------------

    pub async fn submission_info(&self, submission_id: &str) -> Result<Submission, ApiError> {
        self.call_data(
            Endpoint::SubmissionInfo.as_str(),
            one("submission_id", submission_id),
        )
        .await
    }

    /// Every submission, all pages.
    pub async fn submission_list(&self) -> Result<Vec<SubmissionStub>, ApiError> {
        self.call_paged(Endpoint::SubmissionList.as_str(), vec![], everything)
            .await
    }

    pub async fn submission_delete(&self, submission_id: &str) -> Result<(), ApiError> {
        self.call(
            Endpoint::SubmissionDelete.as_str(),
            one("submission_id", submission_id),
        )
        .await
        .map(drop)
    }

    // ---- analyses ---------------------------------------------------------------------

    /// Every analysis (webid stubs, newest first), all pages.
    pub async fn analysis_list(&self) -> Result<Vec<AnalysisStub>, ApiError> {
        self.call_paged(
            Endpoint::AnalysisList.as_str(),
            one("pagination", "1"),
            everything,
        )
        .await
    }

    pub async fn analysis_info(&self, webid: &str) -> Result<Analysis, ApiError> {
        self.call_data(Endpoint::AnalysisInfo.as_str(), one("webid", webid))
            .await
    }

    pub async fn analysis_delete(&self, webid: &str) -> Result<(), ApiError> {
        self.call(Endpoint::AnalysisDelete.as_str(), one("webid", webid))
            .await
            .map(drop)
    }

    /// `analysis/search`; results may be full analyses or `{webid}` stubs.
    pub async fn analysis_search(&self, query: &SearchQuery) -> Result<Vec<Analysis>, ApiError> {
        self.call_data(Endpoint::AnalysisSearch.as_str(), query.to_form())
            .await
    }

    /// Starts `analysis/download`, retrying until the headers arrive. The body is then read
    /// with [`Download::write_to`]; a failure there is the caller's to retry (with a fresh
    /// call), because a half-read body cannot be resumed.
    pub async fn analysis_download(
        &self,
        webid: &str,
        report_type: &str,
        run: Option<u32>,
    ) -> Result<Download, ApiError> {
        let url = self.endpoint_url(Endpoint::AnalysisDownload.as_str());
        let mut form = one("webid", webid);
        form.push(("type".to_owned(), report_type.to_owned()));
        if let Some(run) = run {
            form.push(("run".into(), run.to_string()));
        }
        let form = self.with_key(form);
        // Downloads may be large: a total deadline of 1 h; the read-idle timeout and the
        // minimum throughput (see `Download::write_to`) stop stalled and crawling bodies sooner.
        let timeout = Duration::from_secs(3600);
        self.with_retries(
            Endpoint::AnalysisDownload.as_str(),
            Repeat::Transient,
            || async {
                let response = self
                    .send(self.http.post(&url).form(&*form), &url, timeout, true)
                    .await?;
                self.start_download(response).await
            },
        )
        .await
    }

    async fn start_download(&self, response: reqwest::Response) -> Result<Download, ApiError> {
        if response.status().as_u16() >= 400 {
            return Err(self.read_reply(response).await.err().unwrap_or(
                ApiError::UnexpectedFormat {
                    status: 0,
                    snippet: "error status with a data payload".into(),
                },
            ));
        }
        let server_filename = response
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .and_then(|v| parse_content_disposition(&v));
        let content_length = response.content_length();
        if let (Some(limit), Some(length)) = (self.settings.max_download_bytes, content_length)
            && length > limit
        {
            return Err(ApiError::TooLarge { limit });
        }
        // The headers prove the server is there; a failing body is counted by the download.
        self.throttle.answered();
        Ok(Download {
            response,
            server_filename,
            content_length,
            max_bytes: self.settings.max_download_bytes,
            idle_timeout: self.settings.read_timeout,
            min_rate: self.settings.min_download_rate,
            rate_window: self.settings.throughput_window,
            throttle: Arc::clone(&self.throttle),
        })
    }
}
