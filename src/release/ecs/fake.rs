//! An in-memory ECS for unit tests of the release's decisions: one service whose
//! deployments move one step per `DescribeServices`, by scenario. The wire itself is tested
//! against the scripted endpoint; this tests what the orchestration decides.

use std::sync::Mutex;

use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;
use aws_sdk_ecs::types::{
    ContainerDefinition, Deployment, DeploymentRolloutState, Service, ServiceDeployment, Tag, Task,
    TaskDefinition,
};
use serde_json::{json, Value};

use super::{short_td, Ecs, HookAction, Revision, Started, TaskRun};
use crate::aws::CallError;
use crate::release::taskdef::Document;
use crate::release::ReleaseError;

/// The fake has no service deployments API: its deployments are reported the legacy way.
fn unsupported(operation: &'static str, arn: &str) -> ReleaseError {
    ReleaseError::Call(CallError::unreadable(
        operation,
        format!("{arn}: not in the fake"),
    ))
}

/// How the first deployment (ours) goes; later ones (rollbacks) complete at the next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Completes at this poll.
    CompleteAt(u32),
    /// The circuit breaker fails it at this poll and ECS rolls back to the previous revision.
    BreakerAt(u32),
    /// Never finishes.
    Stuck,
}

/// One revision the fake knows.
struct Stored {
    arn: String,
    definition: TaskDefinition,
    tags: Vec<Tag>,
    active: bool,
}

struct Rolling {
    deployment: Deployment,
    scenario: Scenario,
    polls: u32,
}

struct State {
    family: String,
    revisions: Vec<Stored>,
    service_td: String,
    deployments: Vec<Rolling>,
    scenario: Scenario,
    /// Another release deploys this image right after our registration.
    concurrent: Option<String>,
    calls: Vec<String>,
    next_id: u32,
}

/// The fake service.
pub(crate) struct FakeEcs {
    state: Mutex<State>,
}

fn definition(family: &str, revision: i32, images: &[(&str, &str)]) -> TaskDefinition {
    let mut td = TaskDefinition::builder()
        .family(family)
        .revision(revision)
        .task_definition_arn(arn(family, revision));
    for (name, image) in images {
        td = td.container_definitions(
            ContainerDefinition::builder()
                .name(*name)
                .image(*image)
                .build(),
        );
    }
    td.build()
}

