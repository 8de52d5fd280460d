//! The API endpoints, one file per group. [`dispatch`] applies the checks every endpoint
//! shares (known endpoint, API key, maintenance) and routes.

mod account;
mod analysis;
mod chunked;
mod download;
mod server;
mod submission;

use std::sync::Arc;

use axum::response::Response;

use super::App;
use super::envelope::ApiError;
use super::faults::Fault;
use super::form::FormData;

const ENDPOINTS: &[&str] = &[
    "server/online",
    "server/info",
    "server/systems",
    "server/lia_countries",
    "server/languages_and_locales",
    "account/info",
    "submission/new",
    "submission/chunked-sample",
    "submission/info",
    "submission/list",
    "submission/delete",
    "analysis/info",
    "analysis/list",
    "analysis/search",
    "analysis/delete",
    "analysis/download",
];

/// Per-request context: what the fault layer wants from an endpoint, and what the endpoint did.
#[derive(Debug, Default)]
pub(crate) struct RequestCtx {
    pub(crate) fault: Option<Fault>,
    pub(crate) created_submission: Option<String>,
}

pub(crate) async fn dispatch(
    app: &Arc<App>,
    endpoint: &str,
    form: FormData,
    ctx: &mut RequestCtx,
) -> Result<Response, ApiError> {
    if !ENDPOINTS.contains(&endpoint) {
        return Err(ApiError::unknown_endpoint());
    }
    match form.get("apikey") {
        None => return Err(ApiError::missing("apikey")),
        Some(key) if key != app.config.api_key => return Err(ApiError::invalid_api_key()),
        Some(_) => {}
    }
    if app.in_maintenance() && endpoint != "server/online" {
        return Err(ApiError::offline());
    }
    match endpoint {
        "server/online" => Ok(server::online(app)),
        "server/info" => Ok(server::info(app)),
        "server/systems" => Ok(server::systems()),
        "server/lia_countries" => Ok(server::lia_countries()),
        "server/languages_and_locales" => Ok(server::languages_and_locales()),
        "account/info" => account::info(app),
        "submission/new" => submission::new(app, form, ctx).await,
        "submission/chunked-sample" => chunked::chunk(app, form).await,
        "submission/info" => submission::info(app, &form),
        "submission/list" => submission::list(app, &form),
        "submission/delete" => submission::delete(app, &form),
        "analysis/info" => analysis::info(app, &form),
        "analysis/list" => analysis::list(app, &form),
        "analysis/search" => analysis::search(app, &form),
        "analysis/delete" => analysis::delete(app, &form),
        "analysis/download" => download::download(app, &form, ctx).await,
        _ => Err(ApiError::unknown_endpoint()),
    }
}

/// A required numeric id: missing → code 2; not a number → code 3 "not found" (an id that
/// cannot exist).
pub(crate) fn required_id(form: &FormData, name: &str, not_found: &str) -> Result<u64, ApiError> {
    let value = form
        .get_nonempty(name)
        .ok_or_else(|| ApiError::missing(name))?;
    value
        .trim()
        .parse()
        .map_err(|_| ApiError::not_found(not_found))
}

/// `"0"`/`"1"` flags of read endpoints: absent means false.
pub(crate) fn flag(form: &FormData, name: &str) -> Result<bool, ApiError> {
    match form.get(name) {
        None | Some("0") | Some("") => Ok(false),
        Some("1") => Ok(true),
        Some(_) => Err(ApiError::invalid(format!(
            "Invalid value for parameter {name}."
        ))),
    }
}
