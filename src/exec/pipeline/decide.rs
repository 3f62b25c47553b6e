//! Whether a job is in the pipeline for a ref: `rules:` (`if:`, `changes:`, `exists:`,
//! `when:`, `allow_failure:`, `variables:`), else `only:`/`except:`, else the job's own
//! `when:`. The clauses that ask git are `clauses.rs`.

use serde_norway::Value;

use super::clauses::{changes_hold, exists_hold};
use super::clauses::{Changes, RuleContext};
use super::only_except::Kind;
use super::values::{flattened, shape, strings, variables};
use super::{AllowFailure, JobDef, PipelineError, VarDef};
use crate::exec::rules;

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
    /// Reads a `when:` value.
    pub fn parse(s: &str) -> Option<Self> {
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

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `if:`.
    pub condition: Option<String>,
    /// `changes:`.
    pub changes: Option<Changes>,
    /// `exists:` path patterns.
    pub exists: Option<Vec<String>>,
    /// `when:`; `None`: the job's own.
    pub when: Option<When>,
    /// `allow_failure:`; `None`: the job's own.
    pub allow_failure: Option<bool>,
    /// `variables:` added when the rule matches.
    pub variables: Vec<VarDef>,
}

/// Whether and how a job runs for a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It runs.
    Run {
        /// `when:` in effect.
        when: When,
        /// `allow_failure:` in effect.
        allow_failure: AllowFailure,
        /// Variables of the matching rule.
        variables: Vec<VarDef>,
    },
    /// Its rules exclude it; the reason says which.
    Excluded(String),
}

impl JobDef {
    /// Evaluates the job's rules (or `when:`) in `ctx`.
    pub fn decide(&self, ctx: &RuleContext) -> Result<Decision, PipelineError> {
        let Some(rules) = &self.rules else {
            let policies = [(Kind::Only, &self.only), (Kind::Except, &self.except)];
            for (kind, policy) in policies {
                if let Some(policy) = policy {
                    if let Err(why) = policy.admits(kind, ctx, &self.name)? {
                        return Ok(Decision::Excluded(why));
                    }
                }
            }
            return Ok(match self.when {
                When::Never => Decision::Excluded("its `when: never`".into()),
                when => Decision::Run {
                    when,
                    allow_failure: self.allow_failure.clone(),
                    variables: Vec::new(),
                },
            });
        };
        for (index, rule) in rules.iter().enumerate() {
            if self.matches(rule, ctx)? {
                return Ok(match rule.when.unwrap_or(self.when) {
                    When::Never => {
                        Decision::Excluded(format!("rule {} (`when: never`)", index + 1))
                    }
                    when => Decision::Run {
                        when,
                        allow_failure: match rule.allow_failure {
                            Some(true) => AllowFailure::Yes,
                            Some(false) => AllowFailure::No,
                            None => self.allow_failure.clone(),
                        },
                        variables: rule.variables.clone(),
                    },
                });
            }
        }
        if rules.is_empty() {
            return Ok(Decision::Excluded(
                "`rules: []` has no rule that could match".into(),
            ));
        }
        Ok(Decision::Excluded(format!(
            "no rule matched ({})",
            rules.iter().map(describe).collect::<Vec<_>>().join("; ")
        )))
    }

