//! The rules the types of the schema cannot express: absolute paths, separate `data_dir` and
//! `drop_dir`, positive counts and intervals, known report types, a cron schedule with seconds,
//! a tracing filter. Each failure names the key and why; `load.rs` adds where the value came
//! from.

use std::path::Path;

use super::secrets::check_keys;
use super::{ApiConfig, Config};
use crate::api;

/// Checks values the types cannot: returns the offending key and why.
pub(super) fn validate(c: &Config) -> Result<(), (&'static str, String)> {
    fn absolute(key: &'static str, path: &Path) -> Result<(), (&'static str, String)> {
        if path.is_absolute() {
            Ok(())
        } else {
            Err((
                key,
                format!(
                    "`{}` must be an absolute path (the daemon runs from /)",
                    path.display()
                ),
            ))
        }
    }

    absolute("data_dir", &c.data_dir)?;
    absolute("drop_dir", &c.drop_dir)?;
    // By where they really are, not how they are written (RELIABILITY.md case 113).
    super::paths::check_separate(&c.data_dir, &c.drop_dir)?;

    check_api(&c.api)?;
    // The daemon runs from /, so a relative path would name a file nobody meant.
    if let Some(path) = &c.api.ca_file {
        absolute("api.ca_file", path)?;
    }

    check_secrets(c)?;

    let mut params = api::SubmissionParams::new();
    for (name, value) in &c.submission.params {
        if name == api::Param::EncryptWithPassword.name() {
            return Err((
                "submission.params",
                format!(
                    "`{name}` is a password, which does not belong in the configuration in \
                         clear: set reports.encrypt = true and reports.password_file (or \
                         reports.password_credential / reports.password_command)"
                ),
            ));
        }
        params
            .set(name, value)
            .map_err(|e| ("submission.params", e.to_string()))?;
    }
    for system in &c.submission.systems {
        if system.trim().is_empty() {
            return Err(("submission.systems", "contains an empty name".into()));
        }
    }

    at_least("intake.max_file_size", c.intake.max_file_size, 1)?;
    at_least("intake.scan_interval_secs", c.intake.scan_interval_secs, 1)?;
    if !(1..=8000).contains(&c.intake.max_url_length) {
        return Err((
            "intake.max_url_length",
            format!(
                "must be between 1 and 8000, got {}",
                c.intake.max_url_length
            ),
        ));
    }

    at_least(
        "pipeline.submit_concurrency",
        c.pipeline.submit_concurrency as u64,
        1,
    )?;
    at_least(
        "pipeline.poll_concurrency",
        c.pipeline.poll_concurrency as u64,
        1,
    )?;
    at_least(
        "pipeline.download_concurrency",
        c.pipeline.download_concurrency as u64,
        1,
    )?;
    at_least("pipeline.max_attempts", c.pipeline.max_attempts.into(), 1)?;
    c.pipeline.check_reconcile()?;
    if c.pipeline.retry_base_secs > c.pipeline.retry_cap_secs {
        return Err((
            "pipeline.retry_base_secs",
            format!(
                "must not exceed pipeline.retry_cap_secs ({} > {})",
                c.pipeline.retry_base_secs, c.pipeline.retry_cap_secs
            ),
        ));
    }

    at_least("poll.max_interval_secs", c.poll.max_interval_secs, 1)?;
    if c.poll.min_interval_secs > c.poll.max_interval_secs {
        return Err((
            "poll.min_interval_secs",
            format!(
                "must not exceed poll.max_interval_secs ({} > {})",
                c.poll.min_interval_secs, c.poll.max_interval_secs
            ),
        ));
    }
    at_least(
        "poll.max_analysis_age_secs",
        c.poll.max_analysis_age_secs,
        1,
    )?;

    if c.reports.types.is_empty() {
        return Err((
            "reports.types",
            "must name at least one report type (e.g. [\"html\", \"irjsonfixed\", \"xml\"])".into(),
        ));
    }
    for (i, kind) in c.reports.types.iter().enumerate() {
        if !api::ReportType::is_known(kind) {
            return Err(("reports.types", format!("unknown report type `{kind}`")));
        }
        if c.reports.types[..i].contains(kind) {
            return Err(("reports.types", format!("`{kind}` is listed twice")));
        }
    }
    at_least("reports.max_size", c.reports.max_size, 1)?;

    validate_schedule(&c.health.schedule).map_err(|m| ("health.schedule", m))?;

    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&c.log.level) {
        return Err(("log.level", format!("not a tracing filter: {e}")));
    }
    if let Some(dir) = &c.log.dir {
        absolute("log.dir", dir)?;
    }
    at_least("log.max_files", c.log.max_files as u64, 1)?;
    Ok(())
}

