//! The verdict on **our** deployment, a pure function of what ECS reports: the service
//! deployment (`DescribeServiceDeployments`) for every strategy, or `DescribeServices`'
//! deployments where that API is missing. Done, failed, rolled back by ECS, waiting at an
//! approval gate, or still going; and whether another deployment is busy.

use std::collections::HashMap;

use aws_sdk_ecs::types::{
    Deployment, DeploymentLifecycleHookStatus, DeploymentLifecycleHookTargetType,
    DeploymentRolloutState, Service, ServiceDeployment, ServiceDeploymentRollbackMonitorsStatus,
};

use super::ecs::short_td;

/// The state of our deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still rolling out.
    InProgress,
    /// Our deployment completed and the service's primary runs our task definition.
    Completed,
    /// Our deployment failed and the service still points at it (no ECS rollback).
    Failed(String),
    /// ECS's circuit breaker rolled the service back to another task definition.
    RolledBack(String),
    /// ECS tried to roll our deployment back and its rollback failed.
    RollbackFailed(String),
    /// Our deployment is gone and something else is primary.
    Vanished(String),
    /// ECS is rolling our deployment back (a failed hook, an alarm, the circuit breaker, a
    /// requested rollback); the reason so far.
    RollingBack(String),
    /// The deployment waits at PAUSE lifecycle hooks for `ContinueServiceDeployment`.
    AwaitingApproval(Pause),
}

/// A deployment waiting at an approval gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// The service deployment.
    pub deployment: String,
    /// The hooks awaiting action.
    pub hook_ids: Vec<String>,
    /// The lifecycle stage it waits at.
    pub stage: String,
    /// When the first hook times out (epoch seconds), if ECS said.
    pub expires_at: Option<i64>,
}

/// As the job log says it.
impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::InProgress => f.write_str("still rolling out"),
            Verdict::Completed => f.write_str("completed"),
            Verdict::Failed(why) => write!(f, "failed: {why}"),
            Verdict::RolledBack(why) => write!(f, "rolled back by ECS: {why}"),
            Verdict::RollbackFailed(why) => write!(f, "ECS's rollback failed: {why}"),
            Verdict::Vanished(why) => write!(f, "gone: {why}"),
            Verdict::RollingBack(why) => write!(f, "being rolled back by ECS: {why}"),
            Verdict::AwaitingApproval(pause) => write!(
                f,
                "waiting for approval at {} (hooks {})",
                pause.stage,
                pause.hook_ids.join(", ")
            ),
        }
    }
}

impl Verdict {
    /// Whether waiting is over (an approval gate is decided by the caller).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Verdict::InProgress | Verdict::RollingBack(_) | Verdict::AwaitingApproval(_)
        )
    }
}

fn primary(service: &Service) -> Option<&Deployment> {
    service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
}

/// Judges deployment `deployment_id` of `task_definition` in `service`.
pub fn assess(service: &Service, deployment_id: &str, task_definition: &str) -> Verdict {
    if let Some(status @ ("DRAINING" | "INACTIVE")) = service.status() {
        return Verdict::Failed(format!("the service is {status}"));
    }
    let primary_td = primary(service)
        .and_then(|d| d.task_definition())
        .unwrap_or("none");
    let ours = service
        .deployments()
        .iter()
        .find(|d| d.id() == Some(deployment_id));
    let Some(ours) = ours else {
        return if primary_td == task_definition {
            Verdict::Vanished(format!(
                "deployment {deployment_id} was replaced by another deployment of the same task definition"
            ))
        } else {
            Verdict::RolledBack(format!(
                "deployment {deployment_id} is gone and the service runs {primary_td} again (rolled back by the deployment circuit breaker or another deployment)"
            ))
        };
    };
    let reason = || {
        ours.rollout_state_reason()
            .unwrap_or("no reason given")
            .to_string()
    };
    match ours.rollout_state() {
        Some(DeploymentRolloutState::Failed) if primary_td != task_definition => Verdict::RolledBack(format!(
            "deployment {deployment_id} FAILED ({}) and ECS rolled the service back to {primary_td}",
            reason()
        )),
        Some(DeploymentRolloutState::Failed) => Verdict::Failed(format!("deployment {deployment_id} FAILED: {}", reason())),
        Some(DeploymentRolloutState::Completed) if primary_td == task_definition => Verdict::Completed,
        Some(DeploymentRolloutState::Completed) => Verdict::Vanished(format!(
            "deployment {deployment_id} completed but the service now runs {primary_td}"
        )),
        // No rolloutState: a service without the ECS deployment controller's reporting;
        // steady state is then one deployment, ours, with all tasks running.
        None if service.deployments().len() == 1
            && ours.status() == Some("PRIMARY")
            && ours.running_count() == ours.desired_count() =>
        {
            Verdict::Completed
        }
        _ => Verdict::InProgress,
    }
}

