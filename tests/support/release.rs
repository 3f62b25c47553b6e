//! A release fixture: moto for ECR/STS, a registry with the token moto hands out, a git
//! project with a Dockerfile, an optional scripted ECS endpoint, and a runner wired to them.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::runner::GitSource;
use super::scripted_ecs::{Script, ScriptedEcs};
use super::stand_ins::{git_project, Moto, Registry};
use super::{base_image, Job, TestEnv, TestJob};

/// A GitLab ID token as a job would carry it.
pub const ID_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9qZWN0X3BhdGg6Z3JvdXAvYXBwIn0.c2lnbmF0dXJl";
/// A masked project variable.
pub const MASKED: &str = "masked-variable-value-1234";
/// The ECS cluster and service of the seed article.
pub const CLUSTER: &str = "your-cluster-name";
/// The service.
pub const SERVICE: &str = "your-service-name";
/// The task definition family.
pub const FAMILY: &str = "your-task-definition";

/// The moto server of this test process.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

/// Everything a release test needs.
pub struct Fixture {
    /// Runner and settings.
    pub env: TestEnv,
    /// The registry standing in for ECR.
    pub registry: Registry,
    /// The project repository.
    pub repo: PathBuf,
    _repo_dir: tempfile::TempDir,
}

/// A project whose Dockerfile proves `.dockerignore` was honoured, built on `base`.
fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base}\nCOPY . /ctx\nRUN test ! -e /ctx/secret.env && test -e /ctx/app.sh\nCMD [\"/bin/sh\", \"/ctx/app.sh\"]\n"
    )
}

/// The repository of the registry that holds the base image release Dockerfiles build on.
pub const BASE_REPOSITORY: &str = "base/example";

impl Fixture {
    /// A fixture whose registry accepts `registry_password`; `extra_settings` is appended
    /// to the settings file.
    pub fn new(registry_password: &str, extra_settings: &str) -> Fixture {
        let registry = Registry::start(registry_password);
        // Releases pull their base images from a registry, as on a runner serving many
        // projects; this one holds the suite's.
        let base = registry.push(base_image(), BASE_REPOSITORY, "1");
        let repo_dir = tempfile::tempdir().expect("temp dir");
        let repo = git_project(
            repo_dir.path(),
            &[
                ("Dockerfile", &dockerfile(&base)),
                ("app.sh", "echo app"),
                ("secret.env", "DO_NOT_SHIP=1"),
                (".dockerignore", "*.env\n"),
            ],
            &["v1.2.3", "v1.2", "1.2.3", "latest"],
        );
        // The registry stands in for ECR, so the ECR token may go there; every project of
        // the suite may release anything with the host's (moto's) credentials.
        let mut settings: toml::Table = toml::from_str(&format!(
            "[release.stages]\ndeploy = \"release\"\nbuild = \"push\"\napprove = \"continue\"\n\
             [ecs]\npoll_interval_seconds = 1\nrollback_timeout_minutes = 1\nwait_for_other_deployments_minutes = 1\n\
             [aws]\necr_token_registries = [\"{host}\"]\n\
             [[release.grants]]\nprojects = [\"**\"]\nregistries = [\"*\"]\nrepositories = [\"**\"]\n\
             clusters = [\"*\"]\nservices = [\"*\"]\ntask_families = [\"*\"]\nroles = [\"**\"]\n",
            host = registry.host
        ))
        .expect("fixture settings");
        merge(
            &mut settings,
            toml::from_str(extra_settings).expect("extra settings are TOML"),
        );
        let mut env = TestEnv::with_binds(&settings.to_string(), &[&repo]);
        env.runner.process_env = moto().runner_env();
        Fixture {
            env,
            registry,
            repo,
            _repo_dir: repo_dir,
        }
    }

    /// Lets the ECR token go to `registry` too (`aws.ecr_token_registries`): a proxy or
    /// another stand-in in front of the fixture's.
    pub fn allow_ecr_token_to(&self, registry: &str) {
        let text = std::fs::read_to_string(&self.env.settings).expect("settings");
        let mut settings: toml::Table = toml::from_str(&text).expect("settings TOML");
        if let Some(toml::Value::Array(list)) = settings
            .get_mut("aws")
            .and_then(|aws| aws.get_mut("ecr_token_registries"))
        {
            list.push(registry.into());
        }
        std::fs::write(&self.env.settings, settings.to_string()).expect("settings");
    }

