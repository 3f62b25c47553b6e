//! `[docker]`: the job environment on the runner host's engine. Keys are named and mean
//! what they mean in gitlab-runner's `[runners.docker]`, so an operator can copy them over;
//! docs/configuration.md lists every docker-executor key and where this one differs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::units::{minutes, seconds, MemorySize};
use crate::glob;

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

/// A string or a list of strings, as gitlab-runner accepts for `pull_policy`.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PullPolicy>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let names = match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    };
    // Parsed here, not by serde, so that a bad value's error lists the allowed ones.
    names
        .iter()
        .map(|name| {
            PullPolicy::parse(name).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown pull policy `{name}`, expected `always`, `if-not-present` or `never`"
                ))
            })
        })
        .collect()
}

/// A CPU count written as a number or, as gitlab-runner writes it, a string (`"1.5"`).
fn cpu_count<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(f64),
        Text(String),
    }
    match NumberOrText::deserialize(d)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(t) if t.trim().is_empty() => Ok(0.0),
        NumberOrText::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("a CPU count such as 1.5, got `{t}`"))),
    }
}

/// The Docker job environment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DockerSettings {
    /// Docker engine address (`unix://…`, `tcp://…`); empty: `DOCKER_HOST`, else the local socket.
    pub host: String,
    /// Image for jobs that name none (gitlab-runner's `image`).
    #[serde(alias = "image")]
    pub default_image: String,
    /// Pull policies when the job names none, tried in order.
    #[serde(deserialize_with = "one_or_many")]
    pub pull_policy: Vec<PullPolicy>,
    /// Pull policies a job may ask for; empty: those of `pull_policy`.
    pub allowed_pull_policies: Vec<PullPolicy>,
    /// Images jobs may use, doublestar patterns (empty: any image).
    pub allowed_images: Vec<String>,
    /// Service images jobs may use, doublestar patterns (empty: any image).
    pub allowed_services: Vec<String>,
    /// How many services a job may start (`None`: no limit).
    pub services_limit: Option<i64>,
    /// The helper image for git, caches and artifacts; empty: GitLab's for the runner's
    /// version (present, loaded from `helper_images_dir`, or pulled).
    pub helper_image: String,
    /// Where gitlab-runner's package keeps its prebuilt helper archives.
    pub helper_images_dir: PathBuf,
    /// Job containers run privileged (for images in `allowed_privileged_images`).
    pub privileged: bool,
    /// Services run privileged; unset: as `privileged`.
    pub services_privileged: Option<bool>,
    /// Job images that may run privileged, doublestar patterns (empty: any).
    pub allowed_privileged_images: Vec<String>,
    /// Service images that may run privileged, doublestar patterns (empty: any).
    pub allowed_privileged_services: Vec<String>,
    /// The user job containers run as; wins over the job's `image: docker: user:`.
    pub user: String,
    /// Users a job may ask for; empty: only `user`, or any if `user` is empty.
    pub allowed_users: Vec<String>,
    /// Ignore the job's `image: entrypoint:`.
    pub disable_entrypoint_overwrite: bool,
    /// Host name of job containers; empty: a name per project and slot.
    pub hostname: String,
    /// CPU limit per job container (0: unlimited).
    #[serde(deserialize_with = "cpu_count")]
    pub cpus: f64,
    /// CPUs job containers may run on (`0-3`, `0,1`).
    pub cpuset_cpus: String,
    /// Memory limit per job container, e.g. `2g`, `512m` (empty: unlimited).
    pub memory: MemorySize,
    /// Memory plus swap per job container (empty: Docker's default).
    pub memory_swap: MemorySize,
    /// Soft memory limit per job container.
    pub memory_reservation: MemorySize,
    /// Disable the OOM killer for job containers.
    pub oom_kill_disable: bool,
    /// CPU limit per service container (0: unlimited).
    #[serde(deserialize_with = "cpu_count")]
    pub service_cpus: f64,
    /// Memory limit per service container.
    pub service_memory: MemorySize,
    /// Capabilities added to job containers.
    pub cap_add: Vec<String>,
    /// Capabilities dropped from job containers.
    pub cap_drop: Vec<String>,
    /// Security options of job containers (`seccomp=<file>` is read on the host).
    pub security_opt: Vec<String>,
    /// Host devices given to job containers, `host[:container[:perms]]`.
    pub devices: Vec<String>,
    /// DNS servers of job and service containers.
    pub dns: Vec<String>,
    /// DNS search domains of job and service containers.
    pub dns_search: Vec<String>,
    /// Extra `/etc/hosts` entries of job and service containers, `host:ip`.
    pub extra_hosts: Vec<String>,
    /// Size of `/dev/shm` in bytes (0: Docker's default).
    pub shm_size: i64,
    /// tmpfs mounts of job containers: path → options.
    pub tmpfs: BTreeMap<String, String>,
    /// tmpfs mounts of service containers: path → options.
    pub services_tmpfs: BTreeMap<String, String>,
    /// Resource limits of job containers: name → `soft[:hard]`.
    pub ulimit: BTreeMap<String, String>,
    /// Kernel parameters of job containers.
    pub sysctls: BTreeMap<String, String>,
    /// A network for job and service containers instead of a per-job one.
    pub network_mode: String,
    /// Let job networks reach the runner host's own addresses and the instance metadata
    /// addresses (unsafe on a runner that serves more than one project).
    pub jobs_may_reach_host: bool,
    /// Volumes of every job, service and helper container: `/path` (a volume per project,
    /// kept between jobs), `name:/path` or `/host:/path[:ro|rw]`.
    pub volumes: Vec<String>,
    /// `/path` volumes last only for the job.
    pub disable_cache: bool,
    /// Seconds to wait for services to listen on their ports (0: 30; negative: no wait).
    pub wait_for_services_timeout: i64,
    /// Seconds a cancelled stage gets between SIGTERM and SIGKILL.
    #[serde(rename = "cancel_grace_seconds", with = "seconds")]
    pub cancel_grace: Duration,
    /// Containers of this runner older than this are removed by any cleanup.
    #[serde(rename = "orphan_max_age_minutes", with = "minutes")]
    pub orphan_max_age: Duration,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            host: String::new(),
            default_image: "debian:bookworm-slim".into(),
            pull_policy: vec![PullPolicy::Always],
            allowed_pull_policies: Vec::new(),
            allowed_images: Vec::new(),
            allowed_services: Vec::new(),
            services_limit: None,
            helper_image: String::new(),
            helper_images_dir: PathBuf::from("/usr/lib/gitlab-runner/helper-images"),
            privileged: false,
            services_privileged: None,
            allowed_privileged_images: Vec::new(),
            allowed_privileged_services: Vec::new(),
            user: String::new(),
            allowed_users: Vec::new(),
            disable_entrypoint_overwrite: false,
            hostname: String::new(),
            cpus: 0.0,
            cpuset_cpus: String::new(),
            memory: MemorySize::default(),
            memory_swap: MemorySize::default(),
            memory_reservation: MemorySize::default(),
            oom_kill_disable: false,
            service_cpus: 0.0,
            service_memory: MemorySize::default(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            security_opt: Vec::new(),
            devices: Vec::new(),
            dns: Vec::new(),
            dns_search: Vec::new(),
            extra_hosts: Vec::new(),
            shm_size: 0,
            tmpfs: BTreeMap::new(),
            services_tmpfs: BTreeMap::new(),
            ulimit: BTreeMap::new(),
            sysctls: BTreeMap::new(),
            network_mode: String::new(),
            jobs_may_reach_host: false,
            volumes: Vec::new(),
            disable_cache: false,
            wait_for_services_timeout: 30,
            cancel_grace: Duration::from_secs(5),
            orphan_max_age: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// The docker executor's service wait when `wait_for_services_timeout` is 0.
const DEFAULT_SERVICE_WAIT: Duration = Duration::from_secs(30);

impl DockerSettings {
    /// Whether `image` may be a job image (an empty list allows any image).
    pub fn image_allowed(&self, image: &str) -> bool {
        allowed_by(&self.allowed_images, image)
    }

    /// Whether `image` may be a service (an empty list allows any image).
    pub fn service_allowed(&self, image: &str) -> bool {
        allowed_by(&self.allowed_services, image)
    }

    /// Whether a job container of `image` runs privileged: `privileged` and the image in
    /// `allowed_privileged_images` (empty: any), as the docker executor decides; a
    /// disallowed image runs unprivileged.
    pub fn privileged_job(&self, image: &str) -> bool {
        self.privileged && allowed_by(&self.allowed_privileged_images, image)
    }

    /// Whether a service of `image` runs privileged.
    pub fn privileged_service(&self, image: &str) -> bool {
        self.services_privileged.unwrap_or(self.privileged)
            && allowed_by(&self.allowed_privileged_services, image)
    }

    /// The pull policies a job may ask for.
    pub fn allowed_pull_policies(&self) -> &[PullPolicy] {
        if self.allowed_pull_policies.is_empty() {
            &self.pull_policy
        } else {
            &self.allowed_pull_policies
        }
    }

    /// Whether a job may run as `user` (the docker executor's `IsUserAllowed`).
    pub fn user_allowed(&self, user: &str) -> bool {
        if user.is_empty() || (self.allowed_users.is_empty() && self.user.is_empty()) {
            return true;
        }
        if self.allowed_users.is_empty() {
            return user == self.user;
        }
        self.allowed_users.iter().any(|u| u == user)
    }

    /// How long to wait for services to listen; `None`: do not wait.
    pub fn service_wait(&self) -> Option<Duration> {
        match self.wait_for_services_timeout {
            t if t < 0 => None,
            0 => Some(DEFAULT_SERVICE_WAIT),
            t => Some(Duration::from_secs(t as u64)),
        }
    }

    /// Every problem of these settings, each naming its key.
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.default_image.trim().is_empty() {
            problems.push(("docker.default_image", "must name an image".to_string()));
        }
        if self.pull_policy.is_empty() {
            problems.push((
                "docker.pull_policy",
                "must name at least one policy".to_string(),
            ));
        }
        if let Some(p) = self
            .pull_policy
            .iter()
            .find(|p| !self.allowed_pull_policies().contains(p))
        {
            problems.push((
                "docker.pull_policy",
                format!(
                    "includes `{}` but docker.allowed_pull_policies does not",
                    p.as_str()
                ),
            ));
        }
        for (key, cpus) in [
            ("docker.cpus", self.cpus),
            ("docker.service_cpus", self.service_cpus),
        ] {
            if !(cpus >= 0.0 && cpus.is_finite()) {
                problems.push((
                    key,
                    "must be 0 (unlimited) or a positive number of CPUs".into(),
                ));
            }
        }
        if self.shm_size < 0 {
            problems.push((
                "docker.shm_size",
                "must be a size in bytes, 0 or more".into(),
            ));
        }
        if self.services_limit.is_some_and(|l| l < 0) {
            problems.push(("docker.services_limit", "must be 0 or more".into()));
        }
        if !self.user_allowed(&self.user) {
            problems.push((
                "docker.user",
                format!(
                    "is not in docker.allowed_users ({})",
                    self.allowed_users.join(", ")
                ),
            ));
        }
        for volume in &self.volumes {
            if let Err(m) = parse_volume(volume) {
                problems.push(("docker.volumes", m));
            }
        }
        for device in &self.devices {
            if let Err(m) = parse_device(device) {
                problems.push(("docker.devices", m));
            }
        }
        for (name, limit) in &self.ulimit {
            if parse_ulimit(limit).is_none() {
                problems.push((
                    "docker.ulimit",
                    format!("`{name}` must be `soft` or `soft:hard` numbers, got `{limit}`"),
                ));
            }
        }
        for server in &self.dns {
            if server.parse::<std::net::IpAddr>().is_err() {
                problems.push(("docker.dns", format!("`{server}` is not an IP address")));
            }
        }
        for entry in &self.extra_hosts {
            if !entry.contains(':') {
                problems.push((
                    "docker.extra_hosts",
                    format!("entries are `host:ip`, got `{entry}`"),
                ));
            }
        }
        problems
    }
}

