//! The YAML document as a tree that remembers where each value came from.
//!
//! serde alone can say *what* is wrong and at which path, but not on which line. So the file is
//! first parsed with saphyr's `MarkedYaml` (which keeps source spans) into this small [`Node`]
//! tree; [`crate::de`] deserializes the schema types straight from it, and [`Node::line_of`]
//! turns any error path back into a line number. Anchors and aliases are resolved by the parser
//! (an alias is a copy of its anchor), duplicate keys are a parse error, and everything weir
//! cannot represent — non-string keys, custom tags, several documents — is rejected here with
//! its line.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, ScanError, YamlData};

use crate::ConfigError;
use crate::path::{Segment, YamlPath};

/// A YAML value with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Line of the value (for a block map, its first key).
    pub(crate) line: usize,
    /// The value.
    pub(crate) kind: Kind,
}

/// The YAML core-schema value kinds weir understands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Any other scalar, and every quoted scalar.
    Str(String),
    /// A sequence (`- a` or `[a, b]`).
    Seq(Vec<Node>),
    /// A map, in document order.
    Map(Vec<Entry>),
}

/// One `key: value` pair of a map.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The key (always a string: other keys are rejected while parsing).
    pub(crate) key: String,
    /// The line of the key.
    pub(crate) line: usize,
    /// The value.
    pub(crate) value: Node,
}

// === impl Node ===

impl Node {
    /// Parses one YAML document; `file` only labels errors.
    pub(crate) fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let docs = MarkedYaml::load_from_str(text).map_err(|e| syntax_error(file, &e))?;
        if let Some(second) = docs.get(1) {
            return Err(ConfigError::new(
                file,
                &YamlPath::root(),
                Some(second.span.start.line()),
                "a second YAML document starts here (after `---`)",
                Some("put the whole configuration in a single document".into()),
            ));
        }
        let empty = || {
            ConfigError::new(
                file,
                &YamlPath::root(),
                None,
                "the file holds no configuration",
                Some("start with `listeners:` and `clusters:` (see docs/config.md)".into()),
            )
        };
        match docs.first() {
            None => Err(empty()),
            Some(doc) if matches!(doc.data, YamlData::BadValue | YamlData::Value(Scalar::Null)) => {
                Err(empty())
            }
            Some(doc) => convert(doc, &YamlPath::root(), file),
        }
    }

    /// The line that best locates `path`: the line of the deepest part of it that exists.
    ///
    /// A map entry is located by its key's line; a missing key by the line of the map that
    /// should hold it.
    pub(crate) fn line_of(&self, path: &YamlPath) -> usize {
        let mut node = self;
        let mut line = self.line;
        for segment in path.segments() {
            let next = match (segment, &node.kind) {
                (Segment::Key(key), Kind::Map(entries)) => entries
                    .iter()
                    .find(|e| e.key == *key)
                    .map(|e| (e.line, &e.value)),
                (Segment::Index(index), Kind::Seq(items)) => items.get(*index).map(|n| (n.line, n)),
                _ => None,
            };
            match next {
                Some((next_line, next_node)) => {
                    line = next_line;
                    node = next_node;
                }
                None => break,
            }
        }
        line
    }
}

/// Turns one saphyr node into a [`Node`], rejecting what the schema cannot hold.
fn convert(yaml: &MarkedYaml<'_>, path: &YamlPath, file: &str) -> Result<Node, ConfigError> {
    let line = yaml.span.start.line();
    let fail = |message: String, hint: &str| {
        ConfigError::new(file, path, Some(line), message, Some(hint.to_owned()))
    };
    let kind = match &yaml.data {
        YamlData::Value(scalar) => scalar_kind(scalar),
        YamlData::Sequence(items) => Kind::Seq(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, &path.index(i), file))
                .collect::<Result<_, _>>()?,
        ),
        YamlData::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (key, value) in map {
                let key_line = key.span.start.line();
                let YamlData::Value(Scalar::String(name)) = &key.data else {
                    return Err(ConfigError::new(
                        file,
                        path,
                        Some(key_line),
                        format!("map key {} is not a string", describe_key(key)),
                        Some("keys must be plain names; quote the key if it looks like a number, boolean or null".into()),
                    ));
                };
                let value = convert(value, &path.key(name), file)?;
                entries.push(Entry {
                    key: name.to_string(),
                    line: key_line,
                    value,
                });
            }
            Kind::Map(entries)
        }
        YamlData::Tagged(tag, _) => {
            return Err(fail(
                format!("YAML tag `{tag}` is not supported"),
                "remove the tag; weir reads plain YAML values",
            ));
        }
        YamlData::Alias(_) | YamlData::BadValue | YamlData::Representation(..) => {
            return Err(fail(
                "invalid value".into(),
                "an alias must name an anchor defined before it (`&name` … `*name`), and a \
                 `!!int`/`!!bool`/`!!float` tag must fit its value",
            ));
        }
    };
    Ok(Node { line, kind })
}

