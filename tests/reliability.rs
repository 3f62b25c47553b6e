//! Faults, load, hostile input and secrets: the executor keeps working, refuses what it must,
//! leaves nothing behind and leaks nothing.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::release::{moto, Fixture, ID_TOKEN, MASKED};
use crate::support::scripted_ecs::Script;
use crate::support::stand_ins::{Moto, ACCOUNT};
use crate::support::*;

/// Every process's command line, sampled until `stop`.
fn watch_cmdlines(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
                    seen.push(String::from_utf8_lossy(&raw).replace('\0', " "));
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        seen
    })
}

/// Web identity token files under this machine's temp dir, with their modes.
fn token_files() -> Vec<(std::path::PathBuf, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let token = entry.path().join("gitlab-ecs-executor/web-identity-token");
        if let Ok(meta) = std::fs::metadata(&token) {
            found.push((token, meta.permissions().mode() & 0o777));
        }
    }
    found
}

#[test]
fn secrets_never_reach_argv_logs_or_disk_beyond_the_release() {
    let mut f = Fixture::new(&Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    let job = f
        .job("deploy", "v1.2.3", true)
        .var(
            "AWS_ROLE_ARN",
            &format!("arn:aws:iam::{ACCOUNT}:role/gitlab-deploy"),
        )
        .masked("AWS_ID_TOKEN", ID_TOKEN);
    let stop = Arc::new(AtomicBool::new(false));
    let cmdlines = watch_cmdlines(stop.clone());
    let modes = Arc::new(Mutex::new(Vec::new()));
    let token_watch = {
        let (stop, modes) = (stop.clone(), modes.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                modes.lock().unwrap().extend(token_files());
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let result = f.env.runner.run(&job);
    stop.store(true, Ordering::SeqCst);
    let cmdlines = cmdlines.join().unwrap();
    token_watch.join().unwrap();
    assert_eq!(result.status, Status::Success, "{}", result.log);

    let secrets = [
        Moto::ecr_password(),
        "host-secret-key-never-logged".into(),
        ID_TOKEN.into(),
        MASKED.into(),
        "secrettoken".into(),
    ];
    for secret in &secrets {
        assert!(
            !result.log.contains(secret.as_str()),
            "{secret} in the job log"
        );
        assert!(
            !result.runner_log.contains(secret.as_str()),
            "{secret} in the runner log"
        );
        if let Some(line) = cmdlines.iter().find(|c| c.contains(secret.as_str())) {
            panic!("{secret} on a command line: {line}");
        }
    }
    assert!(
        cmdlines.iter().any(|c| c.contains("gitlab-ecs-executor")),
        "the sampler saw no executor process"
    );
    let modes = modes.lock().unwrap();
    assert!(
        !modes.is_empty(),
        "no token file seen during the OIDC release"
    );
    assert!(modes.iter().all(|(_, mode)| *mode == 0o600), "{modes:?}");
    for (path, _) in modes.iter() {
        assert!(!path.exists(), "{} left behind", path.display());
    }
}

#[test]
fn job_variables_cannot_redirect_the_executor() {
    let mut f = Fixture::new(&Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    // What a hostile job could set: its variables arrive as CUSTOM_ENV_*, which neither the
    // SDK, the Docker client nor the settings loader read.
    let job = f
        .job("deploy", "v1.2.3", true)
        .var("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .var("AWS_ENDPOINT_URL_ECS", "http://127.0.0.1:9")
        .var("GITLAB_ECS_EXECUTOR_CONFIG", "/nonexistent.toml")
        .var("DOCKER_HOST", "tcp://127.0.0.1:9");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(ecs.requests("UpdateService").len(), 1);

    let strict = Fixture::new(
        &Moto::ecr_password(),
        "[aws]\nallow_host_credentials = false\n",
    );
    let result = strict.env.runner.run(
        &strict
            .job("deploy", "v1.2.3", true)
            .var("ECS_EXECUTOR_ALLOW_HOST_CREDENTIALS", "true"),
    );
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert!(
        result
            .log
            .contains("does not let jobs use its own AWS credentials"),
        "{}",
        result.log
    );
}

#[test]
fn build_inputs_escaping_the_project_are_refused() {
    let mut f = Fixture::new(&Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    for (name, value) in [
        ("DOCKERFILE", "../../etc/passwd"),
        ("DOCKER_BUILD_CONTEXT", "/"),
    ] {
        let result = f
            .env
            .runner
            .run(&f.job("deploy", "v1.2.3", true).var(name, value));
        assert_eq!(result.status, Status::Failed(1), "{}", result.log);
        assert_logged(
            &result.log,
            &format!("{name} must be a path inside the project directory"),
        );
        assert!(
            result.calls_of("get_sources").is_empty(),
            "refused in prepare"
        );
    }
    // A symlink in the project pointing outside it.
    std::os::unix::fs::symlink("/etc", f.repo.join("outside")).unwrap();
    for args in [
        &["add", "outside"][..],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "link",
        ][..],
    ] {
        assert!(Command::new("git")
            .args(args)
            .current_dir(&f.repo)
            .status()
            .unwrap()
            .success());
    }
    f.tag("v1.3.0");
    let job = f
        .job("deploy", "v1.3.0", true)
        .var("DOCKER_BUILD_CONTEXT", "outside");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert!(
        result
            .log
            .contains("DOCKER_BUILD_CONTEXT `outside` resolves outside the project directory"),
        "{}",
        result.log
    );
    assert!(ecs.requests("RegisterTaskDefinition").is_empty());
    assert!(f.registry.tags("group/app").is_empty());
}

#[test]
fn jobs_get_no_docker_socket_no_privileges_and_only_allowed_images() {
    let env = TestEnv::new();
    let job = Job::test(
        base_image(),
        &[
            "test ! -e /var/run/docker.sock",
            // Docker's defaults without NET_RAW.
            "grep -q 'CapEff:\\s*00000000a80405fb' /proc/self/status",
            "test ! -e /etc/hostname-of-host",
        ],
    );
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);

    let env = TestEnv::with_settings(
        "[docker]\npull_policy = \"never\"\nallowed_images = [\"registry.example.com/*\"]",
    );
    let result = env.runner.run(&Job::test(base_image(), &["true"]));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        &format!("image {} is not allowed on this runner", base_image()),
    );
    assert_eq!(
        result.calls_of("prepare").len(),
        1,
        "a job failure is not retried"
    );
}

#[test]
fn server_errors_and_dropped_connections_mid_rollout_are_retried() {
    let mut f = Fixture::new(&Moto::ecr_password(), "");
    let script = Script {
        faults_after_update: 4,
        ..Script::default()
    };
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
    f.use_ecs(&ecs);
    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(ecs.faults_injected(), 4);
    assert!(ecs.service_task_definition().ends_with(":2"));
}

#[test]
fn a_release_killed_mid_rollout_resumes_when_retried() {
    let mut f = Fixture::new(&Moto::ecr_password(), "");
    let script = Script {
        scenario: crate::support::scripted_ecs::Scenario::Succeed(Duration::from_secs(8)),
        ..Script::default()
    };
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), script);
    f.use_ecs(&ecs);
    // The release command, SIGKILLed once its UpdateService went out.
    let mut child = f
        .command()
        .args(["release", "--tag", "v1.2.3", "--project-dir"])
        .arg(&f.repo)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ecs.requests("UpdateService").is_empty() {
        assert!(Instant::now() < deadline, "no UpdateService");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let result = f.env.runner.run(&f.job("deploy", "v1.2.3", true));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "Resuming: deployment ecs-svc/");
    assert_eq!(
        ecs.requests("UpdateService").len(),
        1,
        "no second deployment"
    );
    assert_eq!(
        ecs.requests("RegisterTaskDefinition").len(),
        1,
        "no second revision"
    );
    let _ = moto();
}

#[test]
fn twenty_concurrent_jobs_of_four_projects_with_cancels_leave_only_their_volumes_until_pruned() {
    // Fetch jobs: their checkouts stay in the project slots' builds volumes.
    let (_dir, repo) = git_project(&[("README.md", "hello\n")]);
    let mut env = TestEnv::with_binds("", &[&repo]);
    let temp_root = tempfile::tempdir().unwrap();
    env.runner.temp_root = Some(temp_root.path().to_path_buf());
    let base_id = runner::unique_id();
    for round in 0..2u64 {
        let jobs: Vec<(Job, Cancel)> = (0..20u64)
            .map(|n| {
                let mut job = git_job(&repo, base_image(), &["echo started > started", "sleep 5"]);
                // Four projects with five jobs each running at once: slots 0-4 of each.
                job.project_id = base_id + n % 4;
                job.project_path = format!("group/project-{}", n % 4);
                job.concurrent_id = n;
                job.project_slot = n / 4;
                // A fixed pseudo-random pick: a third of the jobs are cancelled mid-script.
                let cancel = if (n * 7 + round * 3) % 3 == 0 {
                    Cancel::DuringBuildScript(Duration::from_millis(1500 + (n * 97 % 1000)))
                } else {
                    Cancel::No
                };
                (job, cancel)
            })
            .collect();
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(job, cancel)| {
                    let runner = env.runner.clone();
                    s.spawn(move || runner.run_with(job, cancel.clone()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for ((job, cancel), result) in jobs.iter().zip(&results) {
            let expected = match cancel {
                Cancel::No => Status::Success,
                Cancel::DuringBuildScript(_)
                | Cancel::WhenLogged(_)
                | Cancel::PrepareWhenLogged(_) => Status::Canceled,
            };
            assert_eq!(result.status, expected, "{}", result.log);
            assert!(
                docker_objects_of(job).is_empty(),
                "job {} left objects",
                job.id
            );
        }
    }
    let volume = |project: u64, slot: u64, purpose: &str| {
        format!(
            "runner-{}-project-{}-concurrent-{slot}-{purpose}",
            env.runner.runner_id,
            base_id + project
        )
    };
    let of_projects = |projects: &[u64]| {
        let mut names: Vec<String> = projects
            .iter()
            .flat_map(|p| (0..5).flat_map(move |slot| [(*p, slot, "builds"), (*p, slot, "cache")]))
            .map(|(p, slot, purpose)| volume(p, slot, purpose))
            .collect();
        names.sort();
        names
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(env.volumes()), of_projects(&[0, 1, 2, 3]));
    let leftovers: Vec<_> = std::fs::read_dir(temp_root.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        leftovers.is_empty(),
        "runner temp files left: {leftovers:?}"
    );

    // Projects 0 and 1 were last used two hours ago.
    let two_hours_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 7200;
    for project in [0, 1] {
        for slot in 0..5 {
            let status = Command::new("docker")
                .args(["run", "--rm", "--network", "none", "-v"])
                .arg(format!("{}:/b", volume(project, slot, "builds")))
                .args([images::HELPER, "touch", "-d"])
                .arg(format!("@{two_hours_ago}"))
                .arg("/b/.gitlab-ecs-executor-last-used")
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let prune = |args: &[&str]| {
        output_of(
            Command::new(binary())
                .arg("--config")
                .arg(&env.settings)
                .arg("prune")
                .args(args),
        )
    };
    let (out, text) = prune(&["--older-than", "1h", "--dry-run"]);
    assert!(out.status.success(), "{text}");
    let listed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("runner-{}-", env.runner.runner_id)))
        .collect();
    assert_eq!(listed.len(), 20, "{text}");
    assert!(
        listed
            .iter()
            .all(|l| l.starts_with("would remove") && l.contains("last used 2h ago")),
        "{text}"
    );
    assert_eq!(env.volumes().len(), 40, "a dry run removes nothing");

    let (out, text) = prune(&["--older-than", "1h"]);
    assert!(out.status.success(), "{text}");
    assert_eq!(sorted(env.volumes()), of_projects(&[2, 3]), "{text}");
}

/// Whether a running container of `job` has a process whose command line is `command`.
fn runs_in_a_container_of(job: &Job, command: &str) -> bool {
    let names = Command::new("docker")
        .args(["ps", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=com.gitlab-ecs-executor.job-id={}", job.id))
        .output()
        .unwrap();
    String::from_utf8_lossy(&names.stdout).lines().any(|name| {
        // The last column of `docker top` is the command line.
        Command::new("docker")
            .args(["top", name])
            .output()
            .is_ok_and(|top| {
                String::from_utf8_lossy(&top.stdout)
                    .lines()
                    .any(|l| l.trim_end().ends_with(&format!(" {command}")))
            })
    })
}

#[test]
fn an_engine_that_drops_out_mid_script_is_a_system_failure_and_nothing_is_left() {
    let proxy = crate::support::proxy::Proxy::unix("/var/run/docker.sock");
    let mut env = TestEnv::with_settings(&format!(
        "[docker]\npull_policy = \"never\"\nhost = \"{}\"",
        proxy.address
    ));
    env.runner.prepare_retry_pause = Duration::from_millis(100);
    let job = Job::test(base_image(), &["echo started", "sleep 20"]);
    let result = std::thread::scope(|s| {
        let running = s.spawn(|| env.runner.run(&job));
        // Once the script runs, the engine "restarts": every connection is cut, then it is back.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !runs_in_a_container_of(&job, "sleep 20") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy.stop();
        std::thread::sleep(Duration::from_millis(500));
        proxy.start();
        running.join().unwrap()
    });
    assert_system_failure(&result);
    assert!(
        result
            .log
            .contains("lost the connection to the Docker engine")
            || result.log.contains("Docker engine call"),
        "{}",
        result.log
    );
    assert!(
        result.calls_of("build_script")[0].elapsed < Duration::from_secs(15),
        "the executor noticed late"
    );
    assert_nothing_left(&job);
}

#[test]
fn a_registry_dropping_or_refusing_connections_mid_release() {
    let mut f = Fixture::new(&Moto::ecr_password(), "");
    let proxy = crate::support::proxy::Proxy::tcp(&f.registry.host);
    f.allow_ecr_token_to(&proxy.address);
    let ecs = f.scripted_ecs(
        &format!("{}/group/app:v1.2.2", proxy.address),
        Script::default(),
    );
    f.use_ecs(&ecs);
    // The registry the job sees is the proxy.
    // Its base image comes from the registry behind the proxy, with the job's credentials.
    let job = f
        .job("deploy", "v1.2.3", true)
        .var("ECR_REGISTRY", &proxy.address)
        .masked("DOCKER_AUTH_CONFIG", &f.registry.auth_config());

    // Down: a clear failure before anything is built, pushed or registered.
    proxy.stop();
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert!(
        result
            .log
            .contains(&format!("the registry {} cannot be reached", proxy.address)),
        "{}",
        result.log
    );
    assert!(ecs.requests("RegisterTaskDefinition").is_empty());
    assert!(f.registry.tags("group/app").is_empty());

    // Dropping the connection a little into the push: the engine retries the upload.
    proxy.start();
    proxy.cut_after(64 * 1024);
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(proxy.cuts(), 1, "the push was never cut");
    assert!(f.registry.manifest("group/app", "v1.2.3").is_some());
    assert_eq!(ecs.requests("UpdateService").len(), 1);
}

#[test]
fn an_engine_restarting_during_prepare_or_cleanup_is_survived() {
    let proxy = crate::support::proxy::Proxy::unix("/var/run/docker.sock");
    let mut env = TestEnv::with_settings(&format!(
        "[docker]\npull_policy = \"never\"\nhost = \"{}\"",
        proxy.address
    ));
    env.runner.prepare_retry_pause = Duration::from_millis(500);

    // Down when prepare starts, back 1.5 s later: the runner's prepare retry gets through.
    let job = Job::test(base_image(), &["echo ran"]);
    proxy.stop();
    let result = std::thread::scope(|s| {
        let running = s.spawn(|| env.runner.run(&job));
        std::thread::sleep(Duration::from_millis(1500));
        proxy.start();
        running.join().unwrap()
    });
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(result.calls_of("prepare").len() >= 2, "{:?}", result.calls);
    assert_nothing_left(&job);

    // Down for 3 s once the script is over: cleanup waits for the engine instead of leaving
    // the job's container behind.
    let job = Job::test(base_image(), &["sleep 2"]);
    let result = std::thread::scope(|s| {
        let running = s.spawn(|| env.runner.run(&job));
        let deadline = Instant::now() + Duration::from_secs(60);
        while docker_objects_of(&job).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(2600));
        proxy.stop();
        std::thread::sleep(Duration::from_secs(3));
        proxy.start();
        running.join().unwrap()
    });
    assert!(
        !result.log.contains("Cleanup script failed"),
        "{}",
        result.log
    );
    assert_nothing_left(&job);
}
