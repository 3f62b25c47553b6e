//! The runner contract, end to end through the gitlab-runner stand-in and direct calls:
//! config output, stage routing, exit-code classes, `BUILD_EXIT_CODE_FILE`, settings errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

/// Calls the binary the way the runner does, with a minimal job environment.
fn call(settings: &Path, tmp: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let response = tmp.join("response.json");
    if !response.exists() {
        std::fs::write(
            &response,
            r#"{"id": 7, "job_info": {"project_id": 8, "project_full_path": "group/app"},
                "variables": [{"key": "CI_RUNNER_ID", "value": "9"}]}"#,
        )
        .unwrap();
    }
    let mut cmd = Command::new(binary());
    cmd.arg("--config")
        .arg(settings)
        .args(args)
        .current_dir(tmp)
        .env("TMPDIR", tmp)
        .env("BUILD_FAILURE_EXIT_CODE", "1")
        .env("SYSTEM_FAILURE_EXIT_CODE", "2")
        .env("BUILD_EXIT_CODE_FILE", tmp.join("build_exit_code"))
        .env("JOB_RESPONSE_FILE", &response)
        .env("CUSTOM_ENV_CI_RUNNER_ID", "9")
        .env("CUSTOM_ENV_CI_PROJECT_ID", "8")
        .env("CUSTOM_ENV_CI_JOB_ID", "7")
        .env("CUSTOM_ENV_CI_CONCURRENT_ID", "0")
        .env("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "0")
        .env("CUSTOM_ENV_CI_PROJECT_DIR", tmp.join("project"))
        // No engine here: container stages must fail to find one, not run on the host.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn script(dir: &Path, body: &str) -> String {
    let path = dir.join("script");
    std::fs::write(&path, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn config_prints_exactly_one_json_object_with_the_runner_fields() {
    let env = TestEnv::new();
    let out = call(&env.settings, env.dir.path(), &["config"], &[]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // The runner unmarshals the entire stdout: one value, nothing before or after it.
    let value: serde_json::Value = serde_json::from_str(&text).expect("one JSON value");
    assert!(text.trim_start().starts_with('{') && text.trim_end().ends_with('}'));
    assert_eq!(
        text.matches('{').count(),
        2,
        "one object plus `driver`: {text}"
    );
    // Paths inside the job's containers: the project volume is the job's own.
    assert_eq!(value["builds_dir"], "/builds");
    assert_eq!(value["cache_dir"], "/cache");
    assert_eq!(value["builds_dir_is_shared"], false);
    assert_eq!(value["driver"]["name"], "gitlab-ecs-executor");
    assert_eq!(value["driver"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(value["shell"], "bash");
    assert!(value["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_is_accepted_by_the_runner_and_sets_the_project_dir() {
    let env = TestEnv::new();
    let job = Job::test(base_image(), &["pwd"]);
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    // Not shared: no token or concurrency level in the path, as with the docker executor.
    let expected = Path::new("/builds").join(&job.project_path);
    assert_eq!(result.project_dir, expected);
    assert_logged(&result.log, &format!("\n{}\n", expected.display()));
    assert!(result
        .log
        .contains("Using Custom executor with driver gitlab-ecs-executor"));
}

#[test]
fn no_stage_runs_on_the_host() {
    let env = TestEnv::new();
    let tmp = env.dir.path();
    for stage in [
        "prepare_script",
        "get_sources",
        "clear_worktree",
        "restore_cache",
        "download_artifacts",
        "build_script",
        "step_release",
        "after_script",
        "archive_cache",
        "archive_cache_on_failure",
        "upload_artifacts_on_success",
        "upload_artifacts_on_failure",
        "cleanup_file_variables",
    ] {
        let marker = tmp.join(format!("ran-{stage}"));
        let path = script(tmp, &format!("touch {}", marker.display()));
        let out = call(&env.settings, tmp, &["run", &path, stage], &[]);
        // With no engine the containers are unreachable: a system failure, and the script
        // must not have run on the host instead.
        assert_eq!(out.status.code(), Some(2), "{stage}: {out:?}");
        assert!(!marker.exists(), "{stage} ran on the host");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("cannot reach the Docker engine"), "{text}");
    }
}

#[test]
fn unknown_stage_is_a_system_failure_naming_it() {
    let env = TestEnv::new();
    let tmp = env.dir.path();
    let path = script(tmp, "true");
    let out = call(&env.settings, tmp, &["run", &path, "prepare_executor"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unknown stage `prepare_executor`"), "{text}");
}

/// A job prepared by direct calls on the real engine, cleaned up when dropped.
struct Prepared<'a> {
    env: &'a TestEnv,
    engine: [(&'static str, String); 7],
}

impl<'a> Prepared<'a> {
    fn new(env: &'a TestEnv) -> Self {
        let engine = [
            ("DOCKER_HOST", "unix:///var/run/docker.sock".to_string()),
            ("CUSTOM_ENV_CI_JOB_IMAGE", base_image().to_string()),
            (
                "CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN",
                env.runner.short_token.clone(),
            ),
            ("CUSTOM_ENV_CI_RUNNER_ID", env.runner.runner_id.to_string()),
            ("CUSTOM_ENV_CI_PROJECT_PATH", "group/direct".to_string()),
            ("CUSTOM_ENV_CI_BUILDS_DIR", "/builds".to_string()),
            (
                "CUSTOM_ENV_CI_PROJECT_DIR",
                "/builds/group/direct".to_string(),
            ),
        ];
        std::fs::write(
            env.dir.path().join("response.json"),
            serde_json::json!({"id": 7, "job_info": {"project_id": 8, "project_full_path": "group/direct"},
                "variables": [{"key": "CI_RUNNER_ID", "value": env.runner.runner_id.to_string()}]})
            .to_string(),
        )
        .unwrap();
        let prepared = Prepared { env, engine };
        let out = prepared.call(&["prepare"]);
        assert!(out.status.success(), "prepare: {out:?}");
        prepared
    }

    fn call(&self, args: &[&str]) -> Output {
        let extra: Vec<(&str, &str)> = self.engine.iter().map(|(k, v)| (*k, v.as_str())).collect();
        call(&self.env.settings, self.env.dir.path(), args, &extra)
    }
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        self.call(&["cleanup"]);
    }
}

#[test]
fn job_failure_writes_the_exit_code_and_success_clears_it() {
    let env = TestEnv::new();
    let tmp = env.dir.path();
    let job = Prepared::new(&env);
    let code_file = tmp.join("build_exit_code");
    let failing = script(tmp, "exit 42");
    let out = job.call(&["run", &failing, "build_script"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(read(&code_file).lines().next(), Some("42"));
    // The runner reuses the file for any later stage exiting 1; a success must clear it.
    let ok = script(tmp, "true");
    let out = job.call(&["run", &ok, "archive_cache"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!code_file.exists(), "stale exit code left behind");
}

#[test]
fn exit_codes_follow_the_variables_and_fall_back_to_1_and_2() {
    let env = TestEnv::new();
    let tmp = env.dir.path();
    let job = Prepared::new(&env);
    let failing = script(tmp, "exit 5");
    let mut custom: Vec<(&str, &str)> = job.engine.iter().map(|(k, v)| (*k, v.as_str())).collect();
    custom.extend([
        ("BUILD_FAILURE_EXIT_CODE", "11"),
        ("SYSTEM_FAILURE_EXIT_CODE", "12"),
    ]);
    let out = call(
        &env.settings,
        tmp,
        &["run", &failing, "build_script"],
        &custom,
    );
    assert_eq!(out.status.code(), Some(11));
    let out = call(&env.settings, tmp, &["run", &failing, "nonsense"], &custom);
    assert_eq!(out.status.code(), Some(12));

    let mut cmd = Command::new(binary());
    cmd.args([
        "--config",
        env.settings.to_str().unwrap(),
        "run",
        &failing,
        "build_script",
    ])
    .current_dir(tmp)
    .env_remove("BUILD_FAILURE_EXIT_CODE")
    .env_remove("SYSTEM_FAILURE_EXIT_CODE")
    .env_remove("BUILD_EXIT_CODE_FILE")
    .env("JOB_RESPONSE_FILE", tmp.join("response.json"))
    .env("CUSTOM_ENV_CI_PROJECT_ID", "8")
    .env("CUSTOM_ENV_CI_JOB_ID", "7")
    .env("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "0")
    .envs(job.engine.iter().map(|(k, v)| (*k, v.as_str())));
    assert_eq!(cmd.output().unwrap().status.code(), Some(1));
    cmd.env_remove("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID"));
}

#[test]
fn job_exit_code_reaches_the_runner_and_after_script_sees_failed() {
    let env = TestEnv::new();
    let mut job = Job::test(base_image(), &["echo before", "exit 42", "echo never"]);
    job.after_script = vec!["echo status=$CI_JOB_STATUS".into()];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(42), "{}", result.log);
    assert_logged(&result.log, "status=failed");
    assert!(!result.log.contains("\nnever\n"));
    assert!(
        result
            .log
            .ends_with("ERROR: Job failed: exit status 42\x1b[0;m\n"),
        "{}",
        result.log
    );
}

#[test]
fn settings_errors_name_the_file_and_key_and_fail_as_system_failures() {
    let env = TestEnv::with_settings("[docker]\npull_polcy = \"never\"");
    let out = call(&env.settings, env.dir.path(), &["config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "stray stdout: {:?}", out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(env.settings.to_str().unwrap()), "{err}");
    assert!(
        err.contains("pull_polcy") && err.contains("pull_policy"),
        "{err}"
    );

    // Through the runner: config fails every attempt, prepare is never called, cleanup is.
    let result = env.runner.clone().run(&Job::test(base_image(), &["true"]));
    assert_system_failure(&result);
    assert_eq!(result.calls_of("config").len(), 3);
    assert_eq!(result.calls_of("prepare").len(), 0);
    assert_eq!(result.calls_of("cleanup").len(), 3);
}

#[test]
fn version_flag() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}