/// Judges service deployment `sd`, which rolls out `task_definition`, with the service as it
/// is now; `hook_stages` names the stage each hook was seen at (ECS does not say it once a
/// hook has failed).
pub fn assess_service_deployment(
    sd: &ServiceDeployment,
    service: &Service,
    task_definition: &str,
    hook_stages: &HashMap<String, String>,
) -> Verdict {
    let arn = sd.service_deployment_arn().unwrap_or("?");
    let running = service.task_definition().unwrap_or("none");
    match sd.status().map(|s| s.as_str()).unwrap_or("PENDING") {
        "SUCCESSFUL" if running == task_definition => Verdict::Completed,
        "SUCCESSFUL" => Verdict::Vanished(format!(
            "service deployment {arn} succeeded but the service now runs {}",
            short_td(running)
        )),
        "ROLLBACK_SUCCESSFUL" => Verdict::RolledBack(format!(
            "{}; ECS rolled the service back to {}",
            failure_cause(sd, hook_stages),
            short_td(running)
        )),
        "ROLLBACK_FAILED" => Verdict::RollbackFailed(format!(
            "{}; ECS's rollback failed and the service runs {} (check it in the ECS console)",
            failure_cause(sd, hook_stages),
            short_td(running)
        )),
        "ROLLBACK_REQUESTED" | "ROLLBACK_IN_PROGRESS" => {
            Verdict::RollingBack(failure_cause(sd, hook_stages))
        }
        "STOPPED" => Verdict::Failed(format!(
            "service deployment {arn} STOPPED: {}",
            failure_cause(sd, hook_stages)
        )),
        _ => match awaiting_hooks(sd) {
            Some(pause) => Verdict::AwaitingApproval(pause),
            None => Verdict::InProgress,
        },
    }
}

/// PAUSE hooks of `sd` awaiting action, if any.
pub fn awaiting_hooks(sd: &ServiceDeployment) -> Option<Pause> {
    let waiting: Vec<_> = sd
        .lifecycle_hook_details()
        .iter()
        .filter(|h| {
            h.target_type() == Some(&DeploymentLifecycleHookTargetType::Pause)
                && h.status() == Some(&DeploymentLifecycleHookStatus::AwaitingAction)
        })
        .collect();
    (!waiting.is_empty()).then(|| Pause {
        deployment: sd.service_deployment_arn().unwrap_or_default().to_string(),
        hook_ids: waiting
            .iter()
            .filter_map(|h| h.hook_id())
            .map(str::to_string)
            .collect(),
        stage: sd
            .lifecycle_stage()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "?".into()),
        expires_at: waiting
            .iter()
            .filter_map(|h| h.expires_at().map(|t| t.secs()))
            .min(),
    })
}

