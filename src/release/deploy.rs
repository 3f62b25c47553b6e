//! The ECS half of a release: derive and register the new revision from the service's
//! current one, verify it, update the service with the exact revision, follow our
//! deployment to the end, and roll back when it fails.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ecs::types::{DesiredStatus, Service, Tag, Task, TaskDefinition, TaskDefinitionField};
use tokio::time::Instant;

use super::inputs::EcsTarget;
use super::rollout::{self, jittered, short_td, Observer, Verdict};
use super::taskdef::{self, Document, FieldChange};
use super::wire::{RequestPreview, ResponseBody};
use super::ReleaseError;
use crate::docker::Cancel;
use crate::joblog::JobLog;
use crate::settings::RollbackMode;

/// How often a registration refused with "Too many concurrent attempts" is retried.
const REGISTER_ATTEMPTS: u32 = 5;
/// How often the service is re-based when another release moved it under us.
const REBASE_ATTEMPTS: u32 = 3;
/// A quiet rollout still says something this often.
const HEARTBEAT: Duration = Duration::from_secs(60);

/// One ECS service, through the SDK.
pub struct EcsService {
    client: aws_sdk_ecs::Client,
    cluster: String,
    service: String,
}

impl EcsService {
    /// The service `target` names.
    pub fn new(client: aws_sdk_ecs::Client, target: &EcsTarget) -> Self {
        EcsService {
            client,
            cluster: target.cluster.clone(),
            service: target.service.clone(),
        }
    }

    /// `DescribeServices` for this one service.
    pub async fn describe(&self) -> Result<Service, ReleaseError> {
        let out = self
            .client
            .describe_services()
            .cluster(&self.cluster)
            .services(&self.service)
            .send()
            .await
            .map_err(|e| ReleaseError::aws("ecs:DescribeServices", e))?;
        out.services()
            .first()
            .cloned()
            .ok_or_else(|| ReleaseError::ServiceMissing {
                cluster: self.cluster.clone(),
                service: self.service.clone(),
            })
    }

    /// A task definition with its tags, typed and as ECS sent it.
    pub async fn task_definition(&self, arn: &str) -> Result<Revision, ReleaseError> {
        let body = ResponseBody::default();
        let out = self
            .client
            .describe_task_definition()
            .task_definition(arn)
            .include(TaskDefinitionField::Tags)
            .customize()
            .interceptor(body.clone())
            .send()
            .await
            .map_err(|e| ReleaseError::aws("ecs:DescribeTaskDefinition", e))?;
        let malformed = |message: String| ReleaseError::AwsCall {
            operation: "ecs:DescribeTaskDefinition",
            message,
        };
        let definition = out
            .task_definition()
            .cloned()
            .ok_or_else(|| malformed(format!("no task definition returned for {arn}")))?;
        let raw = body
            .take()
            .ok_or_else(|| malformed(format!("the response for {arn} is not JSON")))?;
        let document =
            Document::from_describe_response(&raw).map_err(|e| malformed(format!("{arn}: {e}")))?;
        Ok(Revision {
            definition,
            tags: out.tags().to_vec(),
            document,
        })
    }

    /// The document a registration of `input` would send, without sending it.
    async fn preview_register(
        &self,
        input: aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput,
    ) -> Result<Document, ReleaseError> {
        let preview = RequestPreview::default();
        let result = taskdef::register_request(&self.client, input)
            .customize()
            .interceptor(preview.clone())
            .send()
            .await;
        match (preview.body(), result) {
            (Some(body), Err(_)) => {
                Document::from_register_request(&body).map_err(|e| ReleaseError::AwsCall {
                    operation: "ecs:RegisterTaskDefinition",
                    message: format!("cannot read the serialized request: {e}"),
                })
            }
            (None, Err(e)) => Err(ReleaseError::aws("ecs:RegisterTaskDefinition", e)),
            (_, Ok(_)) => Err(ReleaseError::AwsCall {
                operation: "ecs:RegisterTaskDefinition",
                message: "a previewed registration was sent".into(),
            }),
        }
    }

