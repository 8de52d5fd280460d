//! The XML reports (`xml`, `lightxml`, `irxml`), walked as `quick-xml` events (no DOM) by the
//! same table as the JSON reports. A captured element becomes the [`Node`] Joe's own XML→JSON
//! conversion would give: attributes as `@x`, text beside attributes or children as `$`, a
//! leaf's text as its value, repeated children as repeated keys.
//!
//! `quick-xml` holds one event (a tag or a text run) in memory at a time; [`Guard`] refuses a
//! run of more than [`MAX_XML_EVENT`] bytes without a `<`, so that one event stays bounded too.

use std::io::{BufReader, Read};

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};

use super::extract::{Action, Collector, Place, Rec, child, scalar_in};
use super::node::Node;
use super::{MAX_DEPTH, MAX_RECORD, MAX_STRING, MAX_XML_EVENT, ReportError, ReportFacts};

const BUFFER: usize = 1 << 20;

pub(super) fn parse(reader: impl Read) -> Result<ReportFacts, ReportError> {
    let guard = Guard {
        inner: reader,
        run: 0,
        read: 0,
        over: false,
    };
    let mut walker = Walker {
        xml: quick_xml::Reader::from_reader(BufReader::with_capacity(BUFFER, guard)),
        buf: Vec::new(),
        collector: Collector::default(),
        scope: String::new(),
        depth: 0,
    };
    walker.root()?;
    Ok(walker.collector.finish())
}

/// Counts the bytes since the last `<` and fails the read past [`MAX_XML_EVENT`].
struct Guard<R> {
    inner: R,
    run: usize,
    read: u64,
    over: bool,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.read += n as u64;
        let chunk = &out[..n];
        // The run up to this chunk's first `<` counts too, before a later `<` restarts it.
        let before_first = memchr::memchr(b'<', chunk).unwrap_or(n);
        let longest = self.run + before_first;
        self.run = match memchr::memrchr(b'<', chunk) {
            Some(at) => n - at - 1,
            None => self.run + n,
        };
        if longest.max(self.run) > MAX_XML_EVENT {
            self.over = true;
            return Err(std::io::Error::other("one XML tag or text is too long"));
        }
        Ok(n)
    }
}

/// An element's name and attributes, owned (the event borrows the read buffer).
struct Tag {
    name: String,
    attrs: Vec<(String, Node)>,
}

struct Walker<R: Read> {
    xml: quick_xml::Reader<BufReader<Guard<R>>>,
    buf: Vec<u8>,
    collector: Collector,
    scope: String,
    depth: usize,
}

/// One event, reduced to what the walk needs.
enum Step {
    Start(Tag),
    Empty(Tag),
    Text(String),
    End,
    Eof,
    Other,
}

impl<R: Read> Walker<R> {
    fn error(&self, error: quick_xml::Error) -> ReportError {
        let guard = self.xml.get_ref().get_ref();
        match error {
            _ if guard.over => ReportError::TooLarge(guard.read),
            quick_xml::Error::Io(io) => {
                ReportError::Io(std::io::Error::new(io.kind(), io.to_string()))
            }
            other => ReportError::NotXml(format!("{other} at byte {}", self.xml.error_position())),
        }
    }

    fn eof(&self, inside: &str) -> ReportError {
        ReportError::NotXml(format!(
            "unexpected end of the document inside <{inside}> at byte {}",
            self.xml.buffer_position()
        ))
    }

