//! The remote checks: the server (`server/online`, or the circuit breaker's probe while it is
//! open), the API key and the quota (`account/info`, `server/info` on on-premise servers), and
//! the terms, each putting its pause in force or lifting it. They ask the `api` client only;
//! during a `Retry-After` hold-off they report it instead of waiting (RELIABILITY.md case 118).

use super::super::key_reload::{self, Reloaded};
use super::{HealthReport, Status, set_pause};
use crate::api::{ApiError, ApiErrorKind, HoldOff};
use crate::app::{App, PauseReason};
use crate::db;

/// The server, the key and the quota; during a `Retry-After` hold-off, only what it is (no
/// request would go out before its end, and the check would wait with it).
pub(super) async fn check_api(app: &App, report: &mut HealthReport) {
    if let Some(hold_off) = app.client.hold_off() {
        held_off(report, hold_off);
        return;
    }
    let mut changes = app.client.hold_off_changes();
    changes.mark_unchanged();
    let mut api = HealthReport::default();
    let checked = {
        let run = async {
            if check_server(app, &mut api).await {
                check_account(app, &mut api).await;
            }
        };
        tokio::select! {
            _ = run => true,
            // A hold-off began mid-check: say so instead of waiting it out.
            _ = changes.changed() => false,
        }
    };
    match (checked, app.client.hold_off()) {
        (false, Some(hold_off)) => held_off(report, hold_off),
        _ => report.checks.extend(api.checks),
    }
}

fn held_off(report: &mut HealthReport, hold_off: HoldOff) {
    let until =
        chrono::Utc::now() + chrono::Duration::from_std(hold_off.remaining).unwrap_or_default();
    report.push(
        "server",
        Status::Degraded,
        format!(
            "held off: the server answered HTTP {} with Retry-After; no API request before {} \
             ({} s from now)",
            hold_off.status,
            db::time_text(until),
            hold_off.remaining.as_secs()
        ),
    );
}

/// `server/online`. Returns whether the server answered and is online (the account checks
/// only make sense then).
async fn check_server(app: &App, report: &mut HealthReport) -> bool {
    // While the breaker is open this is one of its probes: a single request, no retries.
    let online = if app.breaker_open() {
        app.client.probe_online().await
    } else {
        app.client.server_online().await
    };
    match online {
        Ok(true) => {
            set_pause(app, PauseReason::Maintenance, false, "").await;
            report.push("server", Status::Ok, "online");
            true
        }
        Ok(false) => {
            maintenance(app, report, "the server's online check reports maintenance").await;
            false
        }
        Err(e) if e.kind() == Some(ApiErrorKind::ServerOffline) => {
            maintenance(app, report, &e.server_message()).await;
            false
        }
        // server/online needs the key too; the account check says what is wrong with it.
        Err(e) if e.kind() == Some(ApiErrorKind::InvalidApiKey) => {
            set_pause(app, PauseReason::Maintenance, false, "").await;
            report.push("server", Status::Ok, "reachable");
            true
        }
        Err(e) => {
            // Unreachable or erroring: the workers' own retries cope; nothing to pause.
            report.push("server", Status::Degraded, format!("unreachable: {e}"));
            false
        }
    }
}

async fn maintenance(app: &App, report: &mut HealthReport, detail: &str) {
    set_pause(app, PauseReason::Maintenance, true, detail).await;
    report.push("server", Status::Degraded, format!("maintenance: {detail}"));
}

fn is_key_refusal(e: &ApiError) -> bool {
    e.kind() == Some(ApiErrorKind::InvalidApiKey)
}

/// The key (and, on the cloud, the quota): `account/info`, or `server/info` on on-premise
/// servers that do not have `account/info`. A rejected key is re-read from its source (a
/// rotated key file, credential or vault secret) and, when it changed, checked once more.
async fn check_account(app: &App, report: &mut HealthReport) {
    let mut attempt = HealthReport::default();
    let Some(mut rejected) = check_account_once(app, &mut attempt).await else {
        report.checks.extend(attempt.checks);
        return;
    };
    let reloaded = key_reload::reload_key(app).await;
    if matches!(reloaded, Reloaded::Changed(_)) {
        attempt = HealthReport::default();
        match check_account_once(app, &mut attempt).await {
            None => {
                report.checks.extend(attempt.checks);
                return;
            }
            Some(again) => rejected = again,
        }
    }
    key_invalid(app, report, &reloaded.rejected_detail(&rejected)).await;
    report.checks.extend(attempt.checks);
}

