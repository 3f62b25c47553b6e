//! Every job's network of its own, and what job networks may reach on the host.
//!
//! Each job gets a bridge network, services or not, so no job reaches another job's
//! containers (Docker isolates bridge networks from each other). Their bridges are named
//! with one prefix, [`BRIDGE_PREFIX`], so a fixed set of host firewall rules, installed
//! once and checked on every `prepare`, keeps them from the instance metadata addresses
//! (the instance role releases use) and from the runner host's own addresses (its
//! services, the Docker API over TCP, other jobs' published ports) while the internet stays
//! reachable. The release builds' `RUN` steps run on Docker's default bridge, whose traffic
//! to the metadata addresses the same rules drop.

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;
use bollard::Docker;
use tokio::process::Command;

use super::naming::{fnv1a, JobNames};
use super::DockerError;

/// Every job bridge's interface name starts with this, and only theirs.
pub const BRIDGE_PREFIX: &str = "gee";
/// The bridges of a runner whose jobs may reach the host (`docker.jobs_may_reach_host`).
const OPEN_BRIDGE_PREFIX: &str = "gen";
/// The interface of Docker's default bridge, where release builds run their `RUN` steps.
const DEFAULT_BRIDGE: &str = "docker0";

/// The metadata endpoints of the clouds the releases run in: EC2's instance metadata
/// (the instance role), ECS's task metadata and credentials, EKS Pod Identity. Amazon's DNS
/// at 169.254.169.253 stays reachable.
const METADATA: [&str; 3] = ["169.254.169.254", "169.254.170.2", "169.254.170.23"];

const FORWARD_CHAIN: &str = "GITLAB-ECS-EXECUTOR-FWD";
const INPUT_CHAIN: &str = "GITLAB-ECS-EXECUTOR-IN";

/// Whether a `network_mode` names a user-defined network, the only kind on which Docker
/// gives containers aliases (not `bridge`, `host`, `none`, `default` or `container:<id>`).
pub fn is_user_defined(mode: &str) -> bool {
    !matches!(mode, "" | "bridge" | "host" | "none" | "default") && !mode.starts_with("container:")
}

/// Creates the job's network: a bridge of its own whose interface the host rules know.
/// `guarded` false names the bridge so the rules pass it by (`docker.jobs_may_reach_host`).
pub async fn create_job_network(
    docker: &Docker,
    names: &JobNames,
    guarded: bool,
) -> Result<String, DockerError> {
    let name = names.network();
    let prefix = if guarded {
        BRIDGE_PREFIX
    } else {
        OPEN_BRIDGE_PREFIX
    };
    let bridge = bridge_name(prefix, names.key());
    docker
        .create_network(NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(names.labels("network")),
            options: Some(HashMap::from([(
                "com.docker.network.bridge.name".to_string(),
                bridge,
            )])),
            ..Default::default()
        })
        .await
        .map_err(DockerError::api(format!("create network {name}")))?;
    Ok(name)
}

/// A bridge interface name for the job `key`: the prefix and 48 bits of the key's hash, 15
/// characters, the most the kernel takes.
fn bridge_name(prefix: &str, key: &str) -> String {
    format!("{prefix}{:012x}", fnv1a(key) & 0xffff_ffff_ffff)
}

/// The host rules, as `iptables` arguments: chains of our own, jumped to for job bridges
/// (and, for the metadata addresses, the default bridge).
fn rules() -> Vec<Vec<String>> {
    let jobs = format!("{BRIDGE_PREFIX}+");
    let mut rules: Vec<Vec<&str>> = Vec::new();
    for address in METADATA {
        rules.push(vec!["-A", FORWARD_CHAIN, "-d", address, "-j", "DROP"]);
    }
    rules.extend([
        // Replies to what the host itself opened.
        vec![
            "-A",
            INPUT_CHAIN,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "RETURN",
        ],
        // A resolver the operator runs on the host (`docker.dns`).
        vec![
            "-A",
            INPUT_CHAIN,
            "-p",
            "udp",
            "--dport",
            "53",
            "-j",
            "RETURN",
        ],
        vec![
            "-A",
            INPUT_CHAIN,
            "-p",
            "tcp",
            "--dport",
            "53",
            "-j",
            "RETURN",
        ],
        vec!["-A", INPUT_CHAIN, "-j", "DROP"],
    ]);
    let mut all: Vec<Vec<String>> = rules
        .into_iter()
        .map(|r| r.into_iter().map(String::from).collect())
        .collect();
    for (parent, iface, chain) in [
        ("DOCKER-USER", jobs.as_str(), FORWARD_CHAIN),
        ("DOCKER-USER", DEFAULT_BRIDGE, FORWARD_CHAIN),
        ("INPUT", jobs.as_str(), INPUT_CHAIN),
    ] {
        all.push(
            ["-I", parent, "-i", iface, "-j", chain]
                .into_iter()
                .map(String::from)
                .collect(),
        );
    }
    all
}

/// Makes sure the host rules are in place; cheap when they are (one check per rule).
pub async fn guard_host() -> Result<(), DockerError> {
    // Concurrent prepares must not insert a rule twice between check and insert.
    let _lock = HostLock::take().await?;
    for chain in [FORWARD_CHAIN, INPUT_CHAIN] {
        // Fails when the chain exists: that is the usual case.
        let _ = iptables(&["-N", chain]).await;
    }
    for rule in rules() {
        let mut check = rule.clone();
        check[0] = "-C".into();
        let check: Vec<&str> = check.iter().map(String::as_str).collect();
        if iptables(&check).await.is_ok() {
            continue;
        }
        let add: Vec<&str> = rule.iter().map(String::as_str).collect();
        iptables(&add)
            .await
            .map_err(|message| DockerError::HostRules {
                rule: add.join(" "),
                message,
            })?;
    }
    Ok(())
}

async fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// An exclusive lock on the host rules among the executor's processes.
struct HostLock(std::fs::File);

impl HostLock {
    async fn take() -> Result<Self, DockerError> {
        let path = std::env::temp_dir().join("gitlab-ecs-executor-host-rules.lock");
        tokio::task::spawn_blocking(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // SAFETY: flock(2) on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(HostLock(file))
        })
        .await
        .map_err(|e| DockerError::HostRules {
            rule: "lock".into(),
            message: e.to_string(),
        })?
        .map_err(|e| DockerError::HostRules {
            rule: "lock".into(),
            message: e.to_string(),
        })
    }
}

impl Drop for HostLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocks the descriptor this value owns; closing it would unlock it too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_cover_job_bridges_and_the_default_bridge_and_spare_amazon_dns() {
        let text: Vec<String> = rules().iter().map(|r| r.join(" ")).collect();
        assert!(text.contains(&"-I INPUT -i gee+ -j GITLAB-ECS-EXECUTOR-IN".to_string()));
        assert!(text.contains(&"-I DOCKER-USER -i docker0 -j GITLAB-ECS-EXECUTOR-FWD".to_string()));
        assert!(text
            .iter()
            .any(|r| r.contains("169.254.169.254") && r.ends_with("DROP")));
        assert!(!text.iter().any(|r| r.contains("169.254.169.253")));
        // The chains' rules come before the jumps into them.
        let first_jump = text.iter().position(|r| r.starts_with("-I")).unwrap();
        assert!(text[first_jump..].iter().all(|r| r.starts_with("-I")));
        // Bridge names fit the kernel's 15 characters.
        assert_eq!(bridge_name(BRIDGE_PREFIX, "gitlab-ecs-r1-p2-j3").len(), 15);
    }
}
