//! `include:` as GitLab merges it, for the local form: `include: path`, a list of paths
//! (globs allowed), `include: {local: path}` or lists of those, nested includes too. Each
//! included file is merged in order underneath the file that includes it (mappings key by
//! key, the including file winning), before `extends:` and `!reference` are resolved, so a
//! job can extend a template of an included file. The other forms (`remote`, `template`,
//! `project`, `component`) need GitLab; they are named as not acted on.

use serde_norway::{Mapping, Value};

use super::extends::deep_merge;
use super::PipelineError;
use crate::glob;

/// GitLab's limit on the number of included files.
const MAX_INCLUDES: usize = 150;

/// Where included files come from.
pub trait Source {
    /// The text of `path` (relative to the project root); `None` when there is no such file.
    fn read(&self, path: &str) -> Result<Option<String>, String>;
    /// Every file of the project, relative to its root, for globs.
    fn files(&self) -> Result<Vec<String>, String>;
}

/// No files at all: a pipeline read on its own, without a project.
pub struct NoFiles;

impl Source for NoFiles {
    fn read(&self, _: &str) -> Result<Option<String>, String> {
        Ok(None)
    }

    fn files(&self) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// The merged configuration of a pipeline file and everything it includes.
#[derive(Debug)]
pub(super) struct Merged {
    /// The top-level mapping, `include:` removed.
    pub root: Mapping,
    /// The files included, in the order they were read.
    pub included: Vec<String>,
    /// Includes `exec` does not act on.
    pub not_acted_on: Vec<String>,
}

/// Reads `text` (the file `name`) and merges what it includes from `source`.
pub(super) fn merge(text: &str, name: &str, source: &dyn Source) -> Result<Merged, PipelineError> {
    let mut merged = Merged {
        root: Mapping::new(),
        included: Vec::new(),
        not_acted_on: Vec::new(),
    };
    merged.root = merge_file(text, name, source, &mut vec![name.to_string()], &mut merged)?;
    Ok(merged)
}

fn merge_file(
    text: &str,
    name: &str,
    source: &dyn Source,
    chain: &mut Vec<String>,
    out: &mut Merged,
) -> Result<Mapping, PipelineError> {
    let mut own = parse_file(text, name)?;
    let Some(include) = own.remove("include") else {
        return Ok(own);
    };
    let mut acc = Mapping::new();
    for path in local_paths(&include, name, source, &mut out.not_acted_on)? {
        let err = |message: String| PipelineError::Include {
            file: name.to_string(),
            message,
        };
        if chain.contains(&path) {
            return Err(err(format!(
                "`{path}` includes itself: {} -> {path}",
                chain.join(" -> ")
            )));
        }
        if out.included.len() >= MAX_INCLUDES {
            return Err(err(format!("more than {MAX_INCLUDES} included files")));
        }
        if path.contains('$') {
            return Err(err(format!(
                "local `{path}` names a variable: GitLab expands predefined and project variables in include paths, exec does not; write the path out (or include each file it can be)"
            )));
        }
        let text = source
            .read(&path)
            .map_err(|e| err(format!("cannot read `{path}`: {e}")))?
            .ok_or_else(|| err(format!("local file `{path}` does not exist")))?;
        out.included.push(path.clone());
        chain.push(path.clone());
        let included = merge_file(&text, &path, source, chain, out)?;
        chain.pop();
        deep_merge(&mut acc, &included);
    }
    deep_merge(&mut acc, &own);
    Ok(acc)
}

/// One file's top-level mapping, YAML merge keys applied.
fn parse_file(text: &str, name: &str) -> Result<Mapping, PipelineError> {
    let syntax = |message: String| PipelineError::Syntax {
        file: name.to_string(),
        message,
    };
    let mut root: Value = serde_norway::from_str(text).map_err(|e| {
        let message = e.to_string();
        syntax(match message.contains("more than one document") {
            // A `spec:` header (`inputs:`) is a document of its own.
            true => format!(
                "{message} (files with a `spec:` header take inputs, which exec does not support)"
            ),
            false => message,
        })
    })?;
    root.apply_merge().map_err(|e| syntax(e.to_string()))?;
    match root {
        Value::Mapping(m) => Ok(m),
        _ => Err(syntax("the file is not a YAML mapping".into())),
    }
}

/// The local files an `include:` value names (globs expanded, in order); other forms are
/// recorded in `not_acted_on`.
fn local_paths(
    include: &Value,
    file: &str,
    source: &dyn Source,
    not_acted_on: &mut Vec<String>,
) -> Result<Vec<String>, PipelineError> {
    let err = |message: String| PipelineError::Include {
        file: file.to_string(),
        message,
    };
    let entries: Vec<&Value> = match include {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut paths = Vec::new();
    for entry in entries {
        let local = match entry {
            Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
                not_acted_on.push(format!("include: remote {s}"));
                continue;
            }
            Value::String(s) => s.clone(),
            Value::Mapping(m) => {
                let Some(local) = m.get("local") else {
                    let kind = ["remote", "template", "project", "component"]
                        .into_iter()
                        .find(|k| m.contains_key(*k))
                        .unwrap_or("(unknown form)");
                    not_acted_on.push(format!("include: {kind}"));
                    continue;
                };
                for key in m.keys().filter_map(Value::as_str).filter(|k| *k != "local") {
                    not_acted_on.push(format!(
                        "include: {key} (the local file is included unconditionally)"
                    ));
                }
                local
                    .as_str()
                    .ok_or_else(|| err("`include: local` must be a path".into()))?
                    .to_string()
            }
            _ => return Err(err("`include` entries must be paths or mappings".into())),
        };
        paths.extend(expand_local(&local, source).map_err(err)?);
    }
    Ok(paths)
}

/// A local include path relative to the project root; a glob matches project files.
fn expand_local(path: &str, source: &dyn Source) -> Result<Vec<String>, String> {
    let path = path.trim_start_matches('/').trim_start_matches("./");
    if path.split('/').any(|c| c == "..") {
        return Err(format!("`{path}` leaves the project"));
    }
    if !(path.ends_with(".yml") || path.ends_with(".yaml")) {
        return Err(format!(
            "`{path}`: included files must end in .yml or .yaml"
        ));
    }
    if !path.contains(['*', '?', '[']) {
        return Ok(vec![path.to_string()]);
    }
    let mut matched: Vec<String> = source
        .files()?
        .into_iter()
        .filter(|f| glob::matches(path, f))
        .collect();
    matched.sort();
    if matched.is_empty() {
        return Err(format!("no file matches `{path}`"));
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Files(BTreeMap<&'static str, &'static str>);

    impl Source for Files {
        fn read(&self, path: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(path).map(|t| t.to_string()))
        }

        fn files(&self) -> Result<Vec<String>, String> {
            Ok(self.0.keys().map(|k| k.to_string()).collect())
        }
    }

    fn yaml(text: &str) -> Mapping {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn includes_merge_in_order_under_the_including_file() {
        let files = Files(BTreeMap::from([
            (
                "ci/base.yml",
                "include: /ci/nested.yml\nvariables: {A: base, B: base}\n.tmpl: {script: [base]}",
            ),
            ("ci/nested.yml", "variables: {N: nested, A: nested}"),
            ("ci/jobs/lint.yml", "lint: {script: [lint]}"),
            ("ci/jobs/test.yml", "test: {script: [test]}"),
        ]));
        let main = "include:\n  - local: ci/base.yml\n  - 'ci/jobs/*.yml'\n  - remote: https://example.com/x.yml\n  - template: Security/SAST.gitlab-ci.yml\nvariables: {B: main}\n";
        let merged = merge(main, ".gitlab-ci.yml", &files).unwrap();
        assert_eq!(
            merged.root,
            yaml(
                "variables: {N: nested, A: base, B: main}\n.tmpl: {script: [base]}\n\
                 lint: {script: [lint]}\ntest: {script: [test]}"
            )
        );
        assert_eq!(
            merged.included,
            [
                "ci/base.yml",
                "ci/nested.yml",
                "ci/jobs/lint.yml",
                "ci/jobs/test.yml"
            ]
        );
        assert_eq!(
            merged.not_acted_on,
            ["include: remote", "include: template"]
        );
    }

    #[test]
    fn missing_looping_and_escaping_includes_are_errors() {
        let files = Files(BTreeMap::from([
            ("a.yml", "include: b.yml"),
            ("b.yml", "include: a.yml"),
        ]));
        let err = merge("include: a.yml", ".gitlab-ci.yml", &files)
            .unwrap_err()
            .to_string();
        assert!(err.contains("includes itself"), "{err}");
        let err = merge("include: {local: missing.yml}", ".gitlab-ci.yml", &files)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`missing.yml` does not exist"), "{err}");
        let err = merge("include: ../outside.yml", ".gitlab-ci.yml", &files)
            .unwrap_err()
            .to_string();
        assert!(err.contains("leaves the project"), "{err}");
        let err = merge("include: 'ci/*.yml'", ".gitlab-ci.yml", &files)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no file matches"), "{err}");
        let err = merge("a: [", ".gitlab-ci.yml", &files)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(".gitlab-ci.yml"), "{err}");
    }
}
