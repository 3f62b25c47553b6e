//! The runner's stages in the ECS job environment: `prepare` starts the job's task and
//! waits until its agents answer, `run` sends each stage to one of them, `cleanup` stops
//! the task and sweeps what earlier jobs of this runner left running past their deadline.

use std::time::{Duration, SystemTime};

use super::record::{record_dir, TaskRecord};
use super::shape::job_shape;
use super::stage;
use super::task_definition;
use super::tasks::{job_is_over, tag_of, JobTasks, Launch, TAG_JOB};
use super::EcsJobError;
use crate::agent::{JobSecret, StageEnd};
use crate::aws::{self, CredentialRequest, Persistence};
use crate::docker::Cancel;
use crate::joblog::JobLog;
use crate::protocol::{JobContext, Placement};
use crate::settings::{EcsJobsSettings, Settings};

/// When the payload says nothing of the job's timeout: long enough that the sweep never
/// stops a job that may still run.
const UNKNOWN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How long after its deadline a task counts as orphaned: the runner's own cleanup of a
/// timed-out job comes first.
const SWEEP_GRACE: Duration = Duration::from_secs(15 * 60);

/// The ECS calls with the runner host's own credentials: the control plane is the
/// operator's; the job's containers get the task role, never these. `doctor` probes with
/// `Persistence::Probe`; the stages ride out faults.
pub async fn connect<'a>(
    settings: &Settings,
    jobs: &'a EcsJobsSettings,
    persistence: Persistence,
) -> Result<JobTasks<'a>, EcsJobError> {
    let region = jobs.region_or(&settings.aws.region);
    let session = aws::session_with(
        region,
        &CredentialRequest::Host,
        &std::env::temp_dir(),
        persistence,
    )
    .await?;
    Ok(JobTasks::new(
        aws_sdk_ecs::Client::new(&session.config),
        jobs,
    ))
}

/// Starts the job's task and waits until it runs and its agents answer; a failure stops it.
pub async fn prepare(
    settings: &Settings,
    jobs: &EcsJobsSettings,
    ctx: &JobContext,
    log: &JobLog,
) -> Result<(), EcsJobError> {
    let shape = job_shape(settings, jobs, ctx)?;
    log.info(&format!("Using image {} in an ECS task", shape.build_image));
    for service in &shape.services {
        log.info(&format!(
            "Service {} as {}",
            service.image,
            service.aliases.join(", ")
        ));
    }
    let dir = record_dir(ctx.runner_temp_dir.as_deref())?;
    let tasks = connect(settings, jobs, Persistence::Release).await?;
    let input = task_definition::task_definition(&shape)
        .map_err(|e| EcsJobError::Definition(e.to_string()))?;
    let (definition, registered) = tasks.ensure_definition(input).await?;
    log.info(&format!(
        "{} task definition {}",
        match registered {
            true => "Registered",
            false => "Using",
        },
        short(&definition)
    ));
    let secret = JobSecret::generate()?;
    let identity = &ctx.identity;
    let client_token = format!(
        "gitlab-{}-{}-{}",
        identity.runner_id,
        identity.job_id,
        &JobSecret::generate()?.digest_hex()[..16]
    );
    // The intent first: if this process dies from here on, cleanup still finds the task.
    let mut record = TaskRecord::intent(&jobs.cluster, client_token, &secret);
    record.save(&dir)?;
    let launch = Launch {
        task_definition: &definition,
        client_token: &record.client_token,
        runner_id: identity.runner_id,
        job_id: identity.job_id,
        project_id: identity.project_id,
        deadline: SystemTime::now() + ctx.job_time_left().unwrap_or(UNKNOWN_TIMEOUT),
        secret: &secret,
    };
    let task = tasks.start(&launch, |retry| log.warn(retry)).await?;
    record.task_arn = Some(task.clone());
    record.save(&dir)?;
    log.info(&format!(
        "Started task {} in cluster {}",
        short(&task),
        jobs.cluster
    ));
    let started = tokio::time::Instant::now();
    let running = async {
        let running = tasks
            .wait_running(&task, |status| log.info(&format!("Task {status}")))
            .await?;
        stage::wait_for_agents(running.address).await?;
        Ok::<_, EcsJobError>(running)
    }
    .await;
    match running {
        Ok(running) => {
            record.address = Some(running.address);
            record.save(&dir)?;
            log.info(&format!(
                "Task running at {} after {:.1} s",
                running.address,
                started.elapsed().as_secs_f64()
            ));
            Ok(())
        }
        Err(e) => {
            // A failed prepare leaves nothing running, even if cleanup never comes.
            let reason = format!("gitlab-ecs-executor: job {} did not start", identity.job_id);
            if let Err(stop) = tasks.stop(&task, &reason).await {
                log.warn(&format!("could not stop task {}: {stop}", short(&task)));
            }
            Err(e)
        }
    }
}

