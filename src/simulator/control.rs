//! The `/_sim/*` control API (see the module docs of `simulator` for the table).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::FaultRule;
use super::{App, RequestRecord};

pub(crate) async fn state(State(app): State<Arc<App>>) -> Json<Value> {
    let now = app.clock.now();
    let analysis_time = app.analysis_time();
    let store = app.store();
    Json(json!({
        "mode": app.config.mode.as_str(),
        "maintenance": app.in_maintenance(),
        "clock_offset_seconds": app.clock.offset().as_secs_f64(),
        "submissions": store.submissions.len(),
        "analyses": store.analyses.len(),
        "accepted_submissions": store.accepted_submissions().len(),
        "queuesize": store.queue_size(now, analysis_time),
        "requests": app.request_log().len(),
        "faults": app.faults.rules(),
    }))
}

pub(crate) async fn log(State(app): State<Arc<App>>) -> Json<Vec<RequestRecord>> {
    Json(app.request_log())
}

pub(crate) async fn list_faults(State(app): State<Arc<App>>) -> Json<Vec<FaultRule>> {
    Json(app.faults.rules())
}

pub(crate) async fn add_fault(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<FaultRule>(&body) {
        Ok(rule) => {
            tracing::info!(?rule, "simulator fault added");
            app.faults.add(rule);
            Json(json!({"ok": true})).into_response()
        }
        Err(err) => bad_request(&err.to_string()),
    }
}

pub(crate) async fn clear_faults(State(app): State<Arc<App>>) -> Json<Value> {
    app.faults.clear();
    Json(json!({"ok": true}))
}

#[derive(Deserialize)]
struct ClockRequest {
    advance_seconds: f64,
}

pub(crate) async fn advance_clock(
    State(app): State<Arc<App>>,
    body: axum::body::Bytes,
) -> Response {
    match serde_json::from_slice::<ClockRequest>(&body) {
        Ok(request) if request.advance_seconds.is_finite() && request.advance_seconds >= 0.0 => {
            app.clock
                .advance(Duration::from_secs_f64(request.advance_seconds));
            Json(json!({"ok": true, "clock_offset_seconds": app.clock.offset().as_secs_f64()}))
                .into_response()
        }
        Ok(_) => bad_request("advance_seconds must be a non-negative number"),
        Err(err) => bad_request(&err.to_string()),
    }
}

#[derive(Deserialize)]
struct MaintenanceRequest {
    on: bool,
}

pub(crate) async fn maintenance(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<MaintenanceRequest>(&body) {
        Ok(request) => {
            app.set_maintenance(request.on);
            Json(json!({"ok": true, "maintenance": request.on})).into_response()
        }
        Err(err) => bad_request(&err.to_string()),
    }
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"ok": false, "error": message})),
    )
        .into_response()
}
