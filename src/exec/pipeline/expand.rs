//! GitLab's own expansion of a job's variables before it hands them to the runner
//! (`Ci::Variables::Collection#sort_and_expand_all` with `keep_undefined`, file and raw
//! references deferred): variables are ordered by what they refer to, so a reference to a
//! variable that itself refers to others resolves fully; a reference to a name GitLab does
//! not know (the runner's `CI_PROJECT_DIR`, the image's `PATH`) stays for the runner; `$$`
//! stays `$$`, which the runner then turns into a literal `$`; a raw (`expand: false`)
//! variable is never expanded, and a reference to one is left for the runner, which
//! expands it once with the raw value. A reference loop between variables is an error.
//!
//! GitLab's reference syntax (`$NAME`, `${NAME}`, `%NAME%`, names starting with a letter or
//! `_`) is not the runner's (Go's `os.Expand`, see `protocol::expand`): each side is
//! reproduced with its own grammar.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use regex::{Captures, Regex};

use super::VarDef;

/// GitLab's `ExpandVariables::VARIABLES_REGEXP`.
fn references() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let name = "[A-Za-z_][A-Za-z0-9_]*";
        Regex::new(&format!(r"\$\$|%%|\$({name})|\$\{{({name})?\}}|%({name})%"))
            .unwrap_or_else(|e| unreachable!("a fixed pattern: {e}"))
    })
}

/// The variable name a match refers to; `None` for `$$`, `%%` and `${}`.
fn name_of<'t>(caps: &Captures<'t>) -> Option<&'t str> {
    caps.get(1)
        .or_else(|| caps.get(2))
        .or_else(|| caps.get(3))
        .map(|m| m.as_str())
}

/// The names `value` refers to, in order.
pub fn names(value: &str) -> Vec<String> {
    references()
        .captures_iter(value)
        .filter_map(|caps| name_of(&caps).map(String::from))
        .collect()
}

/// `value` with every reference `lookup` knows replaced; other references, `$$` and `%%`
/// stay as written.
pub fn expand_value(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    references()
        .replace_all(value, |caps: &Captures| {
            let whole = caps.get(0).map_or("", |m| m.as_str());
            name_of(caps)
                .and_then(lookup)
                .unwrap_or_else(|| whole.to_string())
        })
        .into_owned()
}

/// Every variable of `vars` (later definitions of a name win) with its value expanded as
/// GitLab expands it, in the same order; `Err` names the variables of a reference loop.
pub fn expand_all(vars: &[VarDef]) -> Result<Vec<VarDef>, String> {
    let effective: HashMap<&str, &VarDef> = vars.iter().map(|v| (v.key.as_str(), v)).collect();
    let order = sorted(vars, &effective)?;
    let mut done: HashMap<&str, String> = HashMap::new();
    for key in order {
        let var = effective[key];
        let value = expanded(var, &effective, &done);
        done.insert(key, value);
    }
    Ok(vars
        .iter()
        .map(|v| VarDef {
            value: match effective.get(v.key.as_str()) {
                Some(last) if std::ptr::eq(*last, v) => done[v.key.as_str()].clone(),
                _ => expanded(v, &effective, &done),
            },
            ..v.clone()
        })
        .collect())
}

/// One value, with the values expanded so far (`done`).
fn expanded(
    var: &VarDef,
    effective: &HashMap<&str, &VarDef>,
    done: &HashMap<&str, String>,
) -> String {
    if var.raw {
        return var.value.clone();
    }
    expand_value(&var.value, &|name| match effective.get(name) {
        // The runner expands a raw variable's reference with its raw value.
        Some(target) if target.raw => None,
        Some(_) => done.get(name).cloned(),
        None => None,
    })
}

/// The names `var` refers to that are defined (none for a raw variable).
fn depends_on<'v>(var: &'v VarDef, effective: &HashMap<&str, &VarDef>) -> Vec<&'v str> {
    if var.raw {
        return Vec::new();
    }
    references()
        .captures_iter(&var.value)
        .filter_map(|caps| name_of(&caps))
        .filter(|name| *name != var.key && effective.contains_key(name))
        .collect()
}

