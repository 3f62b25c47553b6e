//! The ECS calls of the job environment: the job's task definition registered only when
//! missing, its task started (idempotently, tagged with the runner, job and deadline),
//! followed until it runs or fails, stopped with a reason, and found again by its tags —
//! the orphan sweep's way too.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Cluster, ContainerOverride, DesiredStatus, KeyValuePair,
    LaunchType, NetworkConfiguration, Tag, Task, TaskDefinitionStatus, TaskField, TaskOverride,
};

use super::error::{ContainerRole, EcsJobError};
use super::task_definition::{self as td, Capacity};
use crate::agent::{JobSecret, SECRET_DIGEST_VARIABLE};
use crate::aws::{CallError, Fault};
use crate::clock;
use crate::settings::EcsJobsSettings;

/// The tag naming the runner a task was started for.
pub const TAG_RUNNER: &str = "gitlab-ecs-executor:runner";
/// The tag naming the job.
pub const TAG_JOB: &str = "gitlab-ecs-executor:job";
/// The tag naming the project.
pub const TAG_PROJECT: &str = "gitlab-ecs-executor:project";
/// The tag holding when the job's timeout ends (Unix seconds): after that the job is over
/// whatever happened to its executor, and the sweep may stop the task.
pub const TAG_DEADLINE: &str = "gitlab-ecs-executor:deadline";

/// ECS's own limit on how many tasks one `DescribeTasks` call may name.
const DESCRIBE_BATCH: usize = 100;

/// `startedBy` of every task this runner starts, which `ListTasks` can filter on.
pub fn started_by(runner_id: u64) -> String {
    format!("gitlab-ecs-executor/{runner_id}")
}

/// What one job's task is started with.
pub struct Launch<'a> {
    /// The revision to run.
    pub task_definition: &'a str,
    /// The idempotency token (also in the job's record).
    pub client_token: &'a str,
    /// The runner's id.
    pub runner_id: u64,
    /// The job's id.
    pub job_id: u64,
    /// The project's id.
    pub project_id: u64,
    /// When the job's timeout ends.
    pub deadline: SystemTime,
    /// The job's secret, of which the task gets the digest.
    pub secret: &'a JobSecret,
}

/// A task that runs, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Its address.
    pub address: IpAddr,
}

/// The ECS client and the settings the calls need.
pub struct JobTasks<'a> {
    client: aws_sdk_ecs::Client,
    settings: &'a EcsJobsSettings,
}

impl<'a> JobTasks<'a> {
    /// Calls through `client` for the environment `settings` describe.
    pub fn new(client: aws_sdk_ecs::Client, settings: &'a EcsJobsSettings) -> Self {
        JobTasks { client, settings }
    }

    /// The ARN of the active revision of `input`'s family, registered if there is none.
    /// The family is a hash of everything in the definition, so any revision of it is this
    /// definition.
    pub async fn ensure_definition(
        &self,
        input: RegisterTaskDefinitionInput,
    ) -> Result<(String, bool), EcsJobError> {
        let family = input.family().unwrap_or_default().to_string();
        match self
            .client
            .describe_task_definition()
            .task_definition(&family)
            .send()
            .await
        {
            Ok(out) => {
                if let Some(arn) = out
                    .task_definition()
                    .filter(|d| d.status().is_some_and(|s| s.as_str() == "ACTIVE"))
                    .and_then(|d| d.task_definition_arn())
                {
                    return Ok((arn.to_string(), false));
                }
            }
            // ECS answers an unknown family with a ClientException of its own.
            Err(e) if e.code() == Some("ClientException") => {}
            Err(e) => return Err(CallError::from_sdk("ecs:DescribeTaskDefinition", e).into()),
        }
        let out = crate::release::taskdef::register_request(&self.client, input)
            .send()
            .await
            .map_err(|e| CallError::from_sdk("ecs:RegisterTaskDefinition", e))?;
        let arn = out
            .task_definition()
            .and_then(|d| d.task_definition_arn())
            .ok_or_else(|| {
                CallError::unreadable("ecs:RegisterTaskDefinition", "no task definition ARN")
            })?;
        Ok((arn.to_string(), true))
    }

