//! The common subset of `.gitlab-ci.yml` that `exec` runs: top-level and job `variables`,
//! `default:`/top-level `image`, `services`, `before_script`/`script`/`after_script`,
//! `stage`/`stages`, `rules` with `if:`, `when`, YAML anchors and `extends`. Keys outside
//! the subset are reported, never silently ignored. Pure: text in, job definitions out.

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value};

use super::rules::{self, RuleError};

/// Top-level keys that are not jobs.
const GLOBAL_KEYS: &[&str] = &[
    "stages",
    "variables",
    "default",
    "image",
    "services",
    "before_script",
    "after_script",
    "include",
    "workflow",
    "cache",
];
/// Job keys `exec` acts on.
const JOB_KEYS: &[&str] = &[
    "stage",
    "image",
    "services",
    "variables",
    "before_script",
    "script",
    "after_script",
    "rules",
    "when",
    "extends",
];
/// Job keys that only matter on GitLab (artifacts upload, scheduling, environments); `exec`
/// names them and goes on.
const GITLAB_ONLY_KEYS: &[&str] = &[
    "tags",
    "artifacts",
    "cache",
    "needs",
    "dependencies",
    "environment",
    "resource_group",
    "retry",
    "timeout",
    "allow_failure",
    "interruptible",
    "coverage",
    "id_tokens",
    "only",
    "except",
    "parallel",
    "release",
    "secrets",
    "hooks",
    "inherit",
    "pages",
];
/// GitLab's limit on `extends` nesting.
const MAX_EXTENDS_DEPTH: usize = 11;

/// The pipeline file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// Not YAML, or not a mapping at the top.
    #[error("{0}")]
    Syntax(String),
    /// A key has a value of the wrong shape.
    #[error("job `{job}`: `{key}` {message}")]
    Shape {
        /// The job (or `(global)`).
        job: String,
        /// The key.
        key: String,
        /// What is expected.
        message: String,
    },
    /// `extends` names an unknown job, loops, or nests too deep.
    #[error("job `{job}`: extends {message}")]
    Extends {
        /// The job.
        job: String,
        /// What is wrong.
        message: String,
    },
    /// No such job.
    #[error("no job `{job}` in the pipeline; jobs: {available}")]
    UnknownJob {
        /// The requested job.
        job: String,
        /// The jobs present.
        available: String,
    },
    /// A rule's expression is malformed.
    #[error("job `{job}`: {source}")]
    Rule {
        /// The job.
        job: String,
        /// The expression error.
        source: RuleError,
    },
}

/// `when:` of a job or rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Run if earlier stages succeeded (the default).
    OnSuccess,
    /// Run whatever happened before.
    Always,
    /// Run only on failure of an earlier stage.
    OnFailure,
    /// Started by hand in GitLab.
    Manual,
    /// Started after a delay.
    Delayed,
    /// Never run.
    Never,
}

impl When {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "on_success" => When::OnSuccess,
            "always" => When::Always,
            "on_failure" => When::OnFailure,
            "manual" => When::Manual,
            "delayed" => When::Delayed,
            "never" => When::Never,
            _ => return None,
        })
    }
}

/// An `image:` of a job or service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDef {
    /// Image reference.
    pub name: String,
    /// `entrypoint:`.
    pub entrypoint: Option<Vec<String>>,
    /// `pull_policy:`.
    pub pull_policy: Vec<String>,
    /// `alias:` (services).
    pub alias: String,
    /// `command:` (services).
    pub command: Option<Vec<String>>,
    /// `variables:` (services).
    pub variables: Vec<(String, String)>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `if:`; `None` matches always.
    pub condition: Option<String>,
    /// `when:` when the rule matches.
    pub when: When,
    /// `variables:` added when the rule matches.
    pub variables: Vec<(String, String)>,
}

/// A job, resolved (`extends` and defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDef {
    /// Name.
    pub name: String,
    /// `stage:` (default `test`).
    pub stage: String,
    /// `image:`.
    pub image: Option<ImageDef>,
    /// `services:`.
    pub services: Vec<ImageDef>,
    /// Global then job variables, in order; later entries win.
    pub variables: Vec<(String, String)>,
    /// `before_script` + `script`, as GitLab merges them.
    pub script: Vec<String>,
    /// `after_script`.
    pub after_script: Vec<String>,
    /// `rules:`.
    pub rules: Option<Vec<Rule>>,
    /// `when:`.
    pub when: When,
    /// Keys present in the job that `exec` does not act on.
    pub ignored: Vec<String>,
}

