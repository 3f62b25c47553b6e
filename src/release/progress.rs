//! What is new to tell the user about a rollout: service events, per-deployment counts and
//! stopped tasks, each shown once. Pure: the polling lives in `watch`.

use std::collections::{HashMap, HashSet};

use aws_sdk_ecs::types::{Service, Task};

use super::ecs::short_td;

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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::primitives::DateTime;
    use aws_sdk_ecs::types::{Container, Deployment, DeploymentRolloutState, ServiceEvent};

    const OURS: &str = "arn:aws:ecs:r:1:task-definition/app:8";

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
            .deployments(
                Deployment::builder()
                    .id("ecs-svc/2")
                    .status("PRIMARY")
                    .task_definition(OURS)
                    .desired_count(2)
                    .running_count(1)
                    .rollout_state(DeploymentRolloutState::InProgress)
                    .build(),
            )
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
}
