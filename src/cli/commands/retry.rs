//! `jbxd retry ID...`: a `failed` item goes back to work with fresh attempts — to `queued`, or
//! to `submitted` when it already has a submission (its failed reports are retried too). The
//! daemon picks it up on its next turn. Items in any other state are left alone.

use clap::Args;
use serde::Serialize;

use crate::cli::output::table;
use crate::cli::{CliError, Context, Outcome};
use crate::db::{self, Db, DbError, ItemState};

use super::operator::{LocalFailure, finish, open};

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Item ids (`items.id`, as `jbxd status` and the `verdicts` view show them).
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<i64>,
}

/// One item sent back to work.
#[derive(Debug, Serialize)]
pub struct Retried {
    pub id: i64,
    pub name: String,
    pub state: ItemState,
}

pub async fn run(context: &Context, args: RetryArgs) -> Result<Outcome, CliError> {
    let (_config, db) = open(context).await?;
    let mut retried = Vec::new();
    let mut failures = Vec::new();
    for id in args.ids {
        match retry_one(&db, id).await {
            Ok(Ok(row)) => retried.push(row),
            Ok(Err(message)) => failures.push(LocalFailure::new(id.to_string(), message)),
            Err(error) => failures.push(LocalFailure::new(
                id.to_string(),
                format!("item {id}: {error}"),
            )),
        }
    }
    db.close().await;
    finish(context, &retried, &failures, |rows| {
        let mut out = table(&["item", "name", "state"]);
        for row in rows {
            out.add_row(vec![
                row.id.to_string(),
                row.name.clone(),
                row.state.as_str().to_owned(),
            ]);
        }
        out
    })
}

/// `Ok(Err(message))`: the item cannot be retried, and why.
async fn retry_one(db: &Db, id: i64) -> Result<Result<Retried, String>, DbError> {
    let Some(item) = db::items::get(db, id).await? else {
        return Ok(Err(format!("item {id} does not exist")));
    };
    if item.state != ItemState::Failed {
        return Ok(Err(format!(
            "item {id} is {}, not failed",
            item.state.as_str()
        )));
    }
    if !db::items::retry(db, id).await? {
        // Raced with the daemon, or a file item whose quarantined copy is gone.
        let now = db::items::get(db, id).await?;
        return Ok(Err(match now {
            Some(now) if now.state != ItemState::Failed => {
                format!("item {id} is {}, not failed", now.state.as_str())
            }
            _ => format!("item {id} cannot be retried: its sample is not in quarantine"),
        }));
    }
    let now = db::items::get(db, id).await?;
    Ok(Ok(Retried {
        id,
        state: now.as_ref().map_or(ItemState::Queued, |i| i.state),
        name: item.name,
    }))
}
