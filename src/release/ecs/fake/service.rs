//! The fake's service: its revisions, its deployments (the legacy `DescribeServices` view)
//! and, when the fake has that API, its service deployments with a PAUSE hook. Every
//! deployment in progress moves one step per `DescribeServices`, by scenario.

use aws_sdk_ecs::types::{
    ContainerDefinition, Deployment, DeploymentLifecycleHookDetail, DeploymentLifecycleHookStatus,
    DeploymentLifecycleHookTargetType, DeploymentRolloutState, Service, ServiceDeployment,
    ServiceDeploymentLifecycleStage, ServiceDeploymentStatus, Tag, TaskDefinition,
};

use super::tasks::Tasks;
use super::Scenario;

/// The id of the one PAUSE hook a fake service deployment waits at.
pub(crate) const HOOK: &str = "approve";

/// One revision the fake knows.
pub(super) struct Stored {
    pub arn: String,
    pub definition: TaskDefinition,
    pub tags: Vec<Tag>,
    pub active: bool,
}

/// A deployment of the legacy view and what drives it.
struct Rolling {
    deployment: Deployment,
    scenario: Scenario,
    polls: u32,
    /// Waiting at the PAUSE hook: it does not move until the hook is continued.
    paused: bool,
    /// The service deployment it is.
    service_deployment: Option<String>,
    /// The service deployment it rolls back.
    rolls_back: Option<String>,
}

/// A service deployment, as `DescribeServiceDeployments` reports it.
struct Sd {
    arn: String,
    status: ServiceDeploymentStatus,
    stage: Option<ServiceDeploymentLifecycleStage>,
    hook: Option<DeploymentLifecycleHookStatus>,
    reason: Option<String>,
}

impl Sd {
    fn terminal(&self) -> bool {
        matches!(
            self.status,
            ServiceDeploymentStatus::Successful
                | ServiceDeploymentStatus::RollbackSuccessful
                | ServiceDeploymentStatus::RollbackFailed
                | ServiceDeploymentStatus::Stopped
        )
    }
}

/// What one step of a deployment changed, applied after the step.
enum Step {
    Completed(Option<String>),
    RolledBack(String),
    Failed(Option<String>),
    Paused(String),
}

pub(super) struct State {
    pub family: String,
    pub revisions: Vec<Stored>,
    pub service_td: String,
    deployments: Vec<Rolling>,
    pub scenario: Scenario,
    /// Another release deploys this image right after our registration.
    pub concurrent: Option<String>,
    pub calls: Vec<String>,
    /// Operations that fail, as if the credentials lacked them.
    pub refused: Vec<&'static str>,
    /// `None`: an endpoint without the service deployments API.
    service_deployments: Option<Vec<Sd>>,
    current: Option<String>,
    pub tasks: Tasks,
    next_id: u32,
}

