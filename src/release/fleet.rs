//! One release, several services of a cluster: each service gets its own new revision of
//! its own family with the one pushed image; an optional gate (the pre-deploy task) runs
//! after every revision is registered and before any service is updated; the rollouts then
//! run together and are followed together (each line prefixed with its service). The
//! release succeeds only if every service does; when one fails, the others go back to their
//! previous revisions (unless `ecs.rollback` says never) and the error says which service
//! did what.

use std::future::Future;

use tokio::sync::watch as signal;

use super::deploy::{self, DeployReport, DeployRequest, Prepared};
use super::ecs::{short_td, Ecs};
use super::error::ServiceFailure;
use super::progress::Observer;
use super::strategy::Strategy;
use super::undo::{undo, Failed};
use super::ReleaseError;
use crate::clock;
use crate::docker::Cancel;
use crate::joblog::JobLog;
use crate::settings::RollbackMode;

/// One service of the release.
pub struct Member<E> {
    /// The service.
    pub ecs: E,
    /// What to do with it.
    pub req: DeployRequest,
}

/// What runs between registering and updating: given the first service and its new
/// revision, it decides whether the release goes on.
pub trait Gate<E> {
    /// Runs the gate; an error (a cancel among them) stops the release before any service
    /// changes.
    fn check<'a>(
        &'a self,
        member: &'a Member<E>,
        new_revision: &'a str,
        log: &'a JobLog,
        cancel: &'a mut Cancel,
    ) -> impl Future<Output = Result<(), ReleaseError>> + 'a;
}

/// No gate.
pub struct NoGate;

impl<E> Gate<E> for NoGate {
    async fn check(
        &self,
        _: &Member<E>,
        _: &str,
        _: &JobLog,
        _: &mut Cancel,
    ) -> Result<(), ReleaseError> {
        Ok(())
    }
}

/// Releases to every member; returns their reports in the members' order.
pub async fn deploy_all<E: Ecs>(
    members: &[Member<E>],
    gate: &impl Gate<E>,
    log: &JobLog,
    cancel: &mut Cancel,
) -> Result<Vec<DeployReport>, ReleaseError> {
    let several = members.len() > 1;
    let logs: Vec<JobLog> = members
        .iter()
        .map(|m| service_log(log, m.ecs.service(), members.len()))
        .collect();
    let mut prepared = Vec::new();
    {
        let heading = if several {
            "Release: task definitions"
        } else {
            "Release: task definition"
        };
        let _s = log.section("release_taskdef", heading);
        for (member, log) in members.iter().zip(&logs) {
            prepared.push(deploy::prepare(&member.ecs, &member.req, log).await?);
        }
    }
    let first_new = members
        .iter()
        .zip(&prepared)
        .find_map(|(m, p)| p.new_revision().map(|arn| (m, arn.to_string())));
    if let Some((member, new_revision)) = first_new {
        if let Err(e) = gate.check(member, &new_revision, log, cancel).await {
            let unused: Vec<&str> = prepared
                .iter()
                .filter_map(Prepared::new_revision)
                .map(short_td)
                .collect();
            log.warn(&format!(
                "no service was updated; the new revision{} {} stay{} registered but unused",
                if unused.len() == 1 { "" } else { "s" },
                unused.join(", "),
                if unused.len() == 1 { "s" } else { "" }
            ));
            return Err(e);
        }
    }
    let _s = log.section("release_rollout", "Release: rollout");
    let results = roll_all(members, prepared, &logs, cancel).await;
    if results.iter().all(Result::is_ok) {
        return Ok(results.into_iter().flatten().collect());
    }
    if !several {
        return results.into_iter().collect();
    }
    Err(undo_the_rest(members, results, &logs).await)
}

