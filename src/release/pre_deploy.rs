//! The gated pre-deploy task (database migrations): after the new revisions are registered
//! and before any service is updated, one task of the **new** revision runs with the release
//! container's command replaced, placed like the service's own tasks (launch type or
//! capacity providers, network, platform version). Its log lines stream into the job log
//! from CloudWatch Logs while it runs; exit code 0 lets the release go on, anything else
//! stops it with nothing updated.

use std::time::Duration;

use aws_sdk_cloudwatchlogs::config::Region;
use aws_sdk_ecs::types::{ContainerDefinition, LogDriver};
use tokio::time::Instant;

use super::deploy::DeployRequest;
use super::ecs::{short_td, Ecs, EcsError, TaskRun};
use super::fleet::{Gate, Member};
use super::inputs::PreDeploy;
use super::taskdef;
use super::ReleaseError;
use crate::aws::CallError;
use crate::clock;
use crate::docker::Cancel;
use crate::joblog::JobLog;

/// The pre-deploy task as a gate of the release.
pub struct PreDeployGate {
    /// What to run.
    pub task: PreDeploy,
    /// The AWS configuration for CloudWatch Logs.
    pub aws: aws_config::SdkConfig,
}

impl<E: Ecs> Gate<E> for PreDeployGate {
    async fn check(
        &self,
        member: &Member<E>,
        new_revision: &str,
        log: &JobLog,
        cancel: &mut Cancel,
    ) -> Result<(), ReleaseError> {
        let _s = log.section("release_pre_deploy", "Release: pre-deploy task");
        run(self, &member.ecs, &member.req, new_revision, log, cancel).await
    }
}

/// Where a container's log lines go in CloudWatch Logs: group, stream, region.
fn log_stream(
    container: &ContainerDefinition,
    task_id: &str,
) -> Option<(String, String, Option<String>)> {
    let config = container.log_configuration()?;
    if config.log_driver() != &LogDriver::Awslogs {
        return None;
    }
    let options = config.options()?;
    let group = options.get("awslogs-group")?.clone();
    let prefix = options.get("awslogs-stream-prefix")?;
    // The awslogs driver names streams prefix/container/task-id.
    let stream = format!(
        "{prefix}/{}/{task_id}",
        container.name().unwrap_or_default()
    );
    Some((group, stream, options.get("awslogs-region").cloned()))
}

