//! A shared runner tried as a hostile pipeline author would: one runner serving projects A
//! and B with the default settings, B attacking A. Every attack is refused or harmless;
//! each test also shows its attack would land without the defence (an opt-out setting, a
//! fixture check), so none of them can pass by accident.

use std::process::Command;
use std::time::Duration;

use gitlab_ecs_executor::docker::JobNames;

use crate::support::host_network::{host_addresses, FakeMetadata, HostListener, METADATA_ANSWER};
use crate::support::images::DEBIAN;
use crate::support::*;

/// Project A's long job: a marker in its checkout, a port open, then a sleep.
fn project_a(seconds: u64) -> Job {
    let mut a = Job::test(
        base_image(),
        &[
            "echo a-secret-checkout > a-marker",
            "busybox httpd -p 8080 -h . &",
            &format!("sleep {seconds}"),
        ],
    );
    a.project_path = "group/project-a".into();
    a
}

fn project_b(script: &[&str]) -> Job {
    let mut b = Job::test(base_image(), script);
    b.project_path = "group/project-b".into();
    b
}

/// The address of a running job's build container on its network.
fn build_container_address(env: &TestEnv, job: &Job) -> String {
    let name = JobNames::new(&job.identity(&env.runner)).build_container();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                &name,
            ])
            .output()
            .expect("docker cli");
        let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !address.is_empty() {
            return address;
        }
        assert!(std::time::Instant::now() < deadline, "{name} never ran");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn forged_ids_of_every_kind_are_refused_and_touch_nothing_of_the_project_they_name() {
    let (_dir, repo) = git_project(&[("README.md", "a\n")]);
    let env = TestEnv::with_binds("", &[&repo]);
    // A fetch job: its checkout stays in the project's builds volume.
    let mut a = project_a(12);
    a.git = Some(GitSource::new(&repo, "main", false));
    std::thread::scope(|s| {
        let running = s.spawn(|| env.runner.run(&a));
        // A's job is in its script: its containers exist.
        build_container_address(&env, &a);
        for (variable, value) in [
            ("CI_PROJECT_ID", a.project_id.to_string()),
            ("CI_JOB_ID", a.id.to_string()),
            ("CI_PROJECT_PATH", a.project_path.clone()),
            ("CI_RUNNER_ID", (env.runner.runner_id + 1).to_string()),
            ("CI_COMMIT_REF_PROTECTED", "true".to_string()),
            ("CI_CONCURRENT_PROJECT_ID", "100000".to_string()),
        ] {
            let b = project_b(&["cat a-marker", "echo B RAN"]).var(variable, &value);
            let result = env.runner.run(&b);
            assert_eq!(
                result.status,
                Status::Failed(1),
                "{variable}: {}",
                result.log
            );
            assert_logged(&result.log, variable);
            assert!(!result.log.contains("B RAN"), "{}", result.log);
            // The job's fault: not retried as a system failure.
            assert_eq!(result.calls_of("prepare").len(), 1, "{variable}");
            assert_nothing_left(&b);
        }
        // Every id at once, as the attacker set them.
        let b = project_b(&["true"])
            .var("CI_PROJECT_ID", &a.project_id.to_string())
            .var("CI_JOB_ID", &a.id.to_string());
        assert_eq!(env.runner.run(&b).status, Status::Failed(1));
        let a_result = running.join().unwrap();
        assert_eq!(a_result.status, Status::Success, "{}", a_result.log);
    });
    assert_eq!(
        env.project_file(&a, "a-marker").as_deref(),
        Some("a-secret-checkout\n")
    );

    // What only the runner's variables carry picks among B's own volumes, never A's; the
    // short token names nothing.
    let b = project_b(&["test ! -e a-marker && echo no marker of A"])
        .var("CI_CONCURRENT_PROJECT_ID", "0")
        .var("CI_CONCURRENT_ID", "7")
        .var("CI_RUNNER_SHORT_TOKEN", &env.runner.short_token);
    let result = env.runner.run(&b);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "no marker of A");
}

