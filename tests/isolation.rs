//! What a job can reach on a shared runner: nothing of the runner host, nothing of another
//! project. Hooks and git configuration run in the helper container; each project's
//! checkout, caches and file variables live in volumes only its own jobs mount.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::images::DEBIAN;
use crate::support::*;

/// A host path no job may create: a unique name under the host's /tmp.
fn host_marker(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "gitlab-ecs-executor-{what}-{}",
        runner::unique_id()
    ))
}

#[test]
fn hooks_and_git_configuration_of_a_job_never_run_on_the_host() {
    let (_dir, repo) = git_project(&[("README.md", "hello\n")]);
    let env = TestEnv::with_binds("", &[&repo]);
    let (pre, post, fsmonitor) = (
        host_marker("pre-hook"),
        host_marker("post-hook"),
        host_marker("fsmonitor"),
    );
    let mut job = git_job(&repo, DEBIAN, &["cat README.md"]);
    job.pre_get_sources = vec![format!(
        "touch {} && echo \"pre hook ran in $(hostname)\"",
        pre.display()
    )];
    job.post_get_sources = vec![format!(
        "touch {} && echo \"post hook ran in $(hostname)\"",
        post.display()
    )];
    // Git runs core.fsmonitor as a command when the checkout refreshes the index.
    let job = job
        .var("GIT_CONFIG_COUNT", "1")
        .var("GIT_CONFIG_KEY_0", "core.fsmonitor")
        .var(
            "GIT_CONFIG_VALUE_0",
            &format!(
                "touch {} && echo fsmonitor ran >&2; echo",
                fsmonitor.display()
            ),
        );
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "pre hook ran in runner-");
    assert_logged(&result.log, "post hook ran in runner-");
    assert_logged(&result.log, "fsmonitor ran");
    assert_logged(&result.log, "\nhello\n");
    for marker in [pre, post, fsmonitor] {
        assert!(
            !marker.exists(),
            "{} was created on the host",
            marker.display()
        );
    }
}

#[test]
fn a_project_cannot_see_another_projects_files_or_file_variables() {
    let (_dir, repo) = git_project(&[("README.md", "a\n")]);
    let env = TestEnv::with_binds("", &[&repo]);
    let secret = format!("deploy-key-of-a-{}", runner::unique_id());
    let mut a = Job::test(
        DEBIAN,
        &[
            "echo a > a-project-marker",
            "cat \"$A_DEPLOY_KEY\" > /dev/null",
            "sleep 8",
        ],
    )
    .file_var("A_DEPLOY_KEY", &secret);
    a.project_path = "group/project-a".into();
    // A fetch job: its checkout stays in the project's builds volume.
    a.git = Some(GitSource::new(&repo, "main", false));
    let b_script = [
        // Nothing of project A by name, anywhere B can look.
        "found=$(find / \\( -path /proc -o -path /sys \\) -prune -o \\( -name 'a-project-marker' -o -name 'A_DEPLOY_KEY' -o -name 'project-a*' \\) -print)",
        "echo \"found: [$found]\"",
        "test -z \"$found\"",
        // Nor A's secret in any file B can read.
        &format!(
            "! grep -rqs --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e {secret} / && echo no secret"
        ),
    ];
    let mut b = Job::test(DEBIAN, &b_script);
    b.project_path = "group/project-b".into();

    let (a_result, b_during) = std::thread::scope(|s| {
        let running = s.spawn(|| env.runner.run(&a));
        std::thread::sleep(Duration::from_secs(4));
        let b_result = env.runner.run(&b);
        (running.join().unwrap(), b_result)
    });
    assert_eq!(a_result.status, Status::Success, "{}", a_result.log);
    assert_eq!(b_during.status, Status::Success, "{}", b_during.log);
    assert_logged(&b_during.log, "found: []");
    assert_logged(&b_during.log, "no secret");

    let mut b_after = Job::test(DEBIAN, &b_script);
    b_after.project_path = "group/project-b".into();
    let b_after = env.runner.run(&b_after);
    assert_eq!(b_after.status, Status::Success, "{}", b_after.log);
    // A's files are still in A's volume for its next job.
    assert_eq!(
        env.project_file(&a, "a-project-marker").as_deref(),
        Some("a\n")
    );
}

