//! The errors a config load can produce.
//!
//! A config error is read by a person fixing a file, so each one carries everything needed to find
//! and fix the problem without reading weir's source: the file, the YAML path, the line and a hint
//! of what would be valid.

use std::fmt;

use crate::path::YamlPath;

/// One problem in a config file.
///
/// Displays as `weir.yaml: listeners[0].routes[1].cluster (line 14): unknown cluster "apii";
/// defined clusters: api, web`. Parts that are unknown are left out: a YAML syntax error has no
/// path, a config built in code has no line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or source name given to [`crate::load_str`]) the error is in.
    pub file: String,
    /// The YAML path of the offending value, e.g. `listeners[0].routes[2].cluster`; empty when
    /// the problem is about the whole document or the YAML syntax.
    pub path: String,
    /// The 1-based line the problem is on, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What would be valid, or how to fix it.
    pub hint: Option<String>,
}

/// Every problem found in a config file, in file order; never empty.
///
/// Syntax and type errors stop loading at the first one; the semantic rules (names, references,
/// ranges) are all checked, so one round of editing can fix them together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    // Boxed: a `Result` carrying this stays small on the happy path.
    first: Box<ConfigError>,
    rest: Vec<ConfigError>,
}

// === impl ConfigError ===

impl ConfigError {
    /// An error about the value at `path`.
    pub(crate) fn new(
        file: &str,
        path: &YamlPath,
        line: Option<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            path: path.to_string(),
            line,
            message: message.into(),
            hint,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

// === impl ConfigErrors ===

impl ConfigErrors {
    /// Sorts `errors` into file order; `None` when there are none.
    pub(crate) fn from_vec(mut errors: Vec<ConfigError>) -> Option<Self> {
        // Errors without a line (configs built in code) keep their walk order, after the others.
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        let mut errors = errors.into_iter();
        let first = errors.next()?;
        Some(Self {
            first: Box::new(first),
            rest: errors.collect(),
        })
    }

    /// The first problem in file order.
    pub fn first(&self) -> &ConfigError {
        &self.first
    }

    /// Every problem, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(&*self.first).chain(self.rest.iter())
    }

    /// Every problem, in file order.
    pub fn into_vec(self) -> Vec<ConfigError> {
        let mut all = Vec::with_capacity(1 + self.rest.len());
        all.push(*self.first);
        all.extend(self.rest);
        all
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self {
            first: Box::new(error),
            rest: Vec::new(),
        }
    }
}

impl From<ConfigErrors> for ConfigError {
    fn from(errors: ConfigErrors) -> Self {
        *errors.first
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leaves_out_unknown_parts() {
        let path = YamlPath::root().key("clusters").index(1).key("name");
        let full = ConfigError::new("weir.yaml", &path, Some(7), "bad", Some("do this".into()));
        assert_eq!(
            full.to_string(),
            "weir.yaml: clusters[1].name (line 7): bad; do this"
        );
        let bare = ConfigError::new("weir.yaml", &YamlPath::root(), None, "bad", None);
        assert_eq!(bare.to_string(), "weir.yaml: bad");
    }

    #[test]
    fn errors_are_sorted_by_line() {
        let at = |line| ConfigError::new("f", &YamlPath::root(), line, "m", None);
        let errors = ConfigErrors::from_vec(vec![at(None), at(Some(9)), at(Some(2))]);
        let lines: Vec<_> = errors
            .iter()
            .flat_map(|e| e.iter())
            .map(|e| e.line)
            .collect();
        assert_eq!(lines, vec![Some(2), Some(9), None]);
        assert!(ConfigErrors::from_vec(Vec::new()).is_none());
    }
}
