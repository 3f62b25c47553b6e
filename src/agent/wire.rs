//! The agent's framing: one tag byte, a big-endian u32 length, the payload. A stage is one
//! connection: `Hello` (version, secret) and `Run` from the runner, then `Stdin` chunks,
//! `StdinEnd` and any `Signal`; `Stdout`, `Stderr` and one `Exit` (or `Refused`) back.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version a `Hello` carries.
pub(super) const VERSION: u8 = 1;

/// The largest frame either side accepts (an output chunk, the stage's environment).
pub(super) const MAX_FRAME: usize = 4 << 20;

/// The largest frame before the peer has shown the secret.
pub(super) const MAX_HELLO: usize = 256;

/// What to run for a stage.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RunSpec {
    /// The program and its arguments (the image's entrypoint, then the shell).
    pub argv: Vec<String>,
    /// Variables added to the container's own environment.
    pub env: Vec<(String, String)>,
    /// Where it starts; `None`: the container's working directory.
    pub workdir: Option<String>,
}

/// How the stage's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ExitReport {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
}

/// One frame.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Frame {
    Hello { version: u8, secret: Vec<u8> },
    Admitted,
    Run(RunSpec),
    Stdin(Vec<u8>),
    StdinEnd,
    Signal(i32),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(ExitReport),
    Refused(String),
}

/// Never the secret, the script or the variables: a frame must not leak them through `{:?}`.
impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Frame::Hello { version, .. } => write!(f, "Hello(v{version}, secret …)"),
            Frame::Admitted => f.write_str("Admitted"),
            Frame::Run(spec) => write!(f, "Run({:?}, {} variables)", spec.argv, spec.env.len()),
            Frame::Stdin(b) => write!(f, "Stdin({} bytes)", b.len()),
            Frame::StdinEnd => f.write_str("StdinEnd"),
            Frame::Signal(sig) => write!(f, "Signal({sig})"),
            Frame::Stdout(b) => write!(f, "Stdout({} bytes)", b.len()),
            Frame::Stderr(b) => write!(f, "Stderr({} bytes)", b.len()),
            Frame::Exit(report) => write!(f, "Exit({report:?})"),
            Frame::Refused(reason) => write!(f, "Refused({reason})"),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(super) enum WireError {
    /// The socket failed or closed inside a frame.
    Io(std::io::Error),
    /// The bytes are not a frame of this version.
    Malformed(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Malformed(why) => f.write_str(why),
        }
    }
}

fn tag(frame: &Frame) -> u8 {
    match frame {
        Frame::Hello { .. } => 1,
        Frame::Admitted => 20,
        Frame::Run(_) => 2,
        Frame::Stdin(_) => 3,
        Frame::StdinEnd => 4,
        Frame::Signal(_) => 5,
        Frame::Stdout(_) => 16,
        Frame::Stderr(_) => 17,
        Frame::Exit(_) => 18,
        Frame::Refused(_) => 19,
    }
}

fn payload(frame: &Frame) -> Vec<u8> {
    match frame {
        Frame::Hello { version, secret } => {
            let mut bytes = vec![*version];
            bytes.extend_from_slice(secret);
            bytes
        }
        // Serializing plain strings and integers cannot fail.
        Frame::Run(spec) => serde_json::to_vec(spec).unwrap_or_default(),
        Frame::Exit(report) => serde_json::to_vec(report).unwrap_or_default(),
        Frame::Stdin(bytes) | Frame::Stdout(bytes) | Frame::Stderr(bytes) => bytes.clone(),
        Frame::StdinEnd | Frame::Admitted => Vec::new(),
        Frame::Signal(signal) => signal.to_be_bytes().to_vec(),
        Frame::Refused(reason) => reason.as_bytes().to_vec(),
    }
}

/// Writes one frame.
pub(super) async fn write(
    out: &mut (impl AsyncWrite + Unpin),
    frame: &Frame,
) -> std::io::Result<()> {
    let body = payload(frame);
    let mut bytes = Vec::with_capacity(5 + body.len());
    bytes.push(tag(frame));
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    out.write_all(&bytes).await?;
    out.flush().await
}

