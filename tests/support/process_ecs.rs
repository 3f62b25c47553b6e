//! An ECS control plane for the scale benchmark, without containers: each task is the two
//! agents of a job task (`agent serve` of the binary under test, build and helper ports)
//! on a loopback address of its own (127.0.x.y), started with the digest `RunTask`'s
//! overrides carry and killed by `StopTask`. `RunTask` is rate-limited as ECS's token
//! bucket is (a burst, then a steady refill), answering `ThrottlingException` beyond it, so
//! a hundred jobs starting at once meet the throttling real ones do. The stages run on this
//! host: only the benchmark's own jobs (`true`) use it, never a test of user input.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use super::json_api::{self, Reply};

const REGION: &str = "eu-west-1";
const ACCOUNT: &str = "123456789012";

/// `RunTask`'s rate limit: a burst, then so many per second.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Calls allowed at once.
    pub burst: f64,
    /// Calls added back per second.
    pub per_second: f64,
}

struct Task {
    arn: String,
    address: String,
    started_by: Option<String>,
    tags: Value,
    desired: &'static str,
    agents: Vec<Child>,
}

struct State {
    binary: std::path::PathBuf,
    definitions: BTreeMap<String, Value>,
    tasks: Vec<Task>,
    calls: Vec<String>,
    limit: Option<RateLimit>,
    tokens: f64,
    refilled: Instant,
    throttled: usize,
}

/// The stand-in; its agents are killed when it is dropped.
pub struct ProcessEcs {
    /// Its endpoint URL.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProcessEcs {
    /// Serves on loopback, running `binary`'s agents, `RunTask` limited as `limit` says.
    pub fn start(binary: &std::path::Path, limit: Option<RateLimit>) -> ProcessEcs {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the process ECS");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            binary: binary.to_path_buf(),
            definitions: BTreeMap::new(),
            tasks: Vec::new(),
            calls: Vec::new(),
            tokens: limit.map(|l| l.burst).unwrap_or_default(),
            limit,
            refilled: Instant::now(),
            throttled: 0,
        }));
        let shared = state.clone();
        json_api::serve(listener, move |op, request| handle(&shared, op, request));
        ProcessEcs {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// How many calls of each operation arrived.
    pub fn calls(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for op in &lock(&self.state).calls {
            *counts.entry(op.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// How many `RunTask` calls were throttled.
    pub fn throttled(&self) -> usize {
        lock(&self.state).throttled
    }

    /// Tasks started, and those nobody stopped.
    pub fn tasks(&self) -> (usize, usize) {
        let s = lock(&self.state);
        let running = s.tasks.iter().filter(|t| t.desired == "RUNNING").count();
        (s.tasks.len(), running)
    }
}

impl Drop for ProcessEcs {
    fn drop(&mut self) {
        for task in &mut lock(&self.state).tasks {
            for agent in &mut task.agents {
                let _ = agent.kill();
                let _ = agent.wait();
            }
        }
    }
}

fn handle(state: &Arc<Mutex<State>>, op: &str, request: &Value) -> Reply {
    let mut s = lock(state);
    s.calls.push(op.to_string());
    match op {
        "DescribeTaskDefinition" => {
            let family = request["taskDefinition"].as_str().unwrap_or_default();
            match s.definitions.get(family) {
                Some(td) => Ok(json!({"taskDefinition": td})),
                None => Err((
                    400,
                    "ClientException",
                    "Unable to describe task definition.".into(),
                )),
            }
        }
        "RegisterTaskDefinition" => {
            let family = request["family"].as_str().unwrap_or_default().to_string();
            let mut td = request.clone();
            td["taskDefinitionArn"] = json!(format!(
                "arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:1"
            ));
            td["status"] = json!("ACTIVE");
            td["revision"] = json!(1);
            s.definitions.insert(family, td.clone());
            Ok(json!({"taskDefinition": td}))
        }
        "RunTask" => {
            if let Some(limit) = s.limit {
                let now = Instant::now();
                let earned = now.duration_since(s.refilled).as_secs_f64() * limit.per_second;
                s.tokens = (s.tokens + earned).min(limit.burst);
                s.refilled = now;
                if s.tokens < 1.0 {
                    s.throttled += 1;
                    return Err((400, "ThrottlingException", "Rate exceeded".into()));
                }
                s.tokens -= 1.0;
            }
            let n = s.tasks.len() + 1;
            let address = format!("127.0.{}.{}", 1 + n / 250, 1 + n % 250);
            let digest = request["overrides"]["containerOverrides"]
                .as_array()
                .and_then(|o| o.first())
                .and_then(|o| o["environment"].as_array())
                .and_then(|e| e.first())
                .and_then(|v| v["value"].as_str())
                .unwrap_or_default()
                .to_string();
            let mut agents = Vec::new();
            for port in [8473, 8474] {
                let child = Command::new(&s.binary)
                    .args(["agent", "serve", "--listen", &format!("{address}:{port}")])
                    .env("GITLAB_ECS_AGENT_SECRET_SHA256", &digest)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| (500, "ServerException", e.to_string()))?;
                agents.push(child);
            }
            let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/ci/{n:032x}");
            s.tasks.push(Task {
                arn: arn.clone(),
                address,
                started_by: request["startedBy"].as_str().map(str::to_string),
                tags: request["tags"].clone(),
                desired: "RUNNING",
                agents,
            });
            let task = task_json(s.tasks.last().expect("just pushed"));
            Ok(json!({"tasks": [task], "failures": []}))
        }
        "DescribeTasks" => {
            let wanted: Vec<&str> = request["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let tasks: Vec<Value> = s
                .tasks
                .iter()
                .filter(|t| wanted.contains(&t.arn.as_str()))
                .map(task_json)
                .collect();
            Ok(json!({"tasks": tasks, "failures": []}))
        }
        "StopTask" => {
            let arn = request["task"].as_str().unwrap_or_default();
            let Some(task) = s.tasks.iter_mut().find(|t| t.arn == arn) else {
                return Err((
                    400,
                    "InvalidParameterException",
                    "The referenced task was not found.".into(),
                ));
            };
            task.desired = "STOPPED";
            for agent in &mut task.agents {
                let _ = agent.kill();
                let _ = agent.wait();
            }
            Ok(json!({"task": task_json(task)}))
        }
        "ListTasks" => {
            let by = request["startedBy"].as_str();
            let arns: Vec<&str> = s
                .tasks
                .iter()
                .filter(|t| {
                    t.desired == "RUNNING" && (by.is_none() || t.started_by.as_deref() == by)
                })
                .map(|t| t.arn.as_str())
                .collect();
            Ok(json!({"taskArns": arns}))
        }
        other => Err((
            400,
            "ClientException",
            format!("the process ECS does not serve {other}"),
        )),
    }
}

fn task_json(t: &Task) -> Value {
    let status = if t.desired == "RUNNING" {
        "RUNNING"
    } else {
        "STOPPED"
    };
    json!({
        "taskArn": t.arn,
        "lastStatus": status,
        "desiredStatus": t.desired,
        "tags": t.tags,
        "containers": [],
        "attachments": [{
            "type": "ElasticNetworkInterface",
            "status": "ATTACHED",
            "details": [{"name": "privateIPv4Address", "value": t.address}],
        }],
    })
}