#[test]
fn caches_round_trip_within_a_project_only_and_artifacts_are_uploaded() {
    let (_dir, repo) = git_project(&[("app.sh", "echo app\n")]);
    let env = TestEnv::with_binds("", &[&repo]);
    let cache = CacheDef {
        key: "deps".into(),
        paths: vec!["vendor/".into()],
        ..Default::default()
    };
    let project_a = |script: &[&str]| {
        let mut job = git_job(&repo, DEBIAN, script);
        job.project_id = 7001;
        job.project_path = "group/cache-a".into();
        job.cache = vec![cache.clone()];
        job
    };
    let mut first = project_a(&[
        "mkdir -p vendor out && echo \"vendored by $CI_JOB_ID\" > vendor/lib.txt",
        "echo built > out/app.bin",
    ]);
    first.artifacts = vec![ArtifactDef {
        name: "app".into(),
        paths: vec!["out/".into()],
        ..Default::default()
    }];
    let result = env.runner.run(&first);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(
        &result.log,
        "Created cache archive ../../../cache/group/cache-a/deps/cache.zip",
    );
    assert_logged(&result.log, "out/app.bin");
    assert_eq!(result.calls_of("upload_artifacts_on_success").len(), 1);
    assert_logged(&result.log, "Uploading artifacts");

    // The checkout is cleaned (git clean), so only the cache can bring vendor/ back.
    let second = project_a(&["cat vendor/lib.txt"]);
    let result = env.runner.run(&second);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "Successfully extracted cache");
    assert_logged(&result.log, &format!("vendored by {}", first.id));

    let mut other = git_job(
        &repo,
        DEBIAN,
        &["test ! -e vendor/lib.txt && echo no cache here"],
    );
    other.project_id = 7002;
    other.project_path = "group/cache-b".into();
    other.cache = vec![cache.clone()];
    let result = env.runner.run(&other);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "no cache here");
}

/// A Debian image whose default user is `node`, as Node.js images are.
fn non_root_image() -> String {
    images::build_once(
        "debian-node-user",
        &format!("FROM {DEBIAN}\nRUN useradd --create-home --uid 1000 node\nUSER node\n"),
    )
}

#[test]
fn a_non_root_image_user_writes_the_checkout_and_root_written_files_are_cleaned() {
    let (_dir, repo) = git_project(&[("README.md", "hello\n")]);
    let env = TestEnv::with_binds("", &[&repo]);
    let as_root = git_job(
        &repo,
        DEBIAN,
        &["mkdir -p build && echo root > build/owned-by-root && id -u"],
    );
    let result = env.runner.run(&as_root);
    assert_eq!(result.status, Status::Success, "{}", result.log);

    let mut as_node = git_job(
        &repo,
        &non_root_image(),
        &[
            "echo \"user $(id -un)\"",
            "test ! -e build && echo root files cleaned",
            "echo changed >> README.md && mkdir -p new/dir && touch new/dir/file",
            "git --version >/dev/null 2>&1 || true",
        ],
    );
    as_node.project_id = as_root.project_id;
    as_node.project_path = as_root.project_path.clone();
    let result = env.runner.run(&as_node);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "user node");
    assert_logged(&result.log, "root files cleaned");
}

#[test]
fn a_helper_image_that_cannot_be_had_is_a_system_failure_naming_the_setting() {
    let mut env = TestEnv::with_settings(
        "[docker]\npull_policy = \"never\"\nhelper_image = \"gitlab-ecs-executor-test/no-such-helper:1\"",
    );
    env.runner.prepare_retry_pause = Duration::from_millis(100);
    let job = Job::test(base_image(), &["true"]);
    let result = env.runner.run(&job);
    assert_system_failure(&result);
    assert_logged(&result.log, "gitlab-ecs-executor-test/no-such-helper:1");
    assert_logged(&result.log, "docker.helper_image");
    assert_eq!(
        result.calls_of("prepare").len(),
        3,
        "a system failure is retried"
    );
    assert_nothing_left(&job);
    assert!(env.volumes().iter().all(|v| !v.contains("-path-")));
}

#[test]
fn a_project_volume_the_engine_cannot_mount_is_a_system_failure_naming_its_reason() {
    let mut env = TestEnv::new();
    env.runner.prepare_retry_pause = Duration::from_millis(100);
    let job = Job::test(base_image(), &["true"]);
    // The slot's cache volume exists already, with options the engine cannot mount.
    let volume =
        gitlab_ecs_executor::docker::ProjectVolumes::new(&job.identity(&env.runner)).cache();
    let created = Command::new("docker")
        .args(["volume", "create", "--label"])
        .arg(format!(
            "com.gitlab-ecs-executor.runner={}",
            env.runner.runner_id
        ))
        .args([
            "--opt",
            "type=ext4",
            "--opt",
            "device=/nonexistent/device",
            &volume,
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let result = env.runner.run(&job);
    assert_system_failure(&result);
    assert_logged(&result.log, "/nonexistent/device");
    assert_nothing_left(&job);
}

#[test]
fn the_helper_container_gets_no_socket_no_privileges_and_only_its_project() {
    let (_dir, repo) = git_project(&[("README.md", "hello\n")]);
    let env = TestEnv::with_binds("", &[&repo]);
    let mut job = git_job(&repo, DEBIAN, &["true"]);
    // The hooks run in the helper container: look around from there.
    job.pre_get_sources = vec![
        "test ! -e /var/run/docker.sock && echo no socket".into(),
        "grep -q '^CapEff:[[:space:]]*00000000a80405fb' /proc/self/status && echo default capabilities without NET_RAW".into(),
        // Only this job's project (its `.tmp` so far: the checkout comes next).
        "echo \"others: $(ls /builds/group | grep -vc \"^$(basename \"$CI_PROJECT_DIR\")\")\"".into(),
    ];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "\nno socket\n");
    assert_logged(&result.log, "\ndefault capabilities without NET_RAW\n");
    assert_logged(&result.log, "\nothers: 0\n");
}