/// Whether and how a job runs for a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It runs, with these extra variables from the matching rule.
    Run {
        /// `when:` in effect.
        when: When,
        /// Variables of the matching rule.
        variables: Vec<(String, String)>,
    },
    /// Its rules exclude it; the reason says which.
    Excluded(String),
}

/// A parsed pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// `stages:`.
    pub stages: Vec<String>,
    /// Visible jobs by name.
    pub jobs: BTreeMap<String, JobDef>,
    /// Top-level keys `exec` does not act on.
    pub ignored: Vec<String>,
}

impl Pipeline {
    /// Parses pipeline text.
    pub fn parse(text: &str) -> Result<Pipeline, PipelineError> {
        let mut root: Value =
            serde_norway::from_str(text).map_err(|e| PipelineError::Syntax(e.to_string()))?;
        root.apply_merge()
            .map_err(|e| PipelineError::Syntax(e.to_string()))?;
        let Value::Mapping(root) = root else {
            return Err(PipelineError::Syntax(
                "the pipeline file is not a YAML mapping".into(),
            ));
        };
        let global = |key: &str| root.get(key).filter(|v| !v.is_null());
        let stages = match global("stages") {
            Some(v) => strings(v, "(global)", "stages")?,
            None => ["build", "test", "deploy"].map(String::from).to_vec(),
        };
        let global_vars = match global("variables") {
            Some(v) => variables(v, "(global)")?,
            None => Vec::new(),
        };
        let default = match global("default") {
            Some(Value::Mapping(m)) => m.clone(),
            Some(_) => return Err(shape("(global)", "default", "must be a mapping")),
            None => Mapping::new(),
        };
        // The old top-level spelling of defaults.
        let mut defaults = Mapping::new();
        for key in ["image", "services", "before_script", "after_script"] {
            if let Some(v) = default.get(key).or_else(|| global(key)) {
                defaults.insert(Value::from(key), v.clone());
            }
        }
        let ignored: Vec<String> = ["include", "workflow", "cache"]
            .into_iter()
            .filter(|k| global(k).is_some())
            .map(String::from)
            .collect();

        let all: BTreeMap<String, Mapping> = root
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_mapping()?.clone())))
            .filter(|(k, _)| !GLOBAL_KEYS.contains(&k.as_str()))
            .collect();
        let mut jobs = BTreeMap::new();
        for name in all.keys().filter(|n| !n.starts_with('.')) {
            let resolved = resolve_extends(name, &all, 0, &mut Vec::new())?;
            jobs.insert(name.clone(), job(name, &resolved, &defaults, &global_vars)?);
        }
        Ok(Pipeline {
            stages,
            jobs,
            ignored,
        })
    }

    /// The job called `name`.
    pub fn job(&self, name: &str) -> Result<&JobDef, PipelineError> {
        self.jobs
            .get(name)
            .ok_or_else(|| PipelineError::UnknownJob {
                job: name.to_string(),
                available: self.jobs.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }
}

impl JobDef {
    /// Evaluates the job's rules (or `when:`) against `var`.
    pub fn decide(&self, var: &dyn Fn(&str) -> Option<String>) -> Result<Decision, PipelineError> {
        let Some(rules) = &self.rules else {
            return Ok(match self.when {
                When::Never => Decision::Excluded("its `when: never`".into()),
                when => Decision::Run {
                    when,
                    variables: Vec::new(),
                },
            });
        };
        for (index, rule) in rules.iter().enumerate() {
            let matched = match &rule.condition {
                None => true,
                Some(expr) => rules::evaluate(expr, var).map_err(|source| PipelineError::Rule {
                    job: self.name.clone(),
                    source,
                })?,
            };
            if matched {
                return Ok(match rule.when {
                    When::Never => {
                        Decision::Excluded(format!("rule {} (`when: never`)", index + 1))
                    }
                    when => Decision::Run {
                        when,
                        variables: rule.variables.clone(),
                    },
                });
            }
        }
        Ok(Decision::Excluded(format!(
            "no rule matched ({})",
            rules
                .iter()
                .filter_map(|r| r.condition.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )))
    }
}

fn shape(job: &str, key: &str, message: &str) -> PipelineError {
    PipelineError::Shape {
        job: job.to_string(),
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// A job mapping with everything it `extends` merged underneath it.
fn resolve_extends(
    name: &str,
    all: &BTreeMap<String, Mapping>,
    depth: usize,
    chain: &mut Vec<String>,
) -> Result<Mapping, PipelineError> {
    let err = |message: String| PipelineError::Extends {
        job: name.to_string(),
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
        Some(v) => strings(v, name, "extends")?,
    };
    chain.push(name.to_string());
    let mut merged = Mapping::new();
    for parent in parents {
        if !all.contains_key(&parent) {
            return Err(err(format!("names `{parent}`, which is not in the file")));
        }
        let resolved = resolve_extends(&parent, all, depth + 1, chain)?;
        deep_merge(&mut merged, &resolved);
    }
    chain.pop();
    deep_merge(&mut merged, own);
    merged.remove("extends");
    Ok(merged)
}

/// GitLab's `extends` merge: mappings merge key by key, everything else is replaced.
fn deep_merge(base: &mut Mapping, over: &Mapping) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => deep_merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn job(
    name: &str,
    m: &Mapping,
    defaults: &Mapping,
    global_vars: &[(String, String)],
) -> Result<JobDef, PipelineError> {
    let get = |key: &str| {
        m.get(key)
            .or_else(|| defaults.get(key))
            .filter(|v| !v.is_null())
    };
    let list = |key: &str| -> Result<Vec<String>, PipelineError> {
        get(key)
            .map(|v| script_lines(v, name, key))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let mut script = list("before_script")?;
    let own_script = m
        .get("script")
        .map(|v| script_lines(v, name, "script"))
        .transpose()?
        .unwrap_or_default();
    if own_script.is_empty() {
        return Err(shape(
            name,
            "script",
            "is missing: every job needs a script",
        ));
    }
    script.extend(own_script);
    let mut vars = global_vars.to_vec();
    if let Some(v) = m.get("variables") {
        vars.extend(variables(v, name)?);
    }
    let when = match m.get("when").and_then(Value::as_str) {
        Some(w) => When::parse(w).ok_or_else(|| {
            shape(
                name,
                "when",
                "must be on_success, always, on_failure, manual, delayed or never",
            )
        })?,
        None => When::OnSuccess,
    };
    let rules = m.get("rules").map(|v| parse_rules(v, name)).transpose()?;
    let services = match get("services") {
        Some(Value::Sequence(s)) => s
            .iter()
            .map(|v| image(v, name, "services"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(shape(name, "services", "must be a list")),
        None => Vec::new(),
    };
    let mut ignored = Vec::new();
    for key in m.keys().filter_map(Value::as_str) {
        if JOB_KEYS.contains(&key) {
            continue;
        }
        if GITLAB_ONLY_KEYS.contains(&key) {
            ignored.push(key.to_string());
        } else {
            ignored.push(format!("{key} (unknown)"));
        }
    }
    ignored.sort();
    Ok(JobDef {
        name: name.to_string(),
        stage: m
            .get("stage")
            .and_then(Value::as_str)
            .unwrap_or("test")
            .to_string(),
        image: get("image").map(|v| image(v, name, "image")).transpose()?,
        services,
        variables: vars,
        script,
        after_script: list("after_script")?,
        rules,
        when,
        ignored,
    })
}

fn parse_rules(v: &Value, job: &str) -> Result<Vec<Rule>, PipelineError> {
    let Value::Sequence(items) = v else {
        return Err(shape(job, "rules", "must be a list"));
    };
    items
        .iter()
        .map(|item| {
            let m = item
                .as_mapping()
                .ok_or_else(|| shape(job, "rules", "entries must be mappings"))?;
            for key in m.keys().filter_map(Value::as_str) {
                if !["if", "when", "variables", "allow_failure"].contains(&key) {
                    return Err(shape(
                        job,
                        "rules",
                        &format!(
                            "entry key `{key}` is not supported by exec (if, when, variables)"
                        ),
                    ));
                }
            }
            Ok(Rule {
                condition: m.get("if").and_then(Value::as_str).map(str::to_string),
                when: match m.get("when").and_then(Value::as_str) {
                    Some(w) => When::parse(w).ok_or_else(|| {
                        shape(
                            job,
                            "rules",
                            "`when` must be on_success, always, manual, delayed or never",
                        )
                    })?,
                    None => When::OnSuccess,
                },
                variables: m
                    .get("variables")
                    .map(|v| variables(v, job))
                    .transpose()?
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn image(v: &Value, job: &str, key: &str) -> Result<ImageDef, PipelineError> {
    match v {
        Value::String(name) => Ok(ImageDef {
            name: name.clone(),
            ..Default::default()
        }),
        Value::Mapping(m) => Ok(ImageDef {
            name: m
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| shape(job, key, "needs a `name`"))?
                .to_string(),
            entrypoint: m
                .get("entrypoint")
                .map(|v| strings(v, job, key))
                .transpose()?,
            command: m.get("command").map(|v| strings(v, job, key)).transpose()?,
            pull_policy: m
                .get("pull_policy")
                .map(|v| strings(v, job, key))
                .transpose()?
                .unwrap_or_default(),
            alias: m
                .get("alias")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            variables: m
                .get("variables")
                .map(|v| variables(v, job))
                .transpose()?
                .unwrap_or_default(),
        }),
        _ => Err(shape(
            job,
            key,
            "must be an image name or a mapping with `name`",
        )),
    }
}

/// A string or a list of strings.
fn strings(v: &Value, job: &str, key: &str) -> Result<Vec<String>, PipelineError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Sequence(items) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| shape(job, key, "must contain strings")))
            .collect(),
        _ => Err(shape(job, key, "must be a string or a list of strings")),
    }
}

/// Script lines: strings or lists, nested lists (from anchors) flattened.
fn script_lines(v: &Value, job: &str, key: &str) -> Result<Vec<String>, PipelineError> {
    match v {
        Value::Sequence(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(script_lines(item, job, key)?);
            }
            Ok(out)
        }
        other => scalar(other)
            .map(|s| vec![s])
            .ok_or_else(|| shape(job, key, "must be a string or a list of strings")),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `KEY: value` or `KEY: {value: …, description: …}`.
fn variables(v: &Value, job: &str) -> Result<Vec<(String, String)>, PipelineError> {
    let Value::Mapping(m) = v else {
        return Err(shape(job, "variables", "must be a mapping"));
    };
    m.iter()
        .map(|(k, v)| {
            let key = k
                .as_str()
                .ok_or_else(|| shape(job, "variables", "keys must be strings"))?;
            let value = match v {
                Value::Mapping(inner) => inner.get("value").and_then(scalar),
                Value::Null => Some(String::new()),
                other => scalar(other),
            }
            .ok_or_else(|| {
                shape(
                    job,
                    "variables",
                    &format!("`{key}` must be a string, number or {{value: …}}"),
                )
            })?;
            Ok((key.to_string(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../tests/fixtures/seed.gitlab-ci.yml");

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_seed_pipeline() {
        let p = Pipeline::parse(SEED).unwrap();
        assert_eq!(p.stages, ["build", "deploy"]);
        let deploy = p.job("task-deploy").unwrap();
        assert_eq!(deploy.stage, "deploy");
        assert_eq!(deploy.image.as_ref().unwrap().name, "docker:latest");
        assert_eq!(deploy.services[0].name, "docker:dind");
        assert_eq!(
            deploy.variables,
            [(
                "AWS_DEFAULT_REGION".to_string(),
                "ap-northeast-1".to_string()
            )]
        );
        assert!(matches!(
            deploy
                .decide(&vars(&[("CI_COMMIT_TAG", "v1.0.0")]))
                .unwrap(),
            Decision::Run { .. }
        ));
        assert!(matches!(
            deploy
                .decide(&vars(&[("CI_COMMIT_BRANCH", "main")]))
                .unwrap(),
            Decision::Excluded(_)
        ));
        let err = p.job("deploy").unwrap_err().to_string();
        assert!(err.contains("image-build, task-deploy"), "{err}");
    }

    #[test]
    fn anchors_extends_defaults_and_variables() {
        let text = r#"
default:
  image: base:1
  before_script: [echo default-before]
variables:
  GLOBAL: g
  OVERRIDE: global
.common: &common
  variables:
    OVERRIDE: template
    FROM_TEMPLATE: t
  after_script:
    - echo after
.setup: &setup
  - echo one
  - echo two
.deep:
  extends: .common
  tags: [docker]
job:
  extends: .deep
  variables:
    OWN: { value: "own", description: "x" }
  script:
    - *setup
    - echo three
other:
  <<: *common
  image: { name: custom:2, entrypoint: [""], pull_policy: [never] }
  before_script: []
  script: echo solo
  artifacts: { paths: [out] }
  frobnicate: true
"#;
        let p = Pipeline::parse(text).unwrap();
        let job = p.job("job").unwrap();
        assert_eq!(
            job.script,
            ["echo default-before", "echo one", "echo two", "echo three"]
        );
        assert_eq!(job.after_script, ["echo after"]);
        assert_eq!(job.image.as_ref().unwrap().name, "base:1");
        let var = |k: &str| {
            job.variables
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            (
                var("GLOBAL"),
                var("OVERRIDE"),
                var("FROM_TEMPLATE"),
                var("OWN")
            ),
            (Some("g"), Some("template"), Some("t"), Some("own"))
        );
        assert_eq!(job.ignored, ["tags"]);
        let other = p.job("other").unwrap();
        assert_eq!(other.script, ["echo solo"]);
        assert_eq!(other.after_script, ["echo after"]);
        let image = other.image.as_ref().unwrap();
        assert_eq!(
            (
                image.name.as_str(),
                image.entrypoint.clone(),
                image.pull_policy.clone()
            ),
            (
                "custom:2",
                Some(vec![String::new()]),
                vec!["never".to_string()]
            )
        );
        assert_eq!(other.ignored, ["artifacts", "frobnicate (unknown)"]);
        assert!(!p.jobs.contains_key(".common"));
    }

    #[test]
    fn rules_when_and_rule_variables() {
        let text = r#"
deploy:
  script: [echo hi]
  rules:
    - if: $CI_COMMIT_BRANCH == "wip"
      when: never
    - if: $CI_COMMIT_TAG =~ /^v\d+/
      variables: { TARGET: prod }
    - if: $CI_COMMIT_BRANCH
      when: manual
manual-only:
  script: [echo hi]
  when: never
"#;
        let p = Pipeline::parse(text).unwrap();
        let d = p.job("deploy").unwrap();
        assert_eq!(
            d.decide(&vars(&[("CI_COMMIT_TAG", "v2.0.0")])).unwrap(),
            Decision::Run {
                when: When::OnSuccess,
                variables: vec![("TARGET".into(), "prod".into())]
            }
        );
        assert!(
            matches!(d.decide(&vars(&[("CI_COMMIT_BRANCH", "wip")])).unwrap(), Decision::Excluded(r) if r.contains("rule 1"))
        );
        assert!(matches!(
            d.decide(&vars(&[("CI_COMMIT_BRANCH", "main")])).unwrap(),
            Decision::Run {
                when: When::Manual,
                ..
            }
        ));
        assert!(
            matches!(d.decide(&vars(&[])).unwrap(), Decision::Excluded(r) if r.contains("no rule matched"))
        );
        assert!(matches!(
            p.job("manual-only").unwrap().decide(&vars(&[])).unwrap(),
            Decision::Excluded(_)
        ));
    }

    #[test]
    fn malformed_files_are_named_errors() {
        assert!(matches!(
            Pipeline::parse("a: [").unwrap_err(),
            PipelineError::Syntax(_)
        ));
        assert!(matches!(
            Pipeline::parse("- a").unwrap_err(),
            PipelineError::Syntax(_)
        ));
        let err = Pipeline::parse("a:\n  extends: .missing\n  script: x").unwrap_err();
        assert!(err.to_string().contains(".missing"), "{err}");
        let err = Pipeline::parse(
            ".a:\n  extends: .b\n.b:\n  extends: .a\nj:\n  extends: .a\n  script: x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("loops"), "{err}");
        let err = Pipeline::parse("j:\n  stage: test").unwrap_err();
        assert!(err.to_string().contains("script"), "{err}");
        let err = Pipeline::parse("j:\n  script: x\n  rules:\n    - changes: [a]").unwrap_err();
        assert!(err.to_string().contains("changes"), "{err}");
        let p = Pipeline::parse("include: x.yml\nj:\n  script: x\n  rules:\n    - if: '$A = 1'")
            .unwrap();
        assert_eq!(p.ignored, ["include"]);
        assert!(p.job("j").unwrap().decide(&vars(&[])).is_err());
    }
}
