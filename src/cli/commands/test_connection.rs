//! `jbxd test-connection`: tells which part of the connection is wrong, if any.

use serde::Serialize;

use crate::api::types::AccountInfo;
use crate::api::{ApiError, ApiErrorKind, JoeClient};

use crate::cli::output::print_json;
use crate::cli::{CliError, Context, Outcome};

/// What a connection test found. One verdict per way a connection fails in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Unreachable,
    NotJoeApi,
    InvalidApiKey,
    Maintenance,
    TermsNotAccepted,
    /// Something else went wrong (e.g. a server error); the message says what.
    Error,
}

/// The result of a connection test, as printed with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub message: String,
    pub api_base: String,
    /// `cloud` when `account/info` answered, `on-premise` when only `server/info` did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountInfo>,
}

pub async fn run(context: &Context) -> Result<Outcome, CliError> {
    let client = context.client()?;
    let report = test(&client).await;
    if context.json {
        print_json(&report)?;
    } else if report.verdict == Verdict::Ok {
        println!("{}", report.message);
    } else {
        eprintln!("{}", report.message);
    }
    Ok(if report.verdict == Verdict::Ok {
        Outcome::success()
    } else {
        Outcome::failure()
    })
}

/// Runs the checks in the order that makes each answer meaningful: is it there and is it Joe
/// (`server/online`), does it know the key (`account/info`, or `server/info` on premise), and
/// would it take a submission (terms accepted, for the Cloud).
pub async fn test(client: &JoeClient) -> Report {
    let base = client.api_base().as_str().trim_end_matches('/').to_owned();
    let report = |verdict, message: String| Report {
        verdict,
        message,
        api_base: base.clone(),
        deployment: None,
        account: None,
    };
    match client.server_online().await {
        Ok(true) => {}
        Ok(false) => {
            return report(
                Verdict::Maintenance,
                format!(
                    "maintenance: {base} is reachable but offline for maintenance; try again later"
                ),
            );
        }
        Err(error) => {
            let (verdict, message) = classify(&base, &error);
            return report(verdict, message);
        }
    }

    let (deployment, account) = match client.account_info().await {
        Ok(account) => ("cloud", Some(account)),
        Err(error)
            if matches!(
                error.kind(),
                Some(ApiErrorKind::UnknownEndpoint | ApiErrorKind::PermissionDenied)
            ) =>
        {
            // On-premise servers have no account/info; server/info still checks the key.
            match client.server_info().await {
                Ok(_) => ("on-premise", None),
                Err(error) => {
                    let (verdict, message) = classify(&base, &error);
                    return report(verdict, message);
                }
            }
        }
        Err(error) => {
            let (verdict, message) = classify(&base, &error);
            return report(verdict, message);
        }
    };

    if deployment == "cloud" && !client.settings().accept_tac {
        return Report {
            deployment: Some(deployment),
            account,
            ..report(
                Verdict::TermsNotAccepted,
                format!(
                    "terms not accepted: {base} is a Joe Sandbox Cloud server, which refuses \
                     submissions until you accept its terms and conditions; pass --accept-tac \
                     or set JBX_ACCEPT_TAC=1"
                ),
            )
        };
    }

    let mut message = format!("OK: connected to {base}, API key valid, server online");
    if let Some(account) = &account {
        if let Some(kind) = &account.account_type {
            message.push_str(&format!(", account type {kind}"));
        }
        let remaining = account
            .quota
            .as_ref()
            .and_then(|q| q.daily.as_ref())
            .and_then(|d| d.remaining);
        if let Some(left) = remaining {
            message.push_str(&format!(", {left} submissions left today"));
        }
    }
    Report {
        deployment: Some(deployment),
        account,
        ..report(Verdict::Ok, message)
    }
}

/// Names the problem behind a failed call.
fn classify(base: &str, error: &ApiError) -> (Verdict, String) {
    match error {
        ApiError::Unreachable { .. } | ApiError::Timeout { .. } | ApiError::Transport { .. } => {
            (Verdict::Unreachable, format!("unreachable: {error}"))
        }
        ApiError::UnexpectedFormat { .. } => not_joe(base),
        _ => match error.kind() {
            Some(ApiErrorKind::UnknownEndpoint) => not_joe(base),
            Some(ApiErrorKind::InvalidApiKey) => (
                Verdict::InvalidApiKey,
                format!(
                    "invalid API key: {base} refused the key ({}); check JBX_API_KEY or the \
                     --api-key-file",
                    error.server_message()
                ),
            ),
            Some(ApiErrorKind::ServerOffline) => (
                Verdict::Maintenance,
                format!("maintenance: {base} is offline for maintenance; try again later"),
            ),
            _ => (
                Verdict::Error,
                format!("error: {base} answered with an error: {error}"),
            ),
        },
    }
}

fn not_joe(base: &str) -> (Verdict, String) {
    (
        Verdict::NotJoeApi,
        format!(
            "not a Joe Sandbox API: {base} does not answer like one (is the URL right? it \
             usually ends in /api)"
        ),
    )
}