    /// Starts the job's task; returns its ARN. Throttling and transient faults are retried
    /// with backoff until the start timeout, each retry told to `on_retry` (the job log),
    /// with the same client token: ECS starts one task however often the call arrives.
    pub async fn start(
        &self,
        launch: &Launch<'_>,
        mut on_retry: impl FnMut(&str),
    ) -> Result<String, EcsJobError> {
        let s = self.settings;
        let digest = KeyValuePair::builder()
            .name(SECRET_DIGEST_VARIABLE)
            .value(launch.secret.digest_hex())
            .build();
        let mut overrides = TaskOverride::builder();
        for container in [td::BUILD, td::HELPER] {
            overrides = overrides.container_overrides(
                ContainerOverride::builder()
                    .name(container)
                    .environment(digest.clone())
                    .build(),
            );
        }
        let overrides = overrides.build();
        let network = AwsVpcConfiguration::builder()
            .set_subnets(Some(s.subnets.clone()))
            .set_security_groups(Some(s.security_groups.clone()).filter(|g| !g.is_empty()))
            .assign_public_ip(match s.assign_public_ip {
                true => AssignPublicIp::Enabled,
                false => AssignPublicIp::Disabled,
            })
            .build()
            .map_err(|e| EcsJobError::Definition(e.to_string()))?;
        let network = NetworkConfiguration::builder()
            .awsvpc_configuration(network)
            .build();
        let deadline = launch
            .deadline
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let tag = |key: &str, value: String| Tag::builder().key(key).value(value).build();
        let tags = vec![
            tag(TAG_RUNNER, launch.runner_id.to_string()),
            tag(TAG_JOB, launch.job_id.to_string()),
            tag(TAG_PROJECT, launch.project_id.to_string()),
            tag(TAG_DEADLINE, deadline.to_string()),
        ];
        let give_up = tokio::time::Instant::now() + s.start_timeout;
        let mut attempt = 0;
        let out = loop {
            attempt += 1;
            let sent = self
                .client
                .run_task()
                .cluster(&s.cluster)
                .task_definition(launch.task_definition)
                .launch_type(match s.capacity {
                    Capacity::Fargate => LaunchType::Fargate,
                    Capacity::Ec2 => LaunchType::Ec2,
                })
                .network_configuration(network.clone())
                .overrides(overrides.clone())
                .started_by(started_by(launch.runner_id))
                .client_token(launch.client_token)
                .set_tags(Some(tags.clone()))
                // Retried here, where each retry can be told, not silently by the SDK.
                .customize()
                .config_override(
                    aws_sdk_ecs::config::Builder::default().retry_config(RetryConfig::disabled()),
                )
                .send()
                .await;
            let call = match sent {
                Ok(out) => break out,
                Err(e) => CallError::from_sdk("ecs:RunTask", e),
            };
            let wait = clock::jittered(backoff(attempt));
            if !transient(&call.fault) || tokio::time::Instant::now() + wait >= give_up {
                return Err(call.into());
            }
            on_retry(&format!(
                "RunTask: {} (attempt {attempt}); trying again in {:.1} s",
                call.message,
                wait.as_secs_f64()
            ));
            tokio::time::sleep(wait).await;
        };
        if let Some(arn) = out.tasks().first().and_then(|t| t.task_arn()) {
            return Ok(arn.to_string());
        }
        let reason = out
            .failures()
            .iter()
            .map(|f| {
                let mut text = f.reason().unwrap_or("no reason given").to_string();
                if let Some(detail) = f.detail() {
                    text.push_str(&format!(" ({detail})"));
                }
                text
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(EcsJobError::NotPlaced {
            cluster: s.cluster.clone(),
            reason: Some(reason)
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "no reason given".into()),
            cpu: s.cpu,
            memory: s.memory_mib,
        })
    }

    /// The task as ECS describes it now, with its tags; `None` when ECS no longer knows it.
    pub async fn describe(&self, arn: &str) -> Result<Option<Task>, EcsJobError> {
        Ok(self
            .describe_all(&[arn.to_string()])
            .await?
            .into_iter()
            .next())
    }

    async fn describe_all(&self, arns: &[String]) -> Result<Vec<Task>, EcsJobError> {
        let mut tasks = Vec::new();
        for batch in arns.chunks(DESCRIBE_BATCH) {
            let out = self
                .client
                .describe_tasks()
                .cluster(&self.settings.cluster)
                .set_tasks(Some(batch.to_vec()))
                .include(TaskField::Tags)
                .send()
                .await
                .map_err(|e| CallError::from_sdk("ecs:DescribeTasks", e))?;
            tasks.extend(out.tasks().iter().cloned());
        }
        Ok(tasks)
    }

    /// Follows the task until it runs (returns its address) or stops (the reason, blaming
    /// the container that failed), for at most `ecs_jobs.start_timeout`.
    pub async fn wait_running(
        &self,
        arn: &str,
        mut progress: impl FnMut(&str),
    ) -> Result<Running, EcsJobError> {
        let started = tokio::time::Instant::now();
        let mut last = String::new();
        loop {
            let task = self.describe(arn).await?;
            let status = task
                .as_ref()
                .and_then(|t| t.last_status())
                .unwrap_or("MISSING")
                .to_string();
            if status != last {
                progress(&status);
                last.clone_from(&status);
            }
            match (status.as_str(), &task) {
                ("RUNNING", Some(task)) => {
                    if let Some(address) = address_of(task) {
                        return Ok(Running { address });
                    }
                }
                ("STOPPED" | "DEPROVISIONING" | "STOPPING", Some(task)) => {
                    return Err(stopped_early(arn, task))
                }
                ("MISSING", _) => {
                    return Err(EcsJobError::StoppedEarly {
                        task: arn.to_string(),
                        reason: "ECS no longer knows the task".into(),
                    })
                }
                _ => {}
            }
            if started.elapsed() >= self.settings.start_timeout {
                return Err(EcsJobError::StartTimeout {
                    task: arn.to_string(),
                    status,
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Stops the task with `reason`; one ECS no longer runs is no failure.
    pub async fn stop(&self, arn: &str, reason: &str) -> Result<(), EcsJobError> {
        match self
            .client
            .stop_task()
            .cluster(&self.settings.cluster)
            .task(arn)
            .reason(reason)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // ECS's answer for a task that is gone (stopped an hour ago, say).
            Err(e) if e.code() == Some("InvalidParameterException") => Ok(()),
            Err(e) => Err(CallError::from_sdk("ecs:StopTask", e).into()),
        }
    }

    /// The active revisions of job task definitions (`gitlab-ci-*`), with when each was
    /// registered.
    pub async fn job_definitions(&self) -> Result<Vec<(String, Option<SystemTime>)>, EcsJobError> {
        let arns: Vec<String> = self
            .client
            .list_task_definitions()
            .family_prefix(td::FAMILY_PREFIX)
            .status(TaskDefinitionStatus::Active)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| CallError::from_sdk("ecs:ListTaskDefinitions", e))?;
        let mut found = Vec::with_capacity(arns.len());
        for arn in arns {
            let out = self
                .client
                .describe_task_definition()
                .task_definition(&arn)
                .send()
                .await
                .map_err(|e| CallError::from_sdk("ecs:DescribeTaskDefinition", e))?;
            let registered = out
                .task_definition()
                .and_then(|d| d.registered_at())
                .and_then(|t| SystemTime::try_from(*t).ok());
            found.push((arn, registered));
        }
        Ok(found)
    }

    /// Deregisters a job task definition revision: tasks running it go on, the next job of
    /// its shape registers it again.
    pub async fn deregister(&self, arn: &str) -> Result<(), EcsJobError> {
        self.client
            .deregister_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| CallError::from_sdk("ecs:DeregisterTaskDefinition", e))?;
        Ok(())
    }

    /// The job tasks' cluster as ECS describes it; `None` when ECS does not know it.
    pub async fn cluster(&self) -> Result<Option<Cluster>, EcsJobError> {
        let out = self
            .client
            .describe_clusters()
            .clusters(&self.settings.cluster)
            .send()
            .await
            .map_err(|e| CallError::from_sdk("ecs:DescribeClusters", e))?;
        Ok(out.clusters().first().cloned())
    }

    /// The tasks this runner started that ECS still runs, with their tags.
    pub async fn of_runner(&self, runner_id: u64) -> Result<Vec<Task>, EcsJobError> {
        let arns: Vec<String> = self
            .client
            .list_tasks()
            .cluster(&self.settings.cluster)
            .started_by(started_by(runner_id))
            .desired_status(DesiredStatus::Running)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| CallError::from_sdk("ecs:ListTasks", e))?;
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        self.describe_all(&arns).await
    }
}

/// The pause before `RunTask`'s `attempt + 1`th try: doubling from half a second, at most
/// 20 s (before jitter).
fn backoff(attempt: u32) -> Duration {
    let doubled = Duration::from_millis(500).saturating_mul(1 << attempt.saturating_sub(1).min(6));
    doubled.min(Duration::from_secs(20))
}

/// Whether a failed call may succeed when sent again.
fn transient(fault: &Fault) -> bool {
    match fault {
        Fault::Throttled | Fault::Unreachable | Fault::TimedOut => true,
        Fault::Rejected(code) => code == "ServerException",
        Fault::Denied
        | Fault::NoCredentials
        | Fault::NotFound
        | Fault::ConcurrentRegistration
        | Fault::Unreadable => false,
    }
}

/// The value of a task's tag.
pub fn tag_of<'t>(task: &'t Task, key: &str) -> Option<&'t str> {
    task.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Whether `task`'s job is over at `now`: its deadline tag has passed by `grace`. A task
/// without one was not started by this executor's job path and is never touched.
pub fn job_is_over(task: &Task, now: SystemTime, grace: Duration) -> bool {
    let Some(deadline) = tag_of(task, TAG_DEADLINE).and_then(|d| d.parse::<u64>().ok()) else {
        return false;
    };
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    now > deadline.saturating_add(grace.as_secs())
}

/// The address ECS gave the task's network interface.
fn address_of(task: &Task) -> Option<IpAddr> {
    task.attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value())
        .and_then(|v| v.parse().ok())
}

