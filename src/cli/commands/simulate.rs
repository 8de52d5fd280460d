//! `jbxd simulate`: the embedded Joe Sandbox API simulator as a standalone server.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::cli::{CliError, Outcome};
use crate::simulator::{self, SimConfig, SimMode};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The API key the simulator accepts (a test key, not a secret).
    #[arg(long, value_name = "KEY", env = "JBXD_SIM_API_KEY")]
    pub api_key: Option<String>,

    /// cloud: account/info, quotas, terms acceptance required; onprem: none of these.
    #[arg(long, value_enum, default_value = "cloud")]
    pub mode: SimMode,

    /// How long a simulated analysis takes, in seconds.
    #[arg(long, value_name = "N")]
    pub analysis_seconds: Option<u64>,

    /// Where uploaded samples are kept (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Items per page of the list endpoints.
    #[arg(long, value_name = "N")]
    pub page_size: Option<usize>,

    /// Delay, in milliseconds, before a new analysis shows up in search results.
    #[arg(long, value_name = "N")]
    pub search_lag_ms: Option<u64>,

    /// Refuse chunked uploads, like an older server.
    #[arg(long)]
    pub no_chunked: bool,

    /// Benchmarks: bytes of filler streamed at the end of every `html` report.
    #[arg(long, value_name = "BYTES")]
    pub html_padding_bytes: Option<u64>,
}

pub async fn run(args: SimulateArgs) -> Result<Outcome, CliError> {
    let mut config = SimConfig {
        listen: args.listen,
        mode: args.mode,
        chunked_upload: !args.no_chunked,
        data_dir: args.data_dir,
        ..SimConfig::default()
    };
    // Unset options keep the simulator's own defaults rather than restating them here.
    if let Some(key) = args.api_key {
        config.api_key = key;
    }
    if let Some(seconds) = args.analysis_seconds {
        config.analysis_seconds = seconds;
    }
    if let Some(size) = args.page_size {
        config.page_size = size;
    }
    if let Some(bytes) = args.html_padding_bytes {
        config.html_padding_bytes = bytes;
    }
    if let Some(ms) = args.search_lag_ms {
        config.search_lag = Duration::from_millis(ms);
    }
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    simulator::run(config, cancel)
        .await
        .map_err(CliError::Failed)?;
    Ok(Outcome::success())
}

/// Ctrl-C and SIGTERM both end the simulator cleanly.
async fn cancel_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    cancel.cancel();
}
