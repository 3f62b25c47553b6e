//! Service deployments as ECS reports them since 2024 (`DescribeServiceDeployments`), for
//! the four strategies: a timeline of lifecycle stages with traffic weights, Lambda and
//! PAUSE lifecycle hooks, a CloudWatch alarm that can fire, ECS's own rollback,
//! `StopServiceDeployment(ROLLBACK)` and `ContinueServiceDeployment`. Field names and enum
//! values follow the ECS API reference and aws-sdk-ecs's shapes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::now;

/// How ECS deploys the service.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// `ROLLING`.
    Rolling,
    /// `BLUE_GREEN`.
    BlueGreen,
    /// `LINEAR` with this `stepPercent`.
    Linear(f64),
    /// `CANARY` with this `canaryPercent`.
    Canary(f64),
}

/// A lifecycle hook of the service.
#[derive(Clone, Debug)]
pub enum Hook {
    /// A Lambda hook at `stage`; `fails` makes it answer FAILED.
    Lambda {
        /// The lifecycle stage.
        stage: &'static str,
        /// Whether the function reports a failure.
        fails: bool,
    },
    /// A PAUSE hook at `stage`: the deployment waits for `ContinueServiceDeployment`.
    Pause {
        /// The lifecycle stage.
        stage: &'static str,
    },
}

/// How the service's deployments go (the first one; later ones are plain and succeed).
#[derive(Clone, Debug)]
pub struct Deployments {
    /// The strategy, reported in `deploymentConfiguration`.
    pub strategy: Strategy,
    /// `bakeTimeInMinutes` as configured (the endpoint's own bake lasts `stage_time`).
    pub bake_minutes: i32,
    /// Real time each lifecycle stage (and traffic step) takes here.
    pub stage_time: Duration,
    /// Stages that take longer here (every occurrence), so that a test sees them.
    pub slow_stages: Vec<(&'static str, Duration)>,
    /// Lifecycle hooks.
    pub hooks: Vec<Hook>,
    /// A deployment alarm and when it fires after the update, if it does.
    pub alarm: Option<(String, Option<Duration>)>,
    /// The deployment never gets past its first stage.
    pub stuck: bool,
}

impl Default for Deployments {
    fn default() -> Self {
        Deployments {
            strategy: Strategy::Rolling,
            bake_minutes: 0,
            stage_time: Duration::from_millis(400),
            slow_stages: Vec::new(),
            hooks: Vec::new(),
            alarm: None,
            stuck: false,
        }
    }
}

impl Deployments {
    /// The service's `deploymentConfiguration`, as `DescribeServices` reports it.
    pub fn configuration(&self) -> Value {
        let strategy = match self.strategy {
            Strategy::Rolling => "ROLLING",
            Strategy::BlueGreen => "BLUE_GREEN",
            Strategy::Linear(_) => "LINEAR",
            Strategy::Canary(_) => "CANARY",
        };
        let mut config = json!({
            "maximumPercent": 200, "minimumHealthyPercent": 100,
            "strategy": strategy, "bakeTimeInMinutes": self.bake_minutes,
            "deploymentCircuitBreaker": {"enable": true, "rollback": true},
        });
        match self.strategy {
            Strategy::Linear(step) => {
                config["linearConfiguration"] =
                    json!({"stepPercent": step, "stepBakeTimeInMinutes": 0})
            }
            Strategy::Canary(percent) => {
                config["canaryConfiguration"] =
                    json!({"canaryPercent": percent, "canaryBakeTimeInMinutes": 0})
            }
            _ => {}
        }
        if let Some((name, _)) = &self.alarm {
            config["alarms"] = json!({"alarmNames": [name], "enable": true, "rollback": true});
        }
        if !self.hooks.is_empty() {
            config["lifecycleHooks"] = self
                .hooks
                .iter()
                .map(|h| match h {
                    Hook::Lambda { stage, .. } => json!({
                        "targetType": "AWS_LAMBDA",
                        "hookTargetArn": "arn:aws:lambda:ap-northeast-1:123456789012:function:smoke-test",
                        "roleArn": "arn:aws:iam::123456789012:role/ecs-hooks",
                        "lifecycleStages": [stage]}),
                    Hook::Pause { stage } => json!({
                        "targetType": "PAUSE", "lifecycleStages": [stage],
                        "timeoutConfiguration": {"timeoutInMinutes": 1440, "action": "ROLLBACK"}}),
                })
                .collect();
        }
        config
    }

