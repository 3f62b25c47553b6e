//! Running one stage, as the docker executor does: attach to the stage's (stopped)
//! container, start it, write the script on its stdin, stream its output, and take its exit
//! code when it stops. Every stage is a fresh start of the container's command through the
//! image's entrypoint, so nothing of one stage outlives it; cancel stops every process of the
//! container, whatever the image contains.

use std::future::Future;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::StartExecOptions;
use bollard::models::ExecConfig;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, KillContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{is_not_found, DockerError};
use crate::joblog::JobLog;

/// A future that completes when the stage must stop (SIGTERM from the runner).
pub type Cancel = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The end of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageExit {
    /// The container's exit code.
    pub code: i64,
    /// Whether the stage was stopped because it was cancelled.
    pub cancelled: bool,
}

/// Signals every process of a container but its PID 1 (and the signalling shell): `kill` is a
/// shell builtin, so images without procps can be stopped too.
const TERM_ALL: &str = "kill -TERM -1 2>/dev/null; exit 0";

/// Runs `script` in `container` and returns its exit code.
///
/// On cancel every process but PID 1 gets SIGTERM (the runner's generated script exits 1 on
/// it), then after `grace` the container is killed: PID 1 dies and the kernel takes every
/// other process of the container with it.
pub async fn run_stage(
    docker: &Docker,
    container: &str,
    script: Vec<u8>,
    grace: Duration,
    log: &JobLog,
    mut cancel: Cancel,
) -> Result<StageExit, DockerError> {
    let options = AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .build();
    let attached = docker
        .attach_container(container, Some(options))
        .await
        .map_err(|e| missing_or(container, "attach to", e))?;
    let (mut output, mut input) = (attached.output, attached.input);
    docker
        .start_container(container, None)
        .await
        .map_err(|e| missing_or(container, "start", e))?;
    // Written concurrently with reading: a script that prints a lot before reading all of
    // its stdin would otherwise deadlock on socket buffers.
    let writer = tokio::spawn(async move {
        let _ = input.write_all(&script).await;
        // Without the half-close the shell never sees EOF and the stage never ends.
        let _ = input.shutdown().await;
    });
    let mut cancelled = false;
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(chunk)) => log.raw(&bytes_of(chunk)),
                Some(Err(_)) | None => break,
            },
            _ = &mut cancel, if !cancelled => {
                cancelled = true;
                stop(docker, container, grace, &mut output, log).await;
                break;
            }
        }
    }
    log.end_raw();
    writer.abort();
    let code = exit_code(docker, container).await?;
    Ok(StageExit { code, cancelled })
}

fn bytes_of(chunk: LogOutput) -> bytes::Bytes {
    chunk.into_bytes()
}

fn missing_or(container: &str, action: &str, e: bollard::errors::Error) -> DockerError {
    if is_not_found(&e) {
        DockerError::ContainerMissing {
            name: container.to_string(),
        }
    } else {
        DockerError::api(format!("{action} container {container}"))(e)
    }
}

type Output = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;

/// SIGTERM to every process but PID 1, output drained for `grace`, then SIGKILL to the
/// container.
async fn stop(
    docker: &Docker,
    container: &str,
    grace: Duration,
    output: &mut Output,
    log: &JobLog,
) {
    let term = ExecConfig {
        cmd: Some(vec!["sh".into(), "-c".into(), TERM_ALL.into()]),
        ..Default::default()
    };
    if let Ok(exec) = docker.create_exec(container, term).await {
        let detached = StartExecOptions {
            detach: true,
            ..Default::default()
        };
        let _ = docker.start_exec(&exec.id, Some(detached)).await;
    }
    let drained = tokio::time::timeout(grace, async {
        while let Some(Ok(chunk)) = output.next().await {
            log.raw(&bytes_of(chunk));
        }
    })
    .await;
    if drained.is_err() {
        let kill = KillContainerOptionsBuilder::default()
            .signal("KILL")
            .build();
        let _ = docker.kill_container(container, Some(kill)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(chunk)) = output.next().await {
                log.raw(&bytes_of(chunk));
            }
        })
        .await;
    }
}

/// The exit code of the container's last run, once it has stopped.
async fn exit_code(docker: &Docker, container: &str) -> Result<i64, DockerError> {
    // The output stream ends when PID 1 exits; if the container still runs, the connection
    // to the engine broke instead.
    let running = docker
        .inspect_container(container, None)
        .await
        .ok()
        .and_then(|c| c.state)
        .and_then(|s| s.running);
    if running != Some(false) {
        let wait = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let waited = tokio::time::timeout(
            Duration::from_secs(2),
            docker.wait_container(container, Some(wait)).next(),
        )
        .await;
        return match waited {
            Ok(Some(Ok(r))) => Ok(r.status_code),
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => {
                Ok(code)
            }
            _ => Err(DockerError::ConnectionLost {
                name: container.to_string(),
            }),
        };
    }
    let state = docker
        .inspect_container(container, None)
        .await
        .map_err(DockerError::api(format!("inspect container {container}")))?
        .state
        .unwrap_or_default();
    Ok(state.exit_code.unwrap_or(1))
}
