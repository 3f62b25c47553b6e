//! Native release, image half: trigger, inputs, credentials, build and push, end to end
//! through the runner stand-in with the real engine, docker-registry and moto.

use crate::support::release::{assert_no_secrets, moto, Fixture, ID_TOKEN};
use crate::support::stand_ins::{Moto, ACCOUNT};
use crate::support::*;

fn fixture(registry_password: &str) -> Fixture {
    Fixture::new(registry_password, "")
}

fn release_job(f: &Fixture, stage: &str, git_ref: &str, is_tag: bool) -> Job {
    f.job(stage, git_ref, is_tag)
}

#[test]
fn a_push_job_builds_and_pushes_the_tag_with_oci_labels_instead_of_its_script() {
    let f = fixture(&Moto::ecr_password());
    let job = release_job(&f, "build", "v1.2.3", true);
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(!result.log.contains("THE JOB SCRIPT RAN"), "{}", result.log);
    assert_logged(&result.log, "Native release of v1.2.3");

    let manifest = f
        .registry
        .manifest("group/app", "v1.2.3")
        .expect("pushed manifest");
    let config = f.registry.image_config("group/app", "v1.2.3").unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], "v1.2.3");
    // The commit the helper checked out: the tag's, as GitLab's payload names it.
    let sha = &job.git.as_ref().expect("a release job has sources").sha;
    assert_eq!(sha.len(), 40);
    assert_eq!(labels["org.opencontainers.image.revision"], sha.as_str());
    assert_eq!(
        labels["org.opencontainers.image.source"],
        format!("https://gitlab.example.com/{}", job.project_path)
    );
    assert_eq!(
        labels["org.opencontainers.image.created"], "2026-11-20T09:00:00+00:00",
        "the commit's time (CI_COMMIT_TIMESTAMP), stable across rebuilds"
    );
    assert!(manifest["layers"].as_array().is_some_and(|l| !l.is_empty()));
    assert!(
        result.log.contains("Pushed ") && result.log.contains("as sha256:"),
        "{}",
        result.log
    );
    assert_logged(&result.log, "layer pushed");
    assert!(result.log.contains("section_start:") && result.log.contains("release_image"));
    assert_no_secrets(&result.log);
}

#[test]
fn rerunning_a_release_reuses_the_existing_image() {
    let f = fixture(&Moto::ecr_password());
    let job = release_job(&f, "build", "v1.2.3", true);
    let first = f.env.runner.run(&job);
    assert_eq!(first.status, Status::Success, "{}", first.log);
    let digest = first
        .log
        .split("as sha256:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(|d| format!("sha256:{d}"))
        .expect("digest in the first log");

    let second = f.env.runner.run(&release_job(&f, "build", "v1.2.3", true));
    assert_eq!(second.status, Status::Success, "{}", second.log);
    assert!(
        second
            .log
            .contains(&format!("is already in the registry as {digest}")),
        "{}",
        second.log
    );
    assert!(!second.log.contains("Step 1/"), "rebuilt:\n{}", second.log);
    assert!(
        !second.log.contains("layer pushed"),
        "pushed again:\n{}",
        second.log
    );
}

#[test]
fn only_version_tags_on_release_stages_trigger_and_mutable_tags_are_refused() {
    let f = fixture(&Moto::ecr_password());
    // A tag the pattern does not match is never a release, whatever its stage.
    for (git_ref, is_tag) in [
        ("v1.2", true),
        ("1.2.3", true),
        ("latest", true),
        ("main", false),
    ] {
        let result = f
            .env
            .runner
            .run(&release_job(&f, "deploy", git_ref, is_tag));
        assert_eq!(result.status, Status::Success, "{git_ref}: {}", result.log);
        assert!(
            result.log.contains("THE JOB SCRIPT RAN"),
            "{git_ref}: {}",
            result.log
        );
        assert!(
            !result.log.contains("Native release"),
            "{git_ref}: {}",
            result.log
        );
    }
    // A loosened pattern still never releases a moving tag.
    let loose = Fixture::new(&Moto::ecr_password(), "[release]\ntag_pattern = '^.+$'");
    let result = loose
        .env
        .runner
        .run(&release_job(&loose, "deploy", "latest", true));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert!(
        result
            .log
            .contains("tag `latest` is mutable and cannot be released"),
        "{}",
        result.log
    );
    assert!(
        result.calls_of("get_sources").is_empty(),
        "failed before cloning"
    );
    assert!(loose.registry.tags("group/app").is_empty());
    assert!(f.registry.tags("group/app").is_empty());

    let result = f
        .env
        .runner
        .run(&release_job(&f, "deploy", "v1.2.3", true).var("ECS_EXECUTOR_NATIVE", "false"));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(result.log.contains("THE JOB SCRIPT RAN"));
}

#[test]
fn a_release_job_missing_inputs_fails_in_prepare_naming_all_of_them() {
    let f = fixture(&Moto::ecr_password());
    let mut job = release_job(&f, "deploy", "v1.2.3", true);
    job.variables
        .retain(|v| v.key != "ECS_SERVICE" && v.key != "ECR_REPOSITORY");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert!(
        result
            .log
            .contains("ECR_REPOSITORY is not set; ECS_SERVICE is not set"),
        "{}",
        result.log
    );
    assert_eq!(
        result.calls_of("prepare").len(),
        1,
        "a job failure is not retried"
    );
    assert!(result.calls_of("get_sources").is_empty());
}

#[test]
fn a_registry_refusing_the_token_fails_clearly_and_nothing_is_pushed() {
    let f = fixture("not-the-ecr-token");
    let result = f.env.runner.run(&release_job(&f, "build", "v1.2.3", true));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        &format!(
            "the registry {} refused the ECR credentials",
            f.registry.host
        ),
    );
    assert!(f.registry.tags("group/app").is_empty());
    assert_no_secrets(&result.log);
}

#[test]
fn oidc_assumes_the_role_with_the_id_token_and_uses_its_credentials() {
    let f = fixture(&Moto::ecr_password());
    let role = format!("arn:aws:iam::{ACCOUNT}:role/gitlab-deploy");
    let job = release_job(&f, "build", "v1.2.3", true)
        .var("AWS_ROLE_ARN", &role)
        .masked("AWS_ID_TOKEN", ID_TOKEN);
    let before = moto().requests().len();
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(
        result
            .log
            .contains(&format!("GitLab OIDC: assuming {role}")),
        "{}",
        result.log
    );

    let requests = moto().requests();
    let bodies = moto().request_bodies();
    let assume = bodies[before..]
        .iter()
        .find(|b| b.contains("Action=AssumeRoleWithWebIdentity"))
        .expect("AssumeRoleWithWebIdentity at moto");
    assert!(
        assume.contains("gitlab-deploy") && assume.contains("WebIdentityToken=eyJ"),
        "{assume}"
    );
    // Other tests share moto and call ECR with the host's keys meanwhile: ours is the call
    // signed with the role's temporary keys (moto hands out ASIA… ids).
    let ecr_auths: Vec<&str> = requests[before..]
        .iter()
        .filter(|r| {
            r["headers"]["X-Amz-Target"]
                .as_str()
                .is_some_and(|t| t.ends_with("GetAuthorizationToken"))
        })
        .filter_map(|r| r["headers"]["Authorization"].as_str())
        .collect();
    assert!(
        ecr_auths.iter().any(|a| a.contains("Credential=ASIA")),
        "ECR was not called with the role's credentials: {ecr_auths:?}"
    );
    assert_no_secrets(&result.log);
}
