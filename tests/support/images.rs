//! Local base images for tests: no registry can be reached, so images are imported from a
//! root filesystem assembled from the host's busybox-static and bash.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// A small image with busybox (sh, sleep, kill, wget, httpd, nc) and bash.
pub const BASE_IMAGE: &str = "gitlab-ecs-executor-test/base:1";

/// Imports [`BASE_IMAGE`] once per test process if the engine does not have it.
pub fn base_image() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if !image_exists(BASE_IMAGE) {
            import_base_image();
        }
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

fn import_base_image() {
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path();
    for dir in [
        "bin", "tmp", "etc", "root", "lib", "lib64", "usr/bin", "www",
    ] {
        std::fs::create_dir_all(r.join(dir)).expect("mkdir rootfs");
    }
    copy(Path::new("/bin/busybox"), &r.join("bin/busybox"));
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(applet));
        }
    }
    // bash and the shared libraries it links against.
    let _ = std::fs::remove_file(r.join("bin/bash"));
    copy(Path::new("/bin/bash"), &r.join("bin/bash"));
    let ldd = Command::new("ldd").arg("/bin/bash").output().expect("ldd");
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            let dest = r.join(word.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir lib");
            copy(Path::new(word), &dest);
        }
    }
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(r.join("etc/group"), "root:x:0:\n").expect("group");
    std::fs::write(r.join("www/index.html"), "hello from the service\n").expect("www");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - {BASE_IMAGE} >/dev/null",
            r.display()
        ))
        .status()
        .expect("docker import");
    assert!(
        status.success(),
        "docker import of the test base image failed"
    );
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
}
