//! Names and labels of a job's Docker objects, derived from the job identity alone so that
//! every stage (and a cleanup after a crash) finds the same objects; and the names of a
//! project's volumes, which outlive jobs.

use std::collections::HashMap;

use crate::image_ref::ImageRef;
use crate::protocol::JobIdentity;

/// Label present on every object this executor creates.
pub const LABEL_MANAGED: &str = "com.gitlab-ecs-executor.managed";
/// Label holding the runner id.
pub const LABEL_RUNNER: &str = "com.gitlab-ecs-executor.runner";
/// Label holding the job key (runner, project, job, slot).
pub const LABEL_JOB: &str = "com.gitlab-ecs-executor.job";
/// Label holding the project id.
pub const LABEL_PROJECT: &str = "com.gitlab-ecs-executor.project";
/// Label holding the job id.
pub const LABEL_JOB_ID: &str = "com.gitlab-ecs-executor.job-id";
const LABEL_SLOT: &str = "com.gitlab-ecs-executor.concurrent";
const LABEL_PROTECTED: &str = "com.gitlab-ecs-executor.protected";
/// Label holding an object's role: `helper`, `build`, `service`, `probe`, `network`,
/// `volume`.
pub const LABEL_ROLE: &str = "com.gitlab-ecs-executor.role";
/// Label of a volume that lives only as long as its job (`docker.disable_cache`).
pub const LABEL_TEMPORARY: &str = "com.gitlab-ecs-executor.temporary";

/// The names and labels of one job's containers and network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNames {
    key: String,
    identity: JobIdentity,
}

impl JobNames {
    /// Names for the job `identity`: runner, project and job as the payload vouches for
    /// them, so no job can name another's objects.
    pub fn new(identity: &JobIdentity) -> Self {
        JobNames {
            key: format!(
                "gitlab-ecs-r{}-p{}-j{}",
                identity.runner_id, identity.project_id, identity.job_id
            ),
            identity: identity.clone(),
        }
    }

    /// The job key: unique per runner, project and job.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The build container, where user steps run in the job's image.
    pub fn build_container(&self) -> String {
        format!("{}-build", self.key)
    }

    /// The helper container, where git, caches and artifacts are handled.
    pub fn helper_container(&self) -> String {
        format!("{}-helper", self.key)
    }

    /// The container of the `index`-th service.
    pub fn service_container(&self, index: usize) -> String {
        format!("{}-svc{index}", self.key)
    }

    /// The container probing the `index`-th service's ports.
    pub fn probe_container(&self, index: usize) -> String {
        format!("{}-svc{index}-wait", self.key)
    }

    /// The per-job network joining the job's containers and its services.
    pub fn network(&self) -> String {
        format!("{}-net", self.key)
    }

    /// Labels for an object of this job.
    pub fn labels(&self, role: &str) -> HashMap<String, String> {
        let id = &self.identity;
        HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_RUNNER.to_string(), id.runner_id.to_string()),
            (LABEL_JOB.to_string(), self.key.clone()),
            (LABEL_PROJECT.to_string(), id.project_id.to_string()),
            (LABEL_JOB_ID.to_string(), id.job_id.to_string()),
            (LABEL_SLOT.to_string(), id.slot.to_string()),
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

/// The names of one project's volumes in one slot of one runner, apart for its protected
/// refs: kept between jobs so incremental fetches and caches stay warm, and seen only by
/// that project's jobs (of the same protection, as the docker executor keeps them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectVolumes {
    prefix: String,
    identity: JobIdentity,
}

impl ProjectVolumes {
    /// The volumes of `identity`'s project, slot and protection.
    pub fn new(identity: &JobIdentity) -> Self {
        let protected = if identity.protected { "-protected" } else { "" };
        ProjectVolumes {
            prefix: format!(
                "runner-{}-project-{}-concurrent-{}{protected}",
                identity.runner_id, identity.project_id, identity.slot
            ),
            identity: identity.clone(),
        }
    }

    /// The project's name for containers' `hostname`, as the docker executor names it.
    pub fn hostname(&self) -> &str {
        &self.prefix
    }

    /// The volume holding the checkout (`builds_dir`).
    pub fn builds(&self) -> String {
        format!("{}-builds", self.prefix)
    }

    /// The volume holding caches (`cache_dir`).
    pub fn cache(&self) -> String {
        format!("{}-cache", self.prefix)
    }

    /// The volume of a `docker.volumes` entry `/path`.
    pub fn for_path(&self, destination: &str) -> String {
        format!("{}-path-{:016x}", self.prefix, fnv1a(destination))
    }