#[test]
fn protected_and_unprotected_refs_of_one_project_keep_apart_checkouts_and_caches() {
    // Fetch jobs, whose checkouts stay in their slot's builds volume.
    let (_dir, repo) = git_project(&[("README.md", "hello\n")]);
    let env = TestEnv::with_binds("", &[&repo]);
    let cache = CacheDef {
        key: "deps".into(),
        paths: vec!["vendor/".into()],
        ..Default::default()
    };
    let mut protected = git_job(
        &repo,
        base_image(),
        &[
            "mkdir -p vendor && echo release-deps > vendor/lib",
            // Inside .git, where the next fetch's `git clean` leaves it.
            "echo p > .git/marker",
        ],
    );
    protected.protected = true;
    protected.cache = vec![cache.clone()];
    let result = env.runner.run(&protected);
    assert_eq!(result.status, Status::Success, "{}", result.log);

    let mut unprotected = git_job(
        &repo,
        base_image(),
        &["test ! -e .git/marker && test ! -e vendor/lib && echo nothing of the protected ref"],
    );
    unprotected.project_id = protected.project_id;
    unprotected.project_path = protected.project_path.clone();
    unprotected.cache = vec![cache.clone()];
    let result = env.runner.run(&unprotected);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "nothing of the protected ref");

    // The protected ref's next job finds its own.
    let mut again = git_job(&repo, base_image(), &["cat .git/marker vendor/lib"]);
    again.project_id = protected.project_id;
    again.project_path = protected.project_path.clone();
    again.protected = true;
    again.cache = vec![cache];
    let result = env.runner.run(&again);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "release-deps");
}

/// A job script that tries `targets` (`host:port`) and prints what answered: every server
/// here answers a line, even to a bad request.
fn probe_script(targets: &[String]) -> Vec<String> {
    targets
        .iter()
        .map(|t| {
            let (host, port) = t.split_once(':').unwrap_or((t, "80"));
            format!(
                "if echo | nc -w 2 {host} {port} 2>/dev/null | grep -q .; then echo \"REACHED {t}\"; else echo \"blocked {t}\"; fi"
            )
        })
        .collect()
}

#[test]
fn a_job_reaches_no_other_jobs_port_no_host_address_and_no_metadata_service() {
    let _metadata = FakeMetadata::start();
    let host = HostListener::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = stand_ins::git_project(dir.path(), &[("README.md", "hello\n")], &[]);
    let env = TestEnv::with_binds("", &[&repo]);
    let a = project_a(40);
    std::thread::scope(|s| {
        let running = s.spawn(|| env.runner.run(&a));
        let a_address = build_container_address(&env, &a);
        // A's server answers on A's network.
        let own = Command::new("docker")
            .args([
                "exec",
                &JobNames::new(&a.identity(&env.runner)).build_container(),
            ])
            .args(["wget", "-q", "-O-", "http://127.0.0.1:8080/a-marker"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&own.stdout), "a-secret-checkout\n");

        let mut targets = vec![
            format!("{a_address}:8080"),
            "169.254.169.254:80".to_string(),
            "169.254.170.2:80".to_string(),
        ];
        targets.extend(
            host_addresses()
                .iter()
                .map(|h| format!("{h}:{}", host.port)),
        );
        let script = probe_script(&targets);
        let script: Vec<&str> = script.iter().map(String::as_str).collect();
        let b = project_b(&script);
        let result = env.runner.run(&b);
        assert_eq!(result.status, Status::Success, "{}", result.log);
        assert!(!result.log.contains("\nREACHED"), "{}", result.log);
        for target in &targets {
            assert_logged(&result.log, &format!("blocked {target}"));
        }
        // Its helper (which runs the project's hooks) stands behind the same rules.
        let mut b = project_b(&["true"]);
        b.git = Some(GitSource::new(&repo, "main", false));
        b.pre_get_sources = probe_script(&["169.254.169.254:80".to_string()]);
        let result = env.runner.run(&b);
        assert_logged(&result.log, "blocked 169.254.169.254:80");
        assert_eq!(running.join().unwrap().status, Status::Success);
    });

    // The opt-out gives exactly that away: the same probes answer.
    let open = TestEnv::with_settings("[docker]\njobs_may_reach_host = true");
    let host_address = format!("{}:{}", host_addresses()[0], host.port);
    let host_probe = probe_script(std::slice::from_ref(&host_address));
    let mut script: Vec<&str> = host_probe.iter().map(String::as_str).collect();
    script.push("wget -q -O- http://169.254.169.254/latest/meta-data/ami-id");
    let b = project_b(&script);
    let result = open.runner.run(&b);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, METADATA_ANSWER);
    assert_logged(&result.log, &format!("\nREACHED {host_address}"));
}

/// `CapEff` of the job's processes, from inside.
const CAPABILITIES: &str = "grep CapEff /proc/self/status";

