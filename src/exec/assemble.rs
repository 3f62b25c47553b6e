//! A job of the pipeline made into the job GitLab would hand the runner: its id, commit and
//! ref, image and services (names as written: the runner expands them), its variables as
//! GitLab expands them (predefined, global, job, matrix, rule, dotenv of needed jobs, then
//! `--var`, later winning), caches, artifacts, the jobs whose artifacts it downloads, and
//! its timeout. Also where GitLab decides whether the job is in the pipeline at all.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::pipeline::expand::expand_all;
use super::pipeline::{CacheKey, Decision, JobDef, PipelineError, Repository, RuleContext, VarDef};
use super::runner::{
    self, ArtifactDef, CacheDef, Dependency, GitSource, Job, Runner, Service, Var,
};
use super::ExecError;
use crate::git::{Checkout, Commit};

/// GitLab's default job timeout.
const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(3600);

/// Makes runner jobs of pipeline jobs for one commit; a job keeps its id once made.
pub struct Assembler<'a> {
    /// The pipeline file, for errors.
    pub file: &'a Path,
    /// The checkout.
    pub checkout: &'a Checkout,
    /// The pipeline's commit.
    pub commit: &'a Commit,
    /// The runner that will run the jobs (its id is a predefined variable).
    pub runner: &'a Runner,
    /// `--var` values: pipeline variables, above every other.
    pub cli_vars: &'a [(String, String)],
    /// The variables of the matching `workflow:` rule, for every job.
    pub workflow_vars: Vec<VarDef>,
    /// Jobs made so far, by name.
    made: HashMap<String, Job>,
}

impl<'a> Assembler<'a> {
    /// An assembler for `commit` of `checkout`.
    pub fn new(
        file: &'a Path,
        checkout: &'a Checkout,
        commit: &'a Commit,
        runner: &'a Runner,
        cli_vars: &'a [(String, String)],
    ) -> Self {
        Assembler {
            file,
            checkout,
            commit,
            runner,
            cli_vars,
            workflow_vars: Vec::new(),
            made: HashMap::new(),
        }
    }

    /// Whether `def` is in the pipeline for this commit and ref, with GitLab's variables
    /// (predefined, the file's, `--var`) as its rules see them.
    pub fn decide(
        &mut self,
        def: &JobDef,
        repository: &dyn Repository,
    ) -> Result<Decision, ExecError> {
        let (_, vars) = self.expanded(def, &[])?;
        let lookup = |name: &str| {
            vars.iter()
                .rev()
                .find(|v| v.key == name)
                .map(|v| v.value.clone())
        };
        def.decide(&RuleContext {
            var: &lookup,
            repository,
        })
        .map_err(|source| self.pipeline_error(source))
    }

    /// The variables an `include:` path may name: GitLab's predefined ones and `--var`.
    pub fn include_variables(&mut self) -> Result<Vec<VarDef>, ExecError> {
        let bare = JobDef::bare("(include)", &[], None);
        self.expanded(&bare, &[]).map(|(_, vars)| vars)
    }

    /// The runner job for `def` with the variables of its matching rule and of the dotenv
    /// reports it receives, downloading the artifacts of `dependencies`.
    pub fn job(
        &mut self,
        def: &JobDef,
        rule_vars: &[VarDef],
        dotenv: &[VarDef],
        dependencies: Vec<Dependency>,
    ) -> Result<Job, ExecError> {
        let extra: Vec<VarDef> = rule_vars.iter().chain(dotenv).cloned().collect();
        // The runner adds the predefined variables itself.
        let (predefined, expanded) = self.expanded(def, &extra)?;
        let variables = expanded
            .into_iter()
            .skip(predefined)
            .map(|v| Var {
                key: v.key,
                value: v.value,
                masked: false,
                file: false,
                raw: v.raw,
                setting: false,
            })
            .collect();
        let cache = def
            .cache
            .iter()
            .map(|c| {
                let key = match &c.key {
                    CacheKey::Literal(key) => key.clone(),
                    CacheKey::Files { files, prefix } => {
                        self.checkout
                            .files_cache_key(&self.commit.sha, files, prefix.as_deref())?
                    }
                };
                Ok(CacheDef {
                    key,
                    paths: c.paths.clone(),
                    policy: c.policy.clone(),
                    when: c.when.clone(),
                    untracked: c.untracked,
                })
            })
            .collect::<Result<Vec<_>, ExecError>>()?;
        let artifacts = def
            .artifacts
            .iter()
            .filter(|a| !a.paths.is_empty())
            .map(|a| ArtifactDef {
                name: a.name.clone(),
                paths: a.paths.clone(),
                when: a.when.clone(),
                expire_in: a.expire_in.clone(),
            })
            .collect();
        let mut job = self.skeleton(def).clone();
        job.variables = variables;
        job.cache = cache;
        job.artifacts = artifacts;
        job.dependencies = dependencies;
        Ok(job)
    }

