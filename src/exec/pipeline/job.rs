//! One job's mapping (after `include:`, `extends:` and `!reference`) read into a [`JobDef`]:
//! the keys `exec` acts on, those only GitLab acts on (named, the job still runs) and those
//! that keep the job from running here (an error for that job alone).

use serde_norway::{Mapping, Value};

use super::decide::{parse_rules, When};
use super::matrix::{matrix, Combination, Parallel};
use super::only_except::{Kind, Policy};
use super::values::{duration, flattened, scalar, script_lines, shape, strings, variables};
use super::{JobDef, PipelineError, VarDef};

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
    "only",
    "except",
    "when",
    "needs",
    "dependencies",
    "artifacts",
    "cache",
    "timeout",
    "parallel",
    "allow_failure",
    "hooks",
    "inherit",
];
/// Job keys only GitLab acts on (scheduling, environments, runner choice, reports); the
/// job runs without them and `exec` names them.
const GITLAB_ONLY_KEYS: &[&str] = &[
    "tags",
    "environment",
    "resource_group",
    "retry",
    "interruptible",
    "coverage",
    "id_tokens",
    "release",
    "secrets",
    "pages",
    "start_in",
    "identity",
    "dast_configuration",
    "manual_confirmation",
    "publish",
];
/// Job keys that make a job something other than a script to run here.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    (
        "trigger",
        "a trigger job starts a downstream pipeline on GitLab",
    ),
    ("run", "CI/CD steps are not run by exec"),
];
/// `default:` keys a job inherits here; the others of GitLab's list are named as not acted
/// on by [`default_not_acted_on`].
pub(super) const DEFAULT_KEYS: &[&str] = &[
    "image",
    "services",
    "before_script",
    "after_script",
    "cache",
    "artifacts",
    "timeout",
    "hooks",
];

/// An `image:` of a job or service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDef {
    /// Image reference, as written (the runner expands variables in it).
    pub name: String,
    /// `entrypoint:`.
    pub entrypoint: Option<Vec<String>>,
    /// `pull_policy:`.
    pub pull_policy: Vec<String>,
    /// `docker: user:`.
    pub user: Option<String>,
    /// `alias:` (services).
    pub alias: String,
    /// `command:` (services).
    pub command: Option<Vec<String>>,
    /// `variables:` (services).
    pub variables: Vec<(String, String)>,
}

/// A `cache:` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKey {
    /// A key as written (the runner expands variables in it).
    Literal(String),
    /// `key: {files: […], prefix: …}`: derived from the commits that last changed the files.
    Files {
        /// The files.
        files: Vec<String>,
        /// `prefix:`.
        prefix: Option<String>,
    },
}

/// One `cache:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDef {
    /// `key:` (GitLab's default is `default`).
    pub key: CacheKey,
    /// `paths:`.
    pub paths: Vec<String>,
    /// `policy:` (empty: pull-push).
    pub policy: String,
    /// `when:` (empty: on_success).
    pub when: String,
    /// `untracked:`.
    pub untracked: bool,
}

/// `artifacts:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArtifactsDef {
    /// `name:`.
    pub name: String,
    /// `paths:`.
    pub paths: Vec<String>,
    /// `when:` (empty: on_success).
    pub when: String,
    /// `expire_in:`.
    pub expire_in: String,
    /// `reports: dotenv:` files.
    pub dotenv: Vec<String>,
}

/// One `needs:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The job (its name in the file; all its parallel instances unless `matrix` narrows).
    pub job: String,
    /// `artifacts:` (default true): download its artifacts and dotenv variables.
    pub artifacts: bool,
    /// `optional:`: no error when the job is not in the pipeline.
    pub optional: bool,
    /// `parallel: matrix:`: only these instances.
    pub matrix: Option<Vec<Combination>>,
}

/// `allow_failure:` of a job or rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowFailure {
    /// A failure fails the pipeline.
    No,
    /// A failure is a warning.
    Yes,
    /// A failure with one of these exit codes is a warning.
    ExitCodes(Vec<i32>),
}