/// The effective variables, each after those it refers to; a reference to itself is no
/// loop (it stays for the runner), a longer loop is an error.
fn sorted<'v>(
    vars: &'v [VarDef],
    effective: &HashMap<&str, &'v VarDef>,
) -> Result<Vec<&'v str>, String> {
    fn visit<'v>(
        key: &'v str,
        effective: &HashMap<&str, &'v VarDef>,
        done: &mut HashSet<&'v str>,
        path: &mut Vec<&'v str>,
        order: &mut Vec<&'v str>,
    ) -> Result<(), String> {
        if done.contains(key) {
            return Ok(());
        }
        if let Some(start) = path.iter().position(|k| *k == key) {
            return Err(format!(
                "circular variable reference detected: {}",
                path[start..].join(", ")
            ));
        }
        path.push(key);
        let var = effective[key];
        for child in depends_on(var, effective) {
            let child = effective[child].key.as_str();
            visit(child, effective, done, path, order)?;
        }
        path.pop();
        done.insert(key);
        order.push(key);
        Ok(())
    }
    let mut done = HashSet::new();
    let mut order = Vec::new();
    for var in vars {
        let key = effective[var.key.as_str()].key.as_str();
        visit(key, effective, &mut done, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(key: &str, value: &str) -> VarDef {
        VarDef {
            key: key.into(),
            value: value.into(),
            raw: false,
        }
    }

    fn value_of<'a>(vars: &'a [VarDef], key: &str) -> &'a str {
        vars.iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value.as_str())
            .unwrap_or_else(|| panic!("no {key}"))
    }

    #[test]
    fn nested_references_resolve_in_any_order() {
        let vars = vec![
            var("IMAGE", "$REGISTRY/app:${TAG}"),
            var("REGISTRY", "registry.example.com/$GROUP"),
            var("GROUP", "platform"),
            var("TAG", "$CI_COMMIT_REF_SLUG-1"),
            var("CI_COMMIT_REF_SLUG", "main"),
            var("TAG", "$CI_COMMIT_REF_SLUG-2"),
        ];
        let out = expand_all(&vars).unwrap();
        assert_eq!(
            value_of(&out, "IMAGE"),
            "registry.example.com/platform/app:main-2"
        );
        assert_eq!(out.len(), vars.len());
    }

    #[test]
    fn unknown_escaped_and_raw_references_are_left_for_the_runner() {
        let vars = vec![
            var("OUT", "$CI_PROJECT_DIR/out"),
            var("PRICE", "$$5 and 100%%"),
            VarDef {
                raw: true,
                ..var("RAW", "$OUT $$")
            },
            var("USES_RAW", "[$RAW]"),
            var("PATH", "$PATH:/opt/bin"),
            var("WIN", "%OUT%"),
        ];
        let out = expand_all(&vars).unwrap();
        assert_eq!(value_of(&out, "OUT"), "$CI_PROJECT_DIR/out");
        assert_eq!(value_of(&out, "PRICE"), "$$5 and 100%%");
        assert_eq!(value_of(&out, "RAW"), "$OUT $$");
        assert_eq!(value_of(&out, "USES_RAW"), "[$RAW]");
        assert_eq!(value_of(&out, "PATH"), "$PATH:/opt/bin");
        assert_eq!(value_of(&out, "WIN"), "$CI_PROJECT_DIR/out");
    }

    #[test]
    fn reference_loops_are_errors_naming_the_variables() {
        let err = expand_all(&[var("A", "$B"), var("B", "${C}"), var("C", "$A")]).unwrap_err();
        assert!(err.contains("circular") && err.contains("A, B, C"), "{err}");
    }

    #[test]
    fn single_values_keep_what_the_lookup_does_not_know() {
        let lookup = |name: &str| (name == "DIR").then(|| "docs".to_string());
        assert_eq!(expand_value("$DIR/**/*.md", &lookup), "docs/**/*.md");
        assert_eq!(expand_value("${OTHER}/x", &lookup), "${OTHER}/x");
    }
}
