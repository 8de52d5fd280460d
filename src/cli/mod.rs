//! The `jbxd` command line: argument definitions and dispatch.
//!
//! Commands are grouped like the official client (`jbxapi submission info ...`); each lives in
//! its own file under [`commands`]. Every command returns an [`Outcome`] (how many of its items
//! succeeded) or a [`CliError`]; [`run`] turns either into the process exit code:
//!
//! | exit | meaning |
//! | --- | --- |
//! | 0 | Successful |
//! | 1 | Failed (every item failed, or the single action failed) |
//! | 2 | usage error (clap's own, and bad submission parameters) |
//! | 3 | Partially Successful (some items failed) |
//! | 78 | configuration error (no API key, unsafe or unreadable key file, bad URL, bad config file, database of a newer jbxd, ...) |
//!
//! `jbxd run` is the exception: it hands the process to [`daemon::main`](crate::daemon::main),
//! which installs its own logging and returns its own exit code.

mod args;
mod commands;
mod connection;
mod error;
mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api::JoeClient;

pub use args::{ConnectionArgs, RunArgs, SubmissionArgs};
pub use connection::resolve_settings;
pub use error::CliError;
pub use output::Outcome;

/// Joe Sandbox on autopilot: a command-line client for the Joe Sandbox REST API v2, with an
/// embedded simulator.
#[derive(Debug, Parser)]
#[command(name = "jbxd", version, about, long_about = None)]
pub struct Cli {
    /// Print one JSON document on stdout instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace); overrides JBXD_LOG.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// The daemon's configuration file (`run`, `config check` and the operator commands,
    /// which find the database through its `data_dir`). A missing default file means the
    /// built-in defaults [default: /etc/jbxd/jbxd.toml]
    #[arg(long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check URL, API key, maintenance state and terms acceptance, and say which one is wrong.
    TestConnection,
    /// Submit sample files (a directory submits the regular files directly inside it), URLs
    /// for website analysis, or URLs of samples for the server to download.
    Submit(Box<commands::submit::SubmitArgs>),
    /// Server status and capabilities.
    #[command(subcommand)]
    Server(commands::server::ServerCommand),
    /// The account behind the API key (Cloud only).
    #[command(subcommand)]
    Account(commands::account::AccountCommand),
    /// Submissions: list, show, delete.
    #[command(subcommand)]
    Submission(commands::submission::SubmissionCommand),
    /// Analyses: list, show, search, download reports and samples, delete.
    #[command(subcommand)]
    Analysis(commands::analysis::AnalysisCommand),
    /// Run the Joe Sandbox API simulator until Ctrl-C or SIGTERM.
    Simulate(commands::simulate::SimulateArgs),
    /// Start the simulator and the daemon on a temporary data directory, drop a few samples
    /// and queue a few URLs, and show their verdicts and reports: an offline tour in seconds.
    Demo(commands::demo::DemoArgs),
    /// The daemon: drop folder and URL queue in, verdicts and reports out (until SIGTERM).
    Run(RunArgs),
    /// The daemon's configuration.
    #[command(subcommand)]
    Config(commands::config_check::ConfigCommand),
    /// What the daemon is doing: items by state, URL queue, reports, health, pauses, the
    /// oldest pending item and recent errors (from its database).
    Status,
    /// The daemon's URL queue.
    #[command(subcommand)]
    Queue(commands::queue::QueueCommand),
    /// Query the daemon's verdict index and show the stored report paths.
    Reports(Box<commands::reports::ReportsArgs>),
    /// Query the indicator index: domains, IPs, URLs, hashes and file names the analyses saw.
    Iocs(Box<commands::iocs::IocsArgs>),
    /// The indicator index.
    #[command(subcommand)]
    Index(commands::index::IndexCommand),
    /// Send failed items back to work (failed → queued, or submitted when already submitted).
    Retry(commands::retry::RetryArgs),
    /// Bring analyses submitted elsewhere (web interface, other tools) into the daemon's
    /// index: their verdicts and the configured reports, stored like the daemon's own.
    Import(commands::import::ImportArgs),
    /// One analysis from the index as a STIX 2.1 bundle or a MISP event (JSON on stdout).
    Export(commands::export::ExportArgs),
    // Its help (short and long) is the doc comment of `BackupArgs`.
    Backup(commands::backup::BackupArgs),
}

/// Shared state of one command invocation.
#[derive(Debug, Clone)]
pub struct Context {
    pub connection: ConnectionArgs,
    /// `--config FILE`; `None` = the default file (missing = defaults).
    pub config_file: Option<PathBuf>,
    pub json: bool,
    /// Draw progress bars: only when stderr is a terminal, so logs and pipes stay clean.
    pub progress: bool,
}

impl Context {
    /// Resolves the connection settings and builds the client. Done per command, not up front,
    /// so commands that need no server (`simulate`, `demo`, `--xpath`) work without a key.
    /// The key file passes the daemon's checks (mode, owner, regular file, not empty).
    pub fn client(&self) -> Result<JoeClient, CliError> {
        let settings = resolve_settings(&self.connection, &crate::config::Env::process())?;
        Ok(crate::config::client(settings)?)
    }
}

