//! A scripted ECS endpoint: speaks the ECS JSON 1.1 protocol to the real SDK client, and
//! lets deployments evolve over time by scenario (progress, circuit-breaker failure and
//! rollback, stopped tasks, throttling, a concurrent release, a stuck rollout) — what moto
//! does not model. With `Script::deployments` a service also reports service deployments
//! (`service_deployment.rs`): strategies, lifecycle stages, hooks and alarms. One endpoint
//! serves several services of one cluster.

pub mod service_deployment;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use service_deployment::{Arns, Effect, ServiceDeployment};
pub use service_deployment::{Deployments, Hook, Strategy};

/// How the first rollout (ours) behaves; later ones (rollbacks) always succeed.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// Completes after this long.
    Succeed(Duration),
    /// Tasks fail; the circuit breaker marks the deployment FAILED after this long and
    /// rolls back to the previous revision a second later.
    CircuitBreaker(Duration),
    /// Never makes progress and never trips the breaker.
    Stuck,
}

/// A change another pipeline makes right after our `RegisterTaskDefinition`.
#[derive(Clone, Debug)]
pub struct ConcurrentRelease {
    /// The image the other release deploys.
    pub image: String,
}

/// The endpoint's knobs, set before the release runs.
#[derive(Clone, Debug)]
pub struct Script {
    /// How our rollout goes.
    pub scenario: Scenario,
    /// `DescribeServices` calls answered with `ThrottlingException` first.
    pub throttle_describe_services: u32,
    /// Another release moving the service under us.
    pub concurrent: Option<ConcurrentRelease>,
    /// Another deployment in progress when the release starts, finishing after this long.
    pub busy_for: Option<Duration>,
    /// How long a rollback deployment takes.
    pub rollback_time: Duration,
    /// `DescribeServices` calls after the first update answered with faults: odd ones a
    /// 500, even ones a connection closed without an answer.
    pub faults_after_update: u32,
    /// Service deployments (the service deployments API) and the strategy they follow;
    /// `None`: an endpoint that reports deployments only in `DescribeServices`.
    pub deployments: Option<Deployments>,
    /// `deploymentController.type`.
    pub controller: &'static str,
    /// `resourceManagementType` (`ECS`: an Express Mode service).
    pub resource_management: Option<&'static str>,
    /// How tasks started with `RunTask` go.
    pub task: Option<TaskScript>,
    /// `ListTaskDefinitions` answers in registration order whatever `sort` asks, as some
    /// servers do.
    pub ignore_list_sort: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            scenario: Scenario::Succeed(Duration::from_secs(3)),
            throttle_describe_services: 0,
            concurrent: None,
            busy_for: None,
            rollback_time: Duration::from_secs(2),
            faults_after_update: 0,
            deployments: None,
            controller: "ECS",
            resource_management: None,
            task: None,
            ignore_list_sort: false,
        }
    }
}

/// How a task started with `RunTask` goes.
#[derive(Clone, Debug)]
pub struct TaskScript {
    /// Lines it writes to its awslogs stream, spread over its run.
    pub lines: Vec<String>,
    /// The exit code of the container whose command was overridden.
    pub exit_code: i32,
    /// How long it runs.
    pub runtime: Duration,
    /// The CloudWatch Logs endpoint (moto) its lines go to.
    pub logs_endpoint: String,
    /// `RunTask` fails with this reason instead of starting a task.
    pub fails_to_start: Option<String>,
}

/// A task started with `RunTask`.
struct RunTask {
    arn: String,
    task_definition: String,
    container: String,
    started: Instant,
    script: TaskScript,
}

impl RunTask {
    fn json(&self) -> Value {
        let t = self.started.elapsed();
        let status = if t < Duration::from_millis(300) {
            "PROVISIONING"
        } else if t < self.script.runtime {
            "RUNNING"
        } else {
            "STOPPED"
        };
        let mut container = json!({"name": self.container, "lastStatus": status});
        let mut task = json!({
            "taskArn": self.arn, "taskDefinitionArn": self.task_definition,
            "lastStatus": status, "desiredStatus": if status == "STOPPED" { "STOPPED" } else { "RUNNING" },
            "startedBy": "gitlab-ecs-executor", "launchType": "FARGATE",
        });
        if status == "STOPPED" {
            container["exitCode"] = json!(self.script.exit_code);
            task["stoppedReason"] = json!("Essential container in task exited");
            task["stopCode"] = json!("EssentialContainerExited");
        }
        task["containers"] = json!([container]);
        task
    }
}

/// Where a task's awslogs stream is.
struct LogStream {
    region: String,
    group: String,
    stream: String,
}

