//! Native release, ECS half: the task definition revision, a rollout that tells the truth,
//! rollback and report — end to end through the runner stand-in, with the real SDK talking
//! HTTP to the scripted ECS endpoint (and to moto for request shapes).

use std::time::{Duration, UNIX_EPOCH};

use crate::support::release::{
    assert_no_secrets, moto, task_definition, Fixture, CLUSTER, FAMILY, SERVICE,
};
use crate::support::scripted_ecs::{ConcurrentRelease, Scenario, Script, ScriptedEcs};
use crate::support::*;
use serde_json::{json, Value};

fn revision(n: u32) -> String {
    format!("arn:aws:ecs:ap-northeast-1:123456789012:task-definition/{FAMILY}:{n}")
}

#[test]
fn a_tag_release_registers_only_the_image_change_rolls_out_and_reports() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    let mut job = f.job("deploy", "v1.2.3", true);
    // The report is in the project directory of the job's own volume, for its next stages.
    job.after_script = vec!["sed 's/^/after_script: /' ecs-release.env".into()];
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(!result.log.contains("THE JOB SCRIPT RAN"));
    assert_logged(
        &result.log,
        &format!(
            "after_script: ECS_RELEASE_IMAGE_URI={}:v1.2.3",
            f.repository()
        ),
    );
    assert!(
        f.registry.manifest("group/app", "v1.2.3").is_some(),
        "image pushed"
    );

    // Exactly one registration, and the update names its exact ARN.
    let registered = ecs.requests("RegisterTaskDefinition");
    assert_eq!(registered.len(), 1);
    let updates = ecs.requests("UpdateService");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["taskDefinition"], revision(2));
    assert_eq!(ecs.service_task_definition(), revision(2));

    let (td, tags) = ecs.task_definition(&revision(2));
    let containers = td["containerDefinitions"].as_array().unwrap();
    assert_eq!(
        containers[0],
        ecs.task_definition(&revision(1)).0["containerDefinitions"][0],
        "sidecar untouched"
    );
    assert_eq!(containers[1]["image"], format!("{}:v1.2.3", f.repository()));
    assert_eq!(containers[1]["secrets"][0]["name"], "DB_PASSWORD");
    assert_eq!(td["runtimePlatform"]["cpuArchitecture"], "X86_64");
    assert_eq!(td["ephemeralStorage"]["sizeInGiB"], 30);
    let tag = |k: &str| {
        tags.iter()
            .find(|t| t["key"] == k)
            .map(|t| t["value"].clone())
    };
    assert_eq!(tag("team"), Some(json!("web")), "original tags kept");
    assert_eq!(tag("gitlab:tag"), Some(json!("v1.2.3")));
    let sha = &job.git.as_ref().expect("sources").sha;
    assert_eq!(tag("gitlab:commit"), Some(json!(sha)));
    assert!(tag("gitlab:job-url").is_some_and(|u| u.as_str().unwrap().contains("/-/jobs/")));

    assert_logged(&result.log, "containerDefinitions[app].image");
    assert!(
        result
            .log
            .contains(&format!("UpdateService: {FAMILY}:1 -> {FAMILY}:2")),
        "{}",
        result.log
    );
    assert_logged(&result.log, "running 2");
    assert!(result.log.contains("console:   https://ap-northeast-1.console.aws.amazon.com/ecs/v2/clusters/your-cluster-name/services/your-service-name/deployments"));
    let env_file = f
        .env
        .project_file(&job, "ecs-release.env")
        .expect("ecs-release.env in the project directory");
    assert!(
        env_file.contains(&format!(
            "ECS_RELEASE_IMAGE_URI={}:v1.2.3\n",
            f.repository()
        )),
        "{env_file}"
    );
    assert!(
        env_file.contains("ECS_RELEASE_IMAGE_DIGEST=sha256:"),
        "{env_file}"
    );
    assert!(
        env_file.contains(&format!(
            "ECS_RELEASE_TASK_DEFINITION_ARN={}\n",
            revision(2)
        )),
        "{env_file}"
    );
    assert!(
        env_file.contains(&format!(
            "ECS_RELEASE_PREVIOUS_TASK_DEFINITION_ARN={}\n",
            revision(1)
        )),
        "{env_file}"
    );
    assert!(
        env_file.contains("ECS_RELEASE_DEPLOYMENT_ID=ecs-svc/"),
        "{env_file}"
    );
    assert_no_secrets(&result.log);

    // Re-running the same job changes nothing in ECS.
    let again = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(again.status, Status::Success, "{}", again.log);
    assert_logged(&again.log, "Already deployed");
    assert_eq!(ecs.requests("RegisterTaskDefinition").len(), 1);
    assert_eq!(ecs.requests("UpdateService").len(), 1);
}

