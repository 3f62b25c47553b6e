//! `[ecs_jobs]`: the ECS job environment, in which each CI job is one ECS task. Present, it
//! replaces the Docker job environment for every job the executor does not perform itself;
//! absent, jobs run on the runner host's engine as before.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{minutes, seconds};
use crate::glob;

/// Where the job tasks run.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Capacity {
    /// Fargate (per-second billing, no image cache).
    Fargate,
    /// The cluster's EC2 container instances.
    Ec2,
}

/// The task role of the projects one entry names.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectRole {
    /// Project paths (globs, `group/*`), as in `release.grants`.
    pub projects: Vec<String>,
    /// The role ARN their job tasks get.
    pub role: String,
}

/// The secret ECS pulls one private registry's images with.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryCredential {
    /// The registry as images name it (`registry.example.com`, `host:5000`).
    pub registry: String,
    /// The ARN of the Secrets Manager secret holding its `username` and `password`.
    pub secret: String,
}

/// The ECS job environment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EcsJobsSettings {
    /// The cluster the job tasks run in.
    pub cluster: String,
    /// Its region; `aws.region` when empty.
    pub region: String,
    /// Fargate or EC2.
    pub capacity: Capacity,
    /// The subnets of the tasks' network interfaces (awsvpc): private ones the runner reaches.
    pub subnets: Vec<String>,
    /// Their security groups: admitting the runner to ports 8473-8474 and nothing else in.
    pub security_groups: Vec<String>,
    /// Whether the interfaces get a public address (Fargate in a public subnet only).
    pub assign_public_ip: bool,
    /// The image holding the executor's static binary, which the init container installs.
    pub agent_image: String,
    /// The binary's path in `agent_image`.
    pub agent_binary: String,
    /// The image of the helper container (git, caches, artifacts).
    pub helper_image: String,
    /// The image of a job that names none.
    pub default_image: String,
    /// Images a job may name (globs; empty: any).
    pub allowed_images: Vec<String>,
    /// Images a job's services may name (globs; empty: any).
    pub allowed_services: Vec<String>,
    /// Task CPU units, as ECS takes them.
    pub cpu: u32,
    /// Task memory in MiB.
    pub memory_mib: u32,
    /// The role ECS pulls images and writes logs with.
    pub execution_role: String,
    /// The role of a project's job task when no `task_roles` entry names the project; empty
    /// for none.
    pub task_role: String,
    /// Task roles per project, the first entry naming the project wins.
    pub task_roles: Vec<ProjectRole>,
    /// Private registries (not ECR) and the secrets ECS pulls their images with.
    pub registry_credentials: Vec<RegistryCredential>,
    /// The CloudWatch Logs group of the tasks' containers; empty to keep no container logs.
    pub log_group: String,
    /// How long a task may take to start (image pulls included) before the job fails.
    #[serde(rename = "start_timeout_minutes", with = "minutes")]
    pub start_timeout: Duration,
    /// Between `DescribeTasks` polls while a task starts or stops.
    #[serde(rename = "poll_interval_seconds", with = "seconds")]
    pub poll_interval: Duration,
}

impl Default for EcsJobsSettings {
    fn default() -> Self {
        EcsJobsSettings {
            cluster: String::new(),
            region: String::new(),
            capacity: Capacity::Fargate,
            subnets: Vec::new(),
            security_groups: Vec::new(),
            assign_public_ip: false,
            agent_image: String::new(),
            agent_binary: "/gitlab-ecs-executor".into(),
            helper_image: String::new(),
            default_image: "debian:bookworm-slim".into(),
            allowed_images: Vec::new(),
            allowed_services: Vec::new(),
            cpu: 1024,
            memory_mib: 2048,
            execution_role: String::new(),
            task_role: String::new(),
            task_roles: Vec::new(),
            registry_credentials: Vec::new(),
            log_group: String::new(),
            start_timeout: Duration::from_secs(10 * 60),
            poll_interval: Duration::from_secs(2),
        }
    }
}

impl EcsJobsSettings {
    /// The task role of `project`'s jobs (the project path GitLab vouched for), if any.
    pub fn task_role_of(&self, project: &str) -> Option<&str> {
        self.task_roles
            .iter()
            .find(|r| r.projects.iter().any(|p| glob::matches(p, project)))
            .map(|r| r.role.as_str())
            .or(Some(self.task_role.as_str()))
            .filter(|r| !r.is_empty())
    }

    /// Whether a job may run in `image`.
    pub fn image_allowed(&self, image: &str) -> bool {
        super::docker::allowed_by(&self.allowed_images, image)
    }

    /// Whether a job's service may run `image`.
    pub fn service_allowed(&self, image: &str) -> bool {
        super::docker::allowed_by(&self.allowed_services, image)
    }

