//! Returning a service to an earlier revision: undoing a failed rollout (to the revision
//! captured before the release, by ECS's own rollback where it has one) and the operator's
//! switch to a chosen revision.

use std::time::Duration;

use tokio::time::Instant;

use super::deploy_report::DeployReport;
use super::ecs::{short_td, Ecs};
use super::progress::Observer;
use super::strategy::Strategy;
use super::verdict::Verdict;
use super::watch::{watch, Watch, WatchEnd};
use super::ReleaseError;
use crate::clock;
use crate::docker::Cancel;
use crate::joblog::JobLog;

/// Where a failed rollout left the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aftermath {
    /// ECS_ROLLBACK=never: the service stays on the failed revision.
    KeptByRequest(String),
    /// No earlier revision is known.
    NothingToReturnTo(String),
    /// The rollback deployment completed.
    BackOn {
        /// The revision the service runs again.
        revision: String,
        /// The rollback deployment.
        deployment: String,
    },
    /// The rollback was started but not followed: the job was cancelled.
    RollbackStarted {
        /// The revision the service returns to.
        revision: String,
        /// The rollback deployment.
        deployment: String,
    },
    /// The rollback ended in another state.
    RollbackDidNotComplete {
        /// The revision it returned to.
        revision: String,
        /// The rollback deployment.
        deployment: String,
        /// What happened.
        detail: String,
    },
    /// The rollback could not be started.
    RollbackFailed {
        /// The revision it should have returned to.
        revision: String,
        /// The failed revision the service may still run.
        failed: String,
        /// Why.
        error: String,
    },
}

impl std::fmt::Display for Aftermath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Aftermath::KeptByRequest(arn) => write!(
                f,
                "ECS_ROLLBACK is never: the service stays on {} (check it in the ECS console)",
                short_td(arn)
            ),
            Aftermath::NothingToReturnTo(arn) => write!(
                f,
                "no earlier revision is known to roll back to: the service stays on {}",
                short_td(arn)
            ),
            Aftermath::BackOn {
                revision,
                deployment,
            } => write!(
                f,
                "the service is back on {} (rollback {deployment} completed)",
                short_td(revision)
            ),
            Aftermath::RollbackStarted {
                revision,
                deployment,
            } => write!(
                f,
                "rollback deployment {deployment} to {} started; not followed because the job was cancelled",
                short_td(revision)
            ),
            Aftermath::RollbackDidNotComplete {
                revision,
                deployment,
                detail,
            } => write!(
                f,
                "the rollback {deployment} to {} did not complete: {detail}",
                short_td(revision)
            ),
            Aftermath::RollbackFailed {
                revision,
                failed,
                error,
            } => write!(
                f,
                "the rollback to {} failed ({error}); the service may still run {}",
                short_td(revision),
                short_td(failed)
            ),
        }
    }
}

/// A rollout that failed and must be undone.
pub(crate) struct Failed<'a> {
    /// The revision captured before the release.
    pub base: &'a str,
    /// The revision that failed.
    pub new_arn: &'a str,
    /// Its service deployment, which ECS can roll back itself.
    pub service_deployment: Option<&'a str>,
    /// How the service deploys.
    pub strategy: &'a Strategy,
    /// Whether the job was cancelled (the runner then allows only a short grace period).
    pub cancelled: bool,
    /// Time between polls of the rollback.
    pub poll: Duration,
    /// How long to follow the rollback.
    pub timeout: Duration,
}

/// Returns the service to `failed.base` and follows the rollback for `failed.timeout`: ECS
/// rolls its own service deployment back (`StopServiceDeployment` with `ROLLBACK`, which
/// every strategy supports, hooks and traffic shifts included); where that API is missing
/// or refuses, an `UpdateService` back to the base revision.
pub(crate) async fn undo(
    ecs: &impl Ecs,
    failed: &Failed<'_>,
    log: &JobLog,
    observer: &mut Observer,
) -> Aftermath {
    let revision = failed.base.to_string();
    if let Some(sd) = failed.service_deployment {
        log.warn(&format!(
            "asking ECS to roll service deployment {sd} back to {}",
            short_td(failed.base)
        ));
        match ecs.stop_service_deployment(sd).await {
            Ok(()) => {
                return follow_rollback(ecs, failed, log, observer, sd, sd, failed.new_arn).await
            }
            Err(e) => log.warn(&format!(
                "ECS did not take the rollback ({e}); pointing the service back at {} instead",
                short_td(failed.base)
            )),
        }
    } else {
        log.warn(&format!(
            "rolling the service back to {}",
            short_td(failed.base)
        ));
    }
    let started = match ecs.update_service(failed.base).await {
        Ok(started) => started,
        Err(e) => {
            return Aftermath::RollbackFailed {
                revision,
                failed: failed.new_arn.to_string(),
                error: e.to_string(),
            }
        }
    };
    let id = started.name();
    follow_rollback(
        ecs,
        failed,
        log,
        observer,
        id,
        &started.deployment_id,
        failed.base,
    )
    .await
}