/// Rolls every prepared member out at once; a cancel reaches them all.
async fn roll_all<E: Ecs>(
    members: &[Member<E>],
    prepared: Vec<Prepared>,
    logs: &[JobLog],
    cancel: &mut Cancel,
) -> Vec<Result<DeployReport, ReleaseError>> {
    let (tx, rx) = signal::channel(false);
    let rollouts = members.iter().zip(prepared).zip(logs).map(|((m, p), log)| {
        let mut rx = rx.clone();
        let mut own: Cancel = Box::pin(async move {
            let _ = rx.wait_for(|cancelled| *cancelled).await;
        });
        async move { deploy::roll(&m.ecs, &m.req, log, &mut own, p).await }
    });
    let all = futures_util::future::join_all(rollouts);
    tokio::pin!(all);
    let mut cancelled = false;
    loop {
        tokio::select! {
            results = &mut all => return results,
            _ = &mut *cancel, if !cancelled => {
                cancelled = true;
                let _ = tx.send(true);
            }
        }
    }
}

/// The log of one of `services` services: its lines prefixed with its name when there are
/// several.
pub fn service_log(log: &JobLog, service: &str, services: usize) -> JobLog {
    match services > 1 {
        true => log.prefixed(&format!("[{service}] ")),
        false => log.clone(),
    }
}

