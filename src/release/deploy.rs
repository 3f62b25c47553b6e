//! The ECS half of a release: derive the new revision from the service's current one,
//! register and verify it, update the service with that exact revision, follow our
//! deployment to its end, and undo it when it fails.

use std::cmp::Ordering;
use std::time::Duration;

use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;
use aws_sdk_ecs::types::{DeploymentRolloutState, Tag};
use tokio::time::Instant;

use super::ecs::{short_td, Ecs, Revision, Started};
use super::inputs::EcsTarget;
use super::progress::Observer;
use super::rollback::{undo, Aftermath, Failed};
use super::strategy::{self, Strategy};
use super::taskdef::{self, Document, FieldChange};
use super::verdict::{other_deployment_in_progress, Pause, Verdict};
use super::watch::{watch, Watch, WatchEnd};
use super::ReleaseError;
use crate::aws::Fault;
use crate::clock;
use crate::docker::Cancel;
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::settings::{PauseMode, RollbackMode};

/// How often a registration refused with "Too many concurrent attempts" is tried.
const REGISTER_ATTEMPTS: u32 = 5;
/// How often the service is re-based when another release moved it under us.
const REBASE_ATTEMPTS: u32 = 3;

/// What the ECS half should do.
pub struct DeployRequest {
    /// The service and its options.
    pub target: EcsTarget,
    /// The new image.
    pub image: ImageRef,
    /// Traceability tags to add to the revision.
    pub trace_tags: Vec<Tag>,
    /// When the rollout counts as failed.
    pub deadline: Instant,
    /// Poll interval.
    pub poll: Duration,
    /// Rollback mode.
    pub rollback: RollbackMode,
    /// What to do at an approval gate.
    pub on_pause: PauseMode,
    /// Bound on waiting for another deployment.
    pub wait_for_others: Duration,
    /// Bound on following a rollback.
    pub rollback_timeout: Duration,
}

impl DeployRequest {
    /// The release tag, for downgrade and supersede decisions.
    fn tag(&self) -> &str {
        self.image.tag().unwrap_or_default()
    }
}

/// What the ECS half did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployReport {
    /// The revision the service ran before.
    pub previous_arn: String,
    /// The revision it runs now (or is deploying, when awaiting approval).
    pub new_arn: String,
    /// Our deployment: its service deployment ARN, else its `ecs-svc/…` id (`None` when the
    /// image was already deployed).
    pub deployment_id: Option<String>,
    /// Whether nothing had to change.
    pub already_deployed: bool,
    /// The approval gate the deployment waits at, when the job ended there.
    pub awaiting: Option<Pause>,
}

impl DeployReport {
    /// A completed deployment of `new_arn` over `previous_arn`.
    pub fn deployed(previous_arn: &str, new_arn: &str, deployment: String) -> Self {
        DeployReport {
            previous_arn: previous_arn.to_string(),
            new_arn: new_arn.to_string(),
            deployment_id: Some(deployment),
            already_deployed: false,
            awaiting: None,
        }
    }
}

/// What the service's current state asks of this release.
enum Derivation {
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
    pub(crate) container: String,
    pub(crate) input: RegisterTaskDefinitionInput,
}

/// A rollout to follow.
struct Rollout<'a> {
    /// The revision to return to if it fails.
    previous: Option<&'a str>,
    /// The revision rolling out.
    arn: &'a str,
    /// Our deployment.
    started: Started,
    /// How the service deploys.
    strategy: &'a Strategy,
    /// Events before this time (epoch seconds) belong to earlier deployments.
    since: i64,
}

impl Rollout<'_> {
    /// The deployment as ECS's console names it.
    fn name(&self) -> &str {
        self.started
            .service_deployment
            .as_deref()
            .unwrap_or(&self.started.deployment_id)
    }
}

