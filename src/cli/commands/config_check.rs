//! `jbxd config check`: loads the configuration exactly as `jbxd run` does (file, environment,
//! API key and report password, vault commands run) and prints the effective result as TOML
//! with every secret redacted and its source named (file path, credential, command program,
//! variable), or the first error (exit 78). Nothing is opened or contacted.

use clap::Subcommand;

use crate::cli::{CliError, Context, Outcome};
use crate::config::{self, LoadOptions};

use super::operator::config_error;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it (API key redacted); exit 78 on an error.
    Check,
}

pub fn run(context: &Context, command: ConfigCommand) -> Result<Outcome, CliError> {
    match command {
        ConfigCommand::Check => check(context),
    }
}

fn check(context: &Context) -> Result<Outcome, CliError> {
    let opts = LoadOptions {
        config_file: context.config_file.clone(),
        overrides: Vec::new(),
    };
    let loaded = config::load(&opts).map_err(config_error)?;
    for warning in &loaded.loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let password = loaded.report_password.as_ref().map(|(_, source)| source);
    print!(
        "{}",
        config::redacted_toml(&loaded.loaded, Some(&loaded.key_source), password)
    );
    // Which source won for each secret, never a value.
    eprintln!("API key: from {}", loaded.key_source);
    match password {
        Some(source) => eprintln!("report password: from {source}"),
        None => eprintln!("report password: not set"),
    }
    eprintln!("configuration OK");
    Ok(Outcome::success())
}
