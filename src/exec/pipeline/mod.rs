//! The part of `.gitlab-ci.yml` that `exec` runs, read as GitLab reads it: `include:` of
//! local files merged first (`include.rs`), then `extends:` (`extends.rs`), then
//! `!reference` tags (`reference.rs`); each job read on its own (`job.rs`) and its
//! `parallel:` instances made (`matrix.rs`). Whether a job runs for a ref is `decide.rs`,
//! GitLab's expansion of variables `expand.rs`, the order jobs needed by others run in
//! `needs.rs`. Keys outside the subset are named, never silently ignored; a job that uses
//! something `exec` cannot run is an error of that job alone. Pure: text and a
//! [`Source`] of included files in, job definitions out.

mod clauses;
mod decide;
pub mod expand;
mod extends;
mod include;
mod job;
mod matrix;
mod needs;
mod only_except;
mod reference;
mod validate;
mod values;
pub(crate) mod workflow;
mod yaml;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_norway::{Mapping, Value};

pub use clauses::{Changes, Repository, RuleContext};
pub use decide::{Decision, Rule, When};
pub use include::{NoFiles, Source};
pub use job::{AllowFailure, ArtifactsDef, CacheDef, CacheKey, ImageDef, Need};
pub use matrix::Instance;
pub use needs::{plan, Plan, Step};

use super::rules::RuleError;
use job::{default_not_acted_on, Defaults, DEFAULT_KEYS};
use values::{shape, strings};

/// Top-level keys that are not jobs.
const GLOBAL_KEYS: &[&str] = &[
    "stages",
    "variables",
    "default",
    "image",
    "services",
    "before_script",
    "after_script",
    "cache",
    "workflow",
    "spec",
];

/// The pipeline, or one of its jobs, cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// A file is not YAML, or not a mapping at the top.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// An `include:` cannot be followed.
    #[error("{file}: include: {message}")]
    Include {
        /// The including file.
        file: String,
        /// What is wrong.
        message: String,
    },
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
    /// The job uses something `exec` cannot run.
    #[error("job `{job}`: `{key}` is not supported by exec: {message}")]
    Unsupported {
        /// The job.
        job: String,
        /// The key.
        key: String,
        /// Why.
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
    /// A `!reference` cannot be resolved.
    #[error("job `{job}`: {message}")]
    Reference {
        /// The job (or `(global)`).
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
    /// `changes:` or `exists:` could not be evaluated.
    #[error("job `{job}`: rules: {message}")]
    Repository {
        /// The job.
        job: String,
        /// What git said.
        message: String,
    },
    /// The job's variables refer to each other in a loop.
    #[error("job `{job}`: variables: {message}")]
    Variables {
        /// The job.
        job: String,
        /// Which variables.
        message: String,
    },
    /// `needs:` or `dependencies:` name a job that cannot run first.
    #[error("job `{job}`: {message}")]
    Needs {
        /// The job.
        job: String,
        /// What is wrong.
        message: String,
    },
    /// GitLab would refuse the file for this job (`validate.rs`).
    #[error("job `{job}`: {message} (GitLab refuses a file with this error)")]
    Refused {
        /// The job.
        job: String,
        /// GitLab's complaint.
        message: String,
    },
    /// `--matrix` selects no instance, or was given for a job without a matrix.
    #[error("job `{job}`: {message}")]
    Matrix {
        /// The job.
        job: String,
        /// What is wrong.
        message: String,
    },
}

/// A variable as the file defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarDef {
    /// Name.
    pub key: String,
    /// Value, as written (or as expanded, once through [`expand::expand_all`]).
    pub value: String,
    /// `expand: false`: never expanded.
    pub raw: bool,
}

