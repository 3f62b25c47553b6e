//! What a project may release with the runner host's own AWS credentials: the operator's
//! `release.grants`, decided before any AWS call for what the job names (registry,
//! repository, clusters, services, task definition family), and before anything is
//! registered for what only ECS knows (the family a service runs, the roles it carries).
//!
//! With its own credentials (GitLab OIDC, keys) a job can do what those allow anyway: the
//! grants guard the host's, which every project on the runner would otherwise share.

use crate::settings::Grant;

use super::grant::{matches_any, TaskDefinitionGrant};
use super::inputs::{EcsTarget, ReleaseInputs};

/// A release the grants do not cover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "project {project} may not release to {target} with the runner host's AWS credentials: \
     no entry of release.grants in the executor settings grants it. Ask the runner's \
     operator for a grant, or release with the project's own credentials (AWS_ROLE_ARN and \
     an `id_tokens:` variable)"
)]
pub struct NotGranted {
    /// The project that asked.
    pub project: String,
    /// What it asked for, as the operator would write it in a grant.
    pub target: String,
}

/// Checks the release of `inputs` by `project` against `grants`; on success, each target
/// carries what its task definitions may be.
pub fn authorize(
    grants: &[Grant],
    project: &str,
    inputs: &mut ReleaseInputs,
) -> Result<(), NotGranted> {
    let mine: Vec<&Grant> = grants
        .iter()
        .filter(|g| matches_any(&g.projects, project))
        .collect();
    let refuse = |target: String| NotGranted {
        project: project.to_string(),
        target,
    };
    let registry = inputs.image.registry().to_string();
    let repository = inputs.image.path().to_string();
    if !mine
        .iter()
        .any(|g| matches_any(&g.registries, &registry) && matches_any(&g.repositories, &repository))
    {
        return Err(refuse(format!(
            "repository {repository} of registry {registry}"
        )));
    }
    for target in &mut inputs.ecs {
        target.grant = Some(service_grant(&mine, target).ok_or_else(|| {
            refuse(format!(
                "ECS service {} of cluster {}",
                target.service, target.cluster
            ))
        })?);
        if let Some(family) = &target.task_definition {
            let family = family.split(':').next().unwrap_or(family);
            let granted = target
                .grant
                .as_ref()
                .is_some_and(|g| matches_any(&g.families, family));
            if !granted {
                return Err(refuse(format!("task definition family {family}")));
            }
        }
    }
    Ok(())
}

/// Checks that `project` may act on the service of `target` (an approval gate's decision).
pub fn authorize_service(
    grants: &[Grant],
    project: &str,
    target: &mut EcsTarget,
) -> Result<(), NotGranted> {
    let mine: Vec<&Grant> = grants
        .iter()
        .filter(|g| matches_any(&g.projects, project))
        .collect();
    target.grant = Some(service_grant(&mine, target).ok_or_else(|| NotGranted {
        project: project.to_string(),
        target: format!(
            "ECS service {} of cluster {}",
            target.service, target.cluster
        ),
    })?);
    Ok(())
}

/// What the grants covering `target`'s cluster and service allow its task definitions to
/// be; `None` when none covers it.
fn service_grant(grants: &[&Grant], target: &EcsTarget) -> Option<TaskDefinitionGrant> {
    let covering: Vec<&&Grant> = grants
        .iter()
        .filter(|g| {
            matches_any(&g.clusters, &target.cluster) && matches_any(&g.services, &target.service)
        })
        .collect();
    (!covering.is_empty()).then(|| TaskDefinitionGrant {
        families: covering
            .iter()
            .flat_map(|g| g.task_families.clone())
            .collect(),
        roles: covering.iter().flat_map(|g| g.roles.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::CredentialRequest;
    use crate::image_ref::ImageRef;
    use crate::release::inputs::{BuildInputs, ImageAction};

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn grants() -> Vec<Grant> {
        vec![Grant {
            projects: list(&["shop/**"]),
            registries: list(&["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]),
            repositories: list(&["shop/*"]),
            clusters: list(&["production"]),
            services: list(&["shop-web", "shop-worker"]),
            task_families: list(&["shop-*"]),
            roles: list(&["arn:aws:iam::123456789012:role/shop-*"]),
        }]
    }

    fn release(repository: &str, services: &[(&str, &str)]) -> ReleaseInputs {
        ReleaseInputs {
            action: ImageAction::Release,
            image: ImageRef::parse(&format!(
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/{repository}:v1.0.0"
            )),
            region: "eu-west-1".into(),
            ecs: services
                .iter()
                .map(|(cluster, service)| EcsTarget {
                    cluster: cluster.to_string(),
                    service: service.to_string(),
                    ..EcsTarget::default()
                })
                .collect(),
            pre_deploy: None,
            dockerfile: "Dockerfile".into(),
            build_context: ".".into(),
            build: BuildInputs::default(),
            credentials: CredentialRequest::Host,
        }
    }

    #[test]
    fn a_granted_project_releases_its_own_targets_and_no_other() {
        let mut ok = release(
            "shop/web",
            &[("production", "shop-web"), ("production", "shop-worker")],
        );
        authorize(&grants(), "shop/web", &mut ok).unwrap();
        let grant = ok.ecs[0].grant.clone().unwrap();
        assert_eq!(
            grant.refusal("shop-web", ["arn:aws:iam::123456789012:role/shop-task"]),
            None
        );
        assert_eq!(
            grant.refusal("billing-web", []).as_deref(),
            Some("task definition family billing-web")
        );
        assert_eq!(
            grant
                .refusal("shop-web", ["arn:aws:iam::123456789012:role/admin"])
                .as_deref(),
            Some("IAM role arn:aws:iam::123456789012:role/admin")
        );

        for (project, repository, service, refused) in [
            ("billing/api", "shop/web", "shop-web", "repository shop/web"),
            (
                "shop/web",
                "billing/api",
                "shop-web",
                "repository billing/api",
            ),
            (
                "shop/web",
                "shop/web",
                "billing-api",
                "ECS service billing-api",
            ),
            // Names that only look alike.
            ("shop", "shop/web", "shop-web", "repository shop/web"),
            (
                "shopping/web",
                "shop/web",
                "shop-web",
                "repository shop/web",
            ),
        ] {
            let mut inputs = release(repository, &[("production", service)]);
            let err = authorize(&grants(), project, &mut inputs).unwrap_err();
            assert!(err.to_string().contains(refused), "{project}: {err}");
            assert!(
                err.to_string().contains(project) && err.to_string().contains("release.grants")
            );
        }
    }

    #[test]
    fn no_grants_no_host_credential_releases() {
        let mut inputs = release("shop/web", &[("production", "shop-web")]);
        assert!(authorize(&[], "shop/web", &mut inputs).is_err());
        let mut named = release("shop/web", &[("production", "shop-web")]);
        named.ecs[0].task_definition = Some("billing-web:3".into());
        let err = authorize(&grants(), "shop/web", &mut named).unwrap_err();
        assert!(err.target.contains("billing-web"), "{err}");
    }
}
