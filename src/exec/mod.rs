//! Running GitLab CI jobs on this machine through the executor, the way gitlab-runner would:
//! `gitlab-ecs-executor exec <job>` (gitlab-runner's own `exec` was removed).
//!
//! The pipeline file and its includes are read from the working tree (`pipeline/`); the jobs
//! check out the commit of the ref they run for (`checkout.rs`), as GitLab's would. GitLab's
//! part is played here: which jobs run for the ref and in what order (`pipeline/`), each
//! job's payload and variables (`assemble.rs`), dotenv reports passed on (`dotenv.rs`);
//! the runner's part by the stand-in in `runner/`, which drives this same binary through
//! config / prepare / run / cleanup (`run.rs`). `--list` shows the jobs (`list.rs`).

mod assemble;
mod checkout;
mod dotenv;
mod list;
mod overlay;
pub mod pipeline;
pub mod rules;
mod run;
pub mod runner;
mod schedule;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::docker::DockerError;
use crate::git::{short, GitError};
use crate::git::{Checkout, Commit};
use crate::settings::SettingsError;
use assemble::Assembler;
use checkout::AtCommit;
use pipeline::{Decision, Pipeline, PipelineError, VarDef};
use runner::Runner;

/// Set by the SIGINT handler: Ctrl-C cancels the job like GitLab's cancel button.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// `exec` cannot run the job.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The pipeline file, or the job, is not usable.
    #[error("{path}: {source}")]
    Pipeline {
        /// The pipeline file.
        path: PathBuf,
        /// Why.
        source: PipelineError,
    },
    /// The project is not a usable git checkout, or `--tag` names no tag of it.
    #[error(transparent)]
    Git(#[from] GitError),
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// The executor settings `exec` runs the jobs with are not usable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The project's volume could not be read (a dotenv report).
    #[error(transparent)]
    Docker(Box<DockerError>),
    /// A needed job's dotenv report is not `KEY=VALUE` lines.
    #[error("job `{job}`: artifacts: reports: dotenv {file}: {message}")]
    Dotenv {
        /// The job.
        job: String,
        /// The report file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The local runner could not work.
    #[error("the local runner failed: {0}")]
    Runner(std::io::Error),
}

impl ExecError {
    /// The process exit code for this error (docs/exec.md, "Exit codes"): 2 when `exec`
    /// cannot start from what it was given, 1 for a needed job's bad dotenv report, 3 when
    /// this host cannot run it (settings, the engine, the local runner).
    pub fn exit_code(&self) -> u8 {
        match self {
            ExecError::Read { .. }
            | ExecError::Pipeline { .. }
            | ExecError::Git(_)
            | ExecError::Usage(_) => 2,
            ExecError::Dotenv { .. } => 1,
            ExecError::Settings(_) | ExecError::Docker(_) | ExecError::Runner(_) => 3,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// Job name (a parallel job's name runs all its instances); `None` with `list`.
    pub job: Option<String>,
    /// The pipeline file.
    pub file: PathBuf,
    /// Run as a tag pipeline for this tag, at its commit.
    pub tag: Option<String>,
    /// Run as a branch pipeline for this branch (default: the checkout's branch).
    pub branch: Option<String>,
    /// Extra variables, highest precedence.
    pub vars: Vec<(String, String)>,
    /// Only the matrix instances with these values.
    pub matrix: Vec<(String, String)>,
    /// List the jobs instead of running one.
    pub list: bool,
    /// Release jobs stop before their first change.
    pub dry_run: bool,
    /// Executor settings passed to every stage.
    pub settings: Option<PathBuf>,
    /// Checkouts of other projects for `include: project`, by project path.
    pub include_projects: Vec<(String, PathBuf)>,
}

/// The inputs of one `exec`, resolved once.
struct Exec<'a> {
    req: &'a ExecRequest,
    /// The pipeline file, absolute.
    file: PathBuf,
    checkout: &'a Checkout,
    commit: &'a Commit,
    pipeline: &'a Pipeline,
    repository: &'a AtCommit<'a>,
    /// The matching `workflow:` rule's variables, or why GitLab creates no pipeline.
    workflow: Result<Vec<VarDef>, String>,
}

/// Runs a job of a pipeline file (and the jobs it needs, first) through config / prepare /
/// run / cleanup, or lists the jobs; returns the exit code: 0 on success (or when the
/// job's rules exclude it), the job's own code on a job failure, 2 on a system failure.
pub fn exec(req: &ExecRequest) -> Result<i32, ExecError> {
    if req.tag.is_some() && req.branch.is_some() {
        return Err(ExecError::Usage(
            "--tag and --branch exclude each other".into(),
        ));
    }
    // Stages run in the runner's temp directory: every path must be absolute.
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|source| ExecError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let file = absolute(&req.file)?;
    let settings = req.settings.as_deref().map(absolute).transpose()?;
    let checkout = Checkout::open(&file)?;
    let commit = checkout.resolve(req.tag.as_deref(), req.branch.as_deref())?;
    let name = file
        .strip_prefix(&checkout.root)
        .unwrap_or(&file)
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&file).map_err(|source| ExecError::Read {
        path: file.clone(),
        source,
    })?;
    let projects = req
        .include_projects
        .iter()
        .map(|(project, dir)| Ok((project.clone(), absolute(dir)?)))
        .collect::<Result<Vec<_>, ExecError>>()?;
    let include_variables = {
        let runner = listing_runner()?;
        Assembler::new(&file, &checkout, &commit, &runner, &req.vars).include_variables()?
    };
    let tree = checkout.working_tree(&projects, &include_variables);
    let pipeline = Pipeline::load(&text, &name, &tree).map_err(|source| ExecError::Pipeline {
        path: file.clone(),
        source,
    })?;
    let repository = checkout.at(&commit);
    let mut exec = Exec {
        req,
        file,
        checkout: &checkout,
        commit: &commit,
        pipeline: &pipeline,
        repository: &repository,
        workflow: Ok(Vec::new()),
    };
    exec.report_sources(&name)?;
    exec.workflow = exec.decide_workflow()?;
    if let Err(why) = &exec.workflow {
        println!(
            "GitLab creates no pipeline for {} `{}`: workflow: {why}",
            exec.ref_kind(),
            commit.ref_name
        );
    }
    if req.list {
        return exec.list();
    }
    let job = req.job.as_deref().ok_or_else(|| {
        ExecError::Usage("name the job to run (exec --list shows the jobs)".into())
    })?;
    if exec.workflow.is_err() {
        // Named anyway, so a typo is still said.
        pipeline
            .select(job, &req.matrix)
            .map_err(|e| exec.pipeline_error(e))?;
        println!("Job `{job}` is not run: there is no pipeline for it to run in");
        return Ok(0);
    }
    let overlay = overlay::settings_with_checkout(
        settings.as_deref(),
        &checkout.git_dir,
        &checkout.project_path,
    )?;
    let binary = std::env::current_exe().map_err(ExecError::Runner)?;
    let mut runner = Runner::new(&binary, Some(overlay.path()));
    if req.dry_run {
        runner.run_args.push("--dry-run".into());
    }
    runner.runner_id = 0;
    runner.short_token = "local".into();
    runner.echo = true;
    runner.cancel_flag = Some(&INTERRUPTED);
    install_interrupt_handler();
    run::run(&exec, job, &runner, overlay.path())
}

impl Exec<'_> {
    /// Says once where the pipeline and the sources come from, and what the jobs will not
    /// see or `exec` will not act on.
    fn report_sources(&self, name: &str) -> Result<(), ExecError> {
        let (pipeline, commit) = (self.pipeline, self.commit);
        let mut files = vec![name.to_string()];
        files.extend(pipeline.included.iter().cloned());
        for file in &pipeline.from_projects {
            println!("Included {file} from its checkout given with --include-project (GitLab reads it from that project)");
        }
        println!(
            "Pipeline {} read from the working tree; the jobs check out commit {} ({} `{}`), as on a runner",
            match pipeline.included.is_empty() {
                true => name.to_string(),
                false => format!("{name} (with {})", pipeline.included.join(", ")),
            },
            short(&commit.sha),
            self.ref_kind(),
            commit.ref_name
        );
        if let Some(note) = &commit.note {
            println!("Note: {note}");
        }
        let differing = self.checkout.differing(&commit.sha, &files)?;
        if !differing.is_empty() {
            println!(
                "WARNING: {} in the working tree differs from commit {}: GitLab would run the committed version",
                differing.join(", "),
                short(&commit.sha)
            );
        }
        let uncommitted = self.checkout.uncommitted()?;
        if !uncommitted.is_empty() {
            let shown: Vec<&str> = uncommitted.iter().take(5).map(String::as_str).collect();
            println!(
                "WARNING: the working tree has uncommitted changes to tracked files ({}{}): the jobs check out commit {} and do not see them",
                shown.join(", "),
                if uncommitted.len() > 5 { ", …" } else { "" },
                short(&commit.sha)
            );
        }
        if !pipeline.not_acted_on.is_empty() {
            println!(
                "WARNING: exec does not act on: {}",
                pipeline.not_acted_on.join(", ")
            );
        }
        let compares = pipeline.jobs.iter().any(|j| {
            j.def.as_ref().is_ok_and(|d| {
                d.rules
                    .iter()
                    .flatten()
                    .any(|r| r.changes.as_ref().is_some_and(|c| c.compare_to.is_none()))
            })
        });
        if compares {
            println!("{}", self.repository.base());
        }
        Ok(())
    }

    /// Whether GitLab creates the pipeline (`workflow: rules:`), and the variables of
    /// the rule that says so, `CI_PIPELINE_NAME` among them.
    fn decide_workflow(&self) -> Result<Result<Vec<VarDef>, String>, ExecError> {
        let Some(workflow) = &self.pipeline.workflow else {
            return Ok(Ok(Vec::new()));
        };
        let runner = listing_runner()?;
        let mut assembler = self.assembler(&runner);
        let job = workflow.as_job(&self.pipeline.variables);
        Ok(match assembler.decide(&job, self.repository)? {
            Decision::Run { mut variables, .. } => {
                variables.extend(workflow.name.iter().map(|name| VarDef {
                    key: "CI_PIPELINE_NAME".into(),
                    value: name.clone(),
                    raw: false,
                }));
                Ok(variables)
            }
            Decision::Excluded(why) => Err(format!("rules: {why}")),
        })
    }

    /// `--list`.
    fn list(&self) -> Result<i32, ExecError> {
        let runner = listing_runner()?;
        let mut assembler = self.assembler(&runner);
        println!("Jobs for {} `{}`:", self.ref_kind(), self.commit.ref_name);
        let created = self.workflow.is_ok();
        for line in list::listing(self.pipeline, &mut assembler, self.repository, created)? {
            println!("  {line}");
        }
        Ok(0)
    }

    fn assembler<'r>(&'r self, runner: &'r Runner) -> Assembler<'r> {
        let mut assembler = Assembler::new(
            &self.file,
            self.checkout,
            self.commit,
            runner,
            &self.req.vars,
        );
        assembler.workflow_vars = self.workflow.clone().unwrap_or_default();
        assembler
    }

    fn ref_kind(&self) -> &'static str {
        match self.commit.is_tag {
            true => "tag",
            false => "branch",
        }
    }

    fn pipeline_error(&self, source: PipelineError) -> ExecError {
        ExecError::Pipeline {
            path: self.file.clone(),
            source,
        }
    }
}

/// The runner the jobs are made for when they are only decided and listed.
fn listing_runner() -> Result<Runner, ExecError> {
    let binary = std::env::current_exe().map_err(ExecError::Runner)?;
    let mut runner = Runner::new(&binary, None);
    runner.runner_id = 0;
    runner.short_token = "local".into();
    Ok(runner)
}

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
}

/// Whether Ctrl-C cancelled the run.
fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_say_whose_the_problem_is() {
        assert_eq!(
            ExecError::Usage("--matrix needs KEY=VALUE".into()).exit_code(),
            2
        );
        let dotenv = ExecError::Dotenv {
            job: "compile".into(),
            file: "build.env".into(),
            message: "line 2 is not KEY=VALUE".into(),
        };
        assert_eq!(dotenv.exit_code(), 1);
        assert_eq!(
            ExecError::Runner(std::io::Error::other("no fork")).exit_code(),
            3
        );
    }
}
