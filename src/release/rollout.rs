//! Pure rollout decisions over `DescribeServices` output: is **our** deployment done, failed
//! or rolled back, and what is new to tell the user. The polling itself lives in `deploy`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service, Task};

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

/// Which revision `rollback` returns to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTo {
    /// The newest older revision that runs a different image than the current one.
    Previous,
    /// The newest revision whose image has this tag.
    Tag(String),
    /// This revision number of the family.
    Revision(i32),
}

/// A revision of the family: ARN, revision number and the target container's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Task definition ARN.
    pub arn: String,
    /// Revision number.
    pub revision: i32,
    /// Image of the release container.
    pub image: String,
}

/// Picks the revision to roll back to among `candidates` (newest first).
pub fn pick_rollback(
    current: &Candidate,
    candidates: &[Candidate],
    to: &RollbackTo,
) -> Result<Candidate, String> {
    let found = match to {
        RollbackTo::Previous => candidates
            .iter()
            .find(|c| c.revision < current.revision && c.image != current.image),
        RollbackTo::Tag(tag) => candidates
            .iter()
            .find(|c| c.image.rsplit_once(':').is_some_and(|(_, t)| t == tag)),
        RollbackTo::Revision(n) => candidates.iter().find(|c| c.revision == *n),
    };
    let found = found.cloned().ok_or_else(|| match to {
        RollbackTo::Previous => format!(
            "no older ACTIVE revision runs another image than {} (revision {})",
            current.image, current.revision
        ),
        RollbackTo::Tag(tag) => {
            format!("no ACTIVE revision of the family runs an image tagged {tag}")
        }
        RollbackTo::Revision(n) => format!("revision {n} is not an ACTIVE revision of the family"),
    })?;
    if found.arn == current.arn {
        return Err(format!("the service already runs {}", short_td(&found.arn)));
    }
    Ok(found)
}

