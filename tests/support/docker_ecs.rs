//! A Docker-backed ECS for the ECS job environment's tests, as strict as ECS where the
//! executor depends on it: each task's containers share one network namespace (a holder
//! container, as Fargate's awsvpc gives one ENI per task), task volumes are the task's own
//! Docker volumes, `dependsOn` (START, COMPLETE, SUCCESS; HEALTHY as START) orders the
//! starts, an essential container's exit stops the task, every container's exit code is kept,
//! `StopTask` stops with the container's `stopTimeout` and records the reason, and the
//! holder's address is the task's `privateIPv4Address`; a volume with `host.sourcePath` is a
//! bind mount, as on EC2 capacity. LocalEmu was evaluated first and
//! gets the shared namespace, `dependsOn`, `essential` and exit codes wrong (docs/ecs-jobs.md).
//!
//! Operations: RegisterTaskDefinition, DescribeTaskDefinition, RunTask, DescribeTasks,
//! StopTask, ListTasks, DescribeClusters, ListTaskDefinitions, DeregisterTaskDefinition, over the JSON 1.1 wire (`json_api.rs`), driven by the `docker` CLI.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::images;
use super::json_api::{self, Reply};

const REGION: &str = "eu-west-1";
const ACCOUNT: &str = "123456789012";

/// The stand-in; its containers and volumes go when it is dropped.
pub struct DockerEcs {
    /// Its endpoint URL.
    pub endpoint: String,
    label: String,
    state: Arc<Mutex<State>>,
}

#[derive(Clone)]
struct Registered {
    arn: String,
    family: String,
    revision: u64,
    definition: Value,
    status: &'static str,
    registered_at: f64,
}

#[derive(Clone)]
struct ContainerState {
    name: String,
    image: String,
    docker: String,
    essential: bool,
    depends_on: Vec<(String, String)>,
    stop_timeout: u64,
    status: &'static str,
    exit_code: Option<i64>,
    reason: Option<String>,
}

struct TaskState {
    arn: String,
    client_token: Option<String>,
    id: String,
    definition: Registered,
    overrides: Value,
    started_by: Option<String>,
    tags: Value,
    desired: &'static str,
    last: &'static str,
    containers: Vec<ContainerState>,
    ip: Option<String>,
    stop_code: Option<&'static str>,
    stopped_reason: Option<String>,
    created_at: f64,
    stopped_at: Option<f64>,
}

struct State {
    /// The stand-in was dropped: supervisors make nothing more and end.
    closed: bool,
    label: String,
    definitions: Vec<Registered>,
    tasks: Vec<TaskState>,
    calls: Vec<(String, Value)>,
    /// How many more `RunTask` calls are throttled.
    throttle_run_task: usize,
    /// How many more `RunTask` calls place no task, and ECS's reason.
    unplaced: (usize, &'static str),
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn docker(args: &[&str]) -> (bool, String) {
    match Command::new("docker").args(args).output() {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(if out.status.success() {
                &out.stdout
            } else {
                &out.stderr
            })
            .trim()
            .to_string(),
        ),
        Err(e) => (false, e.to_string()),
    }
}

fn client_error(message: impl Into<String>) -> (u16, &'static str, String) {
    (400, "ClientException", message.into())
}

impl DockerEcs {
    /// Starts serving on loopback.
    pub fn start() -> DockerEcs {
        images::debian_images();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Docker ECS");
        let port = listener.local_addr().expect("addr").port();
        let label = format!("gitlab-ecs-standin-{}-{port}", std::process::id());
        let state = Arc::new(Mutex::new(State {
            closed: false,
            label: label.clone(),
            definitions: Vec::new(),
            tasks: Vec::new(),
            calls: Vec::new(),
            throttle_run_task: 0,
            unplaced: (0, ""),
        }));
        let shared = state.clone();
        json_api::serve(listener, move |op, request| handle(&shared, op, request));
        DockerEcs {
            endpoint: format!("http://127.0.0.1:{port}"),
            label,
            state,
        }
    }

    /// An aws-sdk-ecs client of this stand-in, with made-up keys.
    pub fn client(&self) -> aws_sdk_ecs::Client {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_ecs::config::Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKIDSTANDIN",
                "standin-secret",
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_ecs::Client::from_conf(config)
    }

