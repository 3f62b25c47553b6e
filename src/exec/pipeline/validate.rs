//! The checks GitLab makes across jobs before it creates a pipeline (its `YamlProcessor`
//! and job entry validations): a job's stage is one of `stages:`; `needs:` and
//! `dependencies:` name jobs that exist, in the same or an earlier stage for a need and an
//! earlier one for a dependency; a job with `needs:` lists its `dependencies:` among them.
//! GitLab refuses the whole file for any of these; `exec` makes each the error of the job
//! that has it (the others still run) and says that GitLab would refuse the file.

use super::{JobDef, Pipeline, PipelineError, PipelineJob};

/// Turns every job that fails a check into that job's error.
pub(super) fn check(pipeline: &mut Pipeline) {
    let problems: Vec<(usize, String)> = pipeline
        .jobs
        .iter()
        .enumerate()
        .filter_map(|(i, job)| {
            let def = job.def.as_ref().ok()?;
            problem(pipeline, def).map(|p| (i, p))
        })
        .collect();
    for (i, message) in problems {
        let job = &mut pipeline.jobs[i];
        job.def = Err(PipelineError::Refused {
            job: job.name.clone(),
            message,
        });
    }
}

/// The first check `def` fails, in GitLab's words.
fn problem(pipeline: &Pipeline, def: &JobDef) -> Option<String> {
    let known = |stage: &str| {
        matches!(stage, ".pre" | ".post") || pipeline.stages.iter().any(|s| s == stage)
    };
    if !known(&def.stage) {
        return Some(format!(
            "chosen stage `{}` does not exist; available stages are .pre, {}, .post",
            def.stage,
            pipeline.stages.join(", ")
        ));
    }
    let own = pipeline.stage_index(&def.stage);
    let stage_of = |job: &PipelineJob| job.stage.as_deref().map(|s| pipeline.stage_index(s));
    for need in def.needs.iter().flatten() {
        let found = pipeline.instances(&need.job);
        if found.is_empty() {
            if need.optional {
                continue;
            }
            return Some(format!("undefined need: {}", need.job));
        }
        if found.iter().any(|j| stage_of(j).is_some_and(|s| s > own)) {
            return Some(format!(
                "need {} is not defined in current or prior stages",
                need.job
            ));
        }
    }
    for dependency in def.dependencies.iter().flatten() {
        let found = pipeline.instances(dependency);
        if found.is_empty() {
            return Some(format!("undefined dependency: {dependency}"));
        }
        if found.iter().any(|j| stage_of(j).is_some_and(|s| s >= own)) {
            return Some(format!(
                "dependency {dependency} is not defined in prior stages"
            ));
        }
    }
    let needs: Vec<&str> = def.needs.iter().flatten().map(|n| n.job.as_str()).collect();
    if !needs.is_empty() {
        let missing: Vec<&str> = def
            .dependencies
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|d| !needs.contains(d))
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "dependencies the {} should be part of needs",
                missing.join(", ")
            ));
        }
    }
    if needs_loop(pipeline, def, &mut Vec::new()) {
        return Some("circular dependency detected in `needs`".into());
    }
    None
}

/// Whether following `needs:` from `def` comes back to a job on `path` or to `def`.
fn needs_loop<'p>(pipeline: &'p Pipeline, def: &'p JobDef, path: &mut Vec<&'p str>) -> bool {
    if path.contains(&def.name.as_str()) {
        return path.first() == Some(&def.name.as_str());
    }
    path.push(&def.name);
    let found = def.needs.iter().flatten().any(|need| {
        pipeline
            .instances(&need.job)
            .iter()
            .filter_map(|j| j.def.as_ref().ok())
            .any(|next| needs_loop(pipeline, next, path))
    });
    path.pop();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str, job: &str) -> String {
        let p = Pipeline::parse(text).unwrap();
        p.job(job).unwrap_err().to_string()
    }

    #[test]
    fn what_gitlab_refuses_is_the_jobs_error() {
        let text = r#"
stages: [build, test]
compile:
  stage: build
  script: [x]
lint:
  stage: tests
  script: [x]
later:
  stage: build
  script: [x]
  needs: [unit]
unit:
  stage: test
  script: [x]
undefined:
  stage: test
  script: [x]
  needs: [nothing]
same-stage-dependency:
  stage: test
  script: [x]
  dependencies: [unit]
not-in-needs:
  stage: test
  script: [x]
  needs: [unit]
  dependencies: [compile]
loop-a:
  stage: test
  script: [x]
  needs: [loop-b]
loop-b:
  stage: test
  script: [x]
  needs: [loop-a]
fine:
  stage: test
  script: [x]
  needs: [compile, unit]
  dependencies: [compile]
"#;
        for (job, says) in [
            ("lint", "chosen stage `tests` does not exist; available stages are .pre, build, test, .post"),
            ("later", "need unit is not defined in current or prior stages"),
            ("undefined", "undefined need: nothing"),
            ("same-stage-dependency", "dependency unit is not defined in prior stages"),
            ("not-in-needs", "dependencies the compile should be part of needs"),
            ("loop-a", "circular dependency detected in `needs`"),
        ] {
            let err = error_of(text, job);
            assert!(err.contains(says) && err.contains("GitLab"), "{job}: {err}");
        }
        let p = Pipeline::parse(text).unwrap();
        assert!(p.job("fine").is_ok() && p.job("unit").is_ok());
    }
}