    /// The next event; `attrs` says whether a tag's attributes are wanted.
    fn step(&mut self, attrs: bool) -> Result<Step, ReportError> {
        self.buf.clear();
        let event = match self.xml.read_event_into(&mut self.buf) {
            Ok(event) => event,
            Err(error) => return Err(self.error(error)),
        };
        let step = match event {
            Event::Start(e) => Step::Start(tag(&e, attrs).map_err(|e| self.attr_error(e))?),
            Event::Empty(e) => Step::Empty(tag(&e, attrs).map_err(|e| self.attr_error(e))?),
            Event::Text(t) => Step::Text(t.xml10_content().into_owned()),
            Event::CData(t) => Step::Text(t.xml10_content().into_owned()),
            Event::GeneralRef(r) => {
                let text = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&r)
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("&{};", &*r)),
                    Err(_) => "\u{fffd}".to_owned(),
                };
                Step::Text(text)
            }
            Event::End(_) => Step::End,
            Event::Eof => Step::Eof,
            _ => Step::Other,
        };
        Ok(step)
    }

    fn attr_error(&self, error: quick_xml::Error) -> ReportError {
        ReportError::NotXml(format!("{error} at byte {}", self.xml.buffer_position()))
    }

    fn open(&mut self) -> Result<(), ReportError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ReportError::TooDeep(self.xml.buffer_position()));
        }
        Ok(())
    }

    fn root(&mut self) -> Result<(), ReportError> {
        loop {
            match self.step(false)? {
                Step::Start(tag) if tag.name == "analysis" => {
                    self.open()?;
                    self.enter(Place::Analysis, "analysis")?;
                    break;
                }
                Step::Empty(tag) if tag.name == "analysis" => break,
                Step::Start(tag) | Step::Empty(tag) => {
                    return Err(ReportError::NotAReport(format!(
                        "its root element is <{}>, not <analysis>",
                        tag.name
                    )));
                }
                Step::Eof => {
                    return Err(ReportError::NotAReport("it has no root element".into()));
                }
                Step::Text(t) if !t.trim().is_empty() => return Err(self.stray_text()),
                Step::Text(_) | Step::End | Step::Other => {}
            }
        }
        // Whatever follows must still be well-formed (comments, white space).
        loop {
            match self.step(false)? {
                Step::Eof => return Ok(()),
                Step::Start(_) | Step::Empty(_) => {
                    return Err(ReportError::NotXml(format!(
                        "a second root element at byte {}",
                        self.xml.buffer_position()
                    )));
                }
                Step::Text(t) if !t.trim().is_empty() => return Err(self.stray_text()),
                _ => {}
            }
        }
    }

    fn stray_text(&self) -> ReportError {
        ReportError::NotXml(format!(
            "text outside the root element at byte {}",
            self.xml.buffer_position()
        ))
    }

    /// Walks the children of an element at `place` (its start read) up to its end.
    fn enter(&mut self, place: Place, name: &str) -> Result<(), ReportError> {
        let mut text = String::new();
        let mut children = false;
        loop {
            // Attributes are read here (records are children of entered places), never in
            // skipped parts.
            match self.step(true)? {
                Step::Start(tag) => {
                    children = true;
                    self.open()?;
                    if place == Place::Analysis {
                        self.collector.saw_section(&tag.name);
                    }
                    match child(place, &tag.name) {
                        Action::Skip => self.skip(&tag.name)?,
                        Action::Enter(next) => {
                            if next == Place::YaraScope {
                                self.scope = tag.name.clone();
                            }
                            self.enter(next, &tag.name)?;
                        }
                        Action::Capture(rec) => {
                            let (mut budget, mut cut) = (MAX_RECORD, false);
                            let node = self.capture(tag, &mut budget, &mut cut)?;
                            self.record(rec, &node, cut);
                        }
                    }
                }
                Step::Empty(tag) => {
                    children = true;
                    if place == Place::Analysis {
                        self.collector.saw_section(&tag.name);
                    }
                    if let Action::Capture(rec) = child(place, &tag.name) {
                        let node = tag.into_empty();
                        self.record(rec, &node, false);
                    }
                }
                Step::Text(t) => keep(&mut text, &t, MAX_STRING),
                Step::End => break,
                Step::Eof => return Err(self.eof(name)),
                Step::Other => {}
            }
        }
        self.depth -= 1;
        if !children && let Some(rec) = scalar_in(place) {
            self.record(rec, &Node::Str(text.trim().to_owned()), false);
        }
        Ok(())
    }

    fn record(&mut self, rec: Rec, node: &Node, cut: bool) {
        if cut {
            self.collector.mark_truncated();
        }
        self.collector.record(rec, node, &self.scope);
    }

    /// Skips the rest of an element (its start read), checking well-formedness.
    fn skip(&mut self, name: &str) -> Result<(), ReportError> {
        let base = self.depth;
        loop {
            // The events themselves, not `step`: skipped text is never copied.
            self.buf.clear();
            let event = self.xml.read_event_into(&mut self.buf);
            match event {
                Ok(Event::Start(_)) => self.open()?,
                Ok(Event::End(_)) => {
                    self.depth -= 1;
                    if self.depth < base {
                        return Ok(());
                    }
                }
                Ok(Event::Eof) => return Err(self.eof(name)),
                Ok(_) => {}
                Err(error) => return Err(self.error(error)),
            }
        }
    }

    /// An element (its start read) as a [`Node`], within `budget` bytes of text.
    fn capture(
        &mut self,
        tag: Tag,
        budget: &mut usize,
        cut: &mut bool,
    ) -> Result<Node, ReportError> {
        *budget = budget.saturating_sub(tag.name.len());
        let mut entries = tag.attrs;
        let mut text = String::new();
        loop {
            match self.step(*budget > 0)? {
                Step::Start(child) => {
                    self.open()?;
                    if *budget == 0 || child.name == "sighits" {
                        *cut |= *budget == 0;
                        self.skip(&child.name)?;
                        continue;
                    }
                    let name = child.name.clone();
                    let node = self.capture(child, budget, cut)?;
                    entries.push((name, node));
                }
                Step::Empty(child) => {
                    if *budget == 0 {
                        *cut = true;
                        continue;
                    }
                    *budget = budget.saturating_sub(child.name.len());
                    let name = child.name.clone();
                    entries.push((name, child.into_empty()));
                }
                Step::Text(t) => {
                    let before = text.len();
                    keep(&mut text, &t, MAX_STRING.min(*budget + before));
                    *budget = budget.saturating_sub(text.len() - before);
                }
                Step::End => break,
                Step::Eof => return Err(self.eof(&tag.name)),
                Step::Other => {}
            }
        }
        self.depth -= 1;
        let text = text.trim();
        if entries.is_empty() {
            return Ok(typed_leaf(text));
        }
        if !text.is_empty() {
            entries.push(("$".to_owned(), Node::Str(text.to_owned())));
        }
        Ok(Node::Map(entries))
    }
}