    async fn register(
        &self,
        input: aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput,
        log: &JobLog,
    ) -> Result<TaskDefinition, ReleaseError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match taskdef::register_request(&self.client, input.clone())
                .send()
                .await
            {
                Ok(out) => {
                    return out
                        .task_definition()
                        .cloned()
                        .ok_or_else(|| ReleaseError::AwsCall {
                            operation: "ecs:RegisterTaskDefinition",
                            message: "no task definition returned".into(),
                        })
                }
                Err(e) => {
                    let error = ReleaseError::aws("ecs:RegisterTaskDefinition", e);
                    let concurrent = error.to_string().contains("Too many concurrent attempts");
                    if !concurrent || attempt >= REGISTER_ATTEMPTS {
                        return Err(error);
                    }
                    let pause = Duration::from_secs(1 << attempt);
                    log.warn(&format!(
                        "another registration in this family is in progress; retrying in {} s ({attempt}/{REGISTER_ATTEMPTS})",
                        pause.as_secs()
                    ));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn deregister(&self, arn: &str, log: &JobLog) {
        match self
            .client
            .deregister_task_definition()
            .task_definition(arn)
            .send()
            .await
        {
            Ok(_) => log.info(&format!("Deregistered {}, which never ran", short_td(arn))),
            Err(e) => log.warn(&format!(
                "could not deregister {}: {}",
                short_td(arn),
                ReleaseError::aws("ecs:DeregisterTaskDefinition", e)
            )),
        }
    }

    /// Points the service at `arn`; returns the id of the deployment ECS started for it.
    async fn update(&self, arn: &str) -> Result<String, ReleaseError> {
        let out = self
            .client
            .update_service()
            .cluster(&self.cluster)
            .service(&self.service)
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| ReleaseError::aws("ecs:UpdateService", e))?;
        out.service()
            .into_iter()
            .flat_map(|s| s.deployments())
            .find(|d| d.status() == Some("PRIMARY") && d.task_definition() == Some(arn))
            .and_then(|d| d.id())
            .map(str::to_string)
            .ok_or_else(|| ReleaseError::AwsCall {
                operation: "ecs:UpdateService",
                message: format!(
                    "the response names no PRIMARY deployment of {}",
                    short_td(arn)
                ),
            })
    }

    /// ACTIVE revisions of `family`, newest first (at most 100).
    pub async fn revisions(&self, family: &str) -> Result<Vec<String>, ReleaseError> {
        let out = self
            .client
            .list_task_definitions()
            .family_prefix(family)
            .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
            .sort(aws_sdk_ecs::types::SortOrder::Desc)
            .max_results(100)
            .send()
            .await
            .map_err(|e| ReleaseError::aws("ecs:ListTaskDefinitions", e))?;
        // The prefix also matches longer family names.
        Ok(out
            .task_definition_arns()
            .iter()
            .filter(|arn| {
                short_td(arn)
                    .rsplit_once(':')
                    .is_some_and(|(f, _)| f == family)
            })
            .cloned()
            .collect())
    }

    /// Stopped tasks started by `deployment_id` (at most 100).
    async fn stopped_tasks(&self, deployment_id: &str) -> Result<Vec<Task>, ReleaseError> {
        let listed = self
            .client
            .list_tasks()
            .cluster(&self.cluster)
            .started_by(deployment_id)
            .desired_status(DesiredStatus::Stopped)
            .send()
            .await
            .map_err(|e| ReleaseError::aws("ecs:ListTasks", e))?;
        let arns: Vec<String> = listed.task_arns().iter().take(100).cloned().collect();
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let described = self
            .client
            .describe_tasks()
            .cluster(&self.cluster)
            .set_tasks(Some(arns))
            .send()
            .await
            .map_err(|e| ReleaseError::aws("ecs:DescribeTasks", e))?;
        Ok(described.tasks().to_vec())
    }
}

/// A task definition revision, as the SDK types it and as the JSON document ECS sent.
#[derive(Debug, Clone)]
pub struct Revision {
    /// The typed revision, the source of the copy.
    pub definition: TaskDefinition,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Its JSON document, every field included, for comparisons.
    pub document: Document,
}

/// What the ECS half should do.
pub struct DeployRequest<'a> {
    /// The service and its options.
    pub target: &'a EcsTarget,
    /// The new image reference.
    pub image: String,
    /// The release tag (for downgrade and supersede decisions).
    pub tag: &'a str,
    /// `registry/repository`, to find the container by image.
    pub repository: String,
    /// Traceability tags to add to the revision.
    pub trace_tags: Vec<Tag>,
    /// When the rollout counts as failed.
    pub deadline: Instant,
    /// Poll interval.
    pub poll: Duration,
    /// Rollback mode.
    pub rollback: RollbackMode,
    /// Bound on waiting for another deployment.
    pub wait_for_others: Duration,
    /// Bound on following a rollback.
    pub rollback_timeout: Duration,
}

