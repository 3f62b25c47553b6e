//! `doctor`: one line per check of what a release needs — settings, the default image, the
//! Docker engine, the given inputs and tag, the ECS job environment's cluster, AWS identity,
//! the ECR repository, the ECS service and its task definition — and a non-zero exit if any
//! fails.

use std::path::Path;

use super::Target;
use crate::aws::{self, CallError};
use crate::docker::{self, volumes};
use crate::ecs_jobs;
use crate::image_ref::ImageRef;
use crate::release::ecs::{short_td, Ecs, SdkEcs};
use crate::release::inputs::{self, Input, Requester, ServiceAccess};
use crate::release::taskdef;
use crate::settings::{Capacity, EcsJobsSettings, PullPolicy, Settings};

/// What `doctor` checks, in the order it reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The settings file loads.
    Settings,
    /// The Docker engine answers.
    DockerEngine,
    /// The project volumes it holds, and their size.
    ProjectVolumes,
    /// Jobs without an image can run.
    DefaultImage,
    /// Every input given is well formed.
    Inputs,
    /// The tag given would be released.
    Tag,
    /// The ECS job environment's cluster can run job tasks.
    EcsJobs,
    /// The AWS credentials work, and whose they are.
    AwsIdentity,
    /// The ECR repository exists.
    EcrRepository,
    /// The ECS service exists.
    EcsService,
    /// The service's task definition suits a release.
    TaskDefinition,
}

impl Probe {
    /// Every check, in report order.
    pub const ALL: [Probe; 11] = [
        Probe::Settings,
        Probe::DockerEngine,
        Probe::ProjectVolumes,
        Probe::DefaultImage,
        Probe::Inputs,
        Probe::Tag,
        Probe::EcsJobs,
        Probe::AwsIdentity,
        Probe::EcrRepository,
        Probe::EcsService,
        Probe::TaskDefinition,
    ];

    /// As the report names it.
    pub fn label(self) -> &'static str {
        match self {
            Probe::Settings => "settings",
            Probe::DockerEngine => "docker engine",
            Probe::ProjectVolumes => "project volumes",
            Probe::DefaultImage => "default image",
            Probe::Inputs => "inputs",
            Probe::Tag => "tag",
            Probe::EcsJobs => "ecs jobs",
            Probe::AwsIdentity => "aws identity",
            Probe::EcrRepository => "ecr repository",
            Probe::EcsService => "ecs service",
            Probe::TaskDefinition => "task definition",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// It works; what was found.
    Ok(String),
    /// Works, but something is worth knowing; not a failure.
    Warn(String),
    /// It does not work; why.
    Fail(String),
    /// Not checked; why.
    Skip(String),
}

/// Every check's result, printed as it is recorded so a slow endpoint shows where it is.
#[derive(Debug, Default)]
pub struct Findings {
    found: Vec<(Probe, Check)>,
}

impl Findings {
    fn record(&mut self, probe: Probe, check: Check) {
        print(probe.label(), &check);
        self.found.push((probe, check));
    }

    /// Every check not yet recorded is skipped, because of `why`.
    fn skip_rest(&mut self, why: &str) {
        for probe in Probe::ALL {
            if !self.found.iter().any(|(p, _)| *p == probe) {
                self.record(probe, Check::Skip(why.to_string()));
            }
        }
    }

    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.found
            .iter()
            .filter(|(_, c)| matches!(c, Check::Fail(_)))
            .count()
    }

    /// The checks in the order they were recorded.
    pub fn probes(&self) -> Vec<Probe> {
        self.found.iter().map(|(p, _)| *p).collect()
    }
}

fn print(name: &str, check: &Check) {
    let (mark, text) = match check {
        Check::Ok(t) => ("[ ok ]", t),
        Check::Warn(t) => ("[warn]", t),
        Check::Fail(t) => ("[FAIL]", t),
        Check::Skip(t) => ("[skip]", t),
    };
    println!("{mark} {name}: {text}");
}

/// How many project volumes there are and how much they hold.
async fn project_volumes(docker: &bollard::Docker, settings: &Settings) -> Check {
    let mut listed = match volumes::list(docker).await {
        Ok(v) => v,
        Err(e) => return Check::Fail(e.to_string()),
    };
    let projects: std::collections::HashSet<&str> =
        listed.iter().map(|v| v.project.as_str()).collect();
    let projects = projects.len();
    let image = match docker::image_on_host(docker, &settings.docker).await {
        Ok(Some(image)) => image,
        Ok(None) => {
            return Check::Ok(format!(
                "{} volume(s) of {projects} project(s); size unknown (no helper image on the host)",
                listed.len()
            ))
        }
        Err(e) => return Check::Fail(e.to_string()),
    };
    if let Err(e) = volumes::measure(docker, &mut listed, &image).await {
        return Check::Fail(e.to_string());
    }
    let bytes: i64 = listed.iter().filter_map(|v| v.size).sum();
    Check::Ok(format!(
        "{} volume(s) of {projects} project(s), {:.1} MiB; `prune --older-than 7d` removes stale ones",
        listed.len(),
        bytes as f64 / (1024.0 * 1024.0)
    ))
}

