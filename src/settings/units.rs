//! Setting values held parsed: memory sizes, durations and tag patterns. Each reads from and
//! writes back to the form an operator writes in the TOML file, so a value is validated once,
//! when the file is read, and never parsed again.

use std::fmt;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A memory size for Docker (`512m`, `2g`, bytes); absent when the file says `""`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemorySize(Option<i64>);

/// Docker refuses memory limits below 6 MiB.
const DOCKER_MIN_MEMORY: i64 = 6 << 20;

impl MemorySize {
    /// Parses `""` (none), `1073741824`, `512m`, `2g`, `1024k` (an optional `b` after the unit).
    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim().to_ascii_lowercase();
        if v.is_empty() {
            return Ok(MemorySize(None));
        }
        let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((i, _)) => v.split_at(i),
            None => (v.as_str(), ""),
        };
        let factor: i64 = match unit.trim_end_matches('b') {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            _ => {
                return Err(format!(
                    "a memory size is bytes or a number with k, m or g (512m, 2g), got `{value}`"
                ))
            }
        };
        digits
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .filter(|n| *n >= DOCKER_MIN_MEMORY)
            .map(|n| MemorySize(Some(n)))
            .ok_or_else(|| {
                format!("a memory size must be at least 6m (Docker's minimum), got `{value}`")
            })
    }

    /// The size in bytes, `None` for no limit.
    pub fn bytes(self) -> Option<i64> {
        self.0
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => Ok(()),
            Some(n) if n % (1 << 30) == 0 => write!(f, "{}g", n >> 30),
            Some(n) if n % (1 << 20) == 0 => write!(f, "{}m", n >> 20),
            Some(n) => write!(f, "{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for MemorySize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        MemorySize::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for MemorySize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A regular expression, compiled once when settings are read.
#[derive(Debug, Clone)]
pub struct Pattern(Regex);

impl Pattern {
    /// Compiles `text`.
    pub fn new(text: &str) -> Result<Self, String> {
        Regex::new(text)
            .map(Pattern)
            .map_err(|e| format!("`{text}` is not a regular expression: {e}"))
    }

    /// Whether `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::new(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Durations written as whole seconds in the file (`poll_interval_seconds = 5`).
pub mod seconds {
    use super::*;

    /// Reads whole seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }

    /// Writes whole seconds.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.as_secs())
    }
}

/// Durations written as whole minutes in the file (`rollout_timeout_minutes = 30`).
pub mod minutes {
    use super::*;

    /// Reads whole minutes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let minutes = u64::deserialize(d)?;
        minutes
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| serde::de::Error::custom(format!("{minutes} minutes is too long")))
    }

    /// Writes whole minutes.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.as_secs() / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        let bytes = |v: &str| MemorySize::parse(v).map(MemorySize::bytes);
        assert_eq!(bytes(""), Ok(None));
        assert_eq!(bytes("512m"), Ok(Some(512 << 20)));
        assert_eq!(bytes("2G"), Ok(Some(2 << 30)));
        assert_eq!(bytes("2gb"), Ok(Some(2 << 30)));
        assert!(bytes("1k").is_err());
        assert!(bytes("9x").is_err());
        for text in ["", "512m", "2g", "7340033"] {
            assert_eq!(MemorySize::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn patterns_compare_by_their_text() {
        assert_eq!(Pattern::new("^v").unwrap(), Pattern::new("^v").unwrap());
        assert!(Pattern::new("^v((")
            .unwrap_err()
            .contains("not a regular expression"));
    }
}
