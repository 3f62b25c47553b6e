//! A local stand-in for gitlab-runner 19.x: drives the executor binary exactly as the
//! runner's custom executor does (shared/reference/gitlab-custom-executor.md §1–§15).
//!
//! Per attempt a temp dir with `response.json` (0600); the environment in the runner's
//! order; stage scripts (0700) in the runner's bash shape; each call in its own process
//! group; SIGTERM → grace → SIGKILL on cancel; exit codes classified with
//! `BUILD_EXIT_CODE_FILE`; prepare retried up to 3 times with cleanup after each failed
//! attempt; cleanup always. `exec` uses it to run `.gitlab-ci.yml` jobs on this machine and
//! the test suite uses it as the runner.
//!
//! The job log is not masked here (the real runner masks it): the executor itself must
//! never print a secret, and tests check exactly that.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

/// How many times the runner tries config + prepare.
pub const PREPARATION_RETRIES: usize = 3;

/// A runner configured with this executor in `[runners.custom]`.
#[derive(Clone, Debug)]
pub struct Runner {
    /// The executor binary (`config_exec`, `prepare_exec`, `run_exec`, `cleanup_exec`).
    pub binary: PathBuf,
    /// Passed as `--config` in every `*_args`, if set.
    pub settings: Option<PathBuf>,
    /// `CI_RUNNER_ID`.
    pub runner_id: u64,
    /// `CI_RUNNER_SHORT_TOKEN`.
    pub short_token: String,
    /// `graceful_kill_timeout`.
    pub graceful_kill: Duration,
    /// `force_kill_timeout`.
    pub force_kill: Duration,
    /// `PreparationRetryInterval` (3 s in the runner).
    pub prepare_retry_pause: Duration,
    /// Extra variables of the runner process's own environment.
    pub process_env: Vec<(String, String)>,
    /// Arguments after `run` in `run_args` (before the script and the stage).
    pub run_args: Vec<String>,
    /// Print the job log live on stdout as well as collecting it.
    pub echo: bool,
    /// Where per-attempt temp dirs are made (the runner's `TMPDIR`); `None`: the system's.
    pub temp_root: Option<PathBuf>,
    /// Set from outside (Ctrl-C) to cancel the job like GitLab's cancel button.
    pub cancel_flag: Option<&'static AtomicBool>,
}

/// A job variable.
#[derive(Clone, Debug)]
pub struct Var {
    /// Name.
    pub key: String,
    /// Value.
    pub value: String,
    /// Masked in GitLab.
    pub masked: bool,
    /// File-type variable.
    pub file: bool,
}

/// A `services:` entry.
#[derive(Clone, Debug, Default)]
pub struct Service {
    /// Image.
    pub name: String,
    /// Alias.
    pub alias: String,
    /// Entrypoint override.
    pub entrypoint: Option<Vec<String>>,
    /// Command override.
    pub command: Option<Vec<String>>,
    /// Service variables.
    pub variables: Vec<(String, String)>,
}

/// Where `get_sources` gets the project from.
#[derive(Clone, Debug)]
pub struct GitSource {
    /// A local repository to clone.
    pub repo: PathBuf,
    /// The commit or ref to check out.
    pub checkout: String,
    /// The branch or tag name the pipeline runs for.
    pub ref_name: String,
    /// Whether `ref_name` is a tag.
    pub is_tag: bool,
}

impl GitSource {
    /// `git_ref` (a tag if `is_tag`) of the repository at `repo`.
    pub fn new(repo: &Path, git_ref: &str, is_tag: bool) -> Self {
        GitSource {
            repo: repo.to_path_buf(),
            checkout: git_ref.into(),
            ref_name: git_ref.into(),
            is_tag,
        }
    }
}