    /// Every clause of `rule` holds.
    fn matches(&self, rule: &Rule, ctx: &RuleContext) -> Result<bool, PipelineError> {
        if let Some(expr) = &rule.condition {
            let holds = rules::evaluate(expr, ctx.var).map_err(|source| PipelineError::Rule {
                job: self.name.clone(),
                source,
            })?;
            if !holds {
                return Ok(false);
            }
        }
        if let Some(changes) = &rule.changes {
            if !changes_hold(changes, ctx, &self.name)? {
                return Ok(false);
            }
        }
        if let Some(exists) = &rule.exists {
            if !exists_hold(exists, ctx, &self.name)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// A rule as a reason reads it.
fn describe(rule: &Rule) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &rule.condition {
        parts.push(c.clone());
    }
    if let Some(c) = &rule.changes {
        parts.push(format!("changes: {}", c.paths.join(", ")));
    }
    if let Some(e) = &rule.exists {
        parts.push(format!("exists: {}", e.join(", ")));
    }
    match parts.is_empty() {
        true => "(always)".into(),
        false => parts.join(" && "),
    }
}

/// Reads `rules:` of `job` (nested lists from `!reference` flattened).
pub(super) fn parse_rules(v: &Value, job: &str) -> Result<Vec<Rule>, PipelineError> {
    let Value::Sequence(items) = v else {
        return Err(shape(job, "rules", "must be a list"));
    };
    flattened(items)
        .into_iter()
        .map(|item| parse_rule(item, job))
        .collect()
}

fn parse_rule(item: &Value, job: &str) -> Result<Rule, PipelineError> {
    let m = item
        .as_mapping()
        .ok_or_else(|| shape(job, "rules", "entries must be mappings"))?;
    for key in m.keys().filter_map(Value::as_str) {
        if ![
            "if",
            "changes",
            "exists",
            "when",
            "variables",
            "allow_failure",
        ]
        .contains(&key)
        {
            return Err(PipelineError::Unsupported {
                job: job.to_string(),
                key: format!("rules: {key}"),
                message: "exec evaluates if, changes, exists, when, allow_failure and variables"
                    .into(),
            });
        }
    }
    let paths = |v: &Value, key: &str| -> Result<(Vec<String>, Option<String>), PipelineError> {
        match v {
            Value::Mapping(inner) => {
                for k in inner.keys().filter_map(Value::as_str) {
                    if !["paths", "compare_to"].contains(&k) {
                        return Err(PipelineError::Unsupported {
                            job: job.to_string(),
                            key: format!("rules: {key}: {k}"),
                            message: "exec reads `paths` (and `compare_to` of changes)".into(),
                        });
                    }
                }
                let paths = inner
                    .get("paths")
                    .map(|p| strings(p, job, "rules"))
                    .transpose()?
                    .unwrap_or_default();
                let compare_to = inner
                    .get("compare_to")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Ok((paths, compare_to))
            }
            other => Ok((strings(other, job, "rules")?, None)),
        }
    };
    let changes = m
        .get("changes")
        .map(|v| paths(v, "changes"))
        .transpose()?
        .map(|(paths, compare_to)| Changes { paths, compare_to });
    let exists = match m.get("exists").map(|v| paths(v, "exists")).transpose()? {
        Some((_, Some(_))) => return Err(shape(job, "rules", "`exists` has no `compare_to`")),
        other => other.map(|(paths, _)| paths),
    };
    Ok(Rule {
        condition: m.get("if").and_then(Value::as_str).map(str::to_string),
        changes,
        exists,
        when: m
            .get("when")
            .and_then(Value::as_str)
            .map(|w| {
                When::parse(w).ok_or_else(|| {
                    shape(
                        job,
                        "rules",
                        "`when` must be on_success, always, on_failure, manual, delayed or never",
                    )
                })
            })
            .transpose()?,
        allow_failure: m.get("allow_failure").and_then(Value::as_bool),
        variables: m
            .get("variables")
            .map(|v| variables(v, job))
            .transpose()?
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::Repository;
    use super::*;

    /// A repository whose last commit changed `changed` (`None`: nothing to compare with).
    struct Fake {
        changed: Option<Vec<&'static str>>,
        files: Vec<&'static str>,
    }

    impl Repository for Fake {
        fn changed_files(&self, compare_to: Option<&str>) -> Result<Option<Vec<String>>, String> {
            match compare_to {
                Some("refs/heads/gone") => Err("unknown ref".into()),
                Some(_) => Ok(Some(vec!["compared.txt".into()])),
                None => Ok(self
                    .changed
                    .as_ref()
                    .map(|c| c.iter().map(|f| f.to_string()).collect())),
            }
        }

        fn files(&self) -> Result<Vec<String>, String> {
            Ok(self.files.iter().map(|f| f.to_string()).collect())
        }
    }

    fn job(rules: &str) -> JobDef {
        let text = format!("job:\n  script: [x]\n  rules:\n{rules}");
        super::super::Pipeline::parse(&text)
            .unwrap()
            .job("job")
            .unwrap()
            .clone()
    }

    fn decide(job: &JobDef, repo: &Fake, vars: &[(&str, &str)]) -> Decision {
        let var = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        job.decide(&RuleContext {
            var: &var,
            repository: repo,
        })
        .unwrap()
    }

    fn runs(d: &Decision) -> bool {
        matches!(d, Decision::Run { .. })
    }

    #[test]
    fn changes_match_globs_and_alternatives_against_the_base() {
        let j = job("    - changes: ['src/**/*.{rs,toml}', $DOCS_DIR/*.md]\n");
        let repo = |changed: Option<Vec<&'static str>>| Fake {
            changed,
            files: vec![],
        };
        let vars = [("DOCS_DIR", "docs")];
        assert!(runs(&decide(&j, &repo(Some(vec!["src/a/b.rs"])), &vars)));
        assert!(runs(&decide(&j, &repo(Some(vec!["docs/x.md"])), &vars)));
        assert!(!runs(&decide(&j, &repo(Some(vec!["README.md"])), &vars)));
        assert!(!runs(&decide(&j, &repo(Some(vec!["docs/x.md"])), &[])));
        // Nothing to compare with (a tag, a first commit): GitLab counts it as changed.
        assert!(runs(&decide(&j, &repo(None), &vars)));
        let j = job("    - changes: {paths: [compared.txt], compare_to: refs/heads/main}\n");
        assert!(runs(&decide(&j, &repo(Some(vec![])), &[])));
    }

    #[test]
    fn exists_looks_at_the_tree_and_all_clauses_must_hold() {
        let j = job(
            "    - if: $CI_COMMIT_BRANCH == \"main\"\n      exists: [Dockerfile]\n      when: manual\n      allow_failure: true\n    - exists: ['**/package.json']\n      variables: {NODE: 'yes'}\n",
        );
        let repo = Fake {
            changed: None,
            files: vec!["Dockerfile", "web/package.json"],
        };
        assert_eq!(
            decide(&j, &repo, &[("CI_COMMIT_BRANCH", "main")]),
            Decision::Run {
                when: When::Manual,
                allow_failure: AllowFailure::Yes,
                variables: vec![]
            }
        );
        let Decision::Run {
            when, variables, ..
        } = decide(&j, &repo, &[])
        else {
            panic!("the second rule matches");
        };
        assert_eq!((when, variables[0].key.as_str()), (When::OnSuccess, "NODE"));
        let none = Fake {
            changed: None,
            files: vec!["README.md"],
        };
        assert!(
            matches!(decide(&j, &none, &[]), Decision::Excluded(r) if r.contains("exists: **/package.json"))
        );
    }

    #[test]
    fn unsupported_rule_clauses_and_repository_errors_name_the_job() {
        let err = super::super::Pipeline::parse("j:\n  script: x\n  rules:\n    - needs: [a]")
            .unwrap()
            .job("j")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`j`") && err.contains("rules: needs"), "{err}");
        let j = job("    - changes: {paths: [a], compare_to: refs/heads/gone}\n");
        let repo = Fake {
            changed: None,
            files: vec![],
        };
        let err = j
            .decide(&RuleContext {
                var: &|_| None,
                repository: &repo,
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`job`") && err.contains("unknown ref"),
            "{err}"
        );
    }
}
