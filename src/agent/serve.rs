//! The agent's side: listen, and for each connection that presents the job's secret run the
//! stage it asks for in a process group of its own, stream its stdout and stderr back apart,
//! pass on the signals the runner sends, and end with its exit code. When the stage's
//! process exits, what it left running in its group is killed, as the docker executor's
//! container stop does, so nothing of a stage outlives it or holds its output open.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::secret::Digest;
use super::wire::{self, ExitReport, Frame, RunSpec, MAX_FRAME, MAX_HELLO, VERSION};
use super::{hosts, tls, AgentError};

/// How long a peer has to finish the handshake and show the secret.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the stage's group has after SIGTERM when the runner is gone.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// How long the output may stay open after the stage's process exited.
const DRAIN: Duration = Duration::from_secs(3);

/// At most this many peers at once may be connecting and showing the secret.
const UNADMITTED: usize = 64;

/// The most script a stage may have queued for its shell.
const MAX_QUEUED_STDIN: usize = 64 << 20;

/// Output is sent in chunks of at most this much.
const CHUNK: usize = 32 * 1024;

type Reader = ReadHalf<TlsStream<TcpStream>>;
type Writer = WriteHalf<TlsStream<TcpStream>>;

/// How the agent serves.
#[derive(Debug, Clone)]
pub struct Serve<'a> {
    /// The address and port to listen on.
    pub listen: &'a str,
    /// The SHA-256 (hex) of the job's secret.
    pub digest: &'a str,
    /// The job's service aliases, answered on 127.0.0.1.
    pub aliases: &'a [String],
    /// The container's hosts file they go into.
    pub hosts_file: &'a Path,
}

/// Serves stages to peers holding the job's secret until SIGTERM; `listening` is told the
/// bound address first.
pub async fn serve(how: &Serve<'_>, listening: impl FnOnce(SocketAddr)) -> Result<(), AgentError> {
    let listen = how.listen;
    let digest = Digest::parse(how.digest).ok_or(AgentError::NoSecretDigest {
        given: !how.digest.is_empty(),
    })?;
    if !how.aliases.is_empty() {
        if let Err(e) = hosts::add_aliases(how.hosts_file, how.aliases) {
            tracing::warn!(
                "cannot write the service aliases {} into {}: {e}; the services answer on 127.0.0.1",
                how.aliases.join(", "),
                how.hosts_file.display()
            );
        }
    }
    let acceptor = TlsAcceptor::from(tls::server_config()?);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| AgentError::Listen {
            address: listen.to_string(),
            source,
        })?;
    // ECS stops a task with SIGTERM to each container's PID 1: the agent itself, or the init
    // process that passes it on. A PID 1 without a handler would ignore it and be killed only
    // at the stop timeout.
    let mut terminate = signal(SignalKind::terminate()).map_err(|source| AgentError::Listen {
        address: listen.to_string(),
        source,
    })?;
    if let Ok(address) = listener.local_addr() {
        listening(address);
    }
    let unadmitted = Arc::new(Semaphore::new(UNADMITTED));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = terminate.recv() => return Ok(()),
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // A peer that gave up during accept, or a full fd table: wait for the next
            // rather than spin on a listener that stays readable.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        super::socket::configure(&stream);
        // Peers that have not shown the secret cannot hold more than a few descriptors.
        let Ok(permit) = unadmitted.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let acceptor = acceptor.clone();
        let digest = digest.clone();
        tokio::spawn(async move {
            if let Err(why) = connection(stream, acceptor, &digest, permit).await {
                tracing::warn!("stage connection from {peer} ended: {why}");
            }
        });
    }
}

async fn connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    digest: &Digest,
    permit: OwnedSemaphorePermit,
) -> Result<(), String> {
    let tls = tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| "no TLS handshake in time".to_string())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let hello = tokio::time::timeout(HELLO_TIMEOUT, wire::read(&mut reader, MAX_HELLO)).await;
    let admitted = match hello {
        Ok(Ok(Some(Frame::Hello { version, secret }))) if version == VERSION => {
            digest.admits(&secret)
        }
        Ok(Ok(Some(Frame::Hello { version, .. }))) => {
            refuse(
                &mut writer,
                &format!("protocol version {version} is not {VERSION}"),
            )
            .await;
            return Err("another protocol version".into());
        }
        _ => false,
    };
    if !admitted {
        refuse(&mut writer, "the job's secret does not match").await;
        return Err("a peer without the job's secret".into());
    }
    drop(permit);
    // The runner sends the stage's variables and script only once it knows it is admitted.
    wire::write(&mut writer, &Frame::Admitted)
        .await
        .map_err(|e| e.to_string())?;
    let spec = match wire::read(&mut reader, MAX_FRAME).await {
        Ok(Some(Frame::Run(spec))) => spec,
        _ => {
            refuse(&mut writer, "expected the stage to run").await;
            return Err("no stage asked".into());
        }
    };
    run(spec, reader, writer).await
}

async fn refuse(writer: &mut Writer, reason: &str) {
    let _ = wire::write(writer, &Frame::Refused(reason.to_string())).await;
    let _ = writer.shutdown().await;
}

fn spawn(spec: &RunSpec) -> std::io::Result<Child> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("an empty command"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a signal reaches everything the stage started.
        .process_group(0);
    if let Some(dir) = &spec.workdir {
        command.current_dir(dir);
    }
    command.spawn()
}

/// What the runner's side of the connection asks while the stage runs.
enum Control {
    Signal(i32),
    /// The runner is gone (closed, or the connection broke).
    Gone,
}

