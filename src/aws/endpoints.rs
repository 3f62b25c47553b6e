//! Endpoint overrides (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`) read once from the
//! executor's environment and checked, because the SDK panics on an empty one and fails late
//! and obscurely on a malformed one. An empty variable counts as unset, as in the AWS CLI.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

use super::AwsError;

const GLOBAL: &str = "AWS_ENDPOINT_URL";

/// The endpoint overrides of the environment, each a checked `http(s)://` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// Whether `AWS_ENDPOINT_URL` is present at all (empty included): then it, not a
    /// profile's `endpoint_url`, decides the global endpoint.
    global_set: bool,
    global: Option<String>,
    /// By variable name (`AWS_ENDPOINT_URL_ECS`, …).
    per_service: BTreeMap<String, String>,
}

impl Endpoints {
    /// Reads this process's environment.
    pub fn from_env() -> Result<Self, AwsError> {
        Self::from_vars(std::env::vars_os().filter_map(|(k, v)| {
            // A name or value that is not Unicode cannot be an endpoint variable we read.
            Some((k.into_string().ok()?, v.into_string().unwrap_or_default()))
        }))
    }

    fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, AwsError> {
        let mut endpoints = Endpoints::default();
        let mut ignore = false;
        for (name, value) in vars {
            if name == "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS" {
                ignore = value.trim().eq_ignore_ascii_case("true");
                continue;
            }
            if name != GLOBAL && !name.starts_with("AWS_ENDPOINT_URL_") {
                continue;
            }
            let url = checked(&name, value.trim())?;
            match name == GLOBAL {
                true => {
                    endpoints.global_set = true;
                    endpoints.global = url;
                }
                false => {
                    if let Some(url) = url {
                        endpoints.per_service.insert(name, url);
                    }
                }
            }
        }
        Ok(match ignore {
            true => Endpoints {
                global_set: true,
                ..Endpoints::default()
            },
            false => endpoints,
        })
    }

    /// `config` with these endpoints in place of what the SDK read from the environment.
    pub fn apply(self, config: SdkConfig) -> SdkConfig {
        let mut builder = config.into_builder();
        if self.global_set {
            builder.set_endpoint_url(self.global.clone());
        }
        builder.service_config(self).build()
    }
}

/// `None` for an empty value; an error naming the variable for anything but an
/// `http(s)://host…` URL.
fn checked(name: &str, value: &str) -> Result<Option<String>, AwsError> {
    if value.is_empty() {
        return Ok(None);
    }
    let host = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    match host {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.contains(' ') => {
            Ok(Some(value.to_string()))
        }
        _ => Err(AwsError::EndpointUrl {
            variable: name.to_string(),
            value: value.to_string(),
        }),
    }
}

impl LoadServiceConfig for Endpoints {
    /// A service's endpoint: `AWS_ENDPOINT_URL_<SERVICE ID>` (upper case, spaces as
    /// underscores, as the SDK names it), else the global one. Other keys the SDK may ask
    /// for are read from the environment the same way, empty meaning unset.
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let specific = format!(
            "{}_{}",
            key.env(),
            key.service_id().to_ascii_uppercase().replace(' ', "_")
        );
        if key.env() == GLOBAL {
            return self
                .per_service
                .get(&specific)
                .cloned()
                .or_else(|| self.global.clone());
        }
        let read = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        read(&specific).or_else(|| read(key.env()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn key(service: &str) -> ServiceConfigKey<'_> {
        ServiceConfigKey::builder()
            .service_id(service)
            .env(GLOBAL)
            .profile("endpoint_url")
            .build()
            .unwrap()
    }

    #[test]
    fn empty_variables_are_unset_and_services_fall_back_to_the_global_endpoint() {
        let e = Endpoints::from_vars(vars(&[
            ("AWS_ENDPOINT_URL", ""),
            ("AWS_ENDPOINT_URL_ECS", "http://127.0.0.1:4000"),
            ("AWS_ENDPOINT_URL_STS", " "),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        assert_eq!(
            e.load_config(key("ECS")).as_deref(),
            Some("http://127.0.0.1:4000")
        );
        assert_eq!(e.load_config(key("STS")), None);
        let e = Endpoints::from_vars(vars(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "https://logs.example"),
        ]))
        .unwrap();
        assert_eq!(
            e.load_config(key("ECR")).as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(
            e.load_config(key("CloudWatch Logs")).as_deref(),
            Some("https://logs.example")
        );
    }

    #[test]
    fn a_malformed_endpoint_is_an_error_naming_the_variable() {
        for bad in ["notaurl", "http://", "ftp://host", "http:// host"] {
            let err = Endpoints::from_vars(vars(&[("AWS_ENDPOINT_URL_ECR", bad)])).unwrap_err();
            assert!(
                err.to_string().contains("AWS_ENDPOINT_URL_ECR"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn ignore_configured_endpoint_urls_is_honoured() {
        let e = Endpoints::from_vars(vars(&[
            ("AWS_ENDPOINT_URL_ECS", "http://127.0.0.1:4000"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]))
        .unwrap();
        assert_eq!(e.load_config(key("ECS")), None);
    }
}
