//! `[docker]`: the job environment on the runner host's engine.

use serde::{Deserialize, Serialize};

use super::units::MemorySize;

/// When to pull a job or service image.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pull before every job.
    Always,
    /// Pull only when the image is not on the host.
    IfNotPresent,
    /// Never pull; the image must be on the host.
    Never,
}

impl PullPolicy {
    /// The name used in settings and in `.gitlab-ci.yml`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::IfNotPresent => "if-not-present",
            PullPolicy::Never => "never",
        }
    }

    /// Parses the name used in `.gitlab-ci.yml`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            PullPolicy::Always,
            PullPolicy::IfNotPresent,
            PullPolicy::Never,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
    }
}

/// The Docker job environment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DockerSettings {
    /// Docker engine address (`unix://…`, `tcp://…`); empty: `DOCKER_HOST`, else the local socket.
    pub host: String,
    /// Image for jobs that name none.
    pub default_image: String,
    /// Pull policy when the job names none.
    pub pull_policy: PullPolicy,
    /// Pull policies a job may ask for with `image: pull_policy:`.
    pub allowed_pull_policies: Vec<PullPolicy>,
    /// CPU limit per job container (0: unlimited).
    pub cpus: f64,
    /// Memory limit per job container, e.g. `2g`, `512m` (empty: unlimited).
    pub memory: MemorySize,
    /// Extra binds for job containers, `host:container[:ro|rw]`.
    pub volumes: Vec<String>,
    /// Images jobs and services may use, as patterns with `*` (empty: any image).
    pub allowed_images: Vec<String>,
    /// Seconds a cancelled script gets between SIGTERM and SIGKILL inside the container.
    #[serde(rename = "cancel_grace_seconds", with = "super::units::seconds")]
    pub cancel_grace: std::time::Duration,
    /// Containers of this runner older than this are removed by any cleanup.
    #[serde(rename = "orphan_max_age_minutes", with = "super::units::minutes")]
    pub orphan_max_age: std::time::Duration,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            host: String::new(),
            default_image: "debian:bookworm-slim".into(),
            pull_policy: PullPolicy::IfNotPresent,
            allowed_pull_policies: vec![
                PullPolicy::Always,
                PullPolicy::IfNotPresent,
                PullPolicy::Never,
            ],
            cpus: 0.0,
            memory: MemorySize::default(),
            volumes: Vec::new(),
            allowed_images: Vec::new(),
            cancel_grace: std::time::Duration::from_secs(5),
            orphan_max_age: std::time::Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl DockerSettings {
    /// Whether `image` matches `allowed_images` (an empty list allows any image).
    pub fn image_allowed(&self, image: &str) -> bool {
        self.allowed_images.is_empty() || self.allowed_images.iter().any(|p| glob_match(p, image))
    }

    /// Every problem of these settings, each naming its key.
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.default_image.trim().is_empty() {
            problems.push(("docker.default_image", "must name an image".to_string()));
        }
        if !self.allowed_pull_policies.contains(&self.pull_policy) {
            problems.push((
                "docker.pull_policy",
                format!(
                    "is `{}` but docker.allowed_pull_policies does not include it",
                    self.pull_policy.as_str()
                ),
            ));
        }
        if !(self.cpus >= 0.0 && self.cpus.is_finite()) {
            problems.push((
                "docker.cpus",
                "must be 0 (unlimited) or a positive number of CPUs".to_string(),
            ));
        }
        for volume in &self.volumes {
            if let Err(m) = parse_volume(volume) {
                problems.push(("docker.volumes", m));
            }
        }
        problems
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// A bind `host:container[:ro|rw]` with absolute paths on both sides.
pub fn parse_volume(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split(':').collect();
    let ok = match parts.as_slice() {
        [host, container] => host.starts_with('/') && container.starts_with('/'),
        [host, container, mode] => {
            host.starts_with('/') && container.starts_with('/') && matches!(*mode, "ro" | "rw")
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "entries must be `/host/path:/container/path[:ro|rw]`, got {value:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_allow_list() {
        let mut d = DockerSettings::default();
        assert!(d.image_allowed("anything:1"));
        d.allowed_images = vec![
            "registry.example.com/*".into(),
            "debian:*-slim".into(),
            "alpine:3".into(),
        ];
        assert!(d.image_allowed("registry.example.com/team/app:v1"));
        assert!(d.image_allowed("debian:bookworm-slim"));
        assert!(d.image_allowed("alpine:3"));
        assert!(!d.image_allowed("alpine:3.20"));
        assert!(!d.image_allowed("evil.example.com/registry.example.com/x"));
        assert!(!d.image_allowed("debian:bookworm"));
    }
}