/// Why ECS failed or stopped a service deployment, from everything it reports: fired alarms,
/// the circuit breaker, failed or timed-out hooks (with the stage they ran at), the reasons.
pub fn failure_cause(sd: &ServiceDeployment, hook_stages: &HashMap<String, String>) -> String {
    let mut causes = Vec::new();
    if let Some(alarms) = sd.alarms() {
        if alarms.status() == Some(&ServiceDeploymentRollbackMonitorsStatus::Triggered)
            || !alarms.triggered_alarm_names().is_empty()
        {
            causes.push(format!(
                "alarm {} fired",
                alarms.triggered_alarm_names().join(", ")
            ));
        }
    }
    if let Some(breaker) = sd.deployment_circuit_breaker() {
        if breaker.status() == Some(&ServiceDeploymentRollbackMonitorsStatus::Triggered) {
            causes.push(format!(
                "the deployment circuit breaker tripped ({} failed tasks, threshold {})",
                breaker.failure_count(),
                breaker.threshold()
            ));
        }
    }
    for hook in sd.lifecycle_hook_details() {
        let status = hook.status().map(|s| s.as_str()).unwrap_or("?");
        if matches!(status, "FAILED" | "TIMED_OUT") {
            let id = hook.hook_id().unwrap_or("?");
            let stage = hook_stages
                .get(id)
                .cloned()
                .or_else(|| sd.lifecycle_stage().map(|s| s.as_str().to_string()))
                .unwrap_or_else(|| "?".into());
            let target = match (hook.target_type().map(|t| t.as_str()), hook.target_arn()) {
                (Some("AWS_LAMBDA"), Some(arn)) => format!("Lambda {arn}"),
                (Some(kind), _) => kind.to_string(),
                (None, _) => "hook".into(),
            };
            causes.push(format!(
                "lifecycle hook {id} ({target}) {status} at {stage}"
            ));
        }
    }
    let reasons = [sd.status_reason(), sd.rollback().and_then(|r| r.reason())];
    for reason in reasons.into_iter().flatten() {
        if !reason.is_empty() && !causes.iter().any(|c| c.contains(reason)) {
            causes.push(reason.to_string());
        }
    }
    if causes.is_empty() {
        format!(
            "service deployment {} is {}",
            sd.service_deployment_arn().unwrap_or("?"),
            sd.status().map(|s| s.as_str()).unwrap_or("?")
        )
    } else {
        causes.join("; ")
    }
}