fn scalar_kind(scalar: &Scalar<'_>) -> Kind {
    match scalar {
        Scalar::Null => Kind::Null,
        Scalar::Boolean(b) => Kind::Bool(*b),
        Scalar::Integer(i) => Kind::Int(*i),
        Scalar::FloatingPoint(f) => Kind::Float(f.into_inner()),
        Scalar::String(s) => Kind::Str(s.to_string()),
    }
}

fn describe_key(key: &MarkedYaml<'_>) -> String {
    match &key.data {
        YamlData::Value(Scalar::Null) => "`null`".into(),
        YamlData::Value(Scalar::Boolean(b)) => format!("`{b}`"),
        YamlData::Value(Scalar::Integer(i)) => format!("`{i}`"),
        YamlData::Value(Scalar::FloatingPoint(f)) => format!("`{}`", f.into_inner()),
        YamlData::Sequence(_) => "(a list)".into(),
        YamlData::Mapping(_) => "(a map)".into(),
        _ => "(not a plain value)".into(),
    }
}

/// A parser error, with a hint for the mistakes people actually make.
fn syntax_error(file: &str, error: &ScanError) -> ConfigError {
    let info = error.info();
    let (message, hint) = if info.contains("duplicated key") {
        (
            "duplicate key in a map".to_owned(),
            "each key may appear only once per map; remove or merge the repeated one",
        )
    } else if info.contains("unknown anchor") {
        (
            "alias to an unknown anchor".to_owned(),
            "define the anchor with `&name` before using `*name`",
        )
    } else if info.contains("alias expansion exceeded") {
        (
            info.to_owned(),
            "aliases may not expand to more than 100000 nodes",
        )
    } else {
        (
            format!(
                "YAML syntax error: {info} (column {})",
                error.marker().col() + 1
            ),
            "check indentation (spaces, not tabs), a space after each `:`, and quoting",
        )
    };
    ConfigError::new(
        file,
        &YamlPath::root(),
        Some(error.marker().line()),
        message,
        Some(hint.to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        match Node::parse(text, "t.yaml") {
            Ok(node) => node,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn lines_follow_the_path() {
        let node = parse("a:\n  - x: 1\n    y:\n      - 5\n  - z\nb: 2\n");
        let path = YamlPath::root().key("a").index(0).key("y").index(0);
        assert_eq!(node.line_of(&path), 4);
        assert_eq!(
            node.line_of(&YamlPath::root().key("a").index(0).key("y")),
            3
        );
        assert_eq!(node.line_of(&YamlPath::root().key("a").index(1)), 5);
        // Missing keys fall back to the map that should hold them.
        assert_eq!(
            node.line_of(&YamlPath::root().key("a").index(0).key("nope")),
            2
        );
        assert_eq!(node.line_of(&YamlPath::root().key("b")), 6);
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let node = parse("a: [1, 1.5, true, ~, \"2\", 127.0.0.1:80, 5s]");
        let Kind::Map(entries) = node.kind else {
            panic!("not a map")
        };
        let Some(Kind::Seq(items)) = entries.first().map(|e| e.value.kind.clone()) else {
            panic!("not a seq")
        };
        let kinds: Vec<Kind> = items.into_iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Int(1),
                Kind::Float(1.5),
                Kind::Bool(true),
                Kind::Null,
                Kind::Str("2".into()),
                Kind::Str("127.0.0.1:80".into()),
                Kind::Str("5s".into()),
            ]
        );
    }

    #[test]
    fn aliases_are_copies_of_their_anchor() {
        let node = parse("a: &x { k: v }\nb: *x\n");
        let Kind::Map(entries) = node.kind else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].value.kind, entries[1].value.kind);
    }

    #[test]
    fn rejects_what_the_schema_cannot_hold() {
        for (text, line, needle) in [
            ("a: 1\n1: x\n", 2, "not a string"),
            ("a: !custom x\n", 1, "tag"),
            ("a: 1\n---\nb: 2\n", 3, "second YAML document"),
            ("a: 1\na: 2\n", 2, "duplicate key"),
            ("a: *nope\n", 1, "unknown anchor"),
        ] {
            let Err(e) = Node::parse(text, "t.yaml") else {
                panic!("{text:?} parsed")
            };
            assert_eq!(e.line, Some(line), "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
        let Err(e) = Node::parse("# only a comment\n", "t.yaml") else {
            panic!("empty parsed")
        };
        assert!(e.message.contains("no configuration"), "{e}");
    }
}
