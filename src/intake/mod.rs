//! Intake: the drop folder and the URL queue turned into items.
//!
//! * [`scanner`]: the drop folder. The directory listing is the truth; a file is taken when
//!   its size, mtime and ctime stayed unchanged for the settle period, copied into quarantine
//!   through the descriptor we opened, recorded, and only then removed from the folder. Bad
//!   entries are recorded as `rejected` and moved into `<drop_dir>/rejected/`.
//! * [`watcher`]: inotify (notify 8) as a hint that wakes the scanner; degrades to polling.
//! * [`urls`]: the `url_queue` worker; [`url_validate`] its pure URL rules; [`params`] the
//!   per-item submission parameters as JSON.

use std::time::Duration;

pub mod params;
pub mod scanner;
pub mod url_validate;
pub mod urls;
pub mod watcher;

/// The smallest delay any configured interval is shortened to (0 in tests means "as fast as
/// the floor allows").
pub const MIN_DELAY: Duration = Duration::from_millis(100);

pub(crate) fn floor(d: Duration) -> Duration {
    d.max(MIN_DELAY)
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
