//! An in-memory ECS for unit tests of the release's decisions: one service whose
//! deployments move one step per `DescribeServices`, by scenario; one-off tasks; and, when
//! asked, the service deployments API with a PAUSE hook. The wire itself is tested against
//! the scripted endpoint; this tests what the orchestration decides.

mod service;
mod tasks;

use std::sync::Mutex;

use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;
use aws_sdk_ecs::types::{
    DeploymentRolloutState, Service, ServiceDeployment, ServiceDeploymentStatus, Tag, Task,
    TaskDefinition,
};
use serde_json::{json, Value};

use super::{short_td, Ecs, EcsError, HookAction, Revision, Started, TaskRun};
use crate::aws::{CallError, Fault};
use crate::release::taskdef::Document;
pub(crate) use service::HOOK;
use service::{definition, State};
pub(crate) use tasks::{FakeTask, TaskScenario};

/// How the first deployment (ours) goes; later ones (rollbacks) complete at the next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Completes at this poll.
    CompleteAt(u32),
    /// The circuit breaker fails it at this poll and ECS rolls back to the previous revision.
    BreakerAt(u32),
    /// Waits at the PAUSE hook [`HOOK`] from this poll until it is continued (with the
    /// service deployments API; without it, it never finishes).
    PauseAt(u32),
    /// Never finishes.
    Stuck,
}

/// The fake service.
pub(crate) struct FakeEcs {
    name: String,
    state: Mutex<State>,
}

/// The JSON ECS would send for a revision: what the real adapter reads off the wire.
fn document(td: &TaskDefinition, tags: &[Tag]) -> Document {
    let containers: Vec<Value> = td
        .container_definitions()
        .iter()
        .map(|c| json!({"name": c.name(), "image": c.image()}))
        .collect();
    let tags: Vec<Value> = tags
        .iter()
        .map(|t| json!({"key": t.key(), "value": t.value()}))
        .collect();
    Document::from_register_request(&json!({
        "family": td.family(),
        "containerDefinitions": containers,
        "tags": tags,
    }))
    .unwrap_or_else(|e| panic!("fake document: {e}"))
}

/// What ECS answers for a call it refuses.
fn refused(operation: &'static str, message: String) -> EcsError {
    EcsError::Call(CallError {
        operation,
        fault: Fault::Rejected("InvalidParameterException".into()),
        message: format!("InvalidParameterException: {message}"),
    })
}

impl FakeEcs {
    /// A service `web` running revision 1 of `family` with `images` (container name, image).
    pub(crate) fn new(family: &str, images: &[(&str, &str)], scenario: Scenario) -> Self {
        FakeEcs {
            name: "web".into(),
            state: Mutex::new(State::new(family, images, scenario)),
        }
    }

    /// The service is called `name`.
    pub(crate) fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Another release deploys `image` right after ours registers.
    pub(crate) fn with_concurrent_release(self, image: &str) -> Self {
        self.lock().concurrent = Some(image.to_string());
        self
    }

    /// The endpoint has the service deployments API: each `UpdateService` starts one.
    pub(crate) fn with_service_deployments(self) -> Self {
        self.lock().report_service_deployments();
        self
    }

    /// Tasks started by `RunTask` go as `scenario` says.
    pub(crate) fn with_tasks(self, scenario: TaskScenario) -> Self {
        self.lock().tasks.scenario = scenario;
        self
    }

    /// From now on `operation` is denied, as if the credentials lacked it.
    pub(crate) fn refuse(&self, operation: &'static str) {
        self.lock().refused.push(operation);
    }

    /// The operations called, in order.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// How often `operation` was called.
    pub(crate) fn count(&self, operation: &str) -> usize {
        self.calls().iter().filter(|c| *c == operation).count()
    }

    /// The revision the service points at.
    pub(crate) fn service_revision(&self) -> String {
        short_td(&self.lock().service_td).to_string()
    }

    /// The status of the service's current service deployment.
    pub(crate) fn service_deployment_status(&self) -> Option<ServiceDeploymentStatus> {
        self.lock().current_status()
    }