#[test]
fn an_ambiguous_task_definition_is_refused_before_anything_is_registered() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    // Neither container runs the release repository, and there are two.
    let ecs = f.scripted_ecs("registry.example.com/other/app:v1", Script::default());
    f.use_ecs(&ecs);
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "cannot tell which container");
    assert!(
        result.log.contains("log-router, app") && result.log.contains("ECS_CONTAINER"),
        "{}",
        result.log
    );
    assert!(ecs.requests("RegisterTaskDefinition").is_empty());
    assert!(ecs.requests("UpdateService").is_empty());

    let result = f
        .env
        .runner
        .run(&f.job("deploy", "v1.2.3", true).var("ECS_CONTAINER", "app"));
    assert_eq!(result.status, Status::Success, "{}", result.log);
}

#[test]
fn a_circuit_breaker_rollback_fails_the_job_within_one_poll_interval() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let script = Script {
        scenario: Scenario::CircuitBreaker(Duration::from_secs(4)),
        ..Script::default()
    };
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
    f.use_ecs(&ecs);
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "rolled back by ECS");
    assert!(
        result
            .log
            .contains("circuit breaker: tasks failed to start"),
        "{}",
        result.log
    );
    assert_logged(&result.log, "Essential container in task exited");
    assert_logged(&result.log, "app exit 3 (app: health check failed)");
    assert_eq!(
        result.log.matches("stopped task task0001").count(),
        1,
        "each stopped task once"
    );

    let due = ecs.failure_due().expect("a circuit-breaker scenario");
    let reported = result.calls_of("build_script")[0]
        .ended
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // One poll interval (1 s ± 20 %) after ECS failed the deployment, plus the time to report.
    assert!(
        reported - due < 2.5,
        "reported {:.2} s after the failure",
        reported - due
    );
    assert!(ecs.failed_at().is_some());
    // ECS rolled back; the executor did not race it with a second update.
    assert_eq!(ecs.requests("UpdateService").len(), 1);
    assert_eq!(ecs.service_task_definition(), revision(1));
    assert!(
        ecs.active_revisions().contains(&revision(1)),
        "the previous revision is never deregistered"
    );
}

#[test]
fn a_rollout_past_its_deadline_is_rolled_back_to_the_captured_revision() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let script = Script {
        scenario: Scenario::Stuck,
        ..Script::default()
    };
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
    f.use_ecs(&ecs);
    let result = f.env.runner.run(
        &f.job("deploy", "v1.2.3", true)
            .var("ECS_ROLLOUT_TIMEOUT", "4s"),
    );
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert!(
        result
            .log
            .contains("did not complete within the rollout timeout of 4 s (ECS_ROLLOUT_TIMEOUT)"),
        "{}",
        result.log
    );
    assert!(
        result
            .log
            .contains(&format!("the service is back on {FAMILY}:1")),
        "{}",
        result.log
    );
    let updates = ecs.requests("UpdateService");
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1]["taskDefinition"], revision(1));
    assert_eq!(ecs.service_task_definition(), revision(1));
}

#[test]
fn throttling_bursts_are_retried() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let script = Script {
        throttle_describe_services: 3,
        ..Script::default()
    };
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
    f.use_ecs(&ecs);
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(
        ecs.operations()
            .iter()
            .filter(|o| *o == "DescribeServices")
            .count()
            >= 4
    );
    assert_eq!(ecs.service_task_definition(), revision(2));
}

/// Releases v1.2.3 while another pipeline deploys `their_tag` right after our registration.
fn race_with_release(
    their_tag: &str,
) -> (
    Fixture,
    crate::support::scripted_ecs::ScriptedEcs,
    JobResult,
) {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let script = Script {
        concurrent: Some(ConcurrentRelease {
            image: format!("{}:{their_tag}", f.repository()),
        }),
        ..Script::default()
    };
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
    f.use_ecs(&ecs);
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    (f, ecs, result)
}

#[test]
fn a_newer_concurrent_release_supersedes_ours_and_an_older_one_is_rebased() {
    let (f, ecs, result) = race_with_release("v9.9.9");
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        &format!("superseded by {FAMILY}:3 running {}:v9.9.9", f.repository()),
    );
    assert!(
        ecs.requests("UpdateService").is_empty(),
        "never a silent overwrite"
    );
    assert_eq!(ecs.service_task_definition(), revision(3));
    assert!(
        !ecs.active_revisions().contains(&revision(2)),
        "our unused revision is deregistered"
    );

    let (f, ecs, result) = race_with_release("v1.0.0");
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "re-deriving the revision");
    let updates = ecs.requests("UpdateService");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["taskDefinition"], revision(4));
    let (td, _) = ecs.task_definition(&revision(4));
    assert_eq!(
        td["containerDefinitions"][1]["image"],
        format!("{}:v1.2.3", f.repository())
    );
}

#[test]
fn another_deployment_in_progress_is_waited_for_and_named() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let script = Script {
        busy_for: Some(Duration::from_secs(3)),
        ..Script::default()
    };
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
    f.use_ecs(&ecs);
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "Waiting for deployment ecs-svc/");
    assert_logged(&result.log, "(IN_PROGRESS) to finish");
}

#[test]
fn a_downgrade_is_allowed_and_logged() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v2.0.0", f.repository()), Script::default());
    f.use_ecs(&ecs);
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(
        result
            .log
            .contains("this is a downgrade: app runs v2.0.0, the release is v1.2.3"),
        "{}",
        result.log
    );
}

