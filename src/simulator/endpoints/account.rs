//! `account/info` (Cloud only) and the quota check shared with `submission/new`.

use axum::response::Response;
use serde_json::{Value, json};

use crate::simulator::envelope::{ApiError, success};
use crate::simulator::state::{QuotaUsage, Store};
use crate::simulator::{App, SimMode};

pub(super) fn info(app: &App) -> Result<Response, ApiError> {
    if app.config.mode == SimMode::OnPrem {
        return Err(ApiError::unknown_endpoint());
    }
    let usage = app.store().quota_usage(&app.clock.wall_now());
    Ok(success(
        json!({
            "type": "ultimate",
            "quota": {
                "daily": quota_json(usage.daily, app.config.daily_quota),
                "monthly": quota_json(usage.monthly, app.config.monthly_quota),
            },
        }),
        None,
    ))
}

/// Unlimited quotas are shown with `null` limit and remaining.
fn quota_json(current: u64, limit: Option<u64>) -> Value {
    json!({
        "current": current,
        "limit": limit,
        "remaining": limit.map(|limit| limit.saturating_sub(current)),
    })
}

/// Code 1 (HTTP 429) once the daily or monthly quota is used up; Cloud mode only.
pub(super) fn check_quota(app: &App, store: &Store) -> Result<(), ApiError> {
    if app.config.mode != SimMode::Cloud {
        return Ok(());
    }
    let QuotaUsage { daily, monthly } = store.quota_usage(&app.clock.wall_now());
    if let Some(limit) = app.config.daily_quota.filter(|limit| daily >= *limit) {
        return Err(ApiError::quota(limit, "day"));
    }
    if let Some(limit) = app.config.monthly_quota.filter(|limit| monthly >= *limit) {
        return Err(ApiError::quota(limit, "month"));
    }
    Ok(())
}
