//! `prepare`: the job's images, its project volumes, its services (started and waited for),
//! and its helper and build containers, created for `run` to start once per stage.

use std::time::Instant;

use bollard::Docker;

use super::release::{classify, JobKind};
use super::StageError;
use crate::docker::{
    self, create_build_container, create_helper_container, create_job_network, effective_policies,
    ensure_helper, ensure_image, guard_host, remove_job_objects, start_services, volumes,
    BuildOptions, ContainerSpec, Credentials, DockerError, ImageOrigin, JobNames, ProjectVolumes,
    ServicePlan, ServiceSpec,
};
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::protocol::{expand, ImageSpec, JobContext, Outcome, ProtocolError, ALWAYS_SECRET};
use crate::release::ecs::HookAction;
use crate::settings::Settings;

/// What the job needs of the Docker environment.
struct Needs {
    /// The build container: user steps in the job's image.
    build: bool,
    /// The services (never for a release job: they would serve nothing).
    services: bool,
}

/// What a job the executor performs itself needs: the job's image (docker:latest, say)
/// only for after_script and extra steps (`release:`), services never.
fn native_job(ctx: &JobContext, log: &JobLog) -> Needs {
    let extra_steps = ctx
        .payload
        .steps
        .iter()
        .any(|s| s.name != "script" && !s.script.is_empty());
    if !extra_steps {
        log.info(
            "The job's image and services are not started: the executor performs the job itself",
        );
    }
    Needs {
        build: extra_steps,
        services: false,
    }
}

