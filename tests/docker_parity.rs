//! Ordinary jobs behave as on GitLab's docker executor: services are waited for and reachable
//! under every alias, each stage runs through the image's entrypoint and nothing of it
//! outlives it, cancel works without a `kill` binary, privileged and registry credentials
//! follow the docker executor's rules.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::images::{CLIENTS, DEBIAN, POSTGRES, REDIS};
use crate::support::release::Fixture;
use crate::support::*;

/// Processes in the container whose command line contains `needle`, counted from /proc
/// (a minbase Debian image has no `ps`).
fn count_processes(needle: &str) -> String {
    format!(
        "n=0; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\" 2>/dev/null | grep -q '{needle}' && n=$((n+1)); done; echo \"processes: $n\""
    )
}

#[test]
fn a_postgres_service_answers_the_first_command_under_every_alias() {
    let env = TestEnv::new();
    let mut job = Job::test(
        CLIENTS,
        &[
            "psql -h db -U postgres -d app -tAc 'select 40 + 2'",
            "psql -h pgsql -U postgres -d app -tAc 'select 1' > /dev/null && echo pgsql resolves",
            "psql -h gitlab-ecs-executor__postgres -U postgres -d app -tAc 'select 1' > /dev/null && echo derived resolves",
            "psql -h gitlab-ecs-executor-postgres -U postgres -d app -tAc 'select 1' > /dev/null && echo dashed resolves",
            "redis-cli -h gitlab-ecs-executor__redis ping",
        ],
    );
    job.services = vec![
        Service {
            name: POSTGRES.into(),
            alias: "db,pgsql".into(),
            variables: vec![("POSTGRES_DB".into(), "app".into())],
            ..Default::default()
        },
        Service {
            name: REDIS.into(),
            ..Default::default()
        },
    ];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "Waiting for services to be up and running");
    assert_logged(&result.log, "\n42\n");
    for line in [
        "pgsql resolves",
        "derived resolves",
        "dashed resolves",
        "PONG",
    ] {
        assert_logged(&result.log, &format!("\n{line}\n"));
    }
    assert!(!result.log.contains("WARNING"), "{}", result.log);
}

#[test]
fn a_service_that_never_listens_is_a_warning_with_its_logs_and_the_job_runs() {
    let silent = images::build_once(
        "silent-service",
        &format!("FROM {DEBIAN}\nEXPOSE 9999\nCMD [\"sh\", \"-c\", \"echo service booting; sleep 3600\"]\n"),
    );
    let env = TestEnv::with_settings("[docker]\nwait_for_services_timeout = 3");
    let mut job = Job::test(DEBIAN, &["echo the job ran"]);
    job.services = vec![Service {
        name: silent.clone(),
        alias: "silent".into(),
        ..Default::default()
    }];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "*** WARNING:");
    assert_logged(&result.log, "probably didn't start properly.");
    assert_logged(&result.log, "Service container logs:");
    assert_logged(&result.log, "service booting");
    assert_logged(&result.log, "\nthe job ran\n");
    assert_eq!(result.calls_of("prepare").len(), 1);
}

#[test]
fn cancel_stops_a_script_in_an_image_without_kill_within_the_grace_period() {
    let mut env = TestEnv::new();
    env.runner.graceful_kill = Duration::from_secs(30);
    let mut job = Job::test(DEBIAN, &["echo started", "sleep 300"]);
    job.after_script = vec![
        "echo \"after: $CI_JOB_STATUS\"".into(),
        count_processes("sleep 300"),
    ];
    assert!(
        !Command::new("docker")
            .args([
                "run",
                "--rm",
                DEBIAN,
                "sh",
                "-c",
                "command -v kill || command -v pkill"
            ])
            .output()
            .unwrap()
            .stdout
            .starts_with(b"/"),
        "the image must have no kill binary"
    );
    let result = env
        .runner
        .run_with(&job, Cancel::DuringBuildScript(Duration::from_secs(2)));
    assert_eq!(result.status, Status::Canceled, "{}", result.log);
    let build = result.calls_of("build_script")[0];
    // Cancelled at 2 s; the default grace (docker.cancel_grace_seconds) is 5 s.
    assert!(
        build.elapsed < Duration::from_secs(8),
        "took {:?}",
        build.elapsed
    );
    assert_logged(&result.log, "after: canceled");
    assert_logged(&result.log, "processes: 0");
}

