//! One file per command group; each turns arguments into API calls and output.

pub mod account;
pub mod analysis;
pub mod backup;
pub mod config_check;
pub mod decrypt;
pub mod demo;
pub mod download;
pub mod export;
pub mod import;
pub mod index;
pub mod iocs;
pub mod operator;
pub mod queue;
pub mod reports;
pub mod retry;
pub mod search;
pub mod server;
pub mod simulate;
pub mod status;
pub mod submission;
pub mod submit;
pub mod test_connection;

use std::future::Future;

use clap::Args;
use futures_util::StreamExt;

use crate::api::ApiError;

use super::Outcome;
use super::output::failure_line;

/// How many items a multi-item command works on at once.
#[derive(Debug, Clone, Copy, Args)]
pub struct Jobs {
    /// Work on this many items at once.
    #[arg(long = "jobs", short = 'j', value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

/// Runs `work` over every item with at most `jobs` in flight, keeping the input order in the
/// results so that output lines up with the command line.
pub async fn for_each<I, T, F, Fut>(items: Vec<I>, jobs: Jobs, work: F) -> Vec<T>
where
    F: FnMut(I) -> Fut,
    Fut: Future<Output = T>,
{
    futures_util::stream::iter(items)
        .map(work)
        .buffered(usize::from(jobs.jobs.max(1)))
        .collect()
        .await
}

/// Reports the failure of a single-action command in the seed's shape and returns its outcome.
pub fn single_failure(action: &str, error: &ApiError) -> Outcome {
    eprintln!(
        "{}",
        failure_line(action, error.status(), &error.server_message())
    );
    Outcome::failure()
}
