//! Ordinary jobs in the ECS job environment, through the runner stand-in and the Docker-
//! backed ECS: each job one task of its own (the job's image, its services, the helper),
//! stages through the task's agents with their exit codes, cancel, the task stopped at
//! cleanup with a reason, orphans swept by tag, and what a job names refused or blamed as
//! the docker executor would.

use serde_json::Value;

use crate::support::ecs_jobs::{static_agent_image, EcsJobsEnv};
use crate::support::images::{CLIENTS, DEBIAN, POSTGRES, REDIS};
use crate::support::*;

/// The tag `key` of a `RunTask` request.
fn tag<'a>(request: &'a Value, key: &str) -> Option<&'a str> {
    request["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)?["value"]
        .as_str()
}

#[test]
fn a_job_runs_in_a_task_of_its_own_with_its_exit_code_and_the_task_is_stopped_at_cleanup() {
    let e = EcsJobsEnv::new("");
    let mut job = Job::test(
        DEBIAN,
        &[
            "echo \"in $(pwd) as $(id -u)\"",
            "echo kept > \"$CI_PROJECT_DIR/result.txt\"",
            "exit 42",
        ],
    );
    job.after_script =
        vec!["echo \"after: $CI_JOB_STATUS, $(cat \"$CI_PROJECT_DIR/result.txt\")\"".into()];
    let job = job.masked("DEPLOY_KEY", "masked-deploy-key-value");
    let result = e.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(42), "{}", result.log);
    assert_logged(&result.log, "Preparing the ECS job environment");
    assert_logged(
        &result.log,
        &format!("in /builds/{} as 0", job.project_path),
    );
    assert_logged(&result.log, "after: failed, kept");
    assert_eq!(result.calls_of("after_script")[0].result, CallResult::Ok);

    // One task, started once, tagged for the sweep, with the secret's digest and nothing of
    // the job's variables in what ECS keeps.
    let runs = e.ecs.requests("RunTask");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let runner = e.env.runner.runner_id.to_string();
    assert_eq!(
        run["startedBy"].as_str(),
        Some(format!("gitlab-ecs-executor/{runner}").as_str())
    );
    assert_eq!(
        tag(run, "gitlab-ecs-executor:runner"),
        Some(runner.as_str())
    );
    assert_eq!(
        tag(run, "gitlab-ecs-executor:job"),
        Some(job.id.to_string().as_str())
    );
    assert!(tag(run, "gitlab-ecs-executor:deadline").is_some());
    assert!(run["clientToken"].as_str().is_some_and(|t| t.len() <= 64));
    assert_eq!(
        run["networkConfiguration"]["awsvpcConfiguration"]["subnets"],
        serde_json::json!(["subnet-0a1b2c3d", "subnet-4e5f6a7b"])
    );
    for o in run["overrides"]["containerOverrides"].as_array().unwrap() {
        let env = o["environment"].as_array().unwrap();
        assert_eq!(env.len(), 1, "{o}");
        assert_eq!(env[0]["name"], "GITLAB_ECS_AGENT_SECRET_SHA256");
        assert_eq!(env[0]["value"].as_str().map(str::len), Some(64));
    }
    let registered = e.ecs.requests("RegisterTaskDefinition");
    for request in registered.iter().chain(&runs) {
        assert!(!request.to_string().contains("masked-deploy-key-value"));
    }
    assert_eq!(
        registered[0]["taskRoleArn"],
        "arn:aws:iam::123456789012:role/ci-job"
    );

    // Stopped at cleanup, saying why; nothing left running.
    assert!(e.running_tasks().is_empty(), "{:?}", e.running_tasks());
    let (code, reason) = e.ecs.stops().remove(0);
    assert_eq!(code.as_deref(), Some("UserInitiated"));
    assert_eq!(
        reason.as_deref(),
        Some(format!("gitlab-ecs-executor: job {} is over", job.id).as_str())
    );

    // A second job of the same shape reuses the definition.
    let again = Job::test(DEBIAN, &["true"]);
    let result = e.env.runner.run(&again);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(e.ecs.requests("RegisterTaskDefinition").len(), 1);
    assert_logged(&result.log, "Using task definition gitlab-ci-");
}

