//! Where a release's inputs come from: each input, the names requesters give it, and the
//! source a job's variables make.

pub use crate::release::input::Input;
use crate::settings::AwsSettings;

/// Where inputs are read from, and what the requester calls each of them.
pub trait InputSource {
    /// The input's value; `None` when not given.
    fn value(&self, input: Input) -> Option<String>;
    /// How the requester names the input: `ECR_REGISTRY` in a job, `--registry` on a
    /// command line.
    fn name(&self, input: Input) -> String;
    /// Where the requester sets inputs, for the end of an error.
    fn advice(&self) -> &'static str;
    /// Any variable by name (the values of build arguments and secrets).
    fn variable(&self, name: &str) -> Option<String>;
}

/// A job's variables, under the names of the seed article's pipeline.
pub struct JobVariables<'a, F> {
    lookup: F,
    aws: &'a AwsSettings,
}

impl<'a, F: Fn(&str) -> Option<String>> JobVariables<'a, F> {
    /// Variables read through `lookup`; the ID token's name comes from settings.
    pub fn new(lookup: F, aws: &'a AwsSettings) -> Self {
        JobVariables { lookup, aws }
    }
}

impl<F: Fn(&str) -> Option<String>> InputSource for JobVariables<'_, F> {
    fn variable(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn value(&self, input: Input) -> Option<String> {
        let get = |name: &str| (self.lookup)(name).filter(|v| !v.trim().is_empty());
        match input {
            Input::Region => get("AWS_DEFAULT_REGION").or_else(|| get("AWS_REGION")),
            other => get(&self.name(other)),
        }
    }

    fn name(&self, input: Input) -> String {
        match input {
            Input::IdToken => self.aws.id_token_variable.clone(),
            other => other.job_variable().to_string(),
        }
    }

    fn advice(&self) -> &'static str {
        "Set them as CI/CD variables of the project or in the job's `variables:`"
    }
}
