//! The agent: the executor's own binary inside a job's ECS task, serving the job's stages to
//! the runner-side executor over the VPC, without SSH or ECS Exec: the script on stdin,
//! stdout and stderr apart, the exact exit code, signals for cancel and no idle limit.
//!
//! One TLS connection per stage (`client.rs` dials, `serve.rs` answers), framed as
//! `wire.rs` says. TLS keeps the script and the job's variables from anyone on the path;
//! the agent runs nothing for a peer that does not present the job's secret, of which the
//! task's overrides (readable by anyone with `ecs:DescribeTasks`) show only the SHA-256
//! (`secret.rs`). The runner knows the agent by the address ECS gave the task, so the
//! agent's certificate is a fresh self-signed one (`tls.rs`).

mod client;
mod error;
mod hosts;
mod install;
mod secret;
mod serve;
mod socket;
mod tls;
mod wire;

pub use client::{run, Endpoint, Output, StageCommand, StageEnd};
pub use error::AgentError;
pub use install::{install, INSTALLED_NAME};
pub use secret::JobSecret;
pub use serve::{serve, Serve};

/// The environment variable that gives the agent the SHA-256 (hex) of the job's secret.
pub const SECRET_DIGEST_VARIABLE: &str = "GITLAB_ECS_AGENT_SECRET_SHA256";
