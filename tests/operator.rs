//! Operator commands outside GitLab: `plan`, `rollback`, `doctor`, `release`, and
//! `exec --dry-run`, against the same stand-ins as the release tests.

use std::process::Output;

use crate::support::release::{moto, Fixture, CLUSTER, FAMILY, SERVICE};
use crate::support::scripted_ecs::Script;
use crate::support::*;
use serde_json::json;

fn run(f: &Fixture, args: &[&str], extra_env: &[(&str, &str)]) -> (Output, String) {
    output_of(f.command().args(args).envs(extra_env.iter().copied()))
}

#[test]
fn plan_shows_exactly_the_image_change_and_changes_nothing() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    let (out, log) = run(&f, &["plan", "--tag", "v1.2.3"], &[]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, &format!("Would register {FAMILY}:2"));
    let changes: Vec<&str> = log.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(changes.len(), 2, "{log}");
    assert!(
        changes[0].starts_with(&format!(
            "  containerDefinitions[app].image: \"{}:v1.2.2\" -> \"{}:v1.2.3\"",
            f.repository(),
            f.repository()
        )),
        "{log}"
    );
    assert!(
        changes[1].starts_with("  tags[gitlab:tag]: (none) -> \"v1.2.3\""),
        "{log}"
    );
    assert!(
        ecs.requests("RegisterTaskDefinition").is_empty()
            && ecs.requests("UpdateService").is_empty()
    );

    let (out, log) = run(&f, &["plan", "--tag", "latest"], &[]);
    assert_eq!(out.status.code(), Some(2), "a refused tag is a usage error");
    assert_logged(&log, "tag `latest` does not match release.tag_pattern");
    assert!(!log.contains("did you mean"), "{log}");
    let (out, log) = run(&f, &["plan", "--tag", "1.2.3"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_logged(&log, "did you mean v1.2.3?");
}

#[test]
fn rollback_returns_the_service_to_the_previous_release() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    let released = ecs.service_task_definition();
    assert!(released.ends_with(":2"));

    let (out, log) = run(&f, &["rollback"], &[]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, &format!("Rolling {SERVICE} back from {FAMILY}:2"));
    assert_logged(&log, &format!("to {FAMILY}:1 ({}:v1.2.2)", f.repository()));
    assert_logged(&log, &format!("The service runs {FAMILY}:1 again"));
    assert!(ecs.service_task_definition().ends_with(":1"));

    let (out, log) = run(&f, &["rollback", "--to", "v1.2.3"], &[]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(ecs.service_task_definition().ends_with(":2"), "{log}");
    let (out, log) = run(&f, &["rollback", "--to-revision", "9"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing revision is a usage error"
    );
    assert_logged(&log, "revision 9 is not an ACTIVE revision");
}

#[test]
fn doctor_reports_each_check_and_fails_on_a_missing_service_or_stopped_daemon() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    moto().call(
        "AmazonEC2ContainerRegistry_V20150921.CreateRepository",
        json!({"repositoryName": "group/app"}),
    );
    let (out, log) = run(&f, &["doctor"], &[]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    for check in [
        "[ ok ] settings",
        "[ ok ] docker engine",
        "[ ok ] aws identity",
        "[ ok ] ecr repository",
        "[ ok ] ecs service",
    ] {
        assert!(log.contains(check), "{check}: {log}");
    }

    let (out, log) = run(&f, &["doctor"], &[("ECS_SERVICE", "no-such-service")]);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_logged(
        &log,
        "[FAIL] ecs service: the ECS service `no-such-service` does not exist",
    );

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let (out, log) = run(
        &f,
        &["doctor"],
        &[("DOCKER_HOST", &format!("unix://{}", socket.display()))],
    );
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_logged(&log, "[FAIL] docker engine: cannot reach the Docker engine");
}

#[test]
fn exec_dry_run_and_release_dry_run_change_nothing() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    f.commit_file(
        ".gitlab-ci.yml",
        "deploy-job:\n  stage: deploy\n  script: [echo never]\n  rules:\n    - if: $CI_COMMIT_TAG =~ /^v\\d+\\.\\d+\\.\\d+$/\n",
    );
    let repo = f.repo.to_string_lossy().into_owned();
    let (out, log) = run(
        &f,
        &[
            "exec",
            "deploy-job",
            "--file",
            &format!("{repo}/.gitlab-ci.yml"),
            "--tag",
            "v1.2.3",
            "--dry-run",
            "--var",
            &format!("ECR_REGISTRY={}", f.registry.host),
            "--var",
            "ECR_REPOSITORY=group/app",
            "--var",
            &format!("ECS_CLUSTER={CLUSTER}"),
            "--var",
            &format!("ECS_SERVICE={SERVICE}"),
            "--var",
            "AWS_DEFAULT_REGION=ap-northeast-1",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, "Dry run: nothing was pushed, registered or updated");
    assert_logged(&log, "containerDefinitions[app].image");
    assert!(f.registry.tags("group/app").is_empty());
    assert!(
        ecs.requests("RegisterTaskDefinition").is_empty()
            && ecs.requests("UpdateService").is_empty()
    );

    let (out, log) = run(
        &f,
        &["release", "--tag", "v1.2.3", "--project-dir", &repo],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(ecs.service_task_definition().ends_with(":2"), "{log}");
    assert!(f.registry.manifest("group/app", "v1.2.3").is_some());
}
