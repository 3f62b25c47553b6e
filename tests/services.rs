//! Services as the docker executor gives them: the runner's expanded variables (never the
//! project's settings variables), one container per `services:` entry however many share
//! an image, reachable by alias on Docker's default bridge too, and their start-up in the
//! job log under `CI_DEBUG_SERVICES`.

use crate::support::images::{CLIENTS, DEBIAN, POSTGRES, REDIS};
use crate::support::*;

/// A service of the Debian image that writes its environment into the job's builds volume
/// and stays up.
fn env_recorder() -> Service {
    Service {
        name: DEBIAN.into(),
        alias: "recorder".into(),
        entrypoint: Some(vec![
            "sh".into(),
            "-c".into(),
            "env > /builds/service-env.txt; exec sleep 3600".into(),
        ]),
        ..Default::default()
    }
}

#[test]
fn services_get_the_runners_expanded_variables_and_never_the_projects_settings_variables() {
    let mut env = TestEnv::with_settings("[docker]\nwait_for_services_timeout = 30");
    env.runner.environment = vec![("RUNNER_SITE".into(), "eu-$CI_RUNNER_ID".into())];
    let mut job = Job::test(
        CLIENTS,
        &[
            &suites::ask_project_database("$DB_USER"),
            "for i in $(seq 50); do [ -s /builds/service-env.txt ] && break; sleep 0.1; done",
            "grep -E '^(RUNNER_SITE|CI_BUILDS_DIR|GREETING|API_TOKEN|DEPLOY_KEY|CI_JOB_TOKEN|CI_REGISTRY_PASSWORD)=' /builds/service-env.txt | sort | sed 's/^/seen: /'",
        ],
    );
    let id = job.id;
    job.project_path = format!("group/shop{id}");
    job.services = vec![suites::project_database("$DB_USER"), env_recorder()];
    let job = job
        .var("DB_USER", "app_owner")
        .var("GREETING", "hello $CI_PROJECT_NAME")
        .setting("API_TOKEN", "settings-only-value")
        .masked("DEPLOY_KEY", "masked-deploy-key-value");
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    // The service variables were expanded before postgres read them.
    assert_logged(&result.log, &format!("\napp_owner1|shop{id}_test\n"));
    let runner_id = env.runner.runner_id;
    for line in [
        "seen: CI_BUILDS_DIR=/builds".to_string(),
        format!("seen: GREETING=hello shop{id}"),
        format!("seen: RUNNER_SITE=eu-{runner_id}"),
    ] {
        assert_logged(&result.log, &format!("\n{line}\n"));
    }
    for secret in [
        "API_TOKEN",
        "DEPLOY_KEY",
        "CI_JOB_TOKEN",
        "CI_REGISTRY_PASSWORD",
    ] {
        assert!(
            !result.log.contains(&format!("seen: {secret}=")),
            "{secret} reached a service:\n{}",
            result.log
        );
    }
}

#[test]
fn two_services_of_one_image_both_start_under_their_own_aliases() {
    let env = TestEnv::with_settings("[docker]\nwait_for_services_timeout = 30");
    let mut job = Job::test(
        CLIENTS,
        &[
            "redis-cli -h cache-a set who a > /dev/null",
            "redis-cli -h cache-b set who b > /dev/null",
            "echo \"a holds $(redis-cli -h cache-a get who), b holds $(redis-cli -h cache-b get who)\"",
        ],
    );
    job.services = ["cache-a", "cache-b"]
        .iter()
        .map(|alias| Service {
            name: REDIS.into(),
            alias: alias.to_string(),
            ..Default::default()
        })
        .collect();
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "\na holds a, b holds b\n");
    // The derived names go to the first, as the docker executor hands them out.
    assert_logged(
        &result.log,
        &format!(
            "Skipping alias \"gitlab-ecs-executor__redis\" for service \"{REDIS}\" (services[1])"
        ),
    );
}

#[test]
fn on_dockers_default_bridge_services_are_reached_by_alias() {
    let env = TestEnv::with_settings(
        "[docker]\nnetwork_mode = \"bridge\"\nwait_for_services_timeout = 30",
    );
    let mut job = Job::test(
        CLIENTS,
        &[
            "redis-cli -h cache ping",
            "redis-cli -h gitlab-ecs-executor-redis ping",
        ],
    );
    job.services = vec![Service {
        name: REDIS.into(),
        alias: "cache".into(),
        ..Default::default()
    }];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(result.log.matches("\nPONG\n").count(), 2, "{}", result.log);
    assert_nothing_left(&job);
}

#[test]
fn ci_debug_services_shows_what_a_service_printed_while_starting() {
    let env = TestEnv::with_settings("[docker]\nwait_for_services_timeout = 30");
    let mut job = Job::test(DEBIAN, &["echo the script runs"]).var("CI_DEBUG_SERVICES", "true");
    job.services = vec![Service {
        name: POSTGRES.into(),
        alias: "db".into(),
        ..Default::default()
    }];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    let lines: Vec<&str> = result.log.lines().collect();
    let ready = lines
        .iter()
        .position(|l| l.contains("[service:") && l.contains("ready to accept connections"))
        .expect("postgres's start-up is in the log");
    let script = lines
        .iter()
        .position(|l| *l == "the script runs")
        .expect("the script ran");
    assert!(ready < script, "{}", result.log);
}

#[test]
fn a_service_runs_as_its_docker_user_with_the_settings_shm_size() {
    let env =
        TestEnv::with_settings("[docker]\nshm_size = 134217728\nwait_for_services_timeout = 30");
    // The service says it every second, so the line is in the job log while the script runs
    // however long preparing took.
    let mut job = Job::test(DEBIAN, &["sleep 4"])
        .var("CI_DEBUG_SERVICES", "true")
        .var("SERVICE_USER", "nobody");
    job.services = vec![Service {
        name: DEBIAN.into(),
        alias: "worker".into(),
        entrypoint: Some(vec![
            "sh".into(),
            "-c".into(),
            "while true; do echo \"user=$(id -un) shm=$(df -k /dev/shm | awk 'NR==2 {print $2}')\"; sleep 1; done"
                .into(),
        ]),
        user: Some("$SERVICE_USER".into()),
        ..Default::default()
    }];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "user=nobody shm=131072");
}
