//! The custom-executor contract with gitlab-runner: job context, stage names, exit codes and
//! the `config` output (see shared/reference/gitlab-custom-executor.md).

mod config_output;
mod context;
pub(crate) mod env;
mod exit;
pub mod expand;
mod payload;
mod services;
mod stage;

pub use config_output::{ConfigOutput, DriverInfo};
pub use context::{JobContext, JobIdentity, ALWAYS_SECRET, MAX_SLOT};
pub use exit::{ExitContract, Outcome};
pub use payload::{
    Credential, DockerOptions, ExecutorOptions, GitInfo, ImageSpec, JobInfo, JobPayload,
    RunnerInfo, Step, Variable,
};
pub use services::{requested_services, RequestedService};
pub use stage::{Placement, Stage};

use std::path::PathBuf;

/// The runner handed us something we cannot work with; always a system failure.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A variable the runner always sets is absent.
    #[error(
        "{0} is not set: this command must be called by gitlab-runner's custom executor \
         (or through `gitlab-ecs-executor exec`)"
    )]
    MissingVariable(String),
    /// A variable is present but unusable.
    #[error("{name} {reason}")]
    InvalidVariable {
        /// Full variable name as seen in the environment.
        name: String,
        /// What is wrong with it; never the value, which may be secret.
        reason: String,
    },
    /// `JOB_RESPONSE_FILE` could not be read.
    #[error("cannot read the job payload JOB_RESPONSE_FILE={path}: {source}")]
    ResponseFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `JOB_RESPONSE_FILE` is not the JSON the runner writes.
    #[error("the job payload JOB_RESPONSE_FILE={path} is not a gitlab-runner job: {source}")]
    ResponsePayload {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The job payload lacks an identity field the runner always writes.
    #[error(
        "the job payload (JOB_RESPONSE_FILE) has no {field}: this gitlab-runner or GitLab is \
         too old to vouch for the job's identity (gitlab-runner 14.1 and later write it)"
    )]
    Unvouched {
        /// The missing field.
        field: &'static str,
    },
    /// A job variable claims an identity the payload does not vouch for.
    #[error(
        "the job sets {variable}=`{claimed}`, but the runner's job payload says `{vouched}` \
         ({field}): on this runner a job cannot change its own identity. Remove {variable} \
         from the job's `variables:` and the project's CI/CD variables"
    )]
    Forged {
        /// The variable the job set.
        variable: String,
        /// The value it set (ids and paths, never secrets).
        claimed: String,
        /// The payload field that decides.
        field: &'static str,
        /// What the payload says.
        vouched: String,
    },
    /// `CI_CONCURRENT_PROJECT_ID` is no slot the runner gives (a job set it).
    #[error(
        "CI_CONCURRENT_PROJECT_ID is `{0}`, not a runner slot from 0 to {max}: remove it from the \
         job's `variables:` and the project's CI/CD variables",
        max = context::MAX_SLOT
    )]
    BadSlot(String),
    /// The runner asked for a stage this executor does not know.
    #[error(
        "unknown stage `{0}`: this gitlab-ecs-executor knows prepare_script, get_sources, \
         clear_worktree, restore_cache, download_artifacts, build_script, step_<name>, \
         after_script, archive_cache(_on_failure), upload_artifacts_on_success/_on_failure \
         and cleanup_file_variables; upgrade it to match your gitlab-runner"
    )]
    UnknownStage(String),
}
