//! Side-by-side benchmarks: the executor against what users run today, measured in the same
//! run on the same engine and endpoints (these machines are noisy, so targets are ratios).
//! Run with `bash benches/setup && cargo bench --bench compare`; prints one table.
//!
//! 1. per-job overhead vs a docker-CLI executor of the same shape (helper and build
//!    containers, project volumes) and vs the engine's own API cost of that shape
//! 2. release control plane vs the seed's aws CLI + jq commands
//! 3. whole release job vs the seed's pipeline, on a rollout of a fixed few seconds
//! 4. failure detection vs `aws ecs wait services-stable`, and per ECS strategy
//! 5. re-release of an unchanged tree vs a cold build of a Dockerfile shaped like users'
//! 6. peak RSS during a release, and per-job overhead from 1 to 20 concurrent jobs
//! 7. one stage through the ECS job agent vs one docker-executor stage
//!
//! Sections: `overhead` (1), `release` (2 to 6 but scaling), `scale`, `agent` (7).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::container::AttachContainerResults;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    WaitContainerOptions,
};
use futures_util::StreamExt;
use gitlab_ecs_executor::agent;
use gitlab_ecs_executor::aws::{self, CredentialRequest};
use gitlab_ecs_executor::docker::Cancel;
use gitlab_ecs_executor::image_ref::ImageRef;
use gitlab_ecs_executor::joblog::JobLog;
use gitlab_ecs_executor::release::deploy::{self, DeployRequest, FamilyCheck};
use gitlab_ecs_executor::release::ecs::SdkEcs;
use gitlab_ecs_executor::release::inputs::EcsTarget;
use gitlab_ecs_executor::release::{LimitSource, RolloutDeadline};
use gitlab_ecs_executor::settings::{PauseMode, RollbackMode};
use support::release::{Fixture, CLUSTER, FAMILY, SERVICE};
use support::scripted_ecs::{Deployments, Hook, Scenario, Script, ScriptedEcs, Strategy};
use support::*;
use tokio::io::AsyncWriteExt;

const RUNS: usize = 5;

struct Row {
    what: String,
    ours: String,
    baseline: String,
    ratio: String,
    target: String,
    met: bool,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

fn benches_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/benches"))
}

fn main() {
    // `cargo bench` passes --bench; any other word runs only the sections it names
    // (`cargo bench --bench compare -- agent`).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted =
        |section: &str| only.is_empty() || only.iter().any(|o| section.contains(o.as_str()));
    base_image();
    let mut rows = Vec::new();
    let mut record = |new: Vec<Row>| {
        for r in &new {
            eprintln!(
                "measured: {} | {} | {} | {}",
                r.what, r.ours, r.baseline, r.ratio
            );
        }
        rows.extend(new);
    };
    if wanted("overhead") {
        record(per_job_overhead());
    }
    if wanted("release") {
        let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
        record(vec![control_plane(&mut f)]);
        record(vec![whole_release(&mut f)]);
        record(vec![two_services(&mut f)]);
        record(vec![failure_detection(&mut f)]);
        record(strategy_failure_detection(&mut f));
        record(vec![memory(&mut f)]);
        record(rerelease(&mut f));
    }
    if wanted("scale") {
        record(scale());
    }
    if wanted("agent") {
        record(vec![agent_stage()]);
    }
    if wanted("ecs-jobs") {
        record(ecs_job_start());
        record(ecs_jobs_at_scale());
    }

    println!("\n| measure | gitlab-ecs-executor | baseline | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.what,
            r.ours,
            r.baseline,
            r.ratio,
            r.target,
            if r.met { "yes" } else { "**no**" }
        );
    }
}

