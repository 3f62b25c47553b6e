//! The job agent over loopback, as a stage in an ECS task meets it: the real binary serving,
//! the library's client asking, a real shell running the scripts.

use std::process::Command;
use std::time::Duration;

use gitlab_ecs_executor::agent::{
    self, AgentError, Endpoint, JobSecret, Output, StageCommand, StageEnd,
};
use gitlab_ecs_executor::docker::Cancel;

use crate::support::agent::LocalAgent as Agent;

/// What a stage printed, apart.
#[derive(Default)]
struct Printed {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn sh() -> StageCommand {
    StageCommand {
        argv: vec!["sh".into()],
        env: Vec::new(),
        workdir: None,
    }
}

fn never() -> Cancel {
    Box::pin(std::future::pending())
}

async fn stage(
    endpoint: &Endpoint,
    command: &StageCommand,
    script: &str,
    cancel: Cancel,
) -> (Result<StageEnd, AgentError>, Printed) {
    let mut printed = Printed::default();
    let end = agent::run(
        endpoint,
        command,
        script.as_bytes().to_vec(),
        |stream, bytes| match stream {
            Output::Stdout => printed.stdout.extend_from_slice(bytes),
            Output::Stderr => printed.stderr.extend_from_slice(bytes),
        },
        cancel,
        Duration::from_secs(2),
    )
    .await;
    (end, printed)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A cancel that fires once the stage has printed `marker` to stdout.
fn cancel_once_printed(marker: &'static str) -> (Cancel, impl FnMut(&[u8])) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut tx = Some(tx);
    let mut seen = Vec::new();
    let watch = move |bytes: &[u8]| {
        seen.extend_from_slice(bytes);
        if text(&seen).contains(marker) {
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        }
    };
    (
        Box::pin(async move {
            let _ = rx.await;
        }),
        watch,
    )
}

#[tokio::test]
async fn a_stage_gets_its_script_on_stdin_its_variables_and_directory_and_exits_with_its_own_code()
{
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let command = StageCommand {
        argv: vec!["sh".into(), "-e".into()],
        env: vec![
            ("GREETING".into(), "hello world".into()),
            ("CI_JOB_ID".into(), "42".into()),
        ],
        workdir: Some(dir.path().display().to_string()),
    };
    let script = "echo \"$GREETING $CI_JOB_ID\"\npwd\necho oops >&2\nexit 7\n";
    let (end, printed) = stage(&agent.endpoint(), &command, script, never()).await;
    assert_eq!(
        end.unwrap(),
        StageEnd {
            code: 7,
            cancelled: false
        }
    );
    assert_eq!(
        text(&printed.stdout),
        format!("hello world 42\n{}\n", dir.path().display())
    );
    assert_eq!(text(&printed.stderr), "oops\n");
    // The next stage of the job, on the same agent.
    let (end, printed) = stage(&agent.endpoint(), &sh(), "false || echo second\n", never()).await;
    assert_eq!(end.unwrap().code, 0);
    assert_eq!(text(&printed.stdout), "second\n");
}

#[tokio::test]
async fn nothing_runs_for_a_peer_without_the_jobs_secret() {
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("touch {}\n", marker.display());
    let stranger = Endpoint {
        address: agent.address,
        secret: JobSecret::generate().unwrap(),
    };
    let (end, _) = stage(&stranger, &sh(), &script, never()).await;
    match end {
        Err(AgentError::Refused { reason, .. }) => assert!(reason.contains("secret"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Bytes that are not TLS at all, and a peer that says nothing.
    {
        use std::io::Write;
        let mut raw = std::net::TcpStream::connect(agent.address).unwrap();
        let _ = raw.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let _silent = std::net::TcpStream::connect(agent.address).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!marker.exists(), "a stage ran without the secret");
    // The agent still serves the job.
    let (end, _) = stage(&agent.endpoint(), &sh(), &script, never()).await;
    assert_eq!(end.unwrap().code, 0);
    assert!(marker.exists());
    // The container's log says who was turned away, and never the secret.
    let mut agent = agent;
    let _ = agent.child.kill();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut agent.child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("a peer without the job's secret"), "{log}");
    assert!(!log.contains(&agent.secret.digest_hex()), "{log}");
}

#[tokio::test]
async fn a_cancel_sends_sigterm_to_everything_the_stage_started() {
    let agent = Agent::start();
    let (cancel, mut watch) = cancel_once_printed("started");
    let mut stdout = Vec::new();
    let script = "trap 'echo terminated; exit 143' TERM\nsleep 60 &\necho started\nwait\n";
    let end = agent::run(
        &agent.endpoint(),
        &sh(),
        script.as_bytes().to_vec(),
        |stream, bytes| {
            if stream == Output::Stdout {
                stdout.extend_from_slice(bytes);
                watch(bytes);
            }
        },
        cancel,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(
        end,
        StageEnd {
            code: 143,
            cancelled: true
        }
    );
    assert!(text(&stdout).contains("terminated"), "{}", text(&stdout));
}

#[tokio::test]
async fn a_stage_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let agent = Agent::start();
    let (cancel, mut watch) = cancel_once_printed("started");
    let script = "trap '' TERM\necho started\nwhile :; do sleep 1; done\n";
    let end = agent::run(
        &agent.endpoint(),
        &sh(),
        script.as_bytes().to_vec(),
        |_, bytes| watch(bytes),
        cancel,
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    assert_eq!(
        end,
        StageEnd {
            code: 128 + 9,
            cancelled: true
        }
    );
}

#[tokio::test]
async fn what_a_stage_leaves_running_does_not_outlive_it_or_hold_its_output_open() {
    let agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("sleep 300 &\necho $! > {}\necho done\n", pid_file.display());
    let ran = tokio::time::timeout(
        Duration::from_secs(60),
        stage(&agent.endpoint(), &sh(), &script, never()),
    )
    .await
    .expect("the stage returned although its background process holds stdout");
    let (end, printed) = ran;
    assert_eq!(end.unwrap().code, 0);
    assert_eq!(text(&printed.stdout), "done\n");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut alive = true;
    for _ in 0..50 {
        // SAFETY: signal 0 only asks whether the process exists.
        alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!alive, "the stage's background process {pid} outlived it");
}

#[tokio::test]
async fn megabytes_of_script_and_of_output_on_both_streams_do_not_stall() {
    let agent = Agent::start();
    let mut script = ": padding line of a long generated script\n".repeat(50_000);
    script.push_str(
        "head -c 3000000 /dev/zero | tr '\\0' o\nhead -c 2000000 /dev/zero | tr '\\0' e >&2\n",
    );
    let (end, printed) = stage(&agent.endpoint(), &sh(), &script, never()).await;
    assert_eq!(end.unwrap().code, 0);
    assert_eq!(printed.stdout.len(), 3_000_000);
    assert!(printed.stdout.iter().all(|b| *b == b'o'));
    assert_eq!(printed.stderr.len(), 2_000_000);
    assert!(printed.stderr.iter().all(|b| *b == b'e'));
}

#[tokio::test]
async fn a_program_that_cannot_run_exits_127_with_the_reason_on_stderr() {
    let agent = Agent::start();
    let command = StageCommand {
        argv: vec!["/no/such/shell".into()],
        env: Vec::new(),
        workdir: None,
    };
    let (end, printed) = stage(&agent.endpoint(), &command, "echo hi\n", never()).await;
    assert_eq!(end.unwrap().code, 127);
    assert!(
        text(&printed.stderr).contains("cannot run `/no/such/shell`"),
        "{}",
        text(&printed.stderr)
    );
}

#[tokio::test]
async fn a_task_that_stops_mid_stage_is_a_lost_connection_not_an_exit_code() {
    let mut agent = Agent::start();
    let endpoint = agent.endpoint();
    let stopping = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = agent.child.kill();
        let _ = agent.child.wait();
    });
    // In a task the stage dies with the container; here it is only orphaned, briefly.
    let (end, _) = stage(&endpoint, &sh(), "echo started\nsleep 3\n", never()).await;
    stopping.await.unwrap();
    assert!(
        matches!(end, Err(AgentError::ConnectionLost { .. })),
        "{end:?}"
    );
}

#[test]
fn the_agent_will_not_start_without_the_secrets_digest() {
    for digest in [None, Some("not-a-digest")] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gitlab-ecs-executor"));
        command
            .args(["agent", "serve", "--listen", "127.0.0.1:0"])
            .env_remove(agent::SECRET_DIGEST_VARIABLE);
        if let Some(digest) = digest {
            command.env(agent::SECRET_DIGEST_VARIABLE, digest);
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(agent::SECRET_DIGEST_VARIABLE), "{stderr}");
        let said = if digest.is_some() {
            "malformed"
        } else {
            "not set"
        };
        assert!(stderr.contains(said), "{stderr}");
        assert!(out.stdout.is_empty(), "it listened anyway");
    }
}

#[tokio::test]
async fn a_process_that_left_the_stages_group_does_not_keep_the_stage_open() {
    let agent = Agent::start();
    // `setsid` and job control put it beyond the group's kill, holding stdout open.
    let script = "setsid sleep 301 &\nset -m\nsleep 302 &\necho done\n";
    let (end, printed) = tokio::time::timeout(
        Duration::from_secs(60),
        stage(&agent.endpoint(), &sh(), script, never()),
    )
    .await
    .expect("the stage hung on output held open by a process outside its group");
    assert_eq!(end.unwrap().code, 0);
    assert_eq!(text(&printed.stdout), "done\n");
    let _ = Command::new("pkill")
        .args(["-f", "^sleep 30[12]$"])
        .status();
}

#[tokio::test]
async fn a_cancel_reaches_a_stage_whose_shell_has_not_read_the_rest_of_its_script() {
    let agent = Agent::start();
    let (cancel, mut watch) = cancel_once_printed("started");
    // bash reads a piped script as it runs it: megabytes after a long first command stay
    // unread in the pipe while it runs.
    let mut script = "echo started\nsleep 600\n".to_string();
    script.push_str(&": padding of a generated script\n".repeat(40_000));
    let command = StageCommand {
        argv: vec!["bash".into()],
        env: Vec::new(),
        workdir: None,
    };
    let end = tokio::time::timeout(
        Duration::from_secs(60),
        agent::run(
            &agent.endpoint(),
            &command,
            script.into_bytes(),
            |_, bytes| watch(bytes),
            cancel,
            Duration::from_secs(2),
        ),
    )
    .await
    .expect("the cancel waited behind the script")
    .unwrap();
    assert!(end.cancelled);
    assert!(end.code == 143 || end.code == 137, "{end:?}");
}
