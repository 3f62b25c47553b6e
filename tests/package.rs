//! The Debian package, installed as an operator installs it: into a Debian system made from
//! Debian's own packages, talking to the host's engine through its socket; upgraded with the
//! operator's settings kept; removed. And the static binary it carries runs where there is no
//! C library at all.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::images::DEBIAN;
use crate::support::package::{build_deb, empty_image, package, static_binary};
use crate::support::*;

/// A package named `docker.io` that provides nothing: in the test system the engine is the
/// host's, reached through the mounted socket.
fn stub_engine_package(dir: &Path) -> PathBuf {
    let root = dir.join("docker.io");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: docker.io\nVersion: 99.0\nArchitecture: all\nMaintainer: tests <tests@example.com>\n\
         Description: the host's Docker engine, through the mounted socket\n",
    )
    .unwrap();
    let deb = dir.join("docker.io_99.0_all.deb");
    let (out, text) = output_of(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&root)
            .arg(&deb),
    );
    assert!(out.status.success(), "{text}");
    deb
}

/// A Debian system (the minbase image) with `dir` at /pkgs and the host's engine socket.
struct System(String);

impl System {
    fn start(dir: &Path) -> System {
        let name = format!("gitlab-ecs-executor-package-{}", runner::unique_id());
        let (out, text) = output_of(
            Command::new("docker")
                .args([
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "-v",
                    "/var/run/docker.sock:/var/run/docker.sock",
                ])
                .arg("-v")
                .arg(format!("{}:/pkgs:ro", dir.display()))
                .args([DEBIAN, "sleep", "infinity"]),
        );
        assert!(out.status.success(), "{text}");
        System(name)
    }

    /// Runs `script` in the system: its exit status and output.
    fn sh(&self, script: &str) -> (bool, String) {
        let (out, text) =
            output_of(Command::new("docker").args(["exec", &self.0, "sh", "-c", script]));
        (out.status.success(), text)
    }

    /// Runs `script`, which must succeed; its output.
    fn ok(&self, script: &str) -> String {
        let (ok, text) = self.sh(script);
        assert!(ok, "`{script}` failed:\n{text}");
        text
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[test]
fn the_package_installs_upgrades_keeping_the_settings_and_removes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("gitlab-ecs-executor_1.deb");
    std::fs::copy(package(), &first).unwrap();
    stub_engine_package(dir.path());
    let system = System::start(dir.path());
    system.ok("dpkg -i /pkgs/docker.io_99.0_all.deb /pkgs/gitlab-ecs-executor_1.deb");

    let version = system.ok("gitlab-ecs-executor --version");
    assert!(
        version.contains(concat!("gitlab-ecs-executor ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let config = system.ok("gitlab-ecs-executor config");
    assert!(config.contains("\"builds_dir\":\"/builds\""), "{config}");
    let (_, doctor) = system.sh("gitlab-ecs-executor doctor");
    assert!(
        doctor.contains("[ ok ] settings: /etc/gitlab-ecs-executor/config.toml loaded"),
        "{doctor}"
    );
    assert!(doctor.contains("[ ok ] docker engine: engine"), "{doctor}");
    let entry = system.ok("gitlab-ecs-executor runner-config");
    assert!(
        entry.contains("config_exec = \"/usr/bin/gitlab-ecs-executor\""),
        "{entry}"
    );

    // Where man and the shells look.
    for page in [
        "gitlab-ecs-executor",
        "gitlab-ecs-executor-prune",
        "gitlab-ecs-executor-doctor",
        "gitlab-ecs-executor-exec",
    ] {
        system.ok(&format!(
            "zcat /usr/share/man/man1/{page}.1.gz | grep -q '^.TH'"
        ));
    }
    system.ok(
        "grep -q gitlab-ecs-executor /usr/share/bash-completion/completions/gitlab-ecs-executor",
    );
    system.ok("grep -q '#compdef gitlab-ecs-executor' /usr/share/zsh/vendor-completions/_gitlab-ecs-executor");
    system.ok("grep -q 'complete -c gitlab-ecs-executor' /usr/share/fish/vendor_completions.d/gitlab-ecs-executor.fish");
    // The daily prune, enabled for when systemd runs.
    system.ok(
        "grep -q 'prune --older-than 7d' /usr/lib/systemd/system/gitlab-ecs-executor-prune.service",
    );
    system.ok("test -L /etc/systemd/system/timers.target.wants/gitlab-ecs-executor-prune.timer");
    // The helper built from Debian's packages, as an archive the engine loads.
    system.ok(
        "test -s /usr/lib/gitlab-ecs-executor/helper-images/gitlab-ecs-executor-helper.docker.tar.zst",
    );

    // An upgrade keeps what the operator changed in the settings file.
    system.ok("echo '# the operator was here' >> /etc/gitlab-ecs-executor/config.toml");
    let next = build_deb(Some(&format!("{}+upgrade1", env!("CARGO_PKG_VERSION"))));
    std::fs::copy(&next, dir.path().join("gitlab-ecs-executor_2.deb")).unwrap();
    system.ok("dpkg -i /pkgs/gitlab-ecs-executor_2.deb");
    let status = system.ok("dpkg-query -W -f '${Version}' gitlab-ecs-executor");
    assert!(status.contains("+upgrade1"), "{status}");
    system.ok("grep -q '# the operator was here' /etc/gitlab-ecs-executor/config.toml");

    system.ok("dpkg -r gitlab-ecs-executor");
    system.ok("test ! -e /usr/bin/gitlab-ecs-executor && test ! -e /usr/share/man/man1/gitlab-ecs-executor.1.gz");
    system.ok("dpkg -P gitlab-ecs-executor && test ! -e /etc/gitlab-ecs-executor/config.toml");
}

#[test]
fn the_packaged_binary_is_static_and_runs_in_an_image_without_a_c_library() {
    let (out, text) = output_of(
        Command::new("docker")
            .args(["run", "--rm", "--network", "none", "-v"])
            .arg(format!(
                "{}:/gitlab-ecs-executor:ro",
                static_binary().display()
            ))
            .args([empty_image(), "/gitlab-ecs-executor", "config"]),
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\"builds_dir\""), "{text}");
}

#[test]
fn lintian_finds_nothing_the_overrides_do_not_explain() {
    let (out, text) = output_of(
        Command::new("lintian")
            .args(["--tag-display-limit", "0", "--fail-on", "error,warning"])
            .arg(package()),
    );
    assert!(out.status.success(), "lintian:\n{text}");
}
