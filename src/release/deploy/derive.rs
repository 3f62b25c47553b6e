//! The task definition step of a release: read the service and its revision, decide what
//! the release has to do, derive the copy with the new image, refuse a copy that would lose
//! fields, register it and prove ECS stored exactly it.

use std::cmp::Ordering;
use std::time::Duration;

use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;
use aws_sdk_ecs::types::DeploymentRolloutState;

use super::{DeployRequest, FamilyCheck};
use crate::aws::Fault;
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::release::ecs::{short_td, Ecs, EcsError, Revision, Started};
use crate::release::strategy::{self, Strategy};
use crate::release::taskdef::{self, Document, FieldChange};
use crate::release::ReleaseError;

/// How often a registration refused with "Too many concurrent attempts" is tried.
const REGISTER_ATTEMPTS: u32 = 5;

/// What the service's current state asks of this release.
pub(super) enum Derivation {
    /// The service already runs this release's image, steadily.
    AlreadyDeployed(String),
    /// An earlier attempt of this release (killed mid-rollout) already started the rollout.
    Resume {
        previous: Option<String>,
        arn: String,
        started: Started,
        strategy: Strategy,
    },
    /// A new revision to register.
    New(Box<Derived>),
}

/// The new revision worked out from the service's current one, not yet registered.
pub(crate) struct Derived {
    pub(crate) base_arn: String,
    pub(crate) base: Revision,
    /// The containers whose image changes.
    pub(crate) containers: Vec<String>,
    pub(crate) input: RegisterTaskDefinitionInput,
}

/// Reads the service and its revision and decides what this release has to do.
pub(super) async fn derive(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
) -> Result<Derivation, ReleaseError> {
    let service = ecs.describe_service().await?;
    strategy::check_service(&service)?;
    let strategy = Strategy::of(service.deployment_configuration());
    let base_arn = service.task_definition().unwrap_or_default().to_string();
    let revision = ecs.task_definition(&base_arn).await?;
    let base = &revision.definition;
    // Checked before the image step too; the service may have changed since.
    if let Some(grant) = &req.target.grant {
        grant.check(ecs.service(), base)?;
    }
    log.info(&format!(
        "The service {} runs {} and deploys with {strategy}",
        ecs.service(),
        taskdef::label(base)
    ));
    let gates = strategy::pause_stages(service.deployment_configuration());
    if !gates.is_empty() {
        log.info(&format!(
            "Approval gates (PAUSE lifecycle hooks) at {}",
            gates.join(", ")
        ));
    }
    if let Some(family) = &req.target.task_definition {
        match (taskdef::check_family(base, family), req.family_check) {
            (Err(_), FamilyCheck::WhereItMatches) => log.info(&format!(
                "the task definition family asked for, `{family}`, is another: not checked for \
                 this service"
            )),
            (result, _) => result?,
        }
    }
    let targets =
        taskdef::target_containers(base, &req.target.containers, &req.image.repository())?;
    let names = taskdef::container_names(base, &targets);
    let images: Vec<&str> = targets
        .iter()
        .map(|i| base.container_definitions()[*i].image().unwrap_or_default())
        .collect();
    let wanted = req.image.to_string();
    if images.iter().all(|i| *i == wanted) {
        let primary = service
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"));
        let steady = service.deployments().len() == 1
            && primary.is_some_and(|d| d.task_definition() == Some(base_arn.as_str()));
        if steady {
            log.info(&format!(
                "Already deployed: {} of {} runs {wanted}; nothing registered, nothing updated",
                names.join(", "),
                taskdef::label(base),
            ));
            return Ok(Derivation::AlreadyDeployed(base_arn));
        }
        let rolling = primary.filter(|d| {
            d.task_definition() == Some(base_arn.as_str())
                && d.rollout_state() == Some(&DeploymentRolloutState::InProgress)
        });
        if let Some(rolling) = rolling {
            let previous = service
                .deployments()
                .iter()
                .find(|d| d.status() == Some("ACTIVE"))
                .and_then(|d| d.task_definition())
                .map(str::to_string);
            return Ok(Derivation::Resume {
                previous,
                arn: base_arn,
                started: Started {
                    deployment_id: rolling.id().unwrap_or_default().to_string(),
                    service_deployment: service
                        .current_service_deployment()
                        .filter(|a| !a.is_empty())
                        .map(str::to_string),
                },
                strategy,
            });
        }
    }
    for (name, current_image) in names.iter().zip(&images) {
        let old_tag = ImageRef::parse(current_image).tag().map(str::to_string);
        match old_tag
            .as_deref()
            .and_then(|old| taskdef::compare_versions(req.tag(), old).map(|o| (old, o)))
        {
            Some((old, Ordering::Less)) => log.warn(&format!(
                "this is a downgrade: {name} runs {old}, the release is {}",
                req.tag()
            )),
            Some((old, _)) => log.info(&format!("Container {name}: {old} -> {}", req.tag())),
            None => log.info(&format!("Container {name}: {current_image} -> {wanted}")),
        }
    }
    let (tags, dropped) = taskdef::merge_tags(&revision.tags, &req.trace_tags);
    if !dropped.is_empty() {
        log.warn(&format!(
            "the task definition already has 50 tags; not added: {}",
            dropped.join(", ")
        ));
    }
    let input = taskdef::copy(base, &targets, &wanted, tags)?;
    Ok(Derivation::New(Box::new(Derived {
        base_arn,
        base: revision,
        containers: names,
        input,
    })))
}