    /// Makes every definition registered so far `by` older, as if registered long ago.
    pub fn backdate_definitions(&self, by: Duration) {
        for td in &mut lock(&self.state).definitions {
            td.registered_at -= by.as_secs_f64();
        }
    }

    /// The next `n` `RunTask` calls place no task, ECS saying `reason` (`RESOURCE:MEMORY`).
    pub fn place_nothing(&self, n: usize, reason: &'static str) {
        lock(&self.state).unplaced = (n, reason);
    }

    /// Throttles the next `n` `RunTask` calls, as ECS's rate limit answers them.
    pub fn throttle_run_task(&self, n: usize) {
        lock(&self.state).throttle_run_task = n;
    }

    /// The operations called, in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state)
            .calls
            .iter()
            .map(|(op, _)| op.clone())
            .collect()
    }

    /// The requests of operation `op`, in order.
    pub fn requests(&self, op: &str) -> Vec<Value> {
        lock(&self.state)
            .calls
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// The tasks nobody asked to stop (what `ListTasks` lists by default).
    pub fn running(&self) -> Vec<String> {
        lock(&self.state)
            .tasks
            .iter()
            .filter(|t| t.desired == "RUNNING")
            .map(|t| t.arn.clone())
            .collect()
    }

    /// Each task's stop code and reason, in the order they were started.
    pub fn stops(&self) -> Vec<(Option<String>, Option<String>)> {
        lock(&self.state)
            .tasks
            .iter()
            .map(|t| (t.stop_code.map(str::to_string), t.stopped_reason.clone()))
            .collect()
    }

    /// The Docker containers of its tasks that are still there.
    pub fn containers(&self) -> Vec<String> {
        let (_, out) = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={}", self.label),
            "--format",
            "{{.Names}}",
        ]);
        out.lines().map(str::to_string).collect()
    }
}

impl Drop for DockerEcs {
    fn drop(&mut self) {
        lock(&self.state).closed = true;
        // A supervisor between its check and a `docker create` finishes that step first.
        std::thread::sleep(Duration::from_millis(300));
        for container in self.containers() {
            let _ = docker(&["rm", "-f", "-v", &container]);
        }
        let (_, volumes) = docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label={}", self.label),
        ]);
        for volume in volumes.lines() {
            let _ = docker(&["volume", "rm", "-f", volume]);
        }
    }
}