/// Writes a task's lines to its awslogs stream over its run, as the awslogs driver would.
fn write_task_logs(endpoint: String, to: LogStream, script: TaskScript) {
    std::thread::spawn(move || {
        let LogStream {
            region,
            group,
            stream,
        } = to;
        let call = |target: &str, body: Value| {
            super::stand_ins::aws_json_call(&endpoint, &region, target, &body)
        };
        call(
            "Logs_20140328.CreateLogGroup",
            json!({"logGroupName": group}),
        );
        call(
            "Logs_20140328.CreateLogStream",
            json!({"logGroupName": group, "logStreamName": stream}),
        );
        let pause = script.runtime / (script.lines.len() as u32 + 1);
        for line in &script.lines {
            std::thread::sleep(pause);
            let timestamp = (now() * 1000.0) as i64;
            call(
                "Logs_20140328.PutLogEvents",
                json!({"logGroupName": group, "logStreamName": stream,
                       "logEvents": [{"timestamp": timestamp, "message": line}]}),
            );
        }
    });
}

/// A service the endpoint serves.
pub struct ServiceSpec {
    /// Its name.
    pub name: String,
    /// Its revision 1, as a `RegisterTaskDefinition` request.
    pub task_definition: Value,
    /// That revision's tags.
    pub tags: Vec<Value>,
    /// How its deployments go.
    pub script: Script,
}

struct Deployment {
    id: String,
    status: &'static str,
    task_definition: String,
    created: Instant,
    created_epoch: f64,
    rollout: Scenario,
    state: &'static str,
    reason: String,
    failed_tasks: i64,
    /// The service deployment reporting it, when the service has them.
    service_deployment: Option<String>,
}

/// One service and its deployments.
struct ServiceState {
    name: String,
    script: Script,
    desired: i64,
    service_td: String,
    deployments: Vec<Deployment>,
    service_deployments: Vec<ServiceDeployment>,
    events: Vec<Value>,
    updates: u32,
    throttled: u32,
    failed_at: Option<f64>,
    failure_due: Option<f64>,
    busy_started: bool,
    faults: u32,
}

struct State {
    region: String,
    account: String,
    cluster: String,
    task_definitions: Vec<(Value, Vec<Value>)>,
    services: Vec<ServiceState>,
    tasks: Vec<Value>,
    runs: Vec<RunTask>,
    next_id: u64,
    registers: u32,
    /// Every call: (operation, request body).
    pub calls: Vec<(String, Value)>,
}

