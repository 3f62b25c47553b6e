//! A cancelled release changes nothing more: cancelled before its update, the services keep
//! their revisions (a pre-deploy task is stopped, a registered revision nothing uses is
//! deregistered where the release alone made it); cancelled after, the service goes back to
//! its previous revision and the job log says so.

use std::time::Duration;

use crate::support::release::{moto, Fixture, FAMILY};
use crate::support::scripted_ecs::{Scenario, Script, ScriptedEcs, TaskScript};
use crate::support::*;

fn fixture() -> Fixture {
    Fixture::new(&stand_ins::Moto::ecr_password(), "")
}

/// A scripted ECS whose service runs v1.2.2 and behaves as `script` says.
fn ecs_of(f: &mut Fixture, script: Script) -> ScriptedEcs {
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
    f.use_ecs(&ecs);
    ecs
}

/// The revision the release found, and the one it would register.
fn revision(n: u32) -> String {
    format!(":task-definition/{FAMILY}:{n}")
}

#[test]
fn a_cancel_during_the_image_build_touches_no_task_definition_and_no_service() {
    let mut f = fixture();
    let ecs = ecs_of(&mut f, Script::default());
    let job = f.job("deploy", "v1.2.3", true);
    let result = f
        .env
        .runner
        .run_with(&job, Cancel::WhenLogged("Release: image"));
    assert_eq!(result.status, Status::Canceled, "{}", result.log);
    let ops = ecs.operations();
    for op in ["RegisterTaskDefinition", "UpdateService", "RunTask"] {
        assert!(!ops.iter().any(|o| o == op), "{op} in {ops:?}");
    }
    assert!(ecs.service_task_definition().ends_with(&revision(1)));
}

#[test]
fn a_cancel_during_the_pre_deploy_task_stops_it_and_updates_no_service() {
    let mut f = fixture();
    let ecs = ecs_of(
        &mut f,
        Script {
            task: Some(TaskScript {
                lines: vec!["== 20261127 BackfillOrders: migrating ==".into()],
                exit_code: 0,
                runtime: Duration::from_secs(120),
                logs_endpoint: moto().endpoint.clone(),
                fails_to_start: None,
            }),
            ..Script::default()
        },
    );
    let job = f
        .job("deploy", "v1.2.3", true)
        .var("ECS_PRE_DEPLOY_COMMAND", r#"["bin/rails", "db:migrate"]"#);
    let result = f
        .env
        .runner
        .run_with(&job, Cancel::WhenLogged("placed like the tasks of service"));
    assert_eq!(result.status, Status::Canceled, "{}", result.log);
    let ops = ecs.operations();
    assert!(ops.iter().any(|o| o == "RunTask"), "{ops:?}");
    assert!(ops.iter().any(|o| o == "StopTask"), "{ops:?}");
    assert!(!ops.iter().any(|o| o == "UpdateService"), "{ops:?}");
    assert!(ecs.service_task_definition().ends_with(&revision(1)));
    assert_logged(&result.log, "was stopped");
    assert_logged(&result.log, "no service was updated");
}

#[test]
fn a_cancel_while_another_deployment_runs_updates_nothing_and_leaves_no_revision() {
    let mut f = fixture();
    let ecs = ecs_of(
        &mut f,
        Script {
            busy_for: Some(Duration::from_secs(120)),
            ..Script::default()
        },
    );
    let job = f.job("deploy", "v1.2.3", true);
    let result = f
        .env
        .runner
        .run_with(&job, Cancel::WhenLogged("(IN_PROGRESS) to finish"));
    assert_eq!(result.status, Status::Canceled, "{}", result.log);
    let ops = ecs.operations();
    assert!(!ops.iter().any(|o| o == "UpdateService"), "{ops:?}");
    assert!(ecs.service_task_definition().ends_with(&revision(1)));
    // The revision this release registered is not left for anyone to mistake for a release.
    assert!(
        !ecs.active_revisions()
            .iter()
            .any(|r| r.ends_with(&revision(2))),
        "{:?}",
        ecs.active_revisions()
    );
    assert_logged(&result.log, "the service was not updated");
}

#[test]
fn a_cancel_during_the_rollout_puts_the_previous_revision_back_and_says_so() {
    let mut f = fixture();
    let ecs = ecs_of(
        &mut f,
        Script {
            scenario: Scenario::Succeed(Duration::from_secs(120)),
            ..Script::default()
        },
    );
    let job = f.job("deploy", "v1.2.3", true);
    let result = f
        .env
        .runner
        .run_with(&job, Cancel::WhenLogged("UpdateService: "));
    assert_eq!(result.status, Status::Canceled, "{}", result.log);
    let updates = ecs.requests("UpdateService");
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert!(ecs.service_task_definition().ends_with(&revision(1)));
    assert_logged(&result.log, "because the job was cancelled");
}
