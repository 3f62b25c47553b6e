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

/// The task's interface, as awsvpc requires.
fn network() -> aws_sdk_ecs::types::NetworkConfiguration {
    aws_sdk_ecs::types::NetworkConfiguration::builder()
        .awsvpc_configuration(
            aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                .subnets("subnet-standin")
                .build()
                .unwrap(),
        )
        .build()
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

/// Polls the task until its last status is `status`; returns every state seen before and
/// that one.
async fn until(client: &aws_sdk_ecs::Client, arn: &str, status: &str) -> (Vec<Task>, Task) {
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
        if task.last_status() == Some(status) {
            return (seen, task);
        }
        seen.push(task);
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the task never became {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until_stopped(client: &aws_sdk_ecs::Client, arn: &str) -> (Vec<Task>, Task) {
    until(client, arn, "STOPPED").await
}

async fn until_running(client: &aws_sdk_ecs::Client, arn: &str) -> Task {
    until(client, arn, "RUNNING").await.1
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
        .network_configuration(network())
        .cluster("standin")
        .task_definition(arn)
        .send()
        .await
        .unwrap();
    run.tasks()[0].task_arn().unwrap().to_string()
}

/// Runs one stage through a task's agent; returns its exit code and stdout. The agent may
/// still be starting when the task reports RUNNING (its init container installs it first),
/// so a refused connection is tried again for a while.
async fn stage_in_task(
    endpoint: &gitlab_ecs_executor::agent::Endpoint,
    command: &gitlab_ecs_executor::agent::StageCommand,
    script: &str,
) -> (i32, String) {
    use gitlab_ecs_executor::agent::{self, AgentError, Output};
    for _ in 0..300 {
        let mut stdout = Vec::new();
        let never: gitlab_ecs_executor::docker::Cancel = Box::pin(std::future::pending());
        let end = agent::run(
            endpoint,
            command,
            script.as_bytes().to_vec(),
            |stream, bytes| {
                if stream == Output::Stdout {
                    stdout.extend_from_slice(bytes)
                }
            },
            never,
            Duration::from_secs(5),
        )
        .await;
        match end {
            Err(AgentError::Connect { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
            end => {
                return (
                    end.unwrap().code,
                    String::from_utf8_lossy(&stdout).into_owned(),
                )
            }
        }
    }
    panic!("the agent at {} never answered", endpoint.address);
}

/// Stops the task as cleanup does and waits until it has stopped.
async fn job_over(client: &aws_sdk_ecs::Client, arn: &str) -> Task {
    client
        .stop_task()
        .cluster("standin")
        .task(arn)
        .reason("gitlab-ecs-executor: the job is over")
        .send()
        .await
        .unwrap();
    until_stopped(client, arn).await.1
}

/// A host volume (EC2 capacity) of the directory holding the test's build of the binary.
fn host_binary_volume(name: &str) -> Volume {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_gitlab-ecs-executor"));
    Volume::builder()
        .name(name)
        .host(
            aws_sdk_ecs::types::HostVolumeProperties::builder()
                .source_path(binary.parent().unwrap().display().to_string())
                .build(),
        )
        .build()
}

/// The address ECS gave the task, once it has one.
fn address_of(task: &Task) -> Option<String> {
    task.attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value().map(str::to_string))
}

/// RunTask's overrides of the `build` container: one variable, and the command if given.
fn build_override((name, value): (&str, &str), command: Option<&str>) -> TaskOverride {
    let build = ContainerOverride::builder()
        .name("build")
        .set_command(command.map(|c| vec![c.to_string()]))
        .environment(KeyValuePair::builder().name(name).value(value).build())
        .build();
    TaskOverride::builder().container_overrides(build).build()
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
    let client = ecs.client();
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
        .network_configuration(network())
        .cluster("standin")
        .task_definition(&arn)
        .started_by("gitlab-ecs-executor/test")
        .overrides(build_override(("CODE", "3"), Some(script)))
        .send()
        .await
        .unwrap();
    let task_arn = run.tasks()[0].task_arn().unwrap().to_string();
    assert_eq!(running_tasks(&client).await, vec![task_arn.clone()]);
    let (seen, stopped) = until_stopped(&client, &task_arn).await;
    let address = seen.iter().find_map(address_of);
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
    let client = ecs.client();
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
    until_running(&client, &task_arn).await;
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
    let client = ecs.client();
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

/// The ECS job environment's transport end to end: the agent as the build container's
/// entrypoint in a task on the stand-in, a stage through it to the task's address, the
/// service container on `localhost`, then `StopTask`.
#[tokio::test]
async fn a_stage_reaches_the_agent_in_a_task_and_the_tasks_service_on_localhost() {
    use gitlab_ecs_executor::agent::{self, Endpoint, JobSecret, StageCommand};

    images::debian_images();
    let ecs = DockerEcs::start();
    let client = ecs.client();
    let mut build = ContainerDefinition::builder()
        .name("build")
        .image(images::DEBIAN)
        .entry_point("/agent/gitlab-ecs-executor")
        .entry_point("agent")
        .entry_point("serve")
        .mount_points(
            MountPoint::builder()
                .source_volume("agent")
                .container_path("/agent")
                .read_only(true)
                .build(),
        )
        .build();
    build.stop_timeout = Some(5);
    let mut redis = container("redis", images::REDIS, &["redis-server", "--port", "6379"]);
    redis.essential = Some(false);
    let registered = client
        .register_task_definition()
        .family("gitlab-ci-agent")
        .network_mode(NetworkMode::Awsvpc)
        .volumes(host_binary_volume("agent"))
        .container_definitions(build)
        .container_definitions(redis)
        .send()
        .await
        .unwrap();
    let secret = JobSecret::generate().unwrap();
    let run = client
        .run_task()
        .network_configuration(network())
        .cluster("standin")
        .task_definition(
            registered
                .task_definition()
                .and_then(|td| td.task_definition_arn())
                .unwrap(),
        )
        .overrides(build_override(
            (agent::SECRET_DIGEST_VARIABLE, &secret.digest_hex()),
            None,
        ))
        .send()
        .await
        .unwrap();
    let task_arn = run.tasks()[0].task_arn().unwrap().to_string();
    // The runner waits for RUNNING and takes the task's address from its attachment.
    let address = address_of(&until_running(&client, &task_arn).await).unwrap();
    let endpoint = Endpoint {
        address: format!("{address}:8473").parse().unwrap(),
        secret,
    };
    let command = StageCommand {
        argv: vec!["bash".into()],
        env: vec![("CI_JOB_STAGE".into(), "test".into())],
        workdir: None,
    };
    let script = "for i in $(seq 100); do exec 3<>/dev/tcp/127.0.0.1/6379 && break; sleep 0.1; done\n\
        printf 'PING\\r\\n' >&3\nread -r reply <&3\necho \"$CI_JOB_STAGE: ${reply%$'\\r'}\"\nexit 5\n";
    let (code, stdout) = stage_in_task(&endpoint, &command, script).await;
    assert_eq!((code, stdout.as_str()), (5, "test: +PONG\n"));
    let stopped = job_over(&client, &task_arn).await;
    // The agent, PID 1 of the build container, ends on SIGTERM rather than waiting to be
    // killed at the stop timeout.
    assert_eq!(exit_code(&stopped, "build"), Some(0), "{stopped:?}");
}

/// A job's synthesised task definition, run on the stand-in: the init container installs
/// the agent into the task volume, the build and helper containers serve from it, the
/// service answers under its aliases, and the builds volume is the same in both.
#[tokio::test]
async fn a_jobs_synthesised_task_runs_its_stages_in_the_build_and_helper_containers() {
    use gitlab_ecs_executor::agent::{self, Endpoint, JobSecret, StageCommand};
    use gitlab_ecs_executor::ecs_jobs::task_definition::{
        self as job_td, AgentImage, Capacity, JobShape, ServiceContainer,
    };

    images::debian_images();
    let ecs = DockerEcs::start();
    let client = ecs.client();
    let shape = JobShape {
        build_image: images::DEBIAN.into(),
        helper_image: images::DEBIAN.into(),
        // The agent image of a real runner holds the static binary; here the test's own
        // build is bind-mounted into a Debian image, as a host volume on EC2 capacity.
        agent: AgentImage {
            image: images::DEBIAN.into(),
            binary: "/host-agent/gitlab-ecs-executor".into(),
        },
        services: vec![ServiceContainer {
            image: images::REDIS.into(),
            aliases: vec!["redis".into(), "cache".into()],
            entrypoint: None,
            command: Some(vec!["redis-server".into(), "--port".into(), "6379".into()]),
            variables: Vec::new(),
        }],
        builds_dir: "/builds".into(),
        capacity: Capacity::Ec2,
        cpu: "256".into(),
        memory: "512".into(),
        execution_role: None,
        task_role: None,
        logs: None,
        registry_credentials: Vec::new(),
    };
    let mut input = job_td::task_definition(&shape).unwrap();
    input
        .volumes
        .get_or_insert_with(Vec::new)
        .push(host_binary_volume("host-agent"));
    for c in input.container_definitions.get_or_insert_with(Vec::new) {
        if c.name() == Some(job_td::INIT) {
            c.mount_points.get_or_insert_with(Vec::new).push(
                MountPoint::builder()
                    .source_volume("host-agent")
                    .container_path("/host-agent")
                    .read_only(true)
                    .build(),
            );
        }
    }
    let registered = gitlab_ecs_executor::release::taskdef::register_request(&client, input)
        .send()
        .await
        .unwrap();
    let secret = JobSecret::generate().unwrap();
    let digest = KeyValuePair::builder()
        .name(agent::SECRET_DIGEST_VARIABLE)
        .value(secret.digest_hex())
        .build();
    let overrides = TaskOverride::builder()
        .container_overrides(
            ContainerOverride::builder()
                .name(job_td::BUILD)
                .environment(digest.clone())
                .build(),
        )
        .container_overrides(
            ContainerOverride::builder()
                .name(job_td::HELPER)
                .environment(digest)
                .build(),
        )
        .build();
    let run = client
        .run_task()
        .network_configuration(network())
        .cluster("standin")
        .task_definition(
            registered
                .task_definition()
                .and_then(|td| td.task_definition_arn())
                .unwrap(),
        )
        .overrides(overrides)
        .send()
        .await
        .unwrap();
    let task_arn = run.tasks()[0].task_arn().unwrap().to_string();
    let address = address_of(&until_running(&client, &task_arn).await).unwrap();
    let command = StageCommand {
        argv: vec!["bash".into()],
        env: Vec::new(),
        workdir: Some("/builds".into()),
    };
    let stage = |port: u16, script: &'static str| {
        let endpoint = Endpoint {
            address: format!("{address}:{port}").parse().unwrap(),
            secret: secret.clone(),
        };
        let command = command.clone();
        async move { stage_in_task(&endpoint, &command, script).await }
    };
    let (code, out) = stage(
        job_td::BUILD_PORT,
        "getent hosts cache\n\
         for i in $(seq 100); do exec 3<>/dev/tcp/redis/6379 && break; sleep 0.1; done\n\
         printf 'PING\\r\\n' >&3\nread -r reply <&3\necho \"${reply%$'\\r'}\"\n\
         echo from-build > /builds/shared.txt\n",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["127.0.0.1", "redis", "cache", "+PONG"]
    );
    let (code, out) = stage(job_td::HELPER_PORT, "cat /builds/shared.txt\n").await;
    assert_eq!((code, out.as_str()), (0, "from-build\n"));
    let stopped = job_over(&client, &task_arn).await;
    assert_eq!(exit_code(&stopped, job_td::INIT), Some(0));
    assert_eq!(exit_code(&stopped, job_td::BUILD), Some(0), "{stopped:?}");
}

/// As ECS: awsvpc needs the task's interface, overrides stay within 8192 characters and name
/// containers of the definition, one client token is one task however often it is sent,
/// and an image that cannot be pulled stops the task before anything ran, naming it.
#[tokio::test]
async fn run_task_needs_a_network_is_idempotent_and_fails_to_start_without_its_images() {
    let ecs = DockerEcs::start();
    let client = ecs.client();
    let registered = client
        .register_task_definition()
        .family("gitlab-ci-standin-pull")
        .network_mode(NetworkMode::Awsvpc)
        .container_definitions(container("app", images::DEBIAN, &["sleep", "300"]))
        .container_definitions(container(
            "sidecar",
            "gitlab-ecs-executor-test/absent:1",
            &["true"],
        ))
        .send()
        .await
        .unwrap();
    let arn = registered
        .task_definition()
        .and_then(|td| td.task_definition_arn())
        .unwrap();
    let refused = client
        .run_task()
        .cluster("standin")
        .task_definition(arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_ecs::error::ProvideErrorMetadata::code(&refused),
        Some("InvalidParameterException")
    );
    for overrides in [
        TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name("app")
                    .environment(
                        KeyValuePair::builder()
                            .name("BIG")
                            .value("x".repeat(8200))
                            .build(),
                    )
                    .build(),
            )
            .build(),
        TaskOverride::builder()
            .container_overrides(ContainerOverride::builder().name("nope").build())
            .build(),
    ] {
        let refused = client
            .run_task()
            .cluster("standin")
            .network_configuration(network())
            .task_definition(arn)
            .overrides(overrides)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            aws_sdk_ecs::error::ProvideErrorMetadata::code(&refused),
            Some("InvalidParameterException")
        );
    }
    let run = || {
        client
            .run_task()
            .cluster("standin")
            .network_configuration(network())
            .task_definition(arn)
            .client_token("gitlab-1-2-0123456789abcdef")
            .send()
    };
    let first = run().await.unwrap().tasks()[0]
        .task_arn()
        .unwrap()
        .to_string();
    let again = run().await.unwrap().tasks()[0]
        .task_arn()
        .unwrap()
        .to_string();
    assert_eq!(first, again);
    let (_, stopped) = until_stopped(&client, &first).await;
    assert_eq!(
        stopped.stop_code().map(|c| c.as_str()),
        Some("TaskFailedToStart")
    );
    let sidecar = stopped
        .containers()
        .iter()
        .find(|c| c.name() == Some("sidecar"))
        .unwrap();
    assert!(
        sidecar
            .reason()
            .is_some_and(|r| r.starts_with("CannotPullContainerError")
                && r.contains("gitlab-ecs-executor-test/absent:1")),
        "{sidecar:?}"
    );
    assert_eq!(exit_code(&stopped, "app"), None, "nothing ran");
}
