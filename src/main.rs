//! The `jbxd` binary: parse the command line, run (which sets up logging), exit.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = jbxd::cli::Cli::parse();
    jbxd::cli::run(cli)
}
