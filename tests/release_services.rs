//! Releases that fit real services: several containers of one image in a task definition,
//! several services of one cluster in one release, and a gated pre-deploy task.

use std::time::Duration;

use serde_json::Value;

use crate::support::release::{Fixture, CLUSTER, FAMILY};
use crate::support::scripted_ecs::{
    Deployments, Hook, Scenario, Script, ScriptedEcs, ServiceSpec, Strategy, TaskScript,
};
use crate::support::task_definitions::{base_tags, web_and_worker};
use crate::support::*;

fn fixture() -> Fixture {
    Fixture::new(&stand_ins::Moto::ecr_password(), "")
}

/// `job` without the variable `key`.
fn without(mut job: Job, key: &str) -> Job {
    job.variables.retain(|v| v.key != key);
    job
}

fn containers(td: &Value) -> Vec<Value> {
    td["containerDefinitions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn every_container_of_the_release_repository_gets_the_image_and_sidecars_stay_as_they_were() {
    let mut f = fixture();
    let old = format!("{}:v1.2.2", f.repository());
    let ecs = ScriptedEcs::start(
        CLUSTER,
        crate::support::release::SERVICE,
        web_and_worker(FAMILY, &old),
        base_tags(),
        Script::default(),
    );
    f.use_ecs(&ecs);
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "Container app: v1.2.2 -> v1.2.3");
    assert_logged(&result.log, "Container worker: v1.2.2 -> v1.2.3");
    assert_logged(&result.log, "containerDefinitions[app].image");
    assert_logged(&result.log, "containerDefinitions[worker].image");
    let (base, _) = ecs.task_definition(&format!(
        "arn:aws:ecs:ap-northeast-1:123456789012:task-definition/{FAMILY}:1"
    ));
    let (new, _) = ecs.task_definition(&ecs.service_task_definition());
    let (before, after) = (containers(&base), containers(&new));
    let new_image = format!("{}:v1.2.3", f.repository());
    assert_eq!(
        after[0], before[0],
        "the log router is unchanged, field by field"
    );
    for i in [1, 2] {
        assert_eq!(after[i]["image"], new_image.as_str());
        let (mut a, mut b) = (after[i].clone(), before[i].clone());
        a["image"] = Value::Null;
        b["image"] = Value::Null;
        assert_eq!(a, b, "{} changed beyond its image", before[i]["name"]);
    }

    // ECS_CONTAINER narrows the release to the containers it names.
    f.tag("v1.2.4");
    let result = f.env.runner.run(
        &f.job("deploy", "v1.2.4", true)
            .var("ECS_CONTAINER", "worker"),
    );
    assert_eq!(result.status, Status::Success, "{}", result.log);
    let (newer, _) = ecs.task_definition(&ecs.service_task_definition());
    let after = containers(&newer);
    assert_eq!(after[1]["image"], new_image.as_str(), "app stays on v1.2.3");
    assert_eq!(
        after[2]["image"],
        format!("{}:v1.2.4", f.repository()).as_str()
    );
}

/// Two services of one cluster, each with its own family, both running v1.2.2; one of
/// the revisions has tags, the other none.
fn two_services(f: &Fixture, web_script: Script, jobs_script: Script) -> ScriptedEcs {
    let old = format!("{}:v1.2.2", f.repository());
    ScriptedEcs::start_services(
        CLUSTER,
        vec![
            ServiceSpec {
                name: "web".into(),
                task_definition: crate::support::release::task_definition(&old)
                    .as_object()
                    .cloned()
                    .map(|mut td| {
                        td.insert("family".into(), "shop-web".into());
                        Value::Object(td)
                    })
                    .unwrap(),
                tags: base_tags(),
                script: web_script,
            },
            ServiceSpec {
                name: "jobs".into(),
                task_definition: web_and_worker("shop-jobs", &old),
                // Untagged, as most revisions are: the release's trace tags are its first.
                tags: Vec::new(),
                script: jobs_script,
            },
        ],
    )
}

#[test]
fn one_release_rolls_out_to_several_services_together() {
    let mut f = fixture();
    let ecs = two_services(&f, Script::default(), Script::default());
    f.use_ecs(&ecs);
    let job =
        without(f.job("deploy", "v1.2.3", true), "TASK_DEFINITION").var("ECS_SERVICE", "web,jobs");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(ecs
        .service_task_definition_of("web")
        .ends_with("shop-web:2"));
    assert!(ecs
        .service_task_definition_of("jobs")
        .ends_with("shop-jobs:2"));
    assert_logged(&result.log, "[web] UpdateService: shop-web:1 -> shop-web:2");
    assert_logged(
        &result.log,
        "[jobs] UpdateService: shop-jobs:1 -> shop-jobs:2",
    );
    // Both updates went out before either rollout was over.
    let ops = ecs.operations();
    let updates: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| *o == "UpdateService")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(updates.len(), 2);
    let env = f.env.project_file(&job, "ecs-release.env").unwrap();
    assert!(env.contains("ECS_RELEASE_SERVICES=web,jobs\n"), "{env}");
    assert!(env.contains("ECS_RELEASE_TASK_DEFINITION_ARN_WEB=arn:aws:ecs:ap-northeast-1:123456789012:task-definition/shop-web:2\n"), "{env}");
    assert!(env.contains("ECS_RELEASE_STATE_JOBS=deployed\n"), "{env}");
}