    /// Every problem of these settings, each naming its key.
    pub(super) fn problems(&self, aws_region: &str) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("ecs_jobs.cluster", &self.cluster),
            ("ecs_jobs.agent_image", &self.agent_image),
            ("ecs_jobs.agent_binary", &self.agent_binary),
            ("ecs_jobs.helper_image", &self.helper_image),
            ("ecs_jobs.default_image", &self.default_image),
        ] {
            if value.trim().is_empty() {
                problems.push((key, "must be set for the ECS job environment".to_string()));
            }
        }
        if self.region.is_empty() && aws_region.is_empty() {
            problems.push((
                "ecs_jobs.region",
                "must be set (or aws.region): the job tasks' region".to_string(),
            ));
        }
        // awsvpc, the only network mode both capacities share, needs an interface's subnet.
        if self.subnets.is_empty() {
            problems.push((
                "ecs_jobs.subnets",
                "must name at least one subnet for the tasks' network interfaces".to_string(),
            ));
        }
        if self.assign_public_ip && self.capacity == Capacity::Ec2 {
            problems.push((
                "ecs_jobs.assign_public_ip",
                "is for Fargate only: EC2 tasks on awsvpc get no public address".to_string(),
            ));
        }
        if self.cpu < 256 {
            problems.push((
                "ecs_jobs.cpu",
                format!("must be at least 256 CPU units, got {}", self.cpu),
            ));
        }
        if self.memory_mib < 512 {
            problems.push((
                "ecs_jobs.memory_mib",
                format!("must be at least 512 MiB, got {}", self.memory_mib),
            ));
        }
        if self.capacity == Capacity::Fargate && self.execution_role.is_empty() {
            problems.push((
                "ecs_jobs.execution_role",
                "must be set on Fargate: ECS pulls the images and writes the logs with it"
                    .to_string(),
            ));
        }
        if self.task_roles.iter().any(|r| r.projects.is_empty()) {
            problems.push((
                "ecs_jobs.task_roles",
                "has an entry naming no project".to_string(),
            ));
        }
        if self
            .registry_credentials
            .iter()
            .any(|c| c.registry.is_empty() || !c.secret.starts_with("arn:"))
        {
            problems.push((
                "ecs_jobs.registry_credentials",
                "needs a registry and a secret ARN in every entry".to_string(),
            ));
        }
        if self.start_timeout.is_zero() || self.poll_interval.is_zero() {
            problems.push((
                "ecs_jobs.start_timeout_minutes",
                "and poll_interval_seconds must be above zero".to_string(),
            ));
        }
        problems
    }

    /// The region the tasks run in.
    pub fn region_or<'a>(&'a self, aws_region: &'a str) -> &'a str {
        match self.region.is_empty() {
            true => aws_region,
            false => &self.region,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EcsJobsSettings {
        EcsJobsSettings {
            cluster: "ci".into(),
            region: "eu-west-1".into(),
            subnets: vec!["subnet-0a1b".into()],
            agent_image: "registry.example/gitlab-ecs-executor:1".into(),
            helper_image: "registry.example/helper:1".into(),
            execution_role: "arn:aws:iam::123456789012:role/ci-execution".into(),
            ..EcsJobsSettings::default()
        }
    }

    #[test]
    fn a_complete_section_has_no_problem() {
        assert_eq!(settings().problems(""), Vec::new());
    }

    #[test]
    fn each_missing_value_is_named() {
        let s = EcsJobsSettings {
            memory_mib: 128,
            capacity: Capacity::Ec2,
            assign_public_ip: true,
            ..EcsJobsSettings::default()
        };
        let keys: Vec<&str> = s.problems("").into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "ecs_jobs.cluster",
                "ecs_jobs.agent_image",
                "ecs_jobs.helper_image",
                "ecs_jobs.region",
                "ecs_jobs.subnets",
                "ecs_jobs.assign_public_ip",
                "ecs_jobs.memory_mib"
            ]
        );
        assert!(EcsJobsSettings::default()
            .problems("eu-west-1")
            .iter()
            .any(|(k, _)| *k == "ecs_jobs.execution_role"));
    }

    #[test]
    fn a_project_gets_the_first_role_naming_it_else_the_default() {
        let s = EcsJobsSettings {
            task_role: "arn:aws:iam::1:role/ci-default".into(),
            task_roles: vec![
                ProjectRole {
                    projects: vec!["shop/*".into()],
                    role: "arn:aws:iam::1:role/ci-shop".into(),
                },
                ProjectRole {
                    projects: vec!["shop/payments".into()],
                    role: "arn:aws:iam::1:role/never".into(),
                },
            ],
            ..settings()
        };
        assert_eq!(
            s.task_role_of("shop/payments"),
            Some("arn:aws:iam::1:role/ci-shop")
        );
        assert_eq!(
            s.task_role_of("shopfront/web"),
            Some("arn:aws:iam::1:role/ci-default")
        );
        let none = EcsJobsSettings {
            task_role: String::new(),
            ..s
        };
        assert_eq!(none.task_role_of("other/x"), None);
    }
}