impl AllowFailure {
    /// Whether a failure with `exit_code` is allowed.
    pub fn allows(&self, exit_code: i32) -> bool {
        match self {
            AllowFailure::No => false,
            AllowFailure::Yes => true,
            AllowFailure::ExitCodes(codes) => codes.contains(&exit_code),
        }
    }
}

/// The `default:` keys (and their old top-level spelling) a job may inherit.
pub(super) struct Defaults(pub Mapping);

/// Reads the job `name` from its mapping `m`; its `parallel:`, if any, comes back beside it.
pub(super) fn parse(
    name: &str,
    m: &Mapping,
    defaults: &Defaults,
    global_vars: &[VarDef],
) -> Result<(JobDef, Option<Parallel>), PipelineError> {
    for (key, why) in UNSUPPORTED_KEYS {
        if m.contains_key(*key) {
            return Err(PipelineError::Unsupported {
                job: name.to_string(),
                key: key.to_string(),
                message: why.to_string(),
            });
        }
    }
    if m.contains_key("rules") {
        for key in ["only", "except"] {
            if m.contains_key(key) {
                return Err(PipelineError::Refused {
                    job: name.to_string(),
                    message: format!("config key may not be used with `rules`: {key}"),
                });
            }
        }
    }
    let inherit = Inherit::parse(m.get("inherit"), name)?;
    let get = |key: &str| {
        m.get(key)
            .or_else(|| inherit.default(key).then(|| defaults.0.get(key)).flatten())
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
    let mut vars: Vec<VarDef> = global_vars
        .iter()
        .filter(|v| inherit.variable(&v.key))
        .cloned()
        .collect();
    let globals = vars.len();
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
    let services = match get("services") {
        Some(Value::Sequence(s)) => s
            .iter()
            .map(|v| image(v, name, "services"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(shape(name, "services", "must be a list")),
        None => Vec::new(),
    };
    let mut not_acted_on = Vec::new();
    for key in m.keys().filter_map(Value::as_str) {
        if JOB_KEYS.contains(&key) {
            continue;
        }
        if GITLAB_ONLY_KEYS.contains(&key) {
            not_acted_on.push(key.to_string());
        } else {
            not_acted_on.push(format!("{key} (unknown)"));
        }
    }
    let cache = get("cache")
        .map(|v| caches(v, name, &mut not_acted_on))
        .transpose()?
        .unwrap_or_default();
    let artifacts = get("artifacts")
        .map(|v| artifacts(v, name, &mut not_acted_on))
        .transpose()?;
    let timeout = get("timeout")
        .map(|v| {
            scalar(v)
                .as_deref()
                .and_then(duration)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    shape(
                        name,
                        "timeout",
                        "must be a duration such as `1h 30m` or `90 minutes`",
                    )
                })
        })
        .transpose()?;
    let pre_get_sources = match get("hooks") {
        Some(Value::Mapping(h)) => {
            for key in h.keys().filter_map(Value::as_str) {
                if key != "pre_get_sources_script" {
                    not_acted_on.push(format!("hooks: {key} (unknown)"));
                }
            }
            h.get("pre_get_sources_script")
                .map(|v| script_lines(v, name, "hooks"))
                .transpose()?
                .unwrap_or_default()
        }
        Some(_) => return Err(shape(name, "hooks", "must be a mapping")),
        None => Vec::new(),
    };
    let image = get("image").map(|v| image(v, name, "image")).transpose()?;
    not_acted_on.sort();
    let def = JobDef {
        name: name.to_string(),
        stage: m
            .get("stage")
            .and_then(Value::as_str)
            .unwrap_or("test")
            .to_string(),
        image,
        services,
        variables: vars,
        globals,
        script,
        after_script: list("after_script")?,
        pre_get_sources,
        rules: m.get("rules").map(|v| parse_rules(v, name)).transpose()?,
        only: m
            .get("only")
            .map(|v| Policy::parse(v, name, Kind::Only))
            .transpose()?,
        except: m
            .get("except")
            .map(|v| Policy::parse(v, name, Kind::Except))
            .transpose()?,
        when,
        // A manual job may fail unless it says otherwise; under `rules:` it may not.
        allow_failure: match m.get("allow_failure") {
            None if when == When::Manual && !m.contains_key("rules") => AllowFailure::Yes,
            v => allow_failure(v, name)?,
        },
        timeout,
        cache,
        artifacts,
        needs: m.get("needs").map(|v| needs(v, name)).transpose()?,
        dependencies: m
            .get("dependencies")
            .map(|v| strings(v, name, "dependencies"))
            .transpose()?,
        instance: None,
        not_acted_on,
    };
    let parallel = m
        .get("parallel")
        .map(|v| Parallel::parse(v, name))
        .transpose()?;
    Ok((def, parallel))
}

/// The `default:` keys (and old top-level keys) GitLab has that `exec` does not act on.
pub(super) fn default_not_acted_on(default: &Mapping) -> Vec<String> {
    default
        .keys()
        .filter_map(Value::as_str)
        .filter(|k| !DEFAULT_KEYS.contains(k))
        .map(|k| match GITLAB_ONLY_KEYS.contains(&k) {
            true => format!("default: {k}"),
            false => format!("default: {k} (unknown)"),
        })
        .collect()
}

/// `inherit:`: which `default:` keys and global variables the job takes.
struct Inherit {
    default: Selection,
    variables: Selection,
}

enum Selection {
    All,
    None,
    Only(Vec<String>),
}

impl Selection {
    fn parse(v: Option<&Value>, job: &str) -> Result<Self, PipelineError> {
        Ok(match v {
            None | Some(Value::Bool(true)) => Selection::All,
            Some(Value::Bool(false)) => Selection::None,
            Some(other) => Selection::Only(strings(other, job, "inherit")?),
        })
    }

    fn takes(&self, key: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::None => false,
            Selection::Only(keys) => keys.iter().any(|k| k == key),
        }
    }
}