impl Tag {
    /// An empty element: its attributes, or an empty leaf.
    fn into_empty(self) -> Node {
        if self.attrs.is_empty() {
            Node::Str(String::new())
        } else {
            Node::Map(self.attrs)
        }
    }
}

fn tag(e: &BytesStart<'_>, with_attrs: bool) -> Result<Tag, quick_xml::Error> {
    let name = e.local_name().as_ref().to_owned();
    let mut attrs = Vec::new();
    if with_attrs {
        for attr in e.attributes() {
            let attr = attr.map_err(quick_xml::Error::InvalidAttr)?;
            let value = attr.normalized_value(XmlVersion::Implicit1_0)?;
            let key = format!("@{}", attr.key.local_name().as_ref());
            attrs.push((
                key,
                Node::Str(super::extract::truncate(&value, MAX_STRING).to_owned()),
            ));
        }
    }
    Ok(Tag { name, attrs })
}

/// A leaf element's text typed the way Joe's JSON rendering types it (`<score>100</score>` is
/// `"score": 100`); attributes stay strings, as there.
fn typed_leaf(text: &str) -> Node {
    match text {
        "true" => Node::Bool(true),
        "false" => Node::Bool(false),
        _ if is_json_number(text) => Node::Num(text.to_owned()),
        _ => Node::Str(text.to_owned()),
    }
}

/// Whether `text` is spelled as a JSON number (no leading zeros, no `+`, not `inf`).
fn is_json_number(text: &str) -> bool {
    text.len() <= 24 && serde_json::from_str::<serde_json::Number>(text).is_ok()
}

/// Appends `more` to `text` while it is shorter than `cap` bytes (on a character boundary).
fn keep(text: &mut String, more: &str, cap: usize) {
    let room = cap.saturating_sub(text.len());
    text.push_str(super::extract::truncate(more, room));
}
