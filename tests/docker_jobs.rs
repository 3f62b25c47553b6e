//! Ordinary CI jobs in containers on the real Docker engine, end to end through the
//! gitlab-runner stand-in: output, files, exit codes, services, cancellation, concurrency,
//! and the failures an operator must be able to tell apart.

use std::time::Duration;

use crate::support::*;

/// An image derived from the base image by a Dockerfile snippet, built once.
fn derived_image(tag: &str, dockerfile_tail: &str) -> String {
    images::build_once(tag, &format!("FROM {}\n{dockerfile_tail}\n", base_image()))
}

#[test]
fn a_job_prints_and_writes_files_into_its_project_volume() {
    // A job with sources: only a fetch keeps the project's builds volume (GIT_STRATEGY).
    let (_dir, repo) = git_project(&[("README.md", "hello\n")]);
    let env = TestEnv::with_binds("", &[&repo]);
    let job = git_job(
        &repo,
        base_image(),
        &[
            "echo \"hello from job $CI_JOB_ID\"",
            "mkdir -p out && echo built > out/artifact.txt",
            "test \"$(pwd)\" = \"$CI_PROJECT_DIR\"",
        ],
    );
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(result.log.contains(&format!("hello from job {}", job.id)));
    assert_eq!(
        env.project_file(&job, "out/artifact.txt").as_deref(),
        Some("built\n")
    );
    assert!(result.log.contains("Preparing the Docker job environment"));
    assert_nothing_left(&job);
}

#[test]
fn exit_code_42_is_reported_and_after_script_sees_failed() {
    let env = TestEnv::new();
    let mut job = Job::test(base_image(), &["exit 42"]);
    job.after_script = vec!["echo \"after: $CI_JOB_STATUS\"".into()];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(42), "{}", result.log);
    assert_logged(&result.log, "after: failed");
    assert_eq!(result.calls_of("after_script")[0].result, CallResult::Ok);
    assert_nothing_left(&job);
}

#[test]
fn the_script_reaches_a_service_by_alias_and_by_derived_name() {
    let env = TestEnv::new();
    let mut job = Job::test(
        base_image(),
        &[
            "wget -qO- http://web:8080/",
            "wget -qO- http://gitlab-ecs-executor__example:8080/",
        ],
    );
    let httpd = Some(vec![
        "httpd".into(),
        "-f".into(),
        "-p".into(),
        "8080".into(),
        "-h".into(),
        "/www".into(),
    ]);
    job.services = vec![
        Service {
            name: base_image().into(),
            alias: "web".into(),
            command: httpd.clone(),
            variables: vec![("GREETING".into(), "hi".into())],
            ..Default::default()
        },
        Service {
            name: base_image().into(),
            command: httpd,
            ..Default::default()
        },
    ];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(
        result.log.matches("hello from the service").count(),
        2,
        "{}",
        result.log
    );
    assert_nothing_left(&job);
}

#[test]
fn cancelling_a_long_script_stops_it_in_the_container_promptly() {
    let mut env = TestEnv::new();
    let (job, result) = suites::a_cancel_stops_a_long_script_promptly(
        &mut env.runner,
        base_image(),
        &["echo \"sleepers: $(ps | grep -c '[s]leep 300')\""],
    );
    assert_logged(&result.log, "sleepers: 0");
    assert_nothing_left(&job);
}

#[test]
fn ten_concurrent_jobs_complete_and_leave_nothing_behind() {
    let (_dir, repo) = git_project(&[("README.md", "hello\n")]);
    let env = TestEnv::with_binds("", &[&repo]);
    let jobs: Vec<Job> = (0..10)
        .map(|slot| {
            let mut job = git_job(
                &repo,
                base_image(),
                &["echo $CI_JOB_ID > id.txt", "sleep 1", "cat id.txt"],
            );
            job.concurrent_id = slot;
            job.project_slot = slot;
            job.project_path = "group/shared-project".into();
            job
        })
        .collect();
    let results = run_concurrently(&env.runner, &jobs);
    for (job, (_, result)) in jobs.iter().zip(&results) {
        assert_eq!(result.status, Status::Success, "{}", result.log);
        assert_eq!(
            env.project_file(job, "id.txt").as_deref().map(str::trim),
            Some(job.id.to_string().as_str())
        );
        assert_nothing_left(job);
    }
    // Each concurrency slot keeps its builds and cache volumes for the next job, as the
    // docker executor does; nothing else outlives the jobs.
    assert_eq!(env.volumes().len(), 20, "{:?}", env.volumes());
}

