//! Test support: the gitlab-runner stand-in, local base images and per-test settings.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod docker_ecs;
pub mod ecs_jobs;
pub mod host_network;
pub mod images;
pub mod json_api;
pub mod package;
pub mod process_ecs;
pub mod proxy;
pub mod release;
pub mod scripted_ecs;
pub mod stand_ins;
pub mod suites;
pub mod task_definitions;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use images::base_image;
/// The gitlab-runner stand-in (shared with `exec`).
pub mod runner {
    pub use gitlab_ecs_executor::exec::runner::*;
}
pub use runner::{
    ArtifactDef, CacheDef, CallResult, Cancel, GitSource, Job, JobResult, Runner, Service, Status,
};

/// Jobs with the test suite's defaults: a unique id and project, a fixed commit, and pull
/// policy `never` (no registry can be reached; images are made locally).
pub trait TestJob {
    /// A job running `script` in `image`.
    fn test(image: &str, script: &[&str]) -> Job;
}

impl TestJob for Job {
    fn test(image: &str, script: &[&str]) -> Job {
        let id = runner::unique_id();
        Job {
            id,
            project_id: 1000 + id % 1000,
            project_path: format!("group/project-{id}"),
            concurrent_id: 0,
            project_slot: 0,
            protected: false,
            name: "test".into(),
            stage: "test".into(),
            commit_sha: "0123456789abcdef0123456789abcdef01234567".into(),
            commit_timestamp: "2026-11-20T09:00:00+00:00".into(),
            commit_message: "Add the health check\n\nThe load balancer asks /health.".into(),
            author: ("Ada Lovelace".into(), "ada@example.com".into()),
            image: Some(image.to_string()),
            image_entrypoint: None,
            pull_policy: vec!["never".into()],
            image_user: None,
            services: Vec::new(),
            variables: Vec::new(),
            script: script.iter().map(|s| s.to_string()).collect(),
            steps: Vec::new(),
            after_script: Vec::new(),
            pre_get_sources: Vec::new(),
            post_get_sources: Vec::new(),
            cache: Vec::new(),
            artifacts: Vec::new(),
            dependencies: Vec::new(),
            git: None,
            timeout: 3600,
        }
    }
}

/// A git project with the tracked `files`, in a temp dir kept alive by the returned guard.
pub fn git_project(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = stand_ins::git_project(dir.path(), files, &[]);
    (dir, repo)
}

/// A job of `repo` on its `main` branch, in `image`.
pub fn git_job(repo: &Path, image: &str, script: &[&str]) -> Job {
    let mut job = Job::test(image, script);
    job.git = Some(GitSource::new(repo, "main", false));
    job
}

/// The runner stand-in's entry points for tests: a runner that cannot even start is a
/// broken test machine, not a test result.
pub trait RunJob {
    /// Runs a job to the end.
    fn run(&self, job: &Job) -> JobResult;
    /// Runs a job, cancelling it as told.
    fn run_with(&self, job: &Job, cancel: Cancel) -> JobResult;
}

impl RunJob for Runner {
    fn run(&self, job: &Job) -> JobResult {
        self.run_with(job, Cancel::No)
    }

    fn run_with(&self, job: &Job, cancel: Cancel) -> JobResult {
        self.drive(job, cancel)
            .expect("the runner stand-in could not run")
    }
}

/// Runs `jobs` at once, each on a clone of `runner`; each job's wall time and result, in
/// the jobs' order.
pub fn run_concurrently(runner: &Runner, jobs: &[Job]) -> Vec<(std::time::Duration, JobResult)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| {
                let runner = runner.clone();
                s.spawn(move || {
                    let started = std::time::Instant::now();
                    let result = runner.run(job);
                    (started.elapsed(), result)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("job thread"))
            .collect()
    })
}

/// The executor binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gitlab-ecs-executor"))
}

/// A runner of its own (a unique runner id and token, so its project volumes are its own
/// and go when the test ends) with a settings file.
pub struct TestEnv {
    /// Holds the settings file for the test's lifetime.
    pub dir: tempfile::TempDir,
    /// The settings file.
    pub settings: PathBuf,
    /// A runner configured with the executor.
    pub runner: Runner,
}

impl TestEnv {
    /// Default test settings: pull policy `never` (images are made locally).
    pub fn new() -> Self {
        Self::with_settings("")
    }

