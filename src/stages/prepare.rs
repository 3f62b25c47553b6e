//! `prepare`: the job's images, its project volumes, its services (started and waited for),
//! and its helper and build containers, created for `run` to start once per stage.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use bollard::Docker;

use super::release::{classify, JobKind};
use super::StageError;
use crate::docker::volumes::Checkout;
use crate::docker::LOCAL_HELPER_IMAGE;
use crate::docker::{
    self, create_build_container, create_helper_container, create_job_network, effective_policies,
    ensure_helper, ensure_image, guard_host, remove_job_objects, start_services, volumes,
    BuildOptions, ContainerSpec, Credentials, DockerError, ImageOrigin, JobNames, ProjectVolumes,
    ServicePlan, ServiceSpec,
};
use crate::ecs_jobs;
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::protocol::{requested_services, JobContext, Outcome, ALWAYS_SECRET};
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
    let kind = classify(settings, ctx)?;
    let needs = match &kind {
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
    let started = Instant::now();
    let section = match kind.ecs_jobs(settings) {
        Some(jobs) => {
            let section = log.section("prepare_ecs", "Preparing the ECS job environment");
            ecs_jobs::prepare(settings, jobs, ctx, log).await?;
            section
        }
        None => {
            let section = log.section("prepare_docker", "Preparing the Docker job environment");
            prepare_docker(settings, ctx, &needs, log).await?;
            section
        }
    };
    drop(section);
    log.info(&format!(
        "Job environment ready in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(Outcome::Success)
}

/// The job's containers, network and volumes on the runner host's engine.
async fn prepare_docker(
    settings: &Settings,
    ctx: &JobContext,
    needs: &Needs,
    log: &JobLog,
) -> Result<(), StageError> {
    let docker = docker::connect(&settings.docker).await?;
    let names = JobNames::new(&ctx.identity);
    // Leftovers of an earlier attempt of this same job would collide by name.
    remove_job_objects(&docker, &names).await;
    let result = prepare_all(&docker, settings, ctx, &names, needs, log).await;
    if result.is_err() {
        // A failed prepare leaves nothing behind, even if cleanup never comes.
        remove_job_objects(&docker, &names).await;
    }
    result
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
    if helper.to_string() == LOCAL_HELPER_IMAGE {
        warn_local_helper(ctx, log);
    }

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
    let checkout = checkout(ctx);
    let binds = volumes::project_binds(docker, &volumes, names, checkout, settings).await?;
    let network = network(docker, settings, names).await?;
    let mut links = Vec::new();
    if !services.is_empty() {
        let plan = ServicePlan {
            names,
            network: &network,
            binds: &binds,
            helper_image: &helper.to_string(),
        };
        links = start_services(docker, &plan, &services, d, log).await?;
        if ctx.var("CI_DEBUG_SERVICES") == Some("true") {
            docker::show_service_logs(docker, names, log).await;
        }
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
        links: Vec::new(),
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
            links,
        };
        create_build_container(docker, &spec, d, &options).await?;
    }
    volumes::mark_used(docker, &names.helper_container(), &builds_dir).await?;
    Ok(())
}

/// Whether the job's checkout goes into the project's builds volume, kept from job to job,
/// or a volume of its own: as with the docker executor, only `GIT_STRATEGY: fetch` (the
/// default where the project allows it) reuses one, so a `none`, `clone` or `empty` job
/// never finds what another branch left there.
fn checkout(ctx: &JobContext) -> Checkout {
    let strategy = ctx
        .non_empty_var("GIT_STRATEGY")
        .unwrap_or(match ctx.payload.allow_git_fetch {
            true => "fetch",
            false => "clone",
        });
    match strategy {
        "fetch" => Checkout::Reused,
        _ => Checkout::Fresh,
    }
}

/// The local helper keeps artifacts and caches on the runner host and has no Git LFS:
/// a job that counts on GitLab for them hears so.
fn warn_local_helper(ctx: &JobContext, log: &JobLog) {
    let p = &ctx.payload;
    let mut needs = Vec::new();
    if !p.artifacts.is_empty() {
        needs.push("its artifacts and reports are kept on this host, not uploaded to GitLab");
    }
    if !p.dependencies.is_empty() {
        needs.push("artifacts of earlier jobs are read from this host, not downloaded from GitLab");
    }
    if !p.cache.is_empty() {
        needs.push("its cache is kept on this host, never in the runner's distributed cache");
    }
    if !needs.is_empty() {
        log.warn(&format!(
            "This job runs with the helper image {LOCAL_HELPER_IMAGE} built on this host: {}. \
             Name GitLab's helper image in docker.helper_image for them to reach GitLab.",
            needs.join("; ")
        ));
    }
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
    // `docker: user/platform` may name variables, as the docker executor expands them.
    let expand = |text: &str| ctx.expanded(text);
    let options = &spec.executor_opts.docker;
    let platform = options.platform.as_deref().map(&expand);
    ensure_image(
        docker,
        &image,
        origin,
        &policies,
        platform.as_deref(),
        credentials,
        log,
    )
    .await?;
    let user = Some(d.user.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| options.user.as_deref().map(&expand));
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
            platform,
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
    let listed = requested_services(ctx)?;
    if let Some(limit) = d.services_limit.filter(|l| listed.len() as i64 > *l) {
        return Err(DockerError::TooManyServices {
            requested: listed.len(),
            limit,
        }
        .into());
    }
    let expand = |text: &str| ctx.expanded(text);
    let mut specs = Vec::with_capacity(listed.len());
    for requested in &listed {
        let service = &requested.listed;
        if !d.service_allowed(&service.name) {
            return Err(DockerError::ServiceNotAllowed {
                image: service.name.clone(),
                allowed: d.allowed_services.clone(),
            }
            .into());
        }
        let full = requested.full;
        let image = ImageRef::parse(&service.name);
        let policies = effective_policies(&image, requested.pull_policies(), d)?;
        let options = full
            .map(|s| s.executor_opts.docker.clone())
            .unwrap_or_default();
        let platform = options.platform.as_deref().map(&expand);
        ensure_image(
            docker,
            &image,
            ImageOrigin::Job,
            &policies,
            platform.as_deref(),
            credentials,
            log,
        )
        .await?;
        specs.push(ServiceSpec {
            image: service.name.clone(),
            alias: requested.alias(ctx),
            entrypoint: service.entrypoint.clone(),
            command: service.command.clone(),
            env: service_env(ctx, &requested.variables(ctx)),
            privileged: d.privileged_service(&service.name),
            user: options.user.as_deref().map(&expand),
            platform,
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

/// A service's environment, as the docker executor's `GetServiceVariables` makes it: the
/// job's variables that are public (predefined, `.gitlab-ci.yml`) or the runner's own
/// (its `environment`, `CI_BUILDS_DIR`, …), as the runner expanded them, then the service's
/// `variables:`. The project's CI/CD settings variables, masked ones, files, `secrets:`
/// and credentials stay out, as they do on the docker executor.
fn service_env(ctx: &JobContext, own: &BTreeMap<String, String>) -> Vec<String> {
    let private: HashSet<&str> = ctx
        .payload
        .variables
        .iter()
        .filter(|v| !v.public || v.masked || v.file)
        .map(|v| v.key.as_str())
        .chain(ctx.payload.secrets.keys().map(String::as_str))
        .chain(ALWAYS_SECRET.iter().copied())
        .chain(["CI_JOB_SERVICES"])
        .collect();
    let job = ctx
        .vars()
        .iter()
        .filter(|(k, _)| !private.contains(k.as_str()) && !own.contains_key(*k))
        .map(|(k, v)| format!("{k}={v}"));
    job.chain(own.iter().map(|(k, v)| format!("{k}={v}")))
        .collect()
}
