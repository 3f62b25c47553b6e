//! The job's environment as the docker executor makes it: which helper image, which builds
//! volume for which `GIT_STRATEGY`, `GIT_CLONE_PATH`, the image's entrypoint and user, and
//! what an image that cannot be pulled does to the job.

use std::process::Command;

use crate::support::images::{self, base_image, DEBIAN};
use crate::support::*;

/// Another job of the same project (and slot) as `job`.
fn next_job_of(job: &Job, script: &[&str]) -> Job {
    let mut next = Job::test(job.image.as_deref().unwrap_or(DEBIAN), script);
    next.project_id = job.project_id;
    next.project_path = job.project_path.clone();
    next.git = job.git.clone();
    next
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker cli")
}

#[test]
fn a_git_strategy_none_job_never_sees_the_checkout_a_branch_job_left() {
    let (_dir, repo) = git_project(&[("README.md", "hello\n")]);
    let env = TestEnv::with_binds("", &[&repo]);
    // Inside .git, where a fetch's `git clean` leaves it.
    let branch = git_job(&repo, DEBIAN, &["echo left > .git/left-by-branch"]);
    let result = env.runner.run(&branch);
    assert_eq!(result.status, Status::Success, "{}", result.log);

    let none = next_job_of(&branch, &["ls -A . | sed 's/^/found: /'", "echo listed"])
        .var("GIT_STRATEGY", "none");
    let result = env.runner.run(&none);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "\nlisted\n");
    assert!(!result.log.contains("\nfound: "), "{}", result.log);
    // Its own volume went with it.
    let own = format!("-j{}", none.id);
    assert!(
        !env.volumes().iter().any(|v| v.contains(&own)),
        "{:?}",
        env.volumes()
    );

    // A fetch still finds the project's checkout where the branch job left it.
    let fetch = next_job_of(&branch, &["cat .git/left-by-branch"]);
    let result = env.runner.run(&fetch);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "\nleft\n");

    let clone = next_job_of(
        &branch,
        &["ls .git/left-by-branch 2>&1 || echo clean clone"],
    )
    .var("GIT_STRATEGY", "clone");
    let result = env.runner.run(&clone);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "\nclean clone\n");
}

#[test]
fn a_job_clones_into_its_git_clone_path_where_the_runner_enables_custom_build_dirs() {
    let (_dir, repo) = git_project(&[("go.mod", "module example.com/app\n")]);
    let mut env = TestEnv::with_binds("", &[&repo]);
    env.runner.custom_build_dir = true;
    let job = git_job(&repo, DEBIAN, &["pwd", "cat go.mod"])
        .var("GIT_CLONE_PATH", "$CI_BUILDS_DIR/go/src/example.com/app");
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "\n/builds/go/src/example.com/app\n");
    assert_logged(&result.log, "\nmodule example.com/app\n");

    // As on any custom executor, the runner refuses it unless its config enables it.
    env.runner.custom_build_dir = false;
    let refused =
        next_job_of(&job, &["pwd"]).var("GIT_CLONE_PATH", "$CI_BUILDS_DIR/go/src/example.com/app");
    let result = env.runner.run(&refused);
    assert!(matches!(result.status, Status::Failed(_)), "{}", result.log);
    assert_logged(&result.log, "enable `custom_build_dir` feature");
}

#[test]
fn an_image_that_cannot_be_pulled_fails_the_job_once_with_the_registrys_reason() {
    let env = TestEnv::with_settings("[docker]\npull_policy = [\"always\"]");
    let job = Job::test("127.0.0.1:9/nothing/here:1", &["true"]);
    let mut job = job;
    job.pull_policy = vec!["always".into()];
    let result = env.runner.run(&job);
    // The job's fault, as the docker executor's ImagePullFailure: not a system failure the
    // runner would prepare again.
    assert!(matches!(result.status, Status::Failed(_)), "{}", result.log);
    assert_eq!(result.calls_of("prepare").len(), 1, "{}", result.log);
    // Retried as the docker executor retries an unreachable registry, then one line.
    assert_logged(&result.log, "(attempt #2), retrying");
    let reason = result
        .log
        .lines()
        .find(|l| l.contains("cannot be reached"))
        .unwrap_or_else(|| panic!("no reason in:\n{}", result.log));
    assert!(reason.contains("connection refused"), "{reason}");
    assert_nothing_left(&job);
}

#[test]
fn an_empty_entrypoint_keeps_the_images_and_an_empty_string_clears_it() {
    let entry = images::exporting_entrypoint();
    let env = TestEnv::new();
    let script = ["echo \"entrypoint: ${FROM_ENTRYPOINT:-none}\""];
    for (entrypoint, expected) in [
        (Vec::new(), "entrypoint: set-up-by-the-image"),
        (vec![String::new()], "entrypoint: none"),
    ] {
        let mut job = Job::test(&entry, &script);
        job.image_entrypoint = Some(entrypoint.clone());
        let result = env.runner.run(&job);
        assert_eq!(result.status, Status::Success, "{}", result.log);
        assert_logged(&result.log, &format!("\n{expected}\n"));
    }
}