/// Registers, verifies and rolls out the new revision.
pub async fn deploy(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<DeployReport, ReleaseError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (base, new_arn) = {
            let _s = log.section("release_taskdef", "Release: task definition");
            match derive(ecs, req, log).await? {
                Derivation::AlreadyDeployed(arn) => {
                    return Ok(DeployReport {
                        previous_arn: arn.clone(),
                        new_arn: arn,
                        deployment_id: None,
                        already_deployed: true,
                        awaiting: None,
                    })
                }
                Derivation::Resume {
                    previous,
                    arn,
                    started,
                    strategy,
                } => {
                    drop(_s);
                    let _s = log.section("release_rollout", "Release: rollout");
                    let rollout = Rollout {
                        previous: previous.as_deref(),
                        arn: &arn,
                        started,
                        strategy: &strategy,
                        since: clock::epoch_secs() - 60,
                    };
                    log.step(&format!(
                        "Resuming: deployment {} of {} (this release's image) is already rolling out; following it",
                        rollout.name(),
                        short_td(&arn)
                    ));
                    return follow(ecs, req, log, cancel, rollout).await;
                }
                Derivation::New(d) => {
                    let new_arn = register_verified(ecs, req, &d, log).await?;
                    (d.base_arn, new_arn)
                }
            }
        };
        let _s = log.section("release_rollout", "Release: rollout");
        wait_for_other_deployments(ecs, req, log, &new_arn).await?;
        // Optimistic concurrency: the service must still run the revision we derived from.
        let current = ecs.describe_service().await?;
        let current_arn = current.task_definition().unwrap_or_default().to_string();
        if current_arn == base {
            let plan = RolloutPlan {
                base: &base,
                new_arn: &new_arn,
                strategy: Strategy::of(current.deployment_configuration()),
                gated: !strategy::pause_stages(current.deployment_configuration()).is_empty(),
            };
            return roll_out(ecs, req, log, cancel, &plan).await;
        }
        let superseding = superseded_by(ecs, &current_arn, req).await?;
        deregister_unused(ecs, &new_arn, log).await;
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
    }
}