#[test]
fn a_background_process_of_the_script_is_gone_before_after_script() {
    let env = TestEnv::new();
    let mut job = Job::test(
        DEBIAN,
        &[
            "sleep 1000 > /dev/null 2>&1 &",
            "echo \"background pid $!\"",
        ],
    );
    job.after_script = vec![count_processes("sleep 1000")];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "background pid");
    assert_logged(&result.log, "processes: 0");
}

#[test]
fn every_stage_runs_through_the_images_entrypoint() {
    let entry = images::exporting_entrypoint();
    let env = TestEnv::new();
    let mut job = Job::test(&entry, &["echo \"script sees $FROM_ENTRYPOINT\""]);
    job.after_script = vec!["echo \"after_script sees $FROM_ENTRYPOINT\"".into()];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "script sees set-up-by-the-image");
    assert_logged(&result.log, "after_script sees set-up-by-the-image");
}

#[test]
fn shell_sh_runs_jobs_as_the_docker_executor_does() {
    let env = TestEnv::with_settings("shell = \"sh\"");
    let job = Job::test(DEBIAN, &["printf '%s\\n' \"tab:[\t] quote:['] in $0\""]);
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(result.config["shell"], "sh");
    // The docker executor prefers bash when the image has it, whatever `shell` says.
    assert_logged(&result.log, "tab:[\t] quote:['] in ");
}

#[test]
fn privileged_follows_the_allowed_privileged_images() {
    let dind = images::build_once("dind", &format!("FROM {}\n", base_image()));
    let run = |settings: &str, image: &str| {
        let mut env = TestEnv::with_settings(settings);
        env.runner.prepare_retry_pause = Duration::from_millis(100);
        env.runner
            .run(&Job::test(image, &["grep '^CapEff' /proc/self/status"]))
            .log
    };
    // Docker's defaults without NET_RAW.
    let default_caps = "CapEff:\t00000000a80405fb";
    let unprivileged = |log: &str| log.contains(default_caps);
    let privileged = |log: &str| {
        // An engine that itself runs in a sandbox without those capabilities (as on the
        // test machine) refuses to start a privileged container: it was still asked for one.
        (log.contains("CapEff:") && !unprivileged(log)) || log.contains("unable to apply caps")
    };
    let allowed = "[docker]\npull_policy = \"never\"\nprivileged = true\nallowed_privileged_images = [\"gitlab-ecs-executor-test/dind*\"]";
    let log = run(allowed, &dind);
    assert!(privileged(&log), "{log}");
    assert_logged(&log, "runs privileged");
    let log = run(allowed, base_image());
    assert!(unprivileged(&log), "{log}");
    // An empty list allows any image.
    let log = run(
        "[docker]\npull_policy = \"never\"\nprivileged = true",
        base_image(),
    );
    assert!(privileged(&log), "{log}");
    let log = run("[docker]\npull_policy = \"never\"", &dind);
    assert!(unprivileged(&log), "{log}");
}

#[test]
fn a_cred_helpers_only_auth_config_runs_the_named_helper_and_the_pull_succeeds() {
    let password = "registry-password-for-cred-helper";
    let registry = stand_ins::Registry::start(password);
    let image = format!("{}/group/private:1", registry.host);
    // Push an image with a throwaway CLI config, then forget it locally.
    let cli_config = tempfile::tempdir().unwrap();
    let docker = |args: &[&str]| {
        Command::new("docker")
            .arg("--config")
            .arg(cli_config.path())
            .args(args)
            .output()
            .unwrap()
    };
    let mut login = Command::new("docker")
        .arg("--config")
        .arg(cli_config.path())
        .args(["login", "-u", "AWS", "--password-stdin", &registry.host])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    assert!(login.wait().unwrap().success());
    assert!(docker(&["tag", base_image(), &image]).status.success());
    assert!(docker(&["push", &image]).status.success());
    assert!(docker(&["rmi", &image]).status.success());

    // A credential helper on the runner host's PATH, as docker-credential-ecr-login would be.
    let helpers = tempfile::tempdir().unwrap();
    let calls = helpers.path().join("calls");
    let helper = helpers.path().join("docker-credential-stand-in");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\necho \"$server\" >> {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"AWS\",\"Secret\":\"{password}\"}}' \"$server\"\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut env = TestEnv::with_settings("[docker]\npull_policy = \"if-not-present\"");
    env.runner.process_env.push((
        "PATH".into(),
        format!(
            "{}:{}",
            helpers.path().display(),
            std::env::var("PATH").unwrap()
        ),
    ));
    let mut job = Job::test(&image, &["echo pulled and ran"]).var(
        "DOCKER_AUTH_CONFIG",
        &format!(
            "{{\"credHelpers\": {{\"{}\": \"stand-in\"}}}}",
            registry.host
        ),
    );
    job.pull_policy = Vec::new();
    let result = env.runner.run(&job);
    let _ = Command::new("docker").args(["rmi", &image]).output();
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "\npulled and ran\n");
    assert!(!result.log.contains(password), "{}", result.log);
    let asked = std::fs::read_to_string(&calls).expect("the credential helper was called");
    assert!(asked.contains(&registry.host), "{asked}");
}

