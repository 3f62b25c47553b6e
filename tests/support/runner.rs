//! A stand-in for gitlab-runner 19.x driving the executor binary exactly as its custom
//! executor does (shared/reference/gitlab-custom-executor.md §1–§15): per-attempt temp dir,
//! `response.json` (0600), the environment in the runner's order, stage scripts (0700) in the
//! runner's bash shape, each call in its own process group, SIGTERM → grace → SIGKILL on
//! cancel, exit-code classes with `BUILD_EXIT_CODE_FILE`, prepare retried up to 3 times with
//! cleanup after each failed attempt, cleanup always.
//!
//! The job log is kept unmasked on purpose: tests check that the executor itself never
//! prints a secret, which the real runner's masking would hide.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How many times the runner tries config + prepare.
pub const PREPARATION_RETRIES: usize = 3;

/// A runner configured with this executor in `[runners.custom]`.
#[derive(Clone, Debug)]
pub struct Runner {
    /// The executor binary (`config_exec`, `prepare_exec`, `run_exec`, `cleanup_exec`).
    pub binary: PathBuf,
    /// Passed as `--config` in every `*_args`.
    pub settings: PathBuf,
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
    /// Branch or tag to check out.
    pub git_ref: String,
    /// Whether `git_ref` is a tag.
    pub is_tag: bool,
}