fn lock(state: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn handle(state: &Arc<Mutex<State>>, op: &str, request: &Value) -> Reply {
    let mut s = lock(state);
    s.calls.push((op.to_string(), request.clone()));
    match op {
        "RegisterTaskDefinition" => Ok(s.register(request)),
        "DescribeTaskDefinition" => {
            let name = request["taskDefinition"].as_str().unwrap_or_default();
            let td = s
                .resolve(name)
                .ok_or_else(|| client_error("Unable to describe task definition."))?;
            Ok(json!({"taskDefinition": described(&td), "tags": []}))
        }
        "RunTask" => {
            if s.throttle_run_task > 0 {
                s.throttle_run_task -= 1;
                return Err((400, "ThrottlingException", "Rate exceeded".into()));
            }
            // As ECS: the same client token is the same task, however often it is sent.
            if let Some(token) = request["clientToken"].as_str() {
                if let Some(t) = s
                    .tasks
                    .iter()
                    .find(|t| t.client_token.as_deref() == Some(token))
                {
                    let arn = t.arn.clone();
                    return Ok(json!({"tasks": [s.task_json(&arn)], "failures": []}));
                }
            }
            let name = request["taskDefinition"].as_str().unwrap_or_default();
            let td = s
                .resolve(name)
                .ok_or_else(|| client_error("TaskDefinition not found."))?;
            if td.status != "ACTIVE" {
                return Err(client_error("TaskDefinition is inactive"));
            }
            // As ECS: overrides are at most 8192 characters of JSON, and name only
            // containers of the definition.
            let overrides = &request["overrides"];
            if !overrides.is_null() && overrides.to_string().len() > 8192 {
                return Err((
                    400,
                    "InvalidParameterException",
                    "Container Overrides length must be at most 8192".into(),
                ));
            }
            for o in overrides["containerOverrides"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let name = o["name"].as_str().unwrap_or_default();
                let known = td.definition["containerDefinitions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["name"] == name));
                if !known {
                    return Err((
                        400,
                        "InvalidParameterException",
                        format!("Override for container named {name} is not a container in the TaskDefinition."),
                    ));
                }
            }
            if s.unplaced.0 > 0 {
                s.unplaced.0 -= 1;
                let reason = s.unplaced.1;
                return Ok(json!({"tasks": [], "failures": [{"reason": reason}]}));
            }
            let subnets = &request["networkConfiguration"]["awsvpcConfiguration"]["subnets"];
            if td.definition["networkMode"].as_str() == Some("awsvpc")
                && subnets.as_array().is_none_or(|a| a.is_empty())
            {
                return Err((
                    400,
                    "InvalidParameterException",
                    "Network Configuration must be provided when networkMode 'awsvpc' is specified."
                        .into(),
                ));
            }
            let arn = s.run(td, request);
            let task = s.task_json(&arn);
            drop(s);
            let shared = state.clone();
            std::thread::spawn(move || supervise(&shared, &arn));
            Ok(json!({"tasks": [task], "failures": []}))
        }
        "DescribeTasks" => {
            let mut tasks = Vec::new();
            let mut failures = Vec::new();
            for arn in request["tasks"].as_array().into_iter().flatten() {
                let arn = arn.as_str().unwrap_or_default();
                match s.find(arn) {
                    Some(full) => tasks.push(s.task_json(&full)),
                    None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
                }
            }
            Ok(json!({"tasks": tasks, "failures": failures}))
        }
        "StopTask" => {
            let arn = request["task"].as_str().unwrap_or_default();
            let full = s.find(arn).ok_or_else(|| {
                (
                    400,
                    "InvalidParameterException",
                    "The referenced task was not found.".to_string(),
                )
            })?;
            let reason = request["reason"].as_str().unwrap_or("Task stopped by user");
            if let Some(task) = s.tasks.iter_mut().find(|t| t.arn == full) {
                if task.desired != "STOPPED" {
                    task.desired = "STOPPED";
                    task.stop_code = Some("UserInitiated");
                    task.stopped_reason = Some(reason.to_string());
                }
            }
            Ok(json!({"task": s.task_json(&full)}))
        }
        "ListTasks" => {
            let started_by = request["startedBy"].as_str();
            let desired = request["desiredStatus"].as_str().unwrap_or("RUNNING");
            let arns: Vec<&str> = s
                .tasks
                .iter()
                .filter(|t| t.desired == desired)
                .filter(|t| started_by.is_none() || t.started_by.as_deref() == started_by)
                .map(|t| t.arn.as_str())
                .collect();
            Ok(json!({"taskArns": arns}))
        }
        "ListTaskDefinitions" => {
            let prefix = request["familyPrefix"].as_str().unwrap_or_default();
            let status = request["status"].as_str().unwrap_or("ACTIVE");
            let arns: Vec<&str> = s
                .definitions
                .iter()
                .filter(|d| d.family.starts_with(prefix) && d.status == status)
                .map(|d| d.arn.as_str())
                .collect();
            Ok(json!({"taskDefinitionArns": arns}))
        }
        "DeregisterTaskDefinition" => {
            let name = request["taskDefinition"].as_str().unwrap_or_default();
            let arn = s
                .resolve(name)
                .filter(|_| name.contains(':'))
                .map(|d| d.arn)
                .ok_or_else(|| client_error("The specified task definition does not exist."))?;
            let td = s.definitions.iter_mut().find(|d| d.arn == arn);
            let td =
                td.ok_or_else(|| client_error("The specified task definition does not exist."))?;
            td.status = "INACTIVE";
            Ok(json!({"taskDefinition": described(td)}))
        }
        "DescribeClusters" => {
            // One cluster, `standin`, with no container instances (Fargate's way).
            let (mut clusters, mut failures) = (Vec::new(), Vec::new());
            for name in request["clusters"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/standin");
                if name == "standin" || name == arn {
                    let running = s.tasks.iter().filter(|t| t.last == "RUNNING").count();
                    clusters.push(json!({
                        "clusterArn": arn,
                        "clusterName": "standin",
                        "status": "ACTIVE",
                        "runningTasksCount": running,
                        "pendingTasksCount": 0,
                        "registeredContainerInstancesCount": 0,
                    }));
                } else {
                    failures.push(json!({
                        "arn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}"),
                        "reason": "MISSING",
                    }));
                }
            }
            Ok(json!({"clusters": clusters, "failures": failures}))
        }
        other => Err(client_error(format!(
            "the Docker ECS stand-in does not serve {other}"
        ))),
    }
}

fn described(td: &Registered) -> Value {
    let mut d = td.definition.clone();
    d["taskDefinitionArn"] = json!(td.arn);
    d["revision"] = json!(td.revision);
    d["status"] = json!(td.status);
    d["registeredAt"] = json!(td.registered_at);
    d
}

impl State {
    fn register(&mut self, request: &Value) -> Value {
        let family = request["family"].as_str().unwrap_or_default().to_string();
        let revision = self
            .definitions
            .iter()
            .filter(|d| d.family == family)
            .count() as u64
            + 1;
        let mut definition = request.clone();
        let tags = definition
            .as_object_mut()
            .and_then(|o| o.remove("tags"))
            .unwrap_or(json!([]));
        let td = Registered {
            arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}"),
            family,
            revision,
            definition,
            status: "ACTIVE",
            registered_at: now(),
        };
        let out = json!({"taskDefinition": described(&td), "tags": tags});
        self.definitions.push(td);
        out
    }

    fn resolve(&self, name: &str) -> Option<Registered> {
        let short = name.rsplit('/').next().unwrap_or(name);
        match short.split_once(':') {
            Some((family, revision)) => self
                .definitions
                .iter()
                .find(|d| d.family == family && d.revision.to_string() == revision),
            // A family alone names its latest ACTIVE revision, as in ECS.
            None => self
                .definitions
                .iter()
                .rev()
                .find(|d| d.family == short && d.status == "ACTIVE"),
        }
        .cloned()
    }

    fn find(&self, arn_or_id: &str) -> Option<String> {
        self.tasks
            .iter()
            .find(|t| t.arn == arn_or_id || t.id == arn_or_id)
            .map(|t| t.arn.clone())
    }

    fn run(&mut self, definition: Registered, request: &Value) -> String {
        let id = format!(
            "{:032x}",
            self.tasks.len() as u128 + 1 + (now() as u128) * 1000
        );
        let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/standin/{id}");
        let containers = definition.definition["containerDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| ContainerState {
                name: c["name"].as_str().unwrap_or_default().to_string(),
                image: c["image"].as_str().unwrap_or_default().to_string(),
                docker: format!(
                    "{}-{}-{}",
                    self.label,
                    &id[24..],
                    c["name"].as_str().unwrap_or_default()
                ),
                essential: c["essential"].as_bool().unwrap_or(true),
                depends_on: c["dependsOn"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        (
                            d["containerName"].as_str().unwrap_or_default().to_string(),
                            d["condition"].as_str().unwrap_or("START").to_string(),
                        )
                    })
                    .collect(),
                stop_timeout: c["stopTimeout"].as_u64().unwrap_or(30),
                status: "PENDING",
                exit_code: None,
                reason: None,
            })
            .collect();
        self.tasks.push(TaskState {
            arn: arn.clone(),
            client_token: request["clientToken"].as_str().map(str::to_string),
            id,
            definition,
            overrides: request["overrides"].clone(),
            started_by: request["startedBy"].as_str().map(str::to_string),
            tags: request["tags"].clone(),
            desired: "RUNNING",
            last: "PROVISIONING",
            containers,
            ip: None,
            stop_code: None,
            stopped_reason: None,
            created_at: now(),
            stopped_at: None,
        });
        arn
    }

    fn task_json(&self, arn: &str) -> Value {
        let Some(t) = self.tasks.iter().find(|t| t.arn == arn) else {
            return Value::Null;
        };
        let containers: Vec<Value> = t
            .containers
            .iter()
            .map(|c| {
                let mut v = json!({
                    "containerArn": format!("{}/{}", t.arn.replace(":task/", ":container/"), c.name),
                    "taskArn": t.arn,
                    "name": c.name,
                    "image": c.image,
                    "lastStatus": c.status,
                });
                if let Some(code) = c.exit_code {
                    v["exitCode"] = json!(code);
                }
                if let Some(reason) = &c.reason {
                    v["reason"] = json!(reason);
                }
                v
            })
            .collect();
        let mut details = vec![json!({"name": "subnetId", "value": "subnet-standin"})];
        if let Some(ip) = &t.ip {
            details.push(json!({"name": "privateIPv4Address", "value": ip}));
        }
        let mut v = json!({
            "taskArn": t.arn,
            "clusterArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/standin"),
            "taskDefinitionArn": t.definition.arn,
            "lastStatus": t.last,
            "desiredStatus": t.desired,
            "createdAt": t.created_at,
            "containers": containers,
            "attachments": [{
                "id": format!("eni-{}", &t.id[..8]),
                "type": "ElasticNetworkInterface",
                "status": if t.ip.is_some() { "ATTACHED" } else { "PRECREATED" },
                "details": details,
            }],
        });
        if let Some(by) = &t.started_by {
            v["startedBy"] = json!(by);
        }
        if t.tags.is_array() {
            v["tags"] = t.tags.clone();
        }
        if let Some(code) = t.stop_code {
            v["stopCode"] = json!(code);
        }
        if let Some(reason) = &t.stopped_reason {
            v["stoppedReason"] = json!(reason);
        }
        if let Some(at) = t.stopped_at {
            v["stoppedAt"] = json!(at);
        }
        v
    }
}

