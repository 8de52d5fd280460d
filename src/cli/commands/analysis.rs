//! `jbxd analysis list|info|search|download|sample|delete`.

use clap::Subcommand;

use crate::api::types::Analysis;
use crate::cli::output::{ItemFailure, finish_items, print_json, table, verdict_table};
use crate::cli::{CliError, Context, Outcome};

use super::download::{DownloadArgs, SampleArgs};
use super::search::SearchArgs;
use super::submission::Deleted;
use super::{Jobs, download, for_each, search, single_failure};

#[derive(Debug, Subcommand)]
pub enum AnalysisCommand {
    /// Every analysis of the account (webids, newest first).
    List,
    /// Verdicts and details of analyses.
    Info {
        #[arg(value_name = "WEBID", required = true)]
        webids: Vec<String>,
        #[command(flatten)]
        jobs: Jobs,
    },
    /// Find analyses by free text (--query) or by structured filters.
    Search(Box<SearchArgs>),
    /// Download reports: every --type of every webid.
    Download(DownloadArgs),
    /// Download the analysed samples (stored read-only, never executable).
    Sample(SampleArgs),
    /// Delete analyses.
    Delete {
        #[arg(value_name = "WEBID", required = true)]
        webids: Vec<String>,
        #[command(flatten)]
        jobs: Jobs,
    },
}

pub async fn run(context: &Context, command: AnalysisCommand) -> Result<Outcome, CliError> {
    match command {
        AnalysisCommand::List => list(context).await,
        AnalysisCommand::Info { webids, jobs } => info(context, webids, jobs).await,
        AnalysisCommand::Search(args) => search::run(context, *args).await,
        AnalysisCommand::Download(args) => download::run_reports(context, args).await,
        AnalysisCommand::Sample(args) => download::run_samples(context, args).await,
        AnalysisCommand::Delete { webids, jobs } => delete(context, webids, jobs).await,
    }
}

async fn list(context: &Context) -> Result<Outcome, CliError> {
    let client = context.client()?;
    match client.analysis_list().await {
        Ok(list) => {
            if context.json {
                print_json(&list)?;
            } else {
                // Items are usually bare webids; any further fields the server sends are shown
                // in the verdict columns they belong to.
                let analyses: Vec<Analysis> = list
                    .iter()
                    .filter_map(|stub| serde_json::to_value(stub).ok())
                    .filter_map(|value| serde_json::from_value(value).ok())
                    .collect();
                println!("{}", verdict_table(&analyses));
            }
            Ok(Outcome::success())
        }
        Err(error) => Ok(single_failure("Get Analysis List", &error)),
    }
}

async fn info(context: &Context, webids: Vec<String>, jobs: Jobs) -> Result<Outcome, CliError> {
    let client = context.client()?;
    let results = for_each(webids, jobs, |webid| {
        let client = client.clone();
        async move {
            let result = client.analysis_info(&webid).await;
            (webid, result)
        }
    })
    .await;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for (webid, result) in results {
        match result {
            Ok(analysis) => found.push(analysis),
            Err(error) => failures.push(ItemFailure::new(
                "Get Analysis Information",
                &format!("webid {webid}"),
                &webid,
                &error,
            )),
        }
    }
    finish_items(context, &found, &failures, verdict_table)
}

async fn delete(context: &Context, webids: Vec<String>, jobs: Jobs) -> Result<Outcome, CliError> {
    let client = context.client()?;
    let results = for_each(webids, jobs, |webid| {
        let client = client.clone();
        async move {
            let result = client.analysis_delete(&webid).await;
            (webid, result)
        }
    })
    .await;
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for (webid, result) in results {
        match result {
            Ok(()) => deleted.push(Deleted {
                id: webid,
                deleted: true,
            }),
            Err(error) => failures.push(ItemFailure::new(
                "Delete Analysis",
                &format!("webid {webid}"),
                &webid,
                &error,
            )),
        }
    }
    finish_items(context, &deleted, &failures, |rows| {
        let mut out = table(&["webid", "result"]);
        for row in rows {
            out.add_row(vec![row.id.clone(), "deleted".to_owned()]);
        }
        out
    })
}