pub(super) fn allowed_by(patterns: &[String], image: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| glob::matches(p, image))
}

/// A volume entry: a per-project volume at a container path, a named volume, or a bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSpec {
    /// `/path`: a volume per project and slot, kept between jobs (unless `disable_cache`).
    Cache {
        /// The container path.
        destination: String,
    },
    /// `source:/path[:mode]`: a host path or a named volume.
    Bind {
        /// The host path or volume name.
        source: String,
        /// The container path.
        destination: String,
        /// `ro` or `rw`, if given.
        mode: Option<String>,
    },
}

/// Parses a `volumes` entry.
pub fn parse_volume(value: &str) -> Result<VolumeSpec, String> {
    let bad = || {
        format!(
            "entries are `/container/path`, `name:/container/path` or \
             `/host/path:/container/path[:ro|rw][:z|Z][:propagation]`, got `{value}`"
        )
    };
    let parts: Vec<&str> = value.split(':').collect();
    let destination_ok = |d: &str| d.starts_with('/') && d != "/";
    match parts.as_slice() {
        [destination] if destination_ok(destination) => Ok(VolumeSpec::Cache {
            destination: destination.to_string(),
        }),
        [source, destination, options @ ..]
            if !source.is_empty() && destination_ok(destination) =>
        {
            Ok(VolumeSpec::Bind {
                source: source.to_string(),
                destination: destination.to_string(),
                mode: bind_options(value, options)?,
            })
        }
        _ => Err(bad()),
    }
}

