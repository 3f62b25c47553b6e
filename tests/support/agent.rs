//! The job agent as a local process: the real binary serving on loopback, for the agent's
//! tests and the benchmark.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use gitlab_ecs_executor::agent::{self, Endpoint, JobSecret};

/// A running agent, stopped when dropped.
pub struct LocalAgent {
    /// Its process.
    pub child: Child,
    /// Where it listens.
    pub address: SocketAddr,
    /// The secret it admits.
    pub secret: JobSecret,
}

impl LocalAgent {
    /// Starts `agent serve` on a loopback port of its choosing.
    pub fn start() -> LocalAgent {
        let secret = JobSecret::generate().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gitlab-ecs-executor"))
            .args(["agent", "serve", "--listen", "127.0.0.1:0"])
            .env(agent::SECRET_DIGEST_VARIABLE, secret.digest_hex())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        LocalAgent {
            child,
            address,
            secret,
        }
    }

    /// How the runner's side reaches it.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            address: self.address,
            secret: self.secret.clone(),
        }
    }
}

impl Drop for LocalAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
