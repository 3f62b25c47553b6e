//! `prepare`: pull images and start the job's network, services and job container.

use crate::docker::{
    self, ensure_image, resolve_pull_policy, start_job_environment, DockerError,
    JobEnvironmentSpec, JobNames, RegistryAuth, ServiceSpec,
};
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::protocol::{ImageSpec, JobContext, Outcome, ProtocolError, ALWAYS_SECRET};
use crate::settings::Settings;

use super::release::{classify, JobKind};
use super::StageError;

/// Prepares the job environment; a release job with bad inputs fails here, before cloning.
pub async fn prepare(
    settings: &Settings,
    ctx: &JobContext,
    log: &JobLog,
) -> Result<Outcome, StageError> {
    let release_job = match classify(settings, ctx)? {
        JobKind::Ordinary => false,
        JobKind::OptedOut => {
            log.info("ECS_EXECUTOR_NATIVE=false: this release stage runs the job's own script");
            false
        }
        JobKind::Release(inputs) => {
            log.step(&format!(
                "This job is a native release of {} ({}); its inputs are valid",
                inputs.tag(),
                inputs.image
            ));
            true
        }
    };
    let has_after_script = ctx
        .payload
        .steps
        .iter()
        .any(|s| s.name == "after_script" && !s.script.is_empty());
    if release_job && !has_after_script {
        // The executor itself builds and deploys: the job's image (docker:latest, say) and
        // services (docker:dind) would only cost a pull and a privileged container.
        log.info("The job's image and services are not started: the executor performs the release itself");
        return Ok(Outcome::Success);
    }
    let section = log.section("prepare_docker", "Preparing the Docker job environment");
    let docker = docker::connect(&settings.docker).await?;
    let d = &settings.docker;
    let image = ctx
        .non_empty_var("CI_JOB_IMAGE")
        .unwrap_or(&d.default_image)
        .to_string();
    let auth = registry_auth(ctx)?;

    let check_allowed = |image: &str| {
        if d.image_allowed(image) {
            Ok(())
        } else {
            Err(DockerError::ImageNotAllowed {
                image: image.to_string(),
                allowed: d.allowed_images.clone(),
            })
        }
    };
    check_allowed(&image)?;
    let policy = resolve_pull_policy(
        &ctx.payload.image.pull_policy,
        d.pull_policy,
        &d.allowed_pull_policies,
    )?;
    log.info(&format!(
        "Using image {image} (pull policy {})",
        policy.as_str()
    ));
    let image_ref = ImageRef::parse(&image);
    ensure_image(&docker, &image_ref, policy, auth.for_image(&image_ref), log).await?;

    // A release job keeps its container only for after_script; services would serve nothing.
    let services = if release_job {
        Vec::new()
    } else {
        job_services(ctx)?
    };
    let mut service_specs = Vec::with_capacity(services.len());
    for service in &services {
        check_allowed(&service.name)?;
        let job_policies = ctx
            .payload
            .services
            .iter()
            .find(|s| s.name == service.name)
            .map(|s| s.pull_policy.as_slice())
            .unwrap_or_default();
        let policy = resolve_pull_policy(job_policies, d.pull_policy, &d.allowed_pull_policies)?;
        let service_ref = ImageRef::parse(&service.name);
        ensure_image(
            &docker,
            &service_ref,
            policy,
            auth.for_image(&service_ref),
            log,
        )
        .await?;
        service_specs.push(ServiceSpec {
            image: service.name.clone(),
            alias: service.alias.clone(),
            entrypoint: service.entrypoint.clone(),
            command: service.command.clone(),
            env: service_env(ctx, service),
        });
    }

    for dir in [&settings.builds_dir, &settings.cache_dir] {
        std::fs::create_dir_all(dir).map_err(StageError::host(format!(
            "create host directory {}",
            dir.display()
        )))?;
    }
    let mut binds = vec![
        format!("{0}:{0}", settings.builds_dir.display()),
        format!("{0}:{0}", settings.cache_dir.display()),
    ];
    binds.extend(d.volumes.iter().cloned());

    let names = JobNames::new(&ctx.identity);
    let spec = JobEnvironmentSpec {
        names: names.clone(),
        image: image.clone(),
        entrypoint: ctx.payload.image.entrypoint.clone().map(|e| {
            // `entrypoint: []` and `entrypoint: [""]` both mean "no entrypoint".
            if e.is_empty() {
                vec![String::new()]
            } else {
                e
            }
        }),
        binds,
        nano_cpus: (d.cpus > 0.0).then_some((d.cpus * 1e9) as i64),
        memory: d.memory.bytes(),
        services: service_specs,
    };
    start_job_environment(&docker, &spec, log).await?;
    log.info(&format!(
        "Job container {} is running {image} ({:.1} s)",
        names.job_container(),
        section.elapsed().as_secs_f64()
    ));
    Ok(Outcome::Success)
}

fn registry_auth(ctx: &JobContext) -> Result<RegistryAuth, StageError> {
    let ci_registry = match (
        ctx.non_empty_var("CI_REGISTRY"),
        ctx.non_empty_var("CI_REGISTRY_USER"),
        ctx.non_empty_var("CI_REGISTRY_PASSWORD"),
    ) {
        (Some(r), Some(u), Some(p)) => Some((r, u, p)),
        _ => None,
    };
    Ok(RegistryAuth::from_job(
        ctx.var("DOCKER_AUTH_CONFIG"),
        ci_registry,
    )?)
}

/// `CI_JOB_SERVICES`: a JSON list, empty string when the job has no services.
fn job_services(ctx: &JobContext) -> Result<Vec<ImageSpec>, StageError> {
    let Some(text) = ctx.non_empty_var("CI_JOB_SERVICES") else {
        return Ok(Vec::new());
    };
    let services: Vec<ImageSpec> =
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidVariable {
            name: "CUSTOM_ENV_CI_JOB_SERVICES".into(),
            reason: format!("is not the runner's JSON list of services: {e}"),
        })?;
    Ok(services
        .into_iter()
        .filter(|s| !s.name.is_empty())
        .collect())
}

/// A service sees the job's ordinary variables (as with the docker executor, so that
/// `POSTGRES_PASSWORD` set on the job configures a postgres service) and its own, but no
/// masked variable or credential.
fn service_env(ctx: &JobContext, service: &ImageSpec) -> Vec<String> {
    let job = ctx
        .payload
        .variables
        .iter()
        .filter(|v| !v.masked && !v.file && !ALWAYS_SECRET.contains(&v.key.as_str()))
        .filter(|v| !service.variables.contains_key(&v.key))
        .map(|v| format!("{}={}", v.key, v.value));
    job.chain(service.variables.iter().map(|(k, v)| format!("{k}={v}")))
        .collect()
}
