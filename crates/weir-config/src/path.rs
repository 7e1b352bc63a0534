//! YAML paths such as `listeners[0].routes[2].cluster`.
//!
//! Every config error names the place it is about in the same notation a user would use to walk
//! the file; the same path is looked up in the positioned YAML tree to find the line.

use std::fmt;

/// One step into a YAML document: a map key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A map key.
    Key(String),
    /// A 0-based sequence index.
    Index(usize),
}

/// A path from the document root, rendered as `listeners[0].routes[2].cluster`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct YamlPath(Vec<Segment>);

// === impl YamlPath ===

impl YamlPath {
    /// The document root (renders as the empty string).
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// Builds a path from its segments.
    pub(crate) fn from_segments(segments: Vec<Segment>) -> Self {
        Self(segments)
    }

    /// This path extended by a map key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path extended by a sequence index.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// The segments, root first.
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Reads a path back from its rendering (`listeners[0].routes[2].cluster`); a part that is
    /// not a key or an index ends the path there.
    pub(crate) fn parse(text: &str) -> Self {
        let mut segments = Vec::new();
        for part in text.split('.') {
            let mut pieces = part.split('[');
            if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
                segments.push(Segment::Key(key.to_owned()));
            }
            for index in pieces {
                match index.strip_suffix(']').and_then(|i| i.parse().ok()) {
                    Some(i) => segments.push(Segment::Index(i)),
                    None => return Self(segments),
                }
            }
        }
        Self(segments)
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_a_user_would_write_it() {
        let path = YamlPath::root()
            .key("listeners")
            .index(0)
            .key("routes")
            .index(2)
            .key("cluster");
        assert_eq!(path.to_string(), "listeners[0].routes[2].cluster");
        assert_eq!(YamlPath::root().to_string(), "");
    }

    #[test]
    fn parses_back_what_it_renders() {
        for text in ["listeners[0].routes[2].cluster", "a[1][2].b", "admin", ""] {
            assert_eq!(YamlPath::parse(text).to_string(), text);
        }
        assert_eq!(YamlPath::parse("a[x].b").to_string(), "a");
    }
}