async fn run(
    gate: &PreDeployGate,
    ecs: &impl Ecs,
    req: &DeployRequest,
    revision: &str,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<(), ReleaseError> {
    let started = Instant::now();
    let deadline = gate
        .task
        .timeout
        .map(|t| (started + t).min(req.deadline.at))
        .unwrap_or(req.deadline.at);
    let td = ecs.task_definition(revision).await?.definition;
    let targets = taskdef::target_containers(&td, &req.target.containers, &req.image.repository())?;
    let container = targets
        .first()
        .and_then(|i| td.container_definitions().get(*i))
        .cloned()
        .ok_or_else(|| ReleaseError::TaskNotStarted {
            reason: format!("{} has no release container", short_td(revision)),
        })?;
    let name = container.name().unwrap_or_default().to_string();
    let service = ecs.describe_service().await?;
    log.step(&format!(
        "Running `{}` in container {name} of {}, placed like the tasks of service {}",
        gate.task.command.join(" "),
        short_td(revision),
        ecs.service()
    ));
    let arn = ecs
        .run_task(&TaskRun {
            task_definition: revision.to_string(),
            container: name.clone(),
            command: gate.task.command.clone(),
            like: service,
        })
        .await
        .map_err(|e| match e {
            EcsError::NoTaskStarted { reason } => ReleaseError::TaskNotStarted { reason },
            other => other.into(),
        })?;
    let task_id = arn.rsplit('/').next().unwrap_or(&arn).to_string();
    log.info(&format!("Task {task_id} started"));
    let stream = log_stream(&container, &task_id);
    let logs = stream.as_ref().map(|(_, _, region)| {
        let mut config = aws_sdk_cloudwatchlogs::config::Builder::from(&gate.aws);
        if let Some(region) = region {
            config = config.region(Region::new(region.clone()));
        }
        aws_sdk_cloudwatchlogs::Client::from_conf(config.build())
    });
    if stream.is_none() {
        log.info(&format!(
            "Container {name} does not log to CloudWatch Logs with the awslogs driver: only its exit code will show"
        ));
    }
    let mut token: Option<String> = None;
    let mut logs_unavailable = false;
    let task = loop {
        let pause = req
            .poll
            .min(Duration::from_secs(2))
            .min(deadline.saturating_duration_since(Instant::now()));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut *cancel => {
                // The task must not go on changing the database for a release that ends.
                let stopped = ecs
                    .stop_task(&arn, "gitlab-ecs-executor: the job was cancelled")
                    .await;
                log.warn(&match stopped {
                    Ok(()) => format!("the job was cancelled: pre-deploy task {task_id} was stopped"),
                    Err(e) => format!(
                        "the job was cancelled; pre-deploy task {task_id} could not be stopped: {e}"
                    ),
                });
                return Err(ReleaseError::Cancelled);
            }
        }
        let task = ecs.task(&arn).await?;
        if let (Some((group, stream, _)), Some(client)) = (&stream, &logs) {
            match new_lines(client, group, stream, &mut token).await {
                Ok(lines) => {
                    for line in lines {
                        log.info(&format!("[{task_id}] {line}"));
                    }
                }
                // The lines help, the exit code decides.
                Err(e) if !logs_unavailable => {
                    logs_unavailable = true;
                    log.warn(&format!("cannot show the task's log lines: {e}"));
                }
                Err(_) => {}
            }
        }
        if task.last_status() == Some("STOPPED") {
            break task;
        }
        if Instant::now() >= deadline {
            let limit = deadline.saturating_duration_since(started);
            let _ = ecs
                .stop_task(&arn, "gitlab-ecs-executor: pre-deploy task timed out")
                .await;
            return Err(ReleaseError::PreDeployFailed {
                task: task_id,
                exit_code: None,
                reason: match gate.task.timeout {
                    Some(t) if started + t <= req.deadline.at => format!(
                        "it did not finish within {} (ECS_PRE_DEPLOY_TIMEOUT) and was stopped",
                        clock::human_duration(limit.as_secs() as i64)
                    ),
                    _ => format!(
                        "it did not finish within {} and was stopped: it shares {}",
                        clock::human_duration(limit.as_secs() as i64),
                        req.deadline
                    ),
                },
            });
        }
    };
    let ours = task
        .containers()
        .iter()
        .find(|c| c.name() == Some(name.as_str()));
    let exit_code = ours.and_then(|c| c.exit_code());
    let reason = ours
        .and_then(|c| c.reason())
        .or(task.stopped_reason())
        .unwrap_or("no reason given")
        .to_string();
    match exit_code {
        Some(0) => {
            log.step(&format!(
                "Pre-deploy task {task_id} exited 0 after {}; rolling out",
                clock::human_duration(started.elapsed().as_secs() as i64)
            ));
            Ok(())
        }
        code => Err(ReleaseError::PreDeployFailed {
            task: task_id,
            exit_code: code,
            reason,
        }),
    }
}