#[test]
fn services_answer_under_their_aliases_on_localhost_with_real_postgres_and_redis() {
    let e = EcsJobsEnv::new("");
    let mut job = Job::test(
        CLIENTS,
        &[
            "for i in $(seq 150); do pg_isready -q -h db -U ci && break; sleep 0.2; done",
            &suites::ask_project_database("ci"),
            "for i in $(seq 100); do redis-cli -h cache ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done",
            "redis-cli -h cache set who ecs > /dev/null",
            "echo \"redis holds $(redis-cli -h gitlab-ecs-executor__redis get who)\"",
        ],
    );
    let id = job.id;
    job.project_path = format!("group/shop{id}");
    job.services = vec![
        suites::project_database("ci"),
        Service {
            name: REDIS.into(),
            alias: "cache".into(),
            ..Default::default()
        },
    ];
    let result = e.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, &format!("\nci1|shop{id}_test\n"));
    assert_logged(&result.log, "redis holds ecs");
    let registered = e.ecs.requests("RegisterTaskDefinition");
    let containers = registered[0]["containerDefinitions"].as_array().unwrap();
    let postgres = containers.iter().find(|c| c["image"] == POSTGRES).unwrap();
    assert!(
        postgres["environment"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "POSTGRES_DB" && v["value"] == format!("shop{id}_test")),
        "the service's variables are expanded: {postgres}"
    );
    assert!(e.running_tasks().is_empty());
}

#[test]
fn a_cancelled_job_stops_its_stage_promptly_runs_after_script_and_stops_the_task() {
    let mut e = EcsJobsEnv::new("");
    suites::a_cancel_stops_a_long_script_promptly(&mut e.env.runner, DEBIAN, &[]);
    assert!(e.running_tasks().is_empty());
}

#[test]
fn a_job_image_that_cannot_be_pulled_fails_the_job_once_naming_it_and_leaves_no_task() {
    let e = EcsJobsEnv::new("");
    let job = Job::test("gitlab-ecs-executor-test/absent:1", &["true"]);
    let result = e.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        "container build (gitlab-ecs-executor-test/absent:1): CannotPullContainerError",
    );
    assert_logged(&result.log, "Check the image's name");
    assert_eq!(
        result.calls_of("prepare").len(),
        1,
        "a job failure is not retried"
    );
    assert!(e.running_tasks().is_empty());
}

