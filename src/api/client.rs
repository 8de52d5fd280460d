//! [`JoeClient`]: one method per Joe Sandbox endpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::{debug, warn};
use url::Url;

use super::download::{Download, parse_content_disposition};
use super::error::{ApiError, ApiErrorKind};
use super::params::{SearchQuery, SubmissionParams};
use super::retry::RetryPolicy;
use super::secret::ApiKey;
use super::throttle::Throttle;
use super::transport::{self, Envelope};
use super::types::*;
use super::upload;

/// jbxapi's default server (Cloud Pro).
pub const DEFAULT_SERVER_URL: &str = "https://jbxcloud.joesecurity.org";

/// Chunk size of chunked uploads, fixed by the official client at 10 MiB.
pub const CHUNK_SIZE: u64 = 10 * 1024 * 1024;

/// Progress callback: called with the number of bytes transferred so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Everything needed to talk to one Joe Sandbox server.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Server URL (`https://jbxcloud.joesecurity.org`) or API base (`.../api`,
    /// `http://host/joesandbox/index.php/api`).
    pub server_url: String,
    pub api_key: ApiKey,
    /// Sent as `accept-tac` on submissions; the cloud refuses submissions without it.
    pub accept_tac: bool,
    /// Extra trusted CA certificates (PEM), added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// HTTP(S) proxy for every API connection.
    pub proxy: Option<String>,
    pub connect_timeout: Duration,
    /// Longest silence while reading a reply.
    pub read_timeout: Duration,
    /// Deadline of a small call; uploads and downloads get a deadline sized to their length.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Files larger than this are uploaded in chunks of [`CHUNK_SIZE`].
    pub chunked_threshold: u64,
    /// Largest download accepted; `None` = unlimited.
    pub max_download_bytes: Option<u64>,
    /// A download slower than this (bytes per second, averaged over `throughput_window`) is
    /// aborted: a slowloris server sending a byte every few seconds never trips the read-idle
    /// timeout. 0 = no minimum.
    pub min_download_rate: u64,
    pub throughput_window: Duration,
    pub user_agent: String,
}

