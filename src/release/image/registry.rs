//! ECR login and the registry's view of a tag: the token comes from `GetAuthorizationToken`
//! and stays in memory; tag lookups go through the engine's distribution API, which speaks
//! the registry v2 protocol with that token.

use std::fmt;

use base64::Engine;
use bollard::auth::DockerCredentials;
use bollard::Docker;

use super::ImageError;
use crate::aws::CallError;
use crate::image_ref::ImageRef;

/// Credentials for one ECR registry. The password never appears in Debug output.
#[derive(Clone)]
pub struct EcrLogin {
    /// Always `AWS` for ECR.
    pub username: String,
    password: String,
    /// The registry host the credentials are for.
    pub registry: String,
}

impl fmt::Debug for EcrLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EcrLogin({}@{})", self.username, self.registry)
    }
}

impl EcrLogin {
    /// Decodes an ECR authorization token (`base64("AWS:<password>")`).
    pub fn from_token(token: &str, registry: &str) -> Result<Self, ImageError> {
        let bad = || ImageError::EcrLogin {
            registry: registry.to_string(),
            message: "GetAuthorizationToken returned a token that is not base64 of `user:password`"
                .into(),
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (username, password) = text.split_once(':').ok_or_else(bad)?;
        Ok(EcrLogin {
            username: username.to_string(),
            password: password.to_string(),
            registry: registry.to_string(),
        })
    }

    /// The password, for redaction.
    pub fn secret(&self) -> &str {
        &self.password
    }

    /// Credentials for the engine's push and distribution calls.
    pub fn docker_credentials(&self) -> DockerCredentials {
        DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(self.registry.clone()),
            ..Default::default()
        }
    }
}

/// Where an ECR token may go: the registry ECR names for the credentials that asked for it,
/// or one the operator configured (`aws.ecr_token_registries`). The token opens every
/// repository of the account for twelve hours; anything else could be a server of anyone
/// who can set a job variable.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy<'a> {
    /// The release's region.
    pub region: &'a str,
    /// `aws.ecr_token_registries`.
    pub configured: &'a [String],
}

impl TokenPolicy<'_> {
    /// Refuses, before any call, a registry that cannot be ECR's own for this region nor
    /// one the operator configured.
    pub fn admits(&self, registry: &str) -> Result<(), ImageError> {
        if self.may_be_ecr(registry) {
            return Ok(());
        }
        Err(ImageError::NotEcrRegistry {
            registry: registry.to_string(),
            ecr: format!("<account>.dkr.ecr.{}.amazonaws.com", self.region),
        })
    }

    /// Whether `registry` can be ECR's own for this region, before asking ECR.
    fn may_be_ecr(&self, registry: &str) -> bool {
        let shaped = registry.split_once('.').is_some_and(|(account, rest)| {
            account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && [".amazonaws.com", ".amazonaws.com.cn"]
                    .iter()
                    .any(|suffix| {
                        [
                            format!("dkr.ecr.{}", self.region),
                            format!("dkr.ecr-fips.{}", self.region),
                        ]
                        .iter()
                        .any(|host| rest == format!("{host}{suffix}"))
                    })
        });
        shaped || self.configured(registry)
    }

    fn configured(&self, registry: &str) -> bool {
        self.configured.iter().any(|r| r == registry)
    }
}

/// Asks ECR for a registry token for `registry`, refusing a registry the token is not for.
pub async fn ecr_login(
    ecr: &aws_sdk_ecr::Client,
    registry: &str,
    policy: TokenPolicy<'_>,
) -> Result<EcrLogin, ImageError> {
    policy.admits(registry)?;
    let out = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| ImageError::Call(CallError::from_sdk("ecr:GetAuthorizationToken", e)))?;
    let data = out.authorization_data().first();
    let token = data
        .and_then(|d| d.authorization_token())
        .ok_or_else(|| ImageError::EcrLogin {
            registry: registry.to_string(),
            message: "GetAuthorizationToken returned no token".into(),
        })?;
    let endpoint = data
        .and_then(|d| d.proxy_endpoint())
        .map(|e| e.trim_start_matches("https://").trim_end_matches('/'))
        .unwrap_or_default();
    if endpoint != registry && !policy.configured(registry) {
        return Err(ImageError::NotEcrRegistry {
            registry: registry.to_string(),
            ecr: endpoint.to_string(),
        });
    }
    EcrLogin::from_token(token, registry)
}