    /// Test settings from `extra` TOML, with `docker.pull_policy = "never"` and the local
    /// helper image unless `extra` sets them.
    pub fn with_settings(extra: &str) -> Self {
        Self::with_binds(extra, &[])
    }

    /// As [`TestEnv::with_settings`], with each of `repos` bound read-only at its own path
    /// (`docker.volumes`), as `exec` does, so jobs clone them with `file://` URLs.
    pub fn with_binds(extra: &str, repos: &[&Path]) -> Self {
        images::debian_images();
        let mut table: toml::Table = toml::from_str(extra).expect("test settings are TOML");
        let docker = table
            .entry("docker")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("[docker] is a table");
        docker
            .entry("pull_policy")
            .or_insert_with(|| "never".into());
        // GitLab's helper cannot be had here: the tests name the one built on this host, as
        // an operator of an offline runner would.
        docker
            .entry("helper_image")
            .or_insert_with(|| images::HELPER.into());
        let volumes = docker
            .entry("volumes")
            .or_insert_with(|| toml::Value::Array(Vec::new()))
            .as_array_mut()
            .expect("docker.volumes is a list");
        volumes.extend(
            repos
                .iter()
                .map(|r| toml::Value::String(format!("{0}:{0}:ro", r.display()))),
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = dir.path().join("config.toml");
        std::fs::write(&settings, table.to_string()).expect("settings");
        let mut runner = Runner::new(&binary(), Some(&settings));
        runner.runner_id = runner::unique_id();
        runner.short_token = format!("t{}", runner.runner_id);
        TestEnv {
            dir,
            settings,
            runner,
        }
    }

    /// The text of `path` (relative to the job's project directory) in `job`'s builds
    /// volume, `None` if it does not exist.
    pub fn project_file(&self, job: &Job, path: &str) -> Option<String> {
        let volume =
            gitlab_ecs_executor::docker::ProjectVolumes::new(&job.identity(&self.runner)).builds();
        let out = Command::new("docker")
            .args(["run", "--rm", "--network", "none", "-v"])
            .arg(format!("{volume}:/builds:ro"))
            .args([images::HELPER, "cat"])
            .arg(format!("/builds/{}/{path}", job.project_path))
            .output()
            .expect("docker cli");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// This runner's volumes.
    pub fn volumes(&self) -> Vec<String> {
        let label = format!(
            "label=com.gitlab-ecs-executor.runner={}",
            self.runner.runner_id
        );
        docker_lines(&["volume", "ls", "-q", "--filter", &label])
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let volumes = self.volumes();
        if !volumes.is_empty() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes)
                .output();
        }
    }
}

/// Names of the containers and networks carrying the job's id label.
pub fn docker_objects_of(job: &Job) -> Vec<String> {
    let filter = format!("label=com.gitlab-ecs-executor.job-id={}", job.id);
    let mut found = Vec::new();
    for (kind, format) in [
        (&["ps", "-a"][..], "{{.Names}}"),
        (&["network", "ls"][..], "{{.Name}}"),
    ] {
        let mut args = kind.to_vec();
        args.extend(["--filter", &filter, "--format", format]);
        found.extend(docker_lines(&args));
    }
    found
}

/// Reads a file the job wrote.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Names of all Docker volumes on the host.
pub fn volumes() -> Vec<String> {
    docker_lines(&["volume", "ls", "-q"])
}

/// The lines the docker CLI prints for `args`.
fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs `cmd` to its end; returns its output and stdout + stderr as text.
pub fn output_of(cmd: &mut Command) -> (std::process::Output, String) {
    let out = cmd.output().expect("run the executor");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// Fails unless the job ended as a system failure (which the runner retries).
#[track_caller]
pub fn assert_system_failure(result: &JobResult) {
    assert!(
        matches!(result.status, Status::SystemFailure(_)),
        "{:?}\n{}",
        result.status,
        result.log
    );
}

/// Fails if any container or network of `job` is left.
#[track_caller]
pub fn assert_nothing_left(job: &Job) {
    let left = docker_objects_of(job);
    assert!(left.is_empty(), "job {} left {left:?}", job.id);
}

/// Fails, showing the whole log, unless `log` contains `needle`.
#[track_caller]
pub fn assert_logged(log: &str, needle: &str) {
    assert!(log.contains(needle), "expected `{needle}` in:\n{log}");
}
