//! Writing an element tree ([`super::tree`]) as XML, or as JSON with the rules of Joe's own
//! XML→JSON converter, as the real reports show them:
//!
//! * an attribute `x` becomes `"@x"`, always a string;
//! * the text of an element that has attributes becomes `"$"`, a string;
//! * a leaf without attributes becomes its typed value (number, boolean, string);
//! * an empty element becomes `null`, its key kept;
//! * children with the same name become one key; several make a list, one stays an object or
//!   scalar, even in `*fixed` output, unless the parent is flagged `isArray` for that name;
//! * flagged containers: plain JSON keeps `"@isArray": "true"` and collapses a single child;
//!   `*fixed` drops the key and always writes a list.
//!
//! An empty flagged container is `null` in both JSON variants: plain json's spelling of it is
//! not evidenced, and `null` is what the fixed reports show.
//!
//! Both writers stream: children produced by a [`Body::Stream`] are written as they come.

use std::io::{self, Write};

use super::tree::{Body, Element, Leaf, float_text};

/// The whole document: declaration, then `root`.
pub(crate) fn write_xml(root: Element, out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")?;
    xml_element(root, 0, out)
}

/// Text and attribute values, escaped. Characters XML 1.0 cannot carry at all (most C0
/// controls, U+FFFE, U+FFFF) are dropped rather than producing an unparsable document.
pub(crate) fn write_escaped(out: &mut impl Write, text: &str) -> io::Result<()> {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        let replacement: Option<&[u8]> = match c {
            '&' => Some(b"&amp;"),
            '<' => Some(b"&lt;"),
            '>' => Some(b"&gt;"),
            '"' => Some(b"&quot;"),
            '\'' => Some(b"&apos;"),
            '\t' | '\n' | '\r' => None,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => Some(b""),
            _ => None,
        };
        if let Some(replacement) = replacement {
            out.write_all(&bytes[start..i])?;
            out.write_all(replacement)?;
            start = i + c.len_utf8();
        }
    }
    out.write_all(&bytes[start..])
}

fn indent(out: &mut impl Write, depth: usize) -> io::Result<()> {
    const SPACES: &[u8] = &[b' '; 64];
    out.write_all(&SPACES[..(2 * depth).min(SPACES.len())])
}

fn xml_element(element: Element, depth: usize, out: &mut impl Write) -> io::Result<()> {
    indent(out, depth)?;
    out.write_all(b"<")?;
    out.write_all(element.name.as_bytes())?;
    if element.array_of.is_some() {
        out.write_all(b" isArray=\"true\"")?;
    }
    for (name, value) in &element.attrs {
        out.write_all(b" ")?;
        out.write_all(name.as_bytes())?;
        out.write_all(b"=\"")?;
        write_escaped(out, value)?;
        out.write_all(b"\"")?;
    }
    let close = |out: &mut dyn Write| -> io::Result<()> {
        out.write_all(b"</")?;
        out.write_all(element.name.as_bytes())?;
        out.write_all(b">\n")
    };
    match element.body {
        Body::Empty => out.write_all(b"/>\n"),
        Body::Leaf(Leaf::Text(text)) if text.is_empty() => out.write_all(b"/>\n"),
        Body::Leaf(Leaf::Text(text)) => {
            out.write_all(b">")?;
            write_escaped(out, &text)?;
            close(out)
        }
        Body::Leaf(leaf) => {
            // Numbers and booleans never need escaping.
            out.write_all(b">")?;
            out.write_all(leaf.text().as_bytes())?;
            close(out)
        }
        Body::Children(children) if children.is_empty() => out.write_all(b"/>\n"),
        Body::Children(children) => {
            out.write_all(b">\n")?;
            for child in children {
                xml_element(child, depth + 1, out)?;
            }
            indent(out, depth)?;
            close(out)
        }
        Body::Stream(mut stream) => {
            let Some(first) = stream.next() else {
                return out.write_all(b"/>\n");
            };
            out.write_all(b">\n")?;
            xml_element(first, depth + 1, out)?;
            for child in stream {
                xml_element(child, depth + 1, out)?;
            }
            indent(out, depth)?;
            close(out)
        }
    }
}

/// The whole document: `{"<root name>": ...}`.
pub(crate) fn write_json(root: Element, fixed: bool, out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"{")?;
    json_key(out, "", root.name)?;
    json_value(root, fixed, out)?;
    out.write_all(b"}")
}