#[test]
fn the_image_user_may_name_a_variable() {
    let env = TestEnv::new();
    let mut job = Job::test(DEBIAN, &["echo \"runs as $(id -un)\""]).var("RUN_AS", "nobody");
    job.image_user = Some("$RUN_AS".into());
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "\nruns as nobody\n");
}

/// The log of a job on a runner whose only helper is the archive `name` that `pipeline`
/// (a shell pipeline) writes, where gitlab-runner's package puts its archives.
fn with_prebuilt_helper(name: &str, pipeline: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join(name);
    let made = Command::new("sh")
        .arg("-c")
        .arg(format!("{pipeline} > {}", archive.display()))
        .status()
        .expect("sh");
    assert!(made.success(), "{pipeline}");
    let env = TestEnv::with_settings(&format!(
        "[docker]\nhelper_image = \"\"\nhelper_images_dir = \"{}\"",
        dir.path().display()
    ));
    let result = env.runner.run(&Job::test(base_image(), &["echo job ran"]));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, &format!("from {}", archive.display()));
    result.log
}

#[test]
fn gitlabs_helper_is_preferred_in_every_form_and_the_local_one_is_named_for_what_it_cannot_do() {
    let arch = String::from_utf8_lossy(&docker(&["info", "--format", "{{.Architecture}}"]).stdout)
        .trim()
        .to_string();
    assert_eq!(arch, "x86_64", "this test names x86_64 helper tags");
    let tag = format!("x86_64-v{}", runner::RUNNER_VERSION);
    let gitlab = format!("registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:{tag}");
    let hub = format!("gitlab/gitlab-runner-helper:{tag}");
    let _ = docker(&["rmi", "-f", &gitlab, &hub]);

    // GitLab's helper image starts through dumb-init and /entrypoint, which an exported
    // file system loses and the docker executor puts back on import.
    let shaped = images::build_once(
        "helper-shaped-as-gitlabs",
        &format!(
            "FROM {}\nRUN mkdir -p /usr/bin && printf '#!/bin/sh\\nexec \"$@\"\\n' > /usr/bin/dumb-init && cp /usr/bin/dumb-init /entrypoint && chmod +x /usr/bin/dumb-init /entrypoint\n",
            base_image()
        ),
    );
    let container = format!("gitlab-ecs-executor-export-{}", runner::unique_id());
    assert!(docker(&["create", "--name", &container, &shaped, "true"])
        .status
        .success());
    let exported = with_prebuilt_helper(
        "prebuilt-alpine-x86_64.tar.xz",
        &format!("docker export {container} | xz -0 -T2"),
    );
    let _ = docker(&["rm", "-f", &container]);
    assert_logged(
        &exported,
        &format!("Loaded the helper image {gitlab} from "),
    );
    assert_logged(&exported, &format!("Using helper image {gitlab}"));

    // The newer archive form, `docker save` compressed with zstd, is loaded and tagged.
    let _ = docker(&["rmi", "-f", &gitlab]);
    let saved = with_prebuilt_helper(
        "prebuilt-alpine-x86_64.docker.tar.zst",
        &format!("docker save {shaped} | zstd -q -1"),
    );
    assert_logged(&saved, &format!("Loaded the helper image {gitlab} from "));

    // Under its Docker Hub name (and no archive), GitLab's image is still preferred.
    let _ = docker(&["rmi", "-f", &gitlab]);
    assert!(docker(&["tag", &shaped, &hub]).status.success());
    let env = TestEnv::with_settings(
        "[docker]\nhelper_image = \"\"\nhelper_images_dir = \"/nonexistent\"",
    );
    let result = env.runner.run(&Job::test(base_image(), &["echo job ran"]));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, &format!("Using helper image {hub}"));
    let _ = docker(&["rmi", "-f", &hub]);

    // The local helper only where named, and the job hears what it cannot do.
    let env = TestEnv::new();
    let mut job = Job::test(DEBIAN, &["mkdir -p out && echo x > out/x.txt"]);
    job.artifacts = vec![ArtifactDef {
        paths: vec!["out/".into()],
        ..Default::default()
    }];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(
        &result.log,
        "its artifacts and reports are kept on this host, not uploaded to GitLab",
    );
    let plain = env.runner.run(&Job::test(DEBIAN, &["true"]));
    assert!(!plain.log.contains("built on this host"), "{}", plain.log);
}
