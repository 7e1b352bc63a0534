//! A serde `Deserializer` over the positioned YAML tree, with errors written for people.
//!
//! Deserializing straight from [`Node`] (rather than through an intermediate value) keeps map
//! keys in document order, so the first error serde stops at is the first one in the file.
//! [`DeError`] overrides serde's error constructors so that every type, unknown-key and
//! missing-key error carries a separate message and hint; `serde_path_to_error` adds the path.

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, Expected, IntoDeserializer, Unexpected, Visitor};
use serde::forward_to_deserialize_any;

use crate::yaml::{Kind, Node};

/// A deserialization error: what is wrong, and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeError {
    /// What is wrong.
    pub(crate) message: String,
    /// What would be valid.
    pub(crate) hint: Option<String>,
}

// === impl DeError ===

impl DeError {
    fn new(message: String, hint: impl Into<String>) -> Self {
        Self {
            message,
            hint: Some(hint.into()),
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    /// Custom messages from this crate's own parsers use `message; hint`.
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let text = msg.to_string();
        match text.split_once("; ") {
            Some((message, hint)) => Self::new(message.to_owned(), hint),
            None => Self {
                message: text,
                hint: None,
            },
        }
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        let expected = humanize_expected(&exp.to_string());
        let found = describe_unexpected(&unexp);
        let scalar = matches!(
            unexp,
            Unexpected::Signed(_)
                | Unexpected::Unsigned(_)
                | Unexpected::Float(_)
                | Unexpected::Bool(_)
        );
        let hint = if scalar && expected.contains("string") {
            format!(
                "expected {expected}; quote the value to make it text, e.g. \"{unexp_text}\"",
                unexp_text = scalar_text(&unexp)
            )
        } else {
            format!("expected {expected}")
        };
        Self::new(format!("wrong type: found {found}"), hint)
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        let expected = humanize_expected(&exp.to_string());
        Self::new(
            format!("invalid value: {}", describe_unexpected(&unexp)),
            format!("expected {expected}"),
        )
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(
            format!("unknown value `{variant}`"),
            format!(
                "{}valid values: {}",
                did_you_mean(variant, expected),
                expected.join(", ")
            ),
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let valid = if expected.is_empty() {
            "this map takes no keys".to_owned()
        } else {
            format!("valid keys here: {}", expected.join(", "))
        };
        let merge = if field == "<<" {
            "YAML merge keys (`<<`) are not supported; "
        } else {
            ""
        };
        Self::new(
            format!("unknown key `{field}`"),
            format!("{merge}{}{valid}", did_you_mean(field, expected)),
        )
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(
            format!("missing required key `{field}`"),
            format!("add `{field}: ...` to this map"),
        )
    }
}

/// serde's wording for what it expected, in the words of a YAML user.
fn humanize_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" => {
            let max = match expected {
                "u8" => Some(u64::from(u8::MAX)),
                "u16" => Some(u64::from(u16::MAX)),
                "u32" => Some(u64::from(u32::MAX)),
                _ => None,
            };
            match max {
                Some(max) => format!("a whole number from 0 to {max}"),
                None => "a whole number".to_owned(),
            }
        }
        "a boolean" => "true or false".to_owned(),
        "a sequence" => "a list (`- item` lines or `[a, b]`)".to_owned(),
        "a map" => "a map (`key: value` lines or `{ key: value }`)".to_owned(),
        other if other.starts_with("struct ") => {
            "a map (`key: value` lines or `{ key: value }`)".to_owned()
        }
        other => other.to_owned(),
    }
}

fn describe_unexpected(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Unit | Unexpected::Option => "nothing (an empty value or null)".to_owned(),
        Unexpected::Seq => "a list".to_owned(),
        Unexpected::Map => "a map".to_owned(),
        other => other.to_string(),
    }
}

fn scalar_text(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Signed(i) => i.to_string(),
        Unexpected::Unsigned(u) => u.to_string(),
        Unexpected::Float(f) => f.to_string(),
        Unexpected::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// `did you mean `x`? ` when one of `candidates` is a likely typo of `given`.
fn did_you_mean(given: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| (edit_distance(given, c), *c))
        // Short names tolerate one typo, longer ones a few: `tcp` should not suggest `http`.
        .filter(|(d, c)| *d <= if c.len() <= 4 { 1 } else { 2.max(c.len() / 4) })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`? "))
        .unwrap_or_default()
}

/// Levenshtein distance, for typo suggestions on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

// === impl Deserializer for &Node ===

impl<'de> de::Deserializer<'de> for &'de Node {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_borrowed_str(s),
            Kind::Seq(items) => {
                let mut seq = SeqDeserializer::new(items.iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Kind::Map(entries) => {
                let mut map =
                    MapDeserializer::new(entries.iter().map(|e| (e.key.as_str(), &e.value)));
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.kind {
            Kind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    /// The schema's enums are all plain names (`round_robin`), written as strings.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.kind {
            Kind::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => Err(DeError::new(
                format!("wrong type: found {}", self.describe()),
                format!("expected one of: {}", variants.join(", ")),
            )),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

impl<'de> IntoDeserializer<'de, DeError> for &'de Node {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl Node {
    fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "nothing (an empty value or null)".to_owned(),
            Kind::Bool(b) => format!("boolean `{b}`"),
            Kind::Int(i) => format!("integer `{i}`"),
            Kind::Float(f) => format!("floating point `{f}`"),
            Kind::Str(s) => format!("string {s:?}"),
            Kind::Seq(_) => "a list".to_owned(),
            Kind::Map(_) => "a map".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_suggestions_are_close_but_not_wild() {
        let keys = &["cluster", "weighted_clusters", "redirect", "timeout"];
        assert_eq!(did_you_mean("clustr", keys), "did you mean `cluster`? ");
        assert_eq!(did_you_mean("redirct", keys), "did you mean `redirect`? ");
        assert_eq!(did_you_mean("zzz", keys), "");
        assert_eq!(did_you_mean("tcp", &["http"]), "");
        assert_eq!(did_you_mean("htp", &["http"]), "did you mean `http`? ");
    }

    #[test]
    fn custom_messages_split_into_message_and_hint() {
        let e = <DeError as de::Error>::custom("`5x`: unknown unit `x`; use ms, s, m or h");
        assert_eq!(e.message, "`5x`: unknown unit `x`");
        assert_eq!(e.hint.as_deref(), Some("use ms, s, m or h"));
    }
}
