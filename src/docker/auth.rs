//! Pure decisions for image pulls: which registry an image lives in, which credentials
//! apply, and which pull policy wins.

use std::collections::BTreeMap;

use base64::Engine;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

use super::DockerError;
use crate::image_ref::{ImageRef, DOCKER_HUB};
use crate::settings::PullPolicy;

/// Registry credentials available to a job, keyed by registry host.
#[derive(Default)]
pub struct RegistryAuth {
    by_registry: BTreeMap<String, (String, String)>,
}

// Credentials never appear in Debug output.
impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_registry.keys()).finish()
    }
}

#[derive(Deserialize)]
struct AuthConfig {
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl RegistryAuth {
    /// Collects credentials from `DOCKER_AUTH_CONFIG` and from `CI_REGISTRY_USER` /
    /// `CI_REGISTRY_PASSWORD` for `CI_REGISTRY`; `DOCKER_AUTH_CONFIG` wins, as in the docker
    /// executor.
    pub fn from_job(
        docker_auth_config: Option<&str>,
        ci_registry: Option<(&str, &str, &str)>,
    ) -> Result<Self, DockerError> {
        let mut by_registry = BTreeMap::new();
        if let Some((registry, user, password)) = ci_registry {
            by_registry.insert(
                normalize(registry),
                (user.to_string(), password.to_string()),
            );
        }
        if let Some(text) = docker_auth_config.filter(|t| !t.trim().is_empty()) {
            // serde's message quotes the offending input, which may hold a password.
            let config: AuthConfig = serde_json::from_str(text).map_err(|e| {
                DockerError::BadAuthConfig(format!(
                    "invalid JSON at line {} column {}",
                    e.line(),
                    e.column()
                ))
            })?;
            for (registry, entry) in config.auths {
                let pair = match (entry.auth, entry.username, entry.password) {
                    (Some(auth), _, _) => decode_auth(&registry, &auth)?,
                    (None, Some(u), Some(p)) => (u, p),
                    _ => {
                        return Err(DockerError::BadAuthConfig(format!(
                        "the entry for {registry} has neither `auth` nor `username` and `password`"
                    )))
                    }
                };
                by_registry.insert(normalize(&registry), pair);
            }
        }
        Ok(RegistryAuth { by_registry })
    }

    /// Credentials for pulling `image`, if any are known for its registry.
    pub fn for_image(&self, image: &ImageRef) -> Option<DockerCredentials> {
        let registry = image.registry();
        self.by_registry
            .get(registry)
            .map(|(username, password)| DockerCredentials {
                username: Some(username.clone()),
                password: Some(password.clone()),
                serveraddress: Some(registry.to_string()),
                ..Default::default()
            })
    }
}

/// `https://index.docker.io/v1/` and friends name Docker Hub; other entries may carry a
/// scheme or path that image references never do.
fn normalize(registry: &str) -> String {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or(registry);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.into(),
        other => other.to_string(),
    }
}

fn decode_auth(registry: &str, auth: &str) -> Result<(String, String), DockerError> {
    let bad = || {
        DockerError::BadAuthConfig(format!(
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

/// The pull policy for an image: the first of the job's own policies that settings allow,
/// else the settings' default. A job that names only disallowed policies is refused.
pub fn resolve_pull_policy(
    job_policies: &[String],
    default: PullPolicy,
    allowed: &[PullPolicy],
) -> Result<PullPolicy, DockerError> {
    if job_policies.is_empty() {
        return Ok(default);
    }
    job_policies
        .iter()
        .filter_map(|p| PullPolicy::parse(p))
        .find(|p| allowed.contains(p))
        .ok_or_else(|| DockerError::PullPolicyNotAllowed {
            requested: job_policies.to_vec(),
            allowed: allowed.iter().map(|p| p.as_str().to_string()).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_config_and_ci_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("u1:p:w");
        let config = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}},
                          "reg.example:5000": {{"username": "u2", "password": "p2"}}}}}}"#
        );
        let a = RegistryAuth::from_job(
            Some(&config),
            Some(("ci.example", "gitlab-ci-token", "tok")),
        )
        .unwrap();
        let hub = a.for_image(&ImageRef::parse("alpine")).unwrap();
        assert_eq!(
            (hub.username.unwrap(), hub.password.unwrap()),
            ("u1".into(), "p:w".into())
        );
        assert_eq!(
            a.for_image(&ImageRef::parse("reg.example:5000/x"))
                .unwrap()
                .username
                .unwrap(),
            "u2"
        );
        assert_eq!(
            a.for_image(&ImageRef::parse("ci.example/g/p"))
                .unwrap()
                .password
                .unwrap(),
            "tok"
        );
        assert!(a.for_image(&ImageRef::parse("other.example/x")).is_none());
        assert!(!format!("{a:?}").contains("tok"));
    }

    #[test]
    fn bad_auth_config_never_echoes_the_secret() {
        let err =
            RegistryAuth::from_job(Some(r#"{"auths": {"r": {"auth": "!!supersecret"}}}"#), None)
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("DOCKER_AUTH_CONFIG") && !err.contains("supersecret"),
            "{err}"
        );
        let err = RegistryAuth::from_job(Some("{supersecret"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && !err.contains("supersecret"),
            "{err}"
        );
    }

    #[test]
    fn pull_policy_resolution() {
        use PullPolicy::*;
        let all = [Always, IfNotPresent, Never];
        assert_eq!(
            resolve_pull_policy(&[], IfNotPresent, &all).unwrap(),
            IfNotPresent
        );
        let job = ["always".to_string(), "if-not-present".to_string()];
        assert_eq!(resolve_pull_policy(&job, Never, &all).unwrap(), Always);
        assert_eq!(
            resolve_pull_policy(&job, Never, &[IfNotPresent]).unwrap(),
            IfNotPresent
        );
        assert!(resolve_pull_policy(&job, Never, &[Never]).is_err());
    }
}
