//! Intake: the drop folder and the URL queue turned into items.
//!
//! * [`scanner`]: the drop folder. The directory listing is the truth; a file is taken when
//!   its size, mtime and ctime stayed unchanged for the settle period, copied into quarantine
//!   through the descriptor we opened, recorded, and only then removed from the folder. Bad
//!   entries are recorded as `rejected` and moved into `<drop_dir>/rejected/`.
//! * [`watcher`]: inotify (notify 8) as a hint that wakes the scanner; degrades to polling.
//! * [`urls`]: the `url_queue` worker; [`url_validate`] its pure URL rules; [`params`] the
//!   per-item submission parameters as JSON.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod drop_folder;
pub mod params;
pub mod scanner;
pub mod url_validate;
pub mod urls;
pub mod watcher;

/// Names just renamed into the drop folder from a temporary name in it (`.x.tmp` → `x`,
/// `x.part` → `x`), as the watcher saw them (paired `IN_MOVED_FROM`/`IN_MOVED_TO`). Such a
/// rename is the writer's own "complete" signal (RELIABILITY.md case 37: temp names wait for
/// their rename), so the scanner takes these files without waiting for the settle period
/// (BENCHMARKS.md P4). Only a hint: the copy is still checked against the source's `fstat`
/// before and after, and a file changed after it was recorded is left as a new one. Entries
/// expire after [`RenamedIn::TTL`]; at most [`RenamedIn::CAPACITY`] are kept (beyond that,
/// files just wait the settle period).
#[derive(Debug, Default)]
pub struct RenamedIn {
    names: Mutex<HashMap<OsString, Instant>>,
}

impl RenamedIn {
    pub const TTL: Duration = Duration::from_secs(10);
    pub const CAPACITY: usize = 10_000;

    /// Notes that `name` was renamed in from a temp name just now.
    pub fn note(&self, name: &OsStr) {
        let mut names = self.names.lock().expect("renamed-in lock");
        if names.len() >= Self::CAPACITY {
            names.retain(|_, at| at.elapsed() < Self::TTL);
        }
        if names.len() < Self::CAPACITY {
            names.insert(name.to_owned(), Instant::now());
        }
    }

    /// Whether `name` was renamed in from a temp name within the TTL (forgets it either way).
    pub fn take(&self, name: &OsStr) -> bool {
        let mut names = self.names.lock().expect("renamed-in lock");
        names
            .remove(name)
            .is_some_and(|at| at.elapsed() < Self::TTL)
    }

    /// Whether any name waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.names.lock().expect("renamed-in lock").is_empty()
    }
}

/// A file name (raw bytes) as one printable line for logs and the `items.name` column:
/// valid UTF-8 is kept except control characters and backslashes, which are escaped (`\n`,
/// `\u{1b}`, `\\`); invalid bytes become `\xNN`.
pub fn escape_name(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' || c.is_control() {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_in_name_is_taken_once_and_forgotten() {
        let renamed = RenamedIn::default();
        assert!(renamed.is_empty());
        renamed.note(OsStr::new("x.exe"));
        assert!(!renamed.is_empty());
        assert!(!renamed.take(OsStr::new("other")));
        assert!(renamed.take(OsStr::new("x.exe")));
        assert!(!renamed.take(OsStr::new("x.exe")));
        assert!(renamed.is_empty());
    }

    #[test]
    fn renamed_in_names_are_bounded() {
        let renamed = RenamedIn::default();
        for i in 0..RenamedIn::CAPACITY + 10 {
            renamed.note(OsStr::new(&format!("f{i}")));
        }
        assert!(renamed.take(OsStr::new("f0")));
        assert!(!renamed.take(OsStr::new(&format!("f{}", RenamedIn::CAPACITY + 5))));
    }

    #[test]
    fn names_are_escaped_to_one_printable_line() {
        assert_eq!(escape_name(b"plain.exe"), "plain.exe");
        assert_eq!(escape_name(b"a\nb\tc"), "a\\nb\\tc");
        assert_eq!(escape_name(b"\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape_name(b"\xff\xfe.bin"), "\\xff\\xfe.bin");
        assert_eq!(escape_name(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape_name("bücher".as_bytes()), "bücher");
        assert_eq!(escape_name(b"-rf"), "-rf");
    }
}