/// What the ECS half did.
#[derive(Debug, Clone)]
pub struct DeployReport {
    /// The revision the service ran before.
    pub previous_arn: String,
    /// The revision it runs now.
    pub new_arn: String,
    /// Our deployment (`None` when the image was already deployed).
    pub deployment_id: Option<String>,
    /// Whether nothing had to change.
    pub already_deployed: bool,
}

/// Registers, verifies and rolls out the new revision.
pub async fn deploy(
    ecs: &EcsService,
    req: &DeployRequest<'_>,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<DeployReport, ReleaseError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let prepared = {
            let _s = log.section("release_taskdef", "Release: task definition");
            prepare_revision(ecs, req, log).await?
        };
        let (base, new_arn) = match prepared {
            Prepared::AlreadyDeployed(report) => return Ok(report),
            Prepared::Resume {
                previous,
                arn,
                deployment,
            } => {
                let _s = log.section("release_rollout", "Release: rollout");
                log.step(&format!(
                    "Resuming: deployment {deployment} of {} (this release's image) is already rolling out; following it",
                    short_td(&arn)
                ));
                return follow(
                    ecs,
                    req,
                    log,
                    cancel,
                    previous.as_deref(),
                    &arn,
                    deployment,
                    now_epoch() - 60,
                )
                .await;
            }
            Prepared::New { base, new_arn } => (base, new_arn),
        };
        let _s = log.section("release_rollout", "Release: rollout");
        wait_for_other_deployments(ecs, req, log, &new_arn).await?;
        // Optimistic concurrency: the service must still run the revision we derived from.
        let current = ecs.describe().await?;
        let current_arn = current.task_definition().unwrap_or_default().to_string();
        if current_arn != base {
            let superseding = superseded_by(ecs, &current_arn, req).await?;
            ecs.deregister(&new_arn, log).await;
            if let Some(by) = superseding {
                return Err(ReleaseError::Superseded { by });
            }
            if attempt >= REBASE_ATTEMPTS {
                return Err(ReleaseError::Superseded {
                    by: format!(
                        "{} (the service kept changing during {REBASE_ATTEMPTS} attempts)",
                        short_td(&current_arn)
                    ),
                });
            }
            log.warn(&format!(
                "the service moved from {} to {} while this release prepared; re-deriving the revision from {}",
                short_td(&base),
                short_td(&current_arn),
                short_td(&current_arn)
            ));
            continue;
        }
        return roll_out(ecs, req, log, cancel, &base, &new_arn).await;
    }
}

enum Prepared {
    AlreadyDeployed(DeployReport),
    /// An earlier attempt of this release (killed mid-rollout) already started the rollout.
    Resume {
        previous: Option<String>,
        arn: String,
        deployment: String,
    },
    New {
        base: String,
        new_arn: String,
    },
}

/// The new revision worked out from the service's current one, not yet registered.
struct Derived {
    base_arn: String,
    base: Revision,
    container: String,
    input: aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput,
}

