//! `doctor`: one line per check of what a release needs — settings, the default image, the
//! Docker engine, the given inputs and tag, AWS identity, the ECR repository, the ECS service
//! and its task definition — and a non-zero exit if any fails.

use std::path::Path;

use super::Target;
use crate::aws::{self, CallError};
use crate::docker::{self, volumes};
use crate::image_ref::ImageRef;
use crate::release::ecs::{short_td, Ecs, SdkEcs};
use crate::release::inputs::{self, Requester, ServiceAccess};
use crate::release::taskdef;
use crate::settings::{PullPolicy, Settings};

/// The result of one check.
enum Check {
    Ok(String),
    /// Works, but something is worth knowing; not a failure.
    Warn(String),
    Fail(String),
    Skip(String),
}

fn print(name: &str, check: &Check) {
    let (mark, text) = match check {
        Check::Ok(t) => ("[ ok ]", t),
        Check::Warn(t) => ("[warn]", t),
        Check::Fail(t) => ("[FAIL]", t),
        Check::Skip(t) => ("[skip]", t),
    };
    println!("{mark} {name}: {text}");
}

/// How many project volumes there are and how much they hold.
async fn project_volumes(docker: &bollard::Docker, settings: &Settings) -> Check {
    let mut listed = match volumes::list(docker).await {
        Ok(v) => v,
        Err(e) => return Check::Fail(e.to_string()),
    };
    let projects: std::collections::HashSet<&str> =
        listed.iter().map(|v| v.project.as_str()).collect();
    let projects = projects.len();
    let image = match docker::image_on_host(docker, &settings.docker).await {
        Ok(Some(image)) => image,
        Ok(None) => {
            return Check::Ok(format!(
                "{} volume(s) of {projects} project(s); size unknown (no helper image on the host)",
                listed.len()
            ))
        }
        Err(e) => return Check::Fail(e.to_string()),
    };
    if let Err(e) = volumes::measure(docker, &mut listed, &image).await {
        return Check::Fail(e.to_string());
    }
    let bytes: i64 = listed.iter().filter_map(|v| v.size).sum();
    Check::Ok(format!(
        "{} volume(s) of {projects} project(s), {:.1} MiB; `prune --older-than 7d` removes stale ones",
        listed.len(),
        bytes as f64 / (1024.0 * 1024.0)
    ))
}

/// Whether jobs without an image can run: `docker.default_image` on the host, or pullable
/// under the pull policies prepare would use. (Like the docker executor, prepare always
/// allows the operator's own default image, whatever `docker.allowed_images` says.)
async fn default_image(docker: &bollard::Docker, settings: &Settings) -> Check {
    let name = settings.docker.default_image.trim();
    let image = ImageRef::parse(name);
    let policies = match docker::effective_policies(&image, &[], &settings.docker) {
        Ok(p) => p,
        Err(e) => return Check::Fail(e.to_string()),
    };
    match docker::image_present(docker, name).await {
        Ok(true) => Check::Ok(format!("{image} is on the host")),
        // Policies are tried in order: only a list of nothing but `never` cannot pull.
        Ok(false) if policies.iter().all(|p| *p == PullPolicy::Never) => Check::Fail(format!(
            "{image} is not on the host and its pull policy is never: load it (docker load) \
             or allow pulling in docker.pull_policy"
        )),
        Ok(false) => Check::Warn(format!(
            "{image} is not on the host: the first job without an image pulls it"
        )),
        Err(e) => Check::Fail(e.to_string()),
    }
}

