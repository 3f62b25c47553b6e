//! A runner whose jobs run as ECS tasks on the Docker-backed ECS stand-in: the executor's
//! settings with `[ecs_jobs]`, its ECS endpoint and host credentials pointed at the stand-in,
//! and an agent image holding the binary under test, as an operator's holds the released
//! one.

use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use super::docker_ecs::DockerEcs;
use super::images::{self, image_exists};
use super::TestEnv;

/// The image whose `/gitlab-ecs-executor` is the binary under test, built once per binary
/// (named by its size and change time, so a rebuilt binary gets a new image).
pub fn agent_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        images::debian_images();
        let binary = super::binary();
        let meta = std::fs::metadata(&binary).expect("the binary under test");
        let image = format!(
            "gitlab-ecs-executor-test/agent:{}-{}",
            meta.size(),
            meta.mtime()
        );
        if !image_exists(&image) {
            let dir = tempfile::tempdir().expect("temp dir");
            let copy = dir.path().join("gitlab-ecs-executor");
            if std::fs::hard_link(&binary, &copy).is_err() {
                std::fs::copy(&binary, &copy).expect("copy the binary");
            }
            std::fs::write(
                dir.path().join("Dockerfile"),
                format!(
                    "FROM {}\nCOPY gitlab-ecs-executor /gitlab-ecs-executor\n",
                    images::DEBIAN
                ),
            )
            .expect("Dockerfile");
            images::build(&image, dir.path());
        }
        image
    })
}

/// A runner of its own whose jobs run on a Docker-backed ECS of their own.
pub struct EcsJobsEnv {
    /// The stand-in.
    pub ecs: DockerEcs,
    /// The runner and its settings.
    pub env: TestEnv,
}

/// `[ecs_jobs]` as an operator writes it for Fargate, plus `extra` keys of that table;
/// `top` goes before it (top-level keys).
pub fn settings(top: &str, extra: &str) -> String {
    format!(
        "{top}\n\
         [ecs_jobs]\n\
         cluster = \"standin\"\n\
         region = \"eu-west-1\"\n\
         subnets = [\"subnet-0a1b2c3d\", \"subnet-4e5f6a7b\"]\n\
         security_groups = [\"sg-0123456789abcdef0\"]\n\
         agent_image = \"{}\"\n\
         helper_image = \"{}\"\n\
         default_image = \"{}\"\n\
         execution_role = \"arn:aws:iam::123456789012:role/ci-execution\"\n\
         task_role = \"arn:aws:iam::123456789012:role/ci-job\"\n\
         poll_interval_seconds = 1\n\
         {extra}\n",
        agent_image(),
        images::HELPER,
        images::DEBIAN,
    )
}

/// Points `runner`'s executor at the ECS behind `endpoint`, with made-up host keys.
pub fn use_ecs(runner: &mut super::Runner, endpoint: &str) {
    runner.process_env.extend([
        ("AWS_ENDPOINT_URL_ECS".to_string(), endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID".into(), "AKIAHOSTKEY0000000000".into()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            "host-secret-key-never-logged".into(),
        ),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]);
}

impl EcsJobsEnv {
    /// A runner on a stand-in of its own, `extra` added to its `[ecs_jobs]`.
    pub fn new(extra: &str) -> Self {
        let ecs = DockerEcs::start();
        let mut env = TestEnv::with_settings(&settings("", extra));
        use_ecs(&mut env.runner, &ecs.endpoint);
        EcsJobsEnv { ecs, env }
    }

    /// An ECS client of the stand-in, as a test calls it directly.
    pub fn client(&self) -> aws_sdk_ecs::Client {
        self.ecs.client()
    }

    /// The tasks the stand-in still runs.
    pub fn running_tasks(&self) -> Vec<String> {
        self.ecs.running()
    }
}
