//! The jobs `exec JOB` runs and their order: every job JOB `needs:` or lists in
//! `dependencies:`, transitively, each before the jobs that need it (in the order they are
//! listed), then JOB; and, per job, the jobs whose artifacts and dotenv variables it
//! receives: its `dependencies:` if it has them, else the `needs:` with `artifacts: true`.
//! A needed job that is not in the pipeline (no such job, or its rules exclude it) is an
//! error unless the need is `optional:`.

use std::collections::HashMap;

use super::matrix::instance_name;
use super::{JobDef, Pipeline, PipelineError, PipelineJob};

/// One job to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<'p> {
    /// The job.
    pub job: &'p JobDef,
    /// The jobs (run earlier) whose artifacts and dotenv variables it receives.
    pub receives: Vec<String>,
    /// Whether it runs only because another job needs it.
    pub needed: bool,
}

/// What became of a job during planning.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// Its needs are being planned.
    Open,
    /// Planned to run.
    Planned,
    /// Not in the pipeline for this ref.
    Absent,
}

/// The steps that run `targets`: needed jobs first. `in_pipeline` says whether the rules
/// of a needed job put it in this pipeline.
pub fn plan<'p>(
    pipeline: &'p Pipeline,
    targets: &[&'p JobDef],
    in_pipeline: &mut dyn FnMut(&JobDef) -> Result<bool, PipelineError>,
) -> Result<Vec<Step<'p>>, PipelineError> {
    let mut planner = Planner {
        pipeline,
        in_pipeline,
        visits: HashMap::new(),
        steps: Vec::new(),
    };
    for target in targets {
        planner.visit(target, false)?;
    }
    Ok(planner.steps)
}

struct Planner<'p, 'f> {
    pipeline: &'p Pipeline,
    in_pipeline: &'f mut dyn FnMut(&JobDef) -> Result<bool, PipelineError>,
    visits: HashMap<String, Visit>,
    steps: Vec<Step<'p>>,
}

/// One job a job requires: by `needs:` or by `dependencies:`.
struct Required<'p> {
    job: &'p PipelineJob,
    /// Its artifacts are wanted.
    artifacts: bool,
    optional: bool,
    /// How the requiring job names it, for messages.
    named: String,
}

