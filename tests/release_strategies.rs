//! Releases onto services that deploy with ECS's native strategies (rolling with alarms,
//! blue/green, linear, canary), lifecycle hooks and approval gates, followed through the
//! service deployments API of the scripted endpoint; and the services a release refuses.

use std::time::{Duration, Instant};

use crate::support::release::{Fixture, SERVICE};
use crate::support::scripted_ecs::{Deployments, Hook, Script, ScriptedEcs, Strategy};
use crate::support::*;

fn fixture() -> Fixture {
    Fixture::new(&stand_ins::Moto::ecr_password(), "")
}

/// A service running v1.2.2 that deploys as `deployments` says.
fn service(f: &mut Fixture, deployments: Deployments) -> ScriptedEcs {
    let script = Script {
        deployments: Some(deployments),
        rollback_time: Duration::from_secs(1),
        ..Script::default()
    };
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
    f.use_ecs(&ecs);
    ecs
}

/// Lines of the log that name a lifecycle stage, in order, without repeats.
fn stages(log: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for line in log.lines() {
        if let Some(stage) = line.split("lifecycle stage ").nth(1) {
            let stage = stage.trim().to_string();
            if seen.last() != Some(&stage) {
                seen.push(stage);
            }
        }
    }
    seen
}

fn on_revision(ecs: &ScriptedEcs, revision: u32) -> bool {
    ecs.service_task_definition()
        .ends_with(&format!(":{revision}"))
}

#[test]
fn a_blue_green_release_walks_through_its_stages_and_bake_to_success() {
    let mut f = fixture();
    let ecs = service(
        &mut f,
        Deployments {
            strategy: Strategy::BlueGreen,
            bake_minutes: 1,
            stage_time: Duration::from_millis(300),
            slow_stages: vec![
                ("TEST_TRAFFIC_SHIFT", Duration::from_millis(1500)),
                ("PRODUCTION_TRAFFIC_SHIFT", Duration::from_millis(1500)),
                ("BAKE_TIME", Duration::from_millis(2500)),
            ],
            ..Deployments::default()
        },
    );
    let job = f.job("deploy", "v1.2.3", true);
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "deploys with blue/green, bake 1 min");
    let seen = stages(&result.log);
    for stage in [
        "TEST_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
    ] {
        assert!(
            seen.iter().any(|s| s == stage),
            "{stage} not in {seen:?}\n{}",
            result.log
        );
    }
    let order: Vec<usize> = [
        "TEST_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
    ]
    .iter()
    .map(|s| seen.iter().position(|x| x == s).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_logged(&result.log, "production traffic: 100 % new, 0 % old");
    assert_logged(&result.log, "service deployment SUCCESSFUL");
    assert!(on_revision(&ecs, 2));
    let env = f.env.project_file(&job, "ecs-release.env").unwrap();
    assert!(env.contains("ECS_RELEASE_STATE=deployed\n"), "{env}");
    assert!(
        env.contains(
            "ECS_RELEASE_DEPLOYMENT_ID=arn:aws:ecs:ap-northeast-1:123456789012:service-deployment/"
        ),
        "{env}"
    );
}

#[test]
fn a_failing_lifecycle_hook_is_rolled_back_by_ecs_and_named_with_its_stage() {
    let mut f = fixture();
    let ecs = service(
        &mut f,
        Deployments {
            strategy: Strategy::BlueGreen,
            hooks: vec![Hook::Lambda {
                stage: "POST_TEST_TRAFFIC_SHIFT",
                fails: true,
            }],
            ..Deployments::default()
        },
    );
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "the release was rolled back by ECS");
    assert_logged(&result.log, "(Lambda arn:aws:lambda:ap-northeast-1:123456789012:function:smoke-test) FAILED at POST_TEST_TRAFFIC_SHIFT");
    assert!(
        on_revision(&ecs, 1),
        "the service is back on the source revision"
    );
    assert_eq!(ecs.requests("UpdateService").len(), 1, "no second update");
    assert!(ecs.requests("StopServiceDeployment").is_empty());
}

