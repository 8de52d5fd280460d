//! What the process sets up for itself before anything else: no core dumps, and the signals
//! that start a clean stop (and SIGHUP, taken so that it never kills the process).

use tokio_util::sync::CancellationToken;

/// `prctl(PR_SET_DUMPABLE, 0)`: no core dump can carry the API key or sample bytes, and
/// processes without `CAP_SYS_PTRACE` cannot attach.
pub fn disable_core_dumps() {
    use rustix::process::{DumpableBehavior, set_dumpable_behavior};
    if let Err(error) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        eprintln!("jbxd: warning: cannot disable core dumps: {error}");
    }
}

/// SIGTERM (systemd) and SIGINT (a terminal) cancel `cancel`; a second signal is logged and
/// otherwise ignored (the stop timeout bounds the shutdown). SIGHUP is taken from here on too,
/// so that a reload during start-up does not kill the process (its default action); once
/// running, the daemon re-reads the API key on it (`key_reload`).
pub fn install_signal_handler(cancel: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    tracing::debug!("SIGHUP received");
                    continue;
                }
            };
            if cancel.is_cancelled() {
                tracing::info!(signal = name, "already stopping");
            } else {
                tracing::info!(signal = name, "stopping");
                cancel.cancel();
            }
        }
    });
    Ok(())
}
