//! The JSON reports (`json`, `jsonfixed`, `lightjson*`, `irjson*`), read by a pull parser of
//! our own over a 1 MiB buffer rather than `serde_json`: skipping the bulk of a report
//! (`behavior`: hundreds of MB of process, file and registry calls) must cost no allocation, and
//! a kept string must be cut while it is read, not after a 1 GB string sits in memory. The
//! grammar is checked everywhere, skipped parts included, so a truncated or garbled document
//! is an error with its byte position; the reader is lenient only on control characters and
//! invalid UTF-8 inside strings (replaced) and on the exact shape of numbers.

use std::io::{ErrorKind, Read};

use super::extract::{Action, Collector, Place, Rec, child, scalar_in};
use super::node::Node;
use super::{MAX_DEPTH, MAX_RECORD, MAX_STRING, ReportError, ReportFacts};

const BUFFER: usize = 1 << 20;
/// Keys longer than this are compared by their first bytes only (no known key is this long).
const MAX_KEY: usize = 256;
/// What one captured value costs its record's budget beyond its text.
const NODE_COST: usize = 8;

pub(super) fn parse(reader: impl Read) -> Result<ReportFacts, ReportError> {
    let mut walker = Walker {
        rd: Reader {
            inner: reader,
            buf: vec![0; BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            consumed: 0,
            depth: 0,
        },
        collector: Collector::default(),
        scope: String::new(),
    };
    walker.root()?;
    Ok(walker.collector.finish())
}

struct Reader<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// Bytes of the document before `buf`.
    consumed: u64,
    depth: usize,
}

impl<R: Read> Reader<R> {
    fn at(&self) -> u64 {
        self.consumed + self.pos as u64
    }

    fn error(&self, what: &str) -> ReportError {
        ReportError::NotJson(format!("{what} at byte {}", self.at()))
    }