#[test]
fn moto_accepts_the_happy_path_requests() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let m = moto();
    let cluster = format!("moto-{}", runner::unique_id());
    m.call(
        "AmazonEC2ContainerServiceV20141113.CreateCluster",
        json!({"clusterName": cluster}),
    );
    let mut td = task_definition(&format!("{}:v1.2.2", f.repository()));
    td["tags"] = json!([{"key": "team", "value": "web"}]);
    let registered = m.call(
        "AmazonEC2ContainerServiceV20141113.RegisterTaskDefinition",
        td,
    );
    let base = registered["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_string();
    m.call(
        "AmazonEC2ContainerServiceV20141113.CreateService",
        // No tasks: moto then reports the service's one deployment as COMPLETED.
        json!({"cluster": cluster, "serviceName": SERVICE, "taskDefinition": base, "desiredCount": 0}),
    );
    f.env
        .runner
        .process_env
        .retain(|(k, _)| k != "AWS_ENDPOINT_URL_ECS");
    let job = f
        .job("deploy", "v1.2.3", true)
        .var("ECS_CLUSTER", &cluster)
        .var("ECS_ROLLOUT_TIMEOUT", "3s")
        .var("ECS_ROLLBACK", "never");
    let result = f.env.runner.run(&job);
    // moto accepts UpdateService but starts no deployment for it (its response still
    // names the old one), so the executor cannot follow a rollout there and fails; every
    // request up to the update was accepted.
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, &format!("Registered {FAMILY}:"));
    assert!(
        !result
            .log
            .contains("AWS call ecs:DescribeTaskDefinition failed"),
        "{}",
        result.log
    );
    assert!(
        !result
            .log
            .contains("AWS call ecs:RegisterTaskDefinition failed"),
        "{}",
        result.log
    );
    let services = m.call(
        "AmazonEC2ContainerServiceV20141113.DescribeServices",
        json!({"cluster": cluster, "services": [SERVICE]}),
    );
    let now_running = services["services"][0]["taskDefinition"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(now_running, base);
    let described = m.call(
        "AmazonEC2ContainerServiceV20141113.DescribeTaskDefinition",
        json!({"taskDefinition": now_running, "include": ["TAGS"]}),
    );
    assert_eq!(
        described["taskDefinition"]["containerDefinitions"][1]["image"],
        format!("{}:v1.2.3", f.repository())
    );
    let tags = described["tags"].as_array().unwrap();
    assert!(
        tags.iter().any(|t| t["key"] == "team") && tags.iter().any(|t| t["key"] == "gitlab:tag"),
        "{tags:?}"
    );
}

#[test]
fn a_task_definition_using_every_field_is_copied_with_only_the_image_changed() {
    release_again_and_again(task_definitions::everything, 2);
}

/// Releases `releases` versions in a row of a service running `task_definition`; each new
/// revision must equal the base but for the app's image and the executor's tags.
fn release_again_and_again(task_definition: fn(&str, &str) -> Value, releases: u32) {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let base = task_definition(FAMILY, &format!("{}:v1.0.0", f.repository()));
    let script = Script {
        scenario: Scenario::Succeed(Duration::from_millis(300)),
        ..Script::default()
    };
    let ecs = ScriptedEcs::start(
        CLUSTER,
        SERVICE,
        base,
        task_definitions::base_tags(),
        script,
    );
    f.use_ecs(&ecs);
    let (first, first_tags) = ecs.task_definition(&revision(1));
    let expected = task_definitions::invariant_part(&first, &first_tags);
    for n in 1..=releases {
        let tag = format!("v1.0.{n}");
        f.tag(&tag);
        let result = f.env.runner.run(&f.job("deploy", &tag, true));
        assert_eq!(
            result.status,
            Status::Success,
            "release {tag}:\n{}",
            result.log
        );
        let arn = revision(n + 1);
        assert_eq!(ecs.service_task_definition(), arn, "{}", result.log);
        let (td, tags) = ecs.task_definition(&arn);
        assert_eq!(
            task_definitions::invariant_part(&td, &tags),
            expected,
            "{tag} changed more than the image"
        );
        let app = td["containerDefinitions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "app"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(app["image"], format!("{}:{tag}", f.repository()));
    }
    assert_eq!(
        ecs.requests("RegisterTaskDefinition").len(),
        releases as usize
    );
    assert!(ecs.requests("DeregisterTaskDefinition").is_empty());
}

#[test]
fn ten_releases_of_a_fargate_web_service_with_awslogs_and_labels_change_only_the_image() {
    release_again_and_again(task_definitions::fargate_web, 10);
}

#[test]
fn an_ec2_bridge_service_with_host_volumes_labels_and_ulimits_releases_repeatedly() {
    release_again_and_again(task_definitions::ec2_bridge, 3);
}

#[test]
fn an_efs_worker_with_an_init_container_releases_repeatedly() {
    release_again_and_again(task_definitions::efs_worker, 3);
}