/// Section 1: config + prepare + trivial run + cleanup through the runner stand-in, against
/// a docker-CLI executor of the same shape and the engine's own cost of that shape.
fn per_job_overhead() -> Vec<Row> {
    let env = TestEnv::new();
    let job = || {
        let mut j = Job::test(base_image(), &["true"]);
        j.pull_policy = vec!["never".into()];
        j
    };
    let mut ours = Vec::new();
    let mut helper_stages = Vec::new();
    let mut stages: Vec<bool> = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let r = env.runner.run(&job());
        assert_eq!(r.status, Status::Success, "{}", r.log);
        ours.push(started.elapsed());
        // Which stages ran where: the floor below repeats exactly that shape.
        stages = r
            .calls
            .iter()
            .filter(|c| !matches!(c.what.as_str(), "config" | "prepare" | "cleanup"))
            .map(|c| is_build_stage(&c.what))
            .collect();
        helper_stages.push(
            r.calls
                .iter()
                .filter(|c| !matches!(c.what.as_str(), "config" | "prepare" | "cleanup"))
                .filter(|c| !is_build_stage(&c.what))
                .map(|c| c.elapsed)
                .sum::<Duration>(),
        );
    }
    let mut cli_runner = Runner::new(&benches_dir().join("docker-cli-executor.sh"), None);
    cli_runner.process_env = vec![("BENCH_HELPER_IMAGE".into(), images::HELPER.into())];
    let mut cli = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let r = cli_runner.run(&job());
        assert_eq!(r.status, Status::Success, "{}", r.log);
        cli.push(started.elapsed());
    }
    let _ = Command::new("sh")
        .args([
            "-c",
            "docker volume ls -q --filter name=bench-cli- | xargs -r docker volume rm",
        ])
        .output();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut api = Vec::new();
    for i in 0..RUNS {
        api.push(rt.block_on(engine_floor(i, &stages)));
    }
    rt.block_on(remove_floor_volumes());
    let (ours, cli, api) = (median(ours), median(cli), median(api));
    let helper = median(helper_stages);
    let mut config = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let out = Command::new(binary())
            .arg("--config")
            .arg(&env.settings)
            .arg("config")
            .output()
            .expect("config");
        assert!(out.status.success());
        config.push(started.elapsed());
    }
    let config = median(config);
    let helper_count = stages.iter().filter(|b| !**b).count();
    vec![
        Row {
            what: "1a. per-job overhead vs docker-CLI executor of the same shape".into(),
            ours: secs(ours),
            baseline: secs(cli),
            ratio: format!("{:.2}x", ours.as_secs_f64() / cli.as_secs_f64()),
            target: "≤ 1.0x".into(),
            met: ours <= cli,
        },
        Row {
            what: format!(
                "1b. per-job overhead vs engine API floor (a network, 2 creates with the project volumes, {} attached starts, 2 removes)",
                stages.len()
            ),
            ours: secs(ours),
            baseline: secs(api),
            ratio: format!("{:.2}x", ours.as_secs_f64() / api.as_secs_f64()),
            target: "≤ 1.10x".into(),
            met: ours.as_secs_f64() <= api.as_secs_f64() * 1.10,
        },
        Row {
            what: format!("1c. helper container: its {helper_count} stages of a trivial job"),
            ours: secs(helper),
            baseline: format!("{} (whole job)", secs(ours)),
            ratio: format!("{:.0} %", helper.as_secs_f64() / ours.as_secs_f64() * 100.0),
            target: "report".into(),
            met: true,
        },
        Row {
            what: "1d. `config` alone (median of 50)".into(),
            ours: secs(config),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "< 5 ms".into(),
            met: config < Duration::from_millis(5),
        },
    ]
}

/// Stages that run in the job's image; the rest run in the helper container.
fn is_build_stage(stage: &str) -> bool {
    stage == "build_script" || stage == "after_script" || stage.starts_with("step_")
}

/// The engine's own cost of a job of the docker executor's shape: a helper and a build
/// container created with stdin open and the project's builds and cache volumes mounted
/// (created beforehand, as a project's second job finds them), one attached start per stage
/// (`true` on stdin) in the container `stages` names (true: build), both removed.
async fn engine_floor(i: usize, stages: &[bool]) -> Duration {
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let name = |role: &str| format!("bench-floor-{}-{i}-{role}", std::process::id());
    let volume = |role: &str| format!("bench-floor-{}-{role}", std::process::id());
    for role in ["builds", "cache"] {
        docker
            .create_volume(bollard::models::VolumeCreateRequest {
                name: Some(volume(role)),
                ..Default::default()
            })
            .await
            .expect("volume");
    }
    let binds = vec![
        format!("{}:/builds", volume("builds")),
        format!("{}:/cache", volume("cache")),
    ];
    let started = Instant::now();
    // A network of the job's own, as FF_NETWORK_PER_BUILD gives the docker executor.
    let network = name("net");
    docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".into()),
            ..Default::default()
        })
        .await
        .expect("network");
    for (role, image) in [("helper", images::HELPER), ("build", base_image())] {
        docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::default()
                        .name(&name(role))
                        .build(),
                ),
                ContainerCreateBody {
                    host_config: Some(bollard::models::HostConfig {
                        binds: Some(binds.clone()),
                        network_mode: Some(network.clone()),
                        ..Default::default()
                    }),
                    ..stage_container(image)
                },
            )
            .await
            .expect("create");
    }
    for build in stages {
        attached_start(&docker, &name(if *build { "build" } else { "helper" })).await;
    }
    for role in ["helper", "build"] {
        docker
            .remove_container(
                &name(role),
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
            .expect("remove");
    }
    docker
        .remove_network(&network)
        .await
        .expect("remove network");
    started.elapsed()
}

