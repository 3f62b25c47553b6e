//! The Docker-backed ECS stand-in itself, through aws-sdk-ecs as the executor will call it:
//! the ECS behaviour the ECS job environment depends on, so its tests cannot pass on a
//! kinder ECS than the real one.

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    ContainerCondition, ContainerDefinition, ContainerDependency, ContainerOverride, KeyValuePair,
    MountPoint, NetworkMode, Task, TaskOverride, Volume,
};

use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionOutput;

use crate::support::docker_ecs::DockerEcs;
use crate::support::images;

fn client(ecs: &DockerEcs) -> aws_sdk_ecs::Client {
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_ecs::config::Region::new("eu-west-1"))
        .endpoint_url(&ecs.endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDSTANDIN",
            "standin-secret",
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_ecs::Client::from_conf(config)
}

fn depends(name: &str, condition: ContainerCondition) -> ContainerDependency {
    ContainerDependency::builder()
        .container_name(name)
        .condition(condition)
        .build()
        .unwrap()
}

fn container(name: &str, image: &str, command: &[&str]) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name(name)
        .image(image)
        .set_command(Some(command.iter().map(|s| s.to_string()).collect()))
        .build()
}

/// Polls the task until it is STOPPED; returns every state seen on the way and the last.
async fn until_stopped(client: &aws_sdk_ecs::Client, arn: &str) -> (Vec<Task>, Task) {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let out = client
            .describe_tasks()
            .cluster("standin")
            .tasks(arn)
            .send()
            .await
            .unwrap();
        let task = out.tasks()[0].clone();
        if task.last_status() == Some("STOPPED") {
            return (seen, task);
        }
        seen.push(task);
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the task never stopped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The tasks the test started that ECS still counts as running.
async fn running_tasks(client: &aws_sdk_ecs::Client) -> Vec<String> {
    let listed = client
        .list_tasks()
        .cluster("standin")
        .started_by("gitlab-ecs-executor/test")
        .send()
        .await
        .unwrap();
    listed.task_arns().to_vec()
}

/// Runs the revision just registered, without overrides; returns the task's ARN.
async fn run_registered(
    client: &aws_sdk_ecs::Client,
    registered: &RegisterTaskDefinitionOutput,
) -> String {
    let arn = registered
        .task_definition()
        .and_then(|td| td.task_definition_arn())
        .unwrap();
    let run = client
        .run_task()
        .cluster("standin")
        .task_definition(arn)
        .send()
        .await
        .unwrap();
    run.tasks()[0].task_arn().unwrap().to_string()
}

fn exit_code(task: &Task, name: &str) -> Option<i32> {
    task.containers()
        .iter()
        .find(|c| c.name() == Some(name))
        .and_then(|c| c.exit_code())
}

#[tokio::test]
async fn a_tasks_containers_share_one_network_and_its_volumes_and_start_as_depends_on_says() {
    images::debian_images();
    let ecs = DockerEcs::start();
    let client = client(&ecs);
    let shared = MountPoint::builder()
        .source_volume("shared")
        .container_path("/shared")
        .build();
    let registered = client
        .register_task_definition()
        .family("gitlab-ci-standin")
        .network_mode(NetworkMode::Awsvpc)
        .volumes(Volume::builder().name("shared").build())
        .container_definitions(
            ContainerDefinition::builder()
                .name("init")
                .image(images::DEBIAN)
                .essential(false)
                .set_command(Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "sleep 1; echo init > /shared/x".into(),
                ]))
                .mount_points(shared.clone())
                .build(),
        )
        .container_definitions({
            let mut redis = container("redis", images::REDIS, &["redis-server", "--port", "6379"]);
            redis.essential = Some(false);
            redis
        })
        .container_definitions(
            ContainerDefinition::builder()
                .name("build")
                .image(images::DEBIAN)
                .entry_point("bash")
                .entry_point("-c")
                .command("exit 99")
                .mount_points(shared)
                .depends_on(depends("init", ContainerCondition::Success))
                .depends_on(depends("redis", ContainerCondition::Start))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arn = registered
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string();
    // The command comes from the overrides, as a job's will: the file the init container
    // wrote, redis on localhost, the variable set at RunTask.
    let script = "grep -qx init /shared/x || exit 8; \
        for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && exit \"$CODE\"; sleep 0.1; done; exit 9";
    let run = client
        .run_task()
        .cluster("standin")
        .task_definition(&arn)
        .started_by("gitlab-ecs-executor/test")
        .overrides(
            TaskOverride::builder()
                .container_overrides(
                    ContainerOverride::builder()
                        .name("build")
                        .command(script)
                        .environment(KeyValuePair::builder().name("CODE").value("3").build())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let task_arn = run.tasks()[0].task_arn().unwrap().to_string();
    assert_eq!(running_tasks(&client).await, vec![task_arn.clone()]);
    let (seen, stopped) = until_stopped(&client, &task_arn).await;
    let address = seen
        .iter()
        .flat_map(|t| t.attachments())
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value().map(str::to_string));
    assert!(address.is_some_and(|a| a.parse::<std::net::Ipv4Addr>().is_ok()));
    assert_eq!(exit_code(&stopped, "init"), Some(0));
    assert_eq!(exit_code(&stopped, "build"), Some(3), "{stopped:?}");
    assert_eq!(
        stopped.stop_code().map(|c| c.as_str()),
        Some("EssentialContainerExited")
    );
    assert_eq!(
        stopped.stopped_reason(),
        Some("Essential container in task exited")
    );
    // The non-essential sidecar was stopped with the task.
    assert!(exit_code(&stopped, "redis").is_some(), "{stopped:?}");
    assert!(running_tasks(&client).await.is_empty());
}

#[tokio::test]
async fn stop_task_stops_every_container_after_its_stop_timeout_and_keeps_the_reason() {
    images::debian_images();
    let ecs = DockerEcs::start();
    let client = client(&ecs);
    let mut sleeper = container("build", images::DEBIAN, &["sleep", "600"]);
    sleeper.stop_timeout = Some(1);
    let registered = client
        .register_task_definition()
        .family("gitlab-ci-stop")
        .container_definitions(sleeper)
        .send()
        .await
        .unwrap();
    let task_arn = run_registered(&client, &registered).await;
    let started = Instant::now();
    loop {
        let out = client
            .describe_tasks()
            .cluster("standin")
            .tasks(&task_arn)
            .send()
            .await
            .unwrap();
        if out.tasks()[0].last_status() == Some("RUNNING") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never RUNNING");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .stop_task()
        .cluster("standin")
        .task(&task_arn)
        .reason("gitlab-ecs-executor: the job was cancelled")
        .send()
        .await
        .unwrap();
    let (_, stopped) = until_stopped(&client, &task_arn).await;
    assert_eq!(
        stopped.stop_code().map(|c| c.as_str()),
        Some("UserInitiated")
    );
    assert_eq!(
        stopped.stopped_reason(),
        Some("gitlab-ecs-executor: the job was cancelled")
    );
    // `sleep` as PID 1 ignores SIGTERM: killed after the stop timeout.
    assert_eq!(exit_code(&stopped, "build"), Some(137));
    let missing = client
        .describe_tasks()
        .cluster("standin")
        .tasks("no-such-task")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.failures()[0].reason(), Some("MISSING"));
}

#[tokio::test]
async fn a_failed_dependency_stops_the_task_before_its_dependent_starts() {
    images::debian_images();
    let ecs = DockerEcs::start();
    let client = client(&ecs);
    let mut init = container("init", images::DEBIAN, &["sh", "-c", "exit 1"]);
    init.essential = Some(false);
    let registered = client
        .register_task_definition()
        .family("gitlab-ci-dependency")
        .container_definitions(init)
        .container_definitions(
            ContainerDefinition::builder()
                .name("build")
                .image(images::DEBIAN)
                .command("true")
                .depends_on(depends("init", ContainerCondition::Success))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let task_arn = run_registered(&client, &registered).await;
    let (_, stopped) = until_stopped(&client, &task_arn).await;
    assert_eq!(
        stopped.stop_code().map(|c| c.as_str()),
        Some("TaskFailedToStart")
    );
    assert!(stopped
        .stopped_reason()
        .unwrap_or_default()
        .contains("dependency init"));
    assert_eq!(exit_code(&stopped, "init"), Some(1));
    assert_eq!(exit_code(&stopped, "build"), None, "the dependent started");
}