/// Why a task stopped before it ran: the first container with a reason (a pull failure is
/// the image's), else the task's own reason.
fn stopped_early(arn: &str, task: &Task) -> EcsJobError {
    if let Some(container) = task.containers().iter().find(|c| c.reason().is_some()) {
        let name = container.name().unwrap_or_default();
        let role = match name {
            td::BUILD => ContainerRole::Job,
            name if name.starts_with("svc-") => ContainerRole::Job,
            _ => ContainerRole::Runner,
        };
        return EcsJobError::ContainerFailed {
            container: name.to_string(),
            image: container.image().unwrap_or_default().to_string(),
            reason: container.reason().unwrap_or_default().to_string(),
            role,
        };
    }
    let mut reason = task
        .stopped_reason()
        .unwrap_or("no reason given")
        .to_string();
    if let Some(code) = task.stop_code() {
        reason.push_str(&format!(" ({})", code.as_str()));
    }
    EcsJobError::StoppedEarly {
        task: arn.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::Container;

    fn task(tags: &[(&str, &str)], containers: Vec<Container>) -> Task {
        let mut t = Task::builder()
            .task_arn("arn:aws:ecs:eu-west-1:123456789012:task/ci/0a1b")
            .stopped_reason("Essential container in task exited")
            .set_containers(Some(containers));
        for (k, v) in tags {
            t = t.tags(Tag::builder().key(*k).value(*v).build());
        }
        t.build()
    }

    fn container(name: &str, reason: Option<&str>) -> Container {
        Container::builder()
            .name(name)
            .image(format!("registry.example/{name}:1"))
            .set_reason(reason.map(str::to_string))
            .build()
    }

    #[test]
    fn a_pull_failure_blames_the_container_and_whose_it_is() {
        let pull = "CannotPullContainerError: pull image manifest has been retried 5 time(s)";
        for (name, role) in [
            (td::BUILD, ContainerRole::Job),
            ("svc-1", ContainerRole::Job),
            (td::HELPER, ContainerRole::Runner),
            (td::INIT, ContainerRole::Runner),
        ] {
            let t = task(
                &[],
                vec![container("svc-0", None), container(name, Some(pull))],
            );
            match stopped_early("arn", &t) {
                EcsJobError::ContainerFailed {
                    container,
                    reason,
                    role: r,
                    ..
                } => {
                    assert_eq!((container.as_str(), reason.as_str(), r), (name, pull, role));
                }
                other => panic!("{other:?}"),
            }
        }
        let t = task(&[], vec![container(td::BUILD, None)]);
        assert!(matches!(
            stopped_early("arn", &t),
            EcsJobError::StoppedEarly { reason, .. } if reason == "Essential container in task exited"
        ));
    }

    #[test]
    fn run_task_backs_off_doubling_to_twenty_seconds_and_retries_only_what_may_pass() {
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000]);
        assert!(transient(&Fault::Throttled));
        assert!(transient(&Fault::Rejected("ServerException".into())));
        assert!(!transient(&Fault::Rejected("ClientException".into())));
        assert!(!transient(&Fault::Denied));
    }

    #[test]
    fn only_a_task_past_its_deadline_and_grace_is_over() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let grace = Duration::from_secs(600);
        let at = |deadline: &str| task(&[(TAG_DEADLINE, deadline)], Vec::new());
        assert!(job_is_over(&at("9000"), now, grace));
        assert!(!job_is_over(&at("9500"), now, grace));
        assert!(!job_is_over(&at("soon"), now, grace));
        assert!(!job_is_over(&task(&[], Vec::new()), now, grace));
    }
}