/// A container of the docker executor's shape: `sh` waiting for its script on stdin.
fn stage_container(image: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.into()),
        cmd: Some(vec!["sh".into()]),
        open_stdin: Some(true),
        stdin_once: Some(true),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    }
}

/// One stage as the docker executor runs it: attach to the stopped container, start it,
/// `true` on its shell's stdin, wait for it to stop.
async fn attached_start(docker: &bollard::Docker, container: &str) {
    let options = AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .build();
    let AttachContainerResults {
        mut output,
        mut input,
    } = docker
        .attach_container(container, Some(options))
        .await
        .expect("attach");
    docker
        .start_container(container, None)
        .await
        .expect("start");
    input.write_all(b"true\n").await.expect("stdin");
    input.shutdown().await.expect("shutdown");
    while output.next().await.is_some() {}
    let mut wait = docker.wait_container(container, None::<WaitContainerOptions>);
    while wait.next().await.is_some() {}
}

/// Section 7: one stage through the job agent (connect, TLS, the secret, the shell, its
/// exit code) against one stage as the docker executor runs it on this engine.
fn agent_stage() -> Row {
    const STAGES: usize = 20;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = support::agent::LocalAgent::start();
    let endpoint = local.endpoint();
    let command = agent::StageCommand {
        argv: vec!["sh".into()],
        env: vec![("CI_JOB_ID".into(), "1".into())],
        workdir: None,
    };
    let through_agent = rt.block_on(async {
        let mut times = Vec::new();
        for _ in 0..STAGES {
            let started = Instant::now();
            let never: Cancel = Box::pin(std::future::pending());
            let end = agent::run(
                &endpoint,
                &command,
                b"true\n".to_vec(),
                |_, _| {},
                never,
                Duration::from_secs(5),
            )
            .await
            .expect("stage");
            assert_eq!(end.code, 0);
            times.push(started.elapsed());
        }
        median(times)
    });
    drop(local);
    let attached = rt.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
        let container = format!("bench-agent-baseline-{}", std::process::id());
        docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::default()
                        .name(&container)
                        .build(),
                ),
                stage_container(base_image()),
            )
            .await
            .expect("create");
        let mut times = Vec::new();
        for _ in 0..STAGES {
            let started = Instant::now();
            attached_start(&docker, &container).await;
            times.push(started.elapsed());
        }
        let _ = docker
            .remove_container(
                &container,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
        median(times)
    });
    Row {
        what: "one stage through the ECS job agent (TLS, secret, `sh`, exit code) vs a docker-executor stage on this engine".into(),
        ours: secs(through_agent),
        baseline: secs(attached),
        ratio: format!("{:.2}x", through_agent.as_secs_f64() / attached.as_secs_f64()),
        target: "< 50 ms per stage (ECS Exec: a session per stage, ~1-2 s, not measurable here)".into(),
        met: through_agent < Duration::from_millis(50),
    }
}

