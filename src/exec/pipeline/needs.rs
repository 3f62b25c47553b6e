//! The jobs `exec JOB` runs and their order, as GitLab schedules them: a job with `needs:`
//! waits for those jobs (a DAG job); a job without waits for every job of the earlier
//! stages. Every job waited for, transitively, is planned once, before the jobs that wait
//! for it. Per job also the jobs whose artifacts and dotenv variables it receives, read as
//! GitLab's `Ci::BuildDependencies`: the needs with `artifacts: true` of a DAG job, else
//! every earlier-stage job; narrowed to `dependencies:` when it names jobs; none with
//! `dependencies: []`. A needed job that is not in the pipeline (no such job, or its rules
//! exclude it) is an error unless the need is `optional:`; an earlier-stage job that is
//! not in the pipeline is simply not waited for.

use std::collections::HashMap;

use super::matrix::instance_name;
use super::{JobDef, Pipeline, PipelineError, PipelineJob};

/// One job to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<'p> {
    /// The job.
    pub job: &'p JobDef,
    /// The jobs (planned earlier) whose outcome decides whether it runs.
    pub waits_for: Vec<String>,
    /// It has `needs:` (GitLab's DAG scheduling): a skipped need skips it.
    pub dag: bool,
    /// The jobs (planned earlier) whose artifacts and dotenv variables it receives.
    pub receives: Vec<String>,
    /// Whether it runs only because another job waits for it.
    pub needed: bool,
    /// Some job names it in `needs:` (not only by stage order).
    pub named_in_needs: bool,
}

/// The steps, and the earlier-stage jobs that exec cannot run and so are not waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'p> {
    /// In the order they run.
    pub steps: Vec<Step<'p>>,
    /// One line per earlier-stage job left out, saying why.
    pub left_out: Vec<String>,
}

/// What became of a job during planning.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// What it waits for is being planned.
    Open,
    /// Planned to run.
    Planned,
    /// Not in the pipeline for this ref.
    Absent,
}

/// The plan that runs `targets`: what they wait for first. `in_pipeline` says whether the
/// rules of a job waited for put it in this pipeline.
pub fn plan<'p>(
    pipeline: &'p Pipeline,
    targets: &[&'p JobDef],
    in_pipeline: &mut dyn FnMut(&JobDef) -> Result<bool, PipelineError>,
) -> Result<Plan<'p>, PipelineError> {
    let mut planner = Planner {
        pipeline,
        in_pipeline,
        visits: HashMap::new(),
        steps: Vec::new(),
        left_out: Vec::new(),
    };
    for target in targets {
        planner.visit(target, false)?;
    }
    Ok(Plan {
        steps: planner.steps,
        left_out: planner.left_out,
    })
}

struct Planner<'p, 'f> {
    pipeline: &'p Pipeline,
    in_pipeline: &'f mut dyn FnMut(&JobDef) -> Result<bool, PipelineError>,
    visits: HashMap<String, Visit>,
    steps: Vec<Step<'p>>,
    left_out: Vec<String>,
}

/// One job a job waits for: by `needs:` or by stage order.
struct Required<'p> {
    job: &'p PipelineJob,
    /// Its artifacts are wanted (before `dependencies:` narrows them).
    artifacts: bool,
    optional: bool,
    /// Named in `needs:`.
    by_need: bool,
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
        let mut waits_for = Vec::new();
        let mut candidates = Vec::new();
        for required in self.required(job)? {
            let def = match &required.job.def {
                Ok(def) => def,
                Err(e) if required.by_need => {
                    return Err(err(format!(
                        "needs `{}`, which exec cannot run: {e}",
                        required.job.name
                    )))
                }
                Err(e) => {
                    self.left_out.push(format!(
                        "`{}` is not run: exec cannot run it ({e}); on GitLab `{}` would wait for it",
                        required.job.name, job.name
                    ));
                    continue;
                }
            };
            let excluded = |def: &JobDef| {
                err(format!(
                    "needs `{}`, which its rules leave out of this pipeline (mark the need `optional: true` if that is fine)",
                    def.name
                ))
            };
            match self.visits.get(&def.name) {
                Some(Visit::Open) => {
                    return Err(err(format!("needs `{}`, which needs it in turn", def.name)))
                }
                Some(Visit::Absent) if required.by_need && !required.optional => {
                    return Err(excluded(def))
                }
                Some(_) => {}
                None if !(self.in_pipeline)(def)? => {
                    if required.by_need && !required.optional {
                        return Err(excluded(def));
                    }
                    self.visits.insert(def.name.clone(), Visit::Absent);
                }
                None => self.visit(def, true)?,
            }
            if self.visits.get(&def.name) != Some(&Visit::Planned) {
                continue;
            }
            if required.by_need {
                if let Some(step) = self.steps.iter_mut().find(|s| s.job.name == def.name) {
                    step.named_in_needs = true;
                }
            }
            waits_for.push(def.name.clone());
            if required.artifacts {
                candidates.push(def.name.clone());
            }
        }
        let receives = match &job.dependencies {
            Some(names) => candidates
                .into_iter()
                .filter(|c| {
                    names
                        .iter()
                        .any(|n| self.pipeline.instances(n).iter().any(|j| &j.name == c))
                })
                .collect(),
            None => candidates,
        };
        self.visits.insert(job.name.clone(), Visit::Planned);
        self.steps.push(Step {
            job,
            waits_for,
            dag: job.needs.is_some(),
            receives,
            needed,
            named_in_needs: false,
        });
        Ok(())
    }

    /// The jobs `job` waits for: its needs, else every job of the earlier stages.
    fn required(&self, job: &JobDef) -> Result<Vec<Required<'p>>, PipelineError> {
        let Some(needs) = &job.needs else {
            let own = self.pipeline.stage_index(&job.stage);
            let mut earlier: Vec<&'p PipelineJob> = self
                .pipeline
                .jobs
                .iter()
                .filter(|j| {
                    j.stage
                        .as_deref()
                        .is_some_and(|s| self.pipeline.stage_index(s) < own)
                })
                .collect();
            earlier.sort_by_key(|j| j.stage.as_deref().map(|s| self.pipeline.stage_index(s)));
            return Ok(earlier
                .into_iter()
                .map(|j| Required {
                    job: j,
                    artifacts: true,
                    optional: true,
                    by_need: false,
                })
                .collect());
        };
        let mut out: Vec<Required<'p>> = Vec::new();
        for need in needs {
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
                return Err(PipelineError::Needs {
                    job: job.name.clone(),
                    message: format!("needs `{}`, which is not in the pipeline", need.job),
                });
            }
            out.extend(found.into_iter().map(|j| Required {
                job: j,
                artifacts: need.artifacts,
                optional: need.optional,
                by_need: true,
            }));
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
report:
  stage: deploy
  script: [report]
  dependencies: [assets]
