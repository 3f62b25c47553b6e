//! What is new to tell the user about a rollout: service events, per-deployment counts,
//! stopped tasks and, for service deployments, the lifecycle stage, traffic shares, bake
//! time, hooks, alarms and the circuit breaker — each shown once. Pure: the polling lives in
//! `watch`, the clock comes in as an argument.

use std::collections::{HashMap, HashSet};

use aws_sdk_ecs::types::{
    Service, ServiceDeployment, ServiceDeploymentRollbackMonitorsStatus, ServiceRevisionSummary,
    Task,
};

use super::ecs::short_td;
use super::strategy::Strategy;

/// Remembers what was already shown, so each event, count change and stopped task appears
/// in the job log once.
#[derive(Debug, Default)]
pub struct Observer {
    seen_events: HashSet<String>,
    deployment_lines: HashMap<String, String>,
    seen_tasks: HashSet<String>,
    not_before_epoch_secs: i64,
    /// What was last said of each aspect of the service deployment (stage, traffic, …).
    service_deployment_lines: HashMap<&'static str, String>,
    /// Hook id → the last status line shown.
    hook_lines: HashMap<String, String>,
    /// Hook id → the lifecycle stage it was seen at.
    hook_stages: HashMap<String, String>,
    /// When the final bake began (epoch seconds, by our clock).
    bake_started: Option<i64>,
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

    /// The lifecycle stage each hook was seen at (ECS stops saying once a hook has failed).
    pub fn hook_stages(&self) -> &HashMap<String, String> {
        &self.hook_stages
    }

    /// What changed in a service deployment since the last poll at `now` (epoch seconds):
    /// status, lifecycle stage, traffic shares, the new revision's tasks, hooks, alarms and the
    /// circuit breaker.
    pub fn service_deployment_changes(&mut self, sd: &ServiceDeployment, now: i64) -> Vec<String> {
        let mut lines = Vec::new();
        let stage = sd.lifecycle_stage().map(|s| s.as_str()).unwrap_or("");
        let status = sd.status().map(|s| s.as_str()).unwrap_or("?");
        self.say(
            &mut lines,
            "status",
            match sd.status_reason() {
                Some(reason) if !reason.is_empty() => {
                    format!("service deployment {status}: {reason}")
                }
                _ => format!("service deployment {status}"),
            },
        );
        if !stage.is_empty() {
            self.say(&mut lines, "stage", format!("lifecycle stage {stage}"));
            if stage == "BAKE_TIME" {
                self.bake_started.get_or_insert(now);
            }
        }
        if let Some(target) = sd.target_service_revision() {
            if let Some(traffic) = traffic(target, sd.source_service_revisions()) {
                self.say(&mut lines, "traffic", traffic);
            }
            self.say(
                &mut lines,
                "tasks",
                format!(
                    "new revision: {} running, {} pending of {}",
                    target.running_task_count(),
                    target.pending_task_count(),
                    target.requested_task_count()
                ),
            );
        }
        for hook in sd.lifecycle_hook_details() {
            let id = hook.hook_id().unwrap_or("?").to_string();
            if !stage.is_empty() {
                self.hook_stages
                    .entry(id.clone())
                    .or_insert_with(|| stage.to_string());
            }
            let line = format!(
                "hook {id} ({}) at {}: {}{}",
                hook.target_type().map(|t| t.as_str()).unwrap_or("?"),
                self.hook_stages.get(&id).map(String::as_str).unwrap_or("?"),
                hook.status().map(|s| s.as_str()).unwrap_or("?"),
                hook.expires_at()
                    .map(|t| format!(
                        ", times out in {}",
                        crate::clock::human_duration(t.secs() - now)
                    ))
                    .unwrap_or_default()
            );
            // The countdown changes each poll; a hook's line is news when its status does.
            let key = line
                .split(", times out")
                .next()
                .unwrap_or(&line)
                .to_string();
            if self.hook_lines.get(&id) != Some(&key) {
                self.hook_lines.insert(id, key);
                lines.push(line);
            }
        }
        if let Some(alarms) = sd.alarms() {
            let triggered = alarms.triggered_alarm_names();
            if !triggered.is_empty()
                || alarms.status() == Some(&ServiceDeploymentRollbackMonitorsStatus::Triggered)
            {
                self.say(
                    &mut lines,
                    "alarms",
                    format!("alarm {} fired", triggered.join(", ")),
                );
            }
        }
        if let Some(breaker) = sd.deployment_circuit_breaker() {
            if breaker.failure_count() > 0 {
                self.say(
                    &mut lines,
                    "breaker",
                    format!(
                        "circuit breaker: {} failed tasks (threshold {})",
                        breaker.failure_count(),
                        breaker.threshold()
                    ),
                );
            }
        }
        lines
    }

    /// How much of the final bake is left at `now`, once it began.
    pub fn bake_left(&self, strategy: &Strategy, now: i64) -> Option<i64> {
        let bake = match strategy {
            Strategy::Rolling => return None,
            Strategy::BlueGreen { bake }
            | Strategy::Linear { bake, .. }
            | Strategy::Canary { bake, .. } => bake.as_secs() as i64,
        };
        self.bake_started.map(|t| (t + bake - now).max(0))
    }

    fn say(&mut self, lines: &mut Vec<String>, aspect: &'static str, line: String) {
        if self.service_deployment_lines.get(aspect) != Some(&line) {
            self.service_deployment_lines.insert(aspect, line.clone());
            lines.push(line);
        }
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

/// `production traffic: 10 % new, 90 % old (test traffic: 100 % new)` while traffic shifts.
fn traffic(target: &ServiceRevisionSummary, sources: &[ServiceRevisionSummary]) -> Option<String> {
    let production = target.requested_production_traffic_weight()?;
    let old: f64 = sources
        .iter()
        .filter_map(ServiceRevisionSummary::requested_production_traffic_weight)
        .sum();
    let test = target
        .requested_test_traffic_weight()
        // Test traffic matters until production traffic has moved over.
        .filter(|t| *t > 0.0 && production < 100.0)
        .map(|t| format!(" (test traffic: {t} % new)"))
        .unwrap_or_default();
    Some(format!(
        "production traffic: {production} % new, {old} % old{test}"
    ))
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
