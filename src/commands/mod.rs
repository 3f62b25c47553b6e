//! Operator commands on the same binary, outside GitLab: `release`, `plan`, `rollback`,
//! `continue`, `doctor`, `prune`. Their inputs are flags (or the job variables' names in the environment); each
//! command builds its own typed request, and every error gets its exit code in one place,
//! [`CommandError::exit_code`].

mod continue_deployment;
mod doctor;
mod exit;
mod plan;
mod prune;
mod release;
mod rollback;
mod runner_config;

pub use continue_deployment::continue_deployment;
pub use doctor::doctor;
pub use exit::{doctor_exit_code, CommandError, EXIT_FAILED, EXIT_HOST, EXIT_USAGE};
pub use plan::plan;
pub use prune::{prune, PruneOptions};
pub use release::{release, ReleaseOptions};
pub use rollback::rollback;
pub use runner_config::runner_config;

use tokio::signal::unix::{signal, SignalKind};

use crate::docker::Cancel;
use crate::joblog::{Format, JobLog};
use crate::release::inputs::{Input, InputSource};
use crate::settings::{ReleaseSettings, TagVerdict};

/// The release inputs an operator gives as flags (clap fills them from the environment
/// variables of the same meaning when a flag is absent).
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `--registry`.
    pub registry: Option<String>,
    /// `--repository`.
    pub repository: Option<String>,
    /// `--cluster`.
    pub cluster: Option<String>,
    /// `--service`.
    pub service: Option<String>,
    /// `--task-definition`.
    pub task_definition: Option<String>,
    /// `--container`.
    pub container: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--tag`.
    pub tag: Option<String>,
    /// `--deployment` (`continue`).
    pub deployment: Option<String>,
}

/// Inputs without a flag come from this process's environment, under the job variables'
/// names; keys are left to the SDK's own chain, which reads them from there too.
fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl InputSource for Target {
    fn value(&self, input: Input) -> Option<String> {
        let flag = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        match input {
            Input::Registry => flag(&self.registry),
            Input::Repository => flag(&self.repository),
            Input::Cluster => flag(&self.cluster),
            Input::Service => flag(&self.service),
            Input::TaskDefinition => flag(&self.task_definition),
            Input::Container => flag(&self.container),
            Input::Region => flag(&self.region).or_else(|| environment("AWS_REGION")),
            Input::RolloutTimeout => environment("ECS_ROLLOUT_TIMEOUT"),
            Input::Rollback => environment("ECS_ROLLBACK"),
            Input::OnPauseHook => environment("ECS_ON_PAUSE_HOOK"),
            Input::PreDeployCommand => environment("ECS_PRE_DEPLOY_COMMAND"),
            Input::PreDeployTimeout => environment("ECS_PRE_DEPLOY_TIMEOUT"),
            // `continue --rollback` is typed by the command line, not read as text.
            Input::HookAction => None,
            Input::ServiceDeployment => flag(&self.deployment),
            Input::Dockerfile => environment("DOCKERFILE"),
            Input::BuildContext => environment("DOCKER_BUILD_CONTEXT"),
            Input::BuildArgs => environment("DOCKER_BUILD_ARGS"),
            Input::BuildTarget => environment("DOCKER_BUILD_TARGET"),
            Input::BuildSecrets => environment("DOCKER_BUILD_SECRETS"),
            Input::RoleArn => environment("AWS_ROLE_ARN"),
            Input::IdToken => environment("AWS_ID_TOKEN"),
            Input::AccessKeyId | Input::SecretAccessKey | Input::SessionToken => None,
        }
    }

    fn name(&self, input: Input) -> String {
        flag_name(input).to_string()
    }

    fn variable(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn advice(&self) -> &'static str {
        "Give them as flags (see --help) or in the environment"
    }
}

/// How a terminal names an input: its flag, or the environment variable of an input that
/// has none.
pub fn flag_name(input: Input) -> &'static str {
    match input {
        Input::Registry => "--registry",
        Input::Repository => "--repository",
        Input::Cluster => "--cluster",
        Input::Service => "--service",
        Input::TaskDefinition => "--task-definition",
        Input::Container => "--container",
        Input::Region => "--region",
        Input::HookAction => "--rollback",
        Input::ServiceDeployment => "--deployment",
        other => other.job_variable(),
    }
}

/// The error as a terminal reads it: inputs named by their flags.
pub fn operator_message(e: &CommandError) -> String {
    match e {
        CommandError::Release(release) => release.describe(&|input| flag_name(input).to_string()),
        other => other.to_string(),
    }
}

impl Target {
    /// The version tag, refused unless the release settings would release it.
    fn release_tag(&self, settings: &ReleaseSettings) -> Result<String, CommandError> {
        let tag = self
            .tag
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or(CommandError::MissingTag)?;
        match settings.judge_tag(&tag) {
            TagVerdict::Releasable => Ok(tag),
            verdict => Err(CommandError::TagRefused {
                tag,
                verdict,
                pattern: settings.tag_pattern.as_str().to_string(),
            }),
        }
    }
}

/// The commands' output on stdout: for the terminal it goes to (plain when piped or
/// `NO_COLOR` is set), masking the ID token given in the environment.
pub fn operator_log() -> JobLog {
    JobLog::operator(Format::for_operator(), environment("AWS_ID_TOKEN"))
}

/// Completes on SIGINT or SIGTERM.
fn interrupt() -> Result<Cancel, CommandError> {
    let install = |kind| {
        signal(kind).map_err(|source| CommandError::Host {
            action: "install a signal handler".into(),
            source,
        })
    };
    let (mut int, mut term) = (
        install(SignalKind::interrupt())?,
        install(SignalKind::terminate())?,
    );
    Ok(Box::pin(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }))
}

/// A private directory for token files, removed when dropped.
fn temp_dir() -> Result<tempfile::TempDir, CommandError> {
    tempfile::tempdir().map_err(|source| CommandError::Host {
        action: "create a temporary directory".into(),
        source,
    })
}
