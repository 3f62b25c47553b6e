//! Why the agent or its client failed, naming the address and what to check.

use std::io;
use std::net::SocketAddr;

/// A failure of the agent transport.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent cannot listen.
    #[error("the agent cannot listen on {address}: {source}")]
    Listen {
        /// The address asked.
        address: String,
        /// Why.
        source: io::Error,
    },
    /// The binary could not be copied into the task volume.
    #[error("the agent cannot install itself into {}: {source}", .dir.display())]
    Install {
        /// The directory.
        dir: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The agent was started without the job secret's digest.
    #[error(
        "the agent needs {} (the SHA-256 of the job's secret, 64 hex digits); it was {}",
        super::SECRET_DIGEST_VARIABLE,
        if *.given { "malformed" } else { "not set" }
    )]
    NoSecretDigest {
        /// Whether it was set at all.
        given: bool,
    },
    /// No TLS identity could be made.
    #[error("the agent cannot make its TLS certificate: {0}")]
    Certificate(String),
    /// No random secret could be drawn.
    #[error("cannot draw a random job secret from the system")]
    Random,
    /// The agent cannot be reached.
    #[error(
        "cannot reach the job's agent at {address}: {source}. Check that the task's security \
         group lets the runner in on that port and that the task is still running"
    )]
    Connect {
        /// Where.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The TLS handshake failed.
    #[error("the TLS handshake with the job's agent at {address} failed: {source}")]
    Tls {
        /// Where.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The agent refused the stage.
    #[error("the job's agent at {address} refused the stage: {reason}")]
    Refused {
        /// Where.
        address: SocketAddr,
        /// What it said.
        reason: String,
    },
    /// The connection ended before the stage's exit code came.
    #[error(
        "the connection to the job's agent at {address} ended before the stage's exit code \
         came{}: the task may have stopped (see its stopped reason in ECS)",
        .detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    ConnectionLost {
        /// Where.
        address: SocketAddr,
        /// What the socket said, if anything.
        detail: Option<String>,
    },
    /// The peer sent something this version does not speak.
    #[error("the job's agent protocol was broken: {0}")]
    Protocol(String),
}