#[test]
fn a_rolling_release_whose_alarm_fires_fails_naming_the_alarm() {
    let mut f = fixture();
    let ecs = service(
        &mut f,
        Deployments {
            strategy: Strategy::Rolling,
            alarm: Some(("shop-5xx-rate".into(), Some(Duration::from_secs(2)))),
            stuck: true,
            ..Deployments::default()
        },
    );
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "alarm shop-5xx-rate fired");
    assert_logged(
        &result.log,
        "the release was rolled back by ECS: alarm shop-5xx-rate fired",
    );
    assert!(on_revision(&ecs, 1));
    assert_eq!(ecs.requests("UpdateService").len(), 1);
}

#[test]
fn canary_and_linear_releases_show_their_traffic_steps() {
    for (strategy, shares) in [
        (
            Strategy::Canary(10.0),
            vec!["10 % new, 90 % old", "100 % new, 0 % old"],
        ),
        (
            Strategy::Linear(25.0),
            vec![
                "25 % new, 75 % old",
                "50 % new, 50 % old",
                "100 % new, 0 % old",
            ],
        ),
    ] {
        let mut f = fixture();
        let ecs = service(
            &mut f,
            Deployments {
                strategy: strategy.clone(),
                stage_time: Duration::from_millis(200),
                slow_stages: vec![("PRODUCTION_TRAFFIC_SHIFT", Duration::from_millis(1500))],
                ..Deployments::default()
            },
        );
        let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
        assert_eq!(
            result.status,
            Status::Success,
            "{strategy:?}: {}",
            result.log
        );
        for share in shares {
            assert_logged(&result.log, &format!("production traffic: {share}"));
        }
        assert!(on_revision(&ecs, 2));
    }
}

#[test]
fn a_deployment_that_never_finishes_is_stopped_with_an_ecs_rollback_at_the_deadline() {
    let mut f = fixture();
    let ecs = service(
        &mut f,
        Deployments {
            strategy: Strategy::BlueGreen,
            stuck: true,
            ..Deployments::default()
        },
    );
    let result = f.env.runner.run(
        &f.job("deploy", "v1.2.3", true)
            .var("ECS_ROLLOUT_TIMEOUT", "3s"),
    );
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    let stops = ecs.requests("StopServiceDeployment");
    assert_eq!(stops.len(), 1, "{}", result.log);
    assert_eq!(stops[0]["stopType"], "ROLLBACK");
    assert_logged(
        &result.log,
        "did not complete within the rollout timeout of 3 s (ECS_ROLLOUT_TIMEOUT)",
    );
    assert_logged(&result.log, "the service is back on your-task-definition:1");
    assert!(on_revision(&ecs, 1));
    assert_eq!(
        ecs.requests("UpdateService").len(),
        1,
        "ECS rolled back, not a second update"
    );
}

/// A blue/green service with an approval gate after test traffic.
fn gated(f: &mut Fixture) -> ScriptedEcs {
    service(
        f,
        Deployments {
            strategy: Strategy::BlueGreen,
            hooks: vec![Hook::Pause {
                stage: "POST_TEST_TRAFFIC_SHIFT",
            }],
            ..Deployments::default()
        },
    )
}

/// Waits until the service's deployment waits at its gate.
fn wait_for_gate(ecs: &ScriptedEcs) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let waiting = ecs.service_deployments(SERVICE).iter().any(|d| {
            d["lifecycleHookDetails"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|h| h["status"] == "AWAITING_ACTION")
        });
        if waiting {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the deployment never reached its approval gate");
}

#[test]
fn an_approval_gate_is_waited_for_until_an_operator_continues_it() {
    let mut f = fixture();
    let ecs = gated(&mut f);
    let job = f.job("deploy", "v1.2.3", true);
    let (result, continued) = std::thread::scope(|s| {
        let running = s.spawn(|| f.env.runner.run(&job));
        wait_for_gate(&ecs);
        // Long enough for the job to see the gate (two polls) before the operator acts.
        std::thread::sleep(Duration::from_millis(2500));
        let continued = output_of(f.command().args(["continue"]));
        (running.join().unwrap(), continued)
    });
    let (out, text) = continued;
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_logged(&text, "Continuing service deployment");
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(
        &result.log,
        "(PAUSE) at POST_TEST_TRAFFIC_SHIFT: AWAITING_ACTION",
    );
    assert_logged(&result.log, "service deployment SUCCESSFUL");
    assert_eq!(ecs.requests("ContinueServiceDeployment").len(), 1);
    assert!(on_revision(&ecs, 2));
}

