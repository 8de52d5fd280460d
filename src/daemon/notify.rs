//! systemd notifications (`sd_notify(3)`): `READY=1`, `STATUS=…`, `STOPPING=1`, `WATCHDOG=1`.
//!
//! [`Notifier::from_env`] reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` the way
//! `sd_notify::watchdog_enabled` does; tests build a [`Notifier`] from explicit values instead,
//! because the environment is process-wide. Without a socket every message is dropped, so the
//! daemon behaves the same outside systemd.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use sd_notify::NotifyState;

/// Where notifications go and whether systemd expects watchdog pings.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// No systemd: nothing is sent.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// From the process environment (what systemd sets for `Type=notify` and `WatchdogSec=`).
    pub fn from_env() -> Self {
        Self {
            socket: std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// From explicit values of `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`: the
    /// watchdog is on only when `WATCHDOG_USEC` is a positive number and `WATCHDOG_PID` is
    /// unset or `own_pid` (a `WATCHDOG_PID` of another process means the variables were
    /// inherited, and the pings are not ours to send).
    pub fn from_vars(
        notify_socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        own_pid: u32,
    ) -> Self {
        let usec = watchdog_usec
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&u| u > 0);
        let pid_ok = match watchdog_pid {
            None => true,
            Some(p) => p.trim().parse::<u32>().ok() == Some(own_pid),
        };
        Self {
            socket: notify_socket.filter(|s| !s.is_empty()).map(str::to_owned),
            watchdog: usec.filter(|_| pid_ok).map(Duration::from_micros),
        }
    }

    /// A socket path (tests): no watchdog unless [`Notifier::with_watchdog`].
    pub fn to_socket(path: impl Into<PathBuf>) -> Self {
        Self {
            socket: Some(path.into().to_string_lossy().into_owned()),
            watchdog: None,
        }
    }

    pub fn with_watchdog(mut self, interval: Option<Duration>) -> Self {
        self.watchdog = interval;
        self
    }

    /// systemd's watchdog timeout, when pings are expected from us.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends one datagram with the given lines. Failures are returned for logging; the daemon
    /// never stops because systemd is not listening.
    pub fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        let Some(target) = &self.socket else {
            return Ok(());
        };
        let mut message = String::new();
        for state in states {
            // STATUS= is one line: a newline would start a new assignment.
            let line = state.to_string().replace('\n', " ");
            message.push_str(&line);
            message.push('\n');
        }
        let socket = UnixDatagram::unbound()?;
        // A full socket buffer must not stall the daemon: drop the datagram instead.
        socket.set_nonblocking(true)?;
        let sent = if let Some(name) = target.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(message.as_bytes(), &addr)?
        } else {
            socket.send_to(message.as_bytes(), target)?
        };
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short notify write",
            ));
        }
        Ok(())
    }

    /// Sends and logs a failure at debug level (outside systemd there is nobody to tell).
    pub fn notify(&self, states: &[NotifyState<'_>]) {
        if let Err(error) = self.send(states) {
            tracing::debug!(%error, "cannot notify systemd");
        }
    }

    pub fn status(&self, text: &str) {
        self.notify(&[NotifyState::Status(text)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_103_watchdog_only_with_usec_and_our_pid() {
        let me = 4242;
        assert_eq!(
            Notifier::from_vars(Some("/s"), None, None, me).watchdog(),
            None
        );
        assert_eq!(
            Notifier::from_vars(Some("/s"), Some("2000000"), None, me).watchdog(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            Notifier::from_vars(Some("/s"), Some("2000000"), Some("4242"), me).watchdog(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            Notifier::from_vars(Some("/s"), Some("2000000"), Some("1"), me).watchdog(),
            None
        );
        assert_eq!(
            Notifier::from_vars(Some("/s"), Some("0"), None, me).watchdog(),
            None
        );
        assert_eq!(
            Notifier::from_vars(Some("/s"), Some("soon"), None, me).watchdog(),
            None
        );
    }

    #[test]
    fn datagrams_reach_a_path_socket_and_status_stays_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to_socket(&path);
        n.send(&[NotifyState::Status("a\nb"), NotifyState::Ready])
            .unwrap();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..len]).unwrap(),
            "STATUS=a b\nREADY=1\n"
        );
        // Nothing configured: silently nothing.
        Notifier::disabled().send(&[NotifyState::Ready]).unwrap();
    }
}
