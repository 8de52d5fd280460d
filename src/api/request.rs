//! Request plumbing shared by every endpoint method: the client-wide hold-off, sending with a
//! deadline, reading and decoding the envelope, the one retry helper, and paging.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::warn;
use zeroize::Zeroizing;

use super::client::JoeClient;
use super::error::ApiError;
use super::transport::{self, Envelope};
use super::wire;

/// A request form as (field, value) pairs; [`JoeClient::with_key`] returns it zeroizing.
pub(super) type KeyedForm = Vec<(String, String)>;

/// Which failures the retry helper may repeat, on top of the retry policy's own rule (only
/// transient failures, within the attempt limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    /// A read-only call: every transient failure.
    Transient,
    /// A `submission/new` (never retried blindly, see `ARCHITECTURE.md`): only when nothing
    /// can have reached the server (connect failure) or the server refused with 429.
    NothingReachedTheServer,
}

impl Repeat {
    fn allows(self, error: &ApiError) -> bool {
        match self {
            Self::Transient => true,
            Self::NothingReachedTheServer => {
                matches!(error, ApiError::Unreachable { .. }) || error.status() == Some(429)
            }
        }
    }
}

impl JoeClient {
    /// Every request goes out through here: it waits for the client-wide hold-off, sends, and
    /// counts a transport failure.
    pub(super) async fn send(
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
    pub(super) async fn read_reply(
        &self,
        response: reqwest::Response,
    ) -> Result<Envelope, ApiError> {
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

    pub(super) fn endpoint_url(&self, endpoint: &str) -> String {
        format!("{}/v2/{endpoint}", self.base.as_str().trim_end_matches('/'))
    }

    /// `form` with the API key added, in a buffer zeroed on drop: the form holds the key in
    /// clear for as long as the call (and its retries) lasts.
    pub(super) fn with_key(&self, form: Vec<(String, String)>) -> Zeroizing<KeyedForm> {
        let mut form = Zeroizing::new(form);
        form.push((wire::KEY.into(), self.key_text().to_string()));
        form
    }

    /// One POST with an urlencoded form; no retry.
    pub(super) async fn post_once(
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

    /// The one retry loop of the client: runs `once` until it succeeds, the failure is not
    /// one `repeat` allows, or the retry policy gives up (attempt limit, `Retry-After` too
    /// long), sleeping the policy's delay in between.
    pub(super) async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        repeat: Repeat,
        mut once: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 1;
        loop {
            let error = match once().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            match self.settings.retry.delay_after(&error, attempt) {
                Some(wait) if repeat.allows(&error) => {
                    warn!(call = what, attempt, ?wait, error = %error, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => return Err(error),
            }
        }
    }

    /// A read-only call, retried on transient failures per the retry policy.
    pub(super) async fn call(
        &self,
        endpoint: &str,
        form: Vec<(String, String)>,
    ) -> Result<Envelope, ApiError> {
        let form = self.with_key(form);
        self.with_retries(endpoint, Repeat::Transient, || {
            self.post_once(endpoint, &form, true)
        })
        .await
    }

    pub(super) async fn call_data<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        form: Vec<(String, String)>,
    ) -> Result<T, ApiError> {
        let envelope = self.call(endpoint, form).await?;
        decode(envelope.data)
    }

    /// Follows `pagination.next` while the server sends it and `keep` says a page is worth
    /// following (given the page just read). A server repeating the same token would loop
    /// forever, so a repeated token ends the list too.
    pub(super) async fn call_paged<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        form: Vec<(String, String)>,
        mut keep: impl FnMut(Vec<T>, &mut Vec<T>) -> bool,
    ) -> Result<Vec<T>, ApiError> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut page_form = form.clone();
            if let Some(token) = &next {
                page_form.push((wire::PAGINATION_NEXT.into(), token.clone()));
            }
            let envelope = self.call(endpoint, page_form).await?;
            let page: Vec<T> = decode(envelope.data)?;
            let worth_following = keep(page, &mut items);
            match envelope.next {
                Some(token) if worth_following && Some(&token) != next.as_ref() => {
                    next = Some(token);
                }
                _ => return Ok(items),
            }
        }
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

pub(super) fn decode<T: DeserializeOwned>(data: Value) -> Result<T, ApiError> {
    let snippet = transport::snippet(data.to_string().as_bytes());
    serde_json::from_value(data).map_err(|e| ApiError::UnexpectedFormat {
        status: 200,
        snippet: format!("{e}; data began with {snippet}"),
    })
}
