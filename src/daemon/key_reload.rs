//! Re-reading the API key without a restart: a rotated key file, credential or vault secret
//! takes effect when the health check finds the key in use rejected, and on SIGHUP
//! (`systemctl reload jbxd`, the unit's `ExecReload=`). Never per request: a vault command
//! runs once per rejection seen by a health run or per signal.
//!
//! The key is resolved by the one resolver (`config::resolve_api_key`, same sources, same
//! checks as at start) on a blocking thread (a vault command may take up to
//! `secrets.command_timeout_secs`) and handed to the client, whose clones all send it from
//! then on. A failed re-read keeps the key in use: the daemon never ends up with none.

use tokio_util::sync::CancellationToken;

use crate::app::{App, PauseReason};
use crate::config::{self, Env, KeyLookup, SecretSource};

/// What a re-read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A different key, now in use.
    Changed(SecretSource),
    /// The same key as before.
    Unchanged(SecretSource),
    /// The source could not be read (the message names it); the old key stays in use.
    Failed(String),
}

impl Reloaded {
    /// The detail of the rejected-key pause: what the operator does about it.
    pub fn rejected_detail(&self, server_message: &str) -> String {
        match self {
            Self::Changed(source) | Self::Unchanged(source) => format!(
                "API key rejected ({server_message}): update {}; jbxd re-reads it on SIGHUP or \
                 at the next health check",
                source.what_to_update()
            ),
            Self::Failed(error) => format!(
                "API key rejected ({server_message}), and re-reading it failed: {error}; fix \
                 it, then send SIGHUP or wait for the next health check"
            ),
        }
    }
}

/// Resolves the API key again and puts it in use when it changed.
pub async fn reload_key(app: &App) -> Reloaded {
    let config = app.config.clone();
    let resolved = tokio::task::spawn_blocking(move || {
        config::resolve_api_key(KeyLookup::Daemon(&config), &Env::process())
    })
    .await;
    match resolved {
        Ok(Ok((key, source))) => {
            if app.client.replace_key(key) {
                tracing::info!(key_source = %source, "API key re-read: a new key is in use");
                Reloaded::Changed(source)
            } else {
                Reloaded::Unchanged(source)
            }
        }
        Ok(Err(error)) => Reloaded::Failed(error.to_string()),
        Err(error) => Reloaded::Failed(format!("the re-read did not finish: {error}")),
    }
}

/// The SIGHUP listener: each signal re-reads the key; a changed key while the rejected-key
/// pause is in force is checked at once (a health run of the server checks), so work resumes
/// without waiting for the schedule.
pub(super) async fn on_hangup(app: App, stop: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP: the API key is re-read only by the health check");
            stop.cancelled().await;
            return Ok(());
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            received = hangups.recv() => if received.is_none() { stop.cancelled().await; return Ok(()) },
        }
        match reload_key(&app).await {
            Reloaded::Changed(_) => {
                let paused = app.pauses().await.is_ok_and(|pauses| {
                    pauses
                        .iter()
                        .any(|p| p.reason == PauseReason::InvalidApiKey)
                });
                if paused {
                    super::health::check_remote(&app).await;
                }
            }
            Reloaded::Unchanged(source) => {
                tracing::info!(key_source = %source, "SIGHUP: API key re-read, unchanged")
            }
            Reloaded::Failed(error) => {
                tracing::warn!(%error, "SIGHUP: cannot re-read the API key; the old one stays in use")
            }
        }
    }
}
