//! The outcome of the last storage write, kept in memory (RELIABILITY.md case 118): a staging
//! copy, a publish or a report that could not be written is noted here by the code that wrote
//! it, and a later successful write clears it. The daemon's health check reads it (and stores
//! it in the `health` table when the database takes writes), so `jbxd status` never says "ok"
//! while the last write to `data_dir` failed, even when the disk's free space looks fine
//! (a read-only remount, an I/O error, a full separate volume for `reports/`).

use std::io;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// A storage write that failed: what was being written, where, why and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteFailure {
    /// What was being done ("copying a sample into quarantine", "writing a report").
    pub what: &'static str,
    pub path: String,
    pub error: String,
    /// When (the schema's TEXT time format).
    pub at: String,
}

impl std::fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} failed at {}: {}",
            self.what, self.path, self.at, self.error
        )
    }
}

/// Shared by every clone of one [`super::Store`].
#[derive(Debug, Default)]
pub struct WriteLog {
    last_failure: Mutex<Option<WriteFailure>>,
}

impl WriteLog {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<WriteFailure>> {
        self.last_failure.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a failed write (the newest failure replaces an older one).
    pub fn failed(&self, what: &'static str, path: &Path, error: &io::Error) {
        *self.slot() = Some(WriteFailure {
            what,
            path: path.display().to_string(),
            error: error.to_string(),
            // The schema's TEXT time format (storage does not depend on `db`).
            at: chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
        });
    }

    /// Notes a write that went through: the last write no longer failed.
    pub fn succeeded(&self) {
        let mut slot = self.slot();
        if slot.is_some() {
            *slot = None;
        }
    }

    /// The failure of the last write, if it failed.
    pub fn last_failure(&self) -> Option<WriteFailure> {
        self.slot().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_kept_until_a_later_write_succeeds() {
        let log = WriteLog::default();
        assert_eq!(log.last_failure(), None);
        let error = io::Error::from_raw_os_error(libc::ENOSPC);
        log.failed("writing a report", Path::new("/d/reports/1/a.html"), &error);
        let failure = log.last_failure().unwrap();
        assert_eq!(failure.what, "writing a report");
        assert!(
            failure.to_string().contains("/d/reports/1/a.html"),
            "{failure}"
        );
        assert!(failure.error.contains("No space left"), "{failure:?}");
        log.succeeded();
        assert_eq!(log.last_failure(), None);
    }
}