impl Inherit {
    fn parse(v: Option<&Value>, job: &str) -> Result<Self, PipelineError> {
        let m = match v {
            None => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(_) => return Err(shape(job, "inherit", "must be a mapping")),
        };
        Ok(Inherit {
            default: Selection::parse(m.and_then(|m| m.get("default")), job)?,
            variables: Selection::parse(m.and_then(|m| m.get("variables")), job)?,
        })
    }

    fn default(&self, key: &str) -> bool {
        self.default.takes(key)
    }

    fn variable(&self, key: &str) -> bool {
        self.variables.takes(key)
    }
}

fn allow_failure(v: Option<&Value>, job: &str) -> Result<AllowFailure, PipelineError> {
    Ok(match v {
        None | Some(Value::Bool(false)) => AllowFailure::No,
        Some(Value::Bool(true)) => AllowFailure::Yes,
        Some(Value::Mapping(m)) => {
            let codes = match m.get("exit_codes") {
                Some(Value::Sequence(items)) => items.iter().map(Value::as_i64).collect(),
                Some(Value::Number(n)) => n.as_i64().map(|n| vec![n]),
                _ => None,
            }
            .and_then(|codes: Vec<i64>| {
                codes
                    .into_iter()
                    .map(|c| i32::try_from(c).ok())
                    .collect::<Option<Vec<i32>>>()
            })
            .ok_or_else(|| shape(job, "allow_failure", "`exit_codes` must be exit codes"))?;
            AllowFailure::ExitCodes(codes)
        }
        Some(_) => {
            return Err(shape(
                job,
                "allow_failure",
                "must be true, false or {exit_codes: […]}",
            ))
        }
    })
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
            user: m.get("docker").and_then(|d| d.get("user")).and_then(scalar),
            alias: m
                .get("alias")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            variables: m
                .get("variables")
                .map(|v| variables(v, job))
                .transpose()?
                .unwrap_or_default()
                .into_iter()
                .map(|v| (v.key, v.value))
                .collect(),
        }),
        _ => Err(shape(
            job,
            key,
            "must be an image name or a mapping with `name`",
        )),
    }
}