pub(super) fn definition(family: &str, revision: i32, images: &[(&str, &str)]) -> TaskDefinition {
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

pub(super) fn arn(family: &str, revision: i32) -> String {
    format!("arn:aws:ecs:eu-west-1:123456789012:task-definition/{family}:{revision}")
}

impl State {
    /// A service running revision 1 of `family` with `images` (container name, image).
    pub fn new(family: &str, images: &[(&str, &str)], scenario: Scenario) -> Self {
        let first = arn(family, 1);
        let deployment = Deployment::builder()
            .id("ecs-svc/1")
            .status("PRIMARY")
            .task_definition(&first)
            .desired_count(2)
            .running_count(2)
            .rollout_state(DeploymentRolloutState::Completed)
            .build();
        State {
            family: family.to_string(),
            revisions: vec![Stored {
                arn: first.clone(),
                definition: definition(family, 1, images),
                tags: vec![Tag::builder().key("team").value("web").build()],
                active: true,
            }],
            service_td: first,
            deployments: vec![Rolling {
                deployment,
                scenario: Scenario::CompleteAt(0),
                polls: 0,
                paused: false,
                service_deployment: None,
                rolls_back: None,
            }],
            scenario,
            concurrent: None,
            calls: Vec::new(),
            refused: Vec::new(),
            service_deployments: None,
            current: None,
            tasks: Tasks::new(),
            next_id: 1,
        }
    }

    /// From now on deployments are service deployments too.
    pub fn report_service_deployments(&mut self) {
        self.service_deployments = Some(Vec::new());
    }

    pub fn store(&mut self, images: Vec<(String, String)>, tags: Vec<Tag>) -> String {
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

    /// Starts a deployment of `arn`; returns its id.
    pub fn start(
        &mut self,
        arn: &str,
        scenario: Scenario,
        rollout: DeploymentRolloutState,
    ) -> String {
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
                paused: false,
                service_deployment: None,
                rolls_back: None,
            },
        );
        self.service_td = arn.to_string();
        id
    }

    /// `UpdateService`: a deployment, and a service deployment where the API exists.
    pub fn update(&mut self, arn: &str, scenario: Scenario) -> (String, Option<String>) {
        let id = self.start(arn, scenario, DeploymentRolloutState::InProgress);
        let Some(sds) = self.service_deployments.as_mut() else {
            return (id, None);
        };
        let sd = format!(
            "arn:aws:ecs:eu-west-1:123456789012:service-deployment/prod/web/{}",
            self.next_id
        );
        sds.push(Sd {
            arn: sd.clone(),
            status: ServiceDeploymentStatus::InProgress,
            stage: Some(ServiceDeploymentLifecycleStage::ScaleUp),
            hook: None,
            reason: None,
        });
        self.deployments[0].service_deployment = Some(sd.clone());
        self.current = Some(sd.clone());
        (id, Some(sd))
    }

    /// Drops every deployment but the newest, as ECS does once it completed.
    pub fn settle(&mut self) {
        self.deployments.truncate(1);
    }

    /// One step of every rollout in progress.
    pub fn evolve(&mut self) {
        let mut steps = Vec::new();
        for d in &mut self.deployments {
            if d.paused || d.deployment.rollout_state() != Some(&DeploymentRolloutState::InProgress)
            {
                continue;
            }
            d.polls += 1;
            match d.scenario {
                Scenario::CompleteAt(n) if d.polls >= n => {
                    d.deployment.rollout_state = Some(DeploymentRolloutState::Completed);
                    d.deployment.running_count = 2;
                    steps.push(match &d.rolls_back {
                        Some(sd) => Step::RolledBack(sd.clone()),
                        None => Step::Completed(d.service_deployment.clone()),
                    });
                }
                Scenario::BreakerAt(n) if d.polls >= n => {
                    d.deployment.rollout_state = Some(DeploymentRolloutState::Failed);
                    d.deployment.rollout_state_reason =
                        Some("ECS deployment circuit breaker: tasks failed to start.".into());
                    d.deployment.failed_tasks = 3;
                    steps.push(Step::Failed(d.service_deployment.clone()));
                }
                Scenario::PauseAt(n) if d.polls >= n => {
                    if let Some(sd) = &d.service_deployment {
                        d.paused = true;
                        steps.push(Step::Paused(sd.clone()));
                    }
                }
                _ => {}
            }
        }
        for step in steps {
            match step {
                Step::Completed(sd) => {
                    if let Some(sd) = sd.and_then(|arn| self.sd_mut(&arn)) {
                        sd.status = ServiceDeploymentStatus::Successful;
                        sd.stage = Some(ServiceDeploymentLifecycleStage::CleanUp);
                    }
                }
                Step::RolledBack(arn) => {
                    if let Some(sd) = self.sd_mut(&arn) {
                        sd.status = ServiceDeploymentStatus::RollbackSuccessful;
                    }
                }
                Step::Failed(sd) => self.roll_back(
                    sd.as_deref(),
                    "ECS deployment circuit breaker: tasks failed to start.",
                ),
                Step::Paused(arn) => {
                    if let Some(sd) = self.sd_mut(&arn) {
                        sd.stage = Some(ServiceDeploymentLifecycleStage::PostTestTrafficShift);
                        sd.hook = Some(DeploymentLifecycleHookStatus::AwaitingAction);
                    }
                }
            }
        }
        if self.deployments.first().is_some_and(|d| {
            d.deployment.rollout_state() == Some(&DeploymentRolloutState::Completed)
        }) {
            self.settle();
        }
    }

    /// ECS rolls `sd` (or, without the API, the failed deployment) back to the last
    /// completed revision.
    fn roll_back(&mut self, sd: Option<&str>, reason: &str) {
        if let Some(sd) = sd.and_then(|arn| self.sd_mut(arn)) {
            sd.status = ServiceDeploymentStatus::RollbackInProgress;
            sd.reason = Some(reason.to_string());
        }
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
            self.deployments[0].rolls_back = sd.map(str::to_string);
        }
    }

    /// `StopServiceDeployment` with `ROLLBACK`; `Err` with ECS's words when it refuses.
    pub fn stop_service_deployment(&mut self, arn: &str) -> Result<(), String> {
        self.stop_ours(arn, "StopServiceDeployment requested a rollback")
    }

    /// `ContinueServiceDeployment`; `Err` with ECS's words when it refuses.
    pub fn continue_hook(&mut self, arn: &str, hook: &str, rollback: bool) -> Result<(), String> {
        let waiting = self.sd_mut(arn).is_some_and(|sd| {
            hook == HOOK && sd.hook == Some(DeploymentLifecycleHookStatus::AwaitingAction)
        });
        if !waiting {
            return Err(format!("no hook {hook} awaits action in {arn}"));
        }
        if let Some(sd) = self.sd_mut(arn) {
            sd.hook = Some(DeploymentLifecycleHookStatus::Succeeded);
        }
        if rollback {
            return self.stop_ours(arn, "the approval gate was answered with ROLLBACK");
        }
        if let Some(d) = self.rolling_mut(arn) {
            d.paused = false;
            d.scenario = Scenario::CompleteAt(d.polls + 1);
        }
        Ok(())
    }

    fn stop_ours(&mut self, arn: &str, reason: &str) -> Result<(), String> {
        match self.sd_mut(arn) {
            None => return Err(format!("{arn} does not exist")),
            Some(sd) if sd.terminal() => {
                return Err(format!(
                    "{arn} is {} and cannot be stopped",
                    sd.status.as_str()
                ))
            }
            Some(_) => {}
        }
        if let Some(d) = self.rolling_mut(arn) {
            d.paused = false;
            d.deployment.rollout_state = Some(DeploymentRolloutState::Failed);
        }
        self.roll_back(Some(arn), reason);
        Ok(())
    }

    fn sd_mut(&mut self, arn: &str) -> Option<&mut Sd> {
        self.service_deployments
            .as_mut()?
            .iter_mut()
            .find(|sd| sd.arn == arn)
    }

    fn rolling_mut(&mut self, sd: &str) -> Option<&mut Rolling> {
        self.deployments
            .iter_mut()
            .find(|d| d.service_deployment.as_deref() == Some(sd))
    }

    /// `DescribeServiceDeployments` for `arn`; `None` without the API or for an unknown one.
    pub fn service_deployment(&self, arn: &str) -> Option<ServiceDeployment> {
        let sd = self
            .service_deployments
            .as_ref()?
            .iter()
            .find(|sd| sd.arn == arn)?;
        let hooks = sd.hook.clone().map(|status| {
            DeploymentLifecycleHookDetail::builder()
                .hook_id(HOOK)
                .target_type(DeploymentLifecycleHookTargetType::Pause)
                .status(status)
                .build()
        });
        Some(
            ServiceDeployment::builder()
                .service_deployment_arn(&sd.arn)
                .status(sd.status.clone())
                .set_lifecycle_stage(sd.stage.clone())
                .set_lifecycle_hook_details(hooks.map(|h| vec![h]))
                .set_status_reason(sd.reason.clone())
                .build(),
        )
    }

    /// The status of the service's current service deployment.
    pub fn current_status(&self) -> Option<ServiceDeploymentStatus> {
        self.service_deployment(self.current.as_deref()?)?.status
    }

    pub fn service(&self, name: &str) -> Service {
        Service::builder()
            .service_name(name)
            .status("ACTIVE")
            .task_definition(&self.service_td)
            .set_current_service_deployment(self.current.clone())
            .set_deployments(Some(
                self.deployments
                    .iter()
                    .map(|d| d.deployment.clone())
                    .collect(),
            ))
            .build()
    }
}
