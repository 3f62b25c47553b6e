//! Why a release failed: one error for every phase, each variant saying what to do.

use std::path::PathBuf;
use std::time::Duration;

use super::ecs::EcsError;
use super::image::ImageError;
use super::input::Input;
use super::verbs::rollback;
use super::{platform, strategy, taskdef};
use crate::aws::{AwsError, CallError};
use crate::docker::DockerError;

/// Why a release failed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// AWS could not be configured.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// An AWS API call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The image could not be had: built, pushed or found.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The Docker engine failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// A call of the ECS port failed.
    #[error(transparent)]
    Ecs(#[from] EcsError),
    /// The new revision cannot be derived from the service's.
    #[error(transparent)]
    TaskDefinition(#[from] taskdef::TaskDefError),
    /// The copy would drop fields of the service's revision that this binary does not know.
    #[error(
        "the service's revision {revision} uses fields this gitlab-ecs-executor {} cannot carry \
         over: {}. Nothing was registered and the service was not changed; upgrade \
         gitlab-ecs-executor",
        env!("CARGO_PKG_VERSION"),
        .fields.join(", ")
    )]
    FieldsNotCarried {
        /// `family:revision` of the base.
        revision: String,
        /// The paths that would be lost.
        fields: Vec<String>,
    },
    /// ECS registered something other than the copy that was sent.
    #[error(
        "the registered revision {revision} differs from the service's revision beyond the image: \
         {changes}. ECS stored something other than the copy that was sent; the revision was \
         deregistered and the service was not changed. Compare both revisions in the ECS \
         console before releasing again"
    )]
    UnexpectedChanges {
        /// `family:revision`.
        revision: String,
        /// The stray field changes.
        changes: String,
    },
    /// The service's task definition carries what the project's grants do not cover.
    #[error(
        "the service {service} runs {what}, which release.grants in the executor settings does \
         not grant this project for the runner host's AWS credentials: nothing was registered \
         and the service was not changed. Ask the runner's operator for a grant, or release \
         with the project's own credentials (AWS_ROLE_ARN and an `id_tokens:` variable)"
    )]
    NotGranted {
        /// The service.
        service: String,
        /// What is not granted (a family, a role).
        what: String,
    },
    /// A newer release changed the service while this one prepared.
    #[error(
        "superseded by {by}: a newer release is on the service, so this one did not update it"
    )]
    Superseded {
        /// What the service runs now.
        by: String,
    },
    /// Another deployment did not finish in time.
    #[error(
        "another deployment of the service, {what}, was still in progress after the wait \
         (ecs.wait_for_other_deployments_minutes); the service was not changed. Serialize \
         releases with GitLab's `resource_group`"
    )]
    OtherDeployment {
        /// The busy deployment.
        what: String,
    },
    /// The service is one a task definition release must not change.
    #[error(transparent)]
    Unsupported(#[from] strategy::Unsupported),
    /// The rollout deadline is shorter than the service's strategy takes by configuration.
    #[error(
        "the service deploys with {strategy}, which takes at least {} by its configuration, \
         but the rollout may take only {} (the job's timeout, ECS_ROLLOUT_TIMEOUT or \
         ecs.rollout_timeout_minutes); nothing was deployed. Raise the job's `timeout:` and \
         ECS_ROLLOUT_TIMEOUT, or set ECS_ON_PAUSE_HOOK (ecs.on_pause_hook) to `succeed` if an \
         approval gate holds the deployment",
        crate::clock::human_duration(.needs.as_secs() as i64),
        crate::clock::human_duration(.left.as_secs() as i64)
    )]
    DeadlineTooShort {
        /// The strategy, described.
        strategy: String,
        /// Its minimum duration.
        needs: Duration,
        /// The time the rollout has.
        left: Duration,
    },
    /// The rollout failed or timed out.
    #[error("the rollout failed: {reason}. {state}")]
    RolloutFailed {
        /// Why.
        reason: String,
        /// Where the service is now.
        state: String,
    },
    /// ECS rolled the deployment back (circuit breaker, alarm, lifecycle hook).
    #[error("the release was rolled back by ECS: {reason}. See the stopped tasks, hooks and events above")]
    RolledBack {
        /// What ECS reported.
        reason: String,
    },
    /// The task definition runs on a platform no image can be built for here.
    #[error(transparent)]
    UnsupportedPlatform(#[from] platform::UnsupportedPlatform),
    /// The services of one release run on different platforms.
    #[error(
        "the services of this release run on different platforms ({}): one image cannot serve \
         them; release them in separate jobs",
        .platforms.join(", ")
    )]
    MixedPlatforms {
        /// `service: platform` for each.
        platforms: Vec<String>,
    },
    /// `RunTask` started no task.
    #[error("the pre-deploy task did not start: {reason}. No service was updated")]
    TaskNotStarted {
        /// ECS's failure reason.
        reason: String,
    },
    /// The pre-deploy task failed.
    #[error(
        "the pre-deploy task {task} failed{}: {reason}. No service was updated (its log lines are \
         above)",
        .exit_code.map(|c| format!(" with exit code {c}")).unwrap_or_default()
    )]
    PreDeployFailed {
        /// The task id.
        task: String,
        /// The release container's exit code, if it ran.
        exit_code: Option<i32>,
        /// Why it stopped.
        reason: String,
    },
    /// A release to several services failed on some of them.
    #[error("{}", services_failed(.failed, .others, &job_words))]
    ServicesFailed {
        /// Each failed service and why.
        failed: Vec<ServiceFailure>,
        /// `service: what happened` for the others.
        others: Vec<String>,
    },
    /// `continue` found no approval gate to decide.
    #[error("nothing awaits approval on service {service}: {detail}")]
    NothingAwaiting {
        /// The service.
        service: String,
        /// What its deployment is doing.
        detail: String,
    },
    /// The job was cancelled before anything changed.
    #[error("the release was cancelled before it changed anything")]
    Cancelled,
    /// `ecs-release.env` could not be written.
    #[error("cannot write the release report {path}: {message}")]
    Report {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The operator's rollback has no revision to go to.
    #[error(transparent)]
    NoRollbackTarget(#[from] rollback::NoTarget),
}

/// One service of a release that failed, and why.
#[derive(Debug)]
pub struct ServiceFailure {
    /// The service.
    pub service: String,
    /// Why it failed.
    pub error: Box<ReleaseError>,
}

impl ReleaseError {
    /// The message, with each input named as `name` says (a job's variable, a flag):
    /// `Display` names them as a job does.
    pub fn describe(&self, name: &dyn Fn(Input) -> String) -> String {
        match self {
            ReleaseError::TaskDefinition(e) => e.describe(name),
            ReleaseError::ServicesFailed { failed, others } => {
                services_failed(failed, others, name)
            }
            other => other.to_string(),
        }
    }
}

fn job_words(input: Input) -> String {
    input.job_variable().to_string()
}

fn services_failed(
    failed: &[ServiceFailure],
    others: &[String],
    name: &dyn Fn(Input) -> String,
) -> String {
    let failed: Vec<String> = failed
        .iter()
        .map(|f| format!("{}: {}", f.service, f.error.describe(name)))
        .collect();
    let others = match others.is_empty() {
        true => String::new(),
        false => format!(". The other services: {}", others.join("; ")),
    };
    format!("the release failed on {}{others}", failed.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_adapter_names_the_input_of_a_failure_deep_in_a_fleet_its_own_way() {
        let wrong = taskdef::TaskDefError::Ambiguous {
            input: Input::Container,
            task_definition: "shop:7".into(),
            names: "log-router, app".into(),
        };
        let e = ReleaseError::ServicesFailed {
            failed: vec![ServiceFailure {
                service: "worker".into(),
                error: Box::new(ReleaseError::TaskDefinition(wrong)),
            }],
            others: vec!["web: already ran the release, unchanged".into()],
        };
        let in_a_job = e.to_string();
        assert!(
            in_a_job.starts_with("the release failed on worker: cannot tell which container")
                && in_a_job.contains("set ECS_CONTAINER to one or more")
                && in_a_job
                    .ends_with(". The other services: web: already ran the release, unchanged"),
            "{in_a_job}"
        );
        let on_a_terminal = e.describe(&|input| match input {
            Input::Container => "--container".to_string(),
            other => other.to_string(),
        });
        assert!(
            on_a_terminal.contains("set --container to one or more"),
            "{on_a_terminal}"
        );
    }
}