/// Follows a rollback: either ECS's own (the failed service deployment, whose target stays
/// ours) or a new deployment of the base revision.
async fn follow_rollback(
    ecs: &impl Ecs,
    failed: &Failed<'_>,
    log: &JobLog,
    observer: &mut Observer,
    deployment: &str,
    deployment_id: &str,
    target: &str,
) -> Aftermath {
    let revision = failed.base.to_string();
    let deployment = deployment.to_string();
    if failed.cancelled {
        return Aftermath::RollbackStarted {
            revision,
            deployment,
        };
    }
    let service_deployment = deployment
        .starts_with("arn:")
        .then_some(deployment.as_str());
    let spec = Watch {
        deployment: deployment_id,
        service_deployment,
        arn: target,
        strategy: failed.strategy,
        deadline: Instant::now() + failed.timeout,
        poll: failed.poll,
        stop_at_pause: false,
    };
    let ecs_rolled_back = target != failed.base;
    let detail = match watch(ecs, &spec, log, None, observer).await {
        Ok(WatchEnd::Verdict(Verdict::Completed)) if !ecs_rolled_back => {
            return Aftermath::BackOn {
                revision,
                deployment,
            }
        }
        Ok(WatchEnd::Verdict(Verdict::RolledBack(_))) if ecs_rolled_back => {
            return Aftermath::BackOn {
                revision,
                deployment,
            }
        }
        Ok(WatchEnd::Verdict(
            Verdict::RolledBack(why)
            | Verdict::RollbackFailed(why)
            | Verdict::Failed(why)
            | Verdict::Vanished(why),
        )) => why,
        Ok(WatchEnd::Verdict(v)) => v.to_string(),
        Ok(WatchEnd::Deadline(_) | WatchEnd::Cancelled) => {
            format!("still in progress after {} s", failed.timeout.as_secs())
        }
        Err(e) => format!("it could not be followed: {e}"),
    };
    Aftermath::RollbackDidNotComplete {
        revision,
        deployment,
        detail,
    }
}

/// The operator's switch to an existing revision.
pub struct Switch<'a> {
    /// The revision the service runs now.
    pub from: &'a str,
    /// The revision to return to.
    pub to: &'a str,
    /// When to give up following it, and why then.
    pub deadline: super::RolloutDeadline,
    /// Time between polls.
    pub poll: Duration,
    /// How the service deploys.
    pub strategy: &'a Strategy,
}