/// One try of [`check_account`]: `Some(server message)` when the key was rejected (nothing
/// recorded for the key yet).
async fn check_account_once(app: &App, report: &mut HealthReport) -> Option<String> {
    match app.client.account_info().await {
        Ok(info) => {
            key_valid(app, report).await;
            let mut exhausted = None;
            let mut parts = Vec::new();
            if let Some(quotas) = &info.quota {
                for (period, quota) in [("daily", &quotas.daily), ("monthly", &quotas.monthly)] {
                    let Some(quota) = quota else { continue };
                    match (quota.remaining, quota.limit) {
                        (Some(remaining), limit) => {
                            parts.push(format!("{period} {remaining} left"));
                            if remaining <= 0 && exhausted.is_none() {
                                exhausted = Some(format!(
                                    "{period} quota used up (limit {})",
                                    limit.map_or("?".into(), |l| l.to_string())
                                ));
                            }
                        }
                        (None, _) => parts.push(format!("{period} unlimited")),
                    }
                }
            }
            match exhausted {
                Some(detail) => {
                    set_pause(app, PauseReason::QuotaExceeded, true, &detail).await;
                    report.push("quota", Status::Degraded, detail);
                }
                None => {
                    set_pause(app, PauseReason::QuotaExceeded, false, "").await;
                    let detail = if parts.is_empty() {
                        "no quota reported".to_owned()
                    } else {
                        parts.join(", ")
                    };
                    report.push("quota", Status::Ok, detail);
                }
            }
        }
        Err(e) if is_key_refusal(&e) => return Some(e.server_message()),
        Err(e)
            if matches!(
                e.kind(),
                Some(ApiErrorKind::UnknownEndpoint | ApiErrorKind::PermissionDenied)
            ) =>
        {
            // On-premise: no account/info and no quota; server/info proves the key.
            match app.client.server_info().await {
                Ok(_) => {
                    key_valid(app, report).await;
                    set_pause(app, PauseReason::QuotaExceeded, false, "").await;
                    report.push("quota", Status::Ok, "not applicable (on-premise)");
                }
                Err(e) if is_key_refusal(&e) => return Some(e.server_message()),
                Err(e) => report.push("api_key", Status::Degraded, format!("cannot check: {e}")),
            }
        }
        Err(e) => report.push("api_key", Status::Degraded, format!("cannot check: {e}")),
    }
    None
}

async fn key_valid(app: &App, report: &mut HealthReport) {
    set_pause(app, PauseReason::InvalidApiKey, false, "").await;
    report.push("api_key", Status::Ok, "accepted");
}

async fn key_invalid(app: &App, report: &mut HealthReport, detail: &str) {
    set_pause(app, PauseReason::InvalidApiKey, true, detail).await;
    report.push("api_key", Status::Failed, detail);
}

/// Acceptance of the terms cannot be tested without submitting; the pause (set by a refused
/// submission) is lifted once `api.accept_tac` is on.
pub(super) async fn check_terms(app: &App, report: &mut HealthReport) {
    let paused = app
        .pauses()
        .await
        .map(|p| p.iter().any(|p| p.reason == PauseReason::TermsNotAccepted))
        .unwrap_or(false);
    if app.config.api.accept_tac {
        if paused {
            set_pause(app, PauseReason::TermsNotAccepted, false, "").await;
        }
        report.push("terms", Status::Ok, "accepted (api.accept_tac = true)");
    } else if paused {
        report.push(
            "terms",
            Status::Failed,
            "the server requires accepting the terms: set api.accept_tac = true",
        );
    } else {
        report.push(
            "terms",
            Status::Ok,
            "not accepted (only the cloud requires it)",
        );
    }
}
