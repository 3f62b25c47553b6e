//! Registry credentials for pulls, resolved as the docker executor resolves them: from the
//! job's `DOCKER_AUTH_CONFIG` (`auths`, `credsStore`, `credHelpers`), then the runner user's
//! `~/.docker/config.json`, then the job payload's registry credentials; the first source
//! wins for a registry path, and the longest matching path wins for an image. Credential
//! helpers are looked up on the runner host's `PATH` by their basename only: a job names a
//! helper the operator installed, it cannot bring one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use bollard::auth::DockerCredentials;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::image_ref::{ImageRef, DOCKER_HUB};
use crate::joblog::JobLog;

/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// One place credentials come from, in the order they are tried.
#[derive(Clone)]
pub enum AuthSource {
    /// A Docker `config.json` text: the job's `DOCKER_AUTH_CONFIG`, or the runner user's file.
    ConfigJson {
        /// What to call it in messages (`$DOCKER_AUTH_CONFIG`, a file path).
        name: String,
        /// The JSON; a secret.
        text: String,
    },
    /// Credentials the job payload carries (`credentials` of type `registry`).
    Payload(Vec<(String, String, String)>),
}

// Each source holds secrets: only its name shows.
impl std::fmt::Debug for AuthSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthSource::ConfigJson { name, .. } => write!(f, "ConfigJson({name})"),
            AuthSource::Payload(entries) => {
                let registries: Vec<&str> = entries.iter().map(|(r, _, _)| r.as_str()).collect();
                write!(f, "Payload({registries:?})")
            }
        }
    }
}

impl AuthSource {
    /// The runner user's `~/.docker/config.json` (or `~/.dockercfg`), if it exists.
    pub fn home_config() -> Option<AuthSource> {
        let home = PathBuf::from(std::env::var_os("HOME")?);
        [home.join(".docker/config.json"), home.join(".dockercfg")]
            .into_iter()
            .find_map(|path| {
                let text = std::fs::read_to_string(&path).ok()?;
                Some(AuthSource::ConfigJson {
                    name: path.display().to_string(),
                    text,
                })
            })
    }
}

/// A registry login. The password never appears in Debug output.
#[derive(Clone)]
struct Login {
    username: String,
    password: String,
    identity_token: bool,
    source: String,
}

impl Login {
    /// The login as the engine takes it, for `registry`.
    fn credentials(&self, registry: &str) -> DockerCredentials {
        let registry = Some(registry.to_string());
        if self.identity_token {
            DockerCredentials {
                identitytoken: Some(self.password.clone()),
                serveraddress: registry,
                ..Default::default()
            }
        } else {
            DockerCredentials {
                username: Some(self.username.clone()),
                password: Some(self.password.clone()),
                serveraddress: registry,
                ..Default::default()
            }
        }
    }
}

/// Registry credentials by registry path (`host[/path]`).
#[derive(Default)]
pub struct RegistryAuth {
    by_path: BTreeMap<String, Login>,
}

