//! Why an ECS call of the release's port failed: the call itself, or an answer that holds
//! no service or no task. The phase that called decides what that means for the release.

use crate::aws::CallError;

/// A failed call of the [`Ecs`](super::Ecs) port.
#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    /// The AWS call failed or its answer could not be read.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The ECS service does not exist.
    #[error("the ECS service `{service}` does not exist in cluster `{cluster}`")]
    ServiceMissing {
        /// The cluster asked.
        cluster: String,
        /// The service asked.
        service: String,
    },
    /// `RunTask` answered without a task.
    #[error("RunTask started no task: {reason}")]
    NoTaskStarted {
        /// ECS's failure reason and detail.
        reason: String,
    },
}
