//! One stage of a job in its task: the script through the agent of the build container
//! (the job's steps) or the helper container (git, caches, artifacts), each shell picked
//! as on the docker executor, the output into the job log as it comes.

use std::net::SocketAddr;
use std::time::Duration;

use super::task_definition::{BUILD_PORT, HELPER_PORT};
use super::EcsJobError;
use crate::agent::{self, Endpoint, JobSecret, StageCommand, StageEnd};
use crate::docker::{helper_shell, Cancel, DETECT_SHELL};
use crate::joblog::JobLog;
use crate::protocol::Placement;
use crate::settings::Settings;

/// How long `prepare` waits for both agents to listen once the task runs: the init
/// container has installed the agent, but the containers may still be starting it.
const AGENT_PATIENCE: Duration = Duration::from_secs(60);

/// The agent serving stages placed at `placement`.
pub fn endpoint(address: std::net::IpAddr, placement: Placement, secret: JobSecret) -> Endpoint {
    let port = match placement {
        Placement::BuildContainer => BUILD_PORT,
        Placement::HelperContainer => HELPER_PORT,
    };
    Endpoint {
        address: SocketAddr::new(address, port),
        secret,
    }
}

/// What a stage runs at `placement`: the first shell of the image reading the script; in
/// the helper, what the docker executor's helper container runs.
pub fn command(placement: Placement, settings: &Settings) -> StageCommand {
    let script = match placement {
        Placement::BuildContainer => DETECT_SHELL.to_string(),
        Placement::HelperContainer => helper_shell(
            &settings.builds_dir.display().to_string(),
            &settings.cache_dir.display().to_string(),
        ),
    };
    StageCommand {
        argv: vec!["sh".into(), "-c".into(), script],
        env: Vec::new(),
        workdir: None,
    }
}

/// Runs `script` behind `endpoint`, its output into the job log.
pub async fn run(
    endpoint: &Endpoint,
    placement: Placement,
    script: Vec<u8>,
    settings: &Settings,
    log: &JobLog,
    cancel: Cancel,
) -> Result<StageEnd, EcsJobError> {
    let end = agent::run(
        endpoint,
        &command(placement, settings),
        script,
        |_, bytes| log.raw(bytes),
        cancel,
        settings.docker.cancel_grace,
    )
    .await;
    log.end_raw();
    Ok(end?)
}

/// Waits until both agents of the task accept connections.
pub async fn wait_for_agents(address: std::net::IpAddr) -> Result<(), EcsJobError> {
    let deadline = tokio::time::Instant::now() + AGENT_PATIENCE;
    for port in [BUILD_PORT, HELPER_PORT] {
        let target = SocketAddr::new(address, port);
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(target),
            )
            .await;
            match attempt {
                Ok(Ok(_)) => break,
                Ok(Err(source)) if tokio::time::Instant::now() >= deadline => {
                    return Err(agent::AgentError::Connect {
                        address: target,
                        source,
                    }
                    .into())
                }
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(agent::AgentError::Connect {
                        address: target,
                        source: std::io::ErrorKind::TimedOut.into(),
                    }
                    .into())
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}