#[test]
fn a_missing_image_is_a_job_failure_that_is_not_retried() {
    let env = TestEnv::new();
    let job = Job::test("gitlab-ecs-executor-test/absent:1", &["true"]);
    let result = env.runner.run(&job);
    // The docker executor fails the job at once (image_pull_failure): the job named it.
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "image gitlab-ecs-executor-test/absent:1 is not on this runner host and the pull policy is `never`");
    assert_logged(
        &result.log,
        "Load it on the runner host, or let the job pull it",
    );
    assert_eq!(
        result.calls_of("prepare").len(),
        1,
        "a job failure is not retried"
    );
    assert_nothing_left(&job);
}

#[test]
fn a_stopped_daemon_is_a_clear_system_failure() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    // A socket file nobody listens on: what a client sees of a stopped daemon.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let mut env =
        TestEnv::with_settings(&format!("[docker]\nhost = \"unix://{}\"", socket.display()));
    env.runner.prepare_retry_pause = Duration::from_millis(100);
    let result = env.runner.run(&Job::test(base_image(), &["true"]));
    assert_system_failure(&result);
    assert_logged(&result.log, "cannot reach the Docker engine");
    assert_logged(&result.log, "systemctl status docker");
}

#[test]
fn a_pull_policy_the_runner_does_not_allow_fails_the_job_without_retry() {
    let env = TestEnv::with_settings(
        "[docker]\npull_policy = \"never\"\nallowed_pull_policies = [\"never\", \"if-not-present\"]",
    );
    let mut job = Job::test(base_image(), &["true"]);
    job.pull_policy = vec!["always".into()];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        "pull_policy `always` is not one of the allowed_pull_policies `never`, `if-not-present`",
    );
    assert_eq!(result.calls_of("prepare").len(), 1);
}

#[test]
fn an_entrypoint_that_ignores_the_script_is_reported_and_can_be_overridden() {
    let image = derived_image(
        "exiting-entrypoint",
        "ENTRYPOINT [\"/bin/sh\", \"-c\", \"echo entrypoint refuses; exit 3\"]",
    );
    let env = TestEnv::new();
    let job = Job::test(&image, &["echo the script ran"]);
    let result = env.runner.run(&job);
    // As on the docker executor the stage ends with the entrypoint's code; the log says why.
    assert_eq!(result.status, Status::Failed(3), "{}", result.log);
    assert_logged(&result.log, "entrypoint refuses");
    assert_logged(
        &result.log,
        &format!("the entrypoint of image {image} did not run the job's script (it exited 3)"),
    );
    assert_logged(&result.log, "entrypoint: [\"\"]");
    assert!(!result.log.contains("the script ran"), "{}", result.log);
    assert_nothing_left(&job);

    let mut job = Job::test(&image, &["echo overridden"]);
    job.image_entrypoint = Some(vec![String::new()]);
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "\noverridden\n");
}

#[test]
fn an_image_entrypoint_that_runs_its_arguments_is_respected() {
    let image = derived_image(
        "wrapping-entrypoint",
        "RUN printf '#!/bin/sh\\necho wrapped > /tmp/entrypoint-ran\\nexec \"$@\"\\n' > /entry.sh && chmod +x /entry.sh\nENTRYPOINT [\"/entry.sh\"]",
    );
    let env = TestEnv::new();
    let job = Job::test(&image, &["cat /tmp/entrypoint-ran"]);
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "\nwrapped\n");
}
