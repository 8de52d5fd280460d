//! One document model for every rendering of a report: an element tree (name, attributes,
//! text or children, and the `isArray` flag where Joe sets it) that `render` writes as XML or
//! as JSON with Joe's XML→JSON rules. XML and JSON of the same report therefore agree by
//! construction.
//!
//! Leaves carry their JSON type (the converter types element text: numbers, booleans), so a
//! hash made only of digits stays a string. Very large sections are not built: a container may
//! hold a *stream* of children produced while rendering (the benchmark generator's processes).

/// The text of an element, with the JSON type it gets when it has no attributes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Leaf {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Leaf {
    /// The XML text (and the JSON `"$"` string when the element also has attributes).
    pub(crate) fn text(&self) -> String {
        match self {
            Leaf::Text(text) => text.clone(),
            Leaf::Int(n) => n.to_string(),
            Leaf::Float(x) => float_text(*x),
            Leaf::Bool(b) => b.to_string(),
        }
    }
}

/// Floats as the reports print them; a non-finite value (never produced) becomes 0.
pub(crate) fn float_text(x: f64) -> String {
    if x.is_finite() {
        let text = format!("{x:.6}");
        let trimmed = text.trim_end_matches('0');
        if trimmed.ends_with('.') {
            format!("{trimmed}0")
        } else {
            trimmed.to_owned()
        }
    } else {
        "0.0".to_owned()
    }
}

impl From<&str> for Leaf {
    fn from(text: &str) -> Self {
        Leaf::Text(text.to_owned())
    }
}
impl From<String> for Leaf {
    fn from(text: String) -> Self {
        Leaf::Text(text)
    }
}
impl From<&String> for Leaf {
    fn from(text: &String) -> Self {
        Leaf::Text(text.clone())
    }
}
impl From<bool> for Leaf {
    fn from(b: bool) -> Self {
        Leaf::Bool(b)
    }
}
impl From<f64> for Leaf {
    fn from(x: f64) -> Self {
        Leaf::Float(x)
    }
}
impl From<i64> for Leaf {
    fn from(n: i64) -> Self {
        Leaf::Int(n)
    }
}
impl From<u64> for Leaf {
    fn from(n: u64) -> Self {
        Leaf::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Leaf {
    fn from(n: u32) -> Self {
        Leaf::Int(i64::from(n))
    }
}
impl From<usize> for Leaf {
    fn from(n: usize) -> Self {
        Leaf::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// Children produced while rendering; every one has the same element name.
pub(crate) type ChildStream = Box<dyn Iterator<Item = Element> + Send>;

/// What an element holds besides its attributes.
pub(crate) enum Body {
    /// `<x/>`: `null` in JSON (or an object of its attributes).
    Empty,
    Leaf(Leaf),
    Children(Vec<Element>),
    Stream(ChildStream),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Leaf(leaf) => f.debug_tuple("Leaf").field(leaf).finish(),
            Body::Children(children) => f.debug_tuple("Children").field(children).finish(),
            Body::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// One XML element.
#[derive(Debug)]
pub(crate) struct Element {
    pub(crate) name: &'static str,
    pub(crate) attrs: Vec<(&'static str, String)>,
    /// `isArray="true"`: the children named so are a list (always a JSON array in `*fixed`).
    pub(crate) array_of: Option<&'static str>,
    pub(crate) body: Body,
}

impl Element {
    /// An element without content yet.
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            attrs: Vec::new(),
            array_of: None,
            body: Body::Empty,
        }
    }

    /// `<name>value</name>`.
    pub(crate) fn leaf(name: &'static str, value: impl Into<Leaf>) -> Self {
        Self {
            body: Body::Leaf(value.into()),
            ..Self::new(name)
        }
    }

    /// A flagged list container (`isArray="true"`) of `items`, which are all named `item`.
    pub(crate) fn list(name: &'static str, item: &'static str, items: Vec<Element>) -> Self {
        Self::new(name).array(item).children(items)
    }

    pub(crate) fn attr(mut self, name: &'static str, value: impl ToString) -> Self {
        self.attrs.push((name, value.to_string()));
        self
    }

    /// Flag the element: its `item` children form a list.
    pub(crate) fn array(mut self, item: &'static str) -> Self {
        self.array_of = Some(item);
        self
    }

    /// Set the text (beside any attributes).
    pub(crate) fn text(mut self, value: impl Into<Leaf>) -> Self {
        self.body = Body::Leaf(value.into());
        self
    }

    pub(crate) fn child(mut self, child: Element) -> Self {
        match &mut self.body {
            Body::Children(children) => children.push(child),
            _ => self.body = Body::Children(vec![child]),
        }
        self
    }

    pub(crate) fn children(mut self, more: impl IntoIterator<Item = Element>) -> Self {
        for child in more {
            self = self.child(child);
        }
        self
    }

    /// Children generated while rendering (never all in memory).
    pub(crate) fn stream(mut self, children: ChildStream) -> Self {
        self.body = Body::Stream(children);
        self
    }

    /// The first child named `name` (tests and builders).
    #[cfg(test)]
    pub(crate) fn find(&self, name: &str) -> Option<&Element> {
        match &self.body {
            Body::Children(children) => children.iter().find(|c| c.name == name),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_without_trailing_zeros_but_stay_floats() {
        assert_eq!(float_text(7.25), "7.25");
        assert_eq!(float_text(2.0), "2.0");
        assert_eq!(float_text(f64::NAN), "0.0");
        assert_eq!(Leaf::from(3u32).text(), "3");
        assert_eq!(Leaf::from(false).text(), "false");
    }

    #[test]
    fn adding_children_keeps_their_order() {
        let element = Element::new("a")
            .child(Element::leaf("b", 1u32))
            .children([Element::leaf("c", "x"), Element::leaf("b", 2u32)]);
        let Body::Children(children) = &element.body else {
            panic!("children");
        };
        let names: Vec<&str> = children.iter().map(|c| c.name).collect();
        assert_eq!(names, ["b", "c", "b"]);
        assert!(element.find("c").is_some());
    }
}