    /// Refills the (consumed) buffer; false at the end of the input.
    fn fill(&mut self) -> Result<bool, ReportError> {
        self.consumed += self.len as u64;
        self.pos = 0;
        self.len = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => {
                    self.len = n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReportError::Io(e)),
            }
        }
    }

    /// The next byte that is not white space, not consumed; `None` at the end.
    fn peek(&mut self) -> Result<Option<u8>, ReportError> {
        loop {
            while self.pos < self.len {
                let b = self.buf[self.pos];
                if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn peek_in(&mut self, inside: &str) -> Result<u8, ReportError> {
        self.peek()?
            .ok_or_else(|| self.error(&format!("unexpected end of the document {inside}")))
    }

    /// The next byte, consumed (white space included).
    fn byte(&mut self, inside: &str) -> Result<u8, ReportError> {
        if self.pos == self.len && !self.fill()? {
            return Err(self.error(&format!("unexpected end of the document {inside}")));
        }
        self.pos += 1;
        Ok(self.buf[self.pos - 1])
    }

    /// The first byte of the next value (not consumed), checked to start one.
    fn value_start(&mut self) -> Result<u8, ReportError> {
        let b = self.peek_in("where a value was expected")?;
        match b {
            b'{' | b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9' => Ok(b),
            other => Err(self.error(&format!(
                "unexpected {} where a value was expected",
                shown(other)
            ))),
        }
    }

    fn open(&mut self) -> Result<(), ReportError> {
        self.pos += 1;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ReportError::TooDeep(self.at()));
        }
        Ok(())
    }

    /// After `{` or a member: the next member's key (into `key`, cut to [`MAX_KEY`]), with its
    /// `:` consumed; false at `}`.
    fn next_key(&mut self, first: &mut bool, key: &mut Vec<u8>) -> Result<bool, ReportError> {
        let mut b = self.peek_in("inside an object")?;
        if b == b'}' {
            self.pos += 1;
            self.depth -= 1;
            return Ok(false);
        }
        if !*first {
            if b != b',' {
                return Err(self.error(&format!("expected ',' or '}}', found {}", shown(b))));
            }
            self.pos += 1;
            b = self.peek_in("inside an object")?;
        }
        *first = false;
        if b != b'"' {
            return Err(self.error(&format!("expected a key, found {}", shown(b))));
        }
        key.clear();
        self.string(Some(key), MAX_KEY)?;
        let b = self.peek_in("inside an object")?;
        if b != b':' {
            return Err(self.error(&format!("expected ':' after a key, found {}", shown(b))));
        }
        self.pos += 1;
        Ok(true)
    }

    /// After `[` or an item: whether another item follows (its `,` consumed); false at `]`.
    fn next_item(&mut self, first: &mut bool) -> Result<bool, ReportError> {
        let b = self.peek_in("inside a list")?;
        if b == b']' {
            self.pos += 1;
            self.depth -= 1;
            return Ok(false);
        }
        if !*first {
            if b != b',' {
                return Err(self.error(&format!("expected ',' or ']', found {}", shown(b))));
            }
            self.pos += 1;
        }
        *first = false;
        Ok(true)
    }

    /// A string (at its opening quote), its decoded bytes kept in `out` up to `cap` bytes.
    fn string(&mut self, mut out: Option<&mut Vec<u8>>, cap: usize) -> Result<(), ReportError> {
        self.pos += 1;
        loop {
            if self.pos == self.len && !self.fill()? {
                return Err(self.error("unexpected end of the document inside a string"));
            }
            let hay = &self.buf[self.pos..self.len];
            let Some(i) = memchr::memchr2(b'"', b'\\', hay) else {
                keep(&mut out, hay, cap);
                self.pos = self.len;
                continue;
            };
            keep(&mut out, &hay[..i], cap);
            self.pos += i + 1;
            if self.buf[self.pos - 1] == b'"' {
                return Ok(());
            }
            let decoded = match self.byte("inside a string")? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape()?,
                other => {
                    return Err(self.error(&format!("invalid escape \\{}", shown(other))));
                }
            };
            let mut utf8 = [0; 4];
            keep(&mut out, decoded.encode_utf8(&mut utf8).as_bytes(), cap);
        }
    }

    /// After `\u`: the escaped character (a surrogate pair joined; a lone half is U+FFFD).
    fn unicode_escape(&mut self) -> Result<char, ReportError> {
        let high = self.hex4()?;
        if !(0xD800..0xDC00).contains(&high) {
            return Ok(char::from_u32(high).unwrap_or('\u{fffd}'));
        }
        if self.pos + 1 < self.len && self.buf[self.pos] == b'\\' && self.buf[self.pos + 1] == b'u'
        {
            self.pos += 2;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return Ok(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
        }
        Ok('\u{fffd}')
    }

    fn hex4(&mut self) -> Result<u32, ReportError> {
        let mut code = 0;
        for _ in 0..4 {
            let b = self.byte("inside a string")?;
            let digit = (b as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            code = code * 16 + digit;
        }
        Ok(code)
    }

    /// A number (at its first byte), its text kept in `out`.
    fn number(&mut self, out: &mut String) -> Result<(), ReportError> {
        out.clear();
        loop {
            while self.pos < self.len {
                let b = self.buf[self.pos];
                if !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    return self.check_number(out);
                }
                if out.len() > 64 {
                    return Err(self.error("a number of more than 64 characters"));
                }
                out.push(b as char);
                self.pos += 1;
            }
            if !self.fill()? {
                return self.check_number(out);
            }
        }
    }

    fn check_number(&self, text: &str) -> Result<(), ReportError> {
        if is_json_number(text.as_bytes()) {
            Ok(())
        } else {
            Err(self.error(&format!("invalid number {text:?}")))
        }
    }

    /// `true`, `false` or `null` (at its first byte).
    fn literal(&mut self) -> Result<Node, ReportError> {
        let (word, node): (&[u8], Node) = match self.buf[self.pos] {
            b't' => (b"true", Node::Bool(true)),
            b'f' => (b"false", Node::Bool(false)),
            _ => (b"null", Node::Null),
        };
        for expected in word {
            if self.byte("inside a literal")? != *expected {
                return Err(self.error("invalid literal (expected true, false or null)"));
            }
        }
        Ok(node)
    }

    /// Skips one value, checking its grammar; allocates nothing but its number text.
    fn skip(&mut self) -> Result<(), ReportError> {
        match self.value_start()? {
            b'{' => {
                self.open()?;
                let (mut first, mut key) = (true, Vec::new());
                while self.next_key(&mut first, &mut key)? {
                    self.skip()?;
                }
            }
            b'[' => {
                self.open()?;
                let mut first = true;
                while self.next_item(&mut first)? {
                    self.skip()?;
                }
            }
            b'"' => self.string(None, 0)?,
            b't' | b'f' | b'n' => {
                self.literal()?;
            }
            _ => self.number(&mut String::new())?,
        }
        Ok(())
    }

    /// One value as a [`Node`], within `budget` bytes of text (the rest skipped, `cut` set).
    fn capture(&mut self, budget: &mut usize, cut: &mut bool) -> Result<Node, ReportError> {
        *budget = budget.saturating_sub(NODE_COST);
        Ok(match self.value_start()? {
            b'{' => {
                self.open()?;
                let (mut first, mut key, mut entries) = (true, Vec::new(), Vec::new());
                while self.next_key(&mut first, &mut key)? {
                    // Per-indicator signature hits are not facts; they can be large.
                    if *budget == 0 || key == b"sighits" {
                        *cut |= *budget == 0;
                        self.skip()?;
                        continue;
                    }
                    *budget = budget.saturating_sub(key.len());
                    let name = String::from_utf8_lossy(&key).into_owned();
                    let value = self.capture(budget, cut)?;
                    entries.push((name, value));
                }
                Node::Map(entries)
            }
            b'[' => {
                self.open()?;
                let (mut first, mut items) = (true, Vec::new());
                while self.next_item(&mut first)? {
                    if *budget == 0 {
                        *cut = true;
                        self.skip()?;
                        continue;
                    }
                    items.push(self.capture(budget, cut)?);
                }
                Node::List(items)
            }
            b'"' => {
                let mut text = Vec::new();
                self.string(Some(&mut text), MAX_STRING.min(*budget))?;
                *budget = budget.saturating_sub(text.len());
                Node::Str(String::from_utf8_lossy(&text).into_owned())
            }
            b't' | b'f' | b'n' => self.literal()?,
            _ => {
                let mut text = String::new();
                self.number(&mut text)?;
                Node::Num(text)
            }
        })
    }
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(text: &[u8]) -> bool {
    fn digits(text: &[u8], at: &mut usize) -> usize {
        let start = *at;
        while text.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        *at - start
    }
    let mut at = usize::from(text.first() == Some(&b'-'));
    match text.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => {
            digits(text, &mut at);
        }
        _ => return false,
    }
    if text.get(at) == Some(&b'.') {
        at += 1;
        if digits(text, &mut at) == 0 {
            return false;
        }
    }
    if matches!(text.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(text.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        if digits(text, &mut at) == 0 {
            return false;
        }
    }
    at == text.len()
}

/// Appends `bytes` to `out` while it holds fewer than `cap` bytes.
fn keep(out: &mut Option<&mut Vec<u8>>, bytes: &[u8], cap: usize) {
    if let Some(out) = out {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

fn shown(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

struct Walker<R> {
    rd: Reader<R>,
    collector: Collector,
    /// The `yara/<scope>` being walked.
    scope: String,
}

impl<R: Read> Walker<R> {
    fn root(&mut self) -> Result<(), ReportError> {
        match self.rd.peek()? {
            None => return Err(ReportError::NotJson("the document is empty".into())),
            Some(b'{') => {}
            Some(_) => {
                self.rd.skip()?;
                self.end()?;
                return Err(ReportError::NotAReport(
                    "its root is not an object with `analysis`".into(),
                ));
            }
        }
        self.rd.open()?;
        let (mut first, mut key, mut found) = (true, Vec::new(), false);
        while self.rd.next_key(&mut first, &mut key)? {
            if key == b"analysis" && self.rd.value_start()? == b'{' {
                found = true;
                self.enter(Place::Analysis)?;
            } else {
                self.rd.skip()?;
            }
        }
        self.end()?;
        if !found {
            return Err(ReportError::NotAReport(
                "no `analysis` object at its root".into(),
            ));
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), ReportError> {
        match self.rd.peek()? {
            None => Ok(()),
            Some(b) => Err(self
                .rd
                .error(&format!("unexpected {} after the document", shown(b)))),
        }
    }

    /// Walks the value at `place`: an object's children by the table, a list's items as the
    /// place itself (list-or-object), a scalar only where it means something.
    fn enter(&mut self, place: Place) -> Result<(), ReportError> {
        match self.rd.value_start()? {
            b'{' => {
                self.rd.open()?;
                let (mut first, mut key) = (true, Vec::new());
                while self.rd.next_key(&mut first, &mut key)? {
                    let name = std::str::from_utf8(&key).unwrap_or("");
                    if place == Place::Analysis {
                        self.collector.saw_section(name);
                    }
                    match child(place, name) {
                        Action::Skip => self.rd.skip()?,
                        Action::Enter(next) => {
                            if next == Place::YaraScope {
                                self.scope = name.to_owned();
                            }
                            self.enter(next)?;
                        }
                        Action::Capture(rec) => self.capture(rec)?,
                    }
                }
            }
            b'[' => {
                self.rd.open()?;
                let mut first = true;
                while self.rd.next_item(&mut first)? {
                    self.enter(place)?;
                }
            }
            _ => match scalar_in(place) {
                Some(rec) => self.capture(rec)?,
                None => self.rd.skip()?,
            },
        }
        Ok(())
    }

    /// Captures one record (each item of a list being one) and hands it to the collector.
    fn capture(&mut self, rec: Rec) -> Result<(), ReportError> {
        if self.rd.value_start()? == b'[' {
            self.rd.open()?;
            let mut first = true;
            while self.rd.next_item(&mut first)? {
                self.capture(rec)?;
            }
            return Ok(());
        }
        let (mut budget, mut cut) = (MAX_RECORD, false);
        let node = self.rd.capture(&mut budget, &mut cut)?;
        if cut {
            self.collector.mark_truncated();
        }
        self.collector.record(rec, &node, &self.scope);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_json_grammar() {
        for ok in ["0", "-0", "12", "-3.25", "1e5", "2E-3", "0.5e+10"] {
            assert!(is_json_number(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "-", "01", "1.", ".5", "+1", "1e", "1-2", "--1", "1.2.3"] {
            assert!(!is_json_number(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn a_kept_string_stops_growing_at_its_cap_but_is_read_to_its_end() {
        let doc = format!(
            r#"{{"analysis": {{"errorinfo": {{"error": "{}"}}, "reporttype": "IR"}}}}"#,
            "x".repeat(MAX_STRING * 3)
        );
        let facts = parse(doc.as_bytes()).unwrap();
        assert_eq!(facts.errors[0].len(), MAX_STRING);
        assert_eq!(facts.family, Some(super::super::ReportFamily::Incident));
    }

    #[test]
    fn a_lone_surrogate_escape_becomes_the_replacement_character() {
        let doc = br#"{"analysis": {"errors": {"error": ["a\ud800b", "\udc00"]}}}"#;
        let facts = parse(&doc[..]).unwrap();
        assert_eq!(facts.errors, ["a\u{fffd}b", "\u{fffd}"]);
    }
}