    /// The stages a deployment walks through, with the target's production and test
    /// traffic weights while in them.
    fn timeline(&self) -> Vec<Step> {
        let step = |stage: &'static str, production: f64, test: f64| Step {
            stage,
            production,
            test,
        };
        if self.strategy == Strategy::Rolling {
            return vec![step("SCALE_UP", 0.0, 0.0), step("CLEAN_UP", 100.0, 0.0)];
        }
        let mut steps = vec![
            step("PRE_SCALE_UP", 0.0, 0.0),
            step("SCALE_UP", 0.0, 0.0),
            step("POST_SCALE_UP", 0.0, 0.0),
            step("TEST_TRAFFIC_SHIFT", 0.0, 100.0),
            step("POST_TEST_TRAFFIC_SHIFT", 0.0, 100.0),
        ];
        let shares: Vec<f64> = match self.strategy {
            Strategy::Linear(p) => {
                let mut shares = Vec::new();
                let mut share = p;
                while share < 100.0 {
                    shares.push((share * 10.0).round() / 10.0);
                    share += p;
                }
                shares.push(100.0);
                shares
            }
            Strategy::Canary(p) => vec![p, 100.0],
            _ => vec![100.0],
        };
        for share in shares {
            steps.push(step("PRE_PRODUCTION_TRAFFIC_SHIFT", share, 100.0));
            steps.push(step("PRODUCTION_TRAFFIC_SHIFT", share, 100.0));
        }
        steps.extend([
            step("POST_PRODUCTION_TRAFFIC_SHIFT", 100.0, 100.0),
            step("BAKE_TIME", 100.0, 100.0),
            step("CLEAN_UP", 100.0, 100.0),
        ]);
        steps
    }
}

#[derive(Clone, Debug)]
struct Step {
    stage: &'static str,
    production: f64,
    test: f64,
}

#[derive(Clone, Debug)]
struct HookState {
    id: String,
    pause: bool,
    fails: bool,
    status: &'static str,
    expires_at: f64,
}

/// What a service deployment did to its service in one step of time.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Nothing the service must know.
    None,
    /// It succeeded: the service runs the target.
    Succeeded,
    /// ECS finished rolling back: the service runs the source again.
    RolledBack,
}

/// The ARNs a service deployment is known by.
pub struct Arns {
    /// The deployment.
    pub deployment: String,
    /// Its service.
    pub service: String,
    /// Its cluster.
    pub cluster: String,
    /// The revision it replaces.
    pub source_revision: Option<String>,
    /// The revision it deploys.
    pub target_revision: String,
}

/// One service deployment.
pub struct ServiceDeployment {
    /// Its ARN.
    pub arn: String,
    service_arn: String,
    cluster_arn: String,
    source_revision: Option<String>,
    target_revision: String,
    created: f64,
    updated: f64,
    finished: Option<f64>,
    config: Value,
    timeline: Vec<Step>,
    position: usize,
    step_started: Instant,
    /// `status`.
    pub status: &'static str,
    status_reason: String,
    hooks: Vec<HookState>,
    script_hooks: Vec<Hook>,
    rollback: Option<(String, f64)>,
    rollback_done_at: Option<Instant>,
    /// When the rollback ends, ROLLBACK_SUCCESSFUL (epoch seconds).
    pub rollback_due: Option<f64>,
    rollback_time: Duration,
    stage_time: Duration,
    slow_stages: Vec<(&'static str, Duration)>,
    alarm: Option<(String, Option<Instant>)>,
    alarm_fired: bool,
    stuck: bool,
    desired: i64,
    next_hook: u32,
}

impl ServiceDeployment {
    /// A deployment of `target_revision` over `source_revision`, started now.
    pub fn start(
        arns: Arns,
        script: &Deployments,
        rollback_time: Duration,
        desired: i64,
    ) -> ServiceDeployment {
        let mut sd = ServiceDeployment {
            arn: arns.deployment,
            service_arn: arns.service,
            cluster_arn: arns.cluster,
            source_revision: arns.source_revision,
            target_revision: arns.target_revision,
            created: now(),
            updated: now(),
            finished: None,
            config: script.configuration(),
            timeline: script.timeline(),
            position: 0,
            step_started: Instant::now(),
            status: "IN_PROGRESS",
            status_reason: String::new(),
            hooks: Vec::new(),
            script_hooks: script.hooks.clone(),
            rollback: None,
            rollback_done_at: None,
            rollback_due: None,
            rollback_time,
            stage_time: script.stage_time,
            slow_stages: script.slow_stages.clone(),
            alarm: script
                .alarm
                .as_ref()
                .map(|(name, after)| (name.clone(), after.map(|a| Instant::now() + a))),
            alarm_fired: false,
            stuck: script.stuck,
            desired,
            next_hook: 0,
        };
        sd.enter_stage();
        sd
    }

