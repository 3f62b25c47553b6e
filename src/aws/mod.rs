//! AWS SDK wiring: region, endpoints, retries and where credentials come from — the runner
//! host's default chain, keys given to the job, or GitLab OIDC (web identity) per job.
//!
//! Endpoint overrides (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECR`, …) are read by the SDK from
//! the executor's own environment, which jobs cannot set: a job's variables arrive prefixed
//! with `CUSTOM_ENV_`.

mod call;
mod endpoints;

pub use call::{CallError, Fault};
pub use endpoints::Endpoints;

use crate::private_file;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::web_identity_token::{StaticConfiguration, WebIdentityTokenCredentialsProvider};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::config::Credentials;

/// Where the release's AWS credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialRequest {
    /// GitLab OIDC: `AWS_ROLE_ARN` plus the job's ID token.
    WebIdentity {
        /// Role to assume.
        role_arn: String,
        /// The JWT from the job's `id_tokens:`.
        token: String,
        /// STS session name.
        session_name: String,
    },
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`) job variables.
    JobKeys {
        /// Access key id.
        access_key_id: String,
        /// Secret key.
        secret_access_key: String,
        /// Session token.
        session_token: Option<String>,
    },
    /// The runner host's default chain (instance profile, environment, profile files).
    Host,
}

// Keeps tokens and keys out of any Debug output.
impl fmt::Debug for CredentialRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialRequest::WebIdentity { role_arn, .. } => write!(f, "WebIdentity({role_arn})"),
            CredentialRequest::JobKeys { access_key_id, .. } => {
                write!(f, "JobKeys({access_key_id})")
            }
            CredentialRequest::Host => write!(f, "Host"),
        }
    }
}

impl CredentialRequest {
    /// One line for the job log.
    pub fn describe(&self) -> String {
        match self {
            CredentialRequest::WebIdentity { role_arn, .. } => {
                format!("GitLab OIDC: assuming {role_arn} with the job's ID token")
            }
            CredentialRequest::JobKeys { access_key_id, .. } => {
                format!("the job's access key {access_key_id}")
            }
            CredentialRequest::Host => {
                "the host's default credential chain (environment, profile, instance role)".into()
            }
        }
    }
}

/// AWS could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The web identity token file could not be written.
    #[error("cannot write the web identity token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An endpoint override in the executor's environment is not a URL.
    #[error(
        "{variable} is `{value}`, not an http:// or https:// URL: fix or unset it in the \
         environment of gitlab-ecs-executor"
    )]
    EndpointUrl {
        /// The variable.
        variable: String,
        /// Its value (an address, not a secret).
        value: String,
    },
}

/// A web identity token on disk (0600), removed when dropped. `cleanup` removes the
/// directory too, in case the executor was killed.
pub struct TokenFile {
    path: PathBuf,
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The directory under the runner's per-job temp dir that holds token files.
pub fn token_dir(runner_temp_dir: &Path) -> PathBuf {
    runner_temp_dir.join("gitlab-ecs-executor")
}

/// SDK configuration for one release; keep the [`TokenFile`] alive while using it.
pub struct AwsSession {
    /// Shared SDK config for the ECR and ECS clients.
    pub config: SdkConfig,
    /// The token file of a web identity session.
    pub token_file: Option<TokenFile>,
}

/// How hard AWS calls try before they give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// A release rides out throttling and transient faults: 8 attempts, backoff up to 20 s.
    Release,
    /// `doctor` reports what it finds now: one retry, so an unreachable endpoint is reported
    /// in seconds, not after a minute of backoff.
    Probe,
}

impl Persistence {
    fn retry_config(self) -> RetryConfig {
        // Throttling ("Rate exceeded") and transient faults are retried with exponential
        // backoff. Not adaptive mode: its client-side rate limiter, once tripped, spaces
        // polls far beyond the poll interval and hides a failing rollout for minutes.
        match self {
            Persistence::Release => RetryConfig::standard()
                .with_max_attempts(8)
                .with_max_backoff(Duration::from_secs(20)),
            Persistence::Probe => RetryConfig::standard()
                .with_max_attempts(2)
                .with_max_backoff(Duration::from_secs(2)),
        }
    }
}

/// Builds the SDK configuration of a release for `region` with the requested credentials.
pub async fn session(
    region: &str,
    request: &CredentialRequest,
    token_dir: &Path,
) -> Result<AwsSession, AwsError> {
    session_with(region, request, token_dir, Persistence::Release).await
}

/// [`session`] with calls as persistent as `persistence` says.
pub async fn session_with(
    region: &str,
    request: &CredentialRequest,
    token_dir: &Path,
    persistence: Persistence,
) -> Result<AwsSession, AwsError> {
    let endpoints = Endpoints::from_env()?;
    let region = Region::new(region.to_string());
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region.clone())
        .retry_config(persistence.retry_config())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
    let (loader, token_file) = match request {
        CredentialRequest::Host => (loader, None),
        CredentialRequest::JobKeys {
            access_key_id,
            secret_access_key,
            session_token,
        } => (
            loader.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key,
                session_token.clone(),
                None,
                "gitlab-job-variables",
            )),
            None,
        ),
        CredentialRequest::WebIdentity {
            role_arn,
            token,
            session_name,
        } => {
            let file = write_token(token_dir, token)?;
            let provider = WebIdentityTokenCredentialsProvider::builder()
                .static_configuration(StaticConfiguration {
                    web_identity_token_file: file.path.clone(),
                    role_arn: role_arn.clone(),
                    session_name: session_name.clone(),
                })
                .configure(
                    &aws_config::provider_config::ProviderConfig::default()
                        .with_region(Some(region.clone())),
                )
                .build();
            (loader.credentials_provider(provider), Some(file))
        }
    };
    Ok(AwsSession {
        config: endpoints.apply(loader.load().await),
        token_file,
    })
}

fn write_token(dir: &Path, token: &str) -> Result<TokenFile, AwsError> {
    let name = "web-identity-token";
    private_file::write(dir, name, token.as_bytes())
        .map(|path| TokenFile { path })
        .map_err(|source| AwsError::TokenFile {
            path: dir.join(name),
            source,
        })
}

/// A valid STS session name (`[\w+=,.@-]{2,64}`) for a GitLab job.
pub fn session_name(project_path: &str, job_id: u64) -> String {
    let cleaned: String = format!("gitlab-{project_path}-{job_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let start = cleaned.len().saturating_sub(64);
    cleaned[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_valid_for_sts() {
        assert_eq!(session_name("group/app", 7), "gitlab-group-app-7");
        let long = session_name(&"x/".repeat(60), 123456);
        assert_eq!(long.len(), 64);
        assert!(long.ends_with("-123456"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let r = CredentialRequest::WebIdentity {
            role_arn: "arn:aws:iam::1:role/r".into(),
            token: "eyJsecret".into(),
            session_name: "s".into(),
        };
        assert!(!format!("{r:?}").contains("eyJ"));
        let k = CredentialRequest::JobKeys {
            access_key_id: "AKIA1".into(),
            secret_access_key: "topsecret".into(),
            session_token: Some("tok".into()),
        };
        assert!(!format!("{k:?}").contains("topsecret"));
    }

    #[test]
    fn token_file_is_private_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_token(dir.path(), "jwt").unwrap();
        let path = file.path.clone();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(file);
        assert!(!path.exists());
    }
}
