//! `extends:` and the deep merge GitLab uses for it and for `include:`: mappings merge key
//! by key, everything else (lists included) is replaced by the later value.

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value};

use super::values::strings;
use super::PipelineError;

/// GitLab's limit on `extends` nesting.
const MAX_EXTENDS_DEPTH: usize = 11;

/// `over` merged onto `base`: mappings key by key, anything else replaced.
pub(super) fn deep_merge(base: &mut Mapping, over: &Mapping) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => deep_merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The job or template `name` with everything it `extends` merged underneath it, in the
/// order listed (a later parent wins over an earlier one, the job over all of them).
pub(super) fn resolve(
    name: &str,
    all: &BTreeMap<String, Mapping>,
) -> Result<Mapping, PipelineError> {
    resolve_at(name, all, 0, &mut Vec::new())
}

fn resolve_at(
    name: &str,
    all: &BTreeMap<String, Mapping>,
    depth: usize,
    chain: &mut Vec<String>,
) -> Result<Mapping, PipelineError> {
    let job = chain.first().map_or(name, String::as_str).to_string();
    let err = |message: String| PipelineError::Extends {
        job: job.clone(),
        message,
    };
    if depth > MAX_EXTENDS_DEPTH {
        return Err(err(format!("nests deeper than {MAX_EXTENDS_DEPTH} levels")));
    }
    if chain.iter().any(|c| c == name) {
        return Err(err(format!("loops: {} -> {name}", chain.join(" -> "))));
    }
    let own = all
        .get(name)
        .ok_or_else(|| err(format!("names `{name}`, which is not in the file")))?;
    let parents = match own.get("extends") {
        None => Vec::new(),
        Some(v) => strings(v, &job, "extends")?,
    };
    chain.push(name.to_string());
    let mut merged = Mapping::new();
    for parent in parents {
        if !all.contains_key(&parent) {
            return Err(err(format!(
                "names `{parent}`, which is not in the file or its includes"
            )));
        }
        let resolved = resolve_at(&parent, all, depth + 1, chain)?;
        deep_merge(&mut merged, &resolved);
    }
    chain.pop();
    deep_merge(&mut merged, own);
    merged.remove("extends");
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(text: &str) -> Mapping {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn parents_merge_deeply_in_order_and_the_job_wins() {
        let all: BTreeMap<String, Mapping> = [
            (".a", "variables: {X: a, Y: a}\nscript: [a]\ntags: [a]"),
            (".b", "variables: {Y: b}\nscript: [b]"),
            ("job", "extends: [.a, .b]\nvariables: {Z: job}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), mapping(v)))
        .collect();
        let job = resolve("job", &all).unwrap();
        assert_eq!(
            job,
            mapping("variables: {X: a, Y: b, Z: job}\nscript: [b]\ntags: [a]")
        );
    }

    #[test]
    fn unknown_parents_and_loops_name_the_job() {
        let all: BTreeMap<String, Mapping> = [
            (".a", "extends: .b"),
            (".b", "extends: .a"),
            ("loop", "extends: .a"),
            ("lost", "extends: .nowhere"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), mapping(v)))
        .collect();
        let err = resolve("loop", &all).unwrap_err().to_string();
        assert!(err.contains("`loop`") && err.contains("loops"), "{err}");
        let err = resolve("lost", &all).unwrap_err().to_string();
        assert!(err.contains("`lost`") && err.contains(".nowhere"), "{err}");
    }
}