/// Section 8a: a job (`true`) as an ECS task on the Docker-backed stand-in, against the same
/// job in the Docker job environment; and the ECS calls one job makes.
fn ecs_job_start() -> Vec<Row> {
    let ecs = support::ecs_jobs::EcsJobsEnv::new("");
    let docker = TestEnv::new();
    let job = || Job::test(images::DEBIAN, &["true"]);
    // The first job registers the shape's definition; the runs after it are what jobs cost.
    let first = ecs.env.runner.run(&job());
    assert_eq!(first.status, Status::Success, "{}", first.log);
    let calls_before = ecs.ecs.calls().len();
    let (mut ecs_prepare, mut ecs_job) = (Vec::new(), Vec::new());
    let (mut docker_prepare, mut docker_job) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let started = Instant::now();
        let r = ecs.env.runner.run(&job());
        assert_eq!(r.status, Status::Success, "{}", r.log);
        ecs_job.push(started.elapsed());
        ecs_prepare.push(r.calls_of("prepare")[0].elapsed);
        let started = Instant::now();
        let r = docker.runner.run(&job());
        assert_eq!(r.status, Status::Success, "{}", r.log);
        docker_job.push(started.elapsed());
        docker_prepare.push(r.calls_of("prepare")[0].elapsed);
    }
    let mut per_op = std::collections::BTreeMap::new();
    for op in &ecs.ecs.calls()[calls_before..] {
        *per_op.entry(op.clone()).or_insert(0usize) += 1;
    }
    let per_job: usize = per_op.values().sum::<usize>() / RUNS;
    let listed: Vec<String> = per_op
        .iter()
        .map(|(op, n)| format!("{op} {}", *n as f64 / RUNS as f64))
        .collect();
    let (prepare, job_time) = (median(ecs_prepare), median(ecs_job));
    let (docker_prepare, docker_job) = (median(docker_prepare), median(docker_job));
    vec![
        Row {
            what: "8a. job start: prepare of a job as an ECS task on the Docker-backed stand-in (register once, RunTask, RUNNING, agents answer) vs prepare in the Docker job environment".into(),
            ours: secs(prepare),
            baseline: secs(docker_prepare),
            ratio: format!("{:.2}x", prepare.as_secs_f64() / docker_prepare.as_secs_f64()),
            target: "report (Fargate adds provisioning and image pulls: seconds to a minute)".into(),
            met: true,
        },
        Row {
            what: "8a. a whole `true` job as an ECS task vs in the Docker job environment".into(),
            ours: secs(job_time),
            baseline: secs(docker_job),
            ratio: format!("{:.2}x", job_time.as_secs_f64() / docker_job.as_secs_f64()),
            target: "report".into(),
            met: true,
        },
        Row {
            what: format!("8a. ECS API calls per job ({})", listed.join(", ")),
            ours: per_job.to_string(),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "<= 12 (one RunTask, one StopTask, a few polls)".into(),
            met: per_job <= 12,
        },
    ]
}

/// Section 8b: 100 concurrent jobs against an ECS whose `RunTask` is rate-limited (a burst
/// of 20, then 5 a second: an account whose quota other tools share), against the same
/// jobs unthrottled, in the same run. Every job must succeed, every task must be stopped,
/// and the throttling must show in the job logs as retries.
fn ecs_jobs_at_scale() -> Vec<Row> {
    use support::process_ecs::{ProcessEcs, RateLimit};
    const JOBS: usize = 100;
    let run_all = |limit: Option<RateLimit>| {
        let ecs = ProcessEcs::start(&binary(), limit);
        let builds = tempfile::tempdir().expect("temp dir");
        let top = format!(
            "builds_dir = \"{}/builds\"\ncache_dir = \"{}/cache\"",
            builds.path().display(),
            builds.path().display()
        );
        let mut env = TestEnv::with_settings(&support::ecs_jobs::settings(&top, ""));
        support::ecs_jobs::use_ecs(&mut env.runner, &ecs.endpoint);
        let jobs: Vec<Job> = (0..JOBS)
            .map(|slot| {
                let mut j = Job::test(images::DEBIAN, &["true"]);
                j.concurrent_id = slot as u64;
                j
            })
            .collect();
        let started = Instant::now();
        let results: Vec<JobResult> = run_concurrently(&env.runner, &jobs)
            .into_iter()
            .map(|(_, result)| result)
            .collect();
        let total = started.elapsed();
        let succeeded = results
            .iter()
            .filter(|r| r.status == Status::Success)
            .count();
        let retries = results
            .iter()
            .map(|r| r.log.matches("RunTask: ThrottlingException").count())
            .sum::<usize>();
        let (started_tasks, left) = ecs.tasks();
        let calls: usize = ecs.calls().values().sum();
        (
            total,
            succeeded,
            retries,
            ecs.throttled(),
            started_tasks,
            left,
            calls,
        )
    };
    let (free, free_ok, _, _, free_tasks, free_left, _) = run_all(None);
    let limit = RateLimit {
        burst: 20.0,
        per_second: 5.0,
    };
    let (throttled, ok, retries, refused, tasks, left, calls) = run_all(Some(limit));
    let held = ok == JOBS && tasks == JOBS && left == 0 && retries == refused && refused > 0;
    vec![Row {
        what: format!(
            "8b. {JOBS} concurrent jobs, RunTask limited to a burst of 20 then 5/s: {ok} succeeded, {tasks} tasks started, {left} left running, {refused} RunTask calls throttled and {retries} retries in the job logs, {:.1} API calls per job (unthrottled: {free_ok} succeeded, {free_tasks} tasks, {free_left} left)",
            calls as f64 / JOBS as f64
        ),
        ours: secs(throttled),
        baseline: format!("{} unthrottled", secs(free)),
        ratio: format!("{:.2}x", throttled.as_secs_f64() / free.as_secs_f64()),
        target: "no lost job, no leaked task, every throttle retried visibly".into(),
        met: held && free_ok == JOBS && free_left == 0,
    }]
}

