//! `jbxd account info`.

use clap::Subcommand;

use crate::api::types::Quota;
use crate::cli::output::{cell, print_json, table};
use crate::cli::{CliError, Context, Outcome};

use super::server::plain;
use super::single_failure;

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Account type and submission quotas (Cloud only).
    Info,
}

pub async fn run(context: &Context, command: AccountCommand) -> Result<Outcome, CliError> {
    let client = context.client()?;
    match command {
        AccountCommand::Info => match client.account_info().await {
            Ok(account) => {
                if context.json {
                    print_json(&account)?;
                } else {
                    let mut rows = table(&["field", "value"]);
                    rows.add_row(vec![
                        "type".to_owned(),
                        cell(account.account_type.as_deref()),
                    ]);
                    if let Some(quota) = &account.quota {
                        rows.add_row(vec!["daily quota".to_owned(), quota_text(&quota.daily)]);
                        rows.add_row(vec!["monthly quota".to_owned(), quota_text(&quota.monthly)]);
                    }
                    for (name, value) in &account.extra {
                        rows.add_row(vec![name.clone(), plain(value)]);
                    }
                    println!("{rows}");
                }
                Ok(Outcome::success())
            }
            Err(error) => Ok(single_failure("Get Account Information", &error)),
        },
    }
}

fn quota_text(quota: &Option<Quota>) -> String {
    match quota {
        Some(q) => format!(
            "{} used of {}, {} left",
            cell(q.current),
            cell(q.limit),
            cell(q.remaining)
        ),
        None => String::new(),
    }
}
