//! The rollout step of a release: wait out other deployments, refuse a deadline the
//! service's strategy cannot meet, update the service, follow our deployment and undo it
//! when it fails.

use tokio::time::Instant;

use super::{DeployReport, DeployRequest};
use crate::clock;
use crate::docker::Cancel;
use crate::joblog::JobLog;
use crate::release::ecs::{short_td, Ecs, Started};
use crate::release::progress::Observer;
use crate::release::strategy::Strategy;
use crate::release::undo::{undo, Aftermath, Failed};
use crate::release::verdict::{other_deployment_in_progress, Verdict};
use crate::release::watch::{watch, Watch, WatchEnd};
use crate::release::ReleaseError;
use crate::settings::{PauseMode, RollbackMode};

use super::derive::deregister_unused;

/// A rollout to follow.
pub(super) struct Rollout<'a> {
    /// The revision to return to if it fails.
    pub(super) previous: Option<&'a str>,
    /// The revision rolling out.
    pub(super) arn: &'a str,
    /// Our deployment.
    pub(super) started: Started,
    /// How the service deploys.
    pub(super) strategy: &'a Strategy,
    /// Events before this time (epoch seconds) belong to earlier deployments.
    pub(super) since: i64,
}

impl Rollout<'_> {
    /// The deployment as ECS's console names it.
    pub(super) fn name(&self) -> &str {
        self.started.name()
    }
}

/// Waits (bounded) for another deployment of the service to finish before ours starts; a
/// cancel meanwhile ends the release with the service untouched.
pub(super) async fn wait_for_other_deployments(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
    new_arn: &str,
    cancel: &mut Cancel,
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
        tokio::select! {
            _ = tokio::time::sleep(clock::jittered(req.poll)) => {}
            _ = &mut *cancel => {
                log.warn(&format!(
                    "the job was cancelled while deployment {busy} ran: the service was not updated"
                ));
                deregister_unused(ecs, new_arn, log).await;
                return Err(ReleaseError::Cancelled);
            }
        }
    }
}

/// The update to make.
pub(super) struct RolloutPlan<'a> {
    /// The revision the service runs.
    pub(super) base: &'a str,
    /// The revision to roll out.
    pub(super) new_arn: &'a str,
    /// How the service deploys.
    pub(super) strategy: Strategy,
    /// Whether it has approval gates (PAUSE hooks).
    pub(super) gated: bool,
}

/// Updates the service with the new revision and follows the deployment.
pub(super) async fn roll_out(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
    cancel: &mut Cancel,
    plan: &RolloutPlan<'_>,
) -> Result<DeployReport, ReleaseError> {
    let (base, new_arn, strategy) = (plan.base, plan.new_arn, &plan.strategy);
    // A deployment that cannot finish before the deadline is not started, unless the job
    // is to end at its approval gate anyway.
    let left = req.deadline.at.saturating_duration_since(Instant::now());
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
pub(super) async fn follow(
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
        deadline: req.deadline.at,
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
                "The deployment waits for approval at {} (hooks {}); the job ends here with the \
                 release awaiting approval. Continue it with `gitlab-ecs-executor continue` or a \
                 job in a `continue` stage ({})",
                pause.stage,
                pause.hook_ids.join(", "),
                pause
                    .expires_at
                    .map(|t| format!(
                        "the gate times out in {}",
                        clock::human_duration(t - clock::epoch_secs())
                    ))
                    .unwrap_or_else(
                        || "ECS applies the hook's timeout action when it expires".into()
                    )
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
        // ECS could not roll back: our own undo points the service at the base revision.
        WatchEnd::Verdict(
            Verdict::Failed(reason) | Verdict::Vanished(reason) | Verdict::RollbackFailed(reason),
        ) => reason,
        WatchEnd::Deadline(Verdict::AwaitingApproval(pause)) => format!(
            "deployment {name} still waited for approval at {} (hooks {}) at the end of {}",
            pause.stage,
            pause.hook_ids.join(", "),
            req.deadline
        ),
        WatchEnd::Verdict(_) | WatchEnd::Deadline(_) => {
            format!("deployment {name} did not complete within {}", req.deadline)
        }
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
pub(super) async fn finish_ecs_rollback(
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
        Ok(WatchEnd::Verdict(Verdict::RollbackFailed(state))) => {
            ReleaseError::RolloutFailed { reason, state }
        }
        Ok(end) => ReleaseError::RolloutFailed {
            reason,
            state: format!(
                "ECS was still rolling deployment {} back ({end}); check it in the ECS console",
                rollout.name()
            ),
        },
        Err(e) => ReleaseError::RolloutFailed {
            reason,
            state: format!("ECS is rolling back; following it failed: {e}"),
        },
    }
}
