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

/// Whether the engine has `image`.
pub fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