/// Reads the service and its revision and derives the new revision's input; `Err(prepared)`
/// inside `Ok` when the image is already deployed or already rolling out.
async fn derive(
    ecs: &EcsService,
    req: &DeployRequest<'_>,
    log: &JobLog,
) -> Result<Result<Derived, Prepared>, ReleaseError> {
    let service = ecs.describe().await?;
    let base_arn = service.task_definition().unwrap_or_default().to_string();
    let revision = ecs.task_definition(&base_arn).await?;
    let base = &revision.definition;
    log.info(&format!(
        "The service {} runs {}",
        req.target.service,
        taskdef::label(base)
    ));
    if let Some(family) = &req.target.task_definition {
        taskdef::check_family(base, family)?;
    }
    let target = taskdef::target_container(base, req.target.container.as_deref(), &req.repository)?;
    let container = &base.container_definitions()[target];
    let name = container.name().unwrap_or("?").to_string();
    let current_image = container.image().unwrap_or_default();
    if current_image == req.image {
        let primary = service
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"));
        let steady = service.deployments().len() == 1
            && primary.is_some_and(|d| d.task_definition() == Some(base_arn.as_str()));
        if steady {
            log.info(&format!(
                "Already deployed: container {name} of {} runs {}; nothing registered, nothing updated",
                taskdef::label(base),
                req.image
            ));
            return Ok(Err(Prepared::AlreadyDeployed(DeployReport {
                previous_arn: base_arn.clone(),
                new_arn: base_arn,
                deployment_id: None,
                already_deployed: true,
            })));
        }
        if let Some(rolling) = primary.filter(|d| {
            d.task_definition() == Some(base_arn.as_str())
                && d.rollout_state()
                    == Some(&aws_sdk_ecs::types::DeploymentRolloutState::InProgress)
        }) {
            let previous = service
                .deployments()
                .iter()
                .find(|d| d.status() == Some("ACTIVE"))
                .and_then(|d| d.task_definition())
                .map(str::to_string);
            return Ok(Err(Prepared::Resume {
                previous,
                arn: base_arn,
                deployment: rolling.id().unwrap_or_default().to_string(),
            }));
        }
    }
    match taskdef::image_tag(current_image)
        .and_then(|old| taskdef::compare_versions(req.tag, old).map(|o| (old, o)))
    {
        Some((old, std::cmp::Ordering::Less)) => log.warn(&format!(
            "this is a downgrade: {name} runs {old}, the release is {}",
            req.tag
        )),
        Some((old, _)) => log.info(&format!("Container {name}: {old} -> {}", req.tag)),
        None => log.info(&format!(
            "Container {name}: {current_image} -> {}",
            req.image
        )),
    }
    let (tags, dropped) = taskdef::merge_tags(&revision.tags, &req.trace_tags);
    if !dropped.is_empty() {
        log.warn(&format!(
            "the task definition already has 50 tags; not added: {}",
            dropped.join(", ")
        ));
    }
    let input = taskdef::copy(base, target, &req.image, tags)?;
    Ok(Ok(Derived {
        base_arn,
        base: revision,
        container: name,
        input,
    }))
}

/// Splits changes into the intended ones (the image, our tags) and anything else.
fn partition<'c>(
    changes: &'c [FieldChange],
    container: &str,
    req: &DeployRequest<'_>,
) -> (Vec<&'c FieldChange>, Vec<&'c FieldChange>) {
    let intended_image = format!("containerDefinitions[{container}].image");
    changes.iter().partition(|c| {
        c.path == intended_image
            || (c.path.starts_with("tags[")
                && req
                    .trace_tags
                    .iter()
                    .any(|t| c.path == format!("tags[{}]", t.key().unwrap_or_default())))
    })
}

fn show_changes(log: &JobLog, changes: &[&FieldChange]) {
    for change in changes {
        log.info(&format!("  {change}"));
    }
}