/// The log lines written since `token`, oldest first; advances `token`.
async fn new_lines(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    token: &mut Option<String>,
) -> Result<Vec<String>, CallError> {
    let mut lines = Vec::new();
    loop {
        let result = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            // The stream appears with the task's first line.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(lines)
            }
            Err(e) => return Err(CallError::from_sdk("logs:GetLogEvents", e)),
        };
        lines.extend(
            out.events()
                .iter()
                .filter_map(|e| e.message())
                .map(|m| m.trim_end().to_string()),
        );
        let next = out.next_forward_token().map(str::to_string);
        // The same token again: nothing more for now.
        if next.is_none() || next == *token {
            return Ok(lines);
        }
        *token = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ecs::fake::{FakeEcs, Scenario, TaskScenario};
    use crate::release::testing::{cancel_after, captured_log, never, request, shop};

    const REVISION: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop:1";

    fn migration(timeout: Option<Duration>) -> PreDeployGate {
        PreDeployGate {
            task: PreDeploy {
                command: vec!["bin/rails".into(), "db:migrate".into()],
                timeout,
            },
            aws: aws_config::SdkConfig::builder().build(),
        }
    }

    async fn gate(
        ecs: &FakeEcs,
        timeout: Option<Duration>,
        mut cancel: Cancel,
    ) -> (Result<(), ReleaseError>, String) {
        let (log, out) = captured_log();
        let req = request("v1.1.0", Duration::from_secs(600));
        let result = run(&migration(timeout), ecs, &req, REVISION, &log, &mut cancel).await;
        (result, out.text())
    }

    #[tokio::test(start_paused = true)]
    async fn the_migration_runs_in_the_release_container_of_the_new_revision_and_exit_0_goes_on() {
        let ecs = shop(Scenario::Stuck).with_tasks(TaskScenario::ExitsAt { poll: 3, code: 0 });
        let (result, log) = gate(&ecs, None, never()).await;
        assert!(result.is_ok(), "{result:?}");
        let tasks = ecs.tasks();
        assert_eq!(tasks.len(), 1);
        // The app container, not the sidecar listed first.
        assert_eq!(tasks[0].container, "app");
        assert_eq!(tasks[0].command, ["bin/rails", "db:migrate"]);
        assert_eq!(tasks[0].task_definition, REVISION);
        assert_eq!(ecs.count("StopTask"), 0);
        assert!(log.contains("exited 0"), "{log}");
        assert!(log.contains("only its exit code will show"), "{log}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_migration_stops_the_release_with_its_exit_code_and_reason() {
        let ecs = shop(Scenario::Stuck).with_tasks(TaskScenario::ExitsAt { poll: 2, code: 3 });
        let (result, _) = gate(&ecs, None, never()).await;
        match result {
            Err(ReleaseError::PreDeployFailed {
                exit_code, reason, ..
            }) => {
                assert_eq!(exit_code, Some(3));
                assert_eq!(reason, "Essential container in task exited");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ecs.count("StopTask"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_migration_past_its_timeout_is_stopped_and_named_by_its_setting() {
        let ecs = shop(Scenario::Stuck).with_tasks(TaskScenario::Runs);
        let (result, _) = gate(&ecs, Some(Duration::from_secs(30)), never()).await;
        match result {
            Err(ReleaseError::PreDeployFailed {
                exit_code: None,
                reason,
                ..
            }) => assert!(reason.contains("ECS_PRE_DEPLOY_TIMEOUT"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let stopped = ecs.tasks()[0].stopped_by.clone().unwrap_or_default();
        assert!(stopped.contains("timed out"), "{stopped}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_migration_past_the_rollout_deadline_names_the_deadline() {
        let ecs = shop(Scenario::Stuck).with_tasks(TaskScenario::Runs);
        // The task's own limit would allow an hour; the release has ten minutes.
        let (result, _) = gate(&ecs, Some(Duration::from_secs(3600)), never()).await;
        match result {
            Err(ReleaseError::PreDeployFailed { reason, .. }) => {
                assert!(!reason.contains("ECS_PRE_DEPLOY_TIMEOUT"), "{reason}");
                assert!(reason.contains("within 10m"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            ecs.tasks()[0].stopped_by.is_some(),
            "the task was left running"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_during_the_migration_stops_the_task() {
        let ecs = shop(Scenario::Stuck).with_tasks(TaskScenario::Runs);
        let (result, log) = gate(&ecs, None, cancel_after(Duration::from_secs(7))).await;
        assert!(matches!(result, Err(ReleaseError::Cancelled)), "{result:?}");
        let stopped = ecs.tasks()[0].stopped_by.clone().unwrap_or_default();
        assert!(stopped.contains("cancelled"), "{stopped}");
        assert!(log.contains("was stopped"), "{log}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_run_task_is_the_call_that_failed() {
        let ecs = shop(Scenario::Stuck);
        ecs.refuse("RunTask");
        let (result, _) = gate(&ecs, None, never()).await;
        assert!(
            matches!(&result, Err(ReleaseError::Ecs(EcsError::Call(c))) if c.fault == crate::aws::Fault::Denied),
            "{result:?}"
        );
        assert!(ecs.tasks().is_empty());
    }
}