/// Whether jobs without an image can run: `docker.default_image` on the host, or pullable
/// under the pull policies prepare would use. (Like the docker executor, prepare always
/// allows the operator's own default image, whatever `docker.allowed_images` says.)
async fn default_image(docker: &bollard::Docker, settings: &Settings) -> Check {
    let name = settings.docker.default_image.trim();
    let image = ImageRef::parse(name);
    let policies = match docker::effective_policies(&image, &[], &settings.docker) {
        Ok(p) => p,
        Err(e) => return Check::Fail(e.to_string()),
    };
    match docker::image_present(docker, name).await {
        Ok(true) => Check::Ok(format!("{image} is on the host")),
        // Policies are tried in order: only a list of nothing but `never` cannot pull.
        Ok(false) if policies.iter().all(|p| *p == PullPolicy::Never) => Check::Fail(format!(
            "{image} is not on the host and its pull policy is never: load it (docker load) \
             or allow pulling in docker.pull_policy"
        )),
        Ok(false) => Check::Warn(format!(
            "{image} is not on the host: the first job without an image pulls it"
        )),
        Err(e) => Check::Fail(e.to_string()),
    }
}

/// Whether the ECS job environment's cluster can run job tasks, with the runner host's
/// credentials as the stages use them.
async fn ecs_jobs(settings: &Settings) -> Check {
    let Some(jobs) = &settings.ecs_jobs else {
        return Check::Skip("no [ecs_jobs] in the settings: jobs run on the Docker engine".into());
    };
    let region = jobs.region_or(&settings.aws.region);
    let cluster = match ecs_jobs::connect(settings, jobs, aws::Persistence::Probe).await {
        Ok(tasks) => tasks.cluster().await,
        Err(e) => Err(e),
    };
    match cluster {
        Err(e) => Check::Fail(e.to_string()),
        Ok(cluster) => judge_cluster(jobs, region, cluster.as_ref()),
    }
}

/// What the job tasks' cluster, as ECS describes it, means for jobs.
fn judge_cluster(
    jobs: &EcsJobsSettings,
    region: &str,
    cluster: Option<&aws_sdk_ecs::types::Cluster>,
) -> Check {
    let name = &jobs.cluster;
    let Some(cluster) = cluster.filter(|c| c.status() != Some("INACTIVE")) else {
        return Check::Fail(format!(
            "cluster {name} does not exist in {region}: check ecs_jobs.cluster and ecs_jobs.region"
        ));
    };
    let status = cluster.status().unwrap_or("?");
    if status != "ACTIVE" {
        return Check::Fail(format!("cluster {name} is {status}, not ACTIVE"));
    }
    let instances = cluster.registered_container_instances_count();
    if jobs.capacity == Capacity::Ec2 && instances == 0 {
        return Check::Fail(format!(
            "cluster {name} has no container instances, and ecs_jobs.capacity is ec2: register instances or use fargate"
        ));
    }
    Check::Ok(format!(
        "cluster {name} in {region} is ACTIVE ({} running tasks, {instances} container instances); jobs run on {}",
        cluster.running_tasks_count(),
        match jobs.capacity {
            Capacity::Fargate => "Fargate",
            Capacity::Ec2 => "EC2",
        }
    ))
}

/// An input named as the terminal gives it.
fn in_flags(input: Input) -> String {
    super::flag_name(input).to_string()
}

