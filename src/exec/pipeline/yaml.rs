//! YAML read as GitLab's reader (Ruby's Psych) reads it: a key written twice in one mapping
//! keeps its last value, where `serde_norway` refuses the document. Otherwise the same
//! values, tags (`!reference`) included.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess};
use serde_norway::value::{Tag, TaggedValue};
use serde_norway::{Mapping, Value};

/// Parses `text`, a repeated key taking its last value.
pub(super) fn parse(text: &str) -> Result<Value, serde_norway::Error> {
    serde_norway::from_str::<LastWins>(text).map(|v| v.0)
}

/// A YAML value whose mappings keep the last of repeated keys.
struct LastWins(Value);

impl<'de> Deserialize<'de> for LastWins {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LastWinsVisitor).map(LastWins)
    }
}

struct LastWinsVisitor;

impl<'de> de::Visitor<'de> for LastWinsVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Number(u.into()))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Number(f.into()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(LastWinsVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(LastWins(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some((LastWins(key), LastWins(value))) = map.next_entry()? {
            // `insert` replaces the earlier value and keeps the key's first position.
            mapping.insert(key, value);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, contents): (String, _) = data.variant()?;
        let LastWins(value) = contents.newtype_variant()?;
        if tag.is_empty() {
            return Err(de::Error::custom("an empty YAML tag"));
        }
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_keeps_its_last_value_and_tags_survive() {
        let v = parse("job:\n  script: [one]\n  stage: build\n  script: [two]\nref: !reference [.a, script]\n").unwrap();
        let job = v.get("job").unwrap();
        assert_eq!(
            job.get("script").unwrap(),
            &serde_norway::from_str::<Value>("[two]").unwrap()
        );
        let keys: Vec<&str> = job
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(keys, ["script", "stage"]);
        let plain: Value = serde_norway::from_str("ref: !reference [.a, script]").unwrap();
        assert_eq!(v.get("ref"), plain.get("ref"));
        assert!(parse("a: [").is_err());
    }
}