    /// The base image release Dockerfiles build on, in the fixture's registry.
    pub fn base(&self) -> String {
        format!("{}/{BASE_REPOSITORY}:1", self.registry.host)
    }

    /// Adds `name` to the project and commits it.
    pub fn commit_file(&self, name: &str, content: &str) {
        std::fs::write(self.repo.join(name), content).expect("write project file");
        for args in [vec!["add", name], vec!["commit", "-qm", "add file"]] {
            let status = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(&args)
                .current_dir(&self.repo)
                .status()
                .expect("git");
            assert!(status.success(), "git {args:?}");
        }
    }

    /// Tags the project's commit with `tag`.
    pub fn tag(&self, tag: &str) {
        let status = std::process::Command::new("git")
            .args(["tag", tag])
            .current_dir(&self.repo)
            .status()
            .expect("git");
        assert!(status.success(), "git tag {tag}");
    }

    /// The executor binary with this fixture's settings, endpoints and the seed's inputs in
    /// its environment, for operator commands.
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(super::binary());
        cmd.arg("--config")
            .arg(&self.env.settings)
            .envs(self.env.runner.process_env.iter().cloned())
            .env("AWS_DEFAULT_REGION", "ap-northeast-1")
            .env("ECR_REGISTRY", &self.registry.host)
            .env("ECR_REPOSITORY", "group/app")
            .env("ECS_CLUSTER", CLUSTER)
            .env("ECS_SERVICE", SERVICE);
        cmd
    }

    /// Points the runner's ECS endpoint at `ecs`.
    pub fn use_ecs(&mut self, ecs: &ScriptedEcs) {
        self.env
            .runner
            .process_env
            .push(("AWS_ENDPOINT_URL_ECS".into(), ecs.endpoint.clone()));
    }

    /// The image repository releases go to.
    pub fn repository(&self) -> String {
        format!("{}/group/app", self.registry.host)
    }

    /// A scripted ECS service running `app` at `app_image` behind a log-router sidecar.
    pub fn scripted_ecs(&self, app_image: &str, script: Script) -> ScriptedEcs {
        ScriptedEcs::start(
            CLUSTER,
            SERVICE,
            task_definition(app_image),
            vec![json!({"key": "team", "value": "web"})],
            script,
        )
    }

    /// A job in `stage` on `git_ref` (protected, as release tags are) with the seed
    /// article's variables.
    pub fn job(&self, stage: &str, git_ref: &str, is_tag: bool) -> Job {
        let mut job = Job::test(base_image(), &["echo THE JOB SCRIPT RAN"]);
        job.protected = true;
        job.stage = stage.into();
        job.name = format!("{stage}-job");
        job.git = Some(GitSource::new(&self.repo, git_ref, is_tag));
        job.var("ECR_REGISTRY", &self.registry.host)
            .var("ECR_REPOSITORY", "group/app")
            .var("ECS_CLUSTER", CLUSTER)
            .var("ECS_SERVICE", SERVICE)
            .var("TASK_DEFINITION", FAMILY)
            .var("AWS_DEFAULT_REGION", "ap-northeast-1")
            .masked("DEPLOY_SECRET", MASKED)
    }
}

/// `extra`'s keys over `base`'s, tables merged key by key.
pub fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(more)) => merge(inner, more),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A realistic Fargate task definition (as a RegisterTaskDefinition request): X86_64 (the
/// test host's platform: releases build for the task definition's),
/// ephemeral storage, a log-router sidecar listed first, the app with secrets second.
pub fn task_definition(app_image: &str) -> Value {
    json!({
        "family": FAMILY,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "512",
        "memory": "1024",
        "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "ephemeralStorage": {"sizeInGiB": 30},
        "containerDefinitions": [
            {"name": "log-router", "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.0",
             "cpu": 0, "essential": false, "firelensConfiguration": {"type": "fluentbit"}, "memoryReservation": 50},
            {"name": "app", "image": app_image, "essential": true,
             "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
             "environment": [{"name": "MODE", "value": "production"}],
             "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:db"}]}
        ]
    })
}

/// Fails if any known secret appears in `text`.
pub fn assert_no_secrets(text: &str) {
    for secret in [
        Moto::ecr_password().as_str(),
        "host-secret-key-never-logged",
        ID_TOKEN,
        MASKED,
        "secrettoken",
    ] {
        assert!(!text.contains(secret), "secret {secret} leaked:\n{text}");
    }
}
