//! What a service's task definitions may be on a shared runner, as the operator's grants
//! that cover the service say: the one decision `authorize` hands on to the moment ECS
//! tells what a service runs.

use crate::glob;

/// What a service's task definitions may be, as the grants that cover the service say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskDefinitionGrant {
    /// Families (doublestar patterns).
    pub families: Vec<String>,
    /// Task and execution role ARNs (doublestar patterns).
    pub roles: Vec<String>,
}

impl TaskDefinitionGrant {
    /// The first thing of a task definition of `family` with `roles` the grant does not
    /// cover, named for the operator.
    pub fn refusal<'a>(
        &self,
        family: &str,
        roles: impl IntoIterator<Item = &'a str>,
    ) -> Option<String> {
        if !matches_any(&self.families, family) {
            return Some(format!("task definition family {family}"));
        }
        roles
            .into_iter()
            .find(|role| !matches_any(&self.roles, role))
            .map(|role| format!("IAM role {role}"))
    }

    /// Refuses the task definition `td` of `service` if the grant does not cover its family
    /// or one of its roles.
    pub fn check(
        &self,
        service: &str,
        td: &aws_sdk_ecs::types::TaskDefinition,
    ) -> Result<(), super::ReleaseError> {
        let roles = [td.task_role_arn(), td.execution_role_arn()]
            .into_iter()
            .flatten();
        match self.refusal(td.family().unwrap_or_default(), roles) {
            None => Ok(()),
            Some(what) => Err(super::ReleaseError::NotGranted {
                service: service.to_string(),
                what,
            }),
        }
    }
}

/// Whether any of the doublestar `patterns` matches `text`.
pub(crate) fn matches_any(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob::matches(p, text))
}
