//! The release image as users' Dockerfiles need it: BuildKit syntax (cache and secret
//! mounts, build arguments, a target stage), the task definition's platform, digest pinning,
//! the report files, and no image left behind on the runner host.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::release::{Fixture, FAMILY};
use crate::support::scripted_ecs::{Script, ScriptedEcs};
use crate::support::task_definitions::base_tags;
use crate::support::*;

fn fixture(extra: &str) -> Fixture {
    Fixture::new(&stand_ins::Moto::ecr_password(), extra)
}

/// The images on the engine whose name starts with `prefix`.
fn images_named(prefix: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .expect("docker cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_buildkit_dockerfile_with_a_cache_mount_build_arguments_and_a_target_releases() {
    let f = fixture("");
    f.commit_file(
        "Dockerfile",
        &format!(
            "FROM {base} AS build\n\
             RUN --mount=type=cache,target=/cache date > /cache/last-build && cp /cache/last-build /built-at\n\
             FROM {base} AS runtime\n\
             ARG APP_ENV\n\
             COPY --from=build /built-at /built-at\n\
             RUN --mount=type=cache,target=/cache echo \"built for $APP_ENV\" > /built-for\n\
             COPY app.sh /app.sh\n\
             FROM {base} AS broken\n\
             RUN false\n",
            base = f.base()
        ),
    );
    f.tag("v2.0.0");
    let job = f
        .job("build", "v2.0.0", true)
        .masked("APP_ENV", "staging-eu-west")
        .var("DOCKER_BUILD_ARGS", "APP_ENV,RELEASE_CHANNEL=beta")
        .var("DOCKER_BUILD_TARGET", "runtime");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    // BuildKit's own progress, step by step.
    assert!(
        result
            .log
            .lines()
            .any(|l| l.starts_with('#') && l.contains("RUN --mount=type=cache")),
        "{}",
        result.log
    );
    assert!(
        result
            .log
            .lines()
            .any(|l| l.starts_with('#') && l.contains(" DONE ")),
        "{}",
        result.log
    );
    assert!(
        !result.log.contains("staging-eu-west"),
        "a build argument's value leaked:\n{}",
        result.log
    );
    let config = f.registry.image_config("group/app", "v2.0.0").unwrap();
    let history = config["history"].to_string();
    assert!(history.contains("APP_ENV=staging-eu-west"), "{history}");
    assert!(
        !history.contains("RUN false"),
        "the target stage stops the build: {history}"
    );
    // Labels come without build steps.
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.version"],
        "v2.0.0"
    );
    // The registry has the release; the host keeps no tagged copy of it.
    assert!(f.registry.manifest("group/app", "v2.0.0").is_some());
    assert_eq!(images_named(&f.registry.host), Vec::<String>::new());
}

#[test]
fn a_secret_mount_gets_the_named_variable_and_it_reaches_no_layer_and_no_log() {
    let f = fixture("");
    let secret = "npm-token-0123456789abcdef";
    f.commit_file(
        "Dockerfile",
        &format!(
            "FROM {}\n\
             RUN --mount=type=secret,id=NPM_TOKEN case \"$(cat /run/secrets/NPM_TOKEN)\" in npm-token-*) echo seen > /secret-was-there ;; *) exit 1 ;; esac\n\
             COPY app.sh /app.sh\n",
            f.base()
        ),
    );
    f.tag("v2.1.0");
    let job = f
        .job("build", "v2.1.0", true)
        .masked("NPM_TOKEN", secret)
        .var("DOCKER_BUILD_SECRETS", "NPM_TOKEN");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "with BuildKit and the secrets NPM_TOKEN");
    assert!(!result.log.contains(secret), "{}", result.log);
    let config = f.registry.image_config("group/app", "v2.1.0").unwrap();
    assert!(!config.to_string().contains(secret), "{config}");

    // A secret the job does not have fails before anything is built.
    f.tag("v2.1.1");
    let result = f.env.runner.run(
        &f.job("build", "v2.1.1", true)
            .var("DOCKER_BUILD_SECRETS", "MISSING_TOKEN"),
    );
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        "DOCKER_BUILD_SECRETS names `MISSING_TOKEN`, which is not set",
    );
}