/// A tag already in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    /// Its digest.
    pub digest: String,
    /// The platforms it has, `(os, architecture)`, as the registry reports them.
    pub platforms: Vec<(String, String)>,
}

/// `image` in its registry, `None` if the tag does not exist.
pub async fn existing(
    docker: &Docker,
    image: &ImageRef,
    login: &EcrLogin,
) -> Result<Option<Existing>, ImageError> {
    let image = image.to_string();
    match docker
        .inspect_registry_image(&image, Some(login.docker_credentials()))
        .await
    {
        Ok(inspect) => {
            let platforms = platforms(&inspect);
            Ok(inspect
                .descriptor
                .digest
                .map(|digest| Existing { digest, platforms }))
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        }) => classify_lookup(status_code, &message, &image, &login.registry).map(|_| None),
        Err(e) => Err(ImageError::RegistryUnreachable {
            registry: login.registry.clone(),
            message: e.to_string(),
        }),
    }
}

/// The platforms a registry lookup lists, `(os, architecture)`.
pub(super) fn platforms(inspect: &bollard::models::DistributionInspect) -> Vec<(String, String)> {
    inspect
        .platforms
        .iter()
        .map(|p| {
            (
                p.os.clone().unwrap_or_default(),
                p.architecture.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The engine reports a missing tag, a refused login and an unreachable registry all as
/// errors of its distribution endpoint; only the message tells them apart. `Ok` is a
/// missing tag.
fn classify_lookup(
    status: u16,
    message: &str,
    image: &str,
    registry: &str,
) -> Result<(), ImageError> {
    let lower = message.to_ascii_lowercase();
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("denied")
    {
        return Err(ImageError::RegistryRefused {
            registry: registry.to_string(),
            message: message.to_string(),
        });
    }
    if status == 404 || lower.contains("manifest unknown") || lower.contains("not found") {
        return Ok(());
    }
    if lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("timeout")
    {
        return Err(ImageError::RegistryUnreachable {
            registry: registry.to_string(),
            message: message.to_string(),
        });
    }
    Err(ImageError::RegistryUnreachable {
        registry: registry.to_string(),
        message: format!("looking up {image}: {message}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ecr_tokens_and_hides_the_password() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:pa:ss");
        let login = EcrLogin::from_token(&token, "r.example").unwrap();
        assert_eq!((login.username.as_str(), login.secret()), ("AWS", "pa:ss"));
        assert!(!format!("{login:?}").contains("pa:ss"));
        assert!(EcrLogin::from_token("!!", "r").is_err());
    }

    #[test]
    fn the_token_goes_only_to_ecr_of_the_region_or_a_configured_registry() {
        let configured = vec!["mirror.example.com:5000".to_string()];
        let policy = TokenPolicy {
            region: "eu-west-1",
            configured: &configured,
        };
        for ok in [
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr-fips.eu-west-1.amazonaws.com",
            "mirror.example.com:5000",
        ] {
            assert!(policy.may_be_ecr(ok), "{ok}");
        }
        for refused in [
            "attacker.example.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com.attacker.example.com",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com:443",
            "12345678901.dkr.ecr.eu-west-1.amazonaws.com",
            "127.0.0.1:5000",
        ] {
            assert!(!policy.may_be_ecr(refused), "{refused}");
        }
    }

    #[test]
    fn lookup_errors_are_told_apart() {
        let c = |s, m: &str| classify_lookup(s, m, "r/x:v1", "r");
        assert!(matches!(c(404, "manifest unknown"), Ok(())));
        assert!(matches!(
            c(500, "errors: manifest unknown: manifest unknown"),
            Ok(())
        ));
        assert!(matches!(
            c(401, "unauthorized: authentication required"),
            Err(ImageError::RegistryRefused { .. })
        ));
        assert!(matches!(
            c(500, "dial tcp 127.0.0.1:1: connect: connection refused"),
            Err(ImageError::RegistryUnreachable { .. })
        ));
    }
}