/// Sets up logging on stderr: `-v` flags win over `JBXD_LOG`, the default is `warn`.
pub fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match verbose {
        0 => std::env::var("JBXD_LOG")
            .ok()
            .and_then(|spec| EnvFilter::try_new(spec).ok())
            .unwrap_or_else(|| EnvFilter::new("warn")),
        1 => EnvFilter::new("info"),
        2 => EnvFilter::new("debug"),
        _ => EnvFilter::new("trace"),
    };
    let _ = tracing_subscriber::fmt()
        .fmt_fields(crate::telemetry::OneLineFields::default())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Interactive commands die quietly on a closed pipe (`jbxd analysis list | head`) like other
/// Unix tools, instead of panicking in `println!`. Rust ignores SIGPIPE by default; the daemon
/// keeps it that way (a peer closing a socket must be an error, not a kill).
fn restore_default_sigpipe() {
    // SAFETY: setting a signal disposition to its default before any threads of ours write to
    // stdout; no handler code runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs a parsed command line to completion and returns the process exit code. Sets up the
/// CLI's logging (`-v`, `JBXD_LOG`) for every command except `run`, whose bootstrap installs
/// the configured subscriber itself.
pub fn run(cli: Cli) -> ExitCode {
    use std::io::IsTerminal;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Run(args) = &cli.command {
        let opts = crate::daemon::DaemonOptions {
            load: crate::config::LoadOptions {
                config_file: cli.config,
                overrides: Vec::new(),
            },
            new_database: args.new_database,
        };
        return runtime.block_on(crate::daemon::main(opts));
    }
    restore_default_sigpipe();
    init_tracing(cli.verbose);
    let context = Context {
        connection: cli.connection,
        config_file: cli.config,
        json: cli.json,
        progress: std::io::stderr().is_terminal() && !cli.json,
    };
    let result = runtime.block_on(dispatch(&context, cli.command));
    match result {
        Ok(outcome) => outcome.exit_code(),
        Err(error @ CliError::Refused(_)) => {
            eprintln!("{error}");
            error.exit_code()
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            error.exit_code()
        }
    }
}

async fn dispatch(context: &Context, command: Command) -> Result<Outcome, CliError> {
    match command {
        Command::TestConnection => commands::test_connection::run(context).await,
        Command::Submit(args) => commands::submit::run(context, *args).await,
        Command::Server(command) => commands::server::run(context, command).await,
        Command::Account(command) => commands::account::run(context, command).await,
        Command::Submission(command) => commands::submission::run(context, command).await,
        Command::Analysis(command) => commands::analysis::run(context, command).await,
        Command::Simulate(args) => commands::simulate::run(args).await,
        Command::Demo(args) => commands::demo::run(context, args).await,
        // Started by `run` above, before the CLI's logging; never reaches here.
        Command::Run(_) => Err(CliError::Failed(anyhow::anyhow!(
            "`jbxd run` is started by cli::run"
        ))),
        Command::Config(command) => commands::config_check::run(context, command),
        Command::Status => commands::status::run(context).await,
        Command::Queue(command) => commands::queue::run(context, command).await,
        Command::Reports(args) => commands::reports::run(context, *args).await,
        Command::Iocs(args) => commands::iocs::run(context, *args).await,
        Command::Index(command) => {
            commands::index::run(context, command, crate::index::READ_REPORT).await
        }
        Command::Retry(args) => commands::retry::run(context, args).await,
        Command::Backup(args) => commands::backup::run(context, args).await,
        Command::Import(args) => commands::import::run(context, args).await,
        Command::Export(args) => commands::export::run(context, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_server_url_goes_before_the_command_and_submit_url_names_a_website() {
        let cli = Cli::try_parse_from([
            "jbxd",
            "--url",
            "https://sandbox.local/api",
            "submit",
            "--url",
            "https://example.com/",
            "--jobs",
            "2",
        ])
        .unwrap();
        assert_eq!(
            cli.connection.url.as_deref(),
            Some("https://sandbox.local/api")
        );
        match cli.command {
            Command::Submit(args) => {
                assert_eq!(args.urls, vec!["https://example.com/"]);
                assert_eq!(args.jobs.jobs, 2);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn connection_flags_other_than_the_url_may_follow_the_command() {
        let cli = Cli::try_parse_from([
            "jbxd",
            "analysis",
            "list",
            "--retries",
            "1",
            "--accept-tac",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.connection.retries, Some(1));
        assert!(cli.connection.accept_tac && cli.json);
    }

    #[test]
    fn the_config_file_may_go_before_or_after_the_operator_command() {
        for args in [
            &["jbxd", "run", "--config", "/tmp/j.toml"][..],
            &["jbxd", "--config", "/tmp/j.toml", "run"][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert!(matches!(
                cli.command,
                Command::Run(RunArgs {
                    new_database: false
                })
            ));
            assert_eq!(
                cli.config.as_deref(),
                Some(std::path::Path::new("/tmp/j.toml"))
            );
        }
        let cli = Cli::try_parse_from(["jbxd", "run", "--new-database"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run(RunArgs { new_database: true })
        ));
        let cli = Cli::try_parse_from(["jbxd", "status", "--json", "--config", "x.toml"]).unwrap();
        assert!(matches!(cli.command, Command::Status) && cli.json);
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("x.toml")));
    }
}
