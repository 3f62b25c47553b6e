//! `only:` and `except:`, the older way to choose a job's pipelines, evaluated as GitLab
//! evaluates them: `only:` puts the job in when every key it has holds (any of its refs,
//! any of its variable expressions, any of its changes); `except:` leaves it out when any
//! of its keys holds. A job without `only:`, `except:` or `rules:` has `only: [branches,
//! tags]`. Refs are `branches`, `tags`, a pipeline source (`pushes`, `web`, `schedules`,
//! `merge_requests`, …), a `/regex/` or a ref name, each optionally `@group/project`.

use serde_norway::Value;

use super::clauses::{changes_hold, Changes, RuleContext};
use super::values::{shape, strings};
use super::PipelineError;
use crate::exec::rules;

/// Pipeline sources a ref entry can name, with the `CI_PIPELINE_SOURCE` each stands for.
const SOURCES: &[(&str, &str)] = &[
    ("api", "api"),
    ("chat", "chat"),
    ("external", "external"),
    ("external_pull_requests", "external_pull_request_event"),
    ("merge_requests", "merge_request_event"),
    ("pipelines", "pipeline"),
    ("pushes", "push"),
    ("schedules", "schedule"),
    ("triggers", "trigger"),
    ("web", "web"),
];

/// One `only:` or `except:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `refs:` (or the list form).
    pub refs: Vec<String>,
    /// `variables:` expressions.
    pub variables: Vec<String>,
    /// `changes:`.
    pub changes: Option<Changes>,
    /// `kubernetes: active`: exec has no cluster integration, so it never holds.
    pub kubernetes: bool,
}

/// Which of the two a [`Policy`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `only:`.
    Only,
    /// `except:`.
    Except,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Only => "only",
            Kind::Except => "except",
        }
    }
}

impl Policy {
    /// Reads `only:` or `except:` of `job`.
    pub fn parse(v: &Value, job: &str, kind: Kind) -> Result<Policy, PipelineError> {
        let key = kind.key();
        let Value::Mapping(m) = v else {
            return Ok(Policy {
                refs: strings(v, job, key)?,
                variables: Vec::new(),
                changes: None,
                kubernetes: false,
            });
        };
        for k in m.keys().filter_map(Value::as_str) {
            if !["refs", "variables", "changes", "kubernetes"].contains(&k) {
                return Err(shape(
                    job,
                    key,
                    "takes refs, variables, changes and kubernetes",
                ));
            }
        }
        let list = |k: &str| -> Result<Vec<String>, PipelineError> {
            m.get(k)
                .map(|v| strings(v, job, key))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let changes = match m.get("changes") {
            None => None,
            Some(Value::Mapping(c)) => Some(Changes {
                paths: c
                    .get("paths")
                    .map(|p| strings(p, job, key))
                    .transpose()?
                    .unwrap_or_default(),
                compare_to: c
                    .get("compare_to")
                    .and_then(Value::as_str)
                    .map(String::from),
            }),
            Some(other) => Some(Changes {
                paths: strings(other, job, key)?,
                compare_to: None,
            }),
        };
        Ok(Policy {
            refs: list("refs")?,
            variables: list("variables")?,
            changes,
            kubernetes: m.get("kubernetes").is_some(),
        })
    }

    /// Whether the job is in the pipeline as far as this policy goes, and if not which
    /// key keeps it out.
    pub fn admits(
        &self,
        kind: Kind,
        ctx: &RuleContext,
        job: &str,
    ) -> Result<Result<(), String>, PipelineError> {
        let mut held = Vec::new();
        let mut failed = Vec::new();
        if !self.refs.is_empty() {
            let mut holds = false;
            for entry in &self.refs {
                holds |=
                    ref_matches(entry, ctx).map_err(|message| shape(job, kind.key(), &message))?;
            }
            let what = format!("refs: {}", self.refs.join(", "));
            if holds {
                held.push(what)
            } else {
                failed.push(what)
            }
        }
        if !self.variables.is_empty() {
            let mut holds = false;
            for expr in &self.variables {
                holds |= rules::evaluate(expr, ctx.var).map_err(|source| PipelineError::Rule {
                    job: job.to_string(),
                    source,
                })?;
            }
            let what = format!("variables: {}", self.variables.join(", "));
            if holds {
                held.push(what)
            } else {
                failed.push(what)
            }
        }
        if let Some(changes) = &self.changes {
            let what = format!("changes: {}", changes.paths.join(", "));
            if changes_hold(changes, ctx, job)? {
                held.push(what)
            } else {
                failed.push(what)
            }
        }
        if self.kubernetes {
            failed.push("kubernetes: active (exec has no cluster integration)".into());
        }
        Ok(match kind {
            Kind::Only => match failed.first() {
                None => Ok(()),
                Some(what) => Err(format!("only: {what} does not hold")),
            },
            Kind::Except => match held.first() {
                None => Ok(()),
                Some(what) => Err(format!("except: {what} holds")),
            },
        })
    }
}

/// Whether one `refs:` entry matches the pipeline; a malformed `/regex/` is an error.
fn ref_matches(entry: &str, ctx: &RuleContext) -> Result<bool, String> {
    let var = |name: &str| (ctx.var)(name).unwrap_or_default();
    let (pattern, project) = match entry.split_once('@') {
        Some((pattern, project)) => (pattern, Some(project)),
        None => (entry, None),
    };
    if let Some(project) = project {
        let path = var("CI_PROJECT_PATH");
        if !rules::pattern_match(project, &path).unwrap_or(Ok(project == path))? {
            return Ok(false);
        }
    }
    let is_tag = (ctx.var)("CI_COMMIT_TAG").is_some();
    match pattern {
        "branches" => return Ok(!is_tag),
        "tags" => return Ok(is_tag),
        _ => {}
    }
    if let Some((_, source)) = SOURCES.iter().find(|(name, _)| *name == pattern) {
        return Ok(var("CI_PIPELINE_SOURCE") == *source);
    }
    let ref_name = var("CI_COMMIT_REF_NAME");
    rules::pattern_match(pattern, &ref_name).unwrap_or(Ok(pattern == ref_name))
}