#[test]
fn what_a_job_names_is_refused_by_the_settings_and_its_variables_choose_no_role() {
    let e = EcsJobsEnv::new(
        "allowed_images = [\"gitlab-ecs-executor/*\"]\n\
         allowed_services = [\"gitlab-ecs-executor/redis:*\"]\n\
         [[ecs_jobs.task_roles]]\n\
         projects = [\"trusted/*\"]\n\
         role = \"arn:aws:iam::123456789012:role/ci-trusted\"",
    );
    let job = Job::test("evil/miner:1", &["true"]);
    let result = e.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        "the job's image evil/miner:1 is not allowed by ecs_jobs.allowed_images",
    );
    let mut job = Job::test(DEBIAN, &["true"]);
    job.services = vec![Service {
        name: POSTGRES.into(),
        ..Default::default()
    }];
    let result = e.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "is not allowed by ecs_jobs.allowed_services");
    assert!(e.ecs.requests("RunTask").is_empty());

    // The role follows the project GitLab vouched for: a job claiming another project's
    // path to get its role is refused before any task.
    let job = Job::test(DEBIAN, &["true"]).var("CI_PROJECT_PATH", "trusted/app");
    let result = e.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "a job cannot change its own identity");
    assert!(e.ecs.requests("RegisterTaskDefinition").is_empty());
    let mut job = Job::test(DEBIAN, &["true"]);
    job.project_path = format!("trusted/app-{}", job.id);
    let result = e.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(
        e.ecs.requests("RegisterTaskDefinition")[0]["taskRoleArn"],
        "arn:aws:iam::123456789012:role/ci-trusted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_sweeps_this_runners_tasks_past_their_deadline_and_nothing_else() {
    use aws_sdk_ecs::types::{
        AwsVpcConfiguration, ContainerOverride, KeyValuePair, NetworkConfiguration, Tag,
        TaskOverride,
    };

    let e = EcsJobsEnv::new("");
    let runner = e.env.runner.runner_id;
    // A finished job's definition to start stray tasks from.
    let first = Job::test(DEBIAN, &["true"]);
    let env = &e.env;
    let result = tokio::task::block_in_place(|| env.runner.run(&first));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    let family = e.ecs.requests("RegisterTaskDefinition")[0]["family"]
        .as_str()
        .unwrap()
        .to_string();
    let client = e.client();
    let digest = KeyValuePair::builder()
        .name("GITLAB_ECS_AGENT_SECRET_SHA256")
        .value("0".repeat(64))
        .build();
    let stray = |started_by: String, deadline: Option<u64>| {
        let client = client.clone();
        let family = family.clone();
        let digest = digest.clone();
        async move {
            let mut run = client
                .run_task()
                .cluster("standin")
                .task_definition(family)
                .network_configuration(
                    NetworkConfiguration::builder()
                        .awsvpc_configuration(
                            AwsVpcConfiguration::builder()
                                .subnets("subnet-0a1b2c3d")
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                // A job's agents need a digest to serve; this one admits nobody's secret.
                .overrides(
                    TaskOverride::builder()
                        .container_overrides(
                            ContainerOverride::builder()
                                .name("build")
                                .environment(digest.clone())
                                .build(),
                        )
                        .container_overrides(
                            ContainerOverride::builder()
                                .name("helper")
                                .environment(digest.clone())
                                .build(),
                        )
                        .build(),
                )
                .started_by(started_by)
                .tags(
                    Tag::builder()
                        .key("gitlab-ecs-executor:job")
                        .value("1")
                        .build(),
                );
            if let Some(d) = deadline {
                run = run.tags(
                    Tag::builder()
                        .key("gitlab-ecs-executor:deadline")
                        .value(d.to_string())
                        .build(),
                );
            }
            run.send().await.unwrap().tasks()[0]
                .task_arn()
                .unwrap()
                .to_string()
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let long_over = stray(format!("gitlab-ecs-executor/{runner}"), Some(now - 7200)).await;
    let running = stray(format!("gitlab-ecs-executor/{runner}"), Some(now + 3600)).await;
    let untagged = stray(format!("gitlab-ecs-executor/{runner}"), None).await;
    let other_runner = stray(
        format!("gitlab-ecs-executor/{}", runner + 1),
        Some(now - 7200),
    )
    .await;
    let job = Job::test(DEBIAN, &["true"]);
    let result = tokio::task::block_in_place(|| env.runner.run(&job));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    let mut left = e.running_tasks();
    left.sort();
    let mut expected = vec![running, untagged, other_runner];
    expected.sort();
    assert_eq!(left, expected);
    assert!(!left.contains(&long_over));
    assert!(e.ecs.stops().iter().any(|(_, reason)| reason.as_deref()
        == Some("gitlab-ecs-executor: job 1 is past its timeout (orphan sweep)")));
}

#[test]
fn a_job_cancelled_at_any_point_of_prepare_leaves_no_task_running() {
    let e = EcsJobsEnv::new("");
    // Before RunTask, around it (the intent recorded, perhaps no ARN yet) and once the task
    // is known; the runner kills prepare and calls cleanup, which must find the task.
    for moment in ["task definition gitlab-ci-", "Started task", "Task PENDING"] {
        let job = Job::test(DEBIAN, &["echo never"]);
        let result = e
            .env
            .runner
            .run_with(&job, Cancel::PrepareWhenLogged(moment));
        assert_eq!(result.status, Status::Canceled, "{moment}: {}", result.log);
        assert!(result.calls_of("build_script").is_empty());
        assert!(
            e.running_tasks().is_empty(),
            "{moment}: {:?}",
            e.running_tasks()
        );
    }
    assert!(!e.ecs.requests("RunTask").is_empty());
    assert!(e.ecs.stops().iter().all(|(code, reason)| {
        code.as_deref() == Some("UserInitiated")
            && reason
                .as_deref()
                .is_some_and(|r| r.starts_with("gitlab-ecs-executor: job "))
    }));
}

#[test]
fn a_throttled_run_task_is_retried_visibly_with_one_client_token_and_starts_one_task() {
    let e = EcsJobsEnv::new("");
    e.ecs.throttle_run_task(3);
    let job = Job::test(DEBIAN, &["echo ran"]);
    let result = e.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    for attempt in 1..=3 {
        assert_logged(
            &result.log,
            &format!(
                "RunTask: ThrottlingException: Rate exceeded (attempt {attempt}); trying again in"
            ),
        );
    }
    let runs = e.ecs.requests("RunTask");
    assert_eq!(runs.len(), 4);
    assert!(runs
        .iter()
        .all(|r| r["clientToken"] == runs[0]["clientToken"]));
    assert_eq!(e.ecs.stops().len(), 1, "one task started");
    assert!(e.running_tasks().is_empty());
}

#[test]
fn doctor_checks_the_job_tasks_cluster_with_the_hosts_credentials() {
    let doctor = |extra: &str| EcsJobsEnv::new(extra).command(&["doctor"]);
    let (out, log) = doctor("");
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_logged(
        &log,
        "[ ok ] ecs jobs: cluster standin in eu-west-1 is ACTIVE",
    );
    let (out, log) = doctor("capacity = \"ec2\"");
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_logged(
        &log,
        "[FAIL] ecs jobs: cluster standin has no container instances",
    );
}

#[test]
fn a_job_image_without_glibc_runs_through_the_packaged_static_agent() {
    let e = EcsJobsEnv::with_agent(static_agent_image(), "");
    // The busybox image has no libgcc or libm: only a static agent runs in it.
    let mut job = Job::test(
        base_image(),
        &[
            "echo \"from $(busybox | head -1 | cut -d' ' -f1)\"",
            "exit 3",
        ],
    );
    job.after_script = vec!["echo \"after: $CI_JOB_STATUS\"".into()];
    let result = e.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(3), "{}", result.log);
    assert_logged(&result.log, "from BusyBox");
    assert_logged(&result.log, "after: failed");
    assert!(e.running_tasks().is_empty());
}

#[test]
fn prune_deregisters_job_task_definitions_registered_before_the_age_and_jobs_register_again() {
    let e = EcsJobsEnv::new("");
    let job = Job::test(DEBIAN, &["true"]);
    assert_eq!(e.env.runner.run(&job).status, Status::Success);
    let prune = |args: &[&str]| e.command(&[&["prune"], args].concat());
    // Ages no volume of any concurrent test reaches: prune removes stale volumes too.
    let (out, text) = prune(&["--older-than", "365d"]);
    assert!(out.status.success(), "{text}");
    assert_logged(&text, "0 job task definition(s) deregistered, 1 kept");
    e.ecs
        .backdate_definitions(std::time::Duration::from_secs(400 * 86_400));
    let (out, text) = prune(&["--older-than", "365d", "--dry-run"]);
    assert!(out.status.success(), "{text}");
    assert_logged(&text, "would deregister task definition gitlab-ci-");
    assert!(e.ecs.requests("DeregisterTaskDefinition").is_empty());
    let (out, text) = prune(&["--older-than", "365d"]);
    assert!(out.status.success(), "{text}");
    assert_logged(&text, "1 job task definition(s) deregistered, 0 kept");
    // The next job of that shape registers it again.
    let result = e.env.runner.run(&Job::test(DEBIAN, &["true"]));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "Registered task definition gitlab-ci-");
    assert_eq!(e.ecs.requests("RegisterTaskDefinition").len(), 2);
}

#[test]
fn a_cluster_without_room_is_a_system_failure_the_runner_retries() {
    let e = EcsJobsEnv::new("");
    e.ecs.place_nothing(1, "RESOURCE:MEMORY");
    let result = e.env.runner.run(&Job::test(DEBIAN, &["echo ran"]));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(
        &result.log,
        "ECS started no task for the job in cluster standin: RESOURCE:MEMORY",
    );
    assert_logged(&result.log, "Will be retried in 3s");
    assert_eq!(result.calls_of("prepare").len(), 2, "the runner retried it");
    assert!(e.running_tasks().is_empty());
}