async fn run(spec: RunSpec, reader: Reader, mut writer: Writer) -> Result<(), String> {
    let mut child = match spawn(&spec) {
        Ok(child) => child,
        Err(e) => {
            // As a shell reports a command it cannot run.
            let program = spec.argv.first().map(String::as_str).unwrap_or("");
            let message = format!("gitlab-ecs-executor agent: cannot run `{program}`: {e}\n");
            let _ = wire::write(&mut writer, &Frame::Stderr(message.into_bytes())).await;
            let report = ExitReport {
                code: Some(127),
                signal: None,
            };
            return wire::write(&mut writer, &Frame::Exit(report))
                .await
                .map_err(|e| e.to_string());
        }
    };
    let mut group = child.id().map(|pid| pid as i32);
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(8);
    let mut pumps = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(stdout, Frame::Stdout, out_tx.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(stderr, Frame::Stderr, out_tx.clone())));
    }
    drop(out_tx);
    let (control_tx, mut control_rx) = mpsc::channel::<Control>(4);
    // Frames are read in a task of their own: a read cut short by `select!` would lose bytes.
    tokio::spawn(listen(reader, child.stdin.take(), control_tx));
    let mut status: Option<ExitStatus> = None;
    let mut outputs_open = true;
    let mut runner_gone = false;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut drain_until: Option<tokio::time::Instant> = None;
    while status.is_none() || outputs_open {
        tokio::select! {
            frame = out_rx.recv(), if outputs_open => match frame {
                Some(frame) if !runner_gone => {
                    if wire::write(&mut writer, &frame).await.is_err() {
                        runner_gone = true;
                        signal_group(group, libc::SIGTERM);
                        kill_at = Some(tokio::time::Instant::now() + ORPHAN_GRACE);
                    }
                }
                Some(_) => {}
                None => outputs_open = false,
            },
            control = control_rx.recv(), if !runner_gone => match control {
                Some(Control::Signal(sig)) => signal_group(group, sig),
                Some(Control::Gone) | None => {
                    runner_gone = true;
                    if status.is_none() {
                        signal_group(group, libc::SIGTERM);
                        kill_at = Some(tokio::time::Instant::now() + ORPHAN_GRACE);
                    }
                }
            },
            exited = child.wait(), if status.is_none() => {
                status = Some(exited.map_err(|e| e.to_string())?);
                // What the stage left behind in its group must not hold its output open.
                signal_group(group, libc::SIGKILL);
                // The group's leader is reaped: its id may be reused from now on.
                group = None;
                drain_until = Some(tokio::time::Instant::now() + DRAIN);
            },
            // What left the group (`setsid`, `ssh -f`, `set -m`) may still hold the output
            // open: the stage ends anyway, with what it printed until then.
            _ = sleep_until(drain_until), if drain_until.is_some() && outputs_open => {
                for pump in &pumps {
                    pump.abort();
                }
                outputs_open = false;
            },
            _ = sleep_until(kill_at), if kill_at.is_some() && status.is_none() => {
                signal_group(group, libc::SIGKILL);
                kill_at = None;
            },
        }
    }
    if runner_gone {
        return Err("the runner left before the stage ended".into());
    }
    let report = match status {
        Some(s) => report(s),
        None => return Err("no exit status".into()),
    };
    wire::write(&mut writer, &Frame::Exit(report))
        .await
        .map_err(|e| e.to_string())?;
    let _ = writer.shutdown().await;
    Ok(())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn report(status: ExitStatus) -> ExitReport {
    use std::os::unix::process::ExitStatusExt;
    ExitReport {
        code: status.code(),
        signal: status.signal(),
    }
}

/// Sends `sig` to the stage's process group.
fn signal_group(group: Option<i32>, sig: i32) {
    if let Some(pid) = group.filter(|p| *p > 0) {
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

/// Reads the runner's frames: stdin to the stage's process (through a writer of its own, so
/// a shell that reads its script slowly never keeps a signal waiting), signals to the
/// stage's loop.
async fn listen(
    mut reader: Reader,
    stdin: Option<tokio::process::ChildStdin>,
    control: mpsc::Sender<Control>,
) {
    let (script_tx, script_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let queued = Arc::new(AtomicUsize::new(0));
    if let Some(stdin) = stdin {
        tokio::spawn(write_stdin(stdin, script_rx, queued.clone()));
    }
    let mut script = Some(script_tx);
    loop {
        match wire::read(&mut reader, MAX_FRAME).await {
            Ok(Some(Frame::Stdin(bytes))) => {
                let total = queued.fetch_add(bytes.len(), Ordering::SeqCst) + bytes.len();
                // Over the cap the rest of the script is dropped: the shell sees its end.
                if total > MAX_QUEUED_STDIN {
                    script = None;
                }
                // A stage that stops reading its script only loses the rest of it.
                if let Some(tx) = &script {
                    if tx.send(bytes).is_err() {
                        script = None;
                    }
                }
            }
            Ok(Some(Frame::StdinEnd)) => script = None,
            Ok(Some(Frame::Signal(sig))) if allowed(sig) => {
                if control.send(Control::Signal(sig)).await.is_err() {
                    return;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                let _ = control.send(Control::Gone).await;
                return;
            }
        }
    }
}

/// Writes the queued script into the stage's stdin, closing it when the queue ends.
async fn write_stdin(
    mut stdin: tokio::process::ChildStdin,
    mut script: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(bytes) = script.recv().await {
        queued.fetch_sub(bytes.len(), Ordering::SeqCst);
        if stdin.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// The signals a runner may send: those the runner itself uses to stop a stage.
fn allowed(sig: i32) -> bool {
    matches!(sig, libc::SIGTERM | libc::SIGKILL | libc::SIGINT)
}

async fn pump(
    mut output: impl AsyncRead + Unpin,
    frame: fn(Vec<u8>) -> Frame,
    to: mpsc::Sender<Frame>,
) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match output.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(frame(buffer[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}