/// Whether the service is busy with a deployment other than a completed primary.
pub fn other_deployment_in_progress(service: &Service) -> Option<String> {
    let busy = service.deployments().len() > 1
        || primary(service)
            .is_some_and(|d| d.rollout_state() == Some(&DeploymentRolloutState::InProgress));
    busy.then(|| {
        let p = primary(service);
        format!(
            "{} of {} ({})",
            p.and_then(|d| d.id()).unwrap_or("?"),
            p.and_then(|d| d.task_definition())
                .map(short_td)
                .unwrap_or("?"),
            p.and_then(|d| d.rollout_state())
                .map(|s| s.as_str())
                .unwrap_or("no rollout state")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "arn:aws:ecs:r:1:task-definition/app:8";
    const OLD: &str = "arn:aws:ecs:r:1:task-definition/app:7";

    fn dep(
        id: &str,
        status: &str,
        td: &str,
        state: Option<DeploymentRolloutState>,
        running: i32,
    ) -> Deployment {
        Deployment::builder()
            .id(id)
            .status(status)
            .task_definition(td)
            .desired_count(2)
            .running_count(running)
            .set_rollout_state(state)
            .rollout_state_reason("ECS deployment circuit breaker: tasks failed to start.")
            .build()
    }

    fn service(deps: Vec<Deployment>) -> Service {
        Service::builder()
            .status("ACTIVE")
            .set_deployments(Some(deps))
            .build()
    }

    #[test]
    fn completed_only_when_ours_completed_and_primary() {
        let s = service(vec![dep(
            "ecs-svc/2",
            "PRIMARY",
            OURS,
            Some(DeploymentRolloutState::Completed),
            2,
        )]);
        assert_eq!(assess(&s, "ecs-svc/2", OURS), Verdict::Completed);
        let s = service(vec![
            dep(
                "ecs-svc/2",
                "PRIMARY",
                OURS,
                Some(DeploymentRolloutState::InProgress),
                1,
            ),
            dep(
                "ecs-svc/1",
                "ACTIVE",
                OLD,
                Some(DeploymentRolloutState::Completed),
                1,
            ),
        ]);
        assert_eq!(assess(&s, "ecs-svc/2", OURS), Verdict::InProgress);
    }

    #[test]
    fn a_circuit_breaker_rollback_is_never_success() {
        // What `services-stable` reports as success: one deployment, running == desired.
        let s = service(vec![dep(
            "ecs-svc/3",
            "PRIMARY",
            OLD,
            Some(DeploymentRolloutState::Completed),
            2,
        )]);
        assert!(matches!(
            assess(&s, "ecs-svc/2", OURS),
            Verdict::RolledBack(_)
        ));
        let s = service(vec![
            dep(
                "ecs-svc/3",
                "PRIMARY",
                OLD,
                Some(DeploymentRolloutState::InProgress),
                1,
            ),
            dep(
                "ecs-svc/2",
                "ACTIVE",
                OURS,
                Some(DeploymentRolloutState::Failed),
                0,
            ),
        ]);
        let v = assess(&s, "ecs-svc/2", OURS);
        assert!(
            matches!(&v, Verdict::RolledBack(m) if m.contains("circuit breaker: tasks failed")),
            "{v:?}"
        );
        let s = service(vec![dep(
            "ecs-svc/2",
            "PRIMARY",
            OURS,
            Some(DeploymentRolloutState::Failed),
            0,
        )]);
        assert!(matches!(assess(&s, "ecs-svc/2", OURS), Verdict::Failed(_)));
    }

    #[test]
    fn without_rollout_state_steady_state_counts() {
        let s = service(vec![dep("ecs-svc/2", "PRIMARY", OURS, None, 2)]);
        assert_eq!(assess(&s, "ecs-svc/2", OURS), Verdict::Completed);
        let s = service(vec![dep("ecs-svc/2", "PRIMARY", OURS, None, 1)]);
        assert_eq!(assess(&s, "ecs-svc/2", OURS), Verdict::InProgress);
    }

    #[test]
    fn busy_services_are_named() {
        let s = service(vec![
            dep(
                "ecs-svc/5",
                "PRIMARY",
                OLD,
                Some(DeploymentRolloutState::InProgress),
                1,
            ),
            dep(
                "ecs-svc/4",
                "ACTIVE",
                OLD,
                Some(DeploymentRolloutState::Completed),
                1,
            ),
        ]);
        assert_eq!(
            other_deployment_in_progress(&s).unwrap(),
            "ecs-svc/5 of app:7 (IN_PROGRESS)"
        );
        let s = service(vec![dep(
            "ecs-svc/5",
            "PRIMARY",
            OLD,
            Some(DeploymentRolloutState::Completed),
            2,
        )]);
        assert_eq!(other_deployment_in_progress(&s), None);
    }

    #[test]
    fn a_failed_hook_rolled_back_by_ecs_is_a_rollback_and_a_failed_rollback_is_not() {
        use aws_sdk_ecs::types::{
            DeploymentLifecycleHookDetail, DeploymentLifecycleHookStatus, ServiceDeploymentStatus,
        };
        let deployment = |status| {
            ServiceDeployment::builder()
                .service_deployment_arn("arn:aws:ecs:r:1:service-deployment/c/s/1")
                .status(status)
                .lifecycle_hook_details(
                    DeploymentLifecycleHookDetail::builder()
                        .hook_id("migrate")
                        .status(DeploymentLifecycleHookStatus::Failed)
                        .build(),
                )
                .build()
        };
        let on_old = Service::builder().task_definition(OLD).build();
        let stages = HashMap::new();
        // The cause names a hook that FAILED; the rollback itself succeeded.
        let v = assess_service_deployment(
            &deployment(ServiceDeploymentStatus::RollbackSuccessful),
            &on_old,
            OURS,
            &stages,
        );
        assert!(
            matches!(&v, Verdict::RolledBack(why) if why.contains("migrate") && why.contains("FAILED")),
            "{v:?}"
        );
        let v = assess_service_deployment(
            &deployment(ServiceDeploymentStatus::RollbackFailed),
            &on_old,
            OURS,
            &stages,
        );
        assert!(
            matches!(&v, Verdict::RollbackFailed(why) if why.contains("ECS's rollback failed")),
            "{v:?}"
        );
    }
}
