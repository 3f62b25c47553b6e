//! A local stand-in for gitlab-runner 19.x: drives the executor binary exactly as the
//! runner's custom executor does (shared/reference/gitlab-custom-executor.md §1–§15).
//!
//! Per attempt a temp dir with `response.json` (0600); the environment in the runner's
//! order; every stage the runner sends, in its order, with scripts (0700) in the runner's
//! bash shape ([`script`]); each call in its own process group; SIGTERM → grace → SIGKILL
//! on cancel; exit codes classified with `BUILD_EXIT_CODE_FILE`; prepare retried up to 3
//! times with cleanup after each failed attempt; cleanup always. `exec` uses it to run
//! `.gitlab-ci.yml` jobs on this machine and the test suite uses it as the runner.
//!
//! The job log is not masked here (the real runner masks it): the executor itself must
//! never print a secret, and tests check exactly that.

mod job;
pub(crate) mod script;

pub use job::{
    ArtifactDef, CacheDef, Dependency, Dirs, GitSource, Job, Service, Var, RUNNER_VERSION,
};

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::protocol::env as names;
use crate::protocol::Stage;

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
    /// `[[runners]] environment`: variables the runner adds to every job (after its short
    /// token, before the job's own).
    pub environment: Vec<(String, String)>,
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
    /// `[runners.custom_build_dir] enabled`: whether jobs may set `GIT_CLONE_PATH` (off by
    /// default for the custom executor).
    pub custom_build_dir: bool,
}