/// A service whose task definition runs on `arch` (`X86_64` or `ARM64`).
fn service_on(f: &mut Fixture, arch: &str) -> ScriptedEcs {
    let mut td = crate::support::release::task_definition(&format!("{}:v1.2.2", f.repository()));
    td["runtimePlatform"] = json!({"cpuArchitecture": arch, "operatingSystemFamily": "LINUX"});
    let ecs = ScriptedEcs::start(
        crate::support::release::CLUSTER,
        crate::support::release::SERVICE,
        td,
        base_tags(),
        Script::default(),
    );
    f.use_ecs(&ecs);
    ecs
}

#[test]
fn an_image_for_another_platform_is_refused_before_anything_is_registered() {
    let mut f = fixture("");
    // v1.2.3 is pushed for this host's platform (amd64) by a build-stage job.
    let pushed = f.env.runner.run(&f.job("build", "v1.2.3", true));
    assert_eq!(pushed.status, Status::Success, "{}", pushed.log);
    let ecs = service_on(&mut f, "ARM64");
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        "is built for linux/amd64 but the service's task definition runs on linux/arm64",
    );
    assert!(ecs.requests("RegisterTaskDefinition").is_empty());
    assert!(ecs.service_task_definition().ends_with(":1"));
}

#[test]
fn pin_digest_registers_the_image_by_the_digest_the_registry_has() {
    let mut f = fixture("[release]\npin_digest = true");
    let ecs = service_on(&mut f, "X86_64");
    let job = f.job("deploy", "v1.2.3", true);
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(
        &result.log,
        "Building for linux/amd64, the task definition's platform",
    );
    let digest = f
        .registry
        .manifest_digest("group/app", "v1.2.3")
        .expect("the pushed manifest's digest");
    let (td, _) = ecs.task_definition(&ecs.service_task_definition());
    let pinned = format!("{}:v1.2.3@{digest}", f.repository());
    assert_eq!(td["containerDefinitions"][1]["image"], pinned.as_str());
    let env = f.env.project_file(&job, "ecs-release.env").unwrap();
    assert!(
        env.contains(&format!("ECS_RELEASE_IMAGE_URI={pinned}\n")),
        "{env}"
    );
    // The annotations report links the image and the service's deployments.
    let annotations: Value = serde_json::from_str(
        &f.env
            .project_file(&job, "ecs-release-annotations.json")
            .expect("the annotations report"),
    )
    .unwrap();
    let links = annotations["ECS release"].as_array().unwrap();
    assert!(links[0]["external_link"]["label"]
        .as_str()
        .unwrap()
        .contains(&digest));
    assert!(links[1]["external_link"]["url"]
        .as_str()
        .unwrap()
        .contains("/ecs/v2/clusters/your-cluster-name/services/your-service-name/deployments"));
}

#[test]
fn a_field_the_sdk_does_not_know_stops_the_release_before_registering() {
    let mut f = fixture("");
    let mut td = crate::support::release::task_definition(&format!("{}:v1.2.2", f.repository()));
    // Fields a newer ECS returns that this binary's SDK does not know.
    td["someFieldFrom2027"] = json!({"mode": "strict"});
    td["containerDefinitions"][1]["containerFieldFrom2027"] = json!(true);
    let ecs = ScriptedEcs::start(
        crate::support::release::CLUSTER,
        crate::support::release::SERVICE,
        td,
        base_tags(),
        Script::default(),
    );
    f.use_ecs(&ecs);
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "someFieldFrom2027");
    assert_logged(
        &result.log,
        "containerDefinitions[app].containerFieldFrom2027",
    );
    assert_logged(&result.log, "upgrade gitlab-ecs-executor");
    assert!(ecs.requests("RegisterTaskDefinition").is_empty());
    assert!(ecs.requests("UpdateService").is_empty());
    let _ = FAMILY;
}

#[test]
fn a_base_image_without_the_task_platforms_variant_names_both_platforms() {
    let mut f = fixture("");
    let ecs = service_on(&mut f, "ARM64");
    // A base only this host has, for its own platform, as an offline runner's would be.
    f.commit_file(
        "Dockerfile",
        &format!("FROM {}\nCMD [\"true\"]\n", base_image()),
    );
    f.tag("v1.2.4");
    let result = f.env.runner.run(&f.job("deploy", "v1.2.4", true));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    let line = result
        .log
        .lines()
        .find(|l| l.contains("linux/arm64") && l.contains("linux/amd64"))
        .unwrap_or_else(|| panic!("no line names both platforms:\n{}", result.log));
    assert!(line.contains("base image"), "{line}");
    assert!(ecs.requests("RegisterTaskDefinition").is_empty());
}