#[test]
fn a_release_job_with_a_release_step_succeeds() {
    let mut f = Fixture::new(&stand_ins::Moto::ecr_password(), "");
    let ecs = f.scripted_ecs(
        &format!("{}:v1.2.2", f.repository()),
        crate::support::scripted_ecs::Script::default(),
    );
    f.use_ecs(&ecs);
    let mut job = f.job("deploy", "v1.2.3", true);
    // GitLab turns a `release:` keyword into a step_release stage after the script.
    job.steps = vec![(
        "release".into(),
        vec!["echo \"creating the GitLab release for $CI_COMMIT_TAG\"".into()],
    )];
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(result.calls_of("step_release").len(), 1);
    assert_eq!(result.calls_of("step_release")[0].result, CallResult::Ok);
    assert_logged(&result.log, "creating the GitLab release for v1.2.3");
    assert_eq!(ecs.requests("UpdateService").len(), 1);
}

#[test]
fn ci_debug_services_streams_service_logs_into_the_job_log() {
    let env = TestEnv::with_settings("[docker]\nwait_for_services_timeout = -1");
    let ticker = Service {
        name: base_image().into(),
        alias: "ticker".into(),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "while true; do echo tick; sleep 0.5; done".into(),
        ]),
        ..Default::default()
    };
    let mut job = Job::test(DEBIAN, &["sleep 3"]).var("CI_DEBUG_SERVICES", "true");
    job.services = vec![ticker.clone()];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    // Prefixed with the service's names, as the docker executor does.
    assert_logged(
        &result.log,
        "[service:gitlab-ecs-executor__example-gitlab-ecs-executor-example-ticker] tick",
    );

    let mut quiet = Job::test(DEBIAN, &["sleep 2"]);
    quiet.services = vec![ticker];
    let result = env.runner.run(&quiet);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(!result.log.contains("[service:"), "{}", result.log);
}

#[test]
fn the_image_user_follows_settings_and_allowed_users() {
    let env = TestEnv::with_settings("[docker]\nallowed_users = [\"nobody\", \"1000\"]");
    let mut job = Job::test(DEBIAN, &["echo \"running as $(id -un)\""]);
    job.image_user = Some("nobody".into());
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "running as nobody");

    let mut job = Job::test(DEBIAN, &["true"]);
    job.image_user = Some("root".into());
    let result = env.runner.run(&job);
    // What the job asked for, refused by the operator: a job failure, not retried.
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "user `root` is not an allowed user");
    assert_eq!(result.calls_of("prepare").len(), 1);

    // `docker.user` wins over the job's.
    let env = TestEnv::with_settings("[docker]\nuser = \"nobody\"");
    let mut job = Job::test(DEBIAN, &["echo \"running as $(id -un)\""]);
    job.image_user = Some("root".into());
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "running as nobody");
}

#[test]
fn services_outside_allowed_services_or_the_limit_fail_the_job() {
    let env = TestEnv::with_settings(&format!(
        "[docker]\nallowed_services = [\"{POSTGRES}\"]\nservices_limit = 1"
    ));
    let mut job = Job::test(DEBIAN, &["true"]);
    job.services = vec![Service {
        name: REDIS.into(),
        ..Default::default()
    }];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        &format!("service {REDIS} is not allowed on this runner"),
    );
    assert_eq!(result.calls_of("prepare").len(), 1);

    job.services = vec![
        Service {
            name: POSTGRES.into(),
            ..Default::default()
        };
        2
    ];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        "too many services requested: 2, only 1 allowed",
    );
}