/// One service failed: the ones that deployed go back to their previous revisions (as the
/// rollback mode says); the error tells what each service did.
async fn undo_the_rest<E: Ecs>(
    members: &[Member<E>],
    results: Vec<Result<DeployReport, ReleaseError>>,
    logs: &[JobLog],
) -> ReleaseError {
    let mut failed = Vec::new();
    let mut others = Vec::new();
    for ((member, result), log) in members.iter().zip(results).zip(logs) {
        let service = member.ecs.service().to_string();
        match result {
            Err(e) => failed.push(ServiceFailure {
                service,
                error: Box::new(e),
            }),
            Ok(report) if report.already_deployed => {
                others.push(format!("{service}: already ran the release, unchanged"))
            }
            Ok(report) if member.req.rollback == RollbackMode::Never => others.push(format!(
                "{service}: deployed {} and kept there (ECS_ROLLBACK is never)",
                short_td(&report.new_arn)
            )),
            Ok(report) => {
                log.warn(&format!(
                    "another service of this release failed: returning {service} to {}",
                    short_td(&report.previous_arn)
                ));
                let strategy = match member.ecs.describe_service().await {
                    Ok(s) => Strategy::of(s.deployment_configuration()),
                    Err(_) => Strategy::Rolling,
                };
                let back = Failed {
                    base: &report.previous_arn,
                    new_arn: &report.new_arn,
                    // One waiting at its approval gate is still in progress: ECS rolls it
                    // back. A completed one cannot be stopped: point the service back.
                    service_deployment: report.awaiting.as_ref().map(|p| p.deployment.as_str()),
                    strategy: &strategy,
                    cancelled: false,
                    poll: member.req.poll,
                    timeout: member.req.rollback_timeout,
                };
                let mut observer = Observer::new(clock::epoch_secs() - 5);
                let aftermath = undo(&member.ecs, &back, log, &mut observer).await;
                others.push(format!(
                    "{service}: deployed {}, then {aftermath}",
                    short_td(&report.new_arn)
                ));
            }
        }
    }
    ReleaseError::ServicesFailed { failed, others }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::release::ecs::fake::{FakeEcs, Scenario, TaskScenario};
    use crate::release::inputs::PreDeploy;
    use crate::release::pre_deploy::PreDeployGate;
    use crate::release::testing::{cancel_after, captured_log, never, request, shop};

    /// Services `web` and `worker` of one release, each with its own fake.
    fn fleet(web: Scenario, worker: Scenario) -> Vec<Member<FakeEcs>> {
        let mut worker_req = request("v1.1.0", Duration::from_secs(600));
        worker_req.target.service = "worker".into();
        vec![
            Member {
                ecs: shop(web),
                req: request("v1.1.0", Duration::from_secs(600)),
            },
            Member {
                ecs: shop(worker).named("worker"),
                req: worker_req,
            },
        ]
    }

    #[tokio::test(start_paused = true)]
    async fn every_service_deploys_and_each_log_line_names_its_service() {
        let members = fleet(Scenario::CompleteAt(2), Scenario::CompleteAt(3));
        let (log, out) = captured_log();
        let reports = deploy_all(&members, &NoGate, &log, &mut never())
            .await
            .unwrap();
        assert_eq!(reports.len(), 2);
        for m in &members {
            assert_eq!(m.ecs.service_revision(), "shop:2");
        }
        let text = out.text();
        assert!(
            text.contains("[web] ") && text.contains("[worker] "),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_failed_service_returns_the_others_to_their_previous_revision() {
        let members = fleet(Scenario::CompleteAt(2), Scenario::BreakerAt(3));
        let (log, _) = captured_log();
        match deploy_all(&members, &NoGate, &log, &mut never()).await {
            Err(ReleaseError::ServicesFailed { failed, others }) => {
                assert_eq!(failed.len(), 1);
                assert_eq!(failed[0].service, "worker");
                assert!(
                    matches!(&*failed[0].error, ReleaseError::RolledBack { reason } if reason.contains("circuit breaker")),
                    "{failed:?}"
                );
                assert_eq!(others.len(), 1);
                assert!(
                    others[0]
                        .starts_with("web: deployed shop:2, then the service is back on shop:1"),
                    "{others:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        for m in &members {
            assert_eq!(m.ecs.service_revision(), "shop:1", "{}", m.ecs.service());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_rollback_never_the_deployed_services_stay() {
        let mut members = fleet(Scenario::CompleteAt(2), Scenario::BreakerAt(3));
        members[0].req.rollback = RollbackMode::Never;
        let (log, _) = captured_log();
        match deploy_all(&members, &NoGate, &log, &mut never()).await {
            Err(ReleaseError::ServicesFailed { others, .. }) => {
                assert!(others[0].contains("kept there"), "{others:?}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(members[0].ecs.service_revision(), "shop:2");
        assert_eq!(members[0].ecs.count("UpdateService"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_migration_updates_no_service_and_names_the_unused_revisions() {
        let members = fleet(Scenario::CompleteAt(1), Scenario::CompleteAt(1));
        let members: Vec<Member<FakeEcs>> = members
            .into_iter()
            .map(|m| Member {
                ecs: m.ecs.with_tasks(TaskScenario::ExitsAt { poll: 2, code: 1 }),
                req: m.req,
            })
            .collect();
        let gate = PreDeployGate {
            task: PreDeploy {
                command: vec!["bin/migrate".into()],
                timeout: None,
            },
            aws: aws_config::SdkConfig::builder().build(),
        };
        let (log, out) = captured_log();
        let result = deploy_all(&members, &gate, &log, &mut never()).await;
        assert!(
            matches!(
                result,
                Err(ReleaseError::PreDeployFailed {
                    exit_code: Some(1),
                    ..
                })
            ),
            "{result:?}"
        );
        // The migration ran once, in the first service's new revision.
        assert_eq!(members[0].ecs.tasks().len(), 1);
        assert!(members[1].ecs.tasks().is_empty());
        for m in &members {
            assert_eq!(m.ecs.count("UpdateService"), 0, "{}", m.ecs.service());
        }
        let text = out.text();
        assert!(
            text.contains("no service was updated; the new revisions shop:2, shop:2 stay registered but unused"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_during_the_rollouts_reaches_every_service() {
        let members = fleet(Scenario::Stuck, Scenario::Stuck);
        let (log, _) = captured_log();
        let result = deploy_all(
            &members,
            &NoGate,
            &log,
            &mut cancel_after(Duration::from_secs(20)),
        )
        .await;
        match result {
            Err(ReleaseError::ServicesFailed { failed, .. }) => {
                assert_eq!(failed.len(), 2, "{failed:?}");
                assert!(
                    failed
                        .iter()
                        .all(|f| f.error.to_string().contains("cancelled")),
                    "{failed:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Each rollback was started (pointing the service back), not followed.
        for m in &members {
            assert_eq!(m.ecs.service_revision(), "shop:1", "{}", m.ecs.service());
            assert_eq!(m.ecs.count("UpdateService"), 2, "{}", m.ecs.service());
        }
    }
}