/// Removes the floor's volumes once every run is measured.
async fn remove_floor_volumes() {
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    for role in ["builds", "cache"] {
        let _ = docker
            .remove_volume(
                &format!("bench-floor-{}-{role}", std::process::id()),
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await;
    }
}

fn scripted(f: &mut Fixture, script: Script) -> ScriptedEcs {
    let ecs = f.scripted_ecs(&format!("{}:v0.0.1", f.repository()), script);
    f.env
        .runner
        .process_env
        .retain(|(k, _)| k != "AWS_ENDPOINT_URL_ECS");
    f.use_ecs(&ecs);
    ecs
}

fn seed_env(
    f: &Fixture,
    ecs: &ScriptedEcs,
    tag: &str,
    docker_config: &Path,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = support::release::moto().runner_env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.extend([
        ("MOTO".into(), support::release::moto().endpoint.clone()),
        ("ECS".into(), ecs.endpoint.clone()),
        ("AWS_DEFAULT_REGION".into(), "ap-northeast-1".into()),
        ("ECR_REGISTRY".into(), f.registry.host.clone()),
        ("ECR_REPOSITORY".into(), "group/app".into()),
        ("ECS_CLUSTER".into(), CLUSTER.into()),
        ("ECS_SERVICE".into(), SERVICE.into()),
        ("TASK_DEFINITION".into(), FAMILY.into()),
        ("CI_COMMIT_TAG".into(), tag.into()),
        ("DOCKER_CONFIG".into(), docker_config.display().to_string()),
    ]);
    env
}

fn run_script(script: &str, args: &[&str], env: &[(String, String)]) -> (Duration, bool) {
    let started = Instant::now();
    let status = Command::new("bash")
        .arg(benches_dir().join(script))
        .args(args)
        .envs(env.iter().cloned())
        .status()
        .expect("bash");
    (started.elapsed(), status.success())
}

/// 2. describe → register → update against the same endpoint.
fn control_plane(f: &mut Fixture) -> Row {
    let ecs = scripted(
        f,
        Script {
            scenario: Scenario::Succeed(Duration::ZERO),
            rollback_time: Duration::ZERO,
            ..Script::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    std::env::set_var("AWS_ENDPOINT_URL_ECS", &ecs.endpoint);
    for (k, v) in support::release::moto().runner_env() {
        if k != "AWS_ENDPOINT_URL" {
            std::env::set_var(k, v);
        }
    }
    let target = EcsTarget {
        cluster: CLUSTER.into(),
        service: SERVICE.into(),
        task_definition: Some(FAMILY.into()),
        containers: vec!["app".into()],
        ..EcsTarget::default()
    };
    let log = JobLog::new(Box::new(std::io::sink()), Vec::<String>::new());
    let mut ours = Vec::new();
    for i in 0..RUNS * 2 {
        let tag = format!("v2.0.{i}");
        ours.push(rt.block_on(async {
            let started = Instant::now();
            let session = aws::session(
                "ap-northeast-1",
                &CredentialRequest::Host,
                &std::env::temp_dir(),
            )
            .await
            .expect("session");
            let service = SdkEcs::new(
                aws_sdk_ecs::Client::new(&session.config),
                &target.cluster,
                &target.service,
            );
            let request = DeployRequest {
                target: target.clone(),
                family_check: FamilyCheck::Required,
                image: ImageRef::parse(&format!("{}:{tag}", f.repository())),
                trace_tags: Vec::new(),
                deadline: RolloutDeadline::after(Duration::from_secs(30), LimitSource::Setting),
                poll: Duration::from_millis(1),
                rollback: RollbackMode::Never,
                on_pause: PauseMode::Wait,
                wait_for_others: Duration::from_secs(5),
                rollback_timeout: Duration::from_secs(5),
            };
            let mut cancel: Cancel = Box::pin(std::future::pending());
            deploy::deploy(&service, &request, &log, &mut cancel)
                .await
                .expect("deploy");
            started.elapsed()
        }));
    }
    let docker_config = tempfile::tempdir().expect("temp");
    let mut seed = Vec::new();
    for i in 0..RUNS {
        let env = seed_env(f, &ecs, &format!("v3.0.{i}"), docker_config.path());
        let (d, ok) = run_script("seed-deploy.sh", &["--no-wait"], &env);
        assert!(ok, "seed-deploy.sh failed");
        seed.push(d);
    }
    let (ours, seed) = (median(ours), median(seed));
    Row {
        what: "2. control plane: describe → register → update".into(),
        ours: secs(ours),
        baseline: format!("{} (aws CLI + jq)", secs(seed)),
        ratio: format!("{:.1}x faster", seed.as_secs_f64() / ours.as_secs_f64()),
        target: "≥ 20x faster".into(),
        met: seed.as_secs_f64() / ours.as_secs_f64() >= 20.0,
    }
}

/// 3. A whole release job (rollout of 3 s) vs the seed's pipeline.
fn whole_release(f: &mut Fixture) -> Row {
    let ecs = scripted(f, Script::default());
    let mut ours = Vec::new();
    // As users release: a new commit each time (a fresh file changes the build context, so
    // every step after the COPY runs again).
    for i in 0..3 {
        f.commit_file("bust.txt", &format!("{:?}", SystemTime::now()));
        let job = job_at_head(f, &format!("v4.0.{i}"));
        let started = Instant::now();
        let r = f.env.runner.run(&job);
        assert_eq!(r.status, Status::Success, "{}", r.log);
        ours.push(started.elapsed());
    }
    let docker_config = tempfile::tempdir().expect("temp");
    let context = tempfile::tempdir().expect("temp");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {}\nCOPY . /ctx\n", f.base()),
    )
    .expect("Dockerfile");
    let mut seed = Vec::new();
    for i in 0..3 {
        let env = seed_env(f, &ecs, &format!("v5.0.{i}"), docker_config.path());
        let (d, ok) = run_script(
            "seed-release.sh",
            &[&context.path().display().to_string()],
            &env,
        );
        assert!(ok, "seed-release.sh failed");
        seed.push(d);
    }
    let (ours, seed) = (median(ours), median(seed));
    Row {
        what: "3. whole release job, a new commit each time (rollout 3 s)".into(),
        ours: secs(ours),
        baseline: format!("{} (seed pipeline, services-stable)", secs(seed)),
        ratio: format!("{:.2}x", ours.as_secs_f64() / seed.as_secs_f64()),
        target: "≤ 0.3x".into(),
        met: ours.as_secs_f64() <= seed.as_secs_f64() * 0.3,
    }
}

/// Section 5: the image step of a re-release of an unchanged tree under a new tag vs a cold
/// build, on a Dockerfile shaped like users' (dependencies keyed on a lock file, a 20 MB
/// layer as a package install lays down, then the sources, then a build step).
fn rerelease(f: &mut Fixture) -> Vec<Row> {
    scripted(f, Script::default());
    f.commit_file(
        "Dockerfile",
        &format!(
            "FROM {}\n\
             COPY deps.lock /deps.lock\n\
             RUN mkdir /deps && head -c 20000000 /dev/urandom > /deps/vendor.bin\n\
             COPY . /app\n\
             RUN find /app -type f | sort | xargs cat | sha256sum > /build-id\n",
            f.base()
        ),
    );
    // Cold: the lock file changes, so every step runs and every layer is new to the registry.
    let mut cold = Vec::new();
    for i in 0..3 {
        f.commit_file("deps.lock", &format!("{:?}", SystemTime::now()));
        let r = f.env.runner.run(&job_at_head(f, &format!("v8.0.{i}")));
        assert_eq!(r.status, Status::Success, "{}", r.log);
        cold.push(image_secs(&r.log));
    }
    // The same tree again under new tags: everything is in the build cache and the registry.
    let mut warm = Vec::new();
    for i in 0..3 {
        let r = f.env.runner.run(&job_at_head(f, &format!("v8.1.{i}")));
        assert_eq!(r.status, Status::Success, "{}", r.log);
        warm.push(image_secs(&r.log));
    }
    // The same tree released by other projects: each has a build cache of its own, so this
    // is what keeping projects' caches apart costs the first release of each.
    let mut other = Vec::new();
    for i in 0..3 {
        let mut job = job_at_head(f, &format!("v8.2.{i}"));
        job.project_id = bench_project() + 1 + i;
        job.project_path = format!("group/other-{i}");
        let r = f.env.runner.run(&job);
        assert_eq!(r.status, Status::Success, "{}", r.log);
        other.push(image_secs(&r.log));
    }
    let (cold, warm, other) = (median(cold), median(warm), median(other));
    vec![
        Row {
            what: "5. image step: re-release of the same tree vs a cold build (20 MB dependency layer)"
                .into(),
            ours: secs(warm),
            baseline: format!("{} (cold)", secs(cold)),
            ratio: format!("{:.0}%", warm.as_secs_f64() / cold.as_secs_f64() * 100.0),
            target: "≤ 10%".into(),
            met: warm.as_secs_f64() <= cold.as_secs_f64() * 0.10,
        },
        Row {
            what: "5b. image step: the same tree's first release by another project (its own build cache) vs the project's warm re-release".into(),
            ours: secs(other),
            baseline: format!("{} (warm, same project)", secs(warm)),
            ratio: format!("{:.1}x", other.as_secs_f64() / warm.as_secs_f64()),
            target: "report (cost of per-project caches)".into(),
            met: true,
        },
    ]
}

/// 3b. One release to two services against the same release to one: the rollouts overlap.
fn two_services(f: &mut Fixture) -> Row {
    let old = format!("{}:v0.0.1", f.repository());
    let spec = |name: &str| {
        let mut td = support::release::task_definition(&old);
        td["family"] = format!("bench-{name}").into();
        support::scripted_ecs::ServiceSpec {
            name: name.into(),
            task_definition: td,
            tags: Vec::new(),
            script: Script::default(),
        }
    };
    let mut one = Vec::new();
    let mut two = Vec::new();
    let mut tags = 0..;
    for _ in 0..RUNS {
        for (services, times) in [("web", &mut one), ("web,jobs", &mut two)] {
            let ecs = ScriptedEcs::start_services(CLUSTER, vec![spec("web"), spec("jobs")]);
            f.env
                .runner
                .process_env
                .retain(|(k, _)| k != "AWS_ENDPOINT_URL_ECS");
            f.use_ecs(&ecs);
            let tag = format!("v4.2.{}", tags.next().unwrap_or_default());
            let mut job = job_at_head(f, &tag).var("ECS_SERVICE", services);
            job.variables.retain(|v| v.key != "TASK_DEFINITION");
            let started = Instant::now();
            let r = f.env.runner.run(&job);
            assert_eq!(r.status, Status::Success, "{}", r.log);
            times.push(started.elapsed());
        }
    }
    let (one, two) = (median(one), median(two));
    Row {
        what: "3b. one release to two services vs to one (rollouts 3 s each)".into(),
        ours: secs(two),
        baseline: format!("{} (one service)", secs(one)),
        ratio: format!("{:.2}x", two.as_secs_f64() / one.as_secs_f64()),
        target: "≤ 1.2x".into(),
        met: two.as_secs_f64() <= one.as_secs_f64() * 1.2,
    }
}

/// A deploy job for `tag`, a new tag on the project's HEAD.
/// A deploy job for `tag`, a new tag on the project's HEAD: every job of one project, whose
/// releases share their build cache as a project's do.
fn job_at_head(f: &Fixture, tag: &str) -> Job {
    f.tag(tag);
    let mut job = f.job("deploy", tag, true);
    job.project_id = bench_project();
    job.project_path = "group/app".into();
    job
}

/// The project id of the bench's releases: new in each run, so no run finds an earlier
/// run's build cache (ids above it are other projects').
fn bench_project() -> u64 {
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| support::runner::unique_id() * 10)
}

fn image_secs(log: &str) -> Duration {
    let line = log
        .lines()
        .find(|l| l.contains("timings:   image"))
        .expect("timings line");
    let value: f64 = line
        .split("image ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("image seconds");
    Duration::from_secs_f64(value)
}

/// 4. The circuit breaker fails our deployment at T and rolls back.
fn failure_detection(f: &mut Fixture) -> Row {
    let script = || Script {
        scenario: Scenario::CircuitBreaker(Duration::from_secs(6)),
        ..Script::default()
    };
    let ecs = scripted(f, script());
    let r = f.env.runner.run(&job_at_head(f, "v6.0.0"));
    assert_eq!(r.status, Status::Failed(1), "{}", r.log);
    let reported = r.calls_of("build_script")[0]
        .ended
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs_f64();
    let ours = reported - ecs.failure_due().expect("a circuit-breaker scenario");

    // The waiter on the same timeline: the seed's update, then services-stable.
    let ecs = scripted(f, script());
    let docker_config = tempfile::tempdir().expect("temp");
    let env = seed_env(f, &ecs, "v6.0.1", docker_config.path());
    let (_, waiter_ok) = run_script("seed-deploy.sh", &[], &env);
    let waiter_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs_f64();
    let waiter = ecs.failure_due().map(|t| waiter_at - t).unwrap_or(f64::NAN);
    Row {
        what: "4. failure detection after FAILED + rollback at T".into(),
        ours: format!("T + {ours:.2} s, reported as rolled back"),
        baseline: format!(
            "services-stable: {} at T + {waiter:.1} s",
            if waiter_ok {
                "SUCCESS (exit 0)"
            } else {
                "failure"
            }
        ),
        ratio: "-".into(),
        target: "≤ 1 poll interval (1 s here, +20 % jitter); waiter reports success".into(),
        met: ours <= 1.2 + 0.3 && waiter_ok,
    }
}

/// 4b. The same for service deployments of each strategy: from ECS's rollback completing
/// (ROLLBACK_SUCCESSFUL, as scheduled by the endpoint) to the job reporting it.
fn strategy_failure_detection(f: &mut Fixture) -> Vec<Row> {
    let alarm = |after: u64| {
        Some((
            "shop-5xx-rate".to_string(),
            Some(Duration::from_secs(after)),
        ))
    };
    let cases = [
        (
            "rolling, alarm",
            Deployments {
                strategy: Strategy::Rolling,
                alarm: alarm(2),
                stuck: true,
                ..Deployments::default()
            },
        ),
        (
            "blue/green, failing hook",
            Deployments {
                strategy: Strategy::BlueGreen,
                hooks: vec![Hook::Lambda {
                    stage: "POST_TEST_TRAFFIC_SHIFT",
                    fails: true,
                }],
                ..Deployments::default()
            },
        ),
        (
            "linear 50 %, alarm",
            Deployments {
                strategy: Strategy::Linear(50.0),
                alarm: alarm(3),
                ..Deployments::default()
            },
        ),
        (
            "canary 10 %, alarm",
            Deployments {
                strategy: Strategy::Canary(10.0),
                alarm: alarm(3),
                ..Deployments::default()
            },
        ),
    ];
    let mut rows = Vec::new();
    for (i, (name, deployments)) in cases.into_iter().enumerate() {
        let ecs = scripted(
            f,
            Script {
                deployments: Some(deployments),
                rollback_time: Duration::from_secs(1),
                ..Script::default()
            },
        );
        let r = f.env.runner.run(&job_at_head(f, &format!("v6.1.{i}")));
        assert_eq!(r.status, Status::Failed(1), "{name}: {}", r.log);
        assert!(r.log.contains("rolled back by ECS"), "{name}: {}", r.log);
        let reported = r.calls_of("build_script")[0]
            .ended
            .duration_since(UNIX_EPOCH)
            .expect("time")
            .as_secs_f64();
        let lag = reported - ecs.rollback_due().expect("a rollback");
        rows.push(Row {
            what: format!("4b. {name}: rolled-back service deployment reported"),
            ours: format!("T + {lag:.2} s"),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "≤ 1 poll interval (1 s here, +20 % jitter)".into(),
            met: lag <= 1.2 + 0.3,
        });
    }
    rows
}

/// 6a. Peak RSS of any executor process during a release.
fn memory(f: &mut Fixture) -> Row {
    let _ecs = scripted(f, Script::default());
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(executor_peak_rss_kb(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    f.commit_file("bust.txt", &format!("{:?}", SystemTime::now()));
    let r = f.env.runner.run(&job_at_head(f, "v7.0.0"));
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    assert_eq!(r.status, Status::Success, "{}", r.log);
    let mb = peak.load(Ordering::SeqCst) as f64 / 1024.0;
    Row {
        what: "6a. peak RSS of the executor during a release".into(),
        ours: format!("{mb:.1} MB"),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "< 50 MB".into(),
        met: mb < 50.0,
    }
}

fn executor_peak_rss_kb() -> u64 {
    let mut peak = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.starts_with("gitlab-ecs-exec") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        if let Some(kb) = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
    }
    peak
}

/// 6b. Per-job wall time as concurrency grows.
fn scale() -> Vec<Row> {
    let env = TestEnv::new();
    let mut rows = Vec::new();
    let mut single = None;
    for n in [1usize, 5, 10, 20] {
        let jobs: Vec<Job> = (0..n)
            .map(|slot| {
                let mut j = Job::test(base_image(), &["true"]);
                j.concurrent_id = slot as u64;
                j
            })
            .collect();
        let started = Instant::now();
        let durations: Vec<Duration> = run_concurrently(&env.runner, &jobs)
            .into_iter()
            .map(|(elapsed, r)| {
                assert_eq!(r.status, Status::Success, "{}", r.log);
                elapsed
            })
            .collect();
        let total = started.elapsed();
        let per_job = median(durations);
        let base = *single.get_or_insert(per_job);
        rows.push(Row {
            what: format!(
                "6b. {n} concurrent jobs: median job time (total {})",
                secs(total)
            ),
            ours: secs(per_job),
            baseline: format!("{} (1 job)", secs(base)),
            ratio: format!("{:.2}x", per_job.as_secs_f64() / base.as_secs_f64()),
            target: "report the curve".into(),
            met: true,
        });
    }
    rows
}