/// The copy of `d` as it will be sent; refused if it would drop anything of the base.
pub(crate) async fn checked_copy(ecs: &impl Ecs, d: &Derived) -> Result<Document, ReleaseError> {
    let sent = ecs.preview_register(d.input.clone()).await?;
    let lost = d.base.document.lost_in(&sent);
    if lost.is_empty() {
        Ok(sent)
    } else {
        Err(ReleaseError::FieldsNotCarried {
            revision: taskdef::label(&d.base.definition),
            fields: lost,
        })
    }
}

/// Registers the copy and proves ECS stored exactly it; returns the new revision's ARN.
pub(super) async fn register_verified(
    ecs: &impl Ecs,
    req: &DeployRequest,
    d: &Derived,
    log: &JobLog,
) -> Result<String, ReleaseError> {
    checked_copy(ecs, d).await?;
    let new_arn = register(ecs, d.input.clone(), log).await?;
    let described = ecs.task_definition(&new_arn).await?;
    let changes = d.base.document.diff(&described.document);
    let (intended, stray) = partition(&changes, &d.containers, req);
    if !stray.is_empty() {
        deregister_unused(ecs, &new_arn, log).await;
        return Err(ReleaseError::UnexpectedChanges {
            revision: taskdef::label(&described.definition),
            changes: stray
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    log.info(&format!(
        "Registered {}; it differs from {} only in:",
        taskdef::label(&described.definition),
        taskdef::label(&d.base.definition)
    ));
    show_changes(log, &intended);
    Ok(new_arn)
}

/// Registers `input`, waiting out other registrations of the family.
pub(super) async fn register(
    ecs: &impl Ecs,
    input: RegisterTaskDefinitionInput,
    log: &JobLog,
) -> Result<String, ReleaseError> {
    let mut attempt = 1;
    loop {
        match ecs.register(input.clone()).await {
            Err(EcsError::Call(e))
                if e.fault == Fault::ConcurrentRegistration && attempt < REGISTER_ATTEMPTS =>
            {
                let pause = Duration::from_secs(1 << attempt);
                log.warn(&format!(
                    "another registration in this family is in progress; retrying in {} s ({attempt}/{REGISTER_ATTEMPTS})",
                    pause.as_secs()
                ));
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            other => return Ok(other?),
        }
    }
}

/// A revision this release registered and will not use.
pub(super) async fn deregister_unused(ecs: &impl Ecs, arn: &str, log: &JobLog) {
    match ecs.deregister(arn).await {
        Ok(()) => log.info(&format!("Deregistered {}, which never ran", short_td(arn))),
        Err(e) => log.warn(&format!("could not deregister {}: {e}", short_td(arn))),
    }
}

/// Splits changes into the intended ones (the images, our tags) and anything else.
pub(super) fn partition<'c>(
    changes: &'c [FieldChange],
    containers: &[String],
    req: &DeployRequest,
) -> (Vec<&'c FieldChange>, Vec<&'c FieldChange>) {
    let intended_images: Vec<String> = containers
        .iter()
        .map(|c| format!("containerDefinitions[{c}].image"))
        .collect();
    changes.iter().partition(|c| {
        intended_images.contains(&c.path)
            || req
                .trace_tags
                .iter()
                .any(|t| c.path == format!("tags[{}]", t.key().unwrap_or_default()))
    })
}

pub(crate) fn show_changes(log: &JobLog, changes: &[&FieldChange]) {
    for change in changes {
        log.info(&format!("  {change}"));
    }
}

/// The revision a release would register, derived but changing nothing: `None` when the
/// image is already deployed or rolling out.
pub(crate) async fn derive_only(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
) -> Result<Option<Derived>, ReleaseError> {
    Ok(match derive(ecs, req, log).await? {
        Derivation::New(d) => Some(*d),
        Derivation::AlreadyDeployed(_) | Derivation::Resume { .. } => None,
    })
}

/// Another release moved the service: is it newer than ours? Then ours must not overwrite it.
pub(super) async fn superseded_by(
    ecs: &impl Ecs,
    current_arn: &str,
    req: &DeployRequest,
) -> Result<Option<String>, ReleaseError> {
    let current = ecs.task_definition(current_arn).await?.definition;
    let Some(target) =
        taskdef::target_containers(&current, &req.target.containers, &req.image.repository())
            .ok()
            .and_then(|t| t.first().copied())
    else {
        return Ok(Some(taskdef::label(&current)));
    };
    let image = current.container_definitions()[target]
        .image()
        .unwrap_or_default();
    let newer = ImageRef::parse(image)
        .tag()
        .and_then(|tag| taskdef::compare_versions(tag, req.tag()))
        .is_none_or(|o| o != Ordering::Less);
    Ok(newer.then(|| format!("{} running {image}", taskdef::label(&current))))
}
