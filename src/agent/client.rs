//! The runner's side: run one stage in a job's task through its agent and take its exact
//! exit code. A cancel sends SIGTERM to the stage's process group and, after the grace
//! period, SIGKILL, as the runner does to a local stage.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use super::secret::JobSecret;
use super::wire::{self, Frame, RunSpec, WireError, MAX_FRAME, VERSION};
use super::{tls, AgentError};
use crate::docker::Cancel;

/// How long connecting and the TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a stage may take to report its end after SIGKILL.
const AFTER_KILL: Duration = Duration::from_secs(30);

/// The script is sent in chunks of at most this much.
const CHUNK: usize = 64 * 1024;

/// A job's agent: where it listens and the secret it admits.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The task's address and the agent's port.
    pub address: SocketAddr,
    /// The job's secret.
    pub secret: JobSecret,
}

/// What a stage runs.
#[derive(Clone, PartialEq, Eq)]
pub struct StageCommand {
    /// The program and its arguments: the image's entrypoint, then the shell.
    pub argv: Vec<String>,
    /// Variables added to the container's environment.
    pub env: Vec<(String, String)>,
    /// Where it starts; `None`: the container's working directory.
    pub workdir: Option<String>,
}

/// Never the variables' values: they hold the job's secrets.
impl std::fmt::Debug for StageCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageCommand")
            .field("argv", &self.argv)
            .field(
                "variables",
                &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("workdir", &self.workdir)
            .finish()
    }
}

/// Which stream a chunk of the stage's output came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Its stdout.
    Stdout,
    /// Its stderr.
    Stderr,
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageEnd {
    /// Its exit code; 128 + the signal's number when a signal ended it, as a shell says.
    pub code: i32,
    /// Whether it was stopped because it was cancelled.
    pub cancelled: bool,
}