/// `docker create` arguments for one container of the task.
fn create_args(task: &TaskState, index: usize, holder: &str, label: &str) -> Vec<String> {
    let def = &task.definition.definition["containerDefinitions"][index];
    let c = &task.containers[index];
    let overrides = task.overrides["containerOverrides"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["name"].as_str() == Some(c.name.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    let mut args: Vec<String> = vec![
        "create".into(),
        "--name".into(),
        c.docker.clone(),
        "--label".into(),
        label.into(),
        "--network".into(),
        format!("container:{holder}"),
    ];
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for source in [&def["environment"], &overrides["environment"]] {
        for pair in source.as_array().into_iter().flatten() {
            env.insert(
                pair["name"].as_str().unwrap_or_default().into(),
                pair["value"].as_str().unwrap_or_default().into(),
            );
        }
    }
    for (k, v) in env {
        args.extend(["-e".into(), format!("{k}={v}")]);
    }
    for mount in def["mountPoints"].as_array().into_iter().flatten() {
        let name = mount["sourceVolume"].as_str().unwrap_or_default();
        // A bind mount of the container instance's own path (EC2 capacity), else the
        // task's own volume.
        let host_path = task.definition.definition["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"].as_str() == Some(name))
            .and_then(|v| v["host"]["sourcePath"].as_str());
        let volume = match host_path {
            Some(path) => path.to_string(),
            None => format!("{label}-{}-{name}", &task.id[24..]),
        };
        let mut spec = format!(
            "{volume}:{}",
            mount["containerPath"].as_str().unwrap_or("/")
        );
        if mount["readOnly"].as_bool() == Some(true) {
            spec.push_str(":ro");
        }
        args.extend(["-v".into(), spec]);
    }
    if let Some(dir) = def["workingDirectory"].as_str() {
        args.extend(["-w".into(), dir.into()]);
    }
    if let Some(user) = def["user"].as_str() {
        args.extend(["-u".into(), user.into()]);
    }
    if def["linuxParameters"]["initProcessEnabled"].as_bool() == Some(true) {
        args.push("--init".into());
    }
    let entrypoint: Vec<String> = strings(&def["entryPoint"]);
    if let Some(first) = entrypoint.first() {
        args.extend(["--entrypoint".into(), first.clone()]);
    }
    args.push(def["image"].as_str().unwrap_or_default().into());
    args.extend(entrypoint.into_iter().skip(1));
    let command = match overrides["command"].is_array() {
        true => strings(&overrides["command"]),
        false => strings(&def["command"]),
    };
    args.extend(command);
    args
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// What the supervisor decided in one step, done outside the lock.
enum Step {
    Start(usize, Vec<String>),
    Stop(Vec<(String, u64)>),
    Wait,
    Finish,
}

/// Drives one task from PROVISIONING to STOPPED.
fn supervise(state: &Arc<Mutex<State>>, arn: &str) {
    let (label, holder, volumes) = {
        let s = lock(state);
        let Some(t) = s.tasks.iter().find(|t| t.arn == arn) else {
            return;
        };
        let volumes: Vec<String> = t.definition.definition["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["host"]["sourcePath"].is_null())
            .filter_map(|v| v["name"].as_str())
            .map(|name| format!("{}-{}-{name}", s.label, &t.id[24..]))
            .collect();
        (
            s.label.clone(),
            format!("{}-{}-holder", s.label, &t.id[24..]),
            volumes,
        )
    };
    if lock(state).closed {
        return;
    }
    for volume in &volumes {
        let _ = docker(&["volume", "create", "--label", &label, volume]);
    }
    let (started, _) = docker(&[
        "run",
        "-d",
        "--name",
        &holder,
        "--label",
        &label,
        images::DEBIAN,
        "sleep",
        "infinity",
    ]);
    let (_, ip) = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &holder]);
    {
        let mut s = lock(state);
        if let Some(t) = s.tasks.iter_mut().find(|t| t.arn == arn) {
            if started {
                t.ip = Some(ip);
                t.last = "PENDING";
            } else {
                t.desired = "STOPPED";
                t.stop_code = Some("TaskFailedToStart");
                t.stopped_reason = Some(
                    "ResourceInitializationError: the task's network holder did not start".into(),
                );
            }
        }
    }
    pull_images(state, arn);
    let mut stopping = false;
    loop {
        if lock(state).closed {
            return;
        }
        refresh(state, arn);
        let step = {
            let mut s = lock(state);
            let label = s.label.clone();
            let Some(t) = s.tasks.iter_mut().find(|t| t.arn == arn) else {
                return;
            };
            decide(t, &holder, &label, &mut stopping)
        };
        match step {
            Step::Start(index, args) => {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let (created, why) = docker(&refs);
                let name = args[2].clone();
                let (ok, why) = if created {
                    docker(&["start", &name])
                } else {
                    (false, why)
                };
                let mut s = lock(state);
                if let Some(t) = s.tasks.iter_mut().find(|t| t.arn == arn) {
                    let c = &mut t.containers[index];
                    if ok {
                        c.status = "RUNNING";
                    } else {
                        c.status = "STOPPED";
                        c.reason = Some(format!("CannotStartContainerError: {why}"));
                        if c.essential {
                            t.desired = "STOPPED";
                            t.stop_code = Some("TaskFailedToStart");
                            t.stopped_reason = Some(format!(
                                "Essential container in task exited: {} could not start",
                                c.name
                            ));
                        }
                    }
                }
            }
            Step::Stop(containers) => {
                for (name, timeout) in containers {
                    let _ = docker(&["stop", "-t", &timeout.to_string(), &name]);
                }
            }
            Step::Wait => std::thread::sleep(Duration::from_millis(100)),
            Step::Finish => break,
        }
    }
    refresh(state, arn);
    {
        let mut s = lock(state);
        if let Some(t) = s.tasks.iter_mut().find(|t| t.arn == arn) {
            for c in &mut t.containers {
                if c.status != "STOPPED" {
                    c.status = "STOPPED";
                }
            }
            t.last = "STOPPED";
            t.desired = "STOPPED";
            t.stopped_at = Some(now());
        }
    }
    let _ = docker(&["rm", "-f", &holder]);
}

/// ECS pulls every container's image before it starts any: one that cannot be had stops the
/// task before anything ran, the container and the task saying why, as ECS words it.
fn pull_images(state: &Arc<Mutex<State>>, arn: &str) {
    let images: Vec<String> = {
        let s = lock(state);
        match s.tasks.iter().find(|t| t.arn == arn) {
            Some(t) => t.containers.iter().map(|c| c.image.clone()).collect(),
            None => return,
        }
    };
    let missing: Vec<String> = images
        .into_iter()
        .filter(|image| !docker(&["image", "inspect", image]).0)
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut s = lock(state);
    let Some(t) = s.tasks.iter_mut().find(|t| t.arn == arn) else {
        return;
    };
    let mut first = None;
    for c in t
        .containers
        .iter_mut()
        .filter(|c| missing.contains(&c.image))
    {
        let reason = format!(
            "CannotPullContainerError: pull image manifest has been retried 5 time(s): \
             failed to resolve ref {}: not found",
            c.image
        );
        c.status = "STOPPED";
        c.reason = Some(reason.clone());
        first.get_or_insert(reason);
    }
    t.desired = "STOPPED";
    t.stop_code = Some("TaskFailedToStart");
    t.stopped_reason = first;
}

/// Reads every started container's state from Docker.
fn refresh(state: &Arc<Mutex<State>>, arn: &str) {
    let names: Vec<String> = {
        let s = lock(state);
        match s.tasks.iter().find(|t| t.arn == arn) {
            Some(t) => t
                .containers
                .iter()
                .filter(|c| c.status == "RUNNING")
                .map(|c| c.docker.clone())
                .collect(),
            None => return,
        }
    };
    if names.is_empty() {
        return;
    }
    let mut args = vec![
        "inspect",
        "-f",
        "{{.Name}} {{.State.Status}} {{.State.ExitCode}}",
    ];
    args.extend(names.iter().map(String::as_str));
    let (_, out) = docker(&args);
    let mut s = lock(state);
    let Some(t) = s.tasks.iter_mut().find(|t| t.arn == arn) else {
        return;
    };
    for line in out.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(status), Some(code)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let name = name.trim_start_matches('/');
        if let Some(c) = t.containers.iter_mut().find(|c| c.docker == name) {
            if status == "exited" || status == "dead" {
                c.status = "STOPPED";
                c.exit_code = code.parse().ok();
            }
        }
    }
}

