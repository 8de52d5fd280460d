//! Small pure text helpers shared by modules that must not depend on each other.

use std::borrow::Cow;

/// `text` with every control character escaped (`\n`, `\r`, `\t`, `\u{1b}`, …), so that text
/// from outside (a server message, a parameter name, a file name) stays on one log line and one
/// line of a stored error (RELIABILITY.md case 119). Everything else, backslashes and non-ASCII
/// letters included, is kept as it is; text without control characters is not copied.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` as one printable line of at most `max_chars` characters (control characters
/// escaped first, then cut with a trailing `…`): the form of every error text stored in the
/// database and of outside text quoted in a log line.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let escaped = escape_controls(text);
    match escaped.char_indices().nth(max_chars) {
        None => escaped.into_owned(),
        Some((cut, _)) => {
            let mut out = escaped[..cut].to_owned();
            // Never leave half an escape sequence behind: drop an unfinished `\u{…` tail.
            if let Some(start) = out.rfind("\\u{").filter(|&i| !out[i..].contains('}')) {
                out.truncate(start);
            }
            out.push('…');
            out
        }
    }
}

/// Cuts `name` to at most `max` bytes at a character boundary, keeping a short extension
/// (up to 16 bytes) so that a long file name still ends in `.docx`.
pub fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty() && e.len() <= 16 && e.len() < max);
    let keep = max - ext.map_or(0, |e| e.len() + 1);
    let mut cut = keep;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    match ext {
        Some(ext) => format!("{}.{ext}", &name[..cut]),
        None => name[..cut].to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else_is_touched() {
        assert_eq!(
            escape_controls("a\r\nb\tc\u{1b}[31m\u{7f}"),
            "a\\r\\nb\\tc\\u{1b}[31m\\u{7f}"
        );
        assert_eq!(escape_controls("C:\\path ä €"), "C:\\path ä €");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed("plain")));
        // C1 controls (U+0080–U+009F) split lines in some terminals too.
        assert_eq!(escape_controls("x\u{85}y"), "x\\u{85}y");
    }

    #[test]
    fn one_line_cuts_at_a_character_and_never_inside_an_escape() {
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("äöü", 3), "äöü");
        assert_eq!(one_line("line\nnext", 100), "line\\nnext");
        // `ab\u{1b}` cut after 5 characters would end in `\u{1`: the fragment goes.
        assert_eq!(one_line("ab\u{1b}cd", 5), "ab…");
        assert!(!one_line(&"\n".repeat(50), 7).contains('\n'));
    }

    #[test]
    fn long_names_keep_their_extension_and_utf8_boundaries() {
        let cut = truncate_keeping_extension(&format!("{}.docx", "ä".repeat(300)), 255);
        assert!(cut.len() <= 255);
        assert!(cut.ends_with(".docx"));
        assert_eq!(truncate_keeping_extension("short.txt", 255), "short.txt");
        assert_eq!(truncate_keeping_extension("abcdef", 3), "abc");
    }
}