#[test]
fn job_service_and_helper_containers_drop_net_raw_and_the_helper_gets_the_operators_hardening() {
    let dir = tempfile::tempdir().unwrap();
    let repo = stand_ins::git_project(dir.path(), &[("README.md", "hello\n")], &[]);
    let env = TestEnv::with_binds(
        "[docker]\ncap_drop = [\"CHOWN\"]\nmemory = \"512m\"",
        &[&repo],
    );
    let mut job = Job::test(
        DEBIAN,
        &[
            CAPABILITIES,
            // NET_RAW is bit 13, CHOWN bit 0: Docker's default set is 00000000a80425fb.
            "grep -q 'CapEff:[[:space:]]*00000000a80405fa' /proc/self/status && echo job hardened",
            "timeout 10 bash -c 'exec 3<>/dev/tcp/capsvc/7000; head -1 <&3' | grep -q 'CapEff:[[:space:]]*00000000a80405fb' && echo service without net_raw",
        ],
    );
    // A service that answers with its own capabilities.
    job.services = vec![Service {
        name: base_image().to_string(),
        alias: "capsvc".into(),
        entrypoint: Some(vec!["sh".into(), "-c".into()]),
        command: Some(vec![
            "while true; do grep CapEff /proc/self/status | nc -l -p 7000; done".into(),
        ]),
        ..Default::default()
    }];
    // The hooks run in the helper container.
    job.git = Some(GitSource::new(&repo, "main", false));
    job.pre_get_sources = vec![
        "grep -q 'CapEff:[[:space:]]*00000000a80405fa' /proc/self/status && echo helper hardened".into(),
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max".into(),
    ];
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "job hardened");
    assert_logged(&result.log, "\nservice without net_raw");
    assert_logged(&result.log, "helper hardened");
    assert_logged(&result.log, &(512u64 * 1024 * 1024).to_string());

    // Operators who need it back ask for it.
    let env = TestEnv::with_settings("[docker]\ncap_add = [\"NET_RAW\"]");
    let job = Job::test(
        DEBIAN,
        &["grep -q 'CapEff:[[:space:]]*00000000a80425fb' /proc/self/status && echo has net_raw"],
    );
    let result = env.runner.run(&job);
    assert_logged(&result.log, "has net_raw");
}

#[test]
fn masked_variables_and_the_job_token_are_in_the_script_but_not_in_any_containers_configuration() {
    let env = TestEnv::new();
    let secret = format!("masked-value-{}", runner::unique_id());
    let job = Job::test(
        base_image(),
        &[
            &format!("test \"$PROJECT_SECRET\" = {secret} && echo the script has it"),
            "test -n \"$CI_JOB_TOKEN\" && echo the script has the job token",
            &format!(
                "if tr '\\0' '\\n' < /proc/1/environ | grep -q -e {secret} -e secrettoken; then echo IN CONFIG; else echo not in the container config; fi"
            ),
        ],
    )
    .masked("PROJECT_SECRET", &secret);
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "the script has it");
    assert_logged(&result.log, "the script has the job token");
    assert_logged(&result.log, "not in the container config");
}

#[test]
fn another_jobs_cleanup_never_removes_a_running_job_however_old() {
    // Every container older than no time at all counts as old.
    let env = TestEnv::with_settings("[docker]\norphan_max_age_minutes = 0");
    let a = project_a(8);
    std::thread::scope(|s| {
        let running = s.spawn(|| env.runner.run(&a));
        build_container_address(&env, &a);
        let b = project_b(&["echo B cleans up after itself"]);
        let result = env.runner.run(&b);
        assert_eq!(result.status, Status::Success, "{}", result.log);
        let a_result = running.join().unwrap();
        assert_eq!(a_result.status, Status::Success, "{}", a_result.log);
    });
    // Once it is over, the sweep takes what a killed job would have left.
    let orphan = project_b(&["true"]);
    let names = JobNames::new(&orphan.identity(&env.runner));
    let created = Command::new("docker")
        .args(["create", "--name", &names.helper_container()])
        .args(["--label", "com.gitlab-ecs-executor.managed=true"])
        .arg("--label")
        .arg(format!(
            "com.gitlab-ecs-executor.runner={}",
            env.runner.runner_id
        ))
        .arg("--label")
        .arg(format!("com.gitlab-ecs-executor.job={}", names.key()))
        .arg("--label")
        .arg(format!("com.gitlab-ecs-executor.job-id={}", orphan.id))
        .args([base_image(), "true"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    std::thread::sleep(Duration::from_secs(2));
    let result = env.runner.run(&project_b(&["true"]));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_nothing_left(&orphan);
}