/// The endpoint.
pub struct ScriptedEcs {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_ECS`.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl ScriptedEcs {
    /// Serves one cluster and service running revision 1 of `task_definition` (the JSON of a
    /// `RegisterTaskDefinition` request) with `tags`.
    pub fn start(
        cluster: &str,
        service: &str,
        task_definition: Value,
        tags: Vec<Value>,
        script: Script,
    ) -> ScriptedEcs {
        Self::start_services(
            cluster,
            vec![ServiceSpec {
                name: service.into(),
                task_definition,
                tags,
                script,
            }],
        )
    }

    /// Serves several services of one cluster, each running revision 1 of its task
    /// definition.
    pub fn start_services(cluster: &str, services: Vec<ServiceSpec>) -> ScriptedEcs {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted ECS");
        let port = listener.local_addr().expect("addr").port();
        let mut state = State {
            region: "ap-northeast-1".into(),
            account: "123456789012".into(),
            cluster: cluster.into(),
            task_definitions: Vec::new(),
            services: Vec::new(),
            tasks: Vec::new(),
            runs: Vec::new(),
            next_id: 100,
            registers: 0,
            calls: Vec::new(),
        };
        for spec in services {
            let arn = state.register(spec.task_definition, spec.tags);
            let id = state.new_id();
            let mut service = ServiceState {
                name: spec.name,
                desired: 2,
                service_td: arn.clone(),
                deployments: vec![Deployment {
                    id,
                    status: "PRIMARY",
                    task_definition: arn,
                    created: Instant::now(),
                    created_epoch: now() - 3600.0,
                    rollout: Scenario::Succeed(Duration::ZERO),
                    state: "COMPLETED",
                    reason: String::new(),
                    failed_tasks: 0,
                    service_deployment: None,
                }],
                service_deployments: Vec::new(),
                events: Vec::new(),
                updates: 0,
                throttled: 0,
                failed_at: None,
                failure_due: None,
                busy_started: false,
                faults: 0,
                script: spec.script,
            };
            if let Some(busy) = service.script.busy_for {
                // Someone else's deployment of the same revision, still rolling.
                let id = state.new_id();
                let td = service.service_td.clone();
                service.deployments[0].status = "ACTIVE";
                service.deployments.insert(
                    0,
                    Deployment {
                        id,
                        status: "PRIMARY",
                        task_definition: td,
                        created: Instant::now(),
                        created_epoch: now(),
                        rollout: Scenario::Succeed(busy),
                        state: "IN_PROGRESS",
                        reason: String::new(),
                        failed_tasks: 0,
                        service_deployment: None,
                    },
                );
            }
            state.services.push(service);
        }
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        super::json_api::serve(listener, move |op, request| {
            shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .handle(op, request)
        });
        ScriptedEcs {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// Operations called so far, in order.
    pub fn operations(&self) -> Vec<String> {
        self.lock().calls.iter().map(|(op, _)| op.clone()).collect()
    }

    /// Request bodies of `operation`.
    pub fn requests(&self, operation: &str) -> Vec<Value> {
        self.lock()
            .calls
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// The task definition ARN the (first) service points at.
    pub fn service_task_definition(&self) -> String {
        let name = self.lock().services[0].name.clone();
        self.service_task_definition_of(&name)
    }

    /// The task definition ARN service `name` points at.
    pub fn service_task_definition_of(&self, name: &str) -> String {
        let mut s = self.lock();
        s.evolve();
        s.services
            .iter()
            .find(|svc| svc.name == name)
            .map(|svc| svc.service_td.clone())
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// A registered task definition and its tags by ARN.
    pub fn task_definition(&self, arn: &str) -> (Value, Vec<Value>) {
        let s = self.lock();
        s.task_definitions
            .iter()
            .find(|(td, _)| td["taskDefinitionArn"] == arn)
            .cloned()
            .unwrap_or_else(|| panic!("no task definition {arn}"))
    }

    /// Revisions still ACTIVE.
    pub fn active_revisions(&self) -> Vec<String> {
        self.lock()
            .task_definitions
            .iter()
            .filter(|(td, _)| td["status"] == "ACTIVE")
            .map(|(td, _)| {
                td["taskDefinitionArn"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// How many faults were injected.
    pub fn faults_injected(&self) -> u32 {
        self.lock().services.iter().map(|s| s.faults).sum()
    }

    /// When the scenario fails our deployment (epoch seconds): the endpoint's state moves on
    /// each call, so the failure is recorded at the first call after this time.
    pub fn failure_due(&self) -> Option<f64> {
        self.lock().services.iter().find_map(|s| s.failure_due)
    }

    /// When our deployment was marked FAILED (epoch seconds).
    pub fn failed_at(&self) -> Option<f64> {
        self.lock().services.iter().find_map(|s| s.failed_at)
    }

    /// When the first service deployment that ECS rolled back reached ROLLBACK_SUCCESSFUL
    /// (epoch seconds, as scheduled: the endpoint's state only moves when asked).
    pub fn rollback_due(&self) -> Option<f64> {
        self.lock()
            .services
            .iter()
            .flat_map(|s| &s.service_deployments)
            .find_map(|d| d.rollback_due)
    }

    /// The service deployments of service `name`, as `DescribeServiceDeployments` reports
    /// them, oldest first.
    pub fn service_deployments(&self, name: &str) -> Vec<Value> {
        let mut s = self.lock();
        s.evolve();
        s.services
            .iter()
            .find(|svc| svc.name == name)
            .map(|svc| svc.service_deployments.iter().map(|d| d.json()).collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("ecs-svc/{:019}", self.next_id)
    }

    fn service_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:ecs:{}:{}:service/{}/{name}",
            self.region, self.account, self.cluster
        )
    }

    fn cluster_arn(&self) -> String {
        format!(
            "arn:aws:ecs:{}:{}:cluster/{}",
            self.region, self.account, self.cluster
        )
    }

    fn register(&mut self, mut td: Value, tags: Vec<Value>) -> String {
        let family = td["family"].as_str().unwrap_or("family").to_string();
        let revision = self
            .task_definitions
            .iter()
            .filter(|(t, _)| t["family"] == family.as_str())
            .count()
            + 1;
        let arn = format!(
            "arn:aws:ecs:{}:{}:task-definition/{family}:{revision}",
            self.region, self.account
        );
        // ECS describes every container with these members, whether or not they were sent.
        for container in td["containerDefinitions"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            container.entry("cpu").or_insert(json!(0));
            container.entry("essential").or_insert(json!(true));
            for list in ["portMappings", "environment", "mountPoints", "volumesFrom"] {
                container.entry(list).or_insert(json!([]));
            }
        }
        if let Some(obj) = td.as_object_mut() {
            obj.remove("tags");
            obj.insert("taskDefinitionArn".into(), json!(arn));
            obj.insert("revision".into(), json!(revision));
            obj.insert("status".into(), json!("ACTIVE"));
            obj.insert("compatibilities".into(), json!(["EC2", "FARGATE"]));
            obj.insert(
                "requiresAttributes".into(),
                json!([{"name": "com.amazonaws.ecs.capability.ecr-auth"}]),
            );
            obj.insert("registeredAt".into(), json!(now()));
            obj.insert(
                "registeredBy".into(),
                json!(format!("arn:aws:iam::{}:user/ci", self.account)),
            );
        }
        self.task_definitions.push((td, tags));
        arn
    }

    /// An ARN, `family:revision` or a family (its latest ACTIVE revision), as ECS accepts.
    fn resolve(&self, wanted: &str) -> Option<String> {
        self.task_definitions
            .iter()
            .rev()
            .find(|(td, _)| {
                let family = td["family"].as_str().unwrap_or_default();
                td["taskDefinitionArn"] == wanted
                    || format!("{family}:{}", td["revision"]) == wanted
                    || (family == wanted && td["status"] == "ACTIVE")
            })
            .and_then(|(td, _)| td["taskDefinitionArn"].as_str().map(str::to_string))
    }

    /// The index of the service a request names (by name or ARN).
    fn service_index(&self, wanted: &str) -> Option<usize> {
        self.services
            .iter()
            .position(|s| wanted == s.name || wanted.ends_with(&format!("/{}", s.name)))
    }

    fn stopped_task(&mut self, deployment: &str, td: &str) {
        let n = self.tasks.len() + 1;
        self.tasks.push(json!({
            "taskArn": format!("arn:aws:ecs:{}:{}:task/{}/task{n:04}", self.region, self.account, self.cluster),
            "taskDefinitionArn": td,
            "startedBy": deployment,
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "stoppedReason": "Essential container in task exited",
            "stopCode": "EssentialContainerExited",
            "containers": [{"name": "app", "exitCode": 3, "lastStatus": "STOPPED", "reason": "app: health check failed"}],
        }));
    }

    /// Advances every service's deployments to where their scenarios put them now.
    fn evolve(&mut self) {
        for i in 0..self.services.len() {
            self.evolve_service(i);
        }
    }

    fn evolve_service(&mut self, index: usize) {
        let mut stopped = Vec::new();
        let mut rollback_to: Option<String> = None;
        {
            let svc = &mut self.services[index];
            let service = svc.name.clone();
            let mut events = Vec::new();
            // Service deployments drive their legacy deployment entries.
            for sd in &mut svc.service_deployments {
                match sd.evolve() {
                    Effect::None => {}
                    Effect::Succeeded => {
                        if let Some(d) = svc
                            .deployments
                            .iter_mut()
                            .find(|d| d.service_deployment.as_deref() == Some(sd.arn.as_str()))
                        {
                            d.state = "COMPLETED";
                        }
                        events.push(format!("(service {service}) has reached a steady state."));
                    }
                    Effect::RolledBack => {
                        if let Some(d) = svc
                            .deployments
                            .iter_mut()
                            .find(|d| d.service_deployment.as_deref() == Some(sd.arn.as_str()))
                        {
                            d.state = "FAILED";
                            d.status = "ACTIVE";
                            rollback_to = Some(d.id.clone());
                        }
                    }
                }
            }
            for d in svc
                .deployments
                .iter_mut()
                .filter(|d| d.state == "IN_PROGRESS" && d.service_deployment.is_none())
            {
                let t = d.created.elapsed();
                match d.rollout.clone() {
                    Scenario::Succeed(after) if t >= after => {
                        d.state = "COMPLETED";
                        events.push(format!("(service {service}) has reached a steady state."));
                    }
                    Scenario::CircuitBreaker(after) => {
                        let expected_failures = (t.as_millis() / 700) as i64;
                        while d.failed_tasks < expected_failures.min(3) {
                            d.failed_tasks += 1;
                            stopped.push((d.id.clone(), d.task_definition.clone()));
                        }
                        if t >= after {
                            d.state = "FAILED";
                            d.reason =
                                "ECS deployment circuit breaker: tasks failed to start.".into();
                            d.status = "ACTIVE";
                            events.push(format!("(service {service}) (deployment {}) deployment failed: tasks failed to start.", d.id));
                            rollback_to = Some(d.id.clone());
                        }
                    }
                    _ => {}
                }
            }
            for e in events {
                svc.event(e);
            }
        }
        for (id, td) in stopped {
            self.stopped_task(&id, &td);
        }
        if let Some(failed_id) = rollback_to {
            let id = self.new_id();
            let svc = &mut self.services[index];
            svc.failed_at = Some(now());
            let previous = svc
                .deployments
                .iter()
                .find(|d| d.id != failed_id && d.state == "COMPLETED")
                .map(|d| d.task_definition.clone());
            if let Some(previous) = previous {
                let service = svc.name.clone();
                svc.event(format!(
                    "(service {service}) rolling back to deployment {id}."
                ));
                svc.service_td = previous.clone();
                // A rollback by a service deployment has already run its course.
                let done = svc
                    .deployments
                    .iter()
                    .any(|d| d.id == failed_id && d.service_deployment.is_some());
                svc.deployments.insert(
                    0,
                    Deployment {
                        id,
                        status: "PRIMARY",
                        task_definition: previous,
                        created: Instant::now(),
                        created_epoch: now(),
                        rollout: Scenario::Succeed(Duration::from_secs(1)),
                        state: if done { "COMPLETED" } else { "IN_PROGRESS" },
                        reason: String::new(),
                        failed_tasks: 0,
                        service_deployment: None,
                    },
                );
            }
        }
        // A completed primary drains every other deployment, failed ones included.
        let svc = &mut self.services[index];
        if svc
            .deployments
            .first()
            .is_some_and(|d| d.status == "PRIMARY" && d.state == "COMPLETED")
        {
            svc.deployments.truncate(1);
        }
    }

    fn service_json(&self, svc: &ServiceState) -> Value {
        let running = svc
            .deployments
            .iter()
            .map(|d| svc.deployment_json(d)["runningCount"].as_i64().unwrap_or(0))
            .sum::<i64>();
        let mut v = json!({
            "serviceArn": self.service_arn(&svc.name),
            "serviceName": svc.name,
            "clusterArn": self.cluster_arn(),
            "status": "ACTIVE",
            "desiredCount": svc.desired,
            "runningCount": running.min(svc.desired),
            "pendingCount": 0,
            "taskDefinition": svc.service_td,
            "deployments": svc.deployments.iter().map(|d| svc.deployment_json(d)).collect::<Vec<_>>(),
            "events": svc.events,
            "deploymentController": {"type": svc.script.controller},
            "launchType": "FARGATE",
            "platformVersion": "LATEST",
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
                "securityGroups": ["sg-0123456789abcdef0"], "assignPublicIp": "DISABLED"}},
        });
        if let Some(kind) = svc.script.resource_management {
            v["resourceManagementType"] = json!(kind);
        }
        if let Some(script) = &svc.script.deployments {
            v["deploymentConfiguration"] = script.configuration();
            if let Some(current) = svc.service_deployments.last() {
                v["currentServiceDeployment"] = json!(current.arn);
            }
        }
        v
    }

    fn handle(&mut self, op: &str, body: &Value) -> Result<Value, (u16, &'static str, String)> {
        self.calls.push((op.to_string(), body.clone()));
        match op {
            "DescribeServices" => {
                let wanted = body["services"][0].as_str().unwrap_or_default();
                let Some(index) = self.service_index(wanted) else {
                    return Ok(
                        json!({"services": [], "failures": [{"arn": wanted, "reason": "MISSING"}]}),
                    );
                };
                let svc = &mut self.services[index];
                if svc.throttled < svc.script.throttle_describe_services {
                    svc.throttled += 1;
                    return Err((400, "ThrottlingException", "Rate exceeded".into()));
                }
                if svc.updates > 0 && svc.faults < svc.script.faults_after_update {
                    svc.faults += 1;
                    return Err(if svc.faults % 2 == 1 {
                        (500, "ServerException", "Internal failure (injected)".into())
                    } else {
                        (0, "", "connection reset (injected)".into())
                    });
                }
                if !svc.busy_started && svc.script.busy_for.is_some() {
                    // Held at its start until the release registers its revision.
                    if let Some(d) = svc.deployments.first_mut() {
                        d.created = Instant::now();
                    }
                }
                self.evolve_service(index);
                Ok(json!({"services": [self.service_json(&self.services[index])], "failures": []}))
            }
            "DescribeTaskDefinition" => {
                let wanted = body["taskDefinition"].as_str().unwrap_or_default();
                let arn = self.resolve(wanted);
                let found = self
                    .task_definitions
                    .iter()
                    .find(|(td, _)| td["taskDefinitionArn"].as_str() == arn.as_deref());
                match found {
                    Some((td, tags)) => {
                        let include_tags = body["include"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|v| v == "TAGS"));
                        Ok(
                            json!({"taskDefinition": td, "tags": if include_tags { json!(tags) } else { json!([]) }}),
                        )
                    }
                    None => Err((
                        400,
                        "ClientException",
                        "Unable to describe task definition.".into(),
                    )),
                }
            }
            "RegisterTaskDefinition" => {
                self.registers += 1;
                // The other deployment's clock starts when the release has its revision and
                // is about to roll out: a release looks at the service before it builds, and
                // a build on a loaded machine may outlast the other deployment.
                for svc in self.services.iter_mut().filter(|s| !s.busy_started) {
                    svc.busy_started = true;
                    if svc.script.busy_for.is_some() {
                        if let Some(d) = svc.deployments.first_mut() {
                            d.created = Instant::now();
                        }
                    }
                }
                let tags = body["tags"].as_array().cloned().unwrap_or_default();
                self.register(body.clone(), tags.clone());
                let td = self
                    .task_definitions
                    .last()
                    .map(|(td, _)| td.clone())
                    .unwrap_or_default();
                if self.registers == 1 {
                    self.concurrent_release(body, &tags);
                }
                Ok(json!({"taskDefinition": td, "tags": tags}))
            }
            "DeregisterTaskDefinition" => {
                let wanted = body["taskDefinition"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                match self
                    .task_definitions
                    .iter_mut()
                    .find(|(td, _)| td["taskDefinitionArn"] == wanted.as_str())
                {
                    Some((td, _)) => {
                        td["status"] = json!("INACTIVE");
                        Ok(json!({"taskDefinition": td.clone()}))
                    }
                    None => Err((400, "ClientException", "Unable to deregister.".into())),
                }
            }
            "UpdateService" => {
                let wanted = body["service"].as_str().unwrap_or_default();
                let Some(index) = self.service_index(wanted) else {
                    return Err((400, "ServiceNotFoundException", "Service not found.".into()));
                };
                self.evolve_service(index);
                let wanted = body["taskDefinition"].as_str().unwrap_or_default();
                let Some(td) = self.resolve(wanted) else {
                    return Err((400, "ClientException", "TaskDefinition not found.".into()));
                };
                if matches!(
                    self.services[index].script.controller,
                    "CODE_DEPLOY" | "EXTERNAL"
                ) {
                    return Err((
                        400,
                        "InvalidParameterException",
                        "Unable to update task definition on services with a CODE_DEPLOY or EXTERNAL deployment controller.".into(),
                    ));
                }
                let id = self.new_id();
                let service_arn = self.service_arn(&self.services[index].name);
                let cluster_arn = self.cluster_arn();
                let (region, account, cluster) = (
                    self.region.clone(),
                    self.account.clone(),
                    self.cluster.clone(),
                );
                let svc = &mut self.services[index];
                svc.updates += 1;
                let first = svc.updates == 1;
                let rollout = if first {
                    svc.script.scenario.clone()
                } else {
                    Scenario::Succeed(svc.script.rollback_time)
                };
                if let Scenario::CircuitBreaker(after) = rollout {
                    svc.failure_due = Some(now() + after.as_secs_f64());
                }
                let service_deployment = svc.script.deployments.clone().map(|script| {
                    // Later deployments (a client-side rollback) are plain and succeed.
                    let script = if first {
                        script
                    } else {
                        Deployments {
                            strategy: script.strategy,
                            stage_time: script.stage_time,
                            ..Deployments::default()
                        }
                    };
                    let n = svc.service_deployments.len() + 1;
                    let revision = |k: usize| {
                        format!("arn:aws:ecs:{region}:{account}:service-revision/{cluster}/{}/{:019}", svc.name, 7000 + k)
                    };
                    let arns = Arns {
                        deployment: format!("arn:aws:ecs:{region}:{account}:service-deployment/{cluster}/{}/sd{n:04}", svc.name),
                        service: service_arn,
                        cluster: cluster_arn,
                        source_revision: Some(revision(n - 1)),
                        target_revision: revision(n),
                    };
                    let sd = ServiceDeployment::start(
                        arns,
                        &script,
                        svc.script.rollback_time,
                        svc.desired,
                    );
                    let arn = sd.arn.clone();
                    svc.service_deployments.push(sd);
                    arn
                });
                for d in &mut svc.deployments {
                    d.status = "ACTIVE";
                }
                svc.service_td = td.clone();
                svc.deployments.insert(
                    0,
                    Deployment {
                        id: id.clone(),
                        status: "PRIMARY",
                        task_definition: td,
                        created: Instant::now(),
                        created_epoch: now(),
                        rollout,
                        state: "IN_PROGRESS",
                        reason: String::new(),
                        failed_tasks: 0,
                        service_deployment,
                    },
                );
                let service = svc.name.clone();
                svc.event(format!(
                    "(service {service}) has started 2 tasks: (deployment {id})."
                ));
                Ok(json!({"service": self.service_json(&self.services[index])}))
            }
            "DescribeServiceDeployments" => {
                self.evolve();
                let wanted: Vec<&str> = body["serviceDeploymentArns"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let found: Vec<Value> = self
                    .services
                    .iter()
                    .flat_map(|s| &s.service_deployments)
                    .filter(|d| wanted.contains(&d.arn.as_str()))
                    .map(ServiceDeployment::json)
                    .collect();
                let failures: Vec<Value> = wanted
                    .iter()
                    .filter(|a| !found.iter().any(|d| d["serviceDeploymentArn"] == **a))
                    .map(|a| json!({"arn": a, "reason": "MISSING"}))
                    .collect();
                Ok(json!({"serviceDeployments": found, "failures": failures}))
            }
            "ListServiceDeployments" => {
                self.evolve();
                let wanted = body["service"].as_str().unwrap_or_default();
                let Some(index) = self.service_index(wanted) else {
                    return Err((400, "ServiceNotFoundException", "Service not found.".into()));
                };
                let briefs: Vec<Value> = self.services[index]
                    .service_deployments
                    .iter()
                    .rev()
                    .map(ServiceDeployment::brief)
                    .collect();
                Ok(json!({"serviceDeployments": briefs}))
            }
            "StopServiceDeployment" | "ContinueServiceDeployment" => {
                self.evolve();
                let wanted = body["serviceDeploymentArn"].as_str().unwrap_or_default();
                let Some(sd) = self
                    .services
                    .iter_mut()
                    .flat_map(|s| s.service_deployments.iter_mut())
                    .find(|d| d.arn == wanted)
                else {
                    return Err((
                        400,
                        "ServiceDeploymentNotFoundException",
                        format!("Service deployment {wanted} not found."),
                    ));
                };
                if op == "StopServiceDeployment" {
                    if body["stopType"] != "ROLLBACK" {
                        return Err((
                            400,
                            "InvalidParameterException",
                            "Only ROLLBACK is scripted.".into(),
                        ));
                    }
                    sd.stop()?;
                } else {
                    let hook = body["hookId"].as_str().unwrap_or_default();
                    sd.resume(hook, body["action"] == "ROLLBACK")?;
                }
                Ok(json!({"serviceDeploymentArn": wanted}))
            }
            "ListTaskDefinitions" => {
                let prefix = body["familyPrefix"].as_str().unwrap_or_default();
                let mut arns: Vec<(i64, Value)> = self
                    .task_definitions
                    .iter()
                    .filter(|(td, _)| {
                        td["status"] == "ACTIVE"
                            && td["family"].as_str().is_some_and(|f| f.starts_with(prefix))
                    })
                    .map(|(td, _)| {
                        (
                            td["revision"].as_i64().unwrap_or(0),
                            td["taskDefinitionArn"].clone(),
                        )
                    })
                    .collect();
                if !self.services.iter().any(|s| s.script.ignore_list_sort) {
                    arns.sort_by_key(|(rev, _)| -rev);
                }
                Ok(
                    json!({"taskDefinitionArns": arns.into_iter().map(|(_, a)| a).collect::<Vec<_>>()}),
                )
            }
            "ListTasks" => {
                let started_by = body["startedBy"].as_str().unwrap_or_default();
                let arns: Vec<Value> = self
                    .tasks
                    .iter()
                    .filter(|t| started_by.is_empty() || t["startedBy"] == started_by)
                    .map(|t| t["taskArn"].clone())
                    .collect();
                Ok(json!({"taskArns": arns}))
            }
            "DescribeTasks" => {
                let wanted: Vec<&Value> = body["tasks"]
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                let tasks: Vec<Value> = self
                    .tasks
                    .iter()
                    .cloned()
                    .chain(self.runs.iter().map(RunTask::json))
                    .filter(|t| wanted.contains(&&t["taskArn"]))
                    .collect();
                Ok(json!({"tasks": tasks, "failures": []}))
            }
            "RunTask" => self.run_task(body),
            "StopTask" => {
                let wanted = body["task"].as_str().unwrap_or_default();
                match self.runs.iter_mut().find(|r| r.arn == wanted) {
                    Some(run) => {
                        run.script.runtime = Duration::ZERO;
                        run.script.exit_code = 137;
                        Ok(json!({"task": run.json()}))
                    }
                    None => Err((
                        400,
                        "InvalidParameterException",
                        "The referenced task was not found.".into(),
                    )),
                }
            }
            other => Err((
                400,
                "UnknownOperationException",
                format!("{other} is not scripted"),
            )),
        }
    }

    /// `RunTask`: a task of the named revision that runs as the first service's script says,
    /// writing its lines to the container's awslogs stream.
    fn run_task(&mut self, body: &Value) -> Result<Value, (u16, &'static str, String)> {
        let Some(script) = self.services.iter().find_map(|s| s.script.task.clone()) else {
            return Err((
                400,
                "InvalidParameterException",
                "RunTask is not scripted.".into(),
            ));
        };
        let wanted = body["taskDefinition"].as_str().unwrap_or_default();
        let Some(arn) = self.resolve(wanted) else {
            return Err((400, "ClientException", "TaskDefinition not found.".into()));
        };
        if let Some(reason) = &script.fails_to_start {
            return Ok(json!({"tasks": [], "failures": [{"arn": arn, "reason": reason}]}));
        }
        let container = body["overrides"]["containerOverrides"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.next_id += 1;
        let task_id = format!("{:032x}", self.next_id);
        let task_arn = format!(
            "arn:aws:ecs:{}:{}:task/{}/{task_id}",
            self.region, self.account, self.cluster
        );
        let options = self
            .task_definitions
            .iter()
            .find(|(td, _)| td["taskDefinitionArn"] == arn.as_str())
            .and_then(|(td, _)| {
                td["containerDefinitions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["name"] == container.as_str())
                    .map(|c| c["logConfiguration"]["options"].clone())
            })
            .unwrap_or(Value::Null);
        if let (Some(group), Some(prefix)) = (
            options["awslogs-group"].as_str(),
            options["awslogs-stream-prefix"].as_str(),
        ) {
            let to = LogStream {
                region: options["awslogs-region"]
                    .as_str()
                    .unwrap_or(&self.region)
                    .to_string(),
                group: group.to_string(),
                stream: format!("{prefix}/{container}/{task_id}"),
            };
            write_task_logs(script.logs_endpoint.clone(), to, script.clone());
        }
        let run = RunTask {
            arn: task_arn,
            task_definition: arn,
            container,
            started: Instant::now(),
            script,
        };
        let task = run.json();
        self.runs.push(run);
        Ok(json!({"tasks": [task], "failures": []}))
    }

    /// Another pipeline registers and deploys its own revision right after our first
    /// registration, in every service whose script says so and whose family it is.
    fn concurrent_release(&mut self, ours: &Value, tags: &[Value]) {
        let family = ours["family"].clone();
        for index in 0..self.services.len() {
            let Some(other) = self.services[index].script.concurrent.clone() else {
                continue;
            };
            let service_family = self
                .task_definitions
                .iter()
                .find(|(td, _)| td["taskDefinitionArn"] == self.services[index].service_td.as_str())
                .map(|(td, _)| td["family"].clone());
            if service_family != Some(family.clone()) {
                continue;
            }
            let mut theirs = ours.clone();
            if let Some(c) = theirs["containerDefinitions"]
                .as_array_mut()
                .and_then(|c| c.iter_mut().find(|c| c["name"] == "app"))
            {
                c["image"] = json!(other.image);
            }
            let their_arn = self.register(theirs, tags.to_vec());
            let id = self.new_id();
            let svc = &mut self.services[index];
            svc.service_td = their_arn.clone();
            for d in &mut svc.deployments {
                d.status = "ACTIVE";
            }
            svc.deployments.insert(
                0,
                Deployment {
                    id,
                    status: "PRIMARY",
                    task_definition: their_arn,
                    created: Instant::now(),
                    created_epoch: now(),
                    rollout: Scenario::Succeed(Duration::ZERO),
                    state: "COMPLETED",
                    reason: String::new(),
                    failed_tasks: 0,
                    service_deployment: None,
                },
            );
            svc.deployments.truncate(1);
        }
    }
}

impl ServiceState {
    fn event(&mut self, message: String) {
        let id = format!("ev-{}", self.events.len() + 1);
        self.events
            .insert(0, json!({"id": id, "createdAt": now(), "message": message}));
    }

    fn deployment_json(&self, d: &Deployment) -> Value {
        let (running, pending) = match (d.state, &d.rollout) {
            ("COMPLETED", _) => (self.desired, 0),
            (_, Scenario::Succeed(after)) if !after.is_zero() && d.service_deployment.is_none() => {
                let frac = d.created.elapsed().as_secs_f64() / after.as_secs_f64();
                let running = ((self.desired as f64) * frac).floor() as i64;
                (
                    running.min(self.desired),
                    self.desired - running.min(self.desired),
                )
            }
            _ => (0, self.desired),
        };
        let mut v = json!({
            "id": d.id, "status": d.status, "taskDefinition": d.task_definition,
            "desiredCount": self.desired, "pendingCount": pending, "runningCount": running,
            "failedTasks": d.failed_tasks, "createdAt": d.created_epoch, "updatedAt": now(),
            "launchType": "FARGATE", "rolloutState": d.state,
        });
        if !d.reason.is_empty() {
            v["rolloutStateReason"] = json!(d.reason);
        }
        v
    }
}
