//! Creating the drop folder at start-up: intake is the only code that touches it.

use std::path::Path;

/// Creates the drop folder (and its missing parents) if it does not exist. A failure is
/// logged, not fatal: the scanner logs the missing folder once and retries every scan, taking
/// files as soon as someone creates it, and the rest of the daemon (URLs, downloads) works.
pub fn create_if_missing(drop_dir: &Path) {
    if !drop_dir.exists()
        && let Err(error) = std::fs::create_dir_all(drop_dir)
    {
        tracing::warn!(drop_dir = %drop_dir.display(), %error, "cannot create the drop folder");
    }
}