/// When to cancel the job.
#[derive(Clone, Debug)]
pub enum Cancel {
    /// Never.
    No,
    /// Gracefully (GitLab's cancel button) this long into `build_script`.
    DuringBuildScript(Duration),
    /// Gracefully once the job log shows this text during `build_script` (a phase of a
    /// native release, whenever it comes).
    WhenLogged(&'static str),
    /// Gracefully once the job log shows this text during `prepare`: the runner's killer
    /// ends it, then cleanup runs.
    PrepareWhenLogged(&'static str),
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
    /// Its user steps ran past the job's timeout and were stopped.
    TimedOut(Duration),
}

impl Status {
    /// The exit code `exec` leaves with: the job's own code, 2 for a system failure, 130
    /// when cancelled, 124 (as `timeout(1)`) when it ran out of time.
    pub fn exit_code(&self) -> i32 {
        match self {
            Status::Success => 0,
            Status::Failed(code) => *code,
            Status::SystemFailure(_) => 2,
            Status::Canceled => 130,
            Status::TimedOut(_) => 124,
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

    fn contains(&self, text: &str) -> bool {
        self.text
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(text)
    }

    fn take(&self) -> String {
        std::mem::take(&mut *self.text.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// How the job's user steps ended, besides their own result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// They ran to their end (successfully or not).
    Ran,
    /// Cancelled by the user.
    Canceled,
    /// Stopped at the job's timeout.
    TimedOut,
}

/// State shared by the calls of one preparation attempt.
struct Attempt {
    tmp: tempfile::TempDir,
    dirs: Dirs,
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
    /// When the job's timeout ends (it counts from the job's start, as in the runner).
    deadline: Instant,
    /// The text whose appearance in the log cancels the running call.
    cancel_on: Option<&'static str>,
    /// Whether that cancel fired.
    cancelled_on_text: std::cell::Cell<bool>,
}

impl Runner {
    /// A runner using `binary`, with `--config settings` if given.
    pub fn new(binary: &Path, settings: Option<&Path>) -> Self {
        Runner {
            binary: binary.to_path_buf(),
            settings: settings.map(Path::to_path_buf),
            runner_id: 42,
            short_token: "t3stRunr".into(),
            environment: Vec::new(),
            graceful_kill: Duration::from_secs(10),
            force_kill: Duration::from_secs(10),
            prepare_retry_pause: Duration::from_secs(3),
            process_env: Vec::new(),
            run_args: Vec::new(),
            echo: false,
            temp_root: None,
            cancel_flag: None,
            custom_build_dir: false,
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
            deadline: Instant::now() + Duration::from_secs(job.timeout),
            cancel_on: None,
            cancelled_on_text: std::cell::Cell::new(false),
        };
        d.run(cancel)
    }

    fn cancelled_externally(&self) -> bool {
        self.cancel_flag.is_some_and(|f| f.load(Ordering::SeqCst))
    }
}

impl Drive<'_> {
    fn run(&mut self, cancel: Cancel) -> io::Result<JobResult> {
        let mut prev_dirs = Dirs::default();
        let mut attempt = None;
        let mut prep_error = None;
        let prepare_cancel = match cancel {
            Cancel::PrepareWhenLogged(text) => Some(text),
            Cancel::No | Cancel::DuringBuildScript(_) | Cancel::WhenLogged(_) => None,
        };
        for n in 0..PREPARATION_RETRIES {
            let mut a = new_attempt(self.runner.temp_root.as_deref(), &prev_dirs)?;
            self.cancel_on = prepare_cancel;
            let result = self.prepare_attempt(&mut a)?;
            self.cancel_on = None;
            prev_dirs = a.dirs.clone();
            if result == CallResult::Ok {
                attempt = Some(a);
                break;
            }
            self.cleanup(&a)?;
            if self.cancelled_on_text.get() {
                let project = PathBuf::from(&a.dirs.project);
                return Ok(self.finish(Status::Canceled, project, Value::Null));
            }
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
            return Ok(self.finish(status, PathBuf::from(prev_dirs.project), Value::Null));
        };
        let (job_error, ending) = self.stages(&mut a, cancel)?;
        self.cleanup(&a)?;
        let status = match (ending, job_error) {
            (Ending::Canceled, _) => Status::Canceled,
            (Ending::TimedOut, _) => Status::TimedOut(Duration::from_secs(self.job.timeout)),
            (Ending::Ran, None | Some(CallResult::Ok)) => Status::Success,
            (Ending::Ran, Some(CallResult::BuildFailure(code))) => Status::Failed(code),
            (Ending::Ran, Some(CallResult::SystemFailure(m))) => Status::SystemFailure(m),
        };
        let config = a.config.clone();
        Ok(self.finish(status, PathBuf::from(&a.dirs.project), config))
    }

    /// Every run stage in the runner's order (reference §4.1): the job's error, if any, and
    /// how its user steps ended.
    fn stages(
        &mut self,
        a: &mut Attempt,
        cancel: Cancel,
    ) -> io::Result<(Option<CallResult>, Ending)> {
        let job = self.job;
        let running = job.all_variables(self.runner, &a.dirs, "running");
        let hostname = a
            .config
            .get("hostname")
            .and_then(Value::as_str)
            .unwrap_or("gitlab-ecs-executor")
            .to_string();
        let prepare = script::prepare(&a.dirs, &hostname);
        let result = self.run_stage(a, &Stage::PrepareScript, "running", &prepare, None)?;
        if result != CallResult::Ok {
            // A failure here ends the job: no later run stage, only cleanup.
            return Ok((Some(result), Ending::Ran));
        }
        let mut job_error = self.get_sources(a, &running)?;
        for (stage, body, attempts_var) in [
            (
                Stage::RestoreCache,
                script::restore_cache(job, &running, &a.dirs),
                "RESTORE_CACHE_ATTEMPTS",
            ),
            (
                Stage::DownloadArtifacts,
                script::download_artifacts(job, &running, &a.dirs),
                "ARTIFACT_DOWNLOAD_ATTEMPTS",
            ),
        ] {
            if let (None, Some(body)) = (&job_error, body) {
                let attempts = self.attempts(attempts_var);
                let mut result = CallResult::Ok;
                for n in 0..attempts {
                    if n > 0 {
                        self.log.push("WARNING: Retrying...\n");
                    }
                    result = self.run_stage(a, &stage, "running", &body, None)?;
                    if result == CallResult::Ok {
                        break;
                    }
                }
                if result != CallResult::Ok {
                    job_error = Some(result);
                }
            }
        }
        let mut ending = Ending::Ran;
        let prepared = job_error.is_none();
        if prepared {
            let cancel_after = match cancel {
                Cancel::DuringBuildScript(after) => Some(after),
                Cancel::No | Cancel::WhenLogged(_) | Cancel::PrepareWhenLogged(_) => None,
            };
            if let Cancel::WhenLogged(text) = cancel {
                self.cancel_on = Some(text);
            }
            let started = Instant::now();
            let mut steps = vec![(Stage::BuildScript, job.script.clone())];
            steps.extend(
                job.steps
                    .iter()
                    .map(|(n, s)| (Stage::Step(n.clone()), s.clone())),
            );
            for (stage, lines) in steps {
                let body = script::user_step(&lines, &running, &a.dirs);
                let left = self.deadline.saturating_duration_since(Instant::now());
                let cut = cancel_after
                    .map(|after| after.saturating_sub(started.elapsed()))
                    .map_or(left, |cut| cut.min(left));
                let result = self.run_stage(a, &stage, "running", &body, Some(cut))?;
                if cancel_after.is_some_and(|after| started.elapsed() >= after)
                    || self.cancelled_on_text.get()
                    || self.runner.cancelled_externally()
                {
                    ending = Ending::Canceled;
                    self.log
                        .push("WARNING: script canceled externally (UI, API)\n");
                } else if Instant::now() >= self.deadline {
                    ending = Ending::TimedOut;
                }
                if result != CallResult::Ok {
                    job_error = Some(result);
                }
                if job_error.is_some() || ending != Ending::Ran {
                    break;
                }
            }
            self.cancel_on = None;
        }
        let status = match (ending, &job_error) {
            (Ending::Canceled, _) => "canceled",
            (Ending::TimedOut, _) | (Ending::Ran, Some(_)) => "failed",
            (Ending::Ran, None) => "success",
        };
        let finished = job.all_variables(self.runner, &a.dirs, status);
        if prepared && !job.after_script.is_empty() {
            let body = script::after_script(&job.after_script, &finished, &a.dirs);
            self.log.push("\x1b[36;1mRunning after_script\x1b[0;m\n");
            // after_script failures are ignored by default.
            self.run_stage(a, &Stage::AfterScript, status, &body, None)?;
        }
        let on_success = job_error.is_none() && ending == Ending::Ran;
        let (cache_stage, artifacts_stage) = if on_success {
            (Stage::ArchiveCache, Stage::UploadArtifactsOnSuccess)
        } else {
            (
                Stage::ArchiveCacheOnFailure,
                Stage::UploadArtifactsOnFailure,
            )
        };
        if let Some(body) = script::archive_cache(job, &finished, &a.dirs, on_success) {
            // A cache that cannot be saved never fails the job.
            self.run_stage(a, &cache_stage, status, &body, None)?;
        }
        if let Some(body) = script::upload_artifacts(job, &finished, &a.dirs, on_success) {
            let result = self.run_stage(a, &artifacts_stage, status, &body, None)?;
            if result != CallResult::Ok && job_error.is_none() {
                job_error = Some(result);
            }
        }
        let cleanup_vars = script::cleanup_file_variables(&finished, &a.dirs);
        self.run_stage(a, &Stage::CleanupFileVariables, status, &cleanup_vars, None)?;
        Ok((job_error, ending))
    }

    /// `get_sources`, repeated `GET_SOURCES_ATTEMPTS` times, `clear_worktree` before the
    /// second attempt.
    fn get_sources(&mut self, a: &mut Attempt, vars: &[Var]) -> io::Result<Option<CallResult>> {
        let body = script::get_sources(self.job, vars, &a.dirs);
        let mut result = CallResult::Ok;
        for n in 0..self.attempts("GET_SOURCES_ATTEMPTS") {
            if n == 1 {
                let clear = script::clear_worktree(&a.dirs);
                self.run_stage(a, &Stage::ClearWorktree, "running", &clear, None)?;
            }
            if n > 0 {
                self.log.push("WARNING: Retrying...\n");
            }
            result = self.run_stage(a, &Stage::GetSources, "running", &body, None)?;
            if result == CallResult::Ok {
                return Ok(None);
            }
        }
        Ok(Some(result))
    }

    /// A stage's attempts variable, clamped to 1–10 as the runner does.
    fn attempts(&self, variable: &str) -> usize {
        self.job
            .variable(variable)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, 10)
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
        let project = match self.clone_path(&builds_dir) {
            Some(Ok(path)) => path,
            Some(Err(message)) => {
                // `StartBuild`'s configuration error: the job's fault, not retried.
                self.log
                    .push(&format!("ERROR: Preparation failed: {message}\n"));
                return Ok(CallResult::BuildFailure(1));
            }
            None if shared => format!(
                "{builds_dir}/{}/{}/{}",
                self.runner.short_token, self.job.project_slot, self.job.project_path
            ),
            None => format!("{builds_dir}/{}", self.job.project_path),
        };
        a.dirs = Dirs {
            project_cache: format!("{cache_dir}/{}", self.job.project_path),
            builds: builds_dir,
            cache: cache_dir,
            project,
        };
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

    /// The job's `GIT_CLONE_PATH`, as `Build.getCustomBuildDir` takes it: expanded, allowed
    /// only with `custom_build_dir`, and within the builds directory.
    fn clone_path(&self, builds_dir: &str) -> Option<Result<String, String>> {
        let raw = self
            .job
            .variable("GIT_CLONE_PATH")
            .filter(|v| !v.is_empty())?;
        let mut vars = self.job.payload_variables(self.runner);
        vars.push(job::Var::new("CI_BUILDS_DIR", builds_dir));
        let dir = job::expand_with(raw, &vars);
        if !self.runner.custom_build_dir {
            return Some(Err(
                "setting GIT_CLONE_PATH is not allowed, enable `custom_build_dir` feature".into(),
            ));
        }
        let clean = Path::new(&dir)
            .components()
            .fold(PathBuf::new(), |mut p, c| {
                match c {
                    std::path::Component::ParentDir => {
                        p.pop();
                    }
                    std::path::Component::CurDir => {}
                    other => p.push(other),
                }
                p
            });
        if !clean.starts_with(builds_dir) {
            return Some(Err(format!(
                "the GIT_CLONE_PATH=\"{dir}\" has to be within \"{builds_dir}\""
            )));
        }
        Some(Ok(clean.display().to_string()))
    }

    /// Writes `body` as the stage script (`BashWriter.Finish`) and runs the stage.
    fn run_stage(
        &mut self,
        a: &mut Attempt,
        stage: &Stage,
        status: &str,
        body: &str,
        cancel_after: Option<Duration>,
    ) -> io::Result<CallResult> {
        a.script_counter += 1;
        let dir = a.tmp.path().join(format!("script{}", a.script_counter));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("script");
        std::fs::write(&path, script::finish(body))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        let path_arg = path.to_string_lossy().into_owned();
        let stage_arg = stage.to_string();
        let mut args: Vec<&str> = vec!["run"];
        args.extend(self.runner.run_args.iter().map(String::as_str));
        args.extend([path_arg.as_str(), stage_arg.as_str()]);
        let out = self.invoke(&args, a, status, cancel_after, true)?;
        let result = classify(&out, a);
        self.record(&stage_arg, &result, &out);
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
        env.push((names::TMPDIR.into(), tmp.clone()));
        env.push((names::BUILD_FAILURE_EXIT_CODE.into(), "1".into()));
        env.push((names::SYSTEM_FAILURE_EXIT_CODE.into(), "2".into()));
        env.push((
            names::BUILD_EXIT_CODE_FILE.into(),
            format!("{tmp}/build_exit_code"),
        ));
        env.push((
            names::JOB_RESPONSE_FILE.into(),
            format!("{tmp}/response.json"),
        ));
        if let Some(job_env) = a.config.get("job_env").and_then(Value::as_object) {
            for (k, v) in job_env {
                env.push((k.clone(), v.as_str().unwrap_or_default().to_string()));
            }
        }
        let vars = self.job.all_variables(self.runner, &a.dirs, status);
        let services = self.job.services_env(&vars);
        for v in vars {
            env.push((names::job_variable(&v.key), v.value));
        }
        env.push((names::job_variable(names::JOB_SERVICES), services));
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
            let on_text = self.cancel_on.is_some_and(|text| self.log.contains(text));
            self.cancelled_on_text
                .set(self.cancelled_on_text.get() || on_text);
            let cancel = cancel_after.is_some_and(|after| started.elapsed() >= after)
                || on_text
                || self.runner.cancelled_externally();
            if cancel {
                // The runner's `killer`: SIGTERM to the group, SIGKILL after the grace.
                for (signal, grace) in [
                    (libc::SIGTERM, self.runner.graceful_kill),
                    (libc::SIGKILL, self.runner.force_kill),
                ] {
                    // SAFETY: kill(2) on the process group this runner created for the call.
                    unsafe { libc::kill(-pid, signal) };
                    let deadline = Instant::now() + grace;
                    while Instant::now() < deadline {
                        if let Some(status) = child.try_wait()? {
                            return Ok(status);
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                return Err(io::Error::other(format!(
                    "failed to kill process PID={pid}, likely process is dormant"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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
            Status::TimedOut(limit) => format!(
                "\x1b[31;1mERROR: Job failed: execution took longer than {} seconds\x1b[0;m\n",
                go_duration(*limit)
            ),
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

fn new_attempt(root: Option<&Path>, prev: &Dirs) -> io::Result<Attempt> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("custom-executor");
    let tmp = match root {
        Some(root) => builder.tempdir_in(root)?,
        None => builder.tempdir()?,
    };
    // On a retry the runner still holds the directories of the previous attempt.
    Ok(Attempt {
        tmp,
        dirs: prev.clone(),
        config: Value::Null,
        script_counter: 0,
    })
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
        (None, sig) => CallResult::SystemFailure(match sig {
            Some(sig) => format!("killed by signal {sig}"),
            None => "ended without an exit code or a signal".into(),
        }),
    }
}

/// A duration as Go prints it (`1h0m0s`, `2m30s`, `45s`), as the runner's messages show it.
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
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
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(go_duration(Duration::from_secs(4)), "4s");
    }
}