/// A bind's options as the docker executor's volume parser takes them, after the
/// destination, separated by `:` or `,`: at most one access mode (`ro`, `rw`), one SELinux
/// label (`z`, `Z`) and one propagation; as Docker's comma-separated mode.
fn bind_options(value: &str, options: &[&str]) -> Result<Option<String>, String> {
    const KINDS: [(&str, &[&str]); 3] = [
        ("access mode", &["ro", "rw"]),
        ("SELinux label", &["z", "Z"]),
        (
            "propagation",
            &[
                "shared", "slave", "private", "rshared", "rslave", "rprivate",
            ],
        ),
    ];
    let mut chosen: [Option<String>; 3] = Default::default();
    for option in options.iter().flat_map(|o| o.split(',')) {
        let kind = KINDS.iter().position(|(_, names)| {
            names.iter().any(|n| match *n {
                // The label's case means something: z shares it, Z keeps it private.
                "z" | "Z" => option == *n,
                _ => option.eq_ignore_ascii_case(n),
            })
        });
        let Some(kind) = kind else {
            return Err(format!(
                "`{value}`: `{option}` is not a bind option the docker executor takes \
                 (ro, rw, z, Z, shared, slave, private, rshared, rslave, rprivate)"
            ));
        };
        if let Some(earlier) = &chosen[kind] {
            return Err(format!(
                "`{value}`: two {}s, `{earlier}` and `{option}`",
                KINDS[kind].0
            ));
        }
        chosen[kind] = Some(match kind {
            1 => option.to_string(),
            _ => option.to_ascii_lowercase(),
        });
    }
    let all: Vec<String> = chosen.into_iter().flatten().collect();
    Ok(Some(all.join(",")).filter(|m| !m.is_empty()))
}

