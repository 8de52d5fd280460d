//! What commands print: tables for people, one JSON document for scripts, the seed-shaped
//! failure lines and the overall outcome with its exit code.

use std::process::ExitCode;

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::api::ApiError;
use crate::api::types::Analysis;

use super::{CliError, Context};

/// Exit code of a partially successful multi-item command.
pub const EXIT_PARTIAL: u8 = 3;

/// How many items of a command succeeded and failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    pub succeeded: usize,
    pub failed: usize,
}

impl Outcome {
    pub fn success() -> Self {
        Self {
            succeeded: 1,
            failed: 0,
        }
    }

    pub fn failure() -> Self {
        Self {
            succeeded: 0,
            failed: 1,
        }
    }

    /// The seed's three results.
    pub fn label(&self) -> &'static str {
        match (self.succeeded, self.failed) {
            (_, 0) => "Successful",
            (0, _) => "Failed",
            _ => "Partially Successful",
        }
    }

    /// 0 Successful, 3 Partially Successful, 1 Failed.
    pub fn exit_code(&self) -> ExitCode {
        match self.label() {
            "Successful" => ExitCode::SUCCESS,
            "Failed" => ExitCode::FAILURE,
            _ => ExitCode::from(EXIT_PARTIAL),
        }
    }

    /// `Partially Successful: 2 of 3 succeeded.`
    pub fn summary(&self) -> String {
        format!(
            "{}: {} of {} succeeded.",
            self.label(),
            self.succeeded,
            self.succeeded + self.failed
        )
    }
}

/// One failed item of a multi-item command, as it appears under `errors` in `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct ItemFailure {
    /// The id, file or URL the failure belongs to.
    pub indicator: String,
    /// The report type, for downloads (one webid may fail for one type only).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub report_type: Option<String>,
    pub status_code: Option<u16>,
    pub message: String,
    /// The seed's line, printed on stderr.
    #[serde(skip)]
    line: String,
}

impl ItemFailure {
    /// A failure of `action` (the seed's command name, e.g. "Download Report") for the item
    /// described as `what` (e.g. "webid 42") whose id is `indicator`.
    pub fn new(action: &str, what: &str, indicator: &str, error: &ApiError) -> Self {
        let status_code = error.status();
        let message = error.server_message();
        Self {
            indicator: indicator.to_owned(),
            report_type: None,
            status_code,
            line: format!("{what}: {}", failure_line(action, status_code, &message)),
            message,
        }
    }

    pub fn with_type(mut self, report_type: &str) -> Self {
        self.report_type = Some(report_type.to_owned());
        self
    }

    pub fn line(&self) -> &str {
        &self.line
    }
}

/// The seed's failure shape: `Download Report failed. Status Code: 404. Message: Not found.`
/// The status part is left out when no HTTP status was received.
pub fn failure_line(action: &str, status: Option<u16>, message: &str) -> String {
    match status {
        Some(code) => format!("{action} failed. Status Code: {code}. Message: {message}"),
        None => format!("{action} failed. Message: {message}"),
    }
}

/// The `--json` document of a multi-item command.
#[derive(Debug, Serialize)]
struct ItemsDocument<'a, T: Serialize, F: Serialize> {
    data: &'a [T],
    errors: &'a [F],
}

/// A per-item failure of a multi-item command: serialised into the JSON `errors` array, and
/// printed as one line on stderr.
pub trait Failure: Serialize {
    fn stderr_line(&self) -> &str;
}

impl Failure for ItemFailure {
    fn stderr_line(&self) -> &str {
        self.line()
    }
}

/// Prints the result of a multi-item command — JSON document or table on stdout, one line per
/// failure and the summary on stderr — and returns the outcome.
pub fn finish_items<T: Serialize, F: Failure>(
    context: &Context,
    data: &[T],
    failures: &[F],
    table: impl FnOnce(&[T]) -> Table,
) -> Result<Outcome, CliError> {
    if context.json {
        print_json(&ItemsDocument {
            data,
            errors: failures,
        })?;
    } else if !data.is_empty() {
        println!("{}", table(data));
    }
    for failure in failures {
        eprintln!("{}", failure.stderr_line());
    }
    let outcome = Outcome {
        succeeded: data.len(),
        failed: failures.len(),
    };
    eprintln!("{}", outcome.summary());
    Ok(outcome)
}

/// Prints one value as a pretty JSON document on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot encode the JSON output: {e}")))?;
    println!("{text}");
    Ok(())
}

/// A table in the house style.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_header(header.iter().copied());
    // Wrap to the terminal only when it reports a usable width: a pty without a size (script,
    // some CI runners) reports 0 columns, which would squeeze every cell to one character.
    if table.width().is_some_and(|width| width >= 60) {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    table
}

/// Text of an optional value; missing values print as an empty cell.
pub fn cell<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

pub const VERDICT_HEADER: &[&str] = &[
    "webid",
    "status",
    "detection",
    "score",
    "threat name",
    "file/URL",
    "time",
];

/// One verdict row: webid, status, detection, score, threat name, file/URL, time.
pub fn verdict_row(analysis: &Analysis) -> Vec<String> {
    vec![
        analysis.webid.clone(),
        cell(analysis.status.as_deref()),
        cell(analysis.detection.as_deref()),
        cell(analysis.score),
        cell(analysis.threatname.as_deref()),
        cell(analysis.url().or(analysis.filename.as_deref())),
        cell(analysis.time.as_deref()),
    ]
}

pub fn verdict_table(analyses: &[Analysis]) -> Table {
    let mut table = table(VERDICT_HEADER);
    for analysis in analyses {
        table.add_row(verdict_row(analysis));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_the_seed_results_and_exit_codes() {
        let all = Outcome {
            succeeded: 3,
            failed: 0,
        };
        let some = Outcome {
            succeeded: 2,
            failed: 1,
        };
        let none = Outcome {
            succeeded: 0,
            failed: 3,
        };
        assert_eq!(all.summary(), "Successful: 3 of 3 succeeded.");
        assert_eq!(some.summary(), "Partially Successful: 2 of 3 succeeded.");
        assert_eq!(none.summary(), "Failed: 0 of 3 succeeded.");
        assert_eq!(all.exit_code(), ExitCode::SUCCESS);
        assert_eq!(some.exit_code(), ExitCode::from(3));
        assert_eq!(none.exit_code(), ExitCode::FAILURE);
    }

    #[test]
    fn the_failure_line_leaves_out_a_missing_status() {
        assert_eq!(
            failure_line("Download Report", Some(404), "Analysis not found."),
            "Download Report failed. Status Code: 404. Message: Analysis not found."
        );
        assert_eq!(
            failure_line("Submit URL", None, "cannot connect"),
            "Submit URL failed. Message: cannot connect"
        );
    }
}
