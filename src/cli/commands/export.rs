//! `jbxd export WEBID --format stix|misp`: one analysis from the daemon's index as a STIX 2.1
//! bundle (OpenCTI, TAXII) or a MISP event (MISP's "add event from JSON"), on stdout. Local:
//! reads the database, never the server or the API key. The same analysis always exports to
//! the same document (see `index::export`), so importing it twice updates instead of copying.
//! The indicators come from the analysis' stored reports; an encrypted analysis' reports are
//! opened with the configured report password (`[reports]`).

use clap::{Args, ValueEnum};

use crate::cli::output::print_json;
use crate::cli::{CliError, Context, Outcome};
use crate::index::export::{self, ExportError};

use super::decrypt::ReportPassword;
use super::operator::{db_failed, open};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A STIX 2.1 bundle.
    Stix,
    /// A MISP event.
    Misp,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(value_name = "WEBID")]
    pub webid: String,

    /// The document to write.
    #[arg(long, value_enum)]
    pub format: Format,
}

pub async fn run(context: &Context, args: ExportArgs) -> Result<Outcome, CliError> {
    let (config, db) = open(context).await?;
    let password = ReportPassword::configured(&config)?;
    let exported = export::input_for(
        &db,
        &config.data_dir,
        args.webid.trim(),
        password.as_ref().map(ReportPassword::as_bytes),
    )
    .await;
    db.close().await;
    let input = match exported {
        Ok(exported) => {
            for note in &exported.notes {
                eprintln!("{note}");
            }
            exported.input
        }
        Err(error @ ExportError::UnknownWebid(_)) => {
            return Err(CliError::Failed(anyhow::Error::new(error)));
        }
        Err(ExportError::Db(error)) => return Err(db_failed(error)),
    };
    let document = match args.format {
        Format::Stix => export::stix::render(&input),
        Format::Misp => export::misp::render(&input),
    };
    print_json(&document)?;
    Ok(Outcome::success())
}