/// A job, resolved (includes, `extends`, references, defaults and `parallel` applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDef {
    /// Name (a parallel instance's as GitLab names it).
    pub name: String,
    /// `stage:` (default `test`).
    pub stage: String,
    /// `image:`.
    pub image: Option<ImageDef>,
    /// `services:`.
    pub services: Vec<ImageDef>,
    /// Global then job then matrix variables, in order; later entries win.
    pub variables: Vec<VarDef>,
    /// How many of `variables` come first from the global `variables:` (the workflow's
    /// rule variables go after them).
    pub globals: usize,
    /// `before_script` + `script`, as GitLab merges them.
    pub script: Vec<String>,
    /// `after_script`.
    pub after_script: Vec<String>,
    /// `hooks: pre_get_sources_script`.
    pub pre_get_sources: Vec<String>,
    /// `rules:`.
    pub rules: Option<Vec<Rule>>,
    /// `only:`.
    pub only: Option<only_except::Policy>,
    /// `except:`.
    pub except: Option<only_except::Policy>,
    /// `when:`.
    pub when: When,
    /// `allow_failure:`.
    pub allow_failure: AllowFailure,
    /// `timeout:` (the job's, else `default:`'s).
    pub timeout: Option<Duration>,
    /// `cache:`.
    pub cache: Vec<CacheDef>,
    /// `artifacts:`.
    pub artifacts: Option<ArtifactsDef>,
    /// `needs:` (`Some(vec![])`: needs nothing).
    pub needs: Option<Vec<Need>>,
    /// `dependencies:`.
    pub dependencies: Option<Vec<String>>,
    /// Which instance of a `parallel:` job this is.
    pub instance: Option<Instance>,
    /// Keys present in the job that `exec` does not act on.
    pub not_acted_on: Vec<String>,
}

impl JobDef {
    /// A job of nothing but `variables` and `rules`: what the rule machinery decides for
    /// what is not a job (the workflow), and what has the variables a pipeline has before
    /// any job of it.
    pub fn bare(name: &str, variables: &[VarDef], rules: Option<Vec<Rule>>) -> JobDef {
        JobDef {
            name: name.into(),
            stage: ".pre".into(),
            image: None,
            services: Vec::new(),
            variables: variables.to_vec(),
            globals: variables.len(),
            script: Vec::new(),
            after_script: Vec::new(),
            pre_get_sources: Vec::new(),
            rules,
            only: None,
            except: None,
            when: When::Always,
            allow_failure: AllowFailure::No,
            timeout: None,
            cache: Vec::new(),
            artifacts: None,
            needs: None,
            dependencies: None,
            instance: None,
            not_acted_on: Vec::new(),
        }
    }
}

/// One job of the pipeline as listed: runnable, or the reason it is not.
#[derive(Debug, Clone)]
pub struct PipelineJob {
    /// Its name.
    pub name: String,
    /// Its stage, where it can be read even from a job `exec` cannot run.
    pub stage: Option<String>,
    /// The job, or why `exec` cannot run it.
    pub def: Result<JobDef, PipelineError>,
}

/// A parsed pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// `stages:`.
    pub stages: Vec<String>,
    /// Visible jobs, in the file's order, parallel jobs as their instances.
    pub jobs: Vec<PipelineJob>,
    /// Top-level keys, includes and `default:` keys `exec` does not act on.
    pub not_acted_on: Vec<String>,
    /// The files included, in the order read.
    pub included: Vec<String>,
    /// The files included from other projects' checkouts (`group/project:file`).
    pub from_projects: Vec<String>,
    /// `workflow:`.
    pub workflow: Option<workflow::Workflow>,
    /// The global `variables:`.
    pub variables: Vec<VarDef>,
}

impl Pipeline {
    /// Parses one pipeline file on its own (a local `include:` finds no files).
    pub fn parse(text: &str) -> Result<Pipeline, PipelineError> {
        Self::load(text, ".gitlab-ci.yml", &NoFiles)
    }