/// A job as GitLab hands it to the runner.
#[derive(Clone, Debug)]
pub struct Job {
    /// `CI_JOB_ID`.
    pub id: u64,
    /// `CI_PROJECT_ID`.
    pub project_id: u64,
    /// `CI_PROJECT_PATH`.
    pub project_path: String,
    /// `CI_CONCURRENT_ID` (and `CI_CONCURRENT_PROJECT_ID`).
    pub concurrent_id: u64,
    /// Job name.
    pub name: String,
    /// Job stage.
    pub stage: String,
    /// `CI_COMMIT_SHA`.
    pub commit_sha: String,
    /// `CI_COMMIT_TIMESTAMP` (ISO 8601).
    pub commit_timestamp: String,
    /// `image:`.
    pub image: Option<String>,
    /// `image: entrypoint:`.
    pub image_entrypoint: Option<Vec<String>>,
    /// `image: pull_policy:`.
    pub pull_policy: Vec<String>,
    /// `services:`.
    pub services: Vec<Service>,
    /// Job variables (user-defined; predefined ones are added by the runner).
    pub variables: Vec<Var>,
    /// `script:` (before_script merged).
    pub script: Vec<String>,
    /// `after_script:`.
    pub after_script: Vec<String>,
    /// Sources, or `GIT_STRATEGY: none` when absent.
    pub git: Option<GitSource>,
    /// Job timeout in seconds.
    pub timeout: u64,
}

/// When to cancel the job.
#[derive(Clone, Debug)]
pub enum Cancel {
    /// Never.
    No,
    /// Gracefully (GitLab's cancel button) this long into `build_script`.
    DuringBuildScript(Duration),
}

/// How one executor call ended, as the runner classifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// Exit 0.
    Ok,
    /// `BuildError` with this exit code.
    BuildFailure(i32),
    /// Anything the runner treats as a system failure, with its message.
    SystemFailure(String),
}

impl std::fmt::Display for CallResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallResult::Ok => f.write_str("exit status 0"),
            CallResult::BuildFailure(code) => write!(f, "exit status {code}"),
            CallResult::SystemFailure(message) => f.write_str(message),
        }
    }
}

/// One executor call.
#[derive(Clone, Debug)]
pub struct Call {
    /// `config`, `prepare`, `cleanup` or the stage name of a `run`.
    pub what: String,
    /// Its classified result.
    pub result: CallResult,
    /// Wall time.
    pub elapsed: Duration,
    /// When it exited.
    pub ended: SystemTime,
}

/// The job's final status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// `Job succeeded`.
    Success,
    /// `ERROR: Job failed: exit status N`.
    Failed(i32),
    /// `ERROR: Job failed (system failure): …`.
    SystemFailure(String),
    /// Cancelled by the user.
    Canceled,
}

impl Status {
    /// The exit code `exec` leaves with: the job's own code, 2 for a system failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Status::Success => 0,
            Status::Failed(code) => *code,
            Status::SystemFailure(_) => 2,
            Status::Canceled => 130,
        }
    }
}

/// What the runner saw of a job.
#[derive(Clone, Debug)]
pub struct JobResult {
    /// Final status.
    pub status: Status,
    /// The job log (unmasked).
    pub log: String,
    /// The runner's own log: cleanup output.
    pub runner_log: String,
    /// Every executor call in order.
    pub calls: Vec<Call>,
    /// The project directory the runner computed.
    pub project_dir: PathBuf,
    /// The config output of the last attempt.
    pub config: Value,
}

impl JobResult {
    /// The calls for one stage or command.
    pub fn calls_of(&self, what: &str) -> Vec<&Call> {
        self.calls.iter().filter(|c| c.what == what).collect()
    }
}

impl Job {
    /// Adds a plain variable.
    pub fn var(mut self, key: &str, value: &str) -> Self {
        self.variables.push(Var {
            key: key.into(),
            value: value.into(),
            masked: false,
            file: false,
        });
        self
    }

    /// Adds a masked variable.
    pub fn masked(mut self, key: &str, value: &str) -> Self {
        self.variables.push(Var {
            key: key.into(),
            value: value.into(),
            masked: true,
            file: false,
        });
        self
    }

    fn git_ref(&self) -> (String, bool) {
        self.git
            .as_ref()
            .map(|g| (g.ref_name.clone(), g.is_tag))
            .unwrap_or_else(|| ("main".into(), false))
    }

    fn token(&self) -> String {
        format!("glcbt-64_{}secrettoken", self.id)
    }

