//! `gitlab-ecs-executor exec`: jobs of a `.gitlab-ci.yml` run on this machine through the
//! same config / prepare / run / cleanup path gitlab-runner uses.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::release::{Fixture, CLUSTER, FAMILY, SERVICE};
use crate::support::scripted_ecs::Script;
use crate::support::*;

const SEED_PIPELINE: &str = include_str!("fixtures/seed.gitlab-ci.yml");

fn exec(settings: &Path, dir: &Path, args: &[&str], env: &[(String, String)]) -> (Output, String) {
    output_of(
        Command::new(binary())
            .arg("--config")
            .arg(settings)
            .arg("exec")
            .args(args)
            .current_dir(dir)
            .envs(env.iter().cloned()),
    )
}

#[test]
fn the_example_pipelines_jobs_run_on_the_engine() {
    base_image();
    let env = TestEnv::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for job in ["hello", "service-check"] {
        let (out, log) = exec(
            &env.settings,
            repo,
            &[job, "--file", "runner-config/.gitlab-ci.yml"],
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{job}: {log}");
        assert!(log.contains("Job succeeded"), "{job}: {log}");
    }
    let (_, log) = exec(
        &env.settings,
        repo,
        &["hello", "--file", "runner-config/.gitlab-ci.yml"],
        &[],
    );
    assert!(
        log.contains("Hello from job") && log.contains("hello finished with status success"),
        "{log}"
    );
}

#[test]
fn a_job_excluded_by_its_rules_says_so() {
    let env = TestEnv::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (out, log) = exec(
        &env.settings,
        repo,
        &[
            "task-deploy",
            "--file",
            "runner-config/.gitlab-ci.yml",
            "--branch",
            "main",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        "Job `task-deploy` is not run for branch `main`: its rules exclude it",
    );
    assert_logged(
        &log,
        "does not act on these keys of `task-deploy`: environment, resource_group",
    );
    let (out, log) = exec(
        &env.settings,
        repo,
        &["nope", "--file", "runner-config/.gitlab-ci.yml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        log.contains("no job `nope`") && log.contains("hello"),
        "{log}"
    );
}

#[test]
fn a_failing_job_exits_with_its_own_code() {
    base_image();
    let env = TestEnv::new();
    let dir = tempfile::tempdir().unwrap();
    let repo = stand_ins::git_project(
        dir.path(),
        &[(
            ".gitlab-ci.yml",
            &format!(
                "fail:\n  image: {}\n  script:\n    - exit 7\n",
                base_image()
            ),
        )],
        &[],
    );
    let (out, log) = exec(&env.settings, &repo, &["fail"], &[]);
    assert_eq!(out.status.code(), Some(7), "{log}");
    assert_logged(&log, "ERROR: Job failed: exit status 7");
}

#[test]
fn the_seed_articles_pipeline_releases_natively_on_a_version_tag() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v0.9.0", f.repository()), Script::default());
    f.use_ecs(&ecs);
    f.commit_file(".gitlab-ci.yml", SEED_PIPELINE);
    f.tag("v1.0.0");
    let vars = [
        format!("ECR_REGISTRY={}", f.registry.host),
        "ECR_REPOSITORY=group/app".into(),
        format!("ECS_CLUSTER={CLUSTER}"),
        format!("ECS_SERVICE={SERVICE}"),
        format!("TASK_DEFINITION={FAMILY}"),
    ];
    let mut args = vec!["--tag", "v1.0.0"];
    for v in &vars {
        args.extend(["--var", v.as_str()]);
    }
    let env = f.env.runner.process_env.clone();
    let (out, log) = exec(
        &f.env.settings,
        &f.repo,
        &[&["image-build"], args.as_slice()].concat(),
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        !log.contains("docker login"),
        "the job's script must not run: {log}"
    );
    assert!(
        f.registry.manifest("group/app", "v1.0.0").is_some(),
        "{log}"
    );

    let (out, log) = exec(
        &f.env.settings,
        &f.repo,
        &[&["task-deploy"], args.as_slice()].concat(),
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(&log, "already in the registry");
    assert_logged(&log, "The job's image and services are not started");
    assert!(!log.contains("services-stable"), "{log}");
    let (td, _) = ecs.task_definition(&ecs.service_task_definition());
    assert_eq!(
        td["containerDefinitions"][1]["image"],
        format!("{}:v1.0.0", f.repository())
    );
}
