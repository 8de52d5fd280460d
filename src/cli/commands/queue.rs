//! `jbxd queue add URL...`: inserts URLs into `url_queue`, exactly as a producer would with
//! `sqlite3`, and prints the row ids. The daemon takes them within a second.
//!
//! Everything the daemon would reject is refused here first (exit 2, nothing inserted): URLs
//! with the daemon's own validator, parameters with its own parser. Messages never quote a URL,
//! which could carry credentials; they name it by its position on the command line.

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::output::table;
use crate::cli::{CliError, Context, Outcome};
use crate::db;
use crate::intake::{params, url_validate};

use super::operator::{LocalFailure, finish, open};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Queue URLs for website analysis (rows in `url_queue`); prints the row ids.
    Add(AddArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The URLs (http or https).
    #[arg(value_name = "URL", required = true)]
    pub urls: Vec<String>,

    /// A submission parameter for these URLs as NAME=VALUE; repeatable (`systems` and `tags`
    /// may be repeated to give several values).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,

    /// Submit even when the same URL was analysed within the dedup window.
    #[arg(long)]
    pub force: bool,
}

/// One queued row.
#[derive(Debug, Serialize)]
pub struct Queued {
    pub id: i64,
    pub url: String,
}

pub async fn run(context: &Context, command: QueueCommand) -> Result<Outcome, CliError> {
    match command {
        QueueCommand::Add(args) => add(context, args).await,
    }
}

/// The `params` column: a JSON object of the `--param`s, plus `"force": true`; `None` when
/// there is nothing to say. Validated with the daemon's own parser.
pub fn params_json(assignments: &[String], force: bool) -> Result<Option<String>, CliError> {
    let mut object = Map::new();
    for assignment in assignments {
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--param {assignment}: expected NAME=VALUE"
            )));
        };
        let name = name.trim();
        if name == "force" {
            return Err(CliError::Usage(
                "--param force=...: use --force instead".to_owned(),
            ));
        }
        let value = Value::String(value.to_owned());
        match object.get_mut(name) {
            Some(Value::Array(values)) => values.push(value),
            Some(first) if matches!(name, "systems" | "tags") => {
                *first = Value::Array(vec![first.clone(), value]);
            }
            Some(_) => {
                return Err(CliError::Usage(format!(
                    "--param {name}: given more than once"
                )));
            }
            None => {
                object.insert(name.to_owned(), value);
            }
        }
    }
    if force {
        object.insert("force".to_owned(), Value::Bool(true));
    }
    if object.is_empty() {
        return Ok(None);
    }
    let text = Value::Object(object).to_string();
    params::parse(Some(&text)).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(Some(text))
}

async fn add(context: &Context, args: AddArgs) -> Result<Outcome, CliError> {
    let params = params_json(&args.params, args.force)?;
    let (config, db) = open(context).await?;
    let max_len = config.intake.max_url_length;
    let refused: Vec<String> = args
        .urls
        .iter()
        .enumerate()
        .filter_map(|(i, url)| {
            url_validate::validate(url, max_len)
                .err()
                .map(|reason| format!("URL #{} refused: {reason}", i + 1))
        })
        .collect();
    if !refused.is_empty() {
        db.close().await;
        return Err(CliError::Usage(format!(
            "{}; nothing was queued",
            refused.join("; ")
        )));
    }
    let mut queued = Vec::new();
    let mut failures = Vec::new();
    for (i, url) in args.urls.iter().enumerate() {
        // The URL as given: the daemon normalises it when it takes the row, as for any producer.
        match db::url_queue::insert(&db, url, params.as_deref()).await {
            Ok(id) => queued.push(Queued {
                id,
                url: url.clone(),
            }),
            Err(error) => failures.push(LocalFailure::new(
                format!("#{}", i + 1),
                format!("URL #{}: cannot insert into url_queue: {error}", i + 1),
            )),
        }
    }
    db.close().await;
    finish(context, &queued, &failures, |rows| {
        let mut out = table(&["id", "url"]);
        for row in rows {
            out.add_row(vec![row.id.to_string(), row.url.clone()]);
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_become_one_json_object_with_force_as_the_daemon_reads_it() {
        let text = params_json(
            &[
                "systems=w10x64".into(),
                "systems=w11".into(),
                "analysis-time=120".into(),
            ],
            true,
        )
        .unwrap()
        .unwrap();
        let parsed = params::parse(Some(&text)).unwrap();
        assert!(parsed.force);
        assert_eq!(parsed.params.systems, ["w10x64", "w11"]);
        assert_eq!(params_json(&[], false).unwrap(), None);
    }

    #[test]
    fn bad_params_are_usage_errors() {
        for bad in ["novalue", "analysis-time=soon", "apikey=x", "force=1"] {
            assert!(
                matches!(params_json(&[bad.into()], false), Err(CliError::Usage(_))),
                "{bad}"
            );
        }
    }
}