// Credentials never appear in Debug output.
impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_path.keys()).finish()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfigFile {
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// A source that could not be used; the pull goes on without it, as with the docker executor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
struct SourceError(String);

impl RegistryAuth {
    /// Resolves every source, running credential helpers where a source names them. A
    /// source that fails is left out with a warning in the job log.
    pub async fn resolve(sources: &[AuthSource], log: &JobLog) -> Self {
        let mut auth = RegistryAuth::default();
        for source in sources {
            let (name, found) = match source {
                AuthSource::ConfigJson { name, text } => (name.clone(), from_config(text).await),
                AuthSource::Payload(entries) => (
                    "job payload (GitLab Registry)".to_string(),
                    Ok(entries
                        .iter()
                        .map(|(url, user, password)| {
                            (url.clone(), user.clone(), password.clone(), false)
                        })
                        .collect()),
                ),
            };
            match found {
                Ok(entries) => {
                    for (registry, username, password, identity_token) in entries {
                        // The first source wins for a registry path.
                        auth.by_path.entry(normalize(&registry)).or_insert(Login {
                            username,
                            password,
                            identity_token,
                            source: name.clone(),
                        });
                    }
                }
                Err(e) => log.warn(&format!(
                    "Failed to resolve credentials from {name}: {e}. Credentials from this \
                     source will not be used."
                )),
            }
        }
        auth
    }

    /// Credentials for pulling `image`: the entry of the longest registry path that
    /// contains it.
    pub fn for_image(&self, image: &ImageRef) -> Option<DockerCredentials> {
        let mut path = format!("{}/{}", image.registry(), image.path());
        loop {
            if let Some(login) = self.by_path.get(&path) {
                return Some(login.credentials(image.registry()));
            }
            match path.rsplit_once('/') {
                Some((parent, _)) => path = parent.to_string(),
                None => return None,
            }
        }
    }

    /// Where the credentials for `image` come from, for the job log.
    pub fn source_for(&self, image: &ImageRef) -> Option<&str> {
        let mut path = format!("{}/{}", image.registry(), image.path());
        loop {
            if let Some(login) = self.by_path.get(&path) {
                return Some(&login.source);
            }
            path = path.rsplit_once('/')?.0.to_string();
        }
    }

    /// Credentials by registry host, for a builder that asks per host (BuildKit's session):
    /// a host's own entry, else its first path's.
    pub fn by_host(&self) -> std::collections::HashMap<String, DockerCredentials> {
        let mut hosts = std::collections::HashMap::new();
        // Sorted: a host's own entry comes before those of its paths.
        for (path, login) in &self.by_path {
            let host = path.split('/').next().unwrap_or(path);
            hosts
                .entry(host.to_string())
                .or_insert_with(|| login.credentials(host));
        }
        hosts
    }

    /// Every secret the credentials hold, to mask in the job log.
    pub fn secrets(&self) -> Vec<String> {
        self.by_path.values().map(|l| l.password.clone()).collect()
    }
}

type Entry = (String, String, String, bool);

async fn from_config(text: &str) -> Result<Vec<Entry>, SourceError> {
    // serde's message quotes the offending input, which may hold a password.
    let config: ConfigFile = serde_json::from_str(text).map_err(|e| {
        SourceError(format!(
            "not a Docker config.json: invalid JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for (registry, entry) in config.auths {
        let pair = match (entry.auth, entry.username, entry.password) {
            (Some(auth), _, _) => decode_auth(&registry, &auth)?,
            (None, Some(u), Some(p)) => (u, p),
            _ => continue,
        };
        entries.insert(registry.clone(), (registry, pair.0, pair.1, false));
    }
    if let Some(store) = &config.creds_store {
        for registry in helper_list(store).await? {
            if let Some(entry) = helper_get(store, &registry).await? {
                entries.insert(registry.clone(), entry);
            }
        }
    }
    for (registry, helper) in &config.cred_helpers {
        if let Some(entry) = helper_get(helper, registry).await? {
            entries.insert(registry.clone(), entry);
        }
    }
    Ok(entries.into_values().collect())
}

fn decode_auth(registry: &str, auth: &str) -> Result<(String, String), SourceError> {
    let bad = || {
        SourceError(format!(
            "the `auth` of {registry} is not base64 of `user:password`"
        ))
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok((user.to_string(), password.to_string()))
}

/// `docker-credential-<name>`, refusing anything but a plain helper name.
fn helper_program(name: &str) -> Result<String, SourceError> {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if plain {
        Ok(format!("docker-credential-{name}"))
    } else {
        Err(SourceError(format!(
            "credential helper `{name}` is not a plain helper name"
        )))
    }
}

async fn run_helper(name: &str, verb: &str, input: &str) -> Result<(bool, String), SourceError> {
    let program = helper_program(name)?;
    let mut child = tokio::process::Command::new(&program)
        .arg(verb)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SourceError(format!("cannot run {program} on the runner host: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let out = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            SourceError(format!(
                "{program} {verb} did not answer in {} s",
                HELPER_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| SourceError(format!("{program} {verb}: {e}")))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

async fn helper_get(name: &str, registry: &str) -> Result<Option<Entry>, SourceError> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(alias = "username", rename = "Username")]
        username: String,
        #[serde(alias = "secret", rename = "Secret")]
        secret: String,
    }
    let (ok, out) = run_helper(name, "get", registry).await?;
    if !ok {
        if out.contains("credentials not found") {
            return Ok(None);
        }
        return Err(SourceError(format!(
            "docker-credential-{name} get failed for {registry}"
        )));
    }
    let reply: Reply = serde_json::from_str(&out).map_err(|_| {
        SourceError(format!(
            "docker-credential-{name} get did not answer with Username and Secret"
        ))
    })?;
    let identity_token = reply.username == "<token>";
    Ok(Some((
        registry.to_string(),
        reply.username,
        reply.secret,
        identity_token,
    )))
}

async fn helper_list(name: &str) -> Result<Vec<String>, SourceError> {
    let (ok, out) = run_helper(name, "list", "unused").await?;
    if !ok {
        return Err(SourceError(format!("docker-credential-{name} list failed")));
    }
    let servers: BTreeMap<String, String> = serde_json::from_str(&out).map_err(|_| {
        SourceError(format!(
            "docker-credential-{name} list did not answer with a JSON map"
        ))
    })?;
    Ok(servers.into_keys().collect())
}

/// A registry key as an image reference names it: no scheme, no trailing `/`, Docker Hub's
/// aliases as `docker.io`, the host lower-cased.
fn normalize(registry: &str) -> String {
    let trimmed = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let (host, path) = match trimmed.split_once('/') {
        Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
        None => (trimmed.to_ascii_lowercase(), None),
    };
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    };
    // `https://index.docker.io/v1/` names the registry, not a path in it.
    match path.filter(|p| !p.starts_with("v1") && !p.starts_with("v2")) {
        Some(path) => format!("{host}/{path}"),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> JobLog {
        JobLog::new(Box::new(std::io::sink()), Vec::<String>::new())
    }

    #[tokio::test]
    async fn sources_in_order_first_wins_longest_path_matches() {
        let auth = base64::engine::general_purpose::STANDARD.encode("u1:p:w");
        let config = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}},
                          "reg.example:5000": {{"username": "u2", "password": "p2"}}}}}}"#
        );
        let sources = [
            AuthSource::ConfigJson {
                name: "$DOCKER_AUTH_CONFIG".into(),
                text: config,
            },
            AuthSource::Payload(vec![
                ("reg.example:5000".into(), "late".into(), "ignored".into()),
                (
                    "ci.example/g".into(),
                    "gitlab-ci-token".into(),
                    "tok".into(),
                ),
            ]),
        ];
        let a = RegistryAuth::resolve(&sources, &quiet()).await;
        let hub = a.for_image(&ImageRef::parse("alpine")).unwrap();
        assert_eq!(
            (hub.username.unwrap(), hub.password.unwrap()),
            ("u1".into(), "p:w".into())
        );
        let reg = a.for_image(&ImageRef::parse("reg.example:5000/x")).unwrap();
        assert_eq!(reg.username.unwrap(), "u2", "the first source wins");
        assert_eq!(
            a.for_image(&ImageRef::parse("ci.example/g/p:1"))
                .unwrap()
                .password
                .unwrap(),
            "tok"
        );
        assert!(a.for_image(&ImageRef::parse("ci.example/other")).is_none());
        assert!(a.for_image(&ImageRef::parse("other.example/x")).is_none());
        assert!(!format!("{a:?}").contains("tok"));
    }

    #[tokio::test]
    async fn a_bad_source_is_left_out_and_never_echoes_the_secret() {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = JobLog::new(Box::new(Sink(buf.clone())), Vec::<String>::new());
        for text in [
            r#"{"auths": {"r": {"auth": "!!supersecret"}}}"#,
            "{supersecret",
        ] {
            let a = RegistryAuth::resolve(
                &[AuthSource::ConfigJson {
                    name: "$DOCKER_AUTH_CONFIG".into(),
                    text: text.into(),
                }],
                &log,
            )
            .await;
            assert!(a.for_image(&ImageRef::parse("r/x")).is_none());
        }
        let out = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(
            out.contains("$DOCKER_AUTH_CONFIG") && !out.contains("supersecret"),
            "{out}"
        );
    }

    #[test]
    fn helper_names_cannot_be_paths() {
        assert_eq!(
            helper_program("ecr-login").unwrap(),
            "docker-credential-ecr-login"
        );
        for bad in ["../bin/sh", "/bin/sh", "a b", "", ".hidden"] {
            assert!(helper_program(bad).is_err(), "{bad}");
        }
    }
}
