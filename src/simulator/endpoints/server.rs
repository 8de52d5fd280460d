//! `server/*`: liveness, queue size and the static catalogues.

use axum::response::Response;
use serde_json::json;

use crate::simulator::App;
use crate::simulator::catalog;
use crate::simulator::envelope::success;

/// `{"online": bool}`; the only endpoint that still answers normally during maintenance.
pub(super) fn online(app: &App) -> Response {
    success(json!({"online": !app.in_maintenance()}), None)
}

/// `{"queuesize": n}` with n = analyses not finished yet.
pub(super) fn info(app: &App) -> Response {
    let now = app.clock.now();
    let queuesize = app.store().queue_size(now, app.analysis_time());
    success(json!({"queuesize": queuesize}), None)
}

pub(super) fn systems() -> Response {
    success(catalog::systems_json(), None)
}

pub(super) fn lia_countries() -> Response {
    success(catalog::countries_json(), None)
}

pub(super) fn languages_and_locales() -> Response {
    success(catalog::languages_json(), None)
}