    /// The tasks `RunTask` started.
    pub(crate) fn tasks(&self) -> Vec<FakeTask> {
        self.lock().tasks.started.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a call of `operation`; fails it if the fake refuses it.
    fn call(&self, operation: &'static str) -> Result<std::sync::MutexGuard<'_, State>, EcsError> {
        let mut s = self.lock();
        s.calls.push(operation.to_string());
        if s.refused.contains(&operation) {
            return Err(EcsError::Call(CallError {
                operation,
                fault: Fault::Denied,
                message: format!(
                    "AccessDeniedException: not authorized to perform ecs:{operation}"
                ),
            }));
        }
        Ok(s)
    }
}

impl Ecs for FakeEcs {
    fn cluster(&self) -> &str {
        "prod"
    }

    fn service(&self) -> &str {
        &self.name
    }

    async fn describe_service(&self) -> Result<Service, EcsError> {
        let mut s = self.call("DescribeServices")?;
        s.evolve();
        Ok(s.service(&self.name))
    }

    async fn task_definition(&self, arn: &str) -> Result<Revision, EcsError> {
        let s = self.call("DescribeTaskDefinition")?;
        let stored = s
            .revisions
            .iter()
            .find(|r| r.arn == arn)
            .unwrap_or_else(|| panic!("the fake has no {arn}"));
        Ok(Revision {
            document: document(&stored.definition, &stored.tags),
            definition: stored.definition.clone(),
            tags: stored.tags.clone(),
        })
    }

    async fn preview_register(
        &self,
        input: RegisterTaskDefinitionInput,
    ) -> Result<Document, EcsError> {
        let s = self.lock();
        let td = definition(
            &s.family,
            0,
            &input
                .container_definitions()
                .iter()
                .map(|c| (c.name().unwrap_or_default(), c.image().unwrap_or_default()))
                .collect::<Vec<_>>(),
        );
        Ok(document(&td, input.tags()))
    }

    async fn register(&self, input: RegisterTaskDefinitionInput) -> Result<String, EcsError> {
        let mut s = self.call("RegisterTaskDefinition")?;
        let images: Vec<(String, String)> = input
            .container_definitions()
            .iter()
            .map(|c| {
                (
                    c.name().unwrap_or_default().to_string(),
                    c.image().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let ours = s.store(images.clone(), input.tags().to_vec());
        if let Some(image) = s.concurrent.take() {
            let theirs: Vec<(String, String)> = images
                .into_iter()
                .map(|(name, old)| {
                    let image = if name == "app" { image.clone() } else { old };
                    (name, image)
                })
                .collect();
            let arn = s.store(theirs, input.tags().to_vec());
            s.start(
                &arn,
                Scenario::CompleteAt(0),
                DeploymentRolloutState::Completed,
            );
            s.settle();
        }
        Ok(ours)
    }

    async fn deregister(&self, arn: &str) -> Result<(), EcsError> {
        let mut s = self.call("DeregisterTaskDefinition")?;
        if let Some(r) = s.revisions.iter_mut().find(|r| r.arn == arn) {
            r.active = false;
        }
        Ok(())
    }

    async fn update_service(&self, arn: &str) -> Result<Started, EcsError> {
        let mut s = self.call("UpdateService")?;
        let first = s.calls.iter().filter(|c| *c == "UpdateService").count() == 1;
        let scenario = if first {
            s.scenario
        } else {
            Scenario::CompleteAt(1)
        };
        let (deployment_id, service_deployment) = s.update(arn, scenario);
        Ok(Started {
            deployment_id,
            service_deployment,
        })
    }

    async fn service_deployment(&self, arn: &str) -> Result<ServiceDeployment, EcsError> {
        const OP: &str = "DescribeServiceDeployments";
        let s = self.call(OP)?;
        s.service_deployment(arn)
            .ok_or_else(|| refused(OP, format!("{arn}: not in the fake")))
    }

    async fn stop_service_deployment(&self, arn: &str) -> Result<(), EcsError> {
        const OP: &str = "StopServiceDeployment";
        let mut s = self.call(OP)?;
        s.stop_service_deployment(arn).map_err(|e| refused(OP, e))
    }

    async fn continue_service_deployment(
        &self,
        arn: &str,
        hook_id: &str,
        action: HookAction,
    ) -> Result<(), EcsError> {
        const OP: &str = "ContinueServiceDeployment";
        let mut s = self.call(OP)?;
        s.continue_hook(arn, hook_id, action == HookAction::Rollback)
            .map_err(|e| refused(OP, e))
    }

    async fn run_task(&self, run: &TaskRun) -> Result<String, EcsError> {
        let mut s = self.call("RunTask")?;
        Ok(s.tasks.run(run))
    }

    async fn task(&self, arn: &str) -> Result<Task, EcsError> {
        const OP: &str = "DescribeTasks";
        let mut s = self.call(OP)?;
        s.tasks
            .describe(arn)
            .ok_or_else(|| refused(OP, format!("{arn}: MISSING")))
    }

    async fn stop_task(&self, arn: &str, reason: &str) -> Result<(), EcsError> {
        const OP: &str = "StopTask";
        let mut s = self.call(OP)?;
        match s.tasks.stop(arn, reason) {
            true => Ok(()),
            false => Err(refused(
                OP,
                format!("{arn}: the referenced task was not found"),
            )),
        }
    }

    async fn revisions(&self, family: &str) -> Result<Vec<String>, EcsError> {
        let s = self.lock();
        let mut arns: Vec<String> = s
            .revisions
            .iter()
            .filter(|r| r.active && r.definition.family() == Some(family))
            .map(|r| r.arn.clone())
            .collect();
        arns.reverse();
        Ok(arns)
    }

    async fn stopped_tasks(&self, _deployment_id: &str) -> Result<Vec<Task>, EcsError> {
        drop(self.call("ListTasks")?);
        Ok(Vec::new())
    }
}
