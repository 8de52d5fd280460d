//! `jbxd submission list|info|delete`.

use clap::Subcommand;
use serde::Serialize;

use crate::api::types::Submission;
use crate::cli::output::{ItemFailure, cell, finish_items, print_json, table};
use crate::cli::{CliError, Context, Outcome};

use super::{Jobs, for_each, single_failure};

#[derive(Debug, Subcommand)]
pub enum SubmissionCommand {
    /// Every submission of the account.
    List,
    /// Status and verdict of submissions.
    Info {
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        jobs: Jobs,
    },
    /// Delete submissions and their analyses.
    Delete {
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        jobs: Jobs,
    },
}

/// A deleted item, as listed under `data` with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

pub async fn run(context: &Context, command: SubmissionCommand) -> Result<Outcome, CliError> {
    let client = context.client()?;
    match command {
        SubmissionCommand::List => match client.submission_list().await {
            Ok(list) => {
                if context.json {
                    print_json(&list)?;
                } else {
                    let mut rows = table(&["submission id", "name", "status", "time"]);
                    for item in &list {
                        rows.add_row(vec![
                            item.submission_id.clone(),
                            cell(item.name.as_deref()),
                            cell(item.status.as_deref()),
                            cell(item.time.as_deref()),
                        ]);
                    }
                    println!("{rows}");
                }
                Ok(Outcome::success())
            }
            Err(error) => Ok(single_failure("List Submissions", &error)),
        },
        SubmissionCommand::Info { ids, jobs } => {
            let results = for_each(ids, jobs, |id| {
                let client = client.clone();
                async move {
                    let result = client.submission_info(&id).await;
                    (id, result)
                }
            })
            .await;
            let mut found = Vec::new();
            let mut failures = Vec::new();
            for (id, result) in results {
                match result {
                    Ok(submission) => found.push(submission),
                    Err(error) => failures.push(ItemFailure::new(
                        "Get Submission Information",
                        &format!("submission {id}"),
                        &id,
                        &error,
                    )),
                }
            }
            finish_items(context, &found, &failures, submission_table)
        }
        SubmissionCommand::Delete { ids, jobs } => {
            let results = for_each(ids, jobs, |id| {
                let client = client.clone();
                async move {
                    let result = client.submission_delete(&id).await;
                    (id, result)
                }
            })
            .await;
            let mut deleted = Vec::new();
            let mut failures = Vec::new();
            for (id, result) in results {
                match result {
                    Ok(()) => deleted.push(Deleted { id, deleted: true }),
                    Err(error) => failures.push(ItemFailure::new(
                        "Delete Submission",
                        &format!("submission {id}"),
                        &id,
                        &error,
                    )),
                }
            }
            finish_items(context, &deleted, &failures, |rows| {
                let mut out = table(&["submission id", "result"]);
                for row in rows {
                    out.add_row(vec![row.id.clone(), "deleted".to_owned()]);
                }
                out
            })
        }
    }
}

/// Submission id, name, status, and the most relevant analysis's verdict.
pub fn submission_table(submissions: &[Submission]) -> comfy_table::Table {
    let mut rows = table(&[
        "submission id",
        "name",
        "status",
        "webid",
        "detection",
        "score",
        "time",
    ]);
    for submission in submissions {
        let relevant = submission.most_relevant_analysis.as_ref();
        rows.add_row(vec![
            submission.submission_id.clone(),
            cell(submission.name.as_deref()),
            cell(submission.status.as_deref()),
            cell(relevant.map(|a| a.webid.as_str())),
            cell(relevant.and_then(|a| a.detection.as_deref())),
            cell(relevant.and_then(|a| a.score)),
            cell(submission.time.as_deref()),
        ]);
    }
    rows
}