/// Reads the service and its revision and decides what this release has to do.
async fn derive(
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
        taskdef::check_family(base, family)?;
    }
    let target = taskdef::target_container(
        base,
        req.target.container.as_deref(),
        &req.image.repository(),
    )?;
    let container = &base.container_definitions()[target];
    let name = container.name().unwrap_or("?").to_string();
    let current_image = container.image().unwrap_or_default();
    let wanted = req.image.to_string();
    if current_image == wanted {
        let primary = service
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"));
        let steady = service.deployments().len() == 1
            && primary.is_some_and(|d| d.task_definition() == Some(base_arn.as_str()));
        if steady {
            log.info(&format!(
                "Already deployed: container {name} of {} runs {wanted}; nothing registered, nothing updated",
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
    let (tags, dropped) = taskdef::merge_tags(&revision.tags, &req.trace_tags);
    if !dropped.is_empty() {
        log.warn(&format!(
            "the task definition already has 50 tags; not added: {}",
            dropped.join(", ")
        ));
    }
    let input = taskdef::copy(base, target, &wanted, tags)?;
    Ok(Derivation::New(Box::new(Derived {
        base_arn,
        base: revision,
        container: name,
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
async fn register_verified(
    ecs: &impl Ecs,
    req: &DeployRequest,
    d: &Derived,
    log: &JobLog,
) -> Result<String, ReleaseError> {
    checked_copy(ecs, d).await?;
    let new_arn = register(ecs, d.input.clone(), log).await?;
    let described = ecs.task_definition(&new_arn).await?;
    let changes = d.base.document.diff(&described.document);
    let (intended, stray) = partition(&changes, &d.container, req);
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
async fn register(
    ecs: &impl Ecs,
    input: RegisterTaskDefinitionInput,
    log: &JobLog,
) -> Result<String, ReleaseError> {
    let mut attempt = 1;
    loop {
        match ecs.register(input.clone()).await {
            Err(ReleaseError::Call(e))
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
            other => return other,
        }
    }
}

/// A revision this release registered and will not use.
async fn deregister_unused(ecs: &impl Ecs, arn: &str, log: &JobLog) {
    match ecs.deregister(arn).await {
        Ok(()) => log.info(&format!("Deregistered {}, which never ran", short_td(arn))),
        Err(e) => log.warn(&format!("could not deregister {}: {e}", short_td(arn))),
    }
}

/// Splits changes into the intended ones (the image, our tags) and anything else.
fn partition<'c>(
    changes: &'c [FieldChange],
    container: &str,
    req: &DeployRequest,
) -> (Vec<&'c FieldChange>, Vec<&'c FieldChange>) {
    let intended_image = format!("containerDefinitions[{container}].image");
    changes.iter().partition(|c| {
        c.path == intended_image
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
async fn superseded_by(
    ecs: &impl Ecs,
    current_arn: &str,
    req: &DeployRequest,
) -> Result<Option<String>, ReleaseError> {
    let current = ecs.task_definition(current_arn).await?.definition;
    let Ok(target) = taskdef::target_container(
        &current,
        req.target.container.as_deref(),
        &req.image.repository(),
    ) else {
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

async fn wait_for_other_deployments(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
    new_arn: &str,
) -> Result<(), ReleaseError> {
    let limit = Instant::now() + req.wait_for_others;
    let mut announced = false;
    loop {
        let service = ecs.describe_service().await?;
        let Some(busy) = other_deployment_in_progress(&service) else {
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
            deregister_unused(ecs, new_arn, log).await;
            return Err(ReleaseError::OtherDeployment { what: busy });
        }
        tokio::time::sleep(clock::jittered(req.poll)).await;
    }
}

/// The update to make.
struct RolloutPlan<'a> {
    /// The revision the service runs.
    base: &'a str,
    /// The revision to roll out.
    new_arn: &'a str,
    /// How the service deploys.
    strategy: Strategy,
    /// Whether it has approval gates (PAUSE hooks).
    gated: bool,
}

async fn roll_out(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
    cancel: &mut Cancel,
    plan: &RolloutPlan<'_>,
) -> Result<DeployReport, ReleaseError> {
    let (base, new_arn, strategy) = (plan.base, plan.new_arn, &plan.strategy);
    // A deployment that cannot finish before the deadline is not started, unless the job
    // is to end at its approval gate anyway.
    let left = req.deadline.saturating_duration_since(Instant::now());
    let needs = strategy.min_duration();
    let ends_at_gate = plan.gated && req.on_pause == PauseMode::Succeed;
    if needs > left && !ends_at_gate {
        deregister_unused(ecs, new_arn, log).await;
        return Err(ReleaseError::DeadlineTooShort {
            strategy: strategy.to_string(),
            needs,
            left,
        });
    }
    let since = clock::epoch_secs();
    let started = ecs.update_service(new_arn).await?;
    let rollout = Rollout {
        previous: Some(base),
        arn: new_arn,
        started,
        strategy,
        since,
    };
    log.step(&format!(
        "UpdateService: {} -> {}, deployment {} ({strategy})",
        short_td(base),
        short_td(new_arn),
        rollout.name()
    ));
    follow(ecs, req, log, cancel, rollout).await
}

/// Follows the rollout to its end; on failure undoes it as the request says.
async fn follow(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
    cancel: &mut Cancel,
    rollout: Rollout<'_>,
) -> Result<DeployReport, ReleaseError> {
    let mut observer = Observer::new(rollout.since - 5);
    let spec = Watch {
        deployment: &rollout.started.deployment_id,
        service_deployment: rollout.started.service_deployment.as_deref(),
        arn: rollout.arn,
        strategy: rollout.strategy,
        deadline: req.deadline,
        poll: req.poll,
        stop_at_pause: req.on_pause == PauseMode::Succeed,
    };
    let end = watch(ecs, &spec, log, Some(cancel), &mut observer).await?;
    let cancelled = end == WatchEnd::Cancelled;
    let name = rollout.name().to_string();
    let reason = match end {
        WatchEnd::Verdict(Verdict::Completed) => {
            return Ok(DeployReport::deployed(
                rollout.previous.unwrap_or(rollout.arn),
                rollout.arn,
                name,
            ))
        }
        WatchEnd::Verdict(Verdict::AwaitingApproval(pause)) => {
            log.step(&format!(
                "The deployment waits for approval at {} (hooks {}); the job ends here with the                  release awaiting approval. Continue it with `gitlab-ecs-executor continue` or a                  job in a `continue` stage ({})",
                pause.stage,
                pause.hook_ids.join(", "),
                pause
                    .expires_at
                    .map(|t| format!(
                        "the gate times out in {}",
                        clock::human_duration(t - clock::epoch_secs())
                    ))
                    .unwrap_or_else(|| "ECS applies the hook's timeout action when it expires".into())
            ));
            return Ok(DeployReport {
                awaiting: Some(pause),
                ..DeployReport::deployed(rollout.previous.unwrap_or(rollout.arn), rollout.arn, name)
            });
        }
        WatchEnd::Verdict(Verdict::RolledBack(reason)) => {
            // ECS already put the previous revision back; a second rollback would only race it.
            return Err(ReleaseError::RolledBack { reason });
        }
        WatchEnd::Deadline(Verdict::RollingBack(reason)) => {
            // ECS is rolling back on its own: follow it rather than start another.
            return Err(finish_ecs_rollback(ecs, req, log, &rollout, &mut observer, reason).await);
        }
        WatchEnd::Verdict(Verdict::Failed(reason) | Verdict::Vanished(reason)) => reason,
        WatchEnd::Deadline(Verdict::AwaitingApproval(pause)) => format!(
            "deployment {name} still waited for approval at {} (hooks {}) at the rollout deadline",
            pause.stage,
            pause.hook_ids.join(", ")
        ),
        WatchEnd::Verdict(_) | WatchEnd::Deadline(_) => format!(
            "deployment {name} did not complete before the rollout deadline ({} left when it started)",
            clock::human_duration(
                req.deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs() as i64
            )
        ),
        WatchEnd::Cancelled => format!("the job was cancelled while deployment {name} rolled out"),
    };
    let state = match (req.rollback, rollout.previous) {
        (RollbackMode::Never, _) => Aftermath::KeptByRequest(rollout.arn.to_string()),
        (RollbackMode::Auto, None) => Aftermath::NothingToReturnTo(rollout.arn.to_string()),
        (RollbackMode::Auto, Some(base)) => {
            let failed = Failed {
                base,
                new_arn: rollout.arn,
                service_deployment: rollout.started.service_deployment.as_deref(),
                strategy: rollout.strategy,
                cancelled,
                poll: req.poll,
                timeout: req.rollback_timeout,
            };
            undo(ecs, &failed, log, &mut observer).await
        }
    };
    Err(ReleaseError::RolloutFailed {
        reason,
        state: state.to_string(),
    })
}

/// The deadline passed while ECS rolled our deployment back by itself: follow that rollback
/// (up to the rollback timeout) and report where it left the service.
async fn finish_ecs_rollback(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
    rollout: &Rollout<'_>,
    observer: &mut Observer,
    reason: String,
) -> ReleaseError {
    let spec = Watch {
        deployment: &rollout.started.deployment_id,
        service_deployment: rollout.started.service_deployment.as_deref(),
        arn: rollout.arn,
        strategy: rollout.strategy,
        deadline: Instant::now() + req.rollback_timeout,
        poll: req.poll,
        stop_at_pause: false,
    };
    match watch(ecs, &spec, log, None, observer).await {
        Ok(WatchEnd::Verdict(Verdict::RolledBack(reason))) => ReleaseError::RolledBack { reason },
        Ok(end) => ReleaseError::RolloutFailed {
            reason,
            state: format!(
                "ECS was still rolling deployment {} back ({end:?}); check it in the ECS console",
                rollout.name()
            ),
        },
        Err(e) => ReleaseError::RolloutFailed {
            reason,
            state: format!("ECS is rolling back; following it failed: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ecs::fake::{FakeEcs, Scenario};

    const REPO: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop";

    fn service(scenario: Scenario) -> FakeEcs {
        FakeEcs::new(
            "shop",
            &[
                (
                    "log-router",
                    "public.ecr.aws/aws-observability/aws-for-fluent-bit:2",
                ),
                ("app", &format!("{REPO}:v1.0.0")),
            ],
            scenario,
        )
    }

    fn request(tag: &str, rollout: Duration) -> DeployRequest {
        DeployRequest {
            target: EcsTarget {
                cluster: "prod".into(),
                service: "web".into(),
                task_definition: Some("shop".into()),
                container: None,
                rollout_timeout: None,
                rollback: None,
                on_pause_hook: None,
            },
            image: ImageRef::parse(&format!("{REPO}:{tag}")),
            trace_tags: taskdef::traceability_tags(&[("gitlab:tag", tag)]),
            deadline: Instant::now() + rollout,
            poll: Duration::from_secs(5),
            rollback: RollbackMode::Auto,
            on_pause: PauseMode::Wait,
            wait_for_others: Duration::from_secs(60),
            rollback_timeout: Duration::from_secs(60),
        }
    }

    /// What a scenario must end in.
    #[derive(Debug)]
    enum Expect {
        /// Deployed: the service runs this revision.
        Deployed(&'static str),
        /// ECS rolled back by itself; the service runs this revision.
        RolledBackByEcs(&'static str),
        /// A newer release won; the service runs this revision.
        Superseded(&'static str),
        /// Failed and was rolled back by the executor; the service runs this revision.
        FailedThenUndone(&'static str),
    }

    #[tokio::test(start_paused = true)]
    async fn the_rollout_decisions_by_scenario() {
        let minute = Duration::from_secs(60);
        // (scenario, the service, the release tag, what must happen, UpdateService calls)
        let cases: Vec<(&str, FakeEcs, &str, Expect, usize)> = vec![
            (
                "success",
                service(Scenario::CompleteAt(3)),
                "v1.1.0",
                Expect::Deployed("shop:2"),
                1,
            ),
            (
                "circuit breaker rollback",
                service(Scenario::BreakerAt(2)),
                "v1.1.0",
                Expect::RolledBackByEcs("shop:1"),
                1,
            ),
            (
                "superseded by a newer release",
                service(Scenario::CompleteAt(1)).with_concurrent_release(&format!("{REPO}:v9.0.0")),
                "v1.1.0",
                Expect::Superseded("shop:3"),
                0,
            ),
            (
                "an older concurrent release is rebased on",
                service(Scenario::CompleteAt(1)).with_concurrent_release(&format!("{REPO}:v1.0.5")),
                "v1.1.0",
                Expect::Deployed("shop:4"),
                1,
            ),
            (
                "deadline, then rollback",
                service(Scenario::Stuck),
                "v1.1.0",
                Expect::FailedThenUndone("shop:1"),
                2,
            ),
        ];
        for (name, ecs, tag, expect, updates) in cases {
            let log = JobLog::new(Box::new(std::io::sink()), Vec::<String>::new());
            let mut never: Cancel = Box::pin(std::future::pending());
            let result = deploy(&ecs, &request(tag, minute), &log, &mut never).await;
            match (&expect, &result) {
                (Expect::Deployed(rev), Ok(report)) => {
                    assert_eq!(short_td(&report.new_arn), *rev, "{name}");
                    assert_eq!(ecs.service_revision(), *rev, "{name}");
                }
                (Expect::RolledBackByEcs(rev), Err(ReleaseError::RolledBack { reason })) => {
                    assert!(reason.contains("circuit breaker"), "{name}: {reason}");
                    assert_eq!(ecs.service_revision(), *rev, "{name}");
                }
                (Expect::Superseded(rev), Err(ReleaseError::Superseded { by })) => {
                    assert!(by.contains("v9.0.0"), "{name}: {by}");
                    assert_eq!(ecs.service_revision(), *rev, "{name}");
                    assert_eq!(ecs.count("DeregisterTaskDefinition"), 1, "{name}");
                }
                (
                    Expect::FailedThenUndone(rev),
                    Err(ReleaseError::RolloutFailed { reason, state }),
                ) => {
                    assert!(reason.contains("deadline"), "{name}: {reason}");
                    assert!(state.contains("back on"), "{name}: {state}");
                    assert_eq!(ecs.service_revision(), *rev, "{name}");
                }
                (expect, result) => panic!("{name}: expected {expect:?}, got {result:?}"),
            }
            assert_eq!(
                ecs.count("UpdateService"),
                updates,
                "{name}: {:?}",
                ecs.calls()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_image_already_deployed_changes_nothing() {
        let ecs = service(Scenario::CompleteAt(1));
        let log = JobLog::new(Box::new(std::io::sink()), Vec::<String>::new());
        let mut never: Cancel = Box::pin(std::future::pending());
        let report = deploy(
            &ecs,
            &request("v1.0.0", Duration::from_secs(60)),
            &log,
            &mut never,
        )
        .await
        .unwrap();
        assert!(report.already_deployed);
        assert_eq!(
            ecs.count("RegisterTaskDefinition") + ecs.count("UpdateService"),
            0
        );
    }
}