#[test]
fn a_release_can_end_at_its_approval_gate_and_a_continue_job_finishes_it() {
    let mut f = fixture();
    let ecs = gated(&mut f);
    let job = f
        .job("deploy", "v1.2.3", true)
        .var("ECS_ON_PAUSE_HOOK", "succeed");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(
        &result.log,
        "The deployment waits for approval at POST_TEST_TRAFFIC_SHIFT",
    );
    let env = f.env.project_file(&job, "ecs-release.env").unwrap();
    assert!(
        env.contains("ECS_RELEASE_STATE=awaiting_approval\n"),
        "{env}"
    );
    assert!(env.contains("ECS_RELEASE_HOOK_IDS=ecs-pause-"), "{env}");
    let arn = env
        .lines()
        .find_map(|l| l.strip_prefix("ECS_RELEASE_DEPLOYMENT_ARN="))
        .expect("the deployment ARN")
        .to_string();

    // The `when: manual` job of an `approve` stage, given the ARN by the dotenv report.
    let approve = f
        .job("approve", "v1.2.3", true)
        .var("ECS_RELEASE_DEPLOYMENT_ARN", &arn);
    let result = f.env.runner.run(&approve);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(!result.log.contains("THE JOB SCRIPT RAN"), "{}", result.log);
    assert_logged(&result.log, &format!("Continuing service deployment {arn}"));
    assert_logged(
        &result.log,
        "completed: the service runs your-task-definition:2",
    );
    let continued = ecs.requests("ContinueServiceDeployment");
    assert_eq!(continued.len(), 1);
    assert_eq!(continued[0]["serviceDeploymentArn"], arn.as_str());
    assert_eq!(continued[0]["action"], "CONTINUE");
    assert!(on_revision(&ecs, 2));
}

#[test]
fn continue_rollback_returns_the_service_to_its_source_revision() {
    let mut f = fixture();
    let ecs = gated(&mut f);
    let result = f.env.runner.run(
        &f.job("deploy", "v1.2.3", true)
            .var("ECS_ON_PAUSE_HOOK", "succeed"),
    );
    assert_eq!(result.status, Status::Success, "{}", result.log);
    let (out, text) = output_of(f.command().args(["continue", "--rollback"]));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_logged(&text, "Rolling back service deployment");
    assert_logged(&text, "was rolled back");
    assert_eq!(
        ecs.requests("ContinueServiceDeployment")[0]["action"],
        "ROLLBACK"
    );
    assert!(on_revision(&ecs, 1));

    // Nothing waits any more: a clear usage error.
    let (out, text) = output_of(f.command().args(["continue"]));
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_logged(
        &text,
        "nothing awaits approval on service your-service-name",
    );
}

#[test]
fn code_deploy_external_and_express_services_are_refused_before_any_change() {
    for (script, expected) in [
        (
            Script {
                controller: "CODE_DEPLOY",
                ..Script::default()
            },
            "uses the CODE_DEPLOY deployment controller",
        ),
        (
            Script {
                controller: "EXTERNAL",
                ..Script::default()
            },
            "uses the EXTERNAL deployment controller",
        ),
        (
            Script {
                resource_management: Some("ECS"),
                ..Script::default()
            },
            "is an ECS Express Mode service",
        ),
    ] {
        let mut f = fixture();
        let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
        f.use_ecs(&ecs);
        let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
        assert_eq!(result.status, Status::Failed(1), "{}", result.log);
        assert_logged(&result.log, expected);
        assert!(ecs.requests("RegisterTaskDefinition").is_empty());
        assert!(ecs.requests("UpdateService").is_empty());
    }
}

#[test]
fn a_deadline_shorter_than_the_strategy_is_refused_before_the_update() {
    let mut f = fixture();
    let ecs = service(
        &mut f,
        Deployments {
            strategy: Strategy::BlueGreen,
            bake_minutes: 120,
            ..Deployments::default()
        },
    );
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        "the service deploys with blue/green, bake 120 min, which takes at least 2h",
    );
    assert_logged(&result.log, "but the rollout may take only 29m");
    assert!(ecs.requests("UpdateService").is_empty());
    assert_eq!(
        ecs.requests("DeregisterTaskDefinition").len(),
        1,
        "the unused revision goes"
    );
    assert!(on_revision(&ecs, 1));
}