#[test]
fn when_one_service_fails_the_others_return_to_their_previous_revisions() {
    let mut f = fixture();
    let ecs = two_services(&f, Script::default(), circuit_breaker());
    f.use_ecs(&ecs);
    let job =
        without(f.job("deploy", "v1.2.3", true), "TASK_DEFINITION").var("ECS_SERVICE", "web,jobs");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        "the release failed on jobs: the release was rolled back by ECS",
    );
    assert_logged(
        &result.log,
        "The other services: web: deployed shop-web:2, then the service is back on shop-web:1",
    );
    assert!(ecs
        .service_task_definition_of("web")
        .ends_with("shop-web:1"));
    assert!(ecs
        .service_task_definition_of("jobs")
        .ends_with("shop-jobs:1"));
}

fn circuit_breaker() -> Script {
    Script {
        scenario: Scenario::CircuitBreaker(Duration::from_secs(4)),
        ..Script::default()
    }
}

#[test]
fn a_service_left_at_its_approval_gate_is_rolled_back_by_ecs_when_another_fails() {
    let mut f = fixture();
    let gated = Script {
        deployments: Some(Deployments {
            strategy: Strategy::BlueGreen,
            hooks: vec![Hook::Pause {
                stage: "POST_TEST_TRAFFIC_SHIFT",
            }],
            ..Deployments::default()
        }),
        ..Script::default()
    };
    let ecs = two_services(&f, gated, circuit_breaker());
    f.use_ecs(&ecs);
    let job = without(f.job("deploy", "v1.2.3", true), "TASK_DEFINITION")
        .var("ECS_SERVICE", "web,jobs")
        .var("ECS_ON_PAUSE_HOOK", "succeed");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    // Web's deployment is still in progress at its gate: ECS rolls it back.
    let stops = ecs.requests("StopServiceDeployment");
    assert_eq!(stops.len(), 1, "{}", result.log);
    assert_eq!(stops[0]["stopType"], "ROLLBACK");
    assert!(
        ecs.service_task_definition_of("web")
            .ends_with("shop-web:1"),
        "{}",
        result.log
    );
}

/// A Fargate web service whose migrations run before the rollout.
fn with_migrations(f: &mut Fixture, exit_code: i32) -> ScriptedEcs {
    let old = format!("{}:v1.2.2", f.repository());
    let ecs = ScriptedEcs::start(
        CLUSTER,
        crate::support::release::SERVICE,
        crate::support::task_definitions::fargate_web(FAMILY, &old),
        base_tags(),
        Script {
            task: Some(TaskScript {
                lines: vec![
                    "== 20261127 AddIndexToOrders: migrating ==".into(),
                    "-- add_index(:orders, :customer_id)".into(),
                    if exit_code == 0 {
                        "== 20261127 AddIndexToOrders: migrated (0.0123s) ==".into()
                    } else {
                        "PG::DuplicateTable: ERROR:  relation \"index_orders_on_customer_id\" already exists".into()
                    },
                ],
                exit_code,
                runtime: Duration::from_secs(3),
                logs_endpoint: crate::support::release::moto().endpoint.clone(),
                fails_to_start: None,
            }),
            ..Script::default()
        },
    );
    f.use_ecs(&ecs);
    ecs
}

#[test]
fn a_failing_pre_deploy_task_stops_the_release_before_any_update() {
    let mut f = fixture();
    let ecs = with_migrations(&mut f, 1);
    let result = f.env.runner.run(
        &f.job("deploy", "v1.2.3", true)
            .var("ECS_PRE_DEPLOY_COMMAND", "bin/rails db:migrate"),
    );
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "-- add_index(:orders, :customer_id)");
    assert_logged(
        &result.log,
        "relation \"index_orders_on_customer_id\" already exists",
    );
    assert_logged(&result.log, "failed with exit code 1");
    assert_logged(
        &result.log,
        "the new revision your-task-definition:2 stays registered but unused",
    );
    assert!(ecs.requests("UpdateService").is_empty());
    assert!(ecs.service_task_definition().ends_with(":1"));
}

#[test]
fn a_pre_deploy_task_of_the_new_revision_runs_like_the_service_then_the_release_goes_on() {
    let mut f = fixture();
    let ecs = with_migrations(&mut f, 0);
    let result = f.env.runner.run(
        &f.job("deploy", "v1.2.3", true)
            .var("ECS_PRE_DEPLOY_COMMAND", r#"["bin/rails", "db:migrate"]"#),
    );
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "migrated (0.0123s)");
    let runs = ecs.requests("RunTask");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(
        run["taskDefinition"],
        format!("arn:aws:ecs:ap-northeast-1:123456789012:task-definition/{FAMILY}:2").as_str()
    );
    assert_eq!(run["overrides"]["containerOverrides"][0]["name"], "app");
    assert_eq!(
        run["overrides"]["containerOverrides"][0]["command"],
        serde_json::json!(["bin/rails", "db:migrate"])
    );
    assert_eq!(run["launchType"], "FARGATE");
    assert_eq!(
        run["networkConfiguration"]["awsvpcConfiguration"]["subnets"],
        serde_json::json!(["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"])
    );
    // The task ran before the update.
    let ops = ecs.operations();
    let run_at = ops.iter().position(|o| o == "RunTask").unwrap();
    let update_at = ops.iter().position(|o| o == "UpdateService").unwrap();
    assert!(run_at < update_at, "{ops:?}");
    assert!(ecs.service_task_definition().ends_with(":2"));
}