impl<'p> Planner<'p, '_> {
    fn visit(&mut self, job: &'p JobDef, needed: bool) -> Result<(), PipelineError> {
        match self.visits.get(&job.name) {
            Some(Visit::Planned | Visit::Absent) => return Ok(()),
            Some(Visit::Open) => {
                return Err(PipelineError::Needs {
                    job: job.name.clone(),
                    message: "needs itself through the jobs it needs".into(),
                })
            }
            None => {}
        }
        self.visits.insert(job.name.clone(), Visit::Open);
        let err = |message: String| PipelineError::Needs {
            job: job.name.clone(),
            message,
        };
        let mut from_needs = Vec::new();
        for required in self.required(job)? {
            let def = required.job.def.as_ref().map_err(|e| {
                err(format!(
                    "needs `{}`, which exec cannot run: {e}",
                    required.named
                ))
            })?;
            if self.visits.get(&def.name) == Some(&Visit::Open) {
                return Err(err(format!(
                    "needs `{}`, which needs it in turn",
                    required.named
                )));
            }
            if !self.visits.contains_key(&def.name) {
                if !(self.in_pipeline)(def)? {
                    if !required.optional {
                        return Err(err(format!(
                            "needs `{}`, which its rules leave out of this pipeline (mark the need `optional: true` if that is fine)",
                            def.name
                        )));
                    }
                    self.visits.insert(def.name.clone(), Visit::Absent);
                    continue;
                }
                self.visit(def, true)?;
            }
            if required.artifacts && self.visits.get(&def.name) == Some(&Visit::Planned) {
                from_needs.push(def.name.clone());
            }
        }
        let receives = match &job.dependencies {
            Some(names) => {
                let mut receives = Vec::new();
                for name in names {
                    for found in self.pipeline.instances(name) {
                        if self.visits.get(&found.name) == Some(&Visit::Planned) {
                            receives.push(found.name.clone());
                        }
                    }
                }
                receives
            }
            None => from_needs,
        };
        self.visits.insert(job.name.clone(), Visit::Planned);
        self.steps.push(Step {
            job,
            receives,
            needed,
        });
        Ok(())
    }

    /// The jobs `job` needs, then those of its `dependencies:` it does not need.
    fn required(&self, job: &JobDef) -> Result<Vec<Required<'p>>, PipelineError> {
        let missing = |name: &str| PipelineError::Needs {
            job: job.name.clone(),
            message: format!("needs `{name}`, which is not in the pipeline"),
        };
        let mut out: Vec<Required<'p>> = Vec::new();
        for need in job.needs.iter().flatten() {
            let found: Vec<&PipelineJob> = match &need.matrix {
                Some(combinations) => combinations
                    .iter()
                    .filter_map(|c| {
                        let name = instance_name(&need.job, c);
                        self.pipeline.jobs.iter().find(|j| j.name == name)
                    })
                    .collect(),
                None => self.pipeline.instances(&need.job),
            };
            if found.is_empty() && !need.optional {
                return Err(missing(&need.job));
            }
            out.extend(found.into_iter().map(|j| Required {
                job: j,
                artifacts: need.artifacts,
                optional: need.optional,
                named: j.name.clone(),
            }));
        }
        for name in job.dependencies.iter().flatten() {
            let found = self.pipeline.instances(name);
            if found.is_empty() {
                return Err(missing(name));
            }
            for j in found {
                if !out.iter().any(|r| r.job.name == j.name) {
                    out.push(Required {
                        job: j,
                        artifacts: true,
                        optional: false,
                        named: j.name.clone(),
                    });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
stages: [build, test, deploy]
compile:
  stage: build
  script: [make]
  parallel:
    matrix:
      - ARCH: [amd64, arm64]
assets:
  stage: build
  script: [npm run build]
docs:
  stage: build
  script: [mkdocs build]
  rules:
    - if: $CI_COMMIT_TAG
test:
  stage: test
  script: [make test]
  needs:
    - job: compile
      parallel:
        matrix:
          - ARCH: amd64
    - job: docs
      optional: true
package:
  stage: deploy
  script: [package]
  needs: [test, {job: assets, artifacts: false}]
  dependencies: [compile]
broken:
  stage: deploy
  script: [x]
  needs: [nothing]
uses-broken:
  stage: deploy
  script: [x]
  needs: [broken]
unparsable:
  extends: .missing
  script: [x]
uses-unparsable:
  script: [x]
  needs: [unparsable]
loop-a:
  script: [x]
  needs: [loop-b]
loop-b:
  script: [x]
  needs: [loop-a]
needs-docs:
  script: [x]
  needs: [docs]
"#;

    /// Plans `target` with `docs` out of the pipeline (a branch).
    fn names(target: &str) -> Result<Vec<(String, Vec<String>, bool)>, PipelineError> {
        let p = Pipeline::parse(PIPELINE).unwrap();
        let targets = p.select(target, &[]).unwrap();
        let steps = plan(&p, &targets, &mut |job| Ok(job.name != "docs"))?;
        Ok(steps
            .into_iter()
            .map(|s| (s.job.name.clone(), s.receives, s.needed))
            .collect())
    }

    fn owned(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn needed_jobs_come_first_with_what_each_receives() {
        assert_eq!(
            names("package").unwrap(),
            [
                ("compile: [amd64]".into(), vec![], true),
                ("test".into(), owned(&["compile: [amd64]"]), true),
                ("assets".into(), vec![], true),
                ("compile: [arm64]".into(), vec![], true),
                (
                    "package".into(),
                    owned(&["compile: [amd64]", "compile: [arm64]"]),
                    false
                ),
            ]
        );
    }

    #[test]
    fn missing_excluded_looping_and_broken_needs_are_errors_of_the_job() {
        let err = names("broken").unwrap_err().to_string();
        assert!(
            err.contains("`broken`") && err.contains("`nothing`"),
            "{err}"
        );
        let err = names("uses-broken").unwrap_err().to_string();
        assert!(
            err.contains("`broken`") && err.contains("`nothing`"),
            "{err}"
        );
        let err = names("uses-unparsable").unwrap_err().to_string();
        assert!(
            err.contains("`uses-unparsable`")
                && err.contains("cannot run")
                && err.contains(".missing"),
            "{err}"
        );
        let err = names("loop-a").unwrap_err().to_string();
        assert!(
            err.contains("needs it in turn") || err.contains("needs itself"),
            "{err}"
        );
        let err = names("needs-docs").unwrap_err().to_string();
        assert!(
            err.contains("rules leave out") && err.contains("optional"),
            "{err}"
        );
    }
}
