//! Routing, fault application and request logging around the API endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::conn::ConnHandle;
use super::endpoints::{self, RequestCtx};
use super::envelope::{ApiError, html_error_page};
use super::faults::Fault;
use super::form::parse_body;
use super::{App, RequestRecord, control};

/// The API lives under both the Cloud and the on-premise base path.
const API_BASES: &[&str] = &["/api/v2/", "/joesandbox/index.php/api/v2/"];

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/_sim/state", get(control::state))
        .route("/_sim/log", get(control::log))
        .route(
            "/_sim/faults",
            get(control::list_faults)
                .post(control::add_fault)
                .delete(control::clear_faults),
        )
        .route("/_sim/clock", post(control::advance_clock))
        .route("/_sim/maintenance", post(control::maintenance))
        .fallback(api)
        // Samples can be gigabytes; the form parser enforces its own per-part limits.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

/// `group/action` for an API path, tolerating doubled and trailing slashes.
pub(crate) fn api_endpoint(path: &str) -> Option<String> {
    let mut normalized = String::with_capacity(path.len() + 1);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        normalized.push('/');
        normalized.push_str(segment);
    }
    normalized.push('/');
    API_BASES.iter().find_map(|base| {
        normalized
            .strip_prefix(base)
            .map(|rest| rest.trim_end_matches('/').to_owned())
    })
}

/// Every request outside `/_sim`: decide the fault, run the endpoint in its own task (so an
/// action completes even if the client goes away), log, and shape the reply.
async fn api(
    State(app): State<Arc<App>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    request: Request,
) -> Response {
    let seq = app.next_seq();
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let mut record = RequestRecord {
        seq,
        endpoint: path.clone(),
        method: method.to_string(),
        http_status: None,
        fault: None,
        comments: None,
        submission_id: None,
        body_complete: false,
        body_bytes: 0,
        at_ms: u64::try_from(app.clock.now().as_millis()).unwrap_or(u64::MAX),
    };
    let Some(endpoint) = api_endpoint(&path) else {
        return finish(&app, record, ApiError::unknown_endpoint().into_response());
    };
    record.endpoint = endpoint.clone();
    if method != Method::POST {
        return finish(&app, record, ApiError::method_not_allowed().into_response());
    }
    let fault = app.faults.take(&endpoint);
    record.fault = fault.as_ref().map(|f| f.kind().to_owned());
    tracing::debug!(%endpoint, peer = %conn.peer, fault = ?record.fault, "simulator request");

    if fault == Some(Fault::ResetBeforeBody) {
        conn.kill.kill();
        app.push_record(record);
        // Never delivered: the killed connection fails on the first write.
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }

    let task_app = Arc::clone(&app);
    let task_fault = fault.clone();
    let outcome = tokio::spawn(async move {
        let response = process(
            &task_app,
            &endpoint,
            request,
            task_fault.as_ref(),
            &mut record,
        )
        .await;
        if task_fault == Some(Fault::ResetAfterBody) {
            record.http_status = None;
            task_app.push_record(record);
        } else {
            record.http_status = Some(response.status().as_u16());
            task_app.push_record(record);
        }
        response
    })
    .await;
    let response = match outcome {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(error = %err, "simulator request task failed");
            ApiError::internal("Internal error.").into_response()
        }
    };
    match fault {
        Some(Fault::ResetAfterBody) => {
            conn.kill.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Some(Fault::Latency { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            response
        }
        _ => response,
    }
}

fn finish(app: &App, mut record: RequestRecord, response: Response) -> Response {
    record.http_status = Some(response.status().as_u16());
    app.push_record(record);
    response
}

/// Read the body, then either answer with the injected error or run the endpoint.
async fn process(
    app: &Arc<App>,
    endpoint: &str,
    request: Request,
    fault: Option<&Fault>,
    record: &mut RequestRecord,
) -> Response {
    let parsed = parse_body(request, &app.upload_dir).await;
    record.body_complete = parsed.complete;
    record.body_bytes = parsed.bytes;
    let form = match parsed.form {
        Ok(form) => form,
        Err(error) => return error.into_response(),
    };
    if endpoint == "submission/new" {
        record.comments = form.get("comments").map(str::to_owned);
    }
    match fault {
        Some(Fault::Error {
            http_status,
            code,
            message,
        }) => {
            let status =
                StatusCode::from_u16(*http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            ApiError::new(status, *code, message.clone()).into_response()
        }
        Some(Fault::RateLimit { retry_after }) => {
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                1,
                "Too many requests, please slow down.",
            )
            .into_response();
            if let Some(value) = retry_after
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Some(Fault::NonJson { http_status }) => {
            html_error_page(StatusCode::from_u16(*http_status).unwrap_or(StatusCode::BAD_GATEWAY))
        }
        _ => {
            let mut ctx = RequestCtx {
                fault: fault.cloned(),
                created_submission: None,
            };
            let response = match endpoints::dispatch(app, endpoint, form, &mut ctx).await {
                Ok(response) => response,
                Err(error) => error.into_response(),
            };
            record.submission_id = ctx.created_submission;
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_bases_and_sloppy_slashes_map_to_the_endpoint() {
        assert_eq!(
            api_endpoint("/api/v2/server/online").as_deref(),
            Some("server/online")
        );
        assert_eq!(
            api_endpoint("/api/v2/server/online/").as_deref(),
            Some("server/online")
        );
        assert_eq!(
            api_endpoint("/api//v2/server/online").as_deref(),
            Some("server/online")
        );
        assert_eq!(
            api_endpoint("/joesandbox/index.php/api/v2/analysis/info").as_deref(),
            Some("analysis/info")
        );
        assert_eq!(api_endpoint("/api/v2/").as_deref(), Some(""));
        assert_eq!(api_endpoint("/other/v2/server/online"), None);
        assert_eq!(api_endpoint("/api/v1/server/online"), None);
    }
}
