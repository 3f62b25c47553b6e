//! What one service's release left it as: the report the rollout and a rollback both give,
//! apart from the deploy steps so that undoing a rollout need not know how it was made.

use super::verdict::Pause;

/// What the ECS half did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployReport {
    /// The revision the service ran before.
    pub previous_arn: String,
    /// The revision it runs now (or is deploying, when awaiting approval).
    pub new_arn: String,
    /// Our deployment: its service deployment ARN, else its `ecs-svc/…` id (`None` when the
    /// image was already deployed).
    pub deployment_id: Option<String>,
    /// Whether nothing had to change.
    pub already_deployed: bool,
    /// The approval gate the deployment waits at, when the job ended there.
    pub awaiting: Option<Pause>,
}

impl DeployReport {
    /// A completed deployment of `new_arn` over `previous_arn`.
    pub fn deployed(previous_arn: &str, new_arn: &str, deployment: String) -> Self {
        DeployReport {
            previous_arn: previous_arn.to_string(),
            new_arn: new_arn.to_string(),
            deployment_id: Some(deployment),
            already_deployed: false,
            awaiting: None,
        }
    }
}
