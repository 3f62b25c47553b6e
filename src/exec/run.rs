//! Running `exec JOB`: the instances it names that the ref's rules keep, the jobs they need
//! first (in dependency order, in the same project volumes), each through the runner
//! stand-in; artifacts passed on by job id and dotenv reports read after each needed job.

use std::collections::HashMap;
use std::path::{Component, Path};

use super::pipeline::{
    plan, AllowFailure, ArtifactsDef, Decision, JobDef, PipelineError, Step, VarDef, When,
};
use super::runner::{Cancel, Dependency, Job, JobResult, Runner, Status};
use super::schedule::{self, Outcome, Verdict};
use super::{dotenv, interrupted, Exec, ExecError};
use crate::docker::ProjectVolumes;
use crate::git::short;
use crate::release::trigger::{self, Trigger};
use crate::settings::Settings;

/// What a finished job left for the jobs after it.
struct Ran {
    id: u64,
    /// It uploaded an artifacts archive.
    archive: bool,
    /// Its dotenv variables.
    dotenv: Vec<VarDef>,
}

/// Runs `name` (and what it waits for) with `runner`, whose stages read `settings`.
pub(super) fn run(
    exec: &Exec,
    name: &str,
    runner: &Runner,
    settings: &Path,
) -> Result<i32, ExecError> {
    let settings = Settings::from_file(settings)?;
    let targets = exec
        .pipeline
        .select(name, &exec.req.matrix)
        .map_err(|e| exec.pipeline_error(e))?;
    let mut assembler = exec.assembler(runner);
    let mut decisions: HashMap<String, Decision> = HashMap::new();
    let mut runnable = Vec::new();
    for target in targets {
        not_acted_on(target);
        match assembler.decide(target, exec.repository)? {
            Decision::Excluded(why) => println!(
                "Job `{}` is not run for {} `{}`: its rules exclude it ({why})",
                target.name,
                exec.ref_kind(),
                exec.commit.ref_name
            ),
            run => {
                decisions.insert(target.name.clone(), run);
                runnable.push(target);
            }
        }
    }
    if runnable.is_empty() {
        return Ok(0);
    }
    let plan = plan(exec.pipeline, &runnable, &mut |job| match assembler
        .decide(job, exec.repository)
    {
        Ok(Decision::Excluded(_)) => Ok(false),
        Ok(run) => {
            decisions.insert(job.name.clone(), run);
            Ok(true)
        }
        Err(ExecError::Pipeline { source, .. }) => Err(source),
        Err(other) => Err(PipelineError::Repository {
            job: job.name.clone(),
            message: other.to_string(),
        }),
    })
    .map_err(|e| exec.pipeline_error(e))?;
    for line in &plan.left_out {
        println!("WARNING: {line}");
    }
    let steps = &plan.steps;
    if steps.len() > 1 {
        println!(
            "Running {} jobs in this order: {}",
            steps.len(),
            steps
                .iter()
                .map(|s| format!("`{}`", s.job.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut ran: HashMap<String, Ran> = HashMap::new();
    let mut outcomes: HashMap<String, Outcome> = HashMap::new();
    // The exit code of the failure that kept each skipped job from running.
    let mut skipped_by: HashMap<String, i32> = HashMap::new();
    let mut exit = 0;
    for step in steps {
        // Every planned job was decided: the targets before planning, the jobs they wait
        // for while planning.
        let Some(Decision::Run {
            when,
            variables: rule_vars,
            allow_failure,
        }) = decisions.get(&step.job.name)
        else {
            return Err(exec.pipeline_error(PipelineError::Needs {
                job: step.job.name.clone(),
                message: "was planned without its rules being evaluated".into(),
            }));
        };
        let waits_for: Vec<(&str, Outcome)> = step
            .waits_for
            .iter()
            .filter_map(|n| outcomes.get(n).map(|o| (n.as_str(), *o)))
            .collect();
        match schedule::verdict(*when, &waits_for, step.dag) {
            Verdict::Skip(why) => {
                // A job skipped because of a failure passes that failure's code on.
                let code = schedule::failure_code(&waits_for).or_else(|| {
                    step.waits_for
                        .iter()
                        .find_map(|n| skipped_by.get(n).copied())
                });
                if let Some(code) = code {
                    skipped_by.insert(step.job.name.clone(), code);
                }
                match code {
                    Some(_) => println!("\x1b[31;1mERROR: job `{}` is not run: {why}\x1b[0;m", step.job.name),
                    None => println!("Job `{}` is not run: {why}", step.job.name),
                }
                if !step.needed && exit == 0 {
                    exit = code.unwrap_or(0);
                }
                outcomes.insert(step.job.name.clone(), Outcome::Skipped);
                continue;
            }
            Verdict::Run => match (when, step.needed) {
                (When::Manual, true) if !step.named_in_needs && *allow_failure != AllowFailure::No => {
                    println!(
                        "Manual job `{}` is not played: it may fail, so on GitLab the later stages go on without it",
                        step.job.name
                    );
                    outcomes.insert(step.job.name.clone(), Outcome::Ignored);
                    continue;
                }
                (When::Manual, true) => println!(
                    "Playing manual job `{}`: the job asked for waits for it (on GitLab, until someone plays it)",
                    step.job.name
                ),
                (When::Manual, false) => println!(
                    "Playing manual job `{}`, as its play button on GitLab would",
                    step.job.name
                ),
                (When::Delayed, _) => println!(
                    "Job `{}` is `when: delayed`: exec starts it at once",
                    step.job.name
                ),
                _ => {}
            },
        };
        let received: Vec<&Ran> = step.receives.iter().filter_map(|n| ran.get(n)).collect();
        let dotenv: Vec<VarDef> = received.iter().flat_map(|r| r.dotenv.clone()).collect();
        let dependencies = step
            .receives
            .iter()
            .filter_map(|n| ran.get(n).filter(|r| r.archive).map(|r| (n, r.id)))
            .map(|(n, id)| Dependency {
                id,
                name: n.clone(),
            })
            .collect();
        let job = assembler.job(step.job, rule_vars, &dotenv, dependencies)?;
        announce(exec, step, &job, &settings);
        let result = runner.drive(&job, Cancel::No).map_err(ExecError::Runner)?;
        let mut code = result.status.exit_code();
        let mut done = Ran {
            id: job.id,
            archive: uploads(
                step.job.artifacts.as_ref(),
                result.status == Status::Success,
            ),
            dotenv: Vec::new(),
        };
        if result.status == Status::Success {
            match dotenv_of(step.job, &job, &result, &settings, runner) {
                Ok(vars) => done.dotenv = vars,
                // GitLab refuses such a report, which fails the job.
                Err(e @ ExecError::Dotenv { .. }) => {
                    println!("\x1b[31;1mERROR: {e}\x1b[0;m");
                    code = 1;
                }
                Err(e) => return Err(e),
            }
        }
        if interrupted() {
            return Ok(code);
        }
        ran.insert(step.job.name.clone(), done);
        let outcome = match code {
            0 => Outcome::Success,
            code if allow_failure.allows(code) => {
                if step.needed {
                    println!(
                        "WARNING: needed job `{}` failed (exit code {code}); it is allowed to fail, so the jobs after it run",
                        step.job.name
                    );
                }
                Outcome::Warned
            }
            code => Outcome::Failed(code),
        };
        if !step.needed && exit == 0 {
            exit = code;
        }
        outcomes.insert(step.job.name.clone(), outcome);
    }
    Ok(exit)
}

/// Prints what is about to run, what `exec` does not act on in a needed job, and when
/// `--dry-run` has no effect on it.
fn announce(exec: &Exec, step: &Step, job: &Job, settings: &Settings) {
    let def = step.job;
    if step.needed {
        not_acted_on(def);
    }
    if exec.req.dry_run && !step.needed {
        if let Some(why) = not_a_release(job, exec, settings) {
            println!(
                "--dry-run has no effect on `{}`: it is not a release ({why}); it runs as an ordinary job",
                def.name
            );
        }
    }
    println!(
        "Running job `{}` (stage {}){} of {} for {} {} at {} through gitlab-ecs-executor",
        def.name,
        def.stage,
        match step.needed {
            true => ", needed by the job asked for,",
            false => "",
        },
        exec.file.display(),
        exec.ref_kind(),
        exec.commit.ref_name,
        short(&exec.commit.sha)
    );
}

/// Names the keys of `def` that `exec` does not act on.
fn not_acted_on(def: &JobDef) {
    if !def.not_acted_on.is_empty() {
        println!(
            "WARNING: exec does not act on these keys of `{}`: {}",
            def.name,
            def.not_acted_on.join(", ")
        );
    }
}

/// Why `job` is no release for the executor (`None` when it is, or is refused as one).
fn not_a_release(job: &Job, exec: &Exec, settings: &Settings) -> Option<String> {
    let tag = exec.commit.is_tag.then_some(exec.commit.ref_name.as_str());
    match trigger::decide(
        &job.stage,
        tag,
        job.protected,
        job.variable("ECS_EXECUTOR_NATIVE"),
        &settings.release,
    ) {
        Trigger::Release { .. } | Trigger::Refused(_) => None,
        Trigger::OptedOut => Some("it sets ECS_EXECUTOR_NATIVE=false".into()),
        Trigger::NotRelease => Some(
            match (settings.release.stages.contains_key(&job.stage), tag) {
                (false, _) => format!("its stage `{}` is not a release stage", job.stage),
                (true, None) => {
                    "it runs for a branch; releases run for version tags (--tag vX.Y.Z)".into()
                }
                (true, Some(tag)) => format!("tag `{tag}` does not match release.tag_pattern"),
            },
        ),
    }
}

/// Whether a job that succeeded (or failed) uploads an artifacts archive.
fn uploads(artifacts: Option<&ArtifactsDef>, succeeded: bool) -> bool {
    artifacts.is_some_and(|a| {
        !a.paths.is_empty()
            && match a.when.as_str() {
                "" | "on_success" => succeeded,
                "on_failure" => !succeeded,
                _ => true,
            }
    })
}

/// The variables of `def`'s dotenv reports, read from the builds volume the job used.
fn dotenv_of(
    def: &JobDef,
    job: &Job,
    result: &JobResult,
    settings: &Settings,
    runner: &Runner,
) -> Result<Vec<VarDef>, ExecError> {
    let Some(artifacts) = &def.artifacts else {
        return Ok(Vec::new());
    };
    let volume = ProjectVolumes::new(&job.identity(runner)).builds();
    let project = result
        .project_dir
        .strip_prefix(&settings.builds_dir)
        .unwrap_or(&result.project_dir)
        .to_path_buf();
    let mut vars = Vec::new();
    for file in &artifacts.dotenv {
        let bad = |message: String| ExecError::Dotenv {
            job: def.name.clone(),
            file: file.clone(),
            message,
        };
        let inside = Path::new(file)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(bad("must be a path inside the project directory".into()));
        }
        let path = project.join(file);
        let Some(text) = dotenv::read(settings, &volume, &path.to_string_lossy())? else {
            println!(
                "WARNING: job `{}`: artifacts: reports: dotenv {file} does not exist; no variables passed on",
                def.name
            );
            continue;
        };
        let parsed = dotenv::parse(&text).map_err(bad)?;
        println!(
            "Passing {} of `{}` on to the jobs that need it: {}",
            file,
            def.name,
            parsed
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        vars.extend(parsed.into_iter().map(|(key, value)| VarDef {
            key,
            value,
            raw: false,
        }));
    }
    Ok(vars)
}
