//! ECS as a release sees it: one service and the task definitions around it, behind a small
//! trait. The release's decisions are unit-tested against a fake of it; the SDK adapter
//! ([`SdkEcs`]) is tested over HTTP against the scripted endpoint and moto.

mod error;
#[cfg(test)]
pub(crate) mod fake;
mod sdk;
pub(crate) mod wire;

pub use error::EcsError;
pub use sdk::SdkEcs;

use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;
use aws_sdk_ecs::types::{Service, ServiceDeployment, Tag, Task, TaskDefinition};

use super::taskdef::Document;

/// A task definition revision, as the SDK types it and as the JSON document ECS sent.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The typed revision, the source of the copy.
    pub definition: TaskDefinition,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Its JSON document, every field included, for comparisons.
    pub document: Document,
}

/// The deployment an `UpdateService` started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Its id in `DescribeServices.deployments[]` (`ecs-svc/…`), which tasks are started by.
    pub deployment_id: String,
    /// Its service deployment ARN (`services[].currentServiceDeployment`), where the service
    /// deployments API reports it; `None` from endpoints without that API.
    pub service_deployment: Option<String>,
}

impl Started {
    /// The deployment as ECS's console names it: the service deployment, else the id.
    pub fn name(&self) -> &str {
        self.service_deployment
            .as_deref()
            .unwrap_or(&self.deployment_id)
    }
}

/// A one-off task to run like the service's own tasks (same launch type or capacity
/// providers, network and platform version), with one container's command replaced.
#[derive(Debug, Clone)]
pub struct TaskRun {
    /// The task definition revision.
    pub task_definition: String,
    /// The container whose command is replaced.
    pub container: String,
    /// Its command.
    pub command: Vec<String>,
    /// The service whose placement the task copies.
    pub like: Service,
}

/// What a PAUSE lifecycle hook is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    /// Go on with the deployment.
    Continue,
    /// Roll the deployment back.
    Rollback,
}

impl HookAction {
    /// `continue` or `rollback`, as the input is written.
    pub fn parse(text: &str) -> Option<HookAction> {
        match text {
            "continue" => Some(HookAction::Continue),
            "rollback" => Some(HookAction::Rollback),
            _ => None,
        }
    }
}

/// One ECS service and the task definitions around it.
// Releases run on the executor's single-threaded runtime and never spawn these futures, so
// callers do not need them to be `Send`.
#[allow(async_fn_in_trait)]
pub trait Ecs {
    /// The cluster the service is in.
    fn cluster(&self) -> &str;
    /// The service's name or ARN.
    fn service(&self) -> &str;
    /// `DescribeServices` for the service.
    async fn describe_service(&self) -> Result<Service, EcsError>;
    /// A task definition with its tags.
    async fn task_definition(&self, arn: &str) -> Result<Revision, EcsError>;
    /// The document a registration of `input` would send, without sending it.
    async fn preview_register(
        &self,
        input: RegisterTaskDefinitionInput,
    ) -> Result<Document, EcsError>;
    /// Registers `input`; returns the new revision's ARN.
    async fn register(&self, input: RegisterTaskDefinitionInput) -> Result<String, EcsError>;
    /// Deregisters a revision.
    async fn deregister(&self, arn: &str) -> Result<(), EcsError>;
    /// Points the service at `arn`; returns the deployment ECS started for it.
    async fn update_service(&self, arn: &str) -> Result<Started, EcsError>;
    /// `DescribeServiceDeployments` for one service deployment.
    async fn service_deployment(&self, arn: &str) -> Result<ServiceDeployment, EcsError>;
    /// `StopServiceDeployment` with `stopType=ROLLBACK`: ECS returns the service to the
    /// deployment's source revision.
    async fn stop_service_deployment(&self, arn: &str) -> Result<(), EcsError>;
    /// `ContinueServiceDeployment` for a PAUSE hook awaiting action.
    async fn continue_service_deployment(
        &self,
        arn: &str,
        hook_id: &str,
        action: HookAction,
    ) -> Result<(), EcsError>;
    /// `RunTask` for one task; returns its ARN.
    async fn run_task(&self, run: &TaskRun) -> Result<String, EcsError>;
    /// `DescribeTasks` for one task.
    async fn task(&self, arn: &str) -> Result<Task, EcsError>;
    /// `StopTask`.
    async fn stop_task(&self, arn: &str, reason: &str) -> Result<(), EcsError>;
    /// ACTIVE revisions of `family`, newest revision first whatever the server's order.
    async fn revisions(&self, family: &str) -> Result<Vec<String>, EcsError>;
    /// Stopped tasks started by a deployment (at most 100).
    async fn stopped_tasks(&self, deployment_id: &str) -> Result<Vec<Task>, EcsError>;
}

/// `family:revision` from a task definition ARN.
pub fn short_td(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The revision number in a task definition ARN.
pub fn revision_number(arn: &str) -> Option<i32> {
    short_td(arn).rsplit_once(':')?.1.parse().ok()
}