fn caches(
    v: &Value,
    job: &str,
    not_acted_on: &mut Vec<String>,
) -> Result<Vec<CacheDef>, PipelineError> {
    let entries: Vec<&Value> = match v {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    entries
        .into_iter()
        .map(|entry| {
            let Value::Mapping(m) = entry else {
                return Err(shape(job, "cache", "entries must be mappings"));
            };
            for key in m.keys().filter_map(Value::as_str) {
                if !["key", "paths", "policy", "when", "untracked"].contains(&key) {
                    not_acted_on.push(format!("cache: {key}"));
                }
            }
            let text = |key: &str| m.get(key).and_then(scalar).unwrap_or_default();
            let key = match m.get("key") {
                None | Some(Value::Null) => CacheKey::Literal("default".into()),
                Some(Value::Mapping(k)) => CacheKey::Files {
                    files: k
                        .get("files")
                        .map(|f| strings(f, job, "cache"))
                        .transpose()?
                        .filter(|f| !f.is_empty())
                        .ok_or_else(|| shape(job, "cache", "`key` needs `files`"))?,
                    prefix: k.get("prefix").and_then(scalar),
                },
                Some(other) => CacheKey::Literal(
                    scalar(other).ok_or_else(|| shape(job, "cache", "`key` must be a string"))?,
                ),
            };
            Ok(CacheDef {
                key,
                paths: m
                    .get("paths")
                    .map(|p| strings(p, job, "cache"))
                    .transpose()?
                    .unwrap_or_default(),
                policy: text("policy"),
                when: text("when"),
                untracked: m.get("untracked").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

fn artifacts(
    v: &Value,
    job: &str,
    not_acted_on: &mut Vec<String>,
) -> Result<ArtifactsDef, PipelineError> {
    let Value::Mapping(m) = v else {
        return Err(shape(job, "artifacts", "must be a mapping"));
    };
    for key in m.keys().filter_map(Value::as_str) {
        if !["name", "paths", "when", "expire_in", "reports"].contains(&key) {
            not_acted_on.push(format!("artifacts: {key}"));
        }
    }
    let mut dotenv = Vec::new();
    match m.get("reports") {
        None => {}
        Some(Value::Mapping(reports)) => {
            for (k, v) in reports {
                match k.as_str() {
                    Some("dotenv") => dotenv = strings(v, job, "artifacts")?,
                    Some(other) => not_acted_on.push(format!("artifacts: reports: {other}")),
                    None => return Err(shape(job, "artifacts", "report names must be strings")),
                }
            }
        }
        Some(_) => return Err(shape(job, "artifacts", "`reports` must be a mapping")),
    }
    let text = |key: &str| m.get(key).and_then(scalar).unwrap_or_default();
    Ok(ArtifactsDef {
        name: text("name"),
        paths: m
            .get("paths")
            .map(|p| strings(p, job, "artifacts"))
            .transpose()?
            .unwrap_or_default(),
        when: text("when"),
        expire_in: text("expire_in"),
        dotenv,
    })
}

fn needs(v: &Value, job: &str) -> Result<Vec<Need>, PipelineError> {
    let Value::Sequence(items) = v else {
        return Err(shape(job, "needs", "must be a list"));
    };
    flattened(items)
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Ok(Need {
                job: s.clone(),
                artifacts: true,
                optional: false,
                matrix: None,
            }),
            Value::Mapping(m) => {
                for key in ["project", "pipeline"] {
                    if m.contains_key(key) {
                        return Err(PipelineError::Unsupported {
                            job: job.to_string(),
                            key: format!("needs: {key}"),
                            message: "artifacts of other projects and pipelines are on GitLab"
                                .into(),
                        });
                    }
                }
                let matrix = match m.get("parallel") {
                    None => None,
                    Some(Value::Mapping(p)) => match p.get("matrix") {
                        Some(Value::Sequence(entries)) => Some(matrix(entries, job)?),
                        _ => return Err(shape(job, "needs", "`parallel` needs a `matrix` list")),
                    },
                    Some(_) => return Err(shape(job, "needs", "`parallel` must be a mapping")),
                };
                Ok(Need {
                    job: m
                        .get("job")
                        .and_then(Value::as_str)
                        .ok_or_else(|| shape(job, "needs", "entries need a `job`"))?
                        .to_string(),
                    artifacts: m.get("artifacts").and_then(Value::as_bool).unwrap_or(true),
                    optional: m.get("optional").and_then(Value::as_bool).unwrap_or(false),
                    matrix,
                })
            }
            _ => Err(shape(job, "needs", "entries must be job names or mappings")),
        })
        .collect()
}
