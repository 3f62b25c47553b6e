//! A runner whose jobs run as ECS tasks on the Docker-backed ECS stand-in: the executor's
//! settings with `[ecs_jobs]`, its ECS endpoint and host credentials pointed at the stand-in,
//! and an agent image holding the binary under test, as an operator's holds the released
//! one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;

use super::docker_ecs::DockerEcs;
use super::images::{self, image_exists};
use super::TestEnv;

/// The image whose `/gitlab-ecs-executor` is the binary under test (glibc-linked, so it
/// needs a Debian base and job images with glibc), built once per binary.
pub fn agent_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        images::debian_images();
        agent_image_of(&super::binary(), images::DEBIAN)
    })
}

/// The agent image an operator runs: the package's static binary alone, which any job
/// image (busybox, Alpine, distroless) can run.
pub fn static_agent_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| agent_image_of(super::package::static_binary(), "scratch"))
}

/// An image `FROM base` holding `binary` as `/gitlab-ecs-executor`, named by its digest.
fn agent_image_of(binary: &Path, base: &str) -> String {
    let bytes = std::fs::read(binary).expect("the agent binary");
    let hash: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let image = format!("{AGENT_REPOSITORY}:{hash}");
    if !image_exists(&image) {
        let dir = tempfile::tempdir().expect("temp dir");
        let copy = dir.path().join("gitlab-ecs-executor");
        std::fs::write(&copy, &bytes).expect("copy the binary");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
            .expect("make the copy executable");
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {base}\nCOPY gitlab-ecs-executor /gitlab-ecs-executor\n"),
        )
        .expect("Dockerfile");
        images::build(&image, dir.path());
        // Each build of the binary makes an image of hundreds of MB: older ones go, unless
        // a container still uses them (`rmi` without force leaves those).
        let listed = std::process::Command::new("docker")
            .args([
                "images",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                AGENT_REPOSITORY,
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for old in listed.lines().filter(|l| *l != image) {
            let _ = std::process::Command::new("docker")
                .args(["rmi", old])
                .output();
        }
    }
    image
}

const AGENT_REPOSITORY: &str = "gitlab-ecs-executor-test/agent";

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
    settings_with(agent_image(), top, extra)
}

/// [`settings`] with the agent from `agent`.
pub fn settings_with(agent: &str, top: &str, extra: &str) -> String {
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
        agent,
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
        Self::with_agent(agent_image(), extra)
    }

    /// [`EcsJobsEnv::new`] with the agent from `agent`.
    pub fn with_agent(agent: &str, extra: &str) -> Self {
        let ecs = DockerEcs::start();
        let mut env = TestEnv::with_settings(&settings_with(agent, "", extra));
        use_ecs(&mut env.runner, &ecs.endpoint);
        EcsJobsEnv { ecs, env }
    }

    /// An ECS client of the stand-in, as a test calls it directly.
    pub fn client(&self) -> aws_sdk_ecs::Client {
        self.ecs.client()
    }

    /// Runs an operator command of the executor (`doctor`, `prune`) with this runner's
    /// settings and environment; its output and all it printed.
    pub fn command(&self, args: &[&str]) -> (std::process::Output, String) {
        super::output_of(
            std::process::Command::new(super::binary())
                .arg("--config")
                .arg(&self.env.settings)
                .args(args)
                .envs(self.env.runner.process_env.iter().cloned()),
        )
    }

    /// The tasks the stand-in still runs.
    pub fn running_tasks(&self) -> Vec<String> {
        self.ecs.running()
    }
}