fn json_key(out: &mut impl Write, prefix: &str, name: &str) -> io::Result<()> {
    // Element and attribute names are fixed identifiers: nothing to escape.
    out.write_all(b"\"")?;
    out.write_all(prefix.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(b"\":")
}

fn json_string(out: &mut impl Write, text: &str) -> io::Result<()> {
    serde_json::to_writer(&mut *out, text).map_err(io::Error::from)
}

fn json_leaf(out: &mut impl Write, leaf: &Leaf) -> io::Result<()> {
    match leaf {
        Leaf::Text(text) => json_string(out, text),
        Leaf::Int(n) => write!(out, "{n}"),
        Leaf::Float(x) => out.write_all(float_text(*x).as_bytes()),
        Leaf::Bool(b) => out.write_all(if *b { b"true" } else { b"false" }),
    }
}

/// Opens the object of an element with attributes (or children) and writes its `@` keys;
/// returns whether a key was written (so the next needs a comma).
fn json_attrs(element: &Element, fixed: bool, out: &mut impl Write) -> io::Result<bool> {
    out.write_all(b"{")?;
    let mut first = true;
    if element.array_of.is_some() && !fixed {
        json_key(out, "@", "isArray")?;
        out.write_all(b"\"true\"")?;
        first = false;
    }
    for (name, value) in &element.attrs {
        if !first {
            out.write_all(b",")?;
        }
        json_key(out, "@", name)?;
        json_string(out, value)?;
        first = false;
    }
    Ok(!first)
}

fn json_value(mut element: Element, fixed: bool, out: &mut impl Write) -> io::Result<()> {
    // A stream's first child decides whether the element is empty.
    let mut first_streamed = None;
    if let Body::Stream(stream) = &mut element.body {
        match stream.next() {
            Some(first) => first_streamed = Some(first),
            None => element.body = Body::Empty,
        }
    }
    let empty = match &element.body {
        Body::Empty => true,
        Body::Children(children) => children.is_empty(),
        _ => false,
    };
    if empty {
        if element.attrs.is_empty() {
            return out.write_all(b"null");
        }
        json_attrs(&element, fixed, out)?;
        return out.write_all(b"}");
    }
    let has_attrs = !element.attrs.is_empty() || (element.array_of.is_some() && !fixed);
    if let Body::Leaf(leaf) = &element.body
        && !has_attrs
    {
        return json_leaf(out, leaf);
    }
    let mut comma = json_attrs(&element, fixed, out)?;
    let array_of = element.array_of;
    let forced = |name: &str| fixed && array_of == Some(name);
    match element.body {
        Body::Empty => {}
        Body::Leaf(leaf) => {
            if comma {
                out.write_all(b",")?;
            }
            json_key(out, "", "$")?;
            json_string(out, &leaf.text())?;
        }
        Body::Children(children) if all_names_differ(&children) => {
            // The common record shape (every child a different leaf): no grouping needed.
            for child in children {
                if comma {
                    out.write_all(b",")?;
                }
                comma = true;
                json_key(out, "", child.name)?;
                if forced(child.name) {
                    json_list(std::iter::once(child), fixed, out)?;
                } else {
                    json_value(child, fixed, out)?;
                }
            }
        }
        Body::Children(children) => {
            for (name, group) in group_by_name(children) {
                if comma {
                    out.write_all(b",")?;
                }
                comma = true;
                json_key(out, "", name)?;
                if group.len() > 1 || forced(name) {
                    json_list(group.into_iter(), fixed, out)?;
                } else if let Some(only) = group.into_iter().next() {
                    json_value(only, fixed, out)?;
                }
            }
        }
        Body::Stream(mut stream) => {
            if let Some(first) = first_streamed {
                if comma {
                    out.write_all(b",")?;
                }
                json_key(out, "", first.name)?;
                let second = stream.next();
                match second {
                    None if !forced(first.name) => json_value(first, fixed, out)?,
                    second => json_list(
                        std::iter::once(first).chain(second).chain(stream),
                        fixed,
                        out,
                    )?,
                }
            }
        }
    }
    out.write_all(b"}")
}

fn json_list(
    items: impl Iterator<Item = Element>,
    fixed: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    out.write_all(b"[")?;
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        json_value(item, fixed, out)?;
    }
    out.write_all(b"]")
}

/// Whether no two children share a name (stops at the first repeat, so long lists are cheap).
fn all_names_differ(children: &[Element]) -> bool {
    children
        .iter()
        .enumerate()
        .all(|(i, child)| children[..i].iter().all(|seen| seen.name != child.name))
}

/// Children grouped by name, in the order each name first appears.
fn group_by_name(children: Vec<Element>) -> Vec<(&'static str, Vec<Element>)> {
    let mut groups: Vec<(&'static str, Vec<Element>)> = Vec::new();
    for child in children {
        match groups.iter_mut().find(|(name, _)| *name == child.name) {
            Some((_, group)) => group.push(child),
            None => groups.push((child.name, vec![child])),
        }
    }
    groups
}

/// Convenience for small documents: the XML as text.
pub(crate) fn xml_bytes(root: Element) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write_xml(root, &mut out);
    out
}

