//! `!reference [job, key, …]` tags, resolved as GitLab resolves them: after `include:` and
//! `extends:`, against the extended configuration, references inside the referenced value
//! resolved in turn (at most 10 deep).

use serde_norway::value::TaggedValue;
use serde_norway::Value;

/// GitLab's limit on nested references.
const MAX_DEPTH: usize = 10;

/// `value` with every `!reference` replaced by what it names; `lookup` gives a top-level
/// entry (a job or template after `extends`, or a global key). `Err` says which reference
/// failed and why.
pub(super) fn resolve(
    value: &Value,
    lookup: &dyn Fn(&str) -> Option<Value>,
) -> Result<Value, String> {
    resolve_at(value, lookup, 0)
}

fn resolve_at(
    value: &Value,
    lookup: &dyn Fn(&str) -> Option<Value>,
    depth: usize,
) -> Result<Value, String> {
    match value {
        Value::Tagged(tagged) => {
            let TaggedValue { tag, value: inner } = tagged.as_ref();
            if *tag != "reference" {
                return Err(format!("unknown YAML tag {tag}"));
            }
            if depth >= MAX_DEPTH {
                return Err(format!("!reference nests deeper than {MAX_DEPTH} levels"));
            }
            let target = target(inner, lookup)?;
            resolve_at(&target, lookup, depth + 1)
        }
        Value::Sequence(items) => items
            .iter()
            .map(|i| resolve_at(i, lookup, depth))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Sequence),
        Value::Mapping(m) => {
            let mut out = serde_norway::Mapping::new();
            for (k, v) in m {
                out.insert(k.clone(), resolve_at(v, lookup, depth)?);
            }
            Ok(Value::Mapping(out))
        }
        other => Ok(other.clone()),
    }
}

/// The value `[first, keys…]` names.
fn target(path: &Value, lookup: &dyn Fn(&str) -> Option<Value>) -> Result<Value, String> {
    let keys: Vec<&str> = match path {
        Value::Sequence(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let shown = format!("!reference [{}]", keys.join(", "));
    let Some((first, rest)) = keys
        .split_first()
        .filter(|_| matches!(path, Value::Sequence(items) if items.len() == keys.len()))
    else {
        return Err(format!("{shown} must be a list of names"));
    };
    let mut current =
        lookup(first).ok_or_else(|| format!("{shown}: `{first}` is not in the pipeline"))?;
    for key in rest {
        current = match &current {
            Value::Mapping(m) => m.get(*key).cloned(),
            _ => None,
        }
        .ok_or_else(|| format!("{shown}: `{key}` is not there"))?;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn references_resolve_nested_and_report_what_is_missing() {
        let root = yaml(
            ".setup:\n  script: [echo one, !reference [.more, script]]\n\
             .more:\n  script: [echo two]\n  variables: {A: a}\n",
        );
        let lookup = |name: &str| root.get(name).cloned();
        let job = yaml(
            "script: [!reference [.setup, script], echo three]\n\
             variables: !reference [.more, variables]",
        );
        assert_eq!(
            resolve(&job, &lookup).unwrap(),
            yaml("script: [[echo one, [echo two]], echo three]\nvariables: {A: a}")
        );
        let err = resolve(&yaml("x: !reference [.more, nothing]"), &lookup).unwrap_err();
        assert!(err.contains("`nothing`"), "{err}");
        let err = resolve(&yaml("x: !reference [.absent, script]"), &lookup).unwrap_err();
        assert!(err.contains("`.absent`"), "{err}");
        let err = resolve(&yaml("x: !reference .more"), &lookup).unwrap_err();
        assert!(err.contains("list of names"), "{err}");
        let err = resolve(&yaml("x: !secret y"), &lookup).unwrap_err();
        assert!(err.contains("unknown YAML tag"), "{err}");
    }

    #[test]
    fn a_reference_to_itself_stops_at_the_depth_limit() {
        let root = yaml(".a:\n  script: !reference [.a, script]\n");
        let lookup = |name: &str| root.get(name).cloned();
        let err = resolve(&yaml("x: !reference [.a, script]"), &lookup).unwrap_err();
        assert!(err.contains("deeper"), "{err}");
    }
}
