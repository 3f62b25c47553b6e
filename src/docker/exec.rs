//! Running a stage script inside the job container: streamed into the shell's stdin through
//! an exec, output streamed live, exit code exact, cancellation reaching the container.

use std::future::Future;
use std::time::Duration;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{is_not_found, DockerError};
use crate::joblog::JobLog;

/// Which shell reads the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptShell {
    /// bash where the image has it, else sh (the runner's bash scripts also run in ash).
    Bash,
    /// POSIX sh.
    Sh,
}

impl ScriptShell {
    fn command(self) -> Vec<String> {
        let line = match self {
            ScriptShell::Bash => {
                "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi"
            }
            ScriptShell::Sh => "exec sh",
        };
        vec!["sh".into(), "-c".into(), line.into()]
    }
}

/// The end of a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptExit {
    /// The shell's exit code.
    pub code: i64,
    /// Whether the script was stopped because the stage was cancelled.
    pub cancelled: bool,
}

/// A future that completes when the stage must stop (SIGTERM from the runner).
pub type Cancel = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `script` in `container` and returns its exit code.
///
/// When `cancel` fires, every process of the container but its PID 1 gets SIGTERM, then
/// SIGKILL after `grace`: the runner's SIGTERM reaches only this process, not the exec'd
/// shell, so without this the script would run on inside the container.
pub async fn run_script(
    docker: &Docker,
    container: &str,
    shell: ScriptShell,
    script: Vec<u8>,
    grace: Duration,
    log: &JobLog,
    cancel: Cancel,
) -> Result<ScriptExit, DockerError> {
    let exec = docker
        .create_exec(
            container,
            ExecConfig {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                cmd: Some(shell.command()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            if is_not_found(&e) {
                DockerError::JobContainerMissing {
                    name: container.to_string(),
                }
            } else {
                DockerError::api(format!("create exec in {container}"))(e)
            }
        })?;
    let started = docker
        .start_exec(&exec.id, None::<StartExecOptions>)
        .await
        .map_err(DockerError::api(format!("start exec in {container}")))?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(DockerError::Api {
            action: format!("start exec in {container}"),
            source: bollard::errors::Error::DockerStreamError {
                error: "the engine detached an attached exec".into(),
            },
        });
    };
    // Written concurrently with reading: a script that prints a lot before reading all of
    // its stdin would otherwise deadlock on socket buffers.
    let writer = tokio::spawn(async move {
        let _ = input.write_all(&script).await;
        // Without the half-close the shell never sees EOF and the exec never ends.
        let _ = input.shutdown().await;
    });

    let mut cancel = cancel;
    let mut cancelled = false;
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(chunk)) => log.raw(&chunk.into_bytes()),
                Some(Err(e)) => {
                    log.end_raw();
                    return Err(DockerError::api(format!("read script output in {container}"))(e));
                }
                None => break,
            },
            _ = &mut cancel, if !cancelled => {
                cancelled = true;
                stop_processes(docker, container, grace, &mut output, log).await;
                break;
            }
        }
    }
    log.end_raw();
    writer.abort();
    let code = exit_code(docker, container, &exec.id, cancelled).await?;
    Ok(ScriptExit { code, cancelled })
}

type Output = std::pin::Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
            > + Send,
    >,
>;

/// SIGTERM to every process in the container but PID 1, output drained for `grace`, then
/// SIGKILL for whatever is left.
async fn stop_processes(
    docker: &Docker,
    container: &str,
    grace: Duration,
    output: &mut Output,
    log: &JobLog,
) {
    signal_all(docker, container, "TERM").await;
    let drained = tokio::time::timeout(grace, async {
        while let Some(Ok(chunk)) = output.next().await {
            log.raw(&chunk.into_bytes());
        }
    })
    .await;
    if drained.is_err() {
        signal_all(docker, container, "KILL").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(chunk)) = output.next().await {
                log.raw(&chunk.into_bytes());
            }
        })
        .await;
    }
}

async fn signal_all(docker: &Docker, container: &str, signal: &str) {
    let config = ExecConfig {
        cmd: Some(vec!["kill".into(), format!("-{signal}"), "-1".into()]),
        ..Default::default()
    };
    if let Ok(exec) = docker.create_exec(container, config).await {
        let detached = StartExecOptions {
            detach: true,
            ..Default::default()
        };
        let _ = docker.start_exec(&exec.id, Some(detached)).await;
    }
}

async fn exit_code(
    docker: &Docker,
    container: &str,
    exec_id: &str,
    cancelled: bool,
) -> Result<i64, DockerError> {
    // The output stream ends when the process exits; the engine may still be recording the
    // exit code for a moment.
    for _ in 0..50 {
        let inspect = docker
            .inspect_exec(exec_id)
            .await
            .map_err(DockerError::api("inspect exec"))?;
        if let (Some(false), Some(code)) = (inspect.running, inspect.exit_code) {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if cancelled {
        // It outlived SIGKILL's grace: report what the runner expects of a killed script.
        return Ok(137);
    }
    // The output ended but the script runs on: the connection to the engine broke.
    Err(DockerError::ConnectionLost {
        name: container.to_string(),
    })
}