/// Convenience for small documents: the JSON as bytes.
pub(crate) fn json_bytes(root: Element, fixed: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = write_json(root, fixed, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn fixed(root: Element) -> Value {
        serde_json::from_slice(&json_bytes(root, true)).expect("valid json")
    }
    fn plain(root: Element) -> Value {
        serde_json::from_slice(&json_bytes(root, false)).expect("valid json")
    }

    fn one_ip() -> Element {
        Element::new("r").child(Element::list(
            "ips",
            "ip",
            vec![
                Element::new("ip")
                    .attr("malicious", false)
                    .text("192.0.2.1"),
            ],
        ))
    }

    #[test]
    fn attributes_are_strings_and_text_beside_them_is_dollar() {
        let doc = fixed(
            Element::new("r").child(
                Element::new("strategy")
                    .attr("name", "atleastonemalicioussig")
                    .attr("count", 0u32)
                    .text(false),
            ),
        );
        assert_eq!(
            doc,
            json!({"r": {"strategy": {"@name": "atleastonemalicioussig", "@count": "0", "$": "false"}}})
        );
    }

    #[test]
    fn leaves_without_attributes_are_typed() {
        let doc = fixed(Element::new("r").children([
            Element::leaf("score", 100u32),
            Element::leaf("malicious", true),
            Element::leaf("entropy", 7.5),
            Element::leaf("md5", "0123"),
            Element::leaf("url", ""),
        ]));
        assert_eq!(
            doc,
            json!({"r": {"score": 100, "malicious": true, "entropy": 7.5, "md5": "0123", "url": ""}})
        );
    }

    #[test]
    fn an_empty_container_is_null_with_its_key_present_in_both_variants() {
        let root = || {
            Element::new("r")
                .child(Element::list("domaininfo", "domain", vec![]))
                .child(Element::new("errorinfo"))
        };
        let expected = json!({"r": {"domaininfo": null, "errorinfo": null}});
        assert_eq!(fixed(root()), expected);
        assert_eq!(plain(root()), expected);
        let xml = String::from_utf8(xml_bytes(root())).expect("utf-8");
        assert!(xml.contains("<domaininfo isArray=\"true\"/>"), "{xml}");
    }

    #[test]
    fn a_flagged_single_child_is_a_list_in_fixed_and_an_object_with_isarray_in_plain() {
        assert_eq!(
            fixed(one_ip()),
            json!({"r": {"ips": {"ip": [{"@malicious": "false", "$": "192.0.2.1"}]}}})
        );
        assert_eq!(
            plain(one_ip()),
            json!({"r": {"ips": {"@isArray": "true", "ip": {"@malicious": "false", "$": "192.0.2.1"}}}})
        );
    }

    #[test]
    fn an_unflagged_single_child_collapses_even_in_fixed_output() {
        let root = |n: usize| {
            Element::new("r").child(
                Element::new("signatures")
                    .children((0..n).map(|i| Element::leaf("signare", format!("sig {i}")))),
            )
        };
        assert_eq!(
            fixed(root(1)),
            json!({"r": {"signatures": {"signare": "sig 0"}}})
        );
        assert_eq!(
            fixed(root(2)),
            json!({"r": {"signatures": {"signare": ["sig 0", "sig 1"]}}})
        );
    }

    #[test]
    fn streamed_children_follow_the_same_rules_as_built_ones() {
        let streamed = |n: usize, flagged: bool| {
            let mut list = Element::new("processes");
            if flagged {
                list = list.array("process");
            }
            Element::new("r").child(list.stream(Box::new(
                (0..n).map(|i| Element::new("process").child(Element::leaf("pid", i))),
            )))
        };
        let built = |n: usize| {
            Element::new("r").child(Element::list(
                "processes",
                "process",
                (0..n)
                    .map(|i| Element::new("process").child(Element::leaf("pid", i)))
                    .collect(),
            ))
        };
        for n in 0..3 {
            assert_eq!(fixed(streamed(n, true)), fixed(built(n)), "{n}");
            assert_eq!(plain(streamed(n, true)), plain(built(n)), "{n}");
            assert_eq!(xml_bytes(streamed(n, true)), xml_bytes(built(n)), "{n}");
        }
        assert_eq!(
            fixed(streamed(1, false)),
            json!({"r": {"processes": {"process": {"pid": 0}}}})
        );
    }

    #[test]
    fn hostile_text_is_escaped_in_xml_and_in_json() {
        let root = || {
            Element::new("r")
                .child(Element::new("a").attr("name", "x\"<&>'y"))
                .child(Element::leaf("b", "</b><c>\u{1}\"\\"))
        };
        let xml = String::from_utf8(xml_bytes(root())).expect("utf-8");
        assert!(
            xml.contains("name=\"x&quot;&lt;&amp;&gt;&apos;y\""),
            "{xml}"
        );
        assert!(xml.contains("<b>&lt;/b&gt;&lt;c&gt;&quot;\\</b>"), "{xml}");
        let package = sxd_document::parser::parse(&xml).expect("well-formed");
        drop(package);
        let doc = fixed(root());
        assert_eq!(doc["r"]["a"]["@name"], "x\"<&>'y");
        assert_eq!(doc["r"]["b"], "</b><c>\u{1}\"\\");
    }
}
