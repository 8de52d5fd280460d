//! `jbxd index rebuild [--webid W]`: re-extracts the indicator index from the stored report
//! files (after an upgrade of the extractor, or to retry reports that failed), one transaction
//! per analysis, idempotently.
//!
//! It needs no daemon and may run beside one: each analysis is re-read and written in one
//! transaction that first checks its stored reports are the ones read, and two indexers of the
//! same analysis write the same rows (`index::ingest`).

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::cli::output::table;
use crate::cli::{CliError, Context, Outcome};
use crate::db::indicators::{self, Replaced, RowCounts};
use crate::index::{Extract, index_analysis};

use super::operator::{LocalFailure, db_failed, finish, open};

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Re-extract indicators, signatures, ATT&CK techniques, YARA hits and malware configs
    /// from the stored reports (all analyses, or one), replacing what the index holds.
    Rebuild(RebuildArgs),
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// Only this analysis.
    #[arg(long, value_name = "WEBID")]
    pub webid: Option<String>,
}

/// One rebuilt analysis.
#[derive(Debug, Serialize)]
pub struct Rebuilt {
    pub webid: String,
    /// The report types the facts were taken from.
    pub from: Vec<String>,
    #[serde(flatten)]
    pub rows: RowCounts,
}

pub async fn run(
    context: &Context,
    command: IndexCommand,
    extract: Extract,
) -> Result<Outcome, CliError> {
    let IndexCommand::Rebuild(args) = command;
    let (config, db) = open(context).await?;
    let password = crate::config::report_password(&config).map_err(CliError::Config)?;
    let password = password.as_ref().map(crate::api::Secret::expose_bytes);
    let webids = indicators::analyses_with_stored_reports(&db, args.webid.as_deref())
        .await
        .map_err(db_failed)?;
    if let (Some(webid), true) = (&args.webid, webids.is_empty()) {
        db.close().await;
        eprintln!("webid {webid}: no stored reports to index");
        return Ok(Outcome::failure());
    }
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for webid in webids {
        let indexed = index_analysis(&db, &config.data_dir, &webid, password, extract)
            .await
            .map_err(db_failed)?;
        for (report, reason) in &indexed.failed {
            failures.push(LocalFailure::new(
                webid.clone(),
                format!("webid {webid}: {report}: {reason}"),
            ));
        }
        if indexed.outcome == Replaced::ReportsChanged {
            failures.push(LocalFailure::new(
                webid.clone(),
                format!(
                    "webid {webid}: its reports changed while they were read; the daemon \
                     indexes the new ones"
                ),
            ));
            continue;
        }
        let rows = indicators::row_counts(&db, &webid)
            .await
            .map_err(db_failed)?;
        done.push(Rebuilt {
            webid,
            from: indexed.used,
            rows,
        });
    }
    db.close().await;
    finish(context, &done, &failures, rebuilt_table)
}

fn rebuilt_table(done: &[Rebuilt]) -> comfy_table::Table {
    let mut out = table(&[
        "webid",
        "from",
        "iocs",
        "signatures",
        "techniques",
        "yara",
        "configs",
    ]);
    for r in done {
        out.add_row(vec![
            r.webid.clone(),
            r.from.join(", "),
            r.rows.iocs.to_string(),
            r.rows.signatures.to_string(),
            r.rows.techniques.to_string(),
            r.rows.yara.to_string(),
            r.rows.configs.to_string(),
        ]);
    }
    out
}