/// Runs one stage script in the job's task.
pub async fn run(
    settings: &Settings,
    ctx: &JobContext,
    placement: Placement,
    script: Vec<u8>,
    log: &JobLog,
    cancel: Cancel,
) -> Result<StageEnd, EcsJobError> {
    let dir = record_dir(ctx.runner_temp_dir.as_deref())?;
    let record = TaskRecord::load(&dir)?.ok_or(EcsJobError::NoTask)?;
    let address = record.address.ok_or(EcsJobError::NoTask)?;
    let endpoint = stage::endpoint(address, placement, record.secret(&dir)?);
    stage::run(&endpoint, placement, script, settings, log, cancel).await
}

/// What cleanup stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// This job's tasks.
    pub own: usize,
    /// Earlier jobs' tasks past their deadline.
    pub orphans: usize,
}

/// Stops the job's task (found by its record, or by its tags when prepare died before
/// ECS answered) and every task of this runner whose job is over.
pub async fn cleanup(
    settings: &Settings,
    jobs: &EcsJobsSettings,
    ctx: &JobContext,
) -> Result<Stopped, EcsJobError> {
    let dir = record_dir(ctx.runner_temp_dir.as_deref())?;
    let record = TaskRecord::load(&dir)?;
    let tasks = connect(settings, jobs, Persistence::Release).await?;
    let identity = &ctx.identity;
    let mut stopped = Stopped::default();
    let over = format!("gitlab-ecs-executor: job {} is over", identity.job_id);
    if let Some(arn) = record.as_ref().and_then(|r| r.task_arn.as_deref()) {
        tasks.stop(arn, &over).await?;
        stopped.own += 1;
    }
    let job = identity.job_id.to_string();
    let now = SystemTime::now();
    for task in tasks.of_runner(identity.runner_id).await? {
        let Some(arn) = task.task_arn() else { continue };
        if record.as_ref().and_then(|r| r.task_arn.as_deref()) == Some(arn) {
            continue;
        }
        if tag_of(&task, TAG_JOB) == Some(job.as_str()) {
            tasks.stop(arn, &over).await?;
            stopped.own += 1;
        } else if job_is_over(&task, now, SWEEP_GRACE) {
            let orphan = format!(
                "gitlab-ecs-executor: job {} is past its timeout (orphan sweep)",
                tag_of(&task, TAG_JOB).unwrap_or("?")
            );
            tasks.stop(arn, &orphan).await?;
            stopped.orphans += 1;
        }
    }
    TaskRecord::remove(&dir);
    Ok(stopped)
}

/// What `prune` did with the job task definitions.
#[derive(Debug, Default)]
pub struct PrunedDefinitions {
    /// Each revision deregistered (or that would be), and how long ago it was registered.
    pub removed: Vec<(String, Duration)>,
    /// Revisions registered more recently.
    pub kept: usize,
}

/// Deregisters the job task definitions registered more than `older_than` ago (a job of
/// their shape registers them again): the content-addressed families would otherwise pile
/// up, one per image and services a pipeline ever named.
pub async fn prune_definitions(
    settings: &Settings,
    jobs: &EcsJobsSettings,
    older_than: Duration,
    dry_run: bool,
) -> Result<PrunedDefinitions, EcsJobError> {
    let tasks = connect(settings, jobs, Persistence::Release).await?;
    let now = SystemTime::now();
    let mut report = PrunedDefinitions::default();
    for (arn, registered) in tasks.job_definitions().await? {
        let age = registered.and_then(|r| now.duration_since(r).ok());
        match age {
            Some(age) if age >= older_than => {
                if !dry_run {
                    tasks.deregister(&arn).await?;
                }
                report.removed.push((short(&arn).to_string(), age));
            }
            _ => report.kept += 1,
        }
    }
    Ok(report)
}

/// The last part of an ARN (`family:3`, the task id), as the console shows it.
fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}
