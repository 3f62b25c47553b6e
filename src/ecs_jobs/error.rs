//! Why the ECS job environment could not start, serve or stop a job's task, naming the
//! task, the container and what to check.

use std::path::PathBuf;

use crate::agent::AgentError;
use crate::aws::{AwsError, CallError};
use crate::protocol::ProtocolError;

/// Which side of the job a container of its task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerRole {
    /// The job's `image:` or one of its `services:`: what the job named.
    Job,
    /// The init, helper or agent container: what the operator's settings named.
    Runner,
}

/// A failure of the ECS job environment.
#[derive(Debug, thiserror::Error)]
pub enum EcsJobError {
    /// The job names an image the settings do not allow.
    #[error(
        "the job's image {image} is not allowed by ecs_jobs.allowed_images ({}): use one of \
         those, or ask the runner's operator to allow it",
        .allowed.join(", ")
    )]
    ImageNotAllowed {
        /// The image.
        image: String,
        /// The patterns.
        allowed: Vec<String>,
    },
    /// The job names a service image the settings do not allow.
    #[error(
        "the service image {image} is not allowed by ecs_jobs.allowed_services ({}): use one \
         of those, or ask the runner's operator to allow it",
        .allowed.join(", ")
    )]
    ServiceNotAllowed {
        /// The image.
        image: String,
        /// The patterns.
        allowed: Vec<String>,
    },
    /// The runner's description of the job is unusable.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The task definition could not be made from the job.
    #[error("cannot make the job's task definition: {0}")]
    Definition(String),
    /// AWS could not be configured.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// An ECS call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// `RunTask` placed no task (no capacity, an unknown cluster, …).
    #[error(
        "ECS started no task for the job in cluster {cluster}: {reason}. Check the cluster's \
         capacity (Fargate quotas, EC2 instances with room for {cpu} CPU units and {memory} MiB)"
    )]
    NotPlaced {
        /// The cluster.
        cluster: String,
        /// ECS's failure reason (`RESOURCE:MEMORY`, `AGENT`, …).
        reason: String,
        /// The task's CPU units.
        cpu: u32,
        /// Its memory.
        memory: u32,
    },
    /// A container of the task could not start (its image could not be pulled, …).
    #[error(
        "the job's task stopped before it ran: container {container} ({image}): {reason}{}",
        match .role {
            ContainerRole::Job => ". Check the image's name and that the task's execution role may pull it",
            ContainerRole::Runner => ". Check ecs_jobs in the executor's settings",
        }
    )]
    ContainerFailed {
        /// The container.
        container: String,
        /// Its image.
        image: String,
        /// ECS's reason (`CannotPullContainerError: …`).
        reason: String,
        /// Whose container it is.
        role: ContainerRole,
    },
    /// The task stopped before it ran, with no container to blame.
    #[error("the job's task {task} stopped before it ran: {reason}")]
    StoppedEarly {
        /// The task's ARN.
        task: String,
        /// ECS's stopped reason and code.
        reason: String,
    },
    /// The task did not reach RUNNING in time.
    #[error(
        "the job's task {task} was not running after {} s (it was {status}): raise \
         ecs_jobs.start_timeout_minutes if its images are large",
        .waited.as_secs()
    )]
    StartTimeout {
        /// The task's ARN.
        task: String,
        /// Its last status.
        status: String,
        /// How long we waited.
        waited: std::time::Duration,
    },
    /// The task's agent never answered.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The job's record on the runner host could not be written or read.
    #[error("the job's task record {}: {reason}", .path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A stage came before `prepare` had started the task.
    #[error("no task was started for this job (prepare did not finish): nothing to run in")]
    NoTask,
}
