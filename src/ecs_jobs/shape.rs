//! What a job's task looks like, decided from the job and the operator's settings alone (no
//! I/O): its image and services, allowed by `ecs_jobs.allowed_*`, and the role the project
//! the runner vouched for (the payload's project path, never a variable) may have.

use super::task_definition::{AgentImage, JobShape, Logs, ServiceContainer};
use super::EcsJobError;
use crate::docker::service_aliases;
use crate::protocol::{requested_services, JobContext};
use crate::settings::{EcsJobsSettings, Settings};

/// The shape of `ctx`'s task under `settings`.
pub fn job_shape(
    settings: &Settings,
    jobs: &EcsJobsSettings,
    ctx: &JobContext,
) -> Result<JobShape, EcsJobError> {
    let build_image = match ctx.non_empty_var("CI_JOB_IMAGE") {
        Some(image) if !jobs.image_allowed(image) => {
            return Err(EcsJobError::ImageNotAllowed {
                image: image.to_string(),
                allowed: jobs.allowed_images.clone(),
            })
        }
        Some(image) => image.to_string(),
        // The operator's own default image is always allowed, as with the docker executor.
        None => jobs.default_image.clone(),
    };
    let mut services = Vec::new();
    for requested in requested_services(ctx)? {
        let image = &requested.listed.name;
        if !jobs.service_allowed(image) {
            return Err(EcsJobError::ServiceNotAllowed {
                image: image.clone(),
                allowed: jobs.allowed_services.clone(),
            });
        }
        services.push(ServiceContainer {
            image: image.clone(),
            aliases: service_aliases(image, &requested.alias(ctx)),
            entrypoint: requested.listed.entrypoint.clone(),
            command: requested.listed.command.clone(),
            variables: requested.variables(ctx).into_iter().collect(),
        });
    }
    let region = jobs.region_or(&settings.aws.region);
    Ok(JobShape {
        build_image,
        helper_image: jobs.helper_image.clone(),
        agent: AgentImage {
            image: jobs.agent_image.clone(),
            binary: jobs.agent_binary.clone(),
        },
        services,
        builds_dir: settings.builds_dir.display().to_string(),
        capacity: jobs.capacity,
        cpu: jobs.cpu.to_string(),
        memory: jobs.memory_mib.to_string(),
        execution_role: Some(jobs.execution_role.clone()).filter(|r| !r.is_empty()),
        task_role: jobs
            .task_role_of(&ctx.identity.project_path)
            .map(str::to_string),
        logs: Some(jobs.log_group.clone())
            .filter(|g| !g.is_empty())
            .map(|group| Logs {
                group,
                region: region.to_string(),
                prefix: "job".into(),
            }),
        registry_credentials: jobs
            .registry_credentials
            .iter()
            .map(|c| (c.registry.clone(), c.secret.clone()))
            .collect(),
    })
}