    /// Parses the pipeline file `name` with `text`, its includes read from `source`.
    /// Errors of the file as a whole come back as `Err`; a job's own error stays with it.
    pub fn load(text: &str, name: &str, source: &dyn Source) -> Result<Pipeline, PipelineError> {
        let merged = include::merge(text, name, source)?;
        let root = merged.root;
        let templates: BTreeMap<String, Mapping> = root
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_mapping()?.clone())))
            .filter(|(k, _)| !GLOBAL_KEYS.contains(&k.as_str()))
            .collect();
        // What `!reference [name, …]` finds: a job or template as extended, or a global key.
        let lookup = |name: &str| match templates.contains_key(name) {
            true => extends::resolve(name, &templates).ok().map(Value::Mapping),
            false => root.get(name).cloned(),
        };
        let global = |key: &str| -> Result<Option<Value>, PipelineError> {
            root.get(key)
                .filter(|v| !v.is_null())
                .map(|v| {
                    reference::resolve(v, &lookup).map_err(|message| PipelineError::Reference {
                        job: "(global)".into(),
                        message,
                    })
                })
                .transpose()
        };
        let stages = match global("stages")? {
            Some(v @ Value::Sequence(_)) => strings(&v, "(global)", "stages")?,
            Some(_) => {
                return Err(shape(
                    "(global)",
                    "stages",
                    "must be a list of stage names (GitLab: stages config should be an array of strings)",
                ))
            }
            None => ["build", "test", "deploy"].map(String::from).to_vec(),
        };
        let global_vars = match global("variables")? {
            Some(v) => values::variables(&v, "(global)")?,
            None => Vec::new(),
        };
        let default = match global("default")? {
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(shape("(global)", "default", "must be a mapping")),
            None => Mapping::new(),
        };
        let mut not_acted_on = merged.not_acted_on;
        not_acted_on.extend(default_not_acted_on(&default));
        let workflow = match global("workflow")? {
            Some(v) => Some(workflow::Workflow::parse(&v, &mut not_acted_on)?),
            None => None,
        };
        // The old top-level spelling of defaults.
        let mut defaults = Mapping::new();
        for key in DEFAULT_KEYS {
            let value = match default.get(*key) {
                Some(v) => Some(v.clone()),
                None => global(key)?,
            };
            if let Some(v) = value {
                defaults.insert(Value::from(*key), v);
            }
        }
        let defaults = Defaults(defaults);

        let mut jobs = Vec::new();
        for (key, value) in &root {
            let Some(name) = key.as_str() else { continue };
            if GLOBAL_KEYS.contains(&name) || name.starts_with('.') {
                continue;
            }
            let parsed = match value {
                Value::Mapping(_) => {
                    job_definition(name, &templates, &lookup, &defaults, &global_vars)
                }
                _ => Err(shape(name, name, "must be a mapping (a job)")),
            };
            match parsed {
                Ok((def, Some(parallel))) => {
                    jobs.extend(parallel.instances(name).into_iter().map(|(n, instance)| {
                        PipelineJob {
                            name: n.clone(),
                            stage: Some(def.stage.clone()),
                            def: Ok(instance_of(&def, n, instance)),
                        }
                    }))
                }
                Ok((def, None)) => jobs.push(PipelineJob {
                    name: name.to_string(),
                    stage: Some(def.stage.clone()),
                    def: Ok(def),
                }),
                Err(e) => jobs.push(PipelineJob {
                    name: name.to_string(),
                    stage: value.get("stage").and_then(Value::as_str).map(String::from),
                    def: Err(e),
                }),
            }
        }
        let mut pipeline = Pipeline {
            stages,
            jobs,
            not_acted_on,
            included: merged.included,
            from_projects: merged.from_projects,
            workflow,
            variables: global_vars,
        };
        validate::check(&mut pipeline);
        Ok(pipeline)
    }

    /// The job called exactly `name`.
    pub fn job(&self, name: &str) -> Result<&JobDef, PipelineError> {
        match self.jobs.iter().find(|j| j.name == name) {
            Some(j) => j.def.as_ref().map_err(Clone::clone),
            None => Err(self.unknown(name)),
        }
    }

    /// The jobs `name` stands for: the job of that name, or every instance of the parallel
    /// job `name`.
    pub fn instances(&self, name: &str) -> Vec<&PipelineJob> {
        match self.jobs.iter().find(|j| j.name == name) {
            Some(exact) => vec![exact],
            None => self
                .jobs
                .iter()
                .filter(|j| {
                    j.def
                        .as_ref()
                        .is_ok_and(|d| d.instance.as_ref().is_some_and(|i| i.base == name))
                })
                .collect(),
        }
    }

    /// The jobs `exec NAME [--matrix K=V,…]` runs: the job, or the parallel job's instances
    /// whose matrix values include every pair of `matrix`.
    pub fn select(
        &self,
        name: &str,
        matrix: &[(String, String)],
    ) -> Result<Vec<&JobDef>, PipelineError> {
        let found = self.instances(name);
        if found.is_empty() {
            return Err(self.unknown(name));
        }
        let defs = found
            .iter()
            .map(|j| j.def.as_ref().map_err(Clone::clone))
            .collect::<Result<Vec<&JobDef>, _>>()?;
        if matrix.is_empty() {
            return Ok(defs);
        }
        let err = |message: String| PipelineError::Matrix {
            job: name.to_string(),
            message,
        };
        if defs
            .iter()
            .all(|d| d.instance.as_ref().is_none_or(|i| i.values.is_empty()))
        {
            return Err(err(
                "--matrix selects among `parallel: matrix:` jobs; this job has none".into(),
            ));
        }
        let chosen: Vec<&JobDef> = defs
            .iter()
            .copied()
            .filter(|d| {
                d.instance
                    .as_ref()
                    .is_some_and(|i| matrix.iter().all(|pair| i.values.contains(pair)))
            })
            .collect();
        if chosen.is_empty() {
            let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
            return Err(err(format!(
                "no instance has {}; instances: {}",
                matrix
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                names.join("; ")
            )));
        }
        Ok(chosen)
    }

    /// The index of `stage` in `stages:` (unknown stages sort last).
    pub fn stage_index(&self, stage: &str) -> usize {
        match stage {
            ".pre" => 0,
            ".post" => self.stages.len() + 2,
            _ => self
                .stages
                .iter()
                .position(|s| s == stage)
                .map_or(self.stages.len() + 1, |i| i + 1),
        }
    }

    fn unknown(&self, name: &str) -> PipelineError {
        PipelineError::UnknownJob {
            job: name.to_string(),
            available: self
                .jobs
                .iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The job `name` extended, its references resolved, read.
fn job_definition(
    name: &str,
    templates: &BTreeMap<String, Mapping>,
    lookup: &dyn Fn(&str) -> Option<Value>,
    defaults: &Defaults,
    global_vars: &[VarDef],
) -> Result<(JobDef, Option<matrix::Parallel>), PipelineError> {
    let extended = extends::resolve(name, templates)?;
    let resolved = reference::resolve(&Value::Mapping(extended), lookup).map_err(|message| {
        PipelineError::Reference {
            job: name.to_string(),
            message,
        }
    })?;
    let Value::Mapping(m) = resolved else {
        return Err(shape(name, name, "must be a mapping (a job)"));
    };
    job::parse(name, &m, defaults, global_vars)
}

/// The parallel instance `name` of `def`: the matrix values and `CI_NODE_INDEX` /
/// `CI_NODE_TOTAL` as job variables.
fn instance_of(def: &JobDef, name: String, instance: Instance) -> JobDef {
    let mut def = def.clone();
    let plain = |key: &str, value: String| VarDef {
        key: key.to_string(),
        value,
        raw: false,
    };
    def.variables.extend(
        instance
            .values
            .iter()
            .map(|(k, v)| plain(k, v.clone()))
            .chain([
                plain("CI_NODE_INDEX", instance.index.to_string()),
                plain("CI_NODE_TOTAL", instance.total.to_string()),
            ]),
    );
    // `$[[ matrix.KEY ]]` in `needs: parallel: matrix:` names this instance's value.
    for need in def.needs.iter_mut().flatten() {
        for combination in need.matrix.iter_mut().flatten() {
            for (_, value) in combination.iter_mut() {
                *value = matrix::with_instance_values(value, &instance.values);
            }
        }
    }
    def.name = name;
    def.instance = Some(instance);
    def
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../../tests/fixtures/seed.gitlab-ci.yml");

    /// A repository where nothing changed and no file exists.
    struct Empty;

    impl Repository for Empty {
        fn changed_files(&self, _: Option<&str>) -> Result<Option<Vec<String>>, String> {
            Ok(Some(Vec::new()))
        }

        fn files(&self) -> Result<Vec<String>, String> {
            Ok(Vec::new())
        }
    }

    fn decide(job: &JobDef, pairs: &[(&str, &str)]) -> Result<Decision, PipelineError> {
        let var = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        job.decide(&RuleContext {
            var: &var,
            repository: &Empty,
        })
    }

    fn value<'a>(job: &'a JobDef, key: &str) -> Option<&'a str> {
        job.variables
            .iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value.as_str())
    }

    #[test]
    fn the_seed_pipeline() {
        let p = Pipeline::parse(SEED).unwrap();
        assert_eq!(p.stages, ["build", "deploy"]);
        let deploy = p.job("task-deploy").unwrap();
        assert_eq!(deploy.stage, "deploy");
        assert_eq!(deploy.image.as_ref().unwrap().name, "docker:latest");
        assert_eq!(deploy.services[0].name, "docker:dind");
        assert_eq!(value(deploy, "AWS_DEFAULT_REGION"), Some("ap-northeast-1"));
        assert!(matches!(
            decide(deploy, &[("CI_COMMIT_TAG", "v1.0.0")]).unwrap(),
            Decision::Run { .. }
        ));
        assert!(matches!(
            decide(deploy, &[("CI_COMMIT_BRANCH", "main")]).unwrap(),
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
  timeout: 20 minutes
  tags: [docker]
  retry: 2
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
  image: { name: custom:2, entrypoint: [""], pull_policy: [never], docker: {user: "1000"} }
  before_script: []
  timeout: 1h 30m
  inherit:
    variables: [GLOBAL]
  script: echo solo
  artifacts: { paths: [out], exclude: [out/tmp] }
  frobnicate: true
"#;
        let p = Pipeline::parse(text).unwrap();
        assert_eq!(p.not_acted_on, ["default: tags", "default: retry"]);
        let job = p.job("job").unwrap();
        assert_eq!(
            job.script,
            ["echo default-before", "echo one", "echo two", "echo three"]
        );
        assert_eq!(job.after_script, ["echo after"]);
        assert_eq!(job.image.as_ref().unwrap().name, "base:1");
        assert_eq!(job.timeout, Some(Duration::from_secs(1200)));
        assert_eq!(
            (
                value(job, "GLOBAL"),
                value(job, "OVERRIDE"),
                value(job, "FROM_TEMPLATE"),
                value(job, "OWN")
            ),
            (Some("g"), Some("template"), Some("t"), Some("own"))
        );
        assert_eq!(job.not_acted_on, ["tags"]);
        let other = p.job("other").unwrap();
        assert_eq!(other.script, ["echo solo"]);
        assert_eq!(other.after_script, ["echo after"]);
        assert_eq!(other.timeout, Some(Duration::from_secs(5400)));
        assert_eq!(
            (value(other, "GLOBAL"), value(other, "OVERRIDE")),
            (Some("g"), Some("template"))
        );
        let image = other.image.as_ref().unwrap();
        assert_eq!(
            (
                image.name.as_str(),
                image.entrypoint.clone(),
                image.pull_policy.clone(),
                image.user.as_deref()
            ),
            (
                "custom:2",
                Some(vec![String::new()]),
                vec!["never".to_string()],
                Some("1000")
            )
        );
        assert_eq!(other.artifacts.as_ref().unwrap().paths, ["out"]);
        assert_eq!(
            other.not_acted_on,
            ["artifacts: exclude", "frobnicate (unknown)"]
        );
        assert!(p.jobs.iter().all(|j| !j.name.starts_with('.')));
    }

    #[test]
    fn rules_when_and_rule_variables() {
        let text = r#"
deploy:
  script: [echo hi]
  when: manual
  rules:
    - if: $CI_COMMIT_BRANCH == "wip"
      when: never
    - if: $CI_COMMIT_TAG =~ /^v\d+/
      when: on_success
      variables: { TARGET: prod }
    - if: $CI_COMMIT_BRANCH
manual-only:
  script: [echo hi]
  when: never
"#;
        let p = Pipeline::parse(text).unwrap();
        let d = p.job("deploy").unwrap();
        assert_eq!(
            decide(d, &[("CI_COMMIT_TAG", "v2.0.0")]).unwrap(),
            Decision::Run {
                when: When::OnSuccess,
                allow_failure: AllowFailure::No,
                variables: vec![VarDef {
                    key: "TARGET".into(),
                    value: "prod".into(),
                    raw: false
                }]
            }
        );
        assert!(
            matches!(decide(d, &[("CI_COMMIT_BRANCH", "wip")]).unwrap(), Decision::Excluded(r) if r.contains("rule 1"))
        );
        // A rule without `when:` takes the job's.
        assert!(matches!(
            decide(d, &[("CI_COMMIT_BRANCH", "main")]).unwrap(),
            Decision::Run {
                when: When::Manual,
                ..
            }
        ));
        assert!(
            matches!(decide(d, &[]).unwrap(), Decision::Excluded(r) if r.contains("no rule matched"))
        );
        assert!(matches!(
            decide(p.job("manual-only").unwrap(), &[]).unwrap(),
            Decision::Excluded(_)
        ));
    }

    #[test]
    fn a_broken_job_is_an_error_of_its_own() {
        let p = Pipeline::parse(
            "lint:\n  script: [x]\n\
             deploy:\n  extends: .missing\n  script: [x]\n\
             downstream:\n  trigger: group/other\n\
             notify:\n  stage: test\n\
             remote:\n  script: [x]\n  needs: [{project: g/p, job: build, ref: main}]\n\
             fancy:\n  script: [x]\n  timeout: soon\n",
        )
        .unwrap();
        assert!(p.job("lint").is_ok());
        for (job, says) in [
            ("deploy", ".missing"),
            ("downstream", "trigger"),
            ("notify", "script"),
            ("remote", "needs: project"),
            ("fancy", "timeout"),
        ] {
            let err = p.job(job).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{job}`")) && err.contains(says),
                "{job}: {err}"
            );
        }
        assert!(matches!(
            Pipeline::parse("a: [").unwrap_err(),
            PipelineError::Syntax { .. }
        ));
        assert!(matches!(
            Pipeline::parse("- a").unwrap_err(),
            PipelineError::Syntax { .. }
        ));
        let p = Pipeline::parse("j:\n  script: x\n  rules:\n    - if: '$A = 1'").unwrap();
        assert!(decide(p.job("j").unwrap(), &[]).is_err());
    }

    #[test]
    fn references_resolve_after_extends() {
        let p = Pipeline::parse(
            ".base:\n  script: [echo base]\n\
             .tmpl:\n  extends: .base\n  variables: {A: a}\n\
             .rules:\n  rules:\n    - if: $CI_COMMIT_TAG\n\
             job:\n  variables: !reference [.tmpl, variables]\n  script:\n    - !reference [.tmpl, script]\n    - echo own\n  rules:\n    - !reference [.rules, rules]\n    - when: manual\n\
             bad:\n  script: [!reference [.tmpl, nothing]]\n",
        )
        .unwrap();
        let job = p.job("job").unwrap();
        assert_eq!(job.script, ["echo base", "echo own"]);
        assert_eq!(value(job, "A"), Some("a"));
        assert_eq!(job.rules.as_ref().map(Vec::len), Some(2));
        let err = p.job("bad").unwrap_err().to_string();
        assert!(err.contains("`bad`") && err.contains("`nothing`"), "{err}");
    }

    #[test]
    fn matrix_instances_are_jobs_and_select_narrows_them() {
        let p = Pipeline::parse(
            "deploy:\n  stage: deploy\n  script: [x]\n  parallel:\n    matrix:\n      - PROVIDER: [aws, gcp]\n        REGION: [eu, us]\n",
        )
        .unwrap();
        let names: Vec<&str> = p.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "deploy: [aws, eu]",
                "deploy: [aws, us]",
                "deploy: [gcp, eu]",
                "deploy: [gcp, us]"
            ]
        );
        let gcp_us = p.job("deploy: [gcp, us]").unwrap();
        assert_eq!(
            (
                value(gcp_us, "PROVIDER"),
                value(gcp_us, "REGION"),
                value(gcp_us, "CI_NODE_INDEX"),
                value(gcp_us, "CI_NODE_TOTAL")
            ),
            (Some("gcp"), Some("us"), Some("4"), Some("4"))
        );
        assert_eq!(p.select("deploy", &[]).unwrap().len(), 4);
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let chosen = p.select("deploy", &[pair("REGION", "eu")]).unwrap();
        let chosen: Vec<&str> = chosen.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(chosen, ["deploy: [aws, eu]", "deploy: [gcp, eu]"]);
        let err = p
            .select("deploy", &[pair("PROVIDER", "azure")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PROVIDER=azure") && err.contains("deploy: [aws, eu]"),
            "{err}"
        );
    }
}