    /// The predefined variables GitLab sends, then the job's (`extra` after its own), then
    /// `--var`, expanded as GitLab expands them; and how many of them are predefined.
    fn expanded(
        &mut self,
        def: &JobDef,
        extra: &[VarDef],
    ) -> Result<(usize, Vec<VarDef>), ExecError> {
        let runner = self.runner;
        let predefined: Vec<VarDef> = self
            .skeleton(def)
            .gitlab_variables(runner)
            .into_iter()
            .map(|v| VarDef {
                key: v.key,
                value: v.value,
                raw: false,
            })
            .collect();
        let count = predefined.len();
        let cli = self.cli_vars.iter().map(|(k, v)| VarDef {
            key: k.clone(),
            value: v.clone(),
            raw: false,
        });
        // The workflow's variables override the global ones and yield to the job's.
        let (globals, own) = def.variables.split_at(def.globals.min(def.variables.len()));
        let all: Vec<VarDef> = predefined
            .into_iter()
            .chain(globals.iter().cloned())
            .chain(self.workflow_vars.iter().cloned())
            .chain(own.iter().cloned())
            .chain(extra.iter().cloned())
            .chain(cli)
            .collect();
        let expanded = expand_all(&all).map_err(|message| {
            self.pipeline_error(PipelineError::Variables {
                job: def.name.clone(),
                message,
            })
        })?;
        Ok((count, expanded))
    }

    /// The job without variables, caches, artifacts or dependencies; made once per name.
    fn skeleton(&mut self, def: &JobDef) -> &Job {
        let commit = self.commit;
        let checkout = self.checkout;
        self.made.entry(def.name.clone()).or_insert_with(|| {
            let image = def.image.as_ref();
            Job {
                id: runner::unique_id(),
                project_id: project_id(&checkout.project_path),
                project_path: checkout.project_path.clone(),
                concurrent_id: 0,
                project_slot: 0,
                protected: false,
                name: def.name.clone(),
                stage: def.stage.clone(),
                commit_sha: commit.sha.clone(),
                commit_timestamp: commit.timestamp.clone(),
                commit_message: commit.message.clone(),
                author: (commit.author_name.clone(), commit.author_email.clone()),
                image: image.map(|i| i.name.clone()),
                image_entrypoint: image.and_then(|i| i.entrypoint.clone()),
                pull_policy: image.map(|i| i.pull_policy.clone()).unwrap_or_default(),
                image_user: image.and_then(|i| i.user.clone()),
                services: def
                    .services
                    .iter()
                    .map(|s| Service {
                        name: s.name.clone(),
                        alias: s.alias.clone(),
                        entrypoint: s.entrypoint.clone(),
                        command: s.command.clone(),
                        variables: s.variables.clone(),
                        user: s.user.clone(),
                    })
                    .collect(),
                variables: Vec::new(),
                script: def.script.clone(),
                steps: Vec::new(),
                after_script: def.after_script.clone(),
                pre_get_sources: def.pre_get_sources.clone(),
                post_get_sources: Vec::new(),
                cache: Vec::new(),
                artifacts: Vec::new(),
                dependencies: Vec::new(),
                git: Some(GitSource {
                    repo: checkout.git_dir.clone(),
                    sha: commit.sha.clone(),
                    ref_name: commit.ref_name.clone(),
                    is_tag: commit.is_tag,
                }),
                timeout: def.timeout.unwrap_or(DEFAULT_JOB_TIMEOUT).as_secs(),
            }
        })
    }

    fn pipeline_error(&self, source: PipelineError) -> ExecError {
        ExecError::Pipeline {
            path: self.file.to_path_buf(),
            source,
        }
    }
}

/// A project id that stays the same for a project path: GitLab's ids are not known locally.
pub fn project_id(project_path: &str) -> u64 {
    // FNV-1a, small enough to read as an id.
    let hash = project_path
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    hash % 1_000_000
}