/// Prepares the job environment; a release job with bad inputs fails here, before cloning.
pub async fn prepare(
    settings: &Settings,
    ctx: &JobContext,
    log: &JobLog,
) -> Result<Outcome, StageError> {
    let needs = match classify(settings, ctx)? {
        JobKind::Ordinary => Needs {
            build: true,
            services: true,
        },
        JobKind::OptedOut => {
            log.info("ECS_EXECUTOR_NATIVE=false: this release stage runs the job's own script");
            Needs {
                build: true,
                services: true,
            }
        }
        JobKind::Release(inputs) => {
            log.step(&format!(
                "This job is a native release of {} ({}); its inputs are valid",
                inputs.tag(),
                inputs.image
            ));
            native_job(ctx, log)
        }
        JobKind::Continue(inputs) => {
            log.step(&format!(
                "This job decides the approval gate of service {}: {}",
                inputs.access.target.service,
                match inputs.action {
                    HookAction::Continue => "continue the deployment",
                    HookAction::Rollback => "roll the deployment back",
                }
            ));
            native_job(ctx, log)
        }
    };
    let section = log.section("prepare_docker", "Preparing the Docker job environment");
    let started = Instant::now();
    let docker = docker::connect(&settings.docker).await?;
    let names = JobNames::new(&ctx.identity);
    // Leftovers of an earlier attempt of this same job would collide by name.
    remove_job_objects(&docker, &names).await;
    let result = prepare_all(&docker, settings, ctx, &names, &needs, log).await;
    if result.is_err() {
        // A failed prepare leaves nothing behind, even if cleanup never comes.
        remove_job_objects(&docker, &names).await;
    }
    result?;
    drop(section);
    log.info(&format!(
        "Job environment ready in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(Outcome::Success)
}

async fn prepare_all(
    docker: &Docker,
    settings: &Settings,
    ctx: &JobContext,
    names: &JobNames,
    needs: &Needs,
    log: &JobLog,
) -> Result<(), StageError> {
    let d = &settings.docker;
    let credentials = Credentials::new(super::auth_sources(ctx));
    let helper = ensure_helper(docker, d, ctx.var("CI_RUNNER_VERSION"), &credentials, log).await?;
    log.info(&format!("Using helper image {helper}"));

    let build = if needs.build {
        Some(job_image(docker, settings, ctx, &credentials, log).await?)
    } else {
        None
    };
    let services = if needs.services {
        job_services(docker, settings, ctx, &credentials, log).await?
    } else {
        Vec::new()
    };

    let volumes = ProjectVolumes::new(&ctx.identity);
    let binds = volumes::project_binds(docker, &volumes, names, settings).await?;
    let network = network(docker, settings, names).await?;
    if !services.is_empty() {
        let plan = ServicePlan {
            names,
            network: &network,
            binds: &binds,
            helper_image: &helper.to_string(),
        };
        start_services(docker, &plan, &services, d, log).await?;
    }

    let hostname = Some(d.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| volumes.hostname().to_string());
    let env = job_env(ctx, settings);
    let helper_spec = ContainerSpec {
        name: names.helper_container(),
        image: helper.to_string(),
        labels: names.labels("helper"),
        env: env.clone(),
        binds: binds.clone(),
        hostname: hostname.clone(),
        network: Some(network.clone()),
    };
    let builds_dir = settings.builds_dir.display().to_string();
    let cache_dir = settings.cache_dir.display().to_string();
    create_helper_container(docker, &helper_spec, d, &builds_dir, &cache_dir).await?;
    if let Some((image, options)) = build {
        let spec = ContainerSpec {
            name: names.build_container(),
            image: image.to_string(),
            labels: names.labels("build"),
            env,
            binds,
            hostname,
            network: Some(network),
        };
        create_build_container(docker, &spec, d, &options).await?;
    }
    volumes::mark_used(docker, &names.helper_container(), &builds_dir).await?;
    Ok(())
}

/// The job's image, allowed, present, and how its container runs.
async fn job_image(
    docker: &Docker,
    settings: &Settings,
    ctx: &JobContext,
    credentials: &Credentials,
    log: &JobLog,
) -> Result<(ImageRef, BuildOptions), StageError> {
    let d = &settings.docker;
    let (name, origin) = match ctx.non_empty_var("CI_JOB_IMAGE") {
        Some(image) => (image, ImageOrigin::Job),
        None => (
            d.default_image.as_str(),
            ImageOrigin::Settings("docker.default_image"),
        ),
    };
    // The operator's own default image is always allowed, as with the docker executor.
    if origin == ImageOrigin::Job && !d.image_allowed(name) {
        return Err(DockerError::ImageNotAllowed {
            image: name.to_string(),
            allowed: d.allowed_images.clone(),
        }
        .into());
    }
    let image = ImageRef::parse(name);
    let spec = &ctx.payload.image;
    let policies = effective_policies(&image, &spec.pull_policy, d)?;
    log.info(&format!(
        "Using image {image} with pull policies [{}]",
        policies
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ensure_image(docker, &image, origin, &policies, credentials, log).await?;
    let options = &spec.executor_opts.docker;
    let user = Some(d.user.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| options.user.clone());
    if let Some(user) = &user {
        if !d.user_allowed(user) {
            return Err(DockerError::UserNotAllowed {
                user: user.clone(),
                allowed: if d.allowed_users.is_empty() {
                    vec![d.user.clone()]
                } else {
                    d.allowed_users.clone()
                },
            }
            .into());
        }
    }
    let privileged = d.privileged_job(name);
    if privileged {
        log.info(&format!("The job container of {image} runs privileged"));
    }
    Ok((
        image,
        BuildOptions {
            builds_dir: settings.builds_dir.display().to_string(),
            entrypoint: spec.entrypoint.clone(),
            user,
            privileged,
            platform: options.platform.clone(),
        },
    ))
}

/// The job's services (`CI_JOB_SERVICES`), allowed, within the limit, present.
async fn job_services(
    docker: &Docker,
    settings: &Settings,
    ctx: &JobContext,
    credentials: &Credentials,
    log: &JobLog,
) -> Result<Vec<ServiceSpec>, StageError> {
    let d = &settings.docker;
    let Some(text) = ctx.non_empty_var("CI_JOB_SERVICES") else {
        return Ok(Vec::new());
    };
    let listed: Vec<ImageSpec> =
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidVariable {
            name: "CUSTOM_ENV_CI_JOB_SERVICES".into(),
            reason: format!("is not the runner's JSON list of services: {e}"),
        })?;
    let listed: Vec<ImageSpec> = listed.into_iter().filter(|s| !s.name.is_empty()).collect();
    if let Some(limit) = d.services_limit.filter(|l| listed.len() as i64 > *l) {
        return Err(DockerError::TooManyServices {
            requested: listed.len(),
            limit,
        }
        .into());
    }
    let mut specs = Vec::with_capacity(listed.len());
    for service in &listed {
        if !d.service_allowed(&service.name) {
            return Err(DockerError::ServiceNotAllowed {
                image: service.name.clone(),
                allowed: d.allowed_services.clone(),
            }
            .into());
        }
        // The payload carries what CI_JOB_SERVICES leaves out: pull policies, every alias;
        // but as GitLab sent it, before the runner expanded names and aliases.
        let expand = |text: &str| expand::expand(text, &|k| ctx.var(k).map(str::to_string));
        let full = ctx
            .payload
            .services
            .iter()
            .find(|s| expand(&s.name) == service.name);
        let image = ImageRef::parse(&service.name);
        let job_policies = full.map(|s| s.pull_policy.as_slice()).unwrap_or_default();
        let policies = effective_policies(&image, job_policies, d)?;
        ensure_image(
            docker,
            &image,
            ImageOrigin::Job,
            &policies,
            credentials,
            log,
        )
        .await?;
        specs.push(ServiceSpec {
            image: service.name.clone(),
            alias: full
                .map(|s| expand(&s.alias))
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| service.alias.clone()),
            entrypoint: service.entrypoint.clone(),
            command: service.command.clone(),
            env: service_env(ctx, service),
            privileged: d.privileged_service(&service.name),
        });
    }
    Ok(specs)
}

/// The job's network: the one settings name, else one of its own (services or not), kept
/// from the runner host and the metadata addresses unless settings let jobs reach them.
async fn network(
    docker: &Docker,
    settings: &Settings,
    names: &JobNames,
) -> Result<String, StageError> {
    let d = &settings.docker;
    if !d.network_mode.is_empty() {
        return Ok(d.network_mode.clone());
    }
    let guarded = !d.jobs_may_reach_host;
    if guarded {
        guard_host().await?;
    }
    Ok(create_job_network(docker, names, guarded).await?)
}

/// The job's variables as the containers' environment, as the docker executor passes them:
/// file-type variables as the path the runner's scripts write them to. Masked variables and
/// credentials are left out: the runner's stage scripts export every variable anyway, and
/// the containers' configuration is readable by whoever may inspect them.
fn job_env(ctx: &JobContext, settings: &Settings) -> Vec<String> {
    let project_dir = ctx
        .non_empty_var("CI_PROJECT_DIR")
        .map(str::to_string)
        .unwrap_or_else(|| settings.builds_dir.display().to_string());
    let files: Vec<&str> = ctx
        .payload
        .variables
        .iter()
        .filter(|v| v.file)
        .map(|v| v.key.as_str())
        .collect();
    let masked: Vec<&str> = ctx
        .payload
        .variables
        .iter()
        .filter(|v| v.masked)
        .map(|v| v.key.as_str())
        .collect();
    ctx.vars()
        .iter()
        .filter(|(k, _)| k.as_str() != "CI_JOB_SERVICES")
        .filter(|(k, _)| !masked.contains(&k.as_str()) && !ALWAYS_SECRET.contains(&k.as_str()))
        .map(|(k, v)| {
            if files.contains(&k.as_str()) {
                format!("{k}={project_dir}.tmp/{k}")
            } else {
                format!("{k}={v}")
            }
        })
        .collect()
}

/// A service sees the job's public variables (as with the docker executor, so that
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