    /// Labels of a project volume; `temporary` ones belong to `job` and go with it.
    pub fn labels(&self, purpose: &str, temporary: Option<&JobNames>) -> HashMap<String, String> {
        let id = &self.identity;
        let mut labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_RUNNER.to_string(), id.runner_id.to_string()),
            (LABEL_PROJECT.to_string(), id.project_id.to_string()),
            (LABEL_SLOT.to_string(), id.slot.to_string()),
            (LABEL_PROTECTED.to_string(), id.protected.to_string()),
            (LABEL_ROLE.to_string(), "volume".to_string()),
            (
                "com.gitlab-ecs-executor.purpose".to_string(),
                purpose.to_string(),
            ),
        ]);
        if let Some(job) = temporary {
            labels.insert(LABEL_TEMPORARY.to_string(), "true".to_string());
            labels.insert(LABEL_JOB.to_string(), job.key().to_string());
        }
        labels
    }
}

/// A stable, dependency-free hash for names (FNV-1a, 64 bits).
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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

/// The network aliases of a service, as the docker executor gives them: the image name
/// without registry port, tag or digest, with `/` as `__` and as `-`, then every alias the
/// job gave (`alias: "db,pg"` or `"db pg"`).
pub fn service_aliases(image: &str, alias: &str) -> Vec<String> {
    let image = ImageRef::parse(image);
    let name = match image.explicit_registry() {
        Some(_) => format!("{}/{}", image.registry_host(), image.path()),
        None => image.path().to_string(),
    };
    let mut aliases = vec![name.replace('/', "__")];
    let dashed = name.replace('/', "-");
    if dashed != aliases[0] {
        aliases.push(dashed);
    }
    for extra in alias.split([',', ' ']).filter(|a| !a.is_empty()) {
        if !aliases.iter().any(|a| a == extra) {
            aliases.push(extra.to_string());
        }
    }
    aliases
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> JobIdentity {
        JobIdentity {
            runner_id: 7,
            project_id: 12,
            project_path: "group/app".into(),
            job_id: 345,
            protected: false,
            slot: 2,
        }
    }

    #[test]
    fn names_are_unique_per_job() {
        let n = JobNames::new(&identity());
        assert_eq!(n.build_container(), "gitlab-ecs-r7-p12-j345-build");
        assert_eq!(n.helper_container(), "gitlab-ecs-r7-p12-j345-helper");
        assert_eq!(n.network(), "gitlab-ecs-r7-p12-j345-net");
        assert_eq!(n.labels("build")[LABEL_JOB], "gitlab-ecs-r7-p12-j345");
    }

    #[test]
    fn volumes_are_named_per_runner_project_slot_and_protection() {
        let v = ProjectVolumes::new(&identity());
        assert_eq!(v.builds(), "runner-7-project-12-concurrent-2-builds");
        assert_eq!(v.cache(), "runner-7-project-12-concurrent-2-cache");
        let protected = ProjectVolumes::new(&JobIdentity {
            protected: true,
            ..identity()
        });
        assert_eq!(
            protected.builds(),
            "runner-7-project-12-concurrent-2-protected-builds"
        );
        assert_eq!(protected.labels("builds", None)[LABEL_PROTECTED], "true");
        assert_ne!(v.for_path("/data"), v.for_path("/other"));
        let job = JobNames::new(&identity());
        assert!(v.labels("path", Some(&job)).contains_key(LABEL_TEMPORARY));
        assert!(!v.labels("builds", None).contains_key(LABEL_JOB));
    }

    /// The cases of gitlab-runner's `helpers/container/services/test/test.go`.
    #[test]
    fn service_aliases_follow_the_docker_executor() {
        assert_eq!(service_aliases("service", ""), ["service"]);
        assert_eq!(service_aliases("postgres:16", ""), ["postgres"]);
        assert_eq!(
            service_aliases("namespace/service:version", ""),
            ["namespace__service", "namespace-service"]
        );
        assert_eq!(
            service_aliases("domain.tld/service", ""),
            ["domain.tld__service", "domain.tld-service"]
        );
        assert_eq!(
            service_aliases("domain.tld:8080/namespace/service:version", ""),
            [
                "domain.tld__namespace__service",
                "domain.tld-namespace-service"
            ]
        );
        assert_eq!(
            service_aliases("registry.example.com:5000/tutum/wordpress:latest", ""),
            [
                "registry.example.com__tutum__wordpress",
                "registry.example.com-tutum-wordpress"
            ]
        );
        assert_eq!(service_aliases("redis@sha256:abc", ""), ["redis"]);
        assert_eq!(
            service_aliases("bitnami/postgresql:16", "db,pg"),
            ["bitnami__postgresql", "bitnami-postgresql", "db", "pg"]
        );
        assert_eq!(
            service_aliases("redis:7", "cache kv"),
            ["redis", "cache", "kv"]
        );
    }
}