/// The copy of `d` as it will be sent; refuses it if it would drop anything of the base.
async fn checked_copy(ecs: &EcsService, d: &Derived) -> Result<Document, ReleaseError> {
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

async fn prepare_revision(
    ecs: &EcsService,
    req: &DeployRequest<'_>,
    log: &JobLog,
) -> Result<Prepared, ReleaseError> {
    let d = match derive(ecs, req, log).await? {
        Ok(d) => d,
        Err(prepared) => return Ok(prepared),
    };
    checked_copy(ecs, &d).await?;
    let registered = ecs.register(d.input, log).await?;
    let new_arn = registered
        .task_definition_arn()
        .unwrap_or_default()
        .to_string();
    let described = ecs.task_definition(&new_arn).await?;
    let changes = d.base.document.diff(&described.document);
    let (intended, stray) = partition(&changes, &d.container, req);
    if !stray.is_empty() {
        ecs.deregister(&new_arn, log).await;
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
    Ok(Prepared::New {
        base: d.base_arn,
        new_arn,
    })
}

/// Shows the revision a release would register, field by field, and changes nothing.
pub async fn plan(
    ecs: &EcsService,
    req: &DeployRequest<'_>,
    log: &JobLog,
) -> Result<Vec<FieldChange>, ReleaseError> {
    let _s = log.section("release_plan", "Release plan: task definition");
    let d = match derive(ecs, req, log).await? {
        Ok(d) => d,
        Err(_) => return Ok(Vec::new()),
    };
    let sent = checked_copy(ecs, &d).await?;
    let changes = d.base.document.diff(&sent);
    let base = &d.base.definition;
    log.info(&format!(
        "Would register {}:{} (not registered, the service not updated); changes against {}:",
        base.family().unwrap_or("?"),
        base.revision() + 1,
        taskdef::label(base)
    ));
    show_changes(log, &changes.iter().collect::<Vec<_>>());
    Ok(changes)
}

/// Another release moved the service: is it newer than ours? Then ours must not overwrite it.
async fn superseded_by(
    ecs: &EcsService,
    current_arn: &str,
    req: &DeployRequest<'_>,
) -> Result<Option<String>, ReleaseError> {
    let current = ecs.task_definition(current_arn).await?.definition;
    let Ok(target) =
        taskdef::target_container(&current, req.target.container.as_deref(), &req.repository)
    else {
        return Ok(Some(taskdef::label(&current)));
    };
    let image = current.container_definitions()[target]
        .image()
        .unwrap_or_default();
    let newer = taskdef::image_tag(image)
        .and_then(|tag| taskdef::compare_versions(tag, req.tag))
        .is_none_or(|o| o != std::cmp::Ordering::Less);
    Ok(newer.then(|| format!("{} running {image}", taskdef::label(&current))))
}

async fn wait_for_other_deployments(
    ecs: &EcsService,
    req: &DeployRequest<'_>,
    log: &JobLog,
    new_arn: &str,
) -> Result<(), ReleaseError> {
    let limit = Instant::now() + req.wait_for_others;
    let mut announced = false;
    loop {
        let service = ecs.describe().await?;
        let Some(busy) = rollout::other_deployment_in_progress(&service) else {
            return Ok(());
        };
        if !announced {
            log.info(&format!(
                "Waiting for deployment {busy} to finish before rolling out (up to {} s)",
                req.wait_for_others.as_secs()
            ));
            announced = true;
        }
        if Instant::now() >= limit {
            ecs.deregister(new_arn, log).await;
            return Err(ReleaseError::OtherDeployment { what: busy });
        }
        tokio::time::sleep(jittered(req.poll, entropy())).await;
    }
}

/// Points the service at an existing revision `to` and follows the deployment to the end
/// (the `rollback` command); no automatic rollback of the rollback.
pub async fn switch(
    ecs: &EcsService,
    from: &str,
    to: &str,
    deadline: Instant,
    poll: Duration,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<DeployReport, ReleaseError> {
    let _s = log.section("release_rollout", "Rollback: rollout");
    let started = now_epoch();
    let deployment = ecs.update(to).await?;
    log.step(&format!(
        "UpdateService: {} -> {}, deployment {deployment}",
        short_td(from),
        short_td(to)
    ));
    let mut observer = Observer::new(started - 5);
    let end = watch(
        ecs,
        &deployment,
        to,
        deadline,
        poll,
        log,
        Some(cancel),
        &mut observer,
    )
    .await?;
    let reason = match end {
        WatchEnd::Verdict(Verdict::Completed) => {
            return Ok(DeployReport {
                previous_arn: from.to_string(),
                new_arn: to.to_string(),
                deployment_id: Some(deployment),
                already_deployed: false,
            })
        }
        WatchEnd::Verdict(Verdict::RolledBack(r) | Verdict::Failed(r) | Verdict::Vanished(r)) => r,
        WatchEnd::Verdict(Verdict::InProgress) | WatchEnd::Deadline => {
            format!("deployment {deployment} did not complete before the deadline")
        }
        WatchEnd::Cancelled => format!("cancelled while deployment {deployment} rolled out"),
    };
    Err(ReleaseError::RolloutFailed {
        reason,
        state: format!(
            "The service points at {}; check it in the ECS console",
            short_td(to)
        ),
    })
}

/// How a watch ended.
enum WatchEnd {
    Verdict(Verdict),
    Deadline,
    Cancelled,
}

async fn roll_out(
    ecs: &EcsService,
    req: &DeployRequest<'_>,
    log: &JobLog,
    cancel: &mut Cancel,
    base: &str,
    new_arn: &str,
) -> Result<DeployReport, ReleaseError> {
    let started = now_epoch();
    let deployment = ecs.update(new_arn).await?;
    log.step(&format!(
        "UpdateService: {} -> {}, deployment {deployment}",
        short_td(base),
        short_td(new_arn)
    ));
    follow(
        ecs,
        req,
        log,
        cancel,
        Some(base),
        new_arn,
        deployment,
        started,
    )
    .await
}

/// Follows `deployment` of `arn` to its end; on failure rolls back to `previous` (the
/// revision captured before the release) as the request says.
#[allow(clippy::too_many_arguments)]
async fn follow(
    ecs: &EcsService,
    req: &DeployRequest<'_>,
    log: &JobLog,
    cancel: &mut Cancel,
    previous: Option<&str>,
    arn: &str,
    deployment: String,
    started: i64,
) -> Result<DeployReport, ReleaseError> {
    let mut observer = Observer::new(started - 5);
    let end = watch(
        ecs,
        &deployment,
        arn,
        req.deadline,
        req.poll,
        log,
        Some(cancel),
        &mut observer,
    )
    .await?;
    let cancelled = matches!(end, WatchEnd::Cancelled);
    let failure = match end {
        WatchEnd::Verdict(Verdict::Completed) => {
            return Ok(DeployReport {
                previous_arn: previous.unwrap_or(arn).to_string(),
                new_arn: arn.to_string(),
                deployment_id: Some(deployment),
                already_deployed: false,
            })
        }
        WatchEnd::Verdict(Verdict::RolledBack(reason)) => {
            // ECS already put the previous revision back; a second rollback would only race it.
            return Err(ReleaseError::RolledBack { reason });
        }
        WatchEnd::Verdict(Verdict::Failed(reason) | Verdict::Vanished(reason)) => reason,
        WatchEnd::Verdict(Verdict::InProgress) | WatchEnd::Deadline => {
            format!("deployment {deployment} did not complete before the rollout deadline")
        }
        WatchEnd::Cancelled => {
            format!("the job was cancelled while deployment {deployment} rolled out")
        }
    };
    let state = match (req.rollback, previous) {
        (RollbackMode::Never, _) => format!(
            "ECS_ROLLBACK is never: the service stays on {} (check it in the ECS console)",
            short_td(arn)
        ),
        (RollbackMode::Auto, None) => format!(
            "no earlier revision is known to roll back to: the service stays on {}",
            short_td(arn)
        ),
        (RollbackMode::Auto, Some(base)) => {
            rollback(ecs, req, log, base, arn, cancelled, &mut observer).await
        }
    };
    Err(ReleaseError::RolloutFailed {
        reason: failure,
        state,
    })
}

async fn rollback(
    ecs: &EcsService,
    req: &DeployRequest<'_>,
    log: &JobLog,
    base: &str,
    new_arn: &str,
    cancelled: bool,
    observer: &mut Observer,
) -> String {
    log.warn(&format!("rolling the service back to {}", short_td(base)));
    let deployment = match ecs.update(base).await {
        Ok(id) => id,
        Err(e) => {
            return format!(
                "the rollback to {} failed ({e}); the service may still run {}",
                short_td(base),
                short_td(new_arn)
            )
        }
    };
    if cancelled {
        // The runner allows only a short grace period after SIGTERM.
        return format!("rollback deployment {deployment} to {} started; not followed because the job was cancelled", short_td(base));
    }
    let deadline = Instant::now() + req.rollback_timeout;
    match watch(
        ecs,
        &deployment,
        base,
        deadline,
        req.poll,
        log,
        None,
        observer,
    )
    .await
    {
        Ok(WatchEnd::Verdict(Verdict::Completed)) => format!(
            "the service is back on {} (rollback {deployment} completed)",
            short_td(base)
        ),
        Ok(WatchEnd::Verdict(v)) => format!(
            "the rollback {deployment} to {} did not complete: {v:?}",
            short_td(base)
        ),
        Ok(_) => format!(
            "the rollback {deployment} to {} was still in progress after {} s",
            short_td(base),
            req.rollback_timeout.as_secs()
        ),
        Err(e) => format!(
            "the rollback {deployment} to {} could not be followed: {e}",
            short_td(base)
        ),
    }
}

#[allow(clippy::too_many_arguments)]
async fn watch(
    ecs: &EcsService,
    deployment: &str,
    arn: &str,
    deadline: Instant,
    poll: Duration,
    log: &JobLog,
    mut cancel: Option<&mut Cancel>,
    observer: &mut Observer,
) -> Result<WatchEnd, ReleaseError> {
    let mut last_news = Instant::now();
    let mut stopped_tasks_unavailable = false;
    loop {
        let pause =
            jittered(poll, entropy()).min(deadline.saturating_duration_since(Instant::now()));
        match cancel.as_mut() {
            Some(c) => tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = &mut **c => return Ok(WatchEnd::Cancelled),
            },
            None => tokio::time::sleep(pause).await,
        }
        let service = ecs.describe().await?;
        let mut news = observer.new_events(&service);
        news.extend(observer.deployment_changes(&service));
        let ours = service
            .deployments()
            .iter()
            .find(|d| d.id() == Some(deployment));
        if ours.is_some_and(|d| d.failed_tasks() > 0) {
            match ecs.stopped_tasks(deployment).await {
                Ok(tasks) => news.extend(observer.stopped_tasks(&tasks)),
                // Stopped-task reasons help but are not needed to judge the rollout.
                Err(e) if !stopped_tasks_unavailable => {
                    stopped_tasks_unavailable = true;
                    log.warn(&format!("cannot show stopped tasks: {e}"));
                }
                Err(_) => {}
            }
        }
        if news.is_empty() && last_news.elapsed() >= HEARTBEAT {
            news.push(format!(
                "still rolling out {deployment}; {} s left before the deadline",
                deadline.saturating_duration_since(Instant::now()).as_secs()
            ));
        }
        if !news.is_empty() {
            last_news = Instant::now();
        }
        for line in news {
            log.info(&line);
        }
        let verdict = rollout::assess(&service, deployment, arn);
        if verdict.is_final() {
            return Ok(WatchEnd::Verdict(verdict));
        }
        if Instant::now() >= deadline {
            return Ok(WatchEnd::Deadline);
        }
    }
}

fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn entropy() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_ecs::types::{ContainerDefinition, LogConfiguration, LogDriver};
    use serde_json::json;

    use super::*;

    /// A client whose requests could not leave the process: previews never need them to.
    fn offline() -> EcsService {
        let conf = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .region(aws_sdk_ecs::config::Region::new("eu-west-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        EcsService {
            client: aws_sdk_ecs::Client::from_conf(conf),
            cluster: "c".into(),
            service: "s".into(),
        }
    }

    fn described(
        options: HashMap<String, String>,
        labels: HashMap<String, String>,
    ) -> TaskDefinition {
        TaskDefinition::builder()
            .family("shop")
            .revision(3)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("r/shop:v1")
                    .set_docker_labels(Some(labels))
                    .log_configuration(
                        LogConfiguration::builder()
                            .log_driver(LogDriver::Awslogs)
                            .set_options(Some(options))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build()
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn the_copy_as_sent_does_not_depend_on_map_order() {
        let ecs = offline();
        let options = [
            ("awslogs-group", "/ecs/shop"),
            ("awslogs-region", "eu-west-1"),
            ("awslogs-stream-prefix", "ecs"),
        ];
        let labels = [("owner", "ops"), ("tier", "web"), ("team", "payments")];
        let expected = Document::from_register_request(&json!({
            "family": "shop",
            "containerDefinitions": [{"name": "app", "image": "r/shop:v2",
                "dockerLabels": {"team": "payments", "owner": "ops", "tier": "web"},
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-stream-prefix": "ecs", "awslogs-group": "/ecs/shop",
                    "awslogs-region": "eu-west-1"}}}]
        }))
        .unwrap();
        for round in 0..10 {
            // Each HashMap iterates in its own random order.
            let mut opts: Vec<_> = options.to_vec();
            opts.rotate_left(round % 3);
            let base = described(map(&opts), map(&labels));
            let input = taskdef::copy(&base, 0, "r/shop:v2", Vec::new()).unwrap();
            let sent = ecs.preview_register(input).await.unwrap();
            assert_eq!(sent.diff(&expected), Vec::new(), "round {round}");
        }
    }
}
