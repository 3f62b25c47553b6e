//! Names and labels of a job's Docker objects, derived from the job identity alone so that
//! every stage (and a cleanup after a crash) finds the same objects.

use std::collections::HashMap;

use crate::image_ref::ImageRef;
use crate::protocol::JobIdentity;

/// Label present on every object this executor creates.
pub const LABEL_MANAGED: &str = "com.gitlab-ecs-executor.managed";
/// Label holding the runner id.
pub const LABEL_RUNNER: &str = "com.gitlab-ecs-executor.runner";
/// Label holding the job key (runner, project, job, slot).
pub const LABEL_JOB: &str = "com.gitlab-ecs-executor.job";
const LABEL_PROJECT: &str = "com.gitlab-ecs-executor.project";
const LABEL_JOB_ID: &str = "com.gitlab-ecs-executor.job-id";
const LABEL_CONCURRENT: &str = "com.gitlab-ecs-executor.concurrent";
const LABEL_ROLE: &str = "com.gitlab-ecs-executor.role";

/// The names and labels of one job's containers and network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNames {
    key: String,
    identity: JobIdentity,
}

impl JobNames {
    /// Names for the job `identity`.
    pub fn new(identity: &JobIdentity) -> Self {
        JobNames {
            key: format!(
                "gitlab-ecs-r{}-p{}-j{}-c{}",
                identity.runner_id, identity.project_id, identity.job_id, identity.concurrent_id
            ),
            identity: identity.clone(),
        }
    }

    /// The job key: unique per runner, project, job and concurrency slot.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The job container, where user steps run.
    pub fn job_container(&self) -> String {
        format!("{}-job", self.key)
    }

    /// The container of the `index`-th service.
    pub fn service_container(&self, index: usize) -> String {
        format!("{}-svc{index}", self.key)
    }

    /// The per-job network joining the job container and its services.
    pub fn network(&self) -> String {
        format!("{}-net", self.key)
    }

    /// Labels for an object of this job; `role` is `job`, `service` or `network`.
    pub fn labels(&self, role: &str) -> HashMap<String, String> {
        let id = &self.identity;
        HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_RUNNER.to_string(), id.runner_id.to_string()),
            (LABEL_JOB.to_string(), self.key.clone()),
            (LABEL_PROJECT.to_string(), id.project_id.to_string()),
            (LABEL_JOB_ID.to_string(), id.job_id.to_string()),
            (LABEL_CONCURRENT.to_string(), id.concurrent_id.to_string()),
            (LABEL_ROLE.to_string(), role.to_string()),
        ])
    }

    /// The `label=` filter matching every object of this job.
    pub fn job_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_JOB}={}", self.key)],
        )])
    }
}

/// The filter matching every object this runner created.
pub fn runner_filter(runner_id: u64) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_RUNNER}={runner_id}"),
        ],
    )])
}

/// The network aliases the docker executor gives a service without an explicit alias:
/// the image name without tag or digest, with `/` replaced by `__` and by `-`.
pub fn service_aliases(image: &str, alias: &str) -> Vec<String> {
    let mut aliases: Vec<String> = alias
        .split([',', ' '])
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if aliases.is_empty() {
        let name = ImageRef::parse(image).repository();
        aliases.push(name.replace('/', "__"));
        aliases.push(name.replace('/', "-"));
        aliases.dedup();
    }
    aliases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_job_and_slot() {
        let id = JobIdentity {
            runner_id: 7,
            project_id: 12,
            job_id: 345,
            concurrent_id: 2,
        };
        let n = JobNames::new(&id);
        assert_eq!(n.job_container(), "gitlab-ecs-r7-p12-j345-c2-job");
        assert_eq!(n.network(), "gitlab-ecs-r7-p12-j345-c2-net");
        assert_eq!(n.labels("job")[LABEL_JOB], "gitlab-ecs-r7-p12-j345-c2");
    }

    #[test]
    fn service_aliases_follow_the_docker_executor() {
        assert_eq!(service_aliases("postgres:16", ""), ["postgres"]);
        assert_eq!(
            service_aliases("registry.example.com:5000/tutum/wordpress:latest", ""),
            [
                "registry.example.com:5000__tutum__wordpress",
                "registry.example.com:5000-tutum-wordpress"
            ]
        );
        assert_eq!(service_aliases("redis@sha256:abc", ""), ["redis"]);
        assert_eq!(service_aliases("redis:7", "cache,kv"), ["cache", "kv"]);
    }
}