/// The secret sources (`secrets.rs`): at most one per secret, commands with a program,
/// absolute files, a password for `reports.encrypt`, a sane command timeout and no `JBX*`
/// variable handed to a command.
fn check_secrets(c: &Config) -> Result<(), (&'static str, String)> {
    fn absolute(
        key: &'static str,
        path: &Option<std::path::PathBuf>,
    ) -> Result<(), (&'static str, String)> {
        match path {
            Some(p) if !p.is_absolute() => Err((
                key,
                format!(
                    "`{}` must be an absolute path (the daemon runs from /)",
                    p.display()
                ),
            )),
            _ => Ok(()),
        }
    }
    check_keys(&super::secret_keys::api_key_keys(&c.api))?;
    let password = super::secret_keys::report_password_keys(&c.reports);
    check_keys(&password)?;
    absolute("api.key_file", &c.api.key_file)?;
    absolute("reports.password_file", &c.reports.password_file)?;
    if c.reports.encrypt
        && password.file.is_none()
        && password.credential.is_none()
        && password.command.is_none()
    {
        return Err((
            "reports.encrypt",
            "needs the report password: set reports.password_file, reports.password_credential \
             or reports.password_command"
                .into(),
        ));
    }
    let timeout = c.secrets.command_timeout_secs;
    if !(1..=300).contains(&timeout) {
        return Err((
            "secrets.command_timeout_secs",
            format!("must be between 1 and 300, got {timeout}"),
        ));
    }
    for name in &c.secrets.command_env {
        if name.is_empty() || name.contains('=') || name.starts_with("JBX") {
            return Err((
                "secrets.command_env",
                format!(
                    "`{name}` cannot be passed to a vault command (JBX* variables hold jbxd's \
                     own secrets)"
                ),
            ));
        }
    }
    Ok(())
}

/// The rules every front end's `[api]` values obey, the CLI's as much as the daemon's (the
/// daemon adds absolute paths): a server URL the API base can be derived from, a proxy URL of a
/// scheme the client speaks, timeouts and attempts of at least 1.
pub(super) fn check_api(api: &ApiConfig) -> Result<(), (&'static str, String)> {
    api::api_base(&api.url).map_err(|e| ("api.url", e.to_string()))?;
    if let Some(proxy) = &api.proxy {
        let parsed = url::Url::parse(proxy).map_err(|e| ("api.proxy", format!("{e}")))?;
        if !matches!(parsed.scheme(), "http" | "https" | "socks5" | "socks5h") {
            return Err((
                "api.proxy",
                "must be an http://, https:// or socks5:// URL".into(),
            ));
        }
    }
    at_least("api.connect_timeout_secs", api.connect_timeout_secs, 1)?;
    at_least("api.read_timeout_secs", api.read_timeout_secs, 1)?;
    at_least("api.request_timeout_secs", api.request_timeout_secs, 1)?;
    at_least("api.attempts", api.attempts.into(), 1)
}

fn at_least(key: &'static str, value: u64, min: u64) -> Result<(), (&'static str, String)> {
    if value >= min {
        Ok(())
    } else {
        Err((key, format!("must be at least {min}, got {value}")))
    }
}

/// A cron expression with seconds: exactly 6 fields, parsed as tokio-cron-scheduler will.
pub fn validate_schedule(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(format!(
            "`{expr}` has {fields} fields; a cron expression with seconds has 6 \
             (sec min hour day month weekday, e.g. `0 * * * * *` = every minute, UTC)"
        ));
    }
    tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|_| format!("`{expr}` is not a valid cron expression"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_need_six_fields() {
        assert!(validate_schedule("0 * * * * *").is_ok());
        assert!(
            validate_schedule("* * * * *")
                .unwrap_err()
                .contains("5 fields")
        );
        assert!(validate_schedule("0 61 * * * *").is_err());
    }

    #[test]
    fn defaults_are_valid_apart_from_nothing() {
        validate(&Config::default()).unwrap();
    }
}