/// Runs `command` with `script` on its stdin in the task behind `endpoint`, handing each
/// chunk of its output to `output` as it comes.
pub async fn run(
    endpoint: &Endpoint,
    command: &StageCommand,
    script: Vec<u8>,
    mut output: impl FnMut(Output, &[u8]),
    mut cancel: Cancel,
    grace: Duration,
) -> Result<StageEnd, AgentError> {
    let address = endpoint.address;
    let connector = TlsConnector::from(tls::client_config()?);
    let server_name = tls::server_name()?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| AgentError::Connect {
            address,
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|source| AgentError::Connect { address, source })?;
    super::socket::configure(&tcp);
    let session = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| AgentError::Tls {
            address,
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|source| AgentError::Tls { address, source })?;
    let (mut reader, mut writer) = tokio::io::split(session);
    let lost = |detail: Option<String>| AgentError::ConnectionLost { address, detail };
    let hello = Frame::Hello {
        version: VERSION,
        secret: endpoint.secret.bytes().to_vec(),
    };
    wire::write(&mut writer, &hello)
        .await
        .map_err(|e| lost(Some(e.to_string())))?;
    // Nothing of the job (its variables, its script) goes out before the agent has taken
    // the secret: whoever else answers at the address learns no more than that.
    match tokio::time::timeout(CONNECT_TIMEOUT, wire::read(&mut reader, MAX_FRAME)).await {
        Ok(Ok(Some(Frame::Admitted))) => {}
        Ok(Ok(Some(Frame::Refused(reason)))) => {
            return Err(AgentError::Refused { address, reason })
        }
        Ok(Ok(Some(other))) => {
            return Err(AgentError::Protocol(format!(
                "the agent answered the secret with {}",
                frame_name(&other)
            )))
        }
        Ok(Ok(None)) => return Err(lost(None)),
        Ok(Err(WireError::Io(e))) => return Err(lost(Some(e.to_string()))),
        Ok(Err(WireError::Malformed(why))) => return Err(AgentError::Protocol(why)),
        Err(_) => return Err(lost(Some("no answer to the secret in time".into()))),
    }

    let (to_agent, outbox) = mpsc::channel::<Frame>(4);
    // Signals overtake the script: a cancel must not wait behind stdin a shell reads slowly.
    let (signals, urgent) = mpsc::unbounded_channel::<Frame>();
    tokio::spawn(send_all(writer, urgent, outbox));
    let run = Frame::Run(RunSpec {
        argv: command.argv.clone(),
        env: command.env.clone(),
        workdir: command.workdir.clone(),
    });
    to_agent.send(run).await.map_err(|_| lost(None))?;
    // The script goes in beside reading the output: a stage that prints before it has read
    // all of its script would otherwise stall on full buffers.
    let script_to = to_agent.clone();
    tokio::spawn(async move {
        for chunk in script.chunks(CHUNK) {
            if script_to.send(Frame::Stdin(chunk.to_vec())).await.is_err() {
                return;
            }
        }
        let _ = script_to.send(Frame::StdinEnd).await;
    });
    drop(to_agent);

    let (frames_tx, mut frames) = mpsc::channel::<Result<Option<Frame>, WireError>>(8);
    // Read in a task of its own: a read cut short by `select!` would lose bytes.
    tokio::spawn(async move {
        loop {
            let frame = wire::read(&mut reader, MAX_FRAME).await;
            let last = !matches!(frame, Ok(Some(_)));
            if frames_tx.send(frame).await.is_err() || last {
                return;
            }
        }
    });

    let mut cancelled = false;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut give_up_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(Some(Frame::Stdout(bytes)))) => output(Output::Stdout, &bytes),
                Some(Ok(Some(Frame::Stderr(bytes)))) => output(Output::Stderr, &bytes),
                Some(Ok(Some(Frame::Exit(report)))) => {
                    let code = match (report.code, report.signal) {
                        (Some(code), _) => code,
                        (None, Some(signal)) => 128 + signal,
                        (None, None) => {
                            return Err(AgentError::Protocol("an exit without a code".into()))
                        }
                    };
                    return Ok(StageEnd { code, cancelled });
                }
                Some(Ok(Some(Frame::Refused(reason)))) => {
                    return Err(AgentError::Refused { address, reason })
                }
                Some(Ok(Some(other))) => {
                    return Err(AgentError::Protocol(format!(
                        "an unexpected frame from the agent: {}",
                        frame_name(&other)
                    )))
                }
                Some(Ok(None)) | None => return Err(lost(None)),
                Some(Err(WireError::Io(e))) => return Err(lost(Some(e.to_string()))),
                Some(Err(WireError::Malformed(why))) => return Err(AgentError::Protocol(why)),
            },
            _ = &mut cancel, if !cancelled => {
                cancelled = true;
                let _ = signals.send(Frame::Signal(libc::SIGTERM));
                kill_at = Some(tokio::time::Instant::now() + grace);
            },
            _ = sleep_until(kill_at), if kill_at.is_some() => {
                kill_at = None;
                let _ = signals.send(Frame::Signal(libc::SIGKILL));
                give_up_at = Some(tokio::time::Instant::now() + AFTER_KILL);
            },
            _ = sleep_until(give_up_at), if give_up_at.is_some() => {
                return Err(lost(Some(format!(
                    "no exit code {} s after SIGKILL",
                    AFTER_KILL.as_secs()
                ))));
            },
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn send_all(
    mut writer: tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>,
    mut urgent: mpsc::UnboundedReceiver<Frame>,
    mut outbox: mpsc::Receiver<Frame>,
) {
    let mut outbox_open = true;
    loop {
        let frame = tokio::select! {
            biased;
            frame = urgent.recv() => match frame {
                Some(frame) => frame,
                None => return,
            },
            frame = outbox.recv(), if outbox_open => match frame {
                Some(frame) => frame,
                None => {
                    outbox_open = false;
                    continue;
                }
            },
        };
        if wire::write(&mut writer, &frame).await.is_err() {
            return;
        }
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "hello",
        Frame::Admitted => "admission",
        Frame::Run(_) => "run",
        Frame::Stdin(_) => "stdin",
        Frame::StdinEnd => "end of stdin",
        Frame::Signal(_) => "signal",
        Frame::Stdout(_) => "stdout",
        Frame::Stderr(_) => "stderr",
        Frame::Exit(_) => "exit",
        Frame::Refused(_) => "refusal",
    }
}
