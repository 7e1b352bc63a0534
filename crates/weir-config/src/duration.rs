//! Durations written the way operators write them: `250ms`, `5s`, `1m`, `2h`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// The longest duration weir accepts: a year. Longer values are mistakes (and would overflow
/// deadline arithmetic).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration parsed from a string such as `250ms`, `5s`, `1m30s` or `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ConfigDuration(pub Duration);

/// Reads a duration string; a bare number gets a hint to add a unit.
struct DurationVisitor;

// === impl ConfigDuration ===

impl ConfigDuration {
    /// Parses `<number><unit>` pairs, units `ms`, `s`, `m`, `h`; a bare `0` is zero.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Self(Duration::ZERO));
        }
        let mut total = Duration::ZERO;
        let mut rest = text;
        if rest.is_empty() {
            return Err("empty duration; write e.g. 250ms, 5s, 1m or 2h".into());
        }
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!(
                    "`{text}` is not a duration; write e.g. 250ms, 5s, 1m or 2h"
                ));
            }
            let n: u64 = rest[..digits].parse().map_err(|_| {
                format!("`{text}`: number too large; write a smaller number with a larger unit")
            })?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                "" => return Err(format!("`{text}` has no unit; add one of ms, s, m, h")),
                other => {
                    return Err(format!(
                        "`{text}`: unknown unit `{other}`; use ms, s, m or h"
                    ));
                }
            };
            total = total.saturating_add(unit);
            rest = &rest[unit_len..];
        }
        if total > MAX_DURATION {
            return Err(format!(
                "`{text}` is longer than a year; use at most 365d worth, e.g. 8760h"
            ));
        }
        Ok(Self(total))
    }

    /// The duration as a `std` value.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for ConfigDuration {
    /// The largest unit that states the duration exactly, as a user would write it: `30s`,
    /// `5m`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

// === impl DurationVisitor ===

impl Visitor<'_> for DurationVisitor {
    type Value = ConfigDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 250ms, 5s, 1m or 2h")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ConfigDuration, E> {
        ConfigDuration::parse(text).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<ConfigDuration, E> {
        if n == 0 {
            return Ok(ConfigDuration(Duration::ZERO));
        }
        Err(E::custom(format!(
            "`{n}` has no unit; add one of ms, s, m, h, e.g. {n}s or {n}ms"
        )))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<ConfigDuration, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::custom(format!(
                "`{n}` is negative; durations are written like 250ms, 5s, 1m or 2h"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_uses_the_largest_exact_unit() {
        let d = |ms| ConfigDuration(Duration::from_millis(ms)).to_string();
        assert_eq!(d(300_000), "5m");
        assert_eq!(d(30_000), "30s");
        assert_eq!(d(1_500), "1500ms");
        assert_eq!(d(7_200_000), "2h");
        assert_eq!(d(0), "0ms");
    }

    #[test]
    fn absurd_durations_are_refused() {
        let err = ConfigDuration::parse("3000000000000000h").unwrap_err();
        assert!(err.contains("longer than a year"), "{err}");
        assert!(ConfigDuration::parse("8760h").is_ok());
    }

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(
            ConfigDuration::parse("250ms").unwrap().get(),
            Duration::from_millis(250)
        );
        assert_eq!(
            ConfigDuration::parse("5s").unwrap().get(),
            Duration::from_secs(5)
        );
        assert_eq!(
            ConfigDuration::parse("1m30s").unwrap().get(),
            Duration::from_secs(90)
        );
        assert_eq!(
            ConfigDuration::parse("2h").unwrap().get(),
            Duration::from_secs(7200)
        );
        assert_eq!(ConfigDuration::parse("0").unwrap().get(), Duration::ZERO);
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        for bad in ["", "5", "s", "5x", "five seconds"] {
            let err = ConfigDuration::parse(bad).unwrap_err();
            assert!(err.contains("ms") || err.contains("unit"), "{bad}: {err}");
        }
    }
}
