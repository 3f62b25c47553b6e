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
fn rollback_orders_revisions_itself_says_where_it_goes_and_is_done_when_already_there() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let script = Script {
        ignore_list_sort: true,
        ..Script::default()
    };
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
    f.use_ecs(&ecs);
    f.tag("v1.3.0");
    for tag in ["v1.2.3", "v1.3.0"] {
        let result = f.env.runner.run(&f.job("deploy", tag, true));
        assert_eq!(result.status, Status::Success, "{}", result.log);
    }
    assert!(ecs.service_task_definition().ends_with(":3"));
    let image = |tag: &str| format!("{}:{tag}", f.repository());

    // Revisions listed oldest first: the previous release is still revision 2 (v1.2.3).
    let (out, log) = run(&f, &["rollback", "--dry-run"], &[]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        &format!(
            "Would roll {SERVICE} from {FAMILY}:3 ({}) to {FAMILY}:2 ({})",
            image("v1.3.0"),
            image("v1.2.3")
        ),
    );
    assert!(ecs.requests("UpdateService").len() == 2, "dry run: {log}");

    let (out, log) = run(&f, &["rollback"], &[]);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, &format!("The service runs {FAMILY}:2 again"));
    assert!(
        log.lines().any(|l| {
            let l = l.trim_start_matches('[').trim_start();
            l.split_once("s] ")
                .is_some_and(|(secs, _)| secs.parse::<u64>().is_ok())
        }),
        "rollout lines carry the seconds since it began: {log}"
    );
    assert_logged(&log, &format!("rolled back: {SERVICE} from {FAMILY}:3"));
    assert_logged(
        &log,
        "console:   https://ap-northeast-1.console.aws.amazon.com/ecs/v2/clusters/",
    );
    assert!(ecs.service_task_definition().ends_with(":2"));

    let (out, log) = run(&f, &["rollback", "--to", "v1.2.3"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "already there is success: {log}"
    );
    assert_logged(&log, "already runs");
    assert_eq!(ecs.requests("UpdateService").len(), 3, "{log}");

    let (out, log) = run(&f, &["rollback", "--to", "1.2.2"], &[]);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert_logged(
        &log,
        &format!("no ACTIVE revision of {FAMILY} runs an image tagged 1.2.2; its revisions run v1.3.0, v1.2.3, v1.2.2. Did you mean v1.2.2?"),
    );
    let (out, log) = run(&f, &["rollback", "--to-revision", "9"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing revision is a usage error"
    );
    assert_logged(
        &log,
        &format!("revision 9 is not an ACTIVE revision of {FAMILY} (ACTIVE: 3, 2, 1)"),
    );

    // A service with a sidecar, and nothing to tell the release's container: the flag is named.
    let (out, log) = run(&f, &["rollback", "--dry-run"], &[("ECR_REPOSITORY", "")]);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert_logged(&log, "set --container to one or more of them");
    let (out, log) = run(
        &f,
        &["rollback", "--dry-run", "--container", "app"],
        &[("ECR_REPOSITORY", "")],
    );
    assert_eq!(out.status.code(), Some(0), "{log}");

    let (_, help) = output_of(std::process::Command::new(binary()).args(["rollback", "--help"]));
    assert!(!help.contains("--tag"), "rollback takes no --tag: {help}");
}

#[test]
fn doctor_reports_each_check_and_fails_on_a_missing_service_or_stopped_daemon() {
    let mut f = Fixture::new(
        &stand_ins::Moto::ecr_password(),
        &format!("[docker]\ndefault_image = \"{}\"\n", base_image()),
    );
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
        "[ ok ] default image",
        "[ ok ] inputs",
        "[ ok ] aws identity",
        "[ ok ] ecr repository",
        "[ ok ] ecs service",
        "[ ok ] task definition",
    ] {
        assert!(log.contains(check), "{check}: {log}");
    }

    let (out, log) = run(&f, &["doctor"], &[("ECS_SERVICE", "no-such-service")]);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_logged(
        &log,
        "[FAIL] ecs service: the ECS service `no-such-service` does not exist",
    );

    // Credentials that cannot be used: every AWS check after them is reported as skipped.
    let (out, log) = run(&f, &["doctor"], &[("AWS_ROLE_ARN", "not-a-role")]);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_logged(&log, "[FAIL] aws identity");
    for check in ["ecr repository", "ecs service", "task definition"] {
        assert_logged(&log, &format!("[skip] {check}: no AWS session"));
    }

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
fn doctor_fails_what_a_release_would_fail_on() {
    let mut f = Fixture::new(
        &stand_ins::Moto::ecr_password(),
        "[docker]\ndefault_image = \"debian:bookworm-slim\"\nallowed_images = [\"registry.example/**\"]\n",
    );
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    let (out, log) = run(
        &f,
        &[
            "doctor",
            "--registry",
            "https://not a host",
            "--tag",
            "latest",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_logged(&log, "[FAIL] inputs: --registry");
    assert_logged(
        &log,
        "[FAIL] tag: tag `latest` does not match release.tag_pattern",
    );
    assert_logged(
        &log,
        "[FAIL] default image: debian:bookworm-slim is not on the host and its pull policy is never",
    );
    // As on the docker executor, the operator's default image is allowed whatever
    // docker.allowed_images says.
    assert!(!log.contains("allowed_images"), "{log}");

    let (out, log) = run(&f, &["doctor", "--task-definition", "other-family"], &[]);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_logged(
        &log,
        &format!("[FAIL] task definition: --task-definition is `other-family` but the service runs {FAMILY}:1: point --task-definition at the service's family"),
    );
    // `family:revision` names the family, as it does for a release.
    let (out, log) = run(
        &f,
        &["doctor", "--task-definition", &format!("{FAMILY}:1")],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the other checks of this fixture fail: {log}"
    );
    assert_logged(&log, &format!("[ ok ] task definition: {FAMILY}:1"));
    let (out, log) = run(&f, &["doctor", "--container", "no-such-container"], &[]);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_logged(
        &log,
        "[FAIL] task definition: --container `no-such-container` is not a container of",
    );

    // Pull policies are tried in order: `never` first still lets the next one pull.
    let pulls = Fixture::new(
        &stand_ins::Moto::ecr_password(),
        "[docker]\ndefault_image = \"debian:not-on-this-host\"\npull_policy = [\"never\", \"if-not-present\"]\n",
    );
    let (_, log) = run(&pulls, &["doctor"], &[]);
    assert_logged(
        &log,
        "[warn] default image: debian:not-on-this-host is not on the host: the first job without an image pulls it",
    );

    let (_, log) = run(&f, &["doctor", "--tag", "v1.2.3"], &[]);
    assert_logged(&log, "[ ok ] tag: v1.2.3 would be released");
    assert_logged(&log, "[ ok ] inputs: every input given is well formed");
    assert_logged(
        &log,
        &format!("[ ok ] task definition: {FAMILY}:1: a release replaces the image of app"),
    );
}

/// Runs `cmd`, killing it after `limit`; a hang fails the test.
fn output_within(
    cmd: &mut std::process::Command,
    limit: std::time::Duration,
) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} ran past {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    (status.code(), text)
}

#[test]
fn no_command_panics_on_empty_or_malformed_aws_and_docker_variables() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    // Every service keeps a loopback endpoint when the global one is blanked.
    let endpoint = moto().runner_env()[0].1.clone();
    let repo = f.repo.to_string_lossy().into_owned();
    f.commit_file(
        ".gitlab-ci.yml",
        "deploy-job:\n  stage: deploy\n  script: [echo never]\n",
    );
    let pipeline = format!("{repo}/.gitlab-ci.yml");
    let registry = format!("ECR_REGISTRY={}", f.registry.host);
    let commands: [&[&str]; 7] = [
        &["doctor"],
        &["plan", "--tag", "v1.2.3"],
        &["rollback", "--dry-run"],
        &["continue"],
        &["prune", "--dry-run"],
        &[
            "release",
            "--dry-run",
            "--tag",
            "v1.2.3",
            "--project-dir",
            &repo,
        ],
        // A release job's stages, run by exec, inherit the same environment.
        &[
            "exec",
            "deploy-job",
            "--file",
            &pipeline,
            "--tag",
            "v1.2.3",
            "--dry-run",
            "--var",
            &registry,
            "--var",
            "ECR_REPOSITORY=group/app",
            "--var",
            "ECS_CLUSTER=your-cluster-name",
            "--var",
            "ECS_SERVICE=your-service-name",
            "--var",
            "AWS_DEFAULT_REGION=ap-northeast-1",
        ],
    ];
    let variables = [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ECS",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "DOCKER_HOST",
    ];
    for args in commands {
        for variable in variables {
            for value in ["", "::not:a value::"] {
                let mut cmd = f.command();
                cmd.args(args)
                    .env("AWS_ENDPOINT_URL_STS", &endpoint)
                    .env("AWS_ENDPOINT_URL_ECR", &endpoint)
                    .env(variable, value);
                let (code, log) = output_within(&mut cmd, std::time::Duration::from_secs(90));
                let what = format!("{args:?} with {variable}={value:?}");
                assert!(!log.contains("panicked"), "{what}: {log}");
                assert!(matches!(code, Some(0..=3)), "{what}: exit {code:?}: {log}");
                if value.is_empty() || !variable.starts_with("AWS_ENDPOINT_URL") {
                    continue;
                }
                if args[0] != "prune" {
                    assert_logged(
                        &log,
                        &format!("{variable} is `{value}`, not an http:// or https:// URL"),
                    );
                }
            }
        }
    }
}

#[test]
fn release_builds_the_tags_commit_not_the_working_tree() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    let tagged = stand_ins::git_output(&f.repo, &["rev-parse", "v1.2.3^{commit}"]);
    // After the tag: a later commit, an uncommitted Dockerfile that cannot build and an
    // untracked file. None of them is the release.
    stand_ins::commit(&f.repo, &[("app.sh", "echo later")], "later");
    std::fs::write(f.repo.join("Dockerfile"), "FROM no-such-image:anywhere\n").unwrap();
    std::fs::write(f.repo.join("junk.txt"), "untracked").unwrap();
    let repo = f.repo.to_string_lossy().into_owned();

    let (out, log) = run(
        &f,
        &["release", "--tag", "v1.2.3", "--project-dir", &repo],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, &format!("Building v1.2.3 = commit {}", &tagged[..12]));
    assert_logged(&log, "uncommitted change(s) are not part of it");
    let config = f.registry.image_config("group/app", "v1.2.3").unwrap();
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"], tagged,
        "{config}"
    );
    assert!(
        f.repo.join("ecs-release.env").exists(),
        "the report goes to --project-dir"
    );

    let (out, log) = run(
        &f,
        &["release", "--tag", "v9.9.9", "--project-dir", &repo],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert_logged(&log, "there is no tag `v9.9.9`");

    let plain = tempfile::tempdir().unwrap();
    let (out, log) = run(
        &f,
        &[
            "release",
            "--tag",
            "v1.2.3",
            "--project-dir",
            &plain.path().to_string_lossy(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert_logged(&log, "release builds a tag's commit of a git checkout");
}

#[test]
fn piped_output_has_no_section_markers_or_escape_codes() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    for args in [
        &["plan", "--tag", "v1.2.3"][..],
        &["plan", "--tag", "nope"],
        &["rollback", "--dry-run"],
    ] {
        let (_, log) = run(&f, args, &[]);
        assert!(
            !log.contains("section_start") && !log.contains("section_end"),
            "{args:?}: {log}"
        );
        assert!(!log.contains('\x1b'), "{args:?}: {log:?}");
    }
    let (_, log) = run(&f, &["plan", "--tag", "v1.2.3"], &[]);
    assert!(
        log.lines().any(|l| l == "Release plan: task definition"),
        "{log}"
    );
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

#[test]
fn without_credentials_doctor_and_plan_say_so_not_that_the_endpoint_is_unreachable() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    let home = tempfile::tempdir().unwrap();
    for args in [&["doctor"][..], &["plan", "--tag", "v1.2.3"]] {
        let (out, log) = output_of(
            f.command()
                .args(args)
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env("HOME", home.path()),
        );
        assert_logged(&log, "no AWS credentials");
        assert_logged(
            &log,
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE",
        );
        assert!(!log.contains("cannot be reached"), "{args:?}: {log}");
        let expected = if args[0] == "doctor" { 1 } else { 3 };
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {log}");
    }
}

/// An endpoint that answers every request with a 500 and counts them.
fn failing_endpoint() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 8192];
            // The request (headers and a small form body) arrives in one read here.
            if stream.read(&mut buf).unwrap_or(0) > 0 {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    (address, count)
}

#[test]
fn doctor_retries_a_failing_endpoint_once_and_reports_it() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    let (sts, requests) = failing_endpoint();
    let (out, log) = output_of(f.command().arg("doctor").env("AWS_ENDPOINT_URL_STS", &sts));
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_logged(
        &log,
        "[FAIL] aws identity: AWS call sts:GetCallerIdentity failed",
    );
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one attempt and one retry: {log}"
    );
}
