//! The verdict on **our** deployment, a pure function of `DescribeServices` output: done,
//! failed, rolled back by ECS, or still going; and whether another deployment is busy.

use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};

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
    /// Our deployment is gone and something else is primary.
    Vanished(String),
}

impl Verdict {
    /// Whether waiting is over.
    pub fn is_final(&self) -> bool {
        *self != Verdict::InProgress
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
}