impl ClientSettings {
    pub fn new(server_url: impl Into<String>, api_key: ApiKey) -> Self {
        Self {
            server_url: server_url.into(),
            api_key,
            accept_tac: false,
            ca_file: None,
            proxy: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            chunked_threshold: CHUNK_SIZE,
            max_download_bytes: None,
            min_download_rate: 1024,
            throughput_window: Duration::from_secs(60),
            user_agent: format!("jbxd/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Derives the API base from what the user gave: a URL already ending in `/api` (jbxapi's
/// `JBX_API_URL` form, or on-premise `.../joesandbox/index.php/api`) is used as it is, a
/// trailing `/v2` is dropped, anything else gets `/api` appended.
pub fn api_base(server_url: &str) -> Result<Url, ApiError> {
    let trimmed = server_url.trim().trim_end_matches('/');
    let mut url = Url::parse(trimmed)
        .map_err(|e| ApiError::Config(format!("server URL `{trimmed}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::Config(format!(
            "server URL `{trimmed}` must be an http:// or https:// URL with a host"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::Config(
            "the server URL must not contain credentials; use the API key settings".into(),
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    let mut path = url.path().trim_end_matches('/').to_owned();
    if path.ends_with("/api/v2") {
        path.truncate(path.len() - 3);
    }
    if !path.ends_with("/api") {
        path.push_str("/api");
    }
    url.set_path(&path);
    Ok(url)
}

/// Builds the one reqwest client of the process, with rustls on the ring provider.
fn http_client(settings: &ClientSettings) -> Result<reqwest::Client, ApiError> {
    // reqwest is built without a default crypto provider; without this call building the
    // client panics. Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .user_agent(&settings.user_agent)
        .connect_timeout(settings.connect_timeout)
        .read_timeout(settings.read_timeout)
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            ApiError::Config(format!("cannot read the CA file {}: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ApiError::Config(format!("the CA file {} is not PEM: {e}", path.display()))
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    if let Some(proxy) = &settings.proxy {
        let proxy =
            reqwest::Proxy::all(proxy).map_err(|e| ApiError::Config(format!("proxy URL: {e}")))?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| ApiError::Config(format!("cannot build the HTTP client: {e}")))
}

/// A chunked submission created on the server and waiting for its chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedSubmission {
    pub submission_id: String,
    pub file_size: u64,
    pub chunk_count: u64,
}

/// Where a sample comes from and how it is named to the server.
#[derive(Clone, Default)]
pub struct SampleUpload {
    /// Name sent to the server; defaults to the file's base name.
    pub name: Option<String>,
    pub progress: Option<Progress>,
}

/// The Joe Sandbox API v2 client: the only code that knows the vendor's URLs, field names and
/// JSON. Cheap to clone; clones share the connection pool and the throttle (a `Retry-After`
/// holds back every clone, and failures are counted across them).
#[derive(Clone)]
pub struct JoeClient {
    http: reqwest::Client,
    base: Url,
    key: ApiKey,
    settings: Arc<ClientSettings>,
    throttle: Arc<Throttle>,
}

impl std::fmt::Debug for JoeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoeClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl JoeClient {
    pub fn new(settings: ClientSettings) -> Result<Self, ApiError> {
        let base = api_base(&settings.server_url)?;
        let http = http_client(&settings)?;
        Ok(Self {
            http,
            base,
            key: settings.api_key.clone(),
            settings: Arc::new(settings),
            throttle: Arc::default(),
        })
    }

    /// Requests that failed in a row (unreachable, timed out, reset, 5xx, not the API),
    /// across every clone; any answer from the server resets it. The daemon's circuit breaker
    /// opens on it.
    pub fn consecutive_failures(&self) -> u32 {
        self.throttle.consecutive_failures()
    }

    /// The last failure counted by [`Self::consecutive_failures`].
    pub fn last_failure(&self) -> Option<String> {
        self.throttle.last_failure()
    }

    /// How long every request is still held back by a server's `Retry-After`.
    pub fn hold_off_remaining(&self) -> Option<Duration> {
        self.throttle.hold_off_remaining()
    }

    /// The `Retry-After` hold-off in force, with the HTTP status that imposed it.
    pub fn hold_off(&self) -> Option<super::throttle::HoldOff> {
        self.throttle.hold_off_info()
    }

    /// A receiver that changes whenever a hold-off starts or is extended.
    pub fn hold_off_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.throttle.hold_off_changes()
    }

    /// Time since any clone last sent a request.
    pub fn since_last_request(&self) -> Option<Duration> {
        self.throttle.since_last_request()
    }

    /// Requests sent so far by every clone (attempts, not calls).
    pub fn requests_sent(&self) -> u64 {
        self.throttle.requests()
    }

    /// One `server/online` request without retries: the circuit breaker's probe. `Ok` (online
    /// or not) means the server answered.
    pub async fn probe_online(&self) -> Result<bool, ApiError> {
        let form = self.with_key(vec![]);
        let envelope = self.post_once("server/online", &form, true).await?;
        let status: OnlineStatus = decode(envelope.data)?;
        Ok(status.online.unwrap_or(false))
    }

    /// Every request goes out through here: it waits for the client-wide hold-off, sends, and
    /// counts a transport failure.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        timeout: Duration,
        idempotent: bool,
    ) -> Result<reqwest::Response, ApiError> {
        self.throttle.admit().await;
        let result = request
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport::send_error(&e, url, timeout, idempotent));
        if result.is_err() {
            self.throttle.record(&result);
        }
        result
    }

    /// Reads a JSON reply: a `Retry-After` on a 429 or 503 holds back the whole client, and
    /// the outcome is counted for the breaker.
    async fn read_reply(&self, response: reqwest::Response) -> Result<Envelope, ApiError> {
        let status = response.status().as_u16();
        if matches!(status, 429 | 503)
            && let Some(wait) = transport::retry_after(response.headers())
        {
            self.throttle.hold_off(wait, status);
        }
        let result = read_envelope(response).await;
        self.throttle.record(&result);
        result
    }

    /// The API base in use (ends in `/api`).
    pub fn api_base(&self) -> &Url {
        &self.base
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    fn endpoint_url(&self, endpoint: &str) -> String {
        format!("{}/v2/{endpoint}", self.base.as_str().trim_end_matches('/'))
    }

    fn with_key(&self, mut form: Vec<(String, String)>) -> Vec<(String, String)> {
        form.push(("apikey".into(), self.key.expose().to_owned()));
        form
    }

    /// One POST with an urlencoded form; no retry.
    async fn post_once(
        &self,
        endpoint: &str,
        form: &[(String, String)],
        idempotent: bool,
    ) -> Result<Envelope, ApiError> {
        let url = self.endpoint_url(endpoint);
        let timeout = self.settings.request_timeout;
        let response = self
            .send(self.http.post(&url).form(form), &url, timeout, idempotent)
            .await?;
        self.read_reply(response).await
    }

    /// A read-only call, retried on transient failures per the retry policy.
    async fn call(
        &self,
        endpoint: &str,
        form: Vec<(String, String)>,
    ) -> Result<Envelope, ApiError> {
        let form = self.with_key(form);
        let mut attempt = 1;
        loop {
            match self.post_once(endpoint, &form, true).await {
                Ok(envelope) => return Ok(envelope),
                Err(error) => match self.settings.retry.delay_after(&error, attempt) {
                    Some(wait) => {
                        warn!(endpoint, attempt, ?wait, error = %error, "retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return Err(error),
                },
            }
        }
    }

    async fn call_data<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        form: Vec<(String, String)>,
    ) -> Result<T, ApiError> {
        let envelope = self.call(endpoint, form).await?;
        decode(envelope.data)
    }

    /// Follows `pagination.next` until the server stops sending it.
    async fn call_paged<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        form: Vec<(String, String)>,
    ) -> Result<Vec<T>, ApiError> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut page_form = form.clone();
            if let Some(token) = &next {
                page_form.push(("pagination_next".into(), token.clone()));
            }
            let (page, token) = self.call_page(endpoint, page_form).await?;
            items.extend(page);
            match token {
                // A server repeating the same token would loop forever.
                Some(token) if Some(&token) != next.as_ref() => next = Some(token),
                _ => return Ok(items),
            }
        }
    }

    /// One page of a paginated list and the token of the next page, if any.
    pub(super) async fn call_page<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        form: Vec<(String, String)>,
    ) -> Result<(Vec<T>, Option<String>), ApiError> {
        let envelope = self.call(endpoint, form).await?;
        Ok((decode(envelope.data)?, envelope.next))
    }

    // ---- server / account -------------------------------------------------------------

    /// `server/online`: false during maintenance.
    pub async fn server_online(&self) -> Result<bool, ApiError> {
        let status: OnlineStatus = self.call_data("server/online", vec![]).await?;
        Ok(status.online.unwrap_or(false))
    }

    pub async fn server_info(&self) -> Result<ServerInfo, ApiError> {
        self.call_data("server/info", vec![]).await
    }

    pub async fn server_systems(&self) -> Result<Vec<SystemInfo>, ApiError> {
        self.call_data("server/systems", vec![]).await
    }

    /// `account/info` (cloud only; on-premise servers refuse it).
    pub async fn account_info(&self) -> Result<AccountInfo, ApiError> {
        self.call_data("account/info", vec![]).await
    }

    // ---- submissions ------------------------------------------------------------------

    /// The fields every `submission/new` carries besides the target.
    fn submission_form(
        &self,
        params: &SubmissionParams,
        target: (&str, &str),
    ) -> Vec<(String, String)> {
        let mut form = params.to_form();
        form.push((target.0.to_owned(), target.1.to_owned()));
        form.push(("apikey".into(), self.key.expose().to_owned()));
        form.push((
            "accept-tac".into(),
            if self.settings.accept_tac { "1" } else { "0" }.into(),
        ));
        form
    }

    /// Sends a `submission/new` built by `send`. Never retried blindly: only when nothing can
    /// have reached the server (connect failure) or the server explicitly refused with 429.
    async fn submit_with<F, Fut>(&self, mut send: F) -> Result<String, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Envelope, ApiError>>,
    {
        let mut attempt = 1;
        loop {
            let error = match send().await {
                Ok(envelope) => {
                    let created: NewSubmission =
                        decode(envelope.data).map_err(transport::submission_outcome)?;
                    return Ok(created.submission_id);
                }
                Err(error) => transport::submission_outcome(error),
            };
            let retryable =
                matches!(error, ApiError::Unreachable { .. }) || error.status() == Some(429);
            match self.settings.retry.delay_after(&error, attempt) {
                Some(wait) if retryable => {
                    warn!(attempt, ?wait, error = %error, "submission refused, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => return Err(error),
            }
        }
    }

    async fn submit_form(&self, form: Vec<(String, String)>) -> Result<String, ApiError> {
        self.submit_with(|| self.post_once("submission/new", &form, false))
            .await
    }

    /// Submits a URL for website analysis (`url=`).
    pub async fn submit_url(
        &self,
        url: &str,
        params: &SubmissionParams,
    ) -> Result<String, ApiError> {
        self.submit_form(self.submission_form(params, ("url", url)))
            .await
    }

    /// Submits a URL the server downloads and analyses as a sample (`sample-url=`).
    pub async fn submit_sample_url(
        &self,
        url: &str,
        params: &SubmissionParams,
    ) -> Result<String, ApiError> {
        self.submit_form(self.submission_form(params, ("sample-url", url)))
            .await
    }

    /// Submits a sample file, streamed from disk. Files above the chunked threshold go in
    /// chunks; a server without chunked upload (`Unknown parameter chunked-sample.`) gets one
    /// plain multipart upload instead. If a chunk fails, the incomplete submission is deleted
    /// (best effort) so that nothing is left dangling on the server.
    pub async fn submit_sample(
        &self,
        path: &Path,
        params: &SubmissionParams,
        upload: &SampleUpload,
    ) -> Result<String, ApiError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| ApiError::io(format!("cannot read {}", path.display()), e))?
            .len();
        let name = upload
            .name
            .clone()
            .unwrap_or_else(|| upload::default_name(path));
        if size > self.settings.chunked_threshold {
            match self.begin_chunked(&name, size, params).await {
                Ok(chunked) => {
                    if let Err(error) = self
                        .upload_chunks(&chunked, path, upload.progress.clone())
                        .await
                    {
                        return Err(self.abandon_chunked(&chunked, error).await);
                    }
                    return Ok(chunked.submission_id);
                }
                Err(error) if is_chunked_unsupported(&error) => {
                    debug!("server has no chunked upload; falling back to one multipart upload");
                }
                Err(error) => return Err(error),
            }
        }
        self.submit_sample_plain(path, &name, size, params, upload.progress.clone())
            .await
    }

    /// Wraps a failed chunk upload, after trying to delete the incomplete submission.
    async fn abandon_chunked(&self, chunked: &ChunkedSubmission, error: ApiError) -> ApiError {
        let (chunk, source) = match error {
            ApiError::ChunkFailed { chunk, source, .. } => (chunk, source),
            other => (0, Box::new(other)),
        };
        let deleted = self
            .submission_delete(&chunked.submission_id)
            .await
            .inspect_err(|e| warn!(submission_id = %chunked.submission_id, error = %e, "could not delete the incomplete chunked submission"))
            .is_ok();
        ApiError::ChunkFailed {
            submission_id: chunked.submission_id.clone(),
            chunk,
            deleted,
            source,
        }
    }

    /// One multipart `submission/new` with the whole file as the `sample` part.
    pub async fn submit_sample_plain(
        &self,
        path: &Path,
        name: &str,
        size: u64,
        params: &SubmissionParams,
        progress: Option<Progress>,
    ) -> Result<String, ApiError> {
        let url = self.endpoint_url("submission/new");
        let timeout = upload::transfer_timeout(size);
        let fields = self.submission_form_fields(params);
        self.submit_with(|| async {
            let body = upload::file_body(path, 0, size, progress.clone()).await?;
            let mut form = Form::new().percent_encode_noop();
            for (k, v) in &fields {
                form = form.text(k.clone(), v.clone());
            }
            let part = Part::stream_with_length(body, size).file_name(upload::wire_file_name(name));
            form = form.part("sample", part);
            let response = self
                .send(self.http.post(&url).multipart(form), &url, timeout, false)
                .await?;
            self.read_reply(response).await
        })
        .await
    }

    fn submission_form_fields(&self, params: &SubmissionParams) -> Vec<(String, String)> {
        let mut form = params.to_form();
        form.push(("apikey".into(), self.key.expose().to_owned()));
        form.push((
            "accept-tac".into(),
            if self.settings.accept_tac { "1" } else { "0" }.into(),
        ));
        form
    }

    /// Step 1 of a chunked upload: creates the submission (`chunked-sample=<name>`), which then
    /// waits for its chunks. Callers that must not lose the id record it before step 2.
    pub async fn begin_chunked(
        &self,
        name: &str,
        file_size: u64,
        params: &SubmissionParams,
    ) -> Result<ChunkedSubmission, ApiError> {
        let form = self.submission_form(params, ("chunked-sample", &upload::wire_file_name(name)));
        let submission_id = self.submit_form(form).await?;
        Ok(ChunkedSubmission {
            submission_id,
            file_size,
            chunk_count: file_size.div_ceil(CHUNK_SIZE),
        })
    }

    /// Step 2 of a chunked upload: sends every chunk in order (1-based). There is no finish
    /// call: the server starts when the last chunk arrives.
    pub async fn upload_chunks(
        &self,
        chunked: &ChunkedSubmission,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<(), ApiError> {
        let url = self.endpoint_url("submission/chunked-sample");
        for index in 1..=chunked.chunk_count {
            let offset = (index - 1) * CHUNK_SIZE;
            let len = CHUNK_SIZE.min(chunked.file_size - offset);
            let timeout = upload::transfer_timeout(len);
            let sent_before = offset;
            let chunk_progress = progress
                .clone()
                .map(|p| -> Progress { Arc::new(move |n| p(sent_before + n)) });
            let result = async {
                let body = upload::file_body(path, offset, len, chunk_progress).await?;
                let fields: [(&str, String); 7] = [
                    ("apikey", self.key.expose().to_owned()),
                    ("submission_id", chunked.submission_id.clone()),
                    ("file-size", chunked.file_size.to_string()),
                    ("chunk-size", CHUNK_SIZE.to_string()),
                    ("chunk-count", chunked.chunk_count.to_string()),
                    ("current-chunk-index", index.to_string()),
                    ("current-chunk-size", len.to_string()),
                ];
                let mut form = Form::new();
                for (k, v) in fields {
                    form = form.text(k, v);
                }
                form = form.part(
                    "chunk",
                    Part::stream_with_length(body, len).file_name("chunk"),
                );
                let response = self
                    .send(self.http.post(&url).multipart(form), &url, timeout, false)
                    .await?;
                self.read_reply(response).await
            }
            .await;
            if let Err(error) = result {
                return Err(ApiError::ChunkFailed {
                    submission_id: chunked.submission_id.clone(),
                    chunk: index,
                    deleted: false,
                    source: Box::new(transport::submission_outcome(error)),
                });
            }
        }
        Ok(())
    }

    pub async fn submission_info(&self, submission_id: &str) -> Result<Submission, ApiError> {
        self.call_data(
            "submission/info",
            vec![("submission_id".into(), submission_id.to_owned())],
        )
        .await
    }

    /// Every submission, all pages.
    pub async fn submission_list(&self) -> Result<Vec<SubmissionStub>, ApiError> {
        self.call_paged("submission/list", vec![]).await
    }

    pub async fn submission_delete(&self, submission_id: &str) -> Result<(), ApiError> {
        self.call(
            "submission/delete",
            vec![("submission_id".into(), submission_id.to_owned())],
        )
        .await
        .map(drop)
    }

    // ---- analyses ---------------------------------------------------------------------

    /// Every analysis (webid stubs, newest first), all pages.
    pub async fn analysis_list(&self) -> Result<Vec<AnalysisStub>, ApiError> {
        self.call_paged("analysis/list", vec![("pagination".into(), "1".into())])
            .await
    }

    pub async fn analysis_info(&self, webid: &str) -> Result<Analysis, ApiError> {
        self.call_data("analysis/info", vec![("webid".into(), webid.to_owned())])
            .await
    }

    pub async fn analysis_delete(&self, webid: &str) -> Result<(), ApiError> {
        self.call("analysis/delete", vec![("webid".into(), webid.to_owned())])
            .await
            .map(drop)
    }

    /// `analysis/search`; results may be full analyses or `{webid}` stubs.
    pub async fn analysis_search(&self, query: &SearchQuery) -> Result<Vec<Analysis>, ApiError> {
        self.call_data("analysis/search", query.to_form()).await
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
        let url = self.endpoint_url("analysis/download");
        let mut form = vec![
            ("webid".to_owned(), webid.to_owned()),
            ("type".to_owned(), report_type.to_owned()),
        ];
        if let Some(run) = run {
            form.push(("run".into(), run.to_string()));
        }
        let form = self.with_key(form);
        // Downloads may be large: a total deadline of 1 h; the read-idle timeout and the
        // minimum throughput (see `Download::write_to`) stop stalled and crawling bodies sooner.
        let timeout = Duration::from_secs(3600);
        let mut attempt = 1;
        loop {
            let result = async {
                let response = self
                    .send(self.http.post(&url).form(&form), &url, timeout, true)
                    .await?;
                self.start_download(response).await
            }
            .await;
            match result {
                Ok(download) => return Ok(download),
                Err(error) => match self.settings.retry.delay_after(&error, attempt) {
                    Some(wait) => {
                        warn!(webid, report_type, attempt, ?wait, error = %error, "retrying download");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return Err(error),
                },
            }
        }
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

    /// A raw call for endpoints without a typed method (e.g. newer ones); read-only retries
    /// apply. Returns the `data` payload.
    pub async fn raw_call(
        &self,
        endpoint: &str,
        form: Vec<(String, String)>,
    ) -> Result<Value, ApiError> {
        Ok(self.call(endpoint, form).await?.data)
    }
}

fn is_chunked_unsupported(error: &ApiError) -> bool {
    matches!(error, ApiError::Api { kind: ApiErrorKind::InvalidParameter, message, .. }
        if message.contains("chunked-sample"))
}

/// Reads a whole (small) reply and decodes the envelope. Replies are capped at 64 MiB so a
/// hostile server cannot exhaust memory through a JSON call.
async fn read_envelope(response: reqwest::Response) -> Result<Envelope, ApiError> {
    const MAX_REPLY: usize = 64 * 1024 * 1024;
    let status = response.status().as_u16();
    let retry_after = transport::retry_after(response.headers());
    let mut body = Vec::new();
    let mut stream = response;
    while let Some(chunk) = stream
        .chunk()
        .await
        .map_err(|e| transport::body_error(&e))?
    {
        if body.len() + chunk.len() > MAX_REPLY {
            return Err(ApiError::UnexpectedFormat {
                status,
                snippet: format!("reply larger than {MAX_REPLY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    transport::parse_reply(status, retry_after, &body)
}

fn decode<T: DeserializeOwned>(data: Value) -> Result<T, ApiError> {
    let snippet = transport::snippet(data.to_string().as_bytes());
    serde_json::from_value(data).map_err(|e| ApiError::UnexpectedFormat {
        status: 200,
        snippet: format!("{e}; data began with {snippet}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_accepts_server_urls_and_api_urls() {
        let base = |s| api_base(s).unwrap().to_string();
        assert_eq!(
            base("https://jbxcloud.joesecurity.org"),
            "https://jbxcloud.joesecurity.org/api"
        );
        assert_eq!(
            base("https://jbxcloud.joesecurity.org/api/"),
            "https://jbxcloud.joesecurity.org/api"
        );
        assert_eq!(
            base("http://sandbox.local/joesandbox/index.php/api"),
            "http://sandbox.local/joesandbox/index.php/api"
        );
        assert_eq!(
            base("http://sandbox.local/joesandbox/index.php"),
            "http://sandbox.local/joesandbox/index.php/api"
        );
        assert_eq!(base("http://127.0.0.1:9/api/v2"), "http://127.0.0.1:9/api");
    }

    #[test]
    fn api_base_rejects_non_http_urls_and_credentials() {
        assert!(api_base("ftp://x/api").is_err());
        assert!(api_base("jbxcloud.joesecurity.org").is_err());
        let err = api_base("https://user:secret@host/api").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn debug_output_of_the_client_has_no_key() {
        let key = ApiKey::new("JBXD-SENTINEL-debug").unwrap();
        let client = JoeClient::new(ClientSettings::new("http://127.0.0.1:9", key)).unwrap();
        let printed = format!("{client:?} {:?}", client.settings());
        assert!(!printed.contains("SENTINEL"), "{printed}");
    }
}