/// Reads one frame of at most `limit` bytes; `None` when the peer closed between frames.
pub(super) async fn read(
    input: &mut (impl AsyncRead + Unpin),
    limit: usize,
) -> Result<Option<Frame>, WireError> {
    let mut head = [0u8; 5];
    match input.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(WireError::Io(e)),
    }
    input
        .read_exact(&mut head[1..])
        .await
        .map_err(WireError::Io)?;
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if length > limit {
        return Err(WireError::Malformed(format!(
            "a frame of {length} bytes, over the limit of {limit}"
        )));
    }
    let mut body = vec![0u8; length];
    input.read_exact(&mut body).await.map_err(WireError::Io)?;
    decode(head[0], body).map(Some)
}

fn decode(tag: u8, body: Vec<u8>) -> Result<Frame, WireError> {
    let json = |what: &str| WireError::Malformed(format!("an unreadable {what} frame"));
    Ok(match tag {
        1 => match body.split_first() {
            Some((version, secret)) => Frame::Hello {
                version: *version,
                secret: secret.to_vec(),
            },
            None => return Err(WireError::Malformed("an empty hello".into())),
        },
        2 => Frame::Run(serde_json::from_slice(&body).map_err(|_| json("run"))?),
        3 => Frame::Stdin(body),
        4 => Frame::StdinEnd,
        5 => match <[u8; 4]>::try_from(body.as_slice()) {
            Ok(bytes) => Frame::Signal(i32::from_be_bytes(bytes)),
            Err(_) => {
                return Err(WireError::Malformed(
                    "a signal frame of the wrong size".into(),
                ))
            }
        },
        16 => Frame::Stdout(body),
        17 => Frame::Stderr(body),
        18 => Frame::Exit(serde_json::from_slice(&body).map_err(|_| json("exit"))?),
        19 => Frame::Refused(String::from_utf8_lossy(&body).into_owned()),
        20 => Frame::Admitted,
        other => {
            return Err(WireError::Malformed(format!(
                "an unknown frame type {other}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_frame_reads_back_as_written_and_a_close_between_frames_is_the_end() {
        let frames = vec![
            Frame::Hello {
                version: VERSION,
                secret: vec![7; 32],
            },
            Frame::Run(RunSpec {
                argv: vec!["sh".into(), "-e".into()],
                env: vec![
                    ("CI_JOB_ID".into(), "42".into()),
                    ("EMPTY".into(), String::new()),
                ],
                workdir: Some("/builds/group/app".into()),
            }),
            Frame::Stdin(b"echo hi\n".to_vec()),
            Frame::Admitted,
            Frame::StdinEnd,
            Frame::Signal(15),
            Frame::Stdout(vec![0, 255, 10]),
            Frame::Stderr(Vec::new()),
            Frame::Exit(ExitReport {
                code: None,
                signal: Some(9),
            }),
            Frame::Refused("the job's secret does not match".into()),
        ];
        let mut bytes = Vec::new();
        for frame in &frames {
            write(&mut bytes, frame).await.unwrap();
        }
        let mut input = bytes.as_slice();
        for frame in &frames {
            assert_eq!(
                read(&mut input, MAX_FRAME).await.unwrap().as_ref(),
                Some(frame)
            );
        }
        assert!(read(&mut input, MAX_FRAME).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_truncated_and_unknown_frames_are_refused() {
        let mut bytes = Vec::new();
        write(&mut bytes, &Frame::Stdin(vec![0; 300]))
            .await
            .unwrap();
        assert!(matches!(
            read(&mut bytes.as_slice(), MAX_HELLO).await,
            Err(WireError::Malformed(_))
        ));
        let truncated = &bytes[..100];
        assert!(matches!(
            read(&mut &truncated[..], MAX_FRAME).await,
            Err(WireError::Io(_))
        ));
        let unknown = [99u8, 0, 0, 0, 0];
        assert!(matches!(
            read(&mut &unknown[..], MAX_FRAME).await,
            Err(WireError::Malformed(_))
        ));
    }
}