/// The next step of a task, from what its containers are doing.
fn decide(t: &mut TaskState, holder: &str, label: &str, stopping: &mut bool) -> Step {
    let running = |t: &TaskState| {
        t.containers
            .iter()
            .filter(|c| c.status == "RUNNING")
            .map(|c| (c.docker.clone(), c.stop_timeout))
            .collect::<Vec<_>>()
    };
    if t.desired == "STOPPED" {
        if t.last != "DEPROVISIONING" && t.last != "STOPPED" {
            t.last = "DEPROVISIONING";
        }
        let left = running(t);
        if left.is_empty() {
            return Step::Finish;
        }
        if !*stopping {
            *stopping = true;
            return Step::Stop(left);
        }
        return Step::Wait;
    }
    if t.containers
        .iter()
        .any(|c| c.essential && c.status == "STOPPED")
    {
        t.desired = "STOPPED";
        t.stop_code = Some("EssentialContainerExited");
        t.stopped_reason = Some("Essential container in task exited".into());
        return Step::Wait;
    }
    for (index, c) in t.containers.iter().enumerate() {
        if c.status != "PENDING" {
            continue;
        }
        let mut ready = true;
        for (dep, condition) in &c.depends_on {
            let Some(d) = t.containers.iter().find(|x| &x.name == dep) else {
                continue;
            };
            let met = match condition.as_str() {
                "COMPLETE" => d.status == "STOPPED",
                "SUCCESS" => d.status == "STOPPED" && d.exit_code == Some(0),
                _ => d.status != "PENDING",
            };
            if condition == "SUCCESS" && d.status == "STOPPED" && d.exit_code != Some(0) {
                t.desired = "STOPPED";
                t.stop_code = Some("TaskFailedToStart");
                t.stopped_reason = Some(format!(
                    "CannotStartContainerError: dependency {dep} of {} exited {}",
                    c.name,
                    d.exit_code.unwrap_or(-1)
                ));
                return Step::Wait;
            }
            ready &= met;
        }
        if ready {
            return Step::Start(index, create_args(t, index, holder, label));
        }
    }
    // ECS reports RUNNING once every essential container runs, not at the first to start.
    if t.containers
        .iter()
        .filter(|c| c.essential)
        .all(|c| c.status == "RUNNING")
    {
        t.last = "RUNNING";
    }
    Step::Wait
}