/// Points the service at `switch.to` and follows the deployment to the end; no automatic
/// rollback of the rollback.
pub async fn switch(
    ecs: &impl Ecs,
    switch: &Switch<'_>,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<DeployReport, ReleaseError> {
    let _s = log.section("release_rollout", "Rollback: rollout");
    let started = clock::epoch_secs();
    let started_deployment = ecs.update_service(switch.to).await?;
    let deployment = started_deployment.name().to_string();
    log.step(&format!(
        "UpdateService: {} -> {}, deployment {deployment} ({})",
        short_td(switch.from),
        short_td(switch.to),
        switch.strategy
    ));
    let mut observer = Observer::new(started - 5);
    let spec = Watch {
        deployment: &started_deployment.deployment_id,
        service_deployment: started_deployment.service_deployment.as_deref(),
        arn: switch.to,
        strategy: switch.strategy,
        deadline: switch.deadline.at,
        poll: switch.poll,
        stop_at_pause: false,
    };
    let reason = match watch(ecs, &spec, log, Some(cancel), &mut observer).await? {
        WatchEnd::Verdict(Verdict::Completed) => {
            return Ok(DeployReport::deployed(switch.from, switch.to, deployment))
        }
        WatchEnd::Verdict(
            Verdict::RolledBack(r)
            | Verdict::RollbackFailed(r)
            | Verdict::Failed(r)
            | Verdict::Vanished(r),
        ) => r,
        WatchEnd::Verdict(
            Verdict::InProgress | Verdict::RollingBack(_) | Verdict::AwaitingApproval(_),
        )
        | WatchEnd::Deadline(_) => {
            format!(
                "deployment {deployment} did not complete within {}",
                switch.deadline
            )
        }
        WatchEnd::Cancelled => format!("cancelled while deployment {deployment} rolled out"),
    };
    Err(ReleaseError::RolloutFailed {
        reason,
        state: format!(
            "The service points at {}; check it in the ECS console",
            short_td(switch.to)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ecs::fake::{FakeEcs, Scenario};
    use crate::release::testing::{captured_log, never, shop};
    use crate::release::{LimitSource, RolloutDeadline};
    use aws_sdk_ecs::types::ServiceDeploymentStatus;

    const BASE: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop:1";
    const NEW: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop:2";

    /// Our deployment of `NEW` is started on `ecs` and fails; undoes it.
    async fn undone(ecs: &FakeEcs, cancelled: bool) -> (Aftermath, String) {
        let started = ecs.update_service(NEW).await.unwrap();
        let failed = Failed {
            base: BASE,
            new_arn: NEW,
            service_deployment: started.service_deployment.as_deref(),
            strategy: &Strategy::Rolling,
            cancelled,
            poll: Duration::from_secs(5),
            timeout: Duration::from_secs(120),
        };
        let (log, out) = captured_log();
        let mut observer = Observer::new(clock::epoch_secs() - 5);
        let aftermath = undo(ecs, &failed, &log, &mut observer).await;
        (aftermath, out.text())
    }

    #[tokio::test(start_paused = true)]
    async fn ecs_rolls_its_own_service_deployment_back_without_a_second_update() {
        let ecs = shop(Scenario::Stuck).with_service_deployments();
        let (aftermath, _) = undone(&ecs, false).await;
        assert!(
            matches!(&aftermath, Aftermath::BackOn { revision, .. } if revision == BASE),
            "{aftermath:?}"
        );
        assert_eq!(ecs.count("StopServiceDeployment"), 1);
        assert_eq!(ecs.count("UpdateService"), 1);
        assert_eq!(ecs.service_revision(), "shop:1");
        assert_eq!(
            ecs.service_deployment_status(),
            Some(ServiceDeploymentStatus::RollbackSuccessful)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_stop_falls_back_to_pointing_the_service_at_the_base_revision() {
        let ecs = shop(Scenario::Stuck).with_service_deployments();
        ecs.refuse("StopServiceDeployment");
        let (aftermath, log) = undone(&ecs, false).await;
        assert!(
            matches!(&aftermath, Aftermath::BackOn { revision, .. } if revision == BASE),
            "{aftermath:?}"
        );
        assert!(log.contains("ECS did not take the rollback"), "{log}");
        assert_eq!(ecs.count("UpdateService"), 2);
        assert_eq!(ecs.service_revision(), "shop:1");
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_service_deployments_api_the_base_revision_is_deployed_again() {
        let ecs = shop(Scenario::Stuck);
        let (aftermath, log) = undone(&ecs, false).await;
        assert!(
            matches!(&aftermath, Aftermath::BackOn { .. }),
            "{aftermath:?}"
        );
        assert!(log.contains("rolling the service back to shop:1"), "{log}");
        assert_eq!(ecs.count("StopServiceDeployment"), 0);
        assert_eq!(ecs.count("UpdateService"), 2);
        assert_eq!(ecs.service_revision(), "shop:1");
        assert_eq!(
            aftermath.to_string(),
            "the service is back on shop:1 (rollback ecs-svc/3 completed)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_job_starts_the_rollback_and_does_not_follow_it() {
        let ecs = shop(Scenario::Stuck).with_service_deployments();
        let (aftermath, _) = undone(&ecs, true).await;
        assert!(
            matches!(&aftermath, Aftermath::RollbackStarted { .. }),
            "{aftermath:?}"
        );
        assert_eq!(ecs.count("StopServiceDeployment"), 1);
        assert_eq!(ecs.count("DescribeServices"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rollback_that_cannot_start_says_the_failed_revision_may_still_run() {
        let ecs = shop(Scenario::Stuck);
        let started = ecs.update_service(NEW).await.unwrap();
        ecs.refuse("UpdateService");
        let failed = Failed {
            base: BASE,
            new_arn: NEW,
            service_deployment: started.service_deployment.as_deref(),
            strategy: &Strategy::Rolling,
            cancelled: false,
            poll: Duration::from_secs(5),
            timeout: Duration::from_secs(120),
        };
        let (log, _) = captured_log();
        let mut observer = Observer::new(clock::epoch_secs() - 5);
        let aftermath = undo(&ecs, &failed, &log, &mut observer).await;
        assert!(
            matches!(&aftermath, Aftermath::RollbackFailed { failed, .. } if failed == NEW),
            "{aftermath:?}"
        );
        assert!(aftermath.to_string().contains("may still run shop:2"));
    }

    /// The operator's switch from `NEW` back to `BASE`, given `limit`.
    fn back_to_base(limit: Duration) -> Switch<'static> {
        Switch {
            from: NEW,
            to: BASE,
            deadline: RolloutDeadline::after(limit, LimitSource::Setting),
            poll: Duration::from_secs(5),
            strategy: &Strategy::Rolling,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_operators_switch_follows_the_deployment_to_its_end() {
        let ecs = shop(Scenario::CompleteAt(2));
        let (log, _) = captured_log();
        let to_base = back_to_base(Duration::from_secs(300));
        let report = switch(&ecs, &to_base, &log, &mut never()).await.unwrap();
        assert_eq!(report.new_arn, BASE);
        assert_eq!(ecs.service_revision(), "shop:1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_switch_that_does_not_finish_in_time_leaves_the_service_on_its_target() {
        let ecs = shop(Scenario::Stuck);
        let (log, _) = captured_log();
        let to_base = back_to_base(Duration::from_secs(60));
        match switch(&ecs, &to_base, &log, &mut never()).await {
            Err(ReleaseError::RolloutFailed { reason, state }) => {
                assert!(reason.contains("did not complete within"), "{reason}");
                assert!(state.contains("points at shop:1"), "{state}");
            }
            other => panic!("{other:?}"),
        }
        // No rollback of the rollback.
        assert_eq!(ecs.count("UpdateService"), 1);
    }
}
