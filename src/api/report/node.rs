//! One small, bounded piece of a report held in memory: a record such as one `domaininfo/domain`
//! or one IR `dropped/file`, captured by the JSON or the XML reader and then read by
//! `extract.rs`. Both readers build the same shape (Joe's XML→JSON rules: attributes as `@x`,
//! text beside attributes as `$`), so the extraction is written once.
//!
//! Lists are transparent: a JSON list under a key and an XML element repeated under its parent
//! both read as "every value of that key", which is how list-or-object-or-null is absorbed.

/// A captured value. Numbers keep their spelling; XML has only `Str`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    List(Vec<Node>),
    /// In document order; XML repeats a key once per repeated child element.
    Map(Vec<(String, Node)>),
}

/// What a report writes for "nothing here" (never a fact).
fn is_placeholder(text: &str) -> bool {
    text.is_empty() || text.eq_ignore_ascii_case("unknown") || text.eq_ignore_ascii_case("null")
}

impl Node {
    /// Every value of `key` in this map, lists flattened (none for a scalar or a list).
    pub(crate) fn all<'a, 'k>(&'a self, key: &'k str) -> impl Iterator<Item = &'a Node> + 'k
    where
        'a: 'k,
    {
        let entries: &[(String, Node)] = match self {
            Node::Map(entries) => entries,
            _ => &[],
        };
        entries
            .iter()
            .filter(move |(k, _)| k == key)
            .flat_map(|(_, v)| v.items())
    }

    /// The first value of `key`.
    pub(crate) fn get<'a>(&'a self, key: &str) -> Option<&'a Node> {
        self.all(key).next()
    }

    /// This value as items: the elements of a list (nested lists flattened), `null` as none,
    /// anything else as itself.
    pub(crate) fn items(&self) -> Box<dyn Iterator<Item = &Node> + '_> {
        match self {
            Node::List(items) => Box::new(items.iter().flat_map(Node::items)),
            Node::Null => Box::new(std::iter::empty()),
            other => Box::new(std::iter::once(other)),
        }
    }

    /// The text of a scalar, or of a map's `$` (element text beside attributes); placeholders
    /// and booleans are not text.
    pub(crate) fn text(&self) -> Option<&str> {
        let text = match self {
            Node::Str(s) | Node::Num(s) => s.trim(),
            Node::Map(_) => return self.get("$").and_then(Node::text),
            _ => return None,
        };
        (!is_placeholder(text)).then_some(text)
    }

    /// The trimmed text of a scalar or of a map's `$`, placeholders included.
    pub(crate) fn raw(&self) -> Option<&str> {
        match self {
            Node::Str(s) | Node::Num(s) => Some(s.trim()),
            Node::Map(_) => self.get("$").and_then(Node::raw),
            _ => None,
        }
    }

    /// A boolean as a JSON boolean or as the strings `true`/`false` (`1`/`0`); `None` when the
    /// value says neither (absent, `unknown`, anything else).
    pub(crate) fn flag(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            Node::Str(s) | Node::Num(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            },
            Node::Map(_) => self.get("$").and_then(Node::flag),
            _ => None,
        }
    }

    /// An integer as a JSON number or a numeric string (`"2"`, `"2.0"`).
    pub(crate) fn int(&self) -> Option<i64> {
        let text = match self {
            Node::Str(s) | Node::Num(s) => s.trim(),
            Node::Map(_) => return self.get("$").and_then(Node::int),
            _ => return None,
        };
        if let Ok(n) = text.parse::<i64>() {
            return Some(n);
        }
        let f = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
        (f.abs() < 9.0e15).then(|| f.round() as i64)
    }

    /// The text of the first of `keys` that has one.
    pub(crate) fn text_of<'a>(&'a self, keys: &[&str]) -> Option<&'a str> {
        keys.iter().find_map(|k| self.all(k).find_map(Node::text))
    }

    /// The flag of the first of `keys` that has one.
    pub(crate) fn flag_of(&self, keys: &[&str]) -> Option<bool> {
        keys.iter().find_map(|k| self.all(k).find_map(Node::flag))
    }

    /// The integer of the first of `keys` that has one.
    pub(crate) fn int_of(&self, keys: &[&str]) -> Option<i64> {
        keys.iter().find_map(|k| self.all(k).find_map(Node::int))
    }

    /// As JSON text. A map's repeated keys (XML's repeated children) become one list.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&self.to_value()).unwrap_or_default()
    }

    fn to_value(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Num(s) => serde_json::from_str::<serde_json::Number>(s)
                .map(Value::Number)
                .unwrap_or_else(|_| Value::String(s.clone())),
            Node::Str(s) => Value::String(s.clone()),
            Node::List(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (key, value) in entries {
                    // Plain `json`'s list marker says how the XML was flagged, not what the
                    // configuration holds: the same config reads the same from every rendering.
                    if key == "@isArray" {
                        continue;
                    }
                    let value = value.to_value();
                    match map.get_mut(key) {
                        None => {
                            map.insert(key.clone(), value);
                        }
                        Some(Value::Array(list)) if entries_repeat(entries, key) => {
                            list.push(value)
                        }
                        Some(previous) => {
                            let first = previous.take();
                            *previous = Value::Array(vec![first, value]);
                        }
                    }
                }
                Value::Object(map)
            }
        }
    }
}

/// Whether `key` occurs more than once among `entries` (then its list was built here).
fn entries_repeat(entries: &[(String, Node)], key: &str) -> bool {
    entries.iter().filter(|(k, _)| k == key).count() > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, Node)]) -> Node {
        Node::Map(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn a_key_reads_the_same_as_a_list_an_object_or_a_repeated_element() {
        let one = Node::Str("a".into());
        let listed = map(&[("x", Node::List(vec![one.clone(), Node::Str("b".into())]))]);
        let repeated = map(&[("x", one.clone()), ("x", Node::Str("b".into()))]);
        let texts = |n: &Node| {
            n.all("x")
                .filter_map(Node::text)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&listed), ["a", "b"]);
        assert_eq!(texts(&repeated), ["a", "b"]);
        assert_eq!(texts(&map(&[("x", Node::Null)])), Vec::<String>::new());
    }

    #[test]
    fn booleans_and_numbers_read_from_json_values_and_from_strings() {
        assert_eq!(Node::Bool(true).flag(), Some(true));
        assert_eq!(Node::Str("false".into()).flag(), Some(false));
        assert_eq!(Node::Str("unknown".into()).flag(), None);
        assert_eq!(Node::Num("2".into()).int(), Some(2));
        assert_eq!(Node::Str(" 3.0 ".into()).int(), Some(3));
        assert_eq!(Node::Str("high".into()).int(), None);
        assert_eq!(Node::Str("unknown".into()).text(), None);
    }

    #[test]
    fn repeated_xml_children_become_one_json_list() {
        let node = map(&[
            ("@threatname", Node::Str("njrat".into())),
            ("c2", Node::Str("a".into())),
            ("c2", Node::Str("b".into())),
            ("c2", Node::Str("c".into())),
        ]);
        assert_eq!(
            node.to_json(),
            r#"{"@threatname":"njrat","c2":["a","b","c"]}"#
        );
    }
}