/// A device mapping `host[:container[:perms]]`, as Docker's API wants it.
pub fn parse_device(value: &str) -> Result<(String, String, String), String> {
    let parts: Vec<&str> = value.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, container] => (*host, *container, "rwm"),
        [host, container, perms] => (*host, *container, *perms),
        _ => return Err(format!("`{value}`: too many colons")),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(format!("`{value}`: device paths must be absolute"));
    }
    Ok((host.to_string(), container.to_string(), perms.to_string()))
}

/// A ulimit `soft[:hard]`.
pub fn parse_ulimit(value: &str) -> Option<(i64, i64)> {
    match value.split_once(':') {
        Some((soft, hard)) => Some((soft.trim().parse().ok()?, hard.trim().parse().ok()?)),
        None => {
            let n = value.trim().parse().ok()?;
            Some((n, n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_allow_lists_use_doublestar_patterns() {
        let mut d = DockerSettings::default();
        assert!(d.image_allowed("anything:1"));
        d.allowed_images = vec![
            "registry.example.com/**".into(),
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

    #[test]
    fn privileged_as_the_docker_executor() {
        let mut d = DockerSettings {
            privileged: true,
            ..DockerSettings::default()
        };
        assert!(d.privileged_job("alpine"));
        for (patterns, expected) in [
            (vec!["*"], true),
            (vec!["**/*"], true),
            (vec!["alpine"], true),
            (vec!["debian"], false),
            (vec!["*:*"], false),
        ] {
            d.allowed_privileged_images = patterns.iter().map(|p| p.to_string()).collect();
            assert_eq!(d.privileged_job("alpine"), expected, "{patterns:?}");
        }
        d.privileged = false;
        d.allowed_privileged_images.clear();
        assert!(!d.privileged_job("alpine"));
        d.services_privileged = Some(true);
        assert!(d.privileged_service("docker:dind"));
    }

    #[test]
    fn users_as_the_docker_executor() {
        let mut d = DockerSettings::default();
        assert!(d.user_allowed("node"));
        d.user = "baba".into();
        assert!(d.user_allowed("baba") && !d.user_allowed("yaga") && d.user_allowed(""));
        d.allowed_users = vec!["yaga".into()];
        assert!(d.user_allowed("yaga") && !d.user_allowed("baba"));
    }

    #[test]
    fn volumes_devices_ulimits() {
        assert_eq!(
            parse_volume("/cache").unwrap(),
            VolumeSpec::Cache {
                destination: "/cache".into()
            }
        );
        assert!(matches!(
            parse_volume("/srv/repos:/srv/repos:ro").unwrap(),
            VolumeSpec::Bind { mode: Some(m), .. } if m == "ro"
        ));
        assert!(matches!(
            parse_volume("shared:/data").unwrap(),
            VolumeSpec::Bind { .. }
        ));
        // The docker executor's syntax: label and propagation after the mode, `:` or `,`.
        for (entry, mode) in [
            ("/srv/data:/data:ro:Z", "ro,Z"),
            ("/srv/data:/data:rw,z", "rw,z"),
            ("/srv/data:/data:z", "z"),
            ("/srv/data:/data:RO:rshared", "ro,rshared"),
        ] {
            assert!(
                matches!(parse_volume(entry).unwrap(), VolumeSpec::Bind { mode: Some(m), .. } if m == mode),
                "{entry}"
            );
        }
        for bad in [
            "relative",
            "/",
            "/a:/b:rx",
            "a:b",
            "/a:/b:ro:x",
            "/a:/b:ro:rw",
            "/a:/b:O",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
        assert!(parse_volume("/a:/b:O")
            .unwrap_err()
            .contains("`O` is not a bind option"));
        assert_eq!(
            parse_device("/dev/fuse").unwrap(),
            ("/dev/fuse".into(), "/dev/fuse".into(), "rwm".into())
        );
        assert!(parse_device("/a:/b:r:x").is_err());
        assert_eq!(parse_ulimit("1024:2048"), Some((1024, 2048)));
        assert_eq!(parse_ulimit("65536"), Some((65536, 65536)));
        assert_eq!(parse_ulimit("x"), None);
    }
}
