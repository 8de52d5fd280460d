//! The `jbxd` binary: parse the command line, set up logging, run, exit.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = jbxd::cli::Cli::parse();
    jbxd::cli::init_tracing(cli.verbose);
    jbxd::cli::run(cli)
}