/// `family:revision` from a task definition ARN.
pub fn short_td(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Remembers what was already shown, so each event, count change and stopped task appears
/// in the job log once.
#[derive(Debug, Default)]
pub struct Observer {
    seen_events: HashSet<String>,
    deployment_lines: HashMap<String, String>,
    seen_tasks: HashSet<String>,
    not_before_epoch_secs: i64,
}

impl Observer {
    /// Shows only events created at or after `not_before_epoch_secs`.
    pub fn new(not_before_epoch_secs: i64) -> Self {
        Observer {
            not_before_epoch_secs,
            ..Default::default()
        }
    }

    /// New service events, oldest first.
    pub fn new_events(&mut self, service: &Service) -> Vec<String> {
        let mut fresh: Vec<_> = service
            .events()
            .iter()
            .filter(|e| {
                e.created_at()
                    .is_none_or(|t| t.secs() >= self.not_before_epoch_secs)
            })
            .filter(|e| {
                e.id()
                    .is_some_and(|id| self.seen_events.insert(id.to_string()))
            })
            .collect();
        fresh.sort_by_key(|e| e.created_at().map(|t| t.secs()).unwrap_or(0));
        fresh
            .into_iter()
            .map(|e| format!("event: {}", e.message().unwrap_or_default()))
            .collect()
    }

    /// A line per deployment whose counts or state changed since the last poll.
    pub fn deployment_changes(&mut self, service: &Service) -> Vec<String> {
        let mut lines = Vec::new();
        for d in service.deployments() {
            let line = format!(
                "deployment {} ({}, {}): desired {}, pending {}, running {}, failed {}, {}{}",
                d.id().unwrap_or("?"),
                d.status().unwrap_or("?"),
                d.task_definition().map(short_td).unwrap_or("?"),
                d.desired_count(),
                d.pending_count(),
                d.running_count(),
                d.failed_tasks(),
                d.rollout_state()
                    .map(|s| s.as_str())
                    .unwrap_or("no rollout state"),
                d.rollout_state_reason()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            let id = d.id().unwrap_or("?").to_string();
            if self.deployment_lines.get(&id) != Some(&line) {
                self.deployment_lines.insert(id, line.clone());
                lines.push(line);
            }
        }
        lines
    }

    /// A line per stopped task not shown before: its reason and container exit codes.
    pub fn stopped_tasks(&mut self, tasks: &[Task]) -> Vec<String> {
        tasks
            .iter()
            .filter(|t| {
                t.task_arn()
                    .is_some_and(|a| self.seen_tasks.insert(a.to_string()))
            })
            .map(|t| {
                let containers: Vec<String> = t
                    .containers()
                    .iter()
                    .map(|c| {
                        format!(
                            "{} exit {}{}",
                            c.name().unwrap_or("?"),
                            c.exit_code()
                                .map(|e| e.to_string())
                                .unwrap_or_else(|| "-".into()),
                            c.reason().map(|r| format!(" ({r})")).unwrap_or_default()
                        )
                    })
                    .collect();
                format!(
                    "stopped task {}: {}{}{}",
                    t.task_arn()
                        .map(|a| a.rsplit('/').next().unwrap_or(a))
                        .unwrap_or("?"),
                    t.stopped_reason().unwrap_or("no reason given"),
                    t.stop_code()
                        .map(|c| format!(" [{}]", c.as_str()))
                        .unwrap_or_default(),
                    if containers.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", containers.join(", "))
                    }
                )
            })
            .collect()
    }
}

/// The pause before the next poll: `base` ± 20 %, so many runners polling one account do
/// not fall into step.
pub fn jittered(base: Duration, entropy: u64) -> Duration {
    let spread = base.as_millis() as u64 / 5;
    if spread == 0 {
        return base;
    }
    let offset = entropy % (2 * spread + 1);
    base + Duration::from_millis(offset) - Duration::from_millis(spread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::primitives::DateTime;
    use aws_sdk_ecs::types::{Container, ServiceEvent};

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
    fn each_event_count_change_and_stopped_task_is_shown_once() {
        let mut o = Observer::new(100);
        let ev = |id: &str, t: i64, m: &str| {
            ServiceEvent::builder()
                .id(id)
                .created_at(DateTime::from_secs(t))
                .message(m)
                .build()
        };
        let s = Service::builder()
            .events(ev("3", 120, "third"))
            .events(ev("2", 110, "second"))
            .events(ev("1", 90, "before the release"))
            .deployments(dep(
                "ecs-svc/2",
                "PRIMARY",
                OURS,
                Some(DeploymentRolloutState::InProgress),
                1,
            ))
            .build();
        assert_eq!(o.new_events(&s), ["event: second", "event: third"]);
        assert!(o.new_events(&s).is_empty());
        assert_eq!(o.deployment_changes(&s).len(), 1);
        assert!(o.deployment_changes(&s).is_empty());
        let task = Task::builder()
            .task_arn("arn:aws:ecs:r:1:task/c/abc")
            .stopped_reason("Essential container in task exited")
            .containers(Container::builder().name("app").exit_code(3).build())
            .build();
        assert_eq!(
            o.stopped_tasks(std::slice::from_ref(&task)),
            ["stopped task abc: Essential container in task exited; app exit 3"]
        );
        assert!(o.stopped_tasks(&[task]).is_empty());
    }

    #[test]
    fn rollback_targets() {
        let c = |rev: i32, tag: &str| Candidate {
            arn: format!("arn:aws:ecs:r:1:task-definition/app:{rev}"),
            revision: rev,
            image: format!("r/app:{tag}"),
        };
        let all = [
            c(5, "v1.3.0"),
            c(4, "v1.3.0"),
            c(3, "v1.2.0"),
            c(2, "v1.1.0"),
        ];
        let current = c(5, "v1.3.0");
        assert_eq!(
            pick_rollback(&current, &all, &RollbackTo::Previous)
                .unwrap()
                .revision,
            3
        );
        assert_eq!(
            pick_rollback(&current, &all, &RollbackTo::Tag("v1.1.0".into()))
                .unwrap()
                .revision,
            2
        );
        assert_eq!(
            pick_rollback(&current, &all, &RollbackTo::Revision(4))
                .unwrap()
                .revision,
            4
        );
        assert!(pick_rollback(&current, &all, &RollbackTo::Revision(5))
            .unwrap_err()
            .contains("already runs"));
        assert!(pick_rollback(&current, &all, &RollbackTo::Tag("v9".into())).is_err());
        assert!(pick_rollback(&c(2, "v1.1.0"), &all[3..], &RollbackTo::Previous).is_err());
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for e in [0, 1, 999, 2000, u64::MAX] {
            let d = jittered(Duration::from_secs(5), e);
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
                "{d:?}"
            );
        }
    }
}
