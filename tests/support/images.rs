//! Local base images for tests: no registry can be reached, so `.ci/example-image` imports
//! one from the host's busybox-static and bash.

use std::process::Command;
use std::sync::OnceLock;

/// A small image with busybox (sh, sleep, kill, wget, httpd, nc) and bash.
pub const BASE_IMAGE: &str = "gitlab-ecs-executor/example:1";

/// Imports [`BASE_IMAGE`] once per test process if the engine does not have it.
pub fn base_image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/example-image");
        let status = Command::new("bash")
            .arg(script)
            .arg(BASE_IMAGE)
            .status()
            .expect("run .ci/example-image");
        assert!(status.success(), ".ci/example-image failed");
    });
    BASE_IMAGE
}

/// The minbase Debian image (no procps), as `debian:bookworm-slim` users run.
pub const DEBIAN: &str = "gitlab-ecs-executor/debian:bookworm-minbase";
/// The local helper image every job's housekeeping runs in.
pub const HELPER: &str = "gitlab-ecs-executor/helper:local";
/// PostgreSQL 15 from Debian's packages, shaped like the Docker Hub image.
pub const POSTGRES: &str = "gitlab-ecs-executor/postgres:15";
/// Redis 7 from Debian's packages.
pub const REDIS: &str = "gitlab-ecs-executor/redis:7";
/// Debian with `psql` and `redis-cli`.
pub const CLIENTS: &str = "gitlab-ecs-executor/debian-clients:bookworm";

/// Builds the Debian images with `.ci/images` once per test process (each is kept by name,
/// so this is quick once built).
pub fn debian_images() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/images");
        let status = Command::new("bash")
            .arg(script)
            .status()
            .expect("run .ci/images");
        assert!(status.success(), ".ci/images failed");
    });
}

/// `gitlab-ecs-executor-test/<name>:1` built from `dockerfile` (whose `FROM` names a local
/// image) unless the engine has it already.
pub fn build_once(name: &str, dockerfile: &str) -> String {
    let image = format!("gitlab-ecs-executor-test/{name}:1");
    if !image_exists(&image) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
        build(&image, dir.path());
    }
    image
}

/// Builds `image` from the Dockerfile in `context`.
pub fn build(image: &str, context: &std::path::Path) {
    // The engine's legacy builder: the host may have no buildx.
    let status = Command::new("docker")
        .args(["build", "-q", "-t", image])
        .arg(context)
        .env("DOCKER_BUILDKIT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("docker cli");
    assert!(status.success(), "building {image}");
}

/// Whether the engine has `image`.
pub fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A Debian image whose entrypoint exports `FROM_ENTRYPOINT` and runs its arguments, as
/// images with set-up entrypoints do.
pub fn exporting_entrypoint() -> String {
    build_once(
        "exporting-entrypoint",
        &format!(
            "FROM {DEBIAN}\nRUN printf '#!/bin/sh\\nexport FROM_ENTRYPOINT=set-up-by-the-image\\nexec \"$@\"\\n' > /entry.sh && chmod +x /entry.sh\nENTRYPOINT [\"/entry.sh\"]\n"
        ),
    )
}