/// The task definition the service runs, against `--task-definition` and `--container`,
/// judged as a release would judge it.
async fn service_task_definition(ecs: &SdkEcs, running: &str, access: &ServiceAccess) -> Check {
    let td = match ecs.task_definition(running).await {
        Ok(td) => td.definition,
        Err(e) => return Check::Fail(e.to_string()),
    };
    let target = &access.target;
    if let Some(family) = &target.task_definition {
        if let Err(e) = taskdef::check_family(&td, family, &target.names) {
            return Check::Fail(e.to_string());
        }
    }
    let repository = access.repository.as_deref().unwrap_or_default();
    match taskdef::target_containers(&td, &target.containers, repository, &target.names) {
        Ok(chosen) => Check::Ok(format!(
            "{}: a release replaces the image of {}",
            short_td(running),
            chosen
                .iter()
                .filter_map(|i| td.container_definitions().get(*i))
                .map(|c| c.name().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(e) => Check::Fail(e.to_string()),
    }
}

/// Runs every check; returns how many failed. `settings` is the loaded result, so a broken
/// settings file is reported as a check too.
pub async fn doctor(
    settings: Result<Settings, String>,
    settings_source: &Path,
    target: &Target,
) -> usize {
    let mut failed = 0;
    let mut report = |name: &str, check: Check| {
        if matches!(check, Check::Fail(_)) {
            failed += 1;
        }
        print(name, &check);
    };
    let settings = match settings {
        Ok(s) => {
            report(
                "settings",
                Check::Ok(format!("{} loaded", settings_source.display())),
            );
            s
        }
        Err(e) => {
            report("settings", Check::Fail(e));
            Settings::default()
        }
    };
    let engine = docker::connect(&settings.docker).await;
    report(
        "docker engine",
        match &engine {
            Ok(d) => match d.version().await {
                Ok(v) => Check::Ok(format!(
                    "engine {} (API {})",
                    v.version.unwrap_or_default(),
                    v.api_version.unwrap_or_default()
                )),
                Err(e) => Check::Fail(e.to_string()),
            },
            Err(e) => Check::Fail(e.to_string()),
        },
    );
    report(
        "project volumes",
        match &engine {
            Ok(d) => project_volumes(d, &settings).await,
            Err(_) => Check::Skip("no Docker engine".into()),
        },
    );
    report(
        "default image",
        match &engine {
            Ok(d) => default_image(d, &settings).await,
            Err(_) => Check::Skip("no Docker engine".into()),
        },
    );
    let problems = inputs::check_given(target);
    report(
        "inputs",
        match problems.is_empty() {
            true => Check::Ok("every input given is well formed".into()),
            false => Check::Fail(problems.join("; ")),
        },
    );
    report(
        "tag",
        match target.tag.as_deref().filter(|t| !t.trim().is_empty()) {
            None => Check::Skip("no tag (--tag or CI_COMMIT_TAG)".into()),
            Some(tag) => match target.release_tag(&settings.release) {
                Ok(_) => Check::Ok(format!("{tag} would be released")),
                Err(e) => Check::Fail(e.to_string()),
            },
        },
    );

    let region = match inputs::region(target, &settings.aws) {
        Ok(region) => region,
        Err(e) => {
            for name in ["aws identity", "ecr repository", "ecs service"] {
                report(name, Check::Skip(e.problems.join("; ")));
            }
            return failed;
        }
    };
    let credentials = match inputs::credentials(target, &settings.aws, Requester::Operator) {
        Ok(c) => c,
        Err(e) => {
            report("aws identity", Check::Fail(e.to_string()));
            return failed;
        }
    };
    let temp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => {
            report(
                "aws identity",
                Check::Fail(format!("cannot create a temp dir: {e}")),
            );
            return failed;
        }
    };
    let session = match aws::session_with(
        &region,
        &credentials,
        temp.path(),
        aws::Persistence::Probe,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            report("aws identity", Check::Fail(e.to_string()));
            return failed;
        }
    };
    let sts = aws_sdk_sts::Client::new(&session.config);
    report(
        "aws identity",
        match sts.get_caller_identity().send().await {
            Ok(id) => Check::Ok(format!("{} in {region}", id.arn().unwrap_or("?"))),
            Err(e) => Check::Fail(CallError::from_sdk("sts:GetCallerIdentity", e).to_string()),
        },
    );
    report(
        "ecr repository",
        match &target.repository {
            None => Check::Skip("no repository (--repository or ECR_REPOSITORY)".into()),
            Some(repo) => {
                let ecr = aws_sdk_ecr::Client::new(&session.config);
                match ecr
                    .describe_repositories()
                    .repository_names(repo)
                    .send()
                    .await
                {
                    Ok(out) => Check::Ok(format!(
                        "{} (tags {})",
                        out.repositories()
                            .first()
                            .and_then(|r| r.repository_uri())
                            .unwrap_or(repo),
                        out.repositories()
                            .first()
                            .and_then(|r| r.image_tag_mutability())
                            .map(|m| m.as_str().to_lowercase())
                            .unwrap_or_else(|| "?".into())
                    )),
                    Err(e) => {
                        Check::Fail(CallError::from_sdk("ecr:DescribeRepositories", e).to_string())
                    }
                }
            }
        },
    );
    let ecs = match (&target.cluster, &target.service) {
        (Some(cluster), Some(service)) => Some(SdkEcs::new(
            aws_sdk_ecs::Client::new(&session.config),
            cluster,
            service,
        )),
        _ => None,
    };
    let mut running = None;
    report(
        "ecs service",
        match (&ecs, &target.cluster, &target.service) {
            (Some(ecs), Some(cluster), Some(service)) => match ecs.describe_service().await {
                Ok(s) => {
                    running = s.task_definition().map(str::to_string);
                    Check::Ok(format!(
                        "{service} in {cluster}: {} running {}/{}, status {}",
                        s.task_definition().map(short_td).unwrap_or("?"),
                        s.running_count(),
                        s.desired_count(),
                        s.status().unwrap_or("?")
                    ))
                }
                Err(e) => Check::Fail(e.to_string()),
            },
            _ => Check::Skip("no service (--cluster/--service or ECS_CLUSTER/ECS_SERVICE)".into()),
        },
    );
    report(
        "task definition",
        match (
            &ecs,
            &running,
            inputs::collect_service(target, &settings.aws),
        ) {
            (Some(ecs), Some(arn), Ok(access)) => service_task_definition(ecs, arn, &access).await,
            (Some(_), Some(_), Err(e)) => Check::Skip(format!(
                "not judged while an input is unusable ({})",
                e.problems.join("; ")
            )),
            _ => Check::Skip("no service to read it from".into()),
        },
    );
    failed
}