/// The task definition the service runs, against `--task-definition` and `--container`,
/// judged as a release would judge it.
async fn service_task_definition(ecs: &SdkEcs, running: &str, access: &ServiceAccess) -> Check {
    let td = match ecs.task_definition(running).await {
        Ok(td) => td.definition,
        Err(e) => return Check::Fail(e.to_string()),
    };
    let target = &access.target;
    if let Some(family) = &target.task_definition {
        if let Err(e) = taskdef::check_family(&td, family) {
            return Check::Fail(e.describe(&in_flags));
        }
    }
    let repository = access.repository.as_deref().unwrap_or_default();
    match taskdef::target_containers(&td, &target.containers, repository) {
        Ok(chosen) => Check::Ok(format!(
            "{}: a release replaces the image of {}",
            short_td(running),
            chosen
                .iter()
                .filter_map(|i| td.container_definitions().get(*i))
                .map(|c| c.name().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(e) => Check::Fail(e.describe(&in_flags)),
    }
}

/// Runs every check, each reported once and in [`Probe::ALL`]'s order. `settings` is the
/// loaded result, so a broken settings file is reported as a check too.
pub async fn doctor(
    settings: Result<Settings, String>,
    settings_source: &Path,
    target: &Target,
) -> Findings {
    let mut findings = Findings::default();
    let settings = match settings {
        Ok(s) => {
            findings.record(
                Probe::Settings,
                Check::Ok(format!("{} loaded", settings_source.display())),
            );
            s
        }
        Err(e) => {
            findings.record(Probe::Settings, Check::Fail(e));
            Settings::default()
        }
    };
    let engine = docker::connect(&settings.docker).await;
    findings.record(
        Probe::DockerEngine,
        match &engine {
            Ok(d) => match d.version().await {
                Ok(v) => Check::Ok(format!(
                    "engine {} (API {})",
                    v.version.unwrap_or_default(),
                    v.api_version.unwrap_or_default()
                )),
                Err(e) => Check::Fail(e.to_string()),
            },
            Err(e) => Check::Fail(e.to_string()),
        },
    );
    findings.record(
        Probe::ProjectVolumes,
        match &engine {
            Ok(d) => project_volumes(d, &settings).await,
            Err(_) => Check::Skip("no Docker engine".into()),
        },
    );
    findings.record(
        Probe::DefaultImage,
        match (&engine, &settings.ecs_jobs) {
            (_, Some(_)) => Check::Skip(
                "jobs run as ECS tasks: ECS pulls ecs_jobs.default_image for them".into(),
            ),
            (Ok(d), None) => default_image(d, &settings).await,
            (Err(_), None) => Check::Skip("no Docker engine".into()),
        },
    );
    let problems = inputs::check_given(target);
    findings.record(
        Probe::Inputs,
        match problems.is_empty() {
            true => Check::Ok("every input given is well formed".into()),
            false => Check::Fail(problems.join("; ")),
        },
    );
    findings.record(
        Probe::Tag,
        match target.tag.as_deref().filter(|t| !t.trim().is_empty()) {
            None => Check::Skip("no tag (--tag or CI_COMMIT_TAG)".into()),
            Some(tag) => match target.release_tag(&settings.release) {
                Ok(_) => Check::Ok(format!("{tag} would be released")),
                Err(e) => Check::Fail(e.to_string()),
            },
        },
    );

    findings.record(Probe::EcsJobs, ecs_jobs(&settings).await);

    let region = match inputs::region(target, &settings.aws) {
        Ok(region) => region,
        Err(e) => {
            findings.skip_rest(&e.problems.join("; "));
            return findings;
        }
    };
    let credentials = match inputs::credentials(target, &settings.aws, Requester::Operator) {
        Ok(c) => c,
        Err(e) => {
            findings.record(Probe::AwsIdentity, Check::Fail(e.to_string()));
            findings.skip_rest("no AWS session");
            return findings;
        }
    };
    let temp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => {
            findings.record(
                Probe::AwsIdentity,
                Check::Fail(format!("cannot create a temp dir: {e}")),
            );
            findings.skip_rest("no AWS session");
            return findings;
        }
    };
    let session = match aws::session_with(
        &region,
        &credentials,
        temp.path(),
        aws::Persistence::Probe,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            findings.record(Probe::AwsIdentity, Check::Fail(e.to_string()));
            findings.skip_rest("no AWS session");
            return findings;
        }
    };
    let sts = aws_sdk_sts::Client::new(&session.config);
    findings.record(
        Probe::AwsIdentity,
        match sts.get_caller_identity().send().await {
            Ok(id) => Check::Ok(format!("{} in {region}", id.arn().unwrap_or("?"))),
            Err(e) => Check::Fail(CallError::from_sdk("sts:GetCallerIdentity", e).to_string()),
        },
    );
    findings.record(
        Probe::EcrRepository,
        match &target.repository {
            None => Check::Skip("no repository (--repository or ECR_REPOSITORY)".into()),
            Some(repo) => {
                let ecr = aws_sdk_ecr::Client::new(&session.config);
                match ecr
                    .describe_repositories()
                    .repository_names(repo)
                    .send()
                    .await
                {
                    Ok(out) => Check::Ok(format!(
                        "{} (tags {})",
                        out.repositories()
                            .first()
                            .and_then(|r| r.repository_uri())
                            .unwrap_or(repo),
                        out.repositories()
                            .first()
                            .and_then(|r| r.image_tag_mutability())
                            .map(|m| m.as_str().to_lowercase())
                            .unwrap_or_else(|| "?".into())
                    )),
                    Err(e) => {
                        Check::Fail(CallError::from_sdk("ecr:DescribeRepositories", e).to_string())
                    }
                }
            }
        },
    );
    let ecs = match (&target.cluster, &target.service) {
        (Some(cluster), Some(service)) => Some(SdkEcs::new(
            aws_sdk_ecs::Client::new(&session.config),
            cluster,
            service,
        )),
        _ => None,
    };
    let mut running = None;
    findings.record(
        Probe::EcsService,
        match (&ecs, &target.cluster, &target.service) {
            (Some(ecs), Some(cluster), Some(service)) => match ecs.describe_service().await {
                Ok(s) => {
                    running = s.task_definition().map(str::to_string);
                    Check::Ok(format!(
                        "{service} in {cluster}: {} running {}/{}, status {}",
                        s.task_definition().map(short_td).unwrap_or("?"),
                        s.running_count(),
                        s.desired_count(),
                        s.status().unwrap_or("?")
                    ))
                }
                Err(e) => Check::Fail(e.to_string()),
            },
            _ => Check::Skip("no service (--cluster/--service or ECS_CLUSTER/ECS_SERVICE)".into()),
        },
    );
    findings.record(
        Probe::TaskDefinition,
        match (
            &ecs,
            &running,
            inputs::collect_service(target, &settings.aws),
        ) {
            (Some(ecs), Some(arn), Ok(access)) => service_task_definition(ecs, arn, &access).await,
            (Some(_), Some(_), Err(e)) => Check::Skip(format!(
                "not judged while an input is unusable ({})",
                e.problems.join("; ")
            )),
            _ => Check::Skip("no service to read it from".into()),
        },
    );
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{doctor_exit_code, EXIT_FAILED};

    #[test]
    fn a_check_that_cannot_run_skips_the_rest_so_every_check_is_reported_once_in_order() {
        let mut findings = Findings::default();
        findings.record(Probe::Settings, Check::Ok("loaded".into()));
        findings.record(Probe::DockerEngine, Check::Fail("no engine".into()));
        for probe in [Probe::ProjectVolumes, Probe::DefaultImage] {
            findings.record(probe, Check::Skip("no Docker engine".into()));
        }
        findings.record(Probe::Inputs, Check::Ok("well formed".into()));
        findings.record(Probe::Tag, Check::Skip("no tag".into()));
        // No region: nothing of AWS can be checked.
        findings.skip_rest("no region");
        assert_eq!(findings.probes(), Probe::ALL);
        assert_eq!(findings.failed(), 1);
        assert_eq!(doctor_exit_code(&findings), EXIT_FAILED);
        findings.skip_rest("again");
        assert_eq!(findings.probes(), Probe::ALL);
    }

    #[test]
    fn the_job_tasks_cluster_must_exist_be_active_and_have_capacity_for_ec2() {
        use aws_sdk_ecs::types::Cluster;
        let jobs = EcsJobsSettings {
            cluster: "ci".into(),
            ..EcsJobsSettings::default()
        };
        let fail = |c: Check| match c {
            Check::Fail(text) => text,
            other => panic!("{other:?}"),
        };
        assert!(fail(judge_cluster(&jobs, "eu-west-1", None)).contains("ecs_jobs.cluster"));
        let gone = Cluster::builder().status("INACTIVE").build();
        assert!(fail(judge_cluster(&jobs, "eu-west-1", Some(&gone))).contains("does not exist"));
        let empty = Cluster::builder().status("ACTIVE").build();
        assert!(matches!(
            judge_cluster(&jobs, "eu-west-1", Some(&empty)),
            Check::Ok(t) if t.contains("jobs run on Fargate")
        ));
        let ec2 = EcsJobsSettings {
            capacity: Capacity::Ec2,
            ..jobs
        };
        assert!(
            fail(judge_cluster(&ec2, "eu-west-1", Some(&empty))).contains("no container instances")
        );
        let with_instances = Cluster::builder()
            .status("ACTIVE")
            .registered_container_instances_count(3)
            .build();
        assert!(matches!(
            judge_cluster(&ec2, "eu-west-1", Some(&with_instances)),
            Check::Ok(_)
        ));
    }

    #[test]
    fn doctor_exits_0_only_without_a_failed_check() {
        let mut findings = Findings::default();
        findings.record(
            Probe::DefaultImage,
            Check::Warn("pulled on first use".into()),
        );
        findings.record(Probe::Tag, Check::Skip("no tag".into()));
        assert_eq!(doctor_exit_code(&findings), 0);
    }
}
