//! A failed AWS API call, classified once from the SDK's typed error (its service error
//! code, or the kind of dispatch failure) before it is wrapped: callers decide on the
//! class, never on the text.

use std::fmt;

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};

/// What kind of failure an AWS call met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The API throttled us beyond the SDK's retries.
    Throttled,
    /// The credentials were refused or lack a permission.
    Denied,
    /// No credentials could be found or assumed.
    NoCredentials,
    /// The named resource does not exist.
    NotFound,
    /// Another registration of the task definition family was in progress.
    ConcurrentRegistration,
    /// The endpoint could not be reached.
    Unreachable,
    /// The call timed out.
    TimedOut,
    /// The service refused the request for another reason, with its error code.
    Rejected(String),
    /// The answer could not be read.
    Unreadable,
}

/// A failed AWS call: the operation, what kind of failure, and the service's own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("AWS call {operation} failed: {message}")]
pub struct CallError {
    /// `service:Operation`.
    pub operation: &'static str,
    /// The class of the failure.
    pub fault: Fault,
    /// The service's error code and message, or what went wrong on the way; never request
    /// contents.
    pub message: String,
}

impl CallError {
    /// A call whose answer lacked what it must hold.
    pub fn unreadable(operation: &'static str, message: impl Into<String>) -> Self {
        CallError {
            operation,
            fault: Fault::Unreadable,
            message: message.into(),
        }
    }

    /// Classifies an SDK error of any AWS client.
    pub fn from_sdk<E, R>(operation: &'static str, e: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let (fault, message) =
            match &e {
                SdkError::ServiceError(s) => {
                    let err = s.err();
                    let code = err.code().unwrap_or("error").to_string();
                    let text = err.message().unwrap_or("no message");
                    (service_fault(&code, text), format!("{code}: {text}"))
                }
                SdkError::DispatchFailure(d) if no_credentials(d.as_connector_error()) => (
                    Fault::NoCredentials,
                    format!(
                        "no AWS credentials ({}): give gitlab-ecs-executor's host credentials \
                     (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance \
                     role), or give the job AWS_ROLE_ARN and an ID token",
                        chain(
                            d.as_connector_error()
                                .map(|c| c as &(dyn std::error::Error + 'static))
                        )
                    ),
                ),
                SdkError::DispatchFailure(d) if d.is_timeout() => (
                    Fault::TimedOut,
                    "the endpoint did not answer in time".to_string(),
                ),
                SdkError::DispatchFailure(d) => (
                    Fault::Unreachable,
                    format!(
                    "the endpoint cannot be reached ({}); check the region and AWS_ENDPOINT_URL",
                    chain(d.as_connector_error().map(|c| c as &(dyn std::error::Error + 'static)))
                ),
                ),
                SdkError::TimeoutError(_) => (Fault::TimedOut, "the request timed out".to_string()),
                SdkError::ResponseError(_) => (
                    Fault::Unreadable,
                    format!("{}", aws_sdk_ecs::error::DisplayErrorContext(&e)),
                ),
                _ => (
                    Fault::Rejected("client".into()),
                    format!("{}", aws_sdk_ecs::error::DisplayErrorContext(&e)),
                ),
            };
        CallError {
            operation,
            fault,
            message,
        }
    }
}

fn service_fault(code: &str, message: &str) -> Fault {
    match code {
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => Fault::Throttled,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnauthorizedOperation"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch" => Fault::Denied,
        "ServiceNotFoundException"
        | "ClusterNotFoundException"
        | "RepositoryNotFoundException"
        | "ImageNotFoundException"
        | "ServiceDeploymentNotFoundException" => Fault::NotFound,
        // ECS has no code of its own for this one: a ClientException says it.
        "ClientException" if message.contains("Too many concurrent attempts") => {
            Fault::ConcurrentRegistration
        }
        other => Fault::Rejected(other.to_string()),
    }
}

/// Whether the call failed before sending because no identity could be resolved.
fn no_credentials(e: Option<&aws_sdk_ecs::error::ConnectorError>) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> =
        e.map(|c| c as &(dyn std::error::Error + 'static));
    while let Some(s) = source {
        if s.is::<aws_credential_types::provider::error::CredentialsError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error and its causes on one line.
fn chain(e: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut parts = Vec::new();
    let mut next = e;
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() {
        "dispatch failure".into()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_are_classified() {
        assert_eq!(
            service_fault("ThrottlingException", "Rate exceeded"),
            Fault::Throttled
        );
        assert_eq!(service_fault("AccessDeniedException", "no"), Fault::Denied);
        assert_eq!(
            service_fault("ServiceNotFoundException", ""),
            Fault::NotFound
        );
        assert_eq!(
            service_fault(
                "ClientException",
                "Too many concurrent attempts to create a new revision of the specified family."
            ),
            Fault::ConcurrentRegistration
        );
        assert_eq!(
            service_fault("ClientException", "Unable to describe task definition."),
            Fault::Rejected("ClientException".into())
        );
    }
}