fn arn(family: &str, revision: i32) -> String {
    format!("arn:aws:ecs:eu-west-1:123456789012:task-definition/{family}:{revision}")
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

impl FakeEcs {
    /// A service running revision 1 of `family` with `images` (container name, image).
    pub(crate) fn new(family: &str, images: &[(&str, &str)], scenario: Scenario) -> Self {
        let definition = definition(family, 1, images);
        let first = arn(family, 1);
        let deployment = Deployment::builder()
            .id("ecs-svc/1")
            .status("PRIMARY")
            .task_definition(&first)
            .desired_count(2)
            .running_count(2)
            .rollout_state(DeploymentRolloutState::Completed)
            .build();
        FakeEcs {
            state: Mutex::new(State {
                family: family.to_string(),
                revisions: vec![Stored {
                    arn: first.clone(),
                    definition,
                    tags: vec![Tag::builder().key("team").value("web").build()],
                    active: true,
                }],
                service_td: first,
                deployments: vec![Rolling {
                    deployment,
                    scenario: Scenario::CompleteAt(0),
                    polls: 0,
                }],
                scenario,
                concurrent: None,
                calls: Vec::new(),
                next_id: 1,
            }),
        }
    }

    /// Another release deploys `image` right after ours registers.
    pub(crate) fn with_concurrent_release(self, image: &str) -> Self {
        self.lock().concurrent = Some(image.to_string());
        self
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn store(&mut self, images: Vec<(String, String)>, tags: Vec<Tag>) -> String {
        let revision = self.revisions.len() as i32 + 1;
        let pairs: Vec<(&str, &str)> = images
            .iter()
            .map(|(n, i)| (n.as_str(), i.as_str()))
            .collect();
        let definition = definition(&self.family, revision, &pairs);
        let arn = arn(&self.family, revision);
        self.revisions.push(Stored {
            arn: arn.clone(),
            definition,
            tags,
            active: true,
        });
        arn
    }

    fn start(&mut self, arn: &str, scenario: Scenario, rollout: DeploymentRolloutState) -> String {
        self.next_id += 1;
        let id = format!("ecs-svc/{}", self.next_id);
        for d in &mut self.deployments {
            d.deployment.status = Some("ACTIVE".into());
        }
        self.deployments.insert(
            0,
            Rolling {
                deployment: Deployment::builder()
                    .id(&id)
                    .status("PRIMARY")
                    .task_definition(arn)
                    .desired_count(2)
                    .running_count(0)
                    .rollout_state(rollout)
                    .build(),
                scenario,
                polls: 0,
            },
        );
        self.service_td = arn.to_string();
        id
    }

    /// One step of every rollout in progress.
    fn evolve(&mut self) {
        let mut rollback_to = None;
        for d in &mut self.deployments {
            if d.deployment.rollout_state() != Some(&DeploymentRolloutState::InProgress) {
                continue;
            }
            d.polls += 1;
            match d.scenario {
                Scenario::CompleteAt(n) if d.polls >= n => {
                    d.deployment.rollout_state = Some(DeploymentRolloutState::Completed);
                    d.deployment.running_count = 2;
                }
                Scenario::BreakerAt(n) if d.polls >= n => {
                    d.deployment.rollout_state = Some(DeploymentRolloutState::Failed);
                    d.deployment.rollout_state_reason =
                        Some("ECS deployment circuit breaker: tasks failed to start.".into());
                    d.deployment.failed_tasks = 3;
                    rollback_to = Some(());
                }
                _ => {}
            }
        }
        if rollback_to.is_some() {
            let previous = self
                .deployments
                .iter()
                .find(|d| d.deployment.rollout_state() == Some(&DeploymentRolloutState::Completed))
                .and_then(|d| d.deployment.task_definition().map(str::to_string));
            if let Some(previous) = previous {
                self.start(
                    &previous,
                    Scenario::CompleteAt(1),
                    DeploymentRolloutState::InProgress,
                );
            }
        }
        if self.deployments.first().is_some_and(|d| {
            d.deployment.rollout_state() == Some(&DeploymentRolloutState::Completed)
        }) {
            self.deployments.truncate(1);
        }
    }

    fn service(&self) -> Service {
        Service::builder()
            .service_name("web")
            .status("ACTIVE")
            .task_definition(&self.service_td)
            .set_deployments(Some(
                self.deployments
                    .iter()
                    .map(|d| d.deployment.clone())
                    .collect(),
            ))
            .build()
    }
}

impl Ecs for FakeEcs {
    fn cluster(&self) -> &str {
        "prod"
    }

    fn service(&self) -> &str {
        "web"
    }

    async fn describe_service(&self) -> Result<Service, ReleaseError> {
        let mut s = self.lock();
        s.calls.push("DescribeServices".into());
        s.evolve();
        Ok(s.service())
    }

    async fn task_definition(&self, arn: &str) -> Result<Revision, ReleaseError> {
        let mut s = self.lock();
        s.calls.push("DescribeTaskDefinition".into());
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
    ) -> Result<Document, ReleaseError> {
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

    async fn register(&self, input: RegisterTaskDefinitionInput) -> Result<String, ReleaseError> {
        let mut s = self.lock();
        s.calls.push("RegisterTaskDefinition".into());
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
            s.deployments.truncate(1);
        }
        Ok(ours)
    }

    async fn deregister(&self, arn: &str) -> Result<(), ReleaseError> {
        let mut s = self.lock();
        s.calls.push("DeregisterTaskDefinition".into());
        if let Some(r) = s.revisions.iter_mut().find(|r| r.arn == arn) {
            r.active = false;
        }
        Ok(())
    }

    async fn update_service(&self, arn: &str) -> Result<Started, ReleaseError> {
        let mut s = self.lock();
        s.calls.push("UpdateService".into());
        let first = s.calls.iter().filter(|c| *c == "UpdateService").count() == 1;
        let scenario = if first {
            s.scenario
        } else {
            Scenario::CompleteAt(1)
        };
        // The fake reports deployments the legacy way only (no service deployments API).
        Ok(Started {
            deployment_id: s.start(arn, scenario, DeploymentRolloutState::InProgress),
            service_deployment: None,
        })
    }

    async fn service_deployment(&self, arn: &str) -> Result<ServiceDeployment, ReleaseError> {
        Err(unsupported("DescribeServiceDeployments", arn))
    }

    async fn stop_service_deployment(&self, arn: &str) -> Result<(), ReleaseError> {
        Err(unsupported("StopServiceDeployment", arn))
    }

    async fn continue_service_deployment(
        &self,
        arn: &str,
        _hook_id: &str,
        _action: HookAction,
    ) -> Result<(), ReleaseError> {
        Err(unsupported("ContinueServiceDeployment", arn))
    }

    async fn run_task(&self, run: &TaskRun) -> Result<String, ReleaseError> {
        Err(unsupported("RunTask", &run.task_definition))
    }

    async fn task(&self, arn: &str) -> Result<Task, ReleaseError> {
        Err(unsupported("DescribeTasks", arn))
    }

    async fn stop_task(&self, arn: &str, _reason: &str) -> Result<(), ReleaseError> {
        Err(unsupported("StopTask", arn))
    }

    async fn revisions(&self, family: &str) -> Result<Vec<String>, ReleaseError> {
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

    async fn stopped_tasks(&self, _deployment_id: &str) -> Result<Vec<Task>, ReleaseError> {
        self.lock().calls.push("ListTasks".into());
        Ok(Vec::new())
    }
}
