//! `jbxd server online|info|systems`.

use clap::Subcommand;
use serde_json::Value;

use crate::api::types::OnlineStatus;
use crate::cli::output::{cell, print_json, table};
use crate::cli::{CliError, Context, Outcome};

use super::single_failure;

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Whether the server is up (exit 0) or in maintenance (exit 1).
    Online,
    /// Server information, such as the queue size.
    Info,
    /// The analysis systems this server offers (names for --systems).
    Systems,
}

pub async fn run(context: &Context, command: ServerCommand) -> Result<Outcome, CliError> {
    let client = context.client()?;
    match command {
        ServerCommand::Online => match client.server_online().await {
            Ok(online) => {
                if context.json {
                    print_json(&OnlineStatus {
                        online: Some(online),
                    })?;
                } else if online {
                    println!("online");
                } else {
                    println!("offline (maintenance)");
                }
                // Scripts can write `jbxd server online && jbxd submit ...`.
                Ok(if online {
                    Outcome::success()
                } else {
                    Outcome::failure()
                })
            }
            Err(error) => Ok(single_failure("Is Online", &error)),
        },
        ServerCommand::Info => match client.server_info().await {
            Ok(info) => {
                if context.json {
                    print_json(&info)?;
                } else {
                    let mut rows = table(&["field", "value"]);
                    rows.add_row(vec!["queue size".to_owned(), cell(info.queuesize)]);
                    for (name, value) in &info.extra {
                        rows.add_row(vec![name.clone(), plain(value)]);
                    }
                    println!("{rows}");
                }
                Ok(Outcome::success())
            }
            Err(error) => Ok(single_failure("Get Server Information", &error)),
        },
        ServerCommand::Systems => match client.server_systems().await {
            Ok(systems) => {
                if context.json {
                    print_json(&systems)?;
                } else {
                    let mut rows = table(&["name", "arch", "count", "description"]);
                    for system in &systems {
                        rows.add_row(vec![
                            system.name.clone(),
                            cell(system.arch.as_deref()),
                            cell(system.count),
                            strip_html(system.description.as_deref().unwrap_or_default()),
                        ]);
                    }
                    println!("{rows}");
                }
                Ok(Outcome::success())
            }
            Err(error) => Ok(single_failure("Get Server Systems", &error)),
        },
    }
}

/// A JSON value as table text: strings without their quotes, everything else as JSON.
pub fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// System descriptions come as HTML on the real server; a table wants the text only.
fn strip_html(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_descriptions_become_plain_text() {
        assert_eq!(
            strip_html("<b>Windows 10</b><br/>64 bit, Office"),
            "Windows 10 64 bit, Office"
        );
    }
}
