//! The Debian package as `packaging/build-deb` makes it, and the static binary it carries,
//! shared by the package's tests and the ECS job environment's (whose agent image is that
//! binary alone).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::output_of;

/// `packaging/build-deb` (incremental: `.ci/setup` built it once), the package's path.
pub fn build_deb(version: Option<&str>) -> PathBuf {
    let mut cmd = Command::new("bash");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/build-deb"));
    if let Some(v) = version {
        cmd.args(["--deb-version", v]);
    }
    let (out, text) = output_of(&mut cmd);
    assert!(out.status.success(), "build-deb failed:\n{text}");
    let path = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .trim(),
    );
    assert!(path.is_file(), "no package at {path:?}:\n{text}");
    path
}

/// The first package, built once for the tests of this file.
pub fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| build_deb(None))
}

/// An image with no file at all: only a static binary runs in it.
pub fn empty_image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    const IMAGE: &str = "gitlab-ecs-executor-test/empty:1";
    DONE.get_or_init(|| {
        let (out, text) = output_of(Command::new("sh").arg("-c").arg(format!(
            "docker image inspect {IMAGE} >/dev/null 2>&1 || tar cf - --files-from /dev/null | docker import - {IMAGE}"
        )));
        assert!(out.status.success(), "{text}");
    });
    IMAGE
}

/// The package's static binary, extracted once.
pub fn static_binary() -> &'static Path {
    static BIN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, bin) = BIN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (out, text) = output_of(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(package())
                .arg(dir.path()),
        );
        assert!(out.status.success(), "{text}");
        let bin = dir.path().join("usr/bin/gitlab-ecs-executor");
        (dir, bin)
    });
    bin
}