    fn stage(&self) -> &'static str {
        self.timeline
            .get(self.position)
            .map(|s| s.stage)
            .unwrap_or("CLEAN_UP")
    }

    /// How long the current stage takes here.
    fn stage_duration(&self) -> Duration {
        let stage = self.stage();
        self.slow_stages
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, d)| *d)
            .unwrap_or(self.stage_time)
    }

    fn is_final(&self) -> bool {
        matches!(
            self.status,
            "SUCCESSFUL" | "STOPPED" | "ROLLBACK_SUCCESSFUL" | "ROLLBACK_FAILED"
        )
    }

    /// Hooks of the stage just entered start.
    fn enter_stage(&mut self) {
        let stage = self.stage();
        let starting: Vec<(bool, bool)> = self
            .script_hooks
            .iter()
            .filter_map(|h| match h {
                Hook::Lambda { stage: s, fails } if *s == stage => Some((false, *fails)),
                Hook::Pause { stage: s } if *s == stage => Some((true, false)),
                _ => None,
            })
            .collect();
        // ECS lists the active stage's hooks.
        self.hooks.retain(|h| h.status != "SUCCEEDED");
        for (pause, fails) in starting {
            self.next_hook += 1;
            let id = if pause {
                format!("ecs-pause-{:08}", self.next_hook)
            } else {
                format!("ecs-lambda-{:08}", self.next_hook)
            };
            self.hooks.push(HookState {
                id,
                pause,
                fails,
                status: if pause {
                    "AWAITING_ACTION"
                } else {
                    "IN_PROGRESS"
                },
                expires_at: now() + 86_400.0,
            });
        }
    }

    fn waiting(&self) -> bool {
        self.hooks
            .iter()
            .any(|h| h.pause && h.status == "AWAITING_ACTION")
    }

    /// ECS rolls back on its own (a failed hook, an alarm) or on request.
    fn start_rollback(&mut self, reason: String, requested: bool) {
        self.status = if requested {
            "ROLLBACK_REQUESTED"
        } else {
            "ROLLBACK_IN_PROGRESS"
        };
        self.status_reason = reason.clone();
        self.rollback = Some((reason, now()));
        self.rollback_done_at = Some(Instant::now() + self.rollback_time);
        self.rollback_due = Some(now() + self.rollback_time.as_secs_f64());
    }

    /// Moves the deployment to where time has taken it.
    pub fn evolve(&mut self) -> Effect {
        self.updated = now();
        if self.is_final() {
            return Effect::None;
        }
        if let Some(done) = self.rollback_done_at {
            if self.status == "ROLLBACK_REQUESTED" {
                self.status = "ROLLBACK_IN_PROGRESS";
            }
            if Instant::now() >= done {
                self.status = "ROLLBACK_SUCCESSFUL";
                self.finished = Some(now());
                return Effect::RolledBack;
            }
            return Effect::None;
        }
        if let Some((name, Some(at))) = self.alarm.clone() {
            if Instant::now() >= at && !self.alarm_fired {
                self.alarm_fired = true;
                self.start_rollback(format!("CloudWatch alarm {name} is in ALARM state"), false);
                return Effect::None;
            }
        }
        if self.stuck || self.waiting() {
            return Effect::None;
        }
        while self.step_started.elapsed() >= self.stage_duration() {
            // The stage's Lambda hooks answer at its end.
            let failed = self
                .hooks
                .iter_mut()
                .filter(|h| !h.pause && h.status == "IN_PROGRESS")
                .fold(None, |failed, h| {
                    h.status = if h.fails { "FAILED" } else { "SUCCEEDED" };
                    if h.fails {
                        Some(h.id.clone())
                    } else {
                        failed
                    }
                });
            if let Some(id) = failed {
                self.start_rollback(
                    format!("Lifecycle hook {id} returned FAILED at {}", self.stage()),
                    false,
                );
                return Effect::None;
            }
            self.step_started += self.stage_duration();
            self.position += 1;
            if self.position >= self.timeline.len() {
                self.position = self.timeline.len() - 1;
                self.status = "SUCCESSFUL";
                self.finished = Some(now());
                return Effect::Succeeded;
            }
            self.enter_stage();
            if self.waiting() {
                return Effect::None;
            }
        }
        Effect::None
    }

    /// `StopServiceDeployment(ROLLBACK)`.
    pub fn stop(&mut self) -> Result<(), (u16, &'static str, String)> {
        if self.is_final() {
            return Err((
                400,
                "ConflictException",
                format!("The service deployment {} has already completed.", self.arn),
            ));
        }
        if self.rollback.is_none() {
            self.start_rollback("Rollback requested by StopServiceDeployment".into(), true);
        }
        Ok(())
    }

    /// `ContinueServiceDeployment`.
    pub fn resume(
        &mut self,
        hook_id: &str,
        rollback: bool,
    ) -> Result<(), (u16, &'static str, String)> {
        let in_progress = self.status == "IN_PROGRESS";
        let Some(hook) = self
            .hooks
            .iter_mut()
            .find(|h| h.id == hook_id && h.pause && h.status == "AWAITING_ACTION")
            .filter(|_| in_progress)
        else {
            return Err((
                400,
                "InvalidParameterException",
                format!("Hook {hook_id} is not awaiting action on an in-progress deployment."),
            ));
        };
        if rollback {
            hook.status = "FAILED";
            let stage = self.stage();
            self.start_rollback(
                format!("Lifecycle hook {hook_id} was rolled back at {stage} by ContinueServiceDeployment"),
                false,
            );
        } else {
            hook.status = "SUCCEEDED";
            if !self.waiting() {
                self.step_started = Instant::now();
            }
        }
        Ok(())
    }

    /// Its `DescribeServiceDeployments` entry.
    pub fn json(&self) -> Value {
        let step = self.timeline.get(self.position).cloned().unwrap_or(Step {
            stage: "CLEAN_UP",
            production: 100.0,
            test: 100.0,
        });
        let (production, test) = match self.status {
            "SUCCESSFUL" => (100.0, 100.0),
            "ROLLBACK_SUCCESSFUL" => (0.0, 0.0),
            _ => (step.production, step.test),
        };
        let past_scale_up = self.position >= 2 || self.status == "SUCCESSFUL";
        let running = if past_scale_up { self.desired } else { 0 };
        let mut v = json!({
            "serviceDeploymentArn": self.arn,
            "serviceArn": self.service_arn,
            "clusterArn": self.cluster_arn,
            "createdAt": self.created, "startedAt": self.created, "updatedAt": self.updated,
            "targetServiceRevision": {
                "arn": self.target_revision, "requestedTaskCount": self.desired,
                "runningTaskCount": running, "pendingTaskCount": self.desired - running,
                "requestedProductionTrafficWeight": production, "requestedTestTrafficWeight": test},
            "status": self.status,
            "lifecycleStage": step.stage,
            "deploymentConfiguration": self.config,
            "deploymentCircuitBreaker": {"status": "MONITORING", "failureCount": 0, "threshold": 3},
            "lifecycleHookDetails": self.hooks.iter().map(|h| json!({
                "hookId": h.id,
                "targetType": if h.pause { "PAUSE" } else { "AWS_LAMBDA" },
                "targetArn": if h.pause { Value::Null } else { json!("arn:aws:lambda:ap-northeast-1:123456789012:function:smoke-test") },
                "status": h.status, "expiresAt": h.expires_at, "timeoutAction": "ROLLBACK"})).collect::<Vec<_>>(),
        });
        if let Some(source) = &self.source_revision {
            v["sourceServiceRevisions"] = json!([{
                "arn": source, "requestedTaskCount": self.desired, "runningTaskCount": self.desired,
                "pendingTaskCount": 0, "requestedProductionTrafficWeight": 100.0 - production,
                "requestedTestTrafficWeight": 100.0 - test}]);
        }
        if !self.status_reason.is_empty() {
            v["statusReason"] = json!(self.status_reason);
        }
        if let Some((reason, started)) = &self.rollback {
            v["rollback"] = json!({"reason": reason, "startedAt": started,
                                   "serviceRevisionArn": self.source_revision});
        }
        if let Some(finished) = self.finished {
            v["finishedAt"] = json!(finished);
        }
        if let Some((name, _)) = &self.alarm {
            v["alarms"] = if self.alarm_fired {
                json!({"status": "TRIGGERED", "alarmNames": [name], "triggeredAlarmNames": [name]})
            } else {
                json!({"status": "MONITORING", "alarmNames": [name]})
            };
        }
        v
    }

    /// Its `ListServiceDeployments` entry.
    pub fn brief(&self) -> Value {
        json!({"serviceDeploymentArn": self.arn, "serviceArn": self.service_arn,
               "clusterArn": self.cluster_arn, "createdAt": self.created,
               "targetServiceRevisionArn": self.target_revision, "status": self.status})
    }
}