impl GitSource {
    /// `git_ref` (a tag if `is_tag`) of the repository at `repo`.
    pub fn new(repo: &Path, git_ref: &str, is_tag: bool) -> Self {
        GitSource {
            repo: repo.to_path_buf(),
            git_ref: git_ref.into(),
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
    /// `image:`.
    pub image: Option<String>,
    /// `image: entrypoint:`.
    pub image_entrypoint: Option<Vec<String>>,
    /// `image: pull_policy:`.
    pub pull_policy: Vec<String>,
    /// `services:`.
    pub services: Vec<Service>,
    /// Job variables.
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
    pub ended: std::time::SystemTime,
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
    /// A job with sensible defaults and a unique id.
    pub fn new(image: &str, script: &[&str]) -> Self {
        let id = unique_id();
        Job {
            id,
            project_id: 1000 + id % 1000,
            project_path: format!("group/project-{id}"),
            concurrent_id: 0,
            name: "test".into(),
            stage: "test".into(),
            image: Some(image.to_string()),
            image_entrypoint: None,
            pull_policy: vec!["never".into()],
            services: Vec::new(),
            variables: Vec::new(),
            script: script.iter().map(|s| s.to_string()).collect(),
            after_script: Vec::new(),
            git: None,
            timeout: 3600,
        }
    }

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
            .map(|g| (g.git_ref.clone(), g.is_tag))
            .unwrap_or_else(|| ("main".into(), false))
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
        let mut vars = vec![
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
            plain("CI_SERVER_URL", "https://gitlab.example.com".into()),
            plain("CI_JOB_ID", self.id.to_string()),
            plain("CI_JOB_NAME", self.name.clone()),
            plain("CI_JOB_STAGE", self.stage.clone()),
            plain(
                "CI_JOB_URL",
                format!(
                    "https://gitlab.example.com/{}/-/jobs/{}",
                    self.project_path, self.id
                ),
            ),
            plain("CI_PIPELINE_ID", (self.id / 10).to_string()),
            plain("CI_PROJECT_ID", self.project_id.to_string()),
            plain("CI_PROJECT_PATH", self.project_path.clone()),
            plain("CI_PROJECT_PATH_SLUG", self.project_path.replace('/', "-")),
            plain(
                "CI_PROJECT_URL",
                format!("https://gitlab.example.com/{}", self.project_path),
            ),
            plain("CI_RUNNER_ID", runner.runner_id.to_string()),
            plain(
                "CI_COMMIT_SHA",
                "0123456789abcdef0123456789abcdef01234567".into(),
            ),
            plain("CI_COMMIT_REF_NAME", git_ref.clone()),
            plain("CI_REGISTRY", "registry.gitlab.example.com".into()),
            plain("CI_REGISTRY_USER", "gitlab-ci-token".into()),
            Var {
                key: "CI_JOB_TOKEN".into(),
                value: format!("glcbt-64_{}secrettoken", self.id),
                masked: true,
                file: false,
            },
            Var {
                key: "CI_REGISTRY_PASSWORD".into(),
                value: format!("glcbt-64_{}secrettoken", self.id),
                masked: true,
                file: false,
            },
        ];
        vars.push(plain(
            if is_tag {
                "CI_COMMIT_TAG"
            } else {
                "CI_COMMIT_BRANCH"
            },
            git_ref,
        ));
        if let Some(image) = &self.image {
            vars.insert(0, plain("CI_JOB_IMAGE", image.clone()));
        }
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
            "token": format!("glcbt-64_{}secrettoken", self.id),
            "allow_git_fetch": true,
            "job_info": {"name": self.name, "stage": self.stage, "project_id": self.project_id,
                         "project_name": self.project_path.rsplit('/').next().unwrap_or(""),
                         "project_full_path": self.project_path, "pipeline_id": self.id / 10},
            "git_info": {"repo_url": "https://gitlab-ci-token:secret@gitlab.example.com/x.git",
                         "ref": git_ref, "sha": "0123456789abcdef0123456789abcdef01234567",
                         "ref_type": if is_tag { "tag" } else { "branch" }, "depth": 20},
            "runner_info": {"timeout": self.timeout},
            "variables": vars,
            "steps": steps,
            "image": {"name": self.image.clone().unwrap_or_default(), "entrypoint": self.image_entrypoint,
                      "pull_policy": self.pull_policy},
            "services": self.services.iter().map(|s| json!({"name": s.name, "alias": s.alias,
                      "entrypoint": s.entrypoint, "command": s.command, "pull_policy": ["never"],
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
        serde_json::to_string(&list).unwrap_or_default()
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

impl Runner {
    /// A runner using `binary` with settings `settings`.
    pub fn new(binary: &Path, settings: &Path) -> Self {
        Runner {
            binary: binary.to_path_buf(),
            settings: settings.to_path_buf(),
            runner_id: 42,
            short_token: "t3stRunr".into(),
            graceful_kill: Duration::from_secs(10),
            force_kill: Duration::from_secs(10),
            prepare_retry_pause: Duration::from_secs(3),
            process_env: Vec::new(),
        }
    }

    /// Runs a job to the end.
    pub fn run(&self, job: &Job) -> JobResult {
        self.run_with(job, Cancel::No)
    }

    /// Runs a job, cancelling it as told.
    pub fn run_with(&self, job: &Job, cancel: Cancel) -> JobResult {
        let log = Arc::new(Mutex::new(String::new()));
        let mut runner_log = String::new();
        let mut calls = Vec::new();
        let mut prev_dirs = (String::new(), String::new());
        let mut attempt = None;
        let mut prep_error = None;

        for n in 0..PREPARATION_RETRIES {
            let mut a = self.new_attempt(job, &prev_dirs);
            let result = self.prepare_attempt(job, &mut a, &log, &mut calls);
            prev_dirs = (a.builds_dir.clone(), a.project_dir.clone());
            match result {
                CallResult::Ok => {
                    attempt = Some(a);
                    break;
                }
                failure => {
                    self.cleanup(job, &a, &log, &mut runner_log, &mut calls);
                    let build_failure = matches!(failure, CallResult::BuildFailure(_));
                    prep_error = Some(failure.clone());
                    if build_failure || n + 1 == PREPARATION_RETRIES {
                        break;
                    }
                    push(
                        &log,
                        &format!(
                            "ERROR: Preparation failed: {failure:?}\nWill be retried in 3s ...\n"
                        ),
                    );
                    std::thread::sleep(self.prepare_retry_pause);
                }
            }
        }

        let Some(mut a) = attempt else {
            let status = match prep_error {
                Some(CallResult::BuildFailure(code)) => Status::Failed(code),
                Some(CallResult::SystemFailure(m)) => Status::SystemFailure(m),
                _ => Status::SystemFailure("preparation failed".into()),
            };
            return finish(
                status,
                log,
                runner_log,
                calls,
                PathBuf::from(prev_dirs.1),
                Value::Null,
            );
        };

        let mut job_error: Option<CallResult> = None;
        let mut canceled = false;
        let stages: Vec<(&str, String)> = vec![
            (
                "prepare_script",
                "echo \"Running on $(hostname) via runner-host...\"".to_string(),
            ),
            ("get_sources", self.get_sources_body(job, &a)),
        ];
        for (stage, body) in stages {
            let prelude = if stage == "prepare_script" {
                Prelude::Nothing
            } else {
                Prelude::Export
            };
            let script = self.script(job, &a, "running", &body, prelude);
            match self.run_stage(
                job, &mut a, stage, "running", &script, &log, &mut calls, None,
            ) {
                CallResult::Ok => {}
                failure => {
                    job_error = Some(failure);
                    break;
                }
            }
        }
        if job_error.is_none() {
            let body = user_commands(&job.script);
            let script = self.script(job, &a, "running", &body, Prelude::ExportAndCd);
            let cancel_at = match cancel {
                Cancel::DuringBuildScript(after) => Some(after),
                Cancel::No => None,
            };
            let started = Instant::now();
            let result = self.run_stage(
                job,
                &mut a,
                "build_script",
                "running",
                &script,
                &log,
                &mut calls,
                cancel_at,
            );
            if cancel_at.is_some_and(|after| started.elapsed() >= after) {
                canceled = true;
                push(&log, "WARNING: script canceled externally (UI, API)\n");
            }
            if result != CallResult::Ok {
                job_error = Some(result);
            }
            if !job.after_script.is_empty() {
                let status = if canceled {
                    "canceled"
                } else if job_error.is_some() {
                    "failed"
                } else {
                    "success"
                };
                let script = self.script(
                    job,
                    &a,
                    status,
                    &user_commands(&job.after_script),
                    Prelude::ExportAndCd,
                );
                push(&log, "\x1b[36;1mRunning after_script\x1b[0;m\n");
                // after_script failures are ignored by default.
                self.run_stage(
                    job,
                    &mut a,
                    "after_script",
                    status,
                    &script,
                    &log,
                    &mut calls,
                    None,
                );
            }
        }
        let cleanup_vars = format!("rm -rf {}", shell_quote(&format!("{}.tmp", a.project_dir)));
        let script = self.script(job, &a, "running", &cleanup_vars, Prelude::Export);
        self.run_stage(
            job,
            &mut a,
            "cleanup_file_variables",
            "running",
            &script,
            &log,
            &mut calls,
            None,
        );

        self.cleanup(job, &a, &log, &mut runner_log, &mut calls);
        let status = match (canceled, job_error) {
            (true, _) => Status::Canceled,
            (false, None) => Status::Success,
            (false, Some(CallResult::BuildFailure(code))) => Status::Failed(code),
            (false, Some(CallResult::SystemFailure(m))) => Status::SystemFailure(m),
            (false, Some(CallResult::Ok)) => Status::Success,
        };
        let project_dir = PathBuf::from(&a.project_dir);
        finish(
            status,
            log,
            runner_log,
            calls,
            project_dir,
            a.config.clone(),
        )
    }

    fn new_attempt(&self, _job: &Job, prev: &(String, String)) -> Attempt {
        let tmp = tempfile::Builder::new()
            .prefix("custom-executor")
            .tempdir()
            .expect("runner temp dir");
        Attempt {
            tmp,
            builds_dir: prev.0.clone(),
            project_dir: prev.1.clone(),
            config: Value::Null,
            script_counter: 0,
        }
    }

    /// config_exec, StartBuild checks and prepare_exec of one attempt.
    fn prepare_attempt(
        &self,
        job: &Job,
        a: &mut Attempt,
        log: &Arc<Mutex<String>>,
        calls: &mut Vec<Call>,
    ) -> CallResult {
        let response = a.tmp.path().join("response.json");
        std::fs::write(
            &response,
            serde_json::to_string(&job.payload(self)).expect("payload") + "\n",
        )
        .expect("response.json");
        std::fs::set_permissions(&response, std::fs::Permissions::from_mode(0o600)).expect("chmod");

        // config_exec: stdout is parsed, stderr goes to the job log.
        let env = self.env(job, a, "running");
        let out = self.invoke(&["config"], &env, a, None);
        push(log, &String::from_utf8_lossy(&out.stderr));
        let result = classify(&out, a);
        calls.push(Call {
            what: "config".into(),
            result: result.clone(),
            elapsed: out.elapsed,
            ended: std::time::SystemTime::now(),
        });
        if result != CallResult::Ok {
            return result;
        }
        if !out.stdout.is_empty() {
            match serde_json::from_slice::<Value>(&out.stdout) {
                Ok(v) => a.config = v,
                Err(e) => {
                    return CallResult::SystemFailure(format!(
                        "error while parsing JSON output: {e}"
                    ))
                }
            }
        }
        let builds_dir = a
            .config
            .get("builds_dir")
            .and_then(Value::as_str)
            .unwrap_or("");
        let cache_dir = a
            .config
            .get("cache_dir")
            .and_then(Value::as_str)
            .unwrap_or("");
        if builds_dir.is_empty() {
            return CallResult::SystemFailure("the builds_dir is not configured".into());
        }
        if cache_dir.is_empty() {
            return CallResult::SystemFailure("the cache_dir is not configured".into());
        }
        let shared = a
            .config
            .get("builds_dir_is_shared")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        a.builds_dir = builds_dir.to_string();
        a.project_dir = if shared {
            format!(
                "{builds_dir}/{}/{}/{}",
                self.short_token, job.concurrent_id, job.project_path
            )
        } else {
            format!("{builds_dir}/{}", job.project_path)
        };
        let driver = a.config.pointer("/driver/name").and_then(Value::as_str);
        push(
            log,
            &format!(
                "Using Custom executor with driver {}...\n",
                driver.unwrap_or("?")
            ),
        );

        let env = self.env(job, a, "running");
        let out = self.invoke(&["prepare"], &env, a, None);
        push(log, &String::from_utf8_lossy(&out.stdout));
        push(log, &String::from_utf8_lossy(&out.stderr));
        let result = classify(&out, a);
        calls.push(Call {
            what: "prepare".into(),
            result: result.clone(),
            elapsed: out.elapsed,
            ended: std::time::SystemTime::now(),
        });
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn run_stage(
        &self,
        job: &Job,
        a: &mut Attempt,
        stage: &str,
        status: &str,
        script: &str,
        log: &Arc<Mutex<String>>,
        calls: &mut Vec<Call>,
        cancel_after: Option<Duration>,
    ) -> CallResult {
        a.script_counter += 1;
        let dir = a.tmp.path().join(format!("script{}", a.script_counter));
        std::fs::create_dir_all(&dir).expect("script dir");
        let path = dir.join("script");
        std::fs::write(&path, script).expect("script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let env = self.env(job, a, status);
        let path_arg = path.to_string_lossy().into_owned();
        let out = self.invoke_streaming(&["run", &path_arg, stage], &env, a, log, cancel_after);
        let result = classify(&out, a);
        calls.push(Call {
            what: stage.into(),
            result: result.clone(),
            elapsed: out.elapsed,
            ended: std::time::SystemTime::now(),
        });
        result
    }

    fn cleanup(
        &self,
        job: &Job,
        a: &Attempt,
        log: &Arc<Mutex<String>>,
        runner_log: &mut String,
        calls: &mut Vec<Call>,
    ) {
        let env = self.env(job, a, "running");
        let out = self.invoke(&["cleanup"], &env, a, None);
        runner_log.push_str(&String::from_utf8_lossy(&out.stdout));
        runner_log.push_str(&String::from_utf8_lossy(&out.stderr));
        let result = classify(&out, a);
        if result != CallResult::Ok {
            push(
                log,
                &format!("WARNING: Cleanup script failed: {result:?}\n"),
            );
        }
        calls.push(Call {
            what: "cleanup".into(),
            result,
            elapsed: out.elapsed,
            ended: std::time::SystemTime::now(),
        });
    }

    /// The driver's environment, in the runner's order: own env, runner-provided, job_env,
    /// `CUSTOM_ENV_*`, `CUSTOM_ENV_CI_JOB_SERVICES` last.
    fn env(&self, job: &Job, a: &Attempt, status: &str) -> Vec<(String, String)> {
        let tmp = a.tmp.path().to_string_lossy().into_owned();
        let mut env: Vec<(String, String)> = self.process_env.clone();
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
        for v in job.all_variables(self, &a.builds_dir, &a.project_dir, status) {
            env.push((format!("CUSTOM_ENV_{}", v.key), v.value));
        }
        env.push(("CUSTOM_ENV_CI_JOB_SERVICES".into(), job.services_env()));
        env
    }

    fn invoke(
        &self,
        args: &[&str],
        env: &[(String, String)],
        a: &Attempt,
        cancel_after: Option<Duration>,
    ) -> Invocation {
        let sink = Arc::new(Mutex::new(String::new()));
        let mut out = self.invoke_streaming(args, env, a, &sink, cancel_after);
        // For config/prepare/cleanup the caller decides where stdout goes.
        out.stdout = std::mem::take(&mut out.captured_stdout);
        out
    }

    /// Starts the binary in its own process group, streams its output into `log`, and on
    /// cancel sends SIGTERM to the group, then SIGKILL after the graceful timeout.
    fn invoke_streaming(
        &self,
        args: &[&str],
        env: &[(String, String)],
        a: &Attempt,
        log: &Arc<Mutex<String>>,
        cancel_after: Option<Duration>,
    ) -> Invocation {
        let started = Instant::now();
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--config").arg(&self.settings).args(args);
        cmd.env_clear();
        for (k, v) in std::env::vars() {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.current_dir(a.tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("failed to start command");
        let pid = child.id() as i32;
        let captured = Arc::new(Mutex::new(Vec::new()));
        let stderr_buf = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (log1, cap1) = (log.clone(), captured.clone());
        let t1 = std::thread::spawn(move || pump(&mut stdout, &log1, &cap1));
        let (log2, cap2) = (log.clone(), stderr_buf.clone());
        let t2 = std::thread::spawn(move || pump(&mut stderr, &log2, &cap2));

        let mut cancelled = false;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if let Some(after) = cancel_after {
                if !cancelled && started.elapsed() >= after {
                    cancelled = true;
                    // SAFETY: signalling the process group we created.
                    unsafe { libc::kill(-pid, libc::SIGTERM) };
                    let deadline = Instant::now() + self.graceful_kill;
                    while Instant::now() < deadline && child.try_wait().expect("wait").is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    if child.try_wait().expect("wait").is_none() {
                        unsafe { libc::kill(-pid, libc::SIGKILL) };
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let _ = t1.join();
        let _ = t2.join();
        let captured_stdout = std::mem::take(&mut *captured.lock().expect("lock"));
        let stderr = std::mem::take(&mut *stderr_buf.lock().expect("lock"));
        Invocation {
            code: status.code(),
            signal: status.signal(),
            stdout: Vec::new(),
            captured_stdout,
            stderr,
            elapsed: started.elapsed(),
        }
    }

    fn get_sources_body(&self, job: &Job, a: &Attempt) -> String {
        let dir = shell_quote(&a.project_dir);
        match &job.git {
            None => format!("mkdir -p {dir}"),
            Some(g) => format!(
                "echo 'Fetching changes...'\nrm -rf {dir}\nmkdir -p {dir}.tmp\ngit clone -q {} {dir}\ncd {dir}\ngit -c advice.detachedHead=false checkout -q {}\necho \"Checked out $(git rev-parse --short HEAD) as {}\"",
                shell_quote(&g.repo.to_string_lossy()),
                shell_quote(&g.git_ref),
                g.git_ref
            ),
        }
    }

    /// A stage script in the shape of gitlab-runner's `BashWriter.Finish`.
    fn script(
        &self,
        job: &Job,
        a: &Attempt,
        status: &str,
        commands: &str,
        prelude: Prelude,
    ) -> String {
        let mut body = String::new();
        if prelude != Prelude::Nothing {
            for v in job.all_variables(self, &a.builds_dir, &a.project_dir, status) {
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
pub struct Invocation {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: Vec<u8>,
    captured_stdout: Vec<u8>,
    stderr: Vec<u8>,
    elapsed: Duration,
}

fn pump(from: &mut impl Read, log: &Arc<Mutex<String>>, capture: &Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        capture.lock().expect("lock").extend_from_slice(&buf[..n]);
        log.lock()
            .expect("lock")
            .push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// The runner's exit-code classification (reference §8).
fn classify(out: &Invocation, a: &Attempt) -> CallResult {
    match (out.code, out.signal) {
        (Some(0), _) => CallResult::Ok,
        (Some(1), _) => {
            let file = a.tmp.path().join("build_exit_code");
            match std::fs::read_to_string(&file) {
                Err(_) => CallResult::BuildFailure(1),
                Ok(text) => match text.lines().next().unwrap_or("").parse::<i32>() {
                    Ok(code) => CallResult::BuildFailure(code),
                    Err(_) => CallResult::SystemFailure(
                        "unknown Custom executor executable exit code 2; executable execution terminated with: exit status 1".into(),
                    ),
                },
            }
        }
        (Some(2), _) => CallResult::SystemFailure("exit status 2".into()),
        (Some(code), _) => CallResult::SystemFailure(format!(
            "unknown Custom executor executable exit code {code}"
        )),
        (None, sig) => CallResult::SystemFailure(format!("killed by signal {sig:?}")),
    }
}

fn push(log: &Arc<Mutex<String>>, text: &str) {
    log.lock().expect("lock").push_str(text);
}

fn finish(
    status: Status,
    log: Arc<Mutex<String>>,
    runner_log: String,
    calls: Vec<Call>,
    project_dir: PathBuf,
    config: Value,
) -> JobResult {
    let mut log = std::mem::take(&mut *log.lock().expect("lock"));
    match &status {
        Status::Success => log.push_str("Job succeeded\n"),
        Status::Failed(code) => log.push_str(&format!("ERROR: Job failed: exit status {code}\n")),
        Status::SystemFailure(m) => {
            log.push_str(&format!("ERROR: Job failed (system failure): {m}\n"))
        }
        Status::Canceled => log.push_str("ERROR: Job failed: canceled\n"),
    }
    JobResult {
        status,
        log,
        runner_log,
        calls,
        project_dir,
        config,
    }
}

/// Job ids unique across the test processes running on this host.
pub fn unique_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    (std::process::id() as u64 % 100_000) * 1000 + n
}
