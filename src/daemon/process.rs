//! What the process sets up for itself before anything else: no core dumps, and the signals
//! that start a clean stop.

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
/// otherwise ignored (the stop timeout bounds the shutdown).
pub fn install_signal_handler(cancel: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
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
