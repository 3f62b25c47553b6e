//! The ECS half of a release, for one service: derive the new revision from the service's
//! current one, register and verify it (`derive.rs`), then update the service with that
//! exact revision, follow our deployment to its end and undo it when it fails
//! (`rollout.rs`). The two phases are separate so that several services can be prepared
//! first and rolled out together (`release/fleet.rs`), with a gate between them.

mod derive;
mod rollout;

pub(crate) use derive::{checked_copy, derive_only, show_changes};

use std::time::Duration;

use aws_sdk_ecs::types::Tag;

use super::deadline::{rollout_deadline, RolloutDeadline};
use super::ecs::{short_td, Ecs, Started};
use super::inputs::{EcsTarget, ReleaseInputs};
use super::request::Provenance;
use super::strategy::Strategy;
use super::taskdef;
use super::ReleaseError;
use crate::clock;
use crate::docker::Cancel;
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::settings::Settings;
use crate::settings::{PauseMode, RollbackMode};
use derive::{deregister_unused, superseded_by, Derivation};
use rollout::{follow, roll_out, wait_for_other_deployments, Rollout, RolloutPlan};

/// How often the service is re-based when another release moved it under us.
const REBASE_ATTEMPTS: u32 = 3;

/// What the ECS half should do.
pub struct DeployRequest {
    /// The service and its options.
    pub target: EcsTarget,
    /// How `TASK_DEFINITION` applies to this service.
    pub family_check: FamilyCheck,
    /// The new image.
    pub image: ImageRef,
    /// Traceability tags to add to the revision.
    pub trace_tags: Vec<Tag>,
    /// When the rollout counts as failed, and why then.
    pub deadline: RolloutDeadline,
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

pub use super::deploy_report::DeployReport;

impl DeployRequest {
    /// The ECS half of a release of `inputs` to `target`.
    pub fn for_release(
        settings: &Settings,
        inputs: &ReleaseInputs,
        target: &EcsTarget,
        provenance: &Provenance,
        job_deadline: Option<tokio::time::Instant>,
        log: &JobLog,
    ) -> DeployRequest {
        DeployRequest {
            target: target.clone(),
            family_check: if inputs.ecs.len() > 1 {
                FamilyCheck::WhereItMatches
            } else {
                FamilyCheck::Required
            },
            image: inputs.image.clone(),
            trace_tags: taskdef::traceability_tags(&[
                ("gitlab:project", &provenance.project_path),
                ("gitlab:tag", inputs.tag()),
                ("gitlab:commit", &provenance.commit_sha),
                ("gitlab:pipeline", &provenance.pipeline_id),
                ("gitlab:job-url", &provenance.job_url),
            ]),
            deadline: rollout_deadline(settings, target, job_deadline, log),
            poll: settings.ecs.poll_interval,
            rollback: target.rollback.unwrap_or(settings.ecs.rollback),
            on_pause: target.on_pause_hook.unwrap_or(settings.ecs.on_pause_hook),
            wait_for_others: settings.ecs.wait_for_other_deployments,
            rollback_timeout: settings.ecs.rollback_timeout,
        }
    }
}

/// How `TASK_DEFINITION` applies to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyCheck {
    /// The service must run that family (a release to one service).
    Required,
    /// Checked where the service runs that family (one of several services, each with a
    /// family of its own).
    WhereItMatches,
}

/// A service's release after its task definition step.
pub(crate) enum Prepared {
    /// Nothing to roll out: the service already runs the image.
    Done(DeployReport),
    /// An earlier attempt of this release (killed mid-rollout) already started the rollout.
    Resume(Box<Resumed>),
    /// A verified new revision, not yet rolled out.
    Registered {
        /// The revision the service runs.
        base: String,
        /// The new revision.
        new_arn: String,
    },
}

/// A rollout an earlier attempt started.
pub(crate) struct Resumed {
    previous: Option<String>,
    arn: String,
    started: Started,
    strategy: Strategy,
}

impl Prepared {
    /// The new revision, if one was registered.
    pub(crate) fn new_revision(&self) -> Option<&str> {
        match self {
            Prepared::Registered { new_arn, .. } => Some(new_arn),
            Prepared::Done(_) | Prepared::Resume(_) => None,
        }
    }
}

/// Registers, verifies and rolls out the new revision.
pub async fn deploy(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<DeployReport, ReleaseError> {
    let prepared = {
        let _s = log.section("release_taskdef", "Release: task definition");
        prepare(ecs, req, log).await?
    };
    let _s = log.section("release_rollout", "Release: rollout");
    roll(ecs, req, log, cancel, prepared).await
}

/// The task definition step: derive the new revision and register it, verified.
pub(crate) async fn prepare(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
) -> Result<Prepared, ReleaseError> {
    Ok(match derive::derive(ecs, req, log).await? {
        Derivation::AlreadyDeployed(arn) => Prepared::Done(DeployReport {
            previous_arn: arn.clone(),
            new_arn: arn,
            deployment_id: None,
            already_deployed: true,
            awaiting: None,
        }),
        Derivation::Resume {
            previous,
            arn,
            started,
            strategy,
        } => Prepared::Resume(Box::new(Resumed {
            previous,
            arn,
            started,
            strategy,
        })),
        Derivation::New(d) => {
            let new_arn = derive::register_verified(ecs, req, &d, log).await?;
            Prepared::Registered {
                base: d.base_arn,
                new_arn,
            }
        }
    })
}

/// The rollout step: update the service with the prepared revision (re-basing it if
/// another release moved the service meanwhile) and follow the deployment.
pub(crate) async fn roll(
    ecs: &impl Ecs,
    req: &DeployRequest,
    log: &JobLog,
    cancel: &mut Cancel,
    mut prepared: Prepared,
) -> Result<DeployReport, ReleaseError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (base, new_arn) = match prepared {
            Prepared::Done(report) => return Ok(report),
            Prepared::Resume(resumed) => {
                let rollout = Rollout {
                    previous: resumed.previous.as_deref(),
                    arn: &resumed.arn,
                    started: resumed.started.clone(),
                    strategy: &resumed.strategy,
                    since: clock::epoch_secs() - 60,
                };
                log.step(&format!(
                    "Resuming: deployment {} of {} (this release's image) is already rolling out; following it",
                    rollout.name(),
                    short_td(&resumed.arn)
                ));
                return follow(ecs, req, log, cancel, rollout).await;
            }
            Prepared::Registered { base, new_arn } => (base, new_arn),
        };
        wait_for_other_deployments(ecs, req, log, &new_arn, cancel).await?;
        // Optimistic concurrency: the service must still run the revision we derived from.
        let current = ecs.describe_service().await?;
        let current_arn = current.task_definition().unwrap_or_default().to_string();
        if current_arn == base {
            let plan = RolloutPlan {
                base: &base,
                new_arn: &new_arn,
                strategy: Strategy::of(current.deployment_configuration()),
                gated: !super::strategy::pause_stages(current.deployment_configuration())
                    .is_empty(),
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
        prepared = prepare(ecs, req, log).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ecs::fake::{FakeEcs, Scenario};
    use crate::release::testing::{request, shop as service, REPO};

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
                    assert!(
                        reason.contains("rollout timeout of 1 min"),
                        "{name}: {reason}"
                    );
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