alone:
  stage: deploy
  script: [x]
  needs: []
  dependencies: [assets]
nothing-downloaded:
  stage: deploy
  script: [x]
  dependencies: []
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
  stage: deploy
  script: [x]
  needs: [unparsable]
loop-a:
  script: [x]
  needs: [loop-b]
loop-b:
  script: [x]
  needs: [loop-a]
needs-docs:
  stage: deploy
  script: [x]
  needs: [docs]
"#;

    /// (job, waits for, receives, needed) of each step planning `target`, with `docs` out
    /// of the pipeline (a branch).
    type Row = (String, Vec<String>, Vec<String>, bool);

    fn rows(target: &str) -> Result<Vec<Row>, PipelineError> {
        let p = Pipeline::parse(PIPELINE).unwrap();
        let targets = p.select(target, &[])?;
        let plan = plan(&p, &targets, &mut |job| Ok(job.name != "docs"))?;
        Ok(plan
            .steps
            .into_iter()
            .map(|s| (s.job.name.clone(), s.waits_for, s.receives, s.needed))
            .collect())
    }

    fn owned(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_dag_job_waits_for_its_needs_and_receives_those_with_artifacts() {
        assert_eq!(
            rows("package").unwrap(),
            [
                ("compile: [amd64]".into(), vec![], vec![], true),
                (
                    "test".into(),
                    owned(&["compile: [amd64]"]),
                    owned(&["compile: [amd64]"]),
                    true
                ),
                ("assets".into(), vec![], vec![], true),
                (
                    "package".into(),
                    owned(&["test", "assets"]),
                    owned(&["test"]),
                    false
                ),
            ]
        );
    }

    #[test]
    fn a_stage_job_waits_for_every_earlier_stage_and_dependencies_narrow_what_it_receives() {
        let steps = rows("report").unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "compile: [amd64]",
                "compile: [arm64]",
                "assets",
                "test",
                "report"
            ]
        );
        let report = steps.last().unwrap();
        assert_eq!(
            report.1,
            owned(&["compile: [amd64]", "compile: [arm64]", "assets", "test"])
        );
        assert_eq!(report.2, owned(&["assets"]));
        // `needs: []` waits for nothing, so `dependencies:` has nothing to narrow.
        assert_eq!(
            rows("alone").unwrap(),
            [("alone".into(), vec![], vec![], false)]
        );
        let none = rows("nothing-downloaded").unwrap();
        assert_eq!(none.last().unwrap().2, Vec::<String>::new());
        assert_eq!(none.len(), 5);
    }

    #[test]
    fn missing_excluded_looping_and_broken_needs_are_errors_of_the_job() {
        let err = rows("broken").unwrap_err().to_string();
        assert!(
            err.contains("`broken`") && err.contains("undefined need: nothing"),
            "{err}"
        );
        let err = rows("uses-broken").unwrap_err().to_string();
        assert!(
            err.contains("`uses-broken`") && err.contains("undefined need: nothing"),
            "{err}"
        );
        let err = rows("uses-unparsable").unwrap_err().to_string();
        assert!(
            err.contains("`uses-unparsable`")
                && err.contains("cannot run")
                && err.contains(".missing"),
            "{err}"
        );
        let err = rows("loop-a").unwrap_err().to_string();
        assert!(err.contains("circular dependency"), "{err}");
        let err = rows("needs-docs").unwrap_err().to_string();
        assert!(
            err.contains("rules leave out") && err.contains("optional"),
            "{err}"
        );
    }
}