    /// The predefined and user variables, in the order GitLab sends them.
    fn all_variables(
        &self,
        runner: &Runner,
        builds_dir: &str,
        project_dir: &str,
        status: &str,
    ) -> Vec<Var> {
        let (git_ref, is_tag) = self.git_ref();
        let plain = |k: &str, v: String| Var {
            key: k.into(),
            value: v,
            masked: false,
            file: false,
        };
        let secret = |k: &str, v: String| Var {
            key: k.into(),
            value: v,
            masked: true,
            file: false,
        };
        let server = "https://gitlab.example.com";
        let mut vars = Vec::new();
        if let Some(image) = &self.image {
            vars.push(plain("CI_JOB_IMAGE", image.clone()));
        }
        vars.extend([
            plain("CI_RUNNER_SHORT_TOKEN", runner.short_token.clone()),
            plain("CI_BUILDS_DIR", builds_dir.into()),
            plain("CI_PROJECT_DIR", project_dir.into()),
            plain("CI_CONCURRENT_ID", self.concurrent_id.to_string()),
            plain("CI_CONCURRENT_PROJECT_ID", self.concurrent_id.to_string()),
            plain("CI_SERVER", "yes".into()),
            plain("CI_JOB_STATUS", status.into()),
            plain("CI_JOB_TIMEOUT", self.timeout.to_string()),
            plain("CI", "true".into()),
            plain("GITLAB_CI", "true".into()),
            plain("CI_SERVER_URL", server.into()),
            plain("CI_JOB_ID", self.id.to_string()),
            plain("CI_JOB_NAME", self.name.clone()),
            plain("CI_JOB_STAGE", self.stage.clone()),
            plain(
                "CI_JOB_URL",
                format!("{server}/{}/-/jobs/{}", self.project_path, self.id),
            ),
            plain("CI_PIPELINE_ID", (self.id / 10).to_string()),
            plain("CI_PROJECT_ID", self.project_id.to_string()),
            plain("CI_PROJECT_PATH", self.project_path.clone()),
            plain("CI_PROJECT_PATH_SLUG", self.project_path.replace('/', "-")),
            plain(
                "CI_PROJECT_NAME",
                self.project_path
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            plain("CI_PROJECT_URL", format!("{server}/{}", self.project_path)),
            plain("CI_RUNNER_ID", runner.runner_id.to_string()),
            plain("CI_COMMIT_SHA", self.commit_sha.clone()),
            plain(
                "CI_COMMIT_SHORT_SHA",
                self.commit_sha.chars().take(8).collect(),
            ),
            plain("CI_COMMIT_TIMESTAMP", self.commit_timestamp.clone()),
            plain("CI_COMMIT_REF_NAME", git_ref.clone()),
            plain("CI_COMMIT_REF_SLUG", slug(&git_ref)),
            plain("CI_REGISTRY", "registry.gitlab.example.com".into()),
            plain("CI_REGISTRY_USER", "gitlab-ci-token".into()),
            secret("CI_JOB_TOKEN", self.token()),
            secret("CI_REGISTRY_PASSWORD", self.token()),
            plain(
                if is_tag {
                    "CI_COMMIT_TAG"
                } else {
                    "CI_COMMIT_BRANCH"
                },
                git_ref,
            ),
        ]);
        vars.extend(self.variables.iter().cloned());
        vars
    }

    fn payload(&self, runner: &Runner) -> Value {
        let (git_ref, is_tag) = self.git_ref();
        let vars: Vec<Value> = self
            .all_variables(runner, "", "", "running")
            .iter()
            .map(|v| json!({"key": v.key, "value": v.value, "public": !v.masked, "masked": v.masked, "file": v.file}))
            .collect();
        let mut steps = vec![
            json!({"name": "script", "script": self.script, "timeout": self.timeout, "when": "on_success", "allow_failure": false}),
        ];
        if !self.after_script.is_empty() {
            steps.push(json!({"name": "after_script", "script": self.after_script, "timeout": 300, "when": "always", "allow_failure": true}));
        }
        json!({
            "id": self.id,
            "token": self.token(),
            "allow_git_fetch": true,
            "job_info": {"name": self.name, "stage": self.stage, "project_id": self.project_id,
                         "project_name": self.project_path.rsplit('/').next().unwrap_or(""),
                         "project_full_path": self.project_path, "pipeline_id": self.id / 10},
            "git_info": {"repo_url": format!("https://gitlab-ci-token:{}@gitlab.example.com/{}.git", self.token(), self.project_path),
                         "ref": git_ref, "sha": self.commit_sha,
                         "ref_type": if is_tag { "tag" } else { "branch" }, "depth": 20},
            "runner_info": {"timeout": self.timeout},
            "variables": vars,
            "steps": steps,
            "image": {"name": self.image.clone().unwrap_or_default(), "entrypoint": self.image_entrypoint,
                      "pull_policy": self.pull_policy},
            "services": self.services.iter().map(|s| json!({"name": s.name, "alias": s.alias,
                      "entrypoint": s.entrypoint, "command": s.command, "pull_policy": self.pull_policy,
                      "variables": s.variables.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "features": {"trace_sections": true},
        })
    }

    fn services_env(&self) -> String {
        if self.services.is_empty() {
            return String::new();
        }
        let list: Vec<Value> = self
            .services
            .iter()
            .map(|s| {
                let mut v = json!({"name": s.name, "alias": s.alias, "entrypoint": s.entrypoint, "command": s.command});
                if !s.variables.is_empty() {
                    v["variables"] = s.variables.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>().into();
                }
                v
            })
            .collect();
        Value::Array(list).to_string()
    }
}

/// `CI_COMMIT_REF_SLUG`: lowercase, `[a-z0-9-]`, at most 63 characters.
fn slug(s: &str) -> String {
    let mapped: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    mapped.trim_matches('-').to_string()
}

/// The job log of one job: collected, and printed live if asked.
#[derive(Clone)]
struct Log {
    text: Arc<Mutex<String>>,
    echo: bool,
}

impl Log {
    fn push(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.text
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_str(text);
        if self.echo {
            let mut out = io::stdout();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }

    fn take(&self) -> String {
        std::mem::take(&mut *self.text.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// State shared by the calls of one preparation attempt.
struct Attempt {
    tmp: tempfile::TempDir,
    builds_dir: String,
    project_dir: String,
    config: Value,
    script_counter: usize,
}

/// One job being driven.
struct Drive<'a> {
    runner: &'a Runner,
    job: &'a Job,
    log: Log,
    runner_log: String,
    calls: Vec<Call>,
}

/// What a stage script does before its commands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prelude {
    /// Nothing (`prepare_script`).
    Nothing,
    /// Export the job variables (`get_sources`, `cleanup_file_variables`).
    Export,
    /// Export and `cd` into the project directory (user steps).
    ExportAndCd,
}

impl Runner {
    /// A runner using `binary`, with `--config settings` if given.
    pub fn new(binary: &Path, settings: Option<&Path>) -> Self {
        Runner {
            binary: binary.to_path_buf(),
            settings: settings.map(Path::to_path_buf),
            runner_id: 42,
            short_token: "t3stRunr".into(),
            graceful_kill: Duration::from_secs(10),
            force_kill: Duration::from_secs(10),
            prepare_retry_pause: Duration::from_secs(3),
            process_env: Vec::new(),
            run_args: Vec::new(),
            echo: false,
            temp_root: None,
            cancel_flag: None,
        }
    }

    /// Runs a job to the end, cancelling it as told; errors only when the runner itself
    /// cannot work (no temp dir, the binary cannot start).
    pub fn drive(&self, job: &Job, cancel: Cancel) -> io::Result<JobResult> {
        let mut d = Drive {
            runner: self,
            job,
            log: Log {
                text: Arc::new(Mutex::new(String::new())),
                echo: self.echo,
            },
            runner_log: String::new(),
            calls: Vec::new(),
        };
        d.run(cancel)
    }

    fn cancelled_externally(&self) -> bool {
        self.cancel_flag.is_some_and(|f| f.load(Ordering::SeqCst))
    }
}

impl Drive<'_> {
    fn run(&mut self, cancel: Cancel) -> io::Result<JobResult> {
        let mut prev_dirs = (String::new(), String::new());
        let mut attempt = None;
        let mut prep_error = None;
        for n in 0..PREPARATION_RETRIES {
            let mut a = new_attempt(self.runner.temp_root.as_deref(), &prev_dirs)?;
            let result = self.prepare_attempt(&mut a)?;
            prev_dirs = (a.builds_dir.clone(), a.project_dir.clone());
            if result == CallResult::Ok {
                attempt = Some(a);
                break;
            }
            self.cleanup(&a)?;
            let build_failure = matches!(result, CallResult::BuildFailure(_));
            prep_error = Some(result.clone());
            if build_failure || n + 1 == PREPARATION_RETRIES || self.runner.cancelled_externally() {
                break;
            }
            self.log.push(&format!(
                "ERROR: Preparation failed: {result}\nWill be retried in 3s ...\n"
            ));
            std::thread::sleep(self.runner.prepare_retry_pause);
        }
        let Some(mut a) = attempt else {
            let status = match prep_error {
                Some(CallResult::BuildFailure(code)) => Status::Failed(code),
                Some(CallResult::SystemFailure(m)) => Status::SystemFailure(m),
                _ => Status::SystemFailure("preparation failed".into()),
            };
            return Ok(self.finish(status, PathBuf::from(prev_dirs.1), Value::Null));
        };

        let mut job_error: Option<CallResult> = None;
        let mut canceled = false;
        let stages = [
            (
                "prepare_script",
                "echo \"Running on $(hostname) via gitlab-ecs-executor...\"".to_string(),
                Prelude::Nothing,
            ),
            ("get_sources", self.get_sources_body(&a), Prelude::Export),
        ];
        for (stage, body, prelude) in stages {
            let script = self.script(&a, "running", &body, prelude);
            let result = self.run_stage(&mut a, stage, "running", &script, None)?;
            if result != CallResult::Ok {
                job_error = Some(result);
                break;
            }
        }
        if job_error.is_none() {
            let script = self.script(
                &a,
                "running",
                &user_commands(&self.job.script),
                Prelude::ExportAndCd,
            );
            let cancel_after = match cancel {
                Cancel::DuringBuildScript(after) => Some(after),
                Cancel::No => None,
            };
            let started = Instant::now();
            let result =
                self.run_stage(&mut a, "build_script", "running", &script, cancel_after)?;
            if cancel_after.is_some_and(|after| started.elapsed() >= after)
                || self.runner.cancelled_externally()
            {
                canceled = true;
                self.log
                    .push("WARNING: script canceled externally (UI, API)\n");
            }
            if result != CallResult::Ok {
                job_error = Some(result);
            }
            if !self.job.after_script.is_empty() {
                let status = match (canceled, &job_error) {
                    (true, _) => "canceled",
                    (false, Some(_)) => "failed",
                    (false, None) => "success",
                };
                let script = self.script(
                    &a,
                    status,
                    &user_commands(&self.job.after_script),
                    Prelude::ExportAndCd,
                );
                self.log.push("\x1b[36;1mRunning after_script\x1b[0;m\n");
                // after_script failures are ignored by default.
                self.run_stage(&mut a, "after_script", status, &script, None)?;
            }
        }
        let cleanup_vars = format!("rm -rf {}", shell_quote(&format!("{}.tmp", a.project_dir)));
        let script = self.script(&a, "running", &cleanup_vars, Prelude::Export);
        self.run_stage(&mut a, "cleanup_file_variables", "running", &script, None)?;

        self.cleanup(&a)?;
        let status = match (canceled, job_error) {
            (true, _) => Status::Canceled,
            (false, None | Some(CallResult::Ok)) => Status::Success,
            (false, Some(CallResult::BuildFailure(code))) => Status::Failed(code),
            (false, Some(CallResult::SystemFailure(m))) => Status::SystemFailure(m),
        };
        let config = a.config.clone();
        Ok(self.finish(status, PathBuf::from(&a.project_dir), config))
    }

    /// config_exec, StartBuild checks and prepare_exec of one attempt.
    fn prepare_attempt(&mut self, a: &mut Attempt) -> io::Result<CallResult> {
        let response = a.tmp.path().join("response.json");
        std::fs::write(&response, self.job.payload(self.runner).to_string() + "\n")?;
        std::fs::set_permissions(&response, std::fs::Permissions::from_mode(0o600))?;

        // config_exec: stdout is parsed, stderr goes to the job log.
        let out = self.invoke(&["config"], a, "running", None, false)?;
        self.log.push(&String::from_utf8_lossy(&out.stderr));
        let result = classify(&out, a);
        self.record("config", &result, &out);
        if result != CallResult::Ok {
            return Ok(result);
        }
        if !out.stdout.is_empty() {
            match serde_json::from_slice::<Value>(&out.stdout) {
                Ok(v) => a.config = v,
                Err(e) => {
                    return Ok(CallResult::SystemFailure(format!(
                        "error while parsing JSON output: {e}"
                    )))
                }
            }
        }
        let text = |key: &str| {
            a.config
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (builds_dir, cache_dir) = (text("builds_dir"), text("cache_dir"));
        if builds_dir.is_empty() {
            return Ok(CallResult::SystemFailure(
                "the builds_dir is not configured".into(),
            ));
        }
        if cache_dir.is_empty() {
            return Ok(CallResult::SystemFailure(
                "the cache_dir is not configured".into(),
            ));
        }
        let shared = a
            .config
            .get("builds_dir_is_shared")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        a.project_dir = if shared {
            format!(
                "{builds_dir}/{}/{}/{}",
                self.runner.short_token, self.job.concurrent_id, self.job.project_path
            )
        } else {
            format!("{builds_dir}/{}", self.job.project_path)
        };
        a.builds_dir = builds_dir;
        let driver = a
            .config
            .pointer("/driver/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        self.log
            .push(&format!("Using Custom executor with driver {driver}...\n"));

        let out = self.invoke(&["prepare"], a, "running", None, true)?;
        let result = classify(&out, a);
        self.record("prepare", &result, &out);
        Ok(result)
    }

    fn run_stage(
        &mut self,
        a: &mut Attempt,
        stage: &str,
        status: &str,
        script: &str,
        cancel_after: Option<Duration>,
    ) -> io::Result<CallResult> {
        a.script_counter += 1;
        let dir = a.tmp.path().join(format!("script{}", a.script_counter));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("script");
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        let path_arg = path.to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec!["run"];
        args.extend(self.runner.run_args.iter().map(String::as_str));
        args.extend([path_arg.as_str(), stage]);
        let out = self.invoke(&args, a, status, cancel_after, true)?;
        let result = classify(&out, a);
        self.record(stage, &result, &out);
        Ok(result)
    }

    fn cleanup(&mut self, a: &Attempt) -> io::Result<()> {
        let out = self.invoke(&["cleanup"], a, "running", None, false)?;
        self.runner_log
            .push_str(&String::from_utf8_lossy(&out.stdout));
        self.runner_log
            .push_str(&String::from_utf8_lossy(&out.stderr));
        let result = classify(&out, a);
        if result != CallResult::Ok {
            self.log
                .push(&format!("WARNING: Cleanup script failed: {result}\n"));
        }
        self.record("cleanup", &result, &out);
        Ok(())
    }

    fn record(&mut self, what: &str, result: &CallResult, out: &Invocation) {
        self.calls.push(Call {
            what: what.into(),
            result: result.clone(),
            elapsed: out.elapsed,
            ended: SystemTime::now(),
        });
    }

    /// The driver's environment, in the runner's order: own env, runner-provided, job_env,
    /// `CUSTOM_ENV_*`, `CUSTOM_ENV_CI_JOB_SERVICES` last.
    fn env(&self, a: &Attempt, status: &str) -> Vec<(String, String)> {
        let tmp = a.tmp.path().to_string_lossy().into_owned();
        let mut env: Vec<(String, String)> = self.runner.process_env.clone();
        env.push(("TMPDIR".into(), tmp.clone()));
        env.push(("BUILD_FAILURE_EXIT_CODE".into(), "1".into()));
        env.push(("SYSTEM_FAILURE_EXIT_CODE".into(), "2".into()));
        env.push((
            "BUILD_EXIT_CODE_FILE".into(),
            format!("{tmp}/build_exit_code"),
        ));
        env.push(("JOB_RESPONSE_FILE".into(), format!("{tmp}/response.json")));
        if let Some(job_env) = a.config.get("job_env").and_then(Value::as_object) {
            for (k, v) in job_env {
                env.push((k.clone(), v.as_str().unwrap_or_default().to_string()));
            }
        }
        for v in self
            .job
            .all_variables(self.runner, &a.builds_dir, &a.project_dir, status)
        {
            env.push((format!("CUSTOM_ENV_{}", v.key), v.value));
        }
        env.push(("CUSTOM_ENV_CI_JOB_SERVICES".into(), self.job.services_env()));
        env
    }

    /// Starts the binary in its own process group; streams its output into the job log when
    /// `to_log` (else captures it); on cancel sends SIGTERM to the group, then SIGKILL after
    /// the graceful timeout.
    fn invoke(
        &self,
        args: &[&str],
        a: &Attempt,
        status: &str,
        cancel_after: Option<Duration>,
        to_log: bool,
    ) -> io::Result<Invocation> {
        let started = Instant::now();
        let mut cmd = Command::new(&self.runner.binary);
        if let Some(settings) = &self.runner.settings {
            cmd.arg("--config").arg(settings);
        }
        cmd.args(args);
        for (k, v) in self.env(a, status) {
            cmd.env(k, v);
        }
        cmd.current_dir(a.tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "failed to start command {}: {e}",
                    self.runner.binary.display()
                ),
            )
        })?;
        let (stdout, stderr) = (
            pump(child.stdout.take(), self.log.clone(), to_log),
            pump(child.stderr.take(), self.log.clone(), to_log),
        );
        let status = self.wait(&mut child, started, cancel_after)?;
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        Ok(Invocation {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
            elapsed: started.elapsed(),
        })
    }

    fn wait(
        &self,
        child: &mut Child,
        started: Instant,
        cancel_after: Option<Duration>,
    ) -> io::Result<std::process::ExitStatus> {
        let pid = child.id() as i32;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            let cancel = cancel_after.is_some_and(|after| started.elapsed() >= after)
                || self.runner.cancelled_externally();
            if cancel {
                // SAFETY: kill(2) on the process group this runner created for the call.
                unsafe { libc::kill(-pid, libc::SIGTERM) };
                let deadline = Instant::now() + self.runner.graceful_kill;
                while Instant::now() < deadline {
                    if let Some(status) = child.try_wait()? {
                        return Ok(status);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // SAFETY: as above.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let deadline = Instant::now() + self.runner.force_kill;
                while Instant::now() < deadline {
                    if let Some(status) = child.try_wait()? {
                        return Ok(status);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Err(io::Error::other(format!(
                    "failed to kill process PID={pid}, likely process is dormant"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn get_sources_body(&self, a: &Attempt) -> String {
        let dir = shell_quote(&a.project_dir);
        match &self.job.git {
            None => format!("mkdir -p {dir}"),
            Some(g) => format!(
                "echo 'Fetching changes...'\nrm -rf {dir}\nmkdir -p {dir}.tmp\ngit clone -q {} {dir}\ncd {dir}\ngit -c advice.detachedHead=false checkout -q {}\necho \"Checked out $(git rev-parse --short HEAD) as {}\"",
                shell_quote(&g.repo.to_string_lossy()),
                shell_quote(&g.checkout),
                g.ref_name
            ),
        }
    }

    /// A stage script in the shape of gitlab-runner's `BashWriter.Finish`.
    fn script(&self, a: &Attempt, status: &str, commands: &str, prelude: Prelude) -> String {
        let mut body = String::new();
        if prelude != Prelude::Nothing {
            for v in self
                .job
                .all_variables(self.runner, &a.builds_dir, &a.project_dir, status)
            {
                if v.file {
                    body.push_str(&format!(
                        "mkdir -p {tmp}\nprintf '%s' {val} > {tmp}/{k}\nexport {k}={tmp}/{k}\n",
                        tmp = shell_quote(&format!("{}.tmp", a.project_dir)),
                        val = shell_quote(&v.value),
                        k = v.key
                    ));
                } else {
                    body.push_str(&format!("export {}={}\n", v.key, shell_quote(&v.value)));
                }
            }
            if prelude == Prelude::ExportAndCd {
                body.push_str(&format!("cd {}\n", shell_quote(&a.project_dir)));
            }
        }
        body.push_str(commands);
        body.push('\n');
        format!(
            "#!/usr/bin/env bash\n\ntrap 'exit 1' TERM\n\ncase \"$(set -o)\" in *\"pipefail\"*) set -o pipefail;; esac; set -o errexit\nset +o noclobber\n(trap 'exit 1' TERM; eval {}) < /dev/null\nexit 0\n",
            shell_quote(&body)
        )
    }

    fn finish(&mut self, status: Status, project_dir: PathBuf, config: Value) -> JobResult {
        let last = match &status {
            Status::Success => "\x1b[32;1mJob succeeded\x1b[0;m\n".to_string(),
            Status::Failed(code) => {
                format!("\x1b[31;1mERROR: Job failed: exit status {code}\x1b[0;m\n")
            }
            Status::SystemFailure(m) => {
                format!("\x1b[31;1mERROR: Job failed (system failure): {m}\x1b[0;m\n")
            }
            Status::Canceled => "\x1b[31;1mERROR: Job failed: canceled\x1b[0;m\n".to_string(),
        };
        self.log.push(&last);
        JobResult {
            status,
            log: self.log.take(),
            runner_log: std::mem::take(&mut self.runner_log),
            calls: std::mem::take(&mut self.calls),
            project_dir,
            config,
        }
    }
}

fn new_attempt(root: Option<&Path>, prev: &(String, String)) -> io::Result<Attempt> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("custom-executor");
    let tmp = match root {
        Some(root) => builder.tempdir_in(root)?,
        None => builder.tempdir()?,
    };
    Ok(Attempt {
        tmp,
        builds_dir: prev.0.clone(),
        project_dir: prev.1.clone(),
        config: Value::Null,
        script_counter: 0,
    })
}

/// `echo` of each command in bold green, then the command, as the runner writes them.
fn user_commands(lines: &[String]) -> String {
    lines
        .iter()
        .map(|c| {
            format!(
                "echo {}\n{c}\n",
                shell_quote(&format!("\x1b[32;1m$ {c}\x1b[0;m"))
            )
        })
        .collect()
}

/// `helpers.ShellEscape`: ANSI-C quoting with `\xNN` for control and non-ASCII bytes.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::from("$'");
    for b in s.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

/// One finished process.
struct Invocation {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    elapsed: Duration,
}

/// Reads a child's pipe to its end, into the job log or only into the returned buffer.
fn pump(
    from: Option<impl Read + Send + 'static>,
    log: Log,
    to_log: bool,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut captured = Vec::new();
        let Some(mut from) = from else {
            return captured;
        };
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            if to_log {
                log.push(&String::from_utf8_lossy(&buf[..n]));
            }
            captured.extend_from_slice(&buf[..n]);
        }
        captured
    })
}

/// The runner's exit-code classification (reference §8).
fn classify(out: &Invocation, a: &Attempt) -> CallResult {
    match (out.code, out.signal) {
        (Some(0), _) => CallResult::Ok,
        (Some(1), _) => match std::fs::read_to_string(a.tmp.path().join("build_exit_code")) {
            Err(_) => CallResult::BuildFailure(1),
            Ok(text) => match text.lines().next().unwrap_or("").parse::<i32>() {
                Ok(code) => CallResult::BuildFailure(code),
                Err(_) => CallResult::SystemFailure(
                    "unknown Custom executor executable exit code 2; executable execution terminated with: exit status 1".into(),
                ),
            },
        },
        (Some(2), _) => CallResult::SystemFailure("exit status 2".into()),
        (Some(code), _) => CallResult::SystemFailure(format!("unknown Custom executor executable exit code {code}")),
        (None, sig) => CallResult::SystemFailure(format!("killed by signal {sig:?}")),
    }
}

/// Job ids unique across the processes running on this host.
pub fn unique_id() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    (std::process::id() as u64 % 100_000) * 1000 + n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_is_ansi_c() {
        assert_eq!(shell_quote("it's\n\x1b"), "$'it\\'s\\n\\x1b'");
        assert_eq!(slug("Feature/ABC_1"), "feature-abc-1");
    }
}
