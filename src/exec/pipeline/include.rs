//! `include:` as GitLab merges it, for the local form: `include: path`, a list of paths
//! (globs allowed), `include: {local: path}` or lists of those, nested includes too. Each
//! included file is merged in order underneath the file that includes it (mappings key by
//! key, the including file winning), before `extends:` and `!reference` are resolved, so a
//! job can extend a template of an included file. The other forms (`remote`, `template`,
//! `project`, `component`) need GitLab; they are named as not acted on.

use serde_norway::{Mapping, Value};

use super::expand::{expand_value, names};
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
    /// The value of a variable an include path may name (GitLab's predefined variables and
    /// the pipeline's own, never those of the YAML); `None` when there is none.
    fn variable(&self, _name: &str) -> Option<String> {
        None
    }
    /// The files of another project at `git_ref` (its default: the checkout's `HEAD`), for
    /// `include: project`; `None` when the operator gave no checkout of it.
    fn project(
        &self,
        _project: &str,
        _git_ref: Option<&str>,
    ) -> Result<Option<Box<dyn Source + '_>>, String> {
        Ok(None)
    }
}

/// One file an `include:` names.
enum Entry {
    /// A file of the including project.
    Local(String),
    /// `include: project`: a file of another project.
    Project {
        project: String,
        git_ref: Option<String>,
        file: String,
    },
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
    /// The files included from other projects (`project:file`).
    pub from_projects: Vec<String>,
    /// Includes `exec` does not act on.
    pub not_acted_on: Vec<String>,
}

/// Reads `text` (the file `name`) and merges what it includes from `source`.
pub(super) fn merge(text: &str, name: &str, source: &dyn Source) -> Result<Merged, PipelineError> {
    let mut merged = Merged {
        root: Mapping::new(),
        included: Vec::new(),
        from_projects: Vec::new(),
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
    for entry in entries(&include, name, source, &mut out.not_acted_on)? {
        let err = |message: String| PipelineError::Include {
            file: name.to_string(),
            message,
        };
        let (path, shown, project_source) = match entry {
            Entry::Local(path) => (path.clone(), path, None),
            Entry::Project {
                project,
                git_ref,
                file,
            } => {
                let shown = match &git_ref {
                    Some(r) => format!("{project}@{r}:{file}"),
                    None => format!("{project}:{file}"),
                };
                match source.project(&project, git_ref.as_deref()).map_err(&err)? {
                    Some(other) => (file, shown, Some(other)),
                    None => {
                        out.not_acted_on.push(format!(
                            "include: project {project} (give its checkout: --include-project {project}=PATH)"
                        ));
                        continue;
                    }
                }
            }
        };
        if chain.contains(&shown) {
            return Err(err(format!(
                "`{shown}` includes itself: {} -> {shown}",
                chain.join(" -> ")
            )));
        }
        if out.included.len() >= MAX_INCLUDES {
            return Err(err(format!("more than {MAX_INCLUDES} included files")));
        }
        // A project's file reads its own local includes from that project.
        let from: &dyn Source = project_source.as_deref().unwrap_or(source);
        let text = from
            .read(&path)
            .map_err(|e| err(format!("cannot read `{shown}`: {e}")))?
            .ok_or_else(|| err(format!("file `{shown}` does not exist")))?;
        match project_source {
            Some(_) => out.from_projects.push(shown.clone()),
            None => out.included.push(shown.clone()),
        }
        chain.push(shown.clone());
        let included = merge_file(&text, &shown, from, chain, out)?;
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
    let mut root: Value = super::yaml::parse(text).map_err(|e| {
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

/// The files an `include:` value names (local globs expanded, in order); forms `exec`
/// cannot follow are recorded in `not_acted_on`.
fn entries(
    include: &Value,
    file: &str,
    source: &dyn Source,
    not_acted_on: &mut Vec<String>,
) -> Result<Vec<Entry>, PipelineError> {
    let err = |message: String| PipelineError::Include {
        file: file.to_string(),
        message,
    };
    let items: Vec<&Value> = match include {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        let local = match item {
            Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
                not_acted_on.push(format!("include: remote {s}"));
                continue;
            }
            Value::String(s) => s.clone(),
            Value::Mapping(m) if m.contains_key("project") => {
                out.extend(project_entries(m, source, not_acted_on).map_err(err)?);
                continue;
            }
            Value::Mapping(m) => {
                let Some(local) = m.get("local") else {
                    let kind = ["remote", "template", "component"]
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
        let local = with_variables(&local, source).map_err(err)?;
        out.extend(
            expand_local(&local, source)
                .map_err(err)?
                .into_iter()
                .map(Entry::Local),
        );
    }
    Ok(out)
}

/// `include: {project, ref, file}`: one entry per file (`file` may be a list).
fn project_entries(
    m: &Mapping,
    source: &dyn Source,
    not_acted_on: &mut Vec<String>,
) -> Result<Vec<Entry>, String> {
    let text = |key: &str| {
        m.get(key)
            .and_then(Value::as_str)
            .map(|v| with_variables(v, source))
            .transpose()
    };
    let project = text("project")?.ok_or("`include: project` must name a project path")?;
    let git_ref = text("ref")?;
    for key in m.keys().filter_map(Value::as_str) {
        if !["project", "ref", "file"].contains(&key) {
            not_acted_on.push(format!(
                "include: project {key} (the files are included unconditionally)"
            ));
        }
    }
    let files = match m.get("file") {
        Some(Value::String(f)) => vec![with_variables(f, source)?],
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|f| {
                f.as_str()
                    .ok_or_else(|| "`include: project` `file` entries must be paths".to_string())
                    .and_then(|f| with_variables(f, source))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(format!("`include: project {project}` needs a `file`")),
    };
    files
        .into_iter()
        .map(|f| {
            let file = f.trim_start_matches('/').to_string();
            if file.split('/').any(|c| c == "..") {
                return Err(format!("`{f}` leaves project {project}"));
            }
            Ok(Entry::Project {
                project: project.clone(),
                git_ref: git_ref.clone(),
                file,
            })
        })
        .collect()
}

/// `value` with the variables it names replaced, as GitLab expands include paths; a name
/// it cannot know (a variable of the YAML, a project's CI/CD setting) is an error saying
/// how to give it.
fn with_variables(value: &str, source: &dyn Source) -> Result<String, String> {
    let expanded = expand_value(value, &|name| source.variable(name));
    match names(&expanded).into_iter().next() {
        None => Ok(expanded),
        Some(name) => Err(format!(
            "`{value}` names `{name}`, which is not a predefined variable: include paths see GitLab's predefined variables and the project's CI/CD variables, not those of the YAML (give a project variable with --var {name}=VALUE)"
        )),
    }
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
