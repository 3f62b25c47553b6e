//! The job payload the runner writes to `JOB_RESPONSE_FILE` (reference §7).
//!
//! Only the fields the executor uses are typed; everything else is ignored so a newer runner
//! adding keys never breaks a job.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

/// The subset of gitlab-runner's `spec.Job` that the executor reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobPayload {
    /// GitLab's job id.
    pub id: i64,
    /// Job and project identity.
    pub job_info: JobInfo,
    /// The commit being built.
    pub git_info: GitInfo,
    /// Runner-side limits for this job.
    pub runner_info: RunnerInfo,
    /// All job variables, masked ones in clear.
    pub variables: Vec<Variable>,
    /// The job's script steps.
    pub steps: Vec<Step>,
    /// The job's `image:`.
    pub image: ImageSpec,
    /// The job's `services:`.
    pub services: Vec<ImageSpec>,
    /// Registry credentials GitLab hands the job (the CI registry, the dependency proxy).
    pub credentials: Vec<Credential>,
    /// Whether the project lets jobs fetch into an earlier checkout (`GIT_STRATEGY`
    /// defaults to `fetch` then, else to `clone`).
    pub allow_git_fetch: bool,
    /// The job's `secrets:`, by variable name: the runner resolves them into variables
    /// that GitLab never lists among the payload's.
    #[serde(deserialize_with = "null_as_default")]
    pub secrets: BTreeMap<String, IgnoredAny>,
    /// The job's `artifacts:` entries (reports among them).
    #[serde(deserialize_with = "null_as_default")]
    pub artifacts: Vec<IgnoredAny>,
    /// The jobs whose artifacts this one downloads.
    #[serde(deserialize_with = "null_as_default")]
    pub dependencies: Vec<IgnoredAny>,
    /// The job's `cache:` entries.
    #[serde(deserialize_with = "null_as_default")]
    pub cache: Vec<IgnoredAny>,
}

/// GitLab sends `null` for some empty lists and maps.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One entry of the payload's `credentials`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Credential {
    /// `registry` for registry credentials.
    #[serde(rename = "type")]
    pub kind: String,
    /// The registry.
    pub url: String,
    /// User name.
    pub username: String,
    /// Password; a secret.
    pub password: String,
}

/// `image: docker:` options (`executor_opts.docker`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DockerOptions {
    /// `user`: a name or a numeric id.
    #[serde(deserialize_with = "string_or_number")]
    pub user: Option<String>,
    /// `platform`, e.g. `linux/arm64`.
    pub platform: Option<String>,
}

/// `executor_opts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExecutorOptions {
    /// The docker executor's options.
    pub docker: DockerOptions,
}

/// gitlab-runner accepts `user: 1000` as well as `user: "node"`.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        Text(String),
        Number(i64),
    }
    Ok(match Option::<StringOrNumber>::deserialize(d)? {
        None => None,
        Some(StringOrNumber::Text(t)) => Some(t).filter(|t| !t.is_empty()),
        Some(StringOrNumber::Number(n)) => Some(n.to_string()),
    })
}

/// `job_info`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobInfo {
    /// Job name.
    pub name: String,
    /// Job stage (`deploy`, `build`, …).
    pub stage: String,
    /// Project id.
    pub project_id: i64,
    /// Project name.
    pub project_name: String,
    /// `group/project`.
    pub project_full_path: String,
    /// Pipeline id.
    pub pipeline_id: i64,
}

/// `git_info`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GitInfo {
    /// Clone URL (contains the job token: never log it).
    pub repo_url: String,
    /// Branch or tag name.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Commit SHA.
    pub sha: String,
    /// `branch` or `tag`.
    pub ref_type: String,
    /// Whether GitLab protects the ref (GitLab 18.3+; older ones say it only in
    /// `CI_COMMIT_REF_PROTECTED`).
    pub protected: Option<bool>,
}

impl JobPayload {
    /// The value GitLab itself sent for a variable: its first definition in the payload.
    ///
    /// GitLab lists its predefined variables before the project's, the pipeline's and the
    /// job's own, which may redefine them; the runner exports them in that order, so the
    /// last one wins in a job's environment while the first is GitLab's (gitlab-runner's
    /// `Build.IsProtected` reads `CI_COMMIT_REF_PROTECTED` the same way, `Dedup(true)`).
    pub fn vouched_variable(&self, key: &str) -> Option<&str> {
        self.variables
            .iter()
            .find(|v| v.key == key)
            .map(|v| v.value.as_str())
    }
}

/// `runner_info`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunnerInfo {
    /// Job timeout in seconds.
    pub timeout: u64,
}

/// One job variable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Variable {
    /// Name.
    pub key: String,
    /// Value, in clear even when masked.
    pub value: String,
    /// Whether GitLab lets services and job containers' configuration see it: true for
    /// predefined and `.gitlab-ci.yml` variables, false for the project's CI/CD settings.
    pub public: bool,
    /// Whether GitLab masks it in the job log.
    pub masked: bool,
    /// File-type variable: the value is the file's content.
    pub file: bool,
}

/// One script step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Step {
    /// `script`, `after_script`, or a named step.
    pub name: String,
    /// Commands.
    pub script: Vec<String>,
    /// Step timeout in seconds.
    pub timeout: u64,
}

/// An `image:` or `services:` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ImageSpec {
    /// Image reference.
    pub name: String,
    /// Service alias (first of the comma/space separated list).
    pub alias: String,
    /// Entrypoint override; `Some([""])` clears the image's entrypoint, `Some([])` keeps it
    /// (as the docker executor's `overwriteEntrypoint`).
    pub entrypoint: Option<Vec<String>>,
    /// Command override.
    pub command: Option<Vec<String>>,
    /// Pull policies the job allows, in order of preference.
    #[serde(deserialize_with = "string_or_list")]
    pub pull_policy: Vec<String>,
    /// Variables of a service container.
    #[serde(deserialize_with = "variables_list_or_map")]
    pub variables: BTreeMap<String, String>,
    /// `image: docker: user/platform`.
    pub executor_opts: ExecutorOptions,
}

/// The runner sends `pull_policy` as a string in older versions and a list in newer ones.
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) if s.is_empty() => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// Service variables arrive as the payload's `[{key, value}]` list or, in
/// `CI_JOB_SERVICES`, as a `{key: value}` map.
fn variables_list_or_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrMap {
        List(Vec<Variable>),
        Map(BTreeMap<String, String>),
    }
    Ok(match Option::<ListOrMap>::deserialize(d)? {
        None => BTreeMap::new(),
        Some(ListOrMap::List(v)) => v.into_iter().map(|v| (v.key, v.value)).collect(),
        Some(ListOrMap::Map(m)) => m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_runner_payload_and_ignores_unknown_keys() {
        let json = r#"{
            "id": 77, "token": "secret", "allow_git_fetch": true,
            "job_info": {"name": "deploy", "stage": "deploy", "project_id": 5,
                         "project_name": "app", "project_full_path": "group/app",
                         "pipeline_id": 9, "time_in_queue_seconds": 1},
            "git_info": {"repo_url": "https://x", "ref": "v1.2.3", "sha": "abc",
                         "ref_type": "tag", "refspecs": [], "depth": 20},
            "runner_info": {"timeout": 3600},
            "variables": [{"key": "A", "value": "1", "public": true, "masked": false},
                          {"key": "S", "value": "s3cr3t", "public": false, "masked": true}],
            "steps": [{"name": "script", "script": ["echo hi"], "timeout": 3600,
                       "when": "on_success", "allow_failure": false}],
            "image": {"name": "alpine:3", "entrypoint": [""], "pull_policy": ["if-not-present"]},
            "services": [{"name": "redis:7", "alias": "cache",
                          "variables": [{"key": "X", "value": "y"}], "pull_policy": "always"}],
            "features": {"trace_sections": true}, "future_key": {"x": 1}
        }"#;
        let p: JobPayload = serde_json::from_str(json).unwrap();
        assert_eq!(p.id, 77);
        assert_eq!(p.job_info.stage, "deploy");
        assert_eq!(p.git_info.git_ref, "v1.2.3");
        assert!(p.variables[1].masked);
        assert_eq!(p.image.entrypoint, Some(vec![String::new()]));
        assert_eq!(p.image.pull_policy, ["if-not-present"]);
        assert_eq!(p.services[0].pull_policy, ["always"]);
        assert_eq!(p.services[0].variables["X"], "y");
    }

    #[test]
    fn nulls_and_missing_objects_are_defaults() {
        let p: JobPayload =
            serde_json::from_str(r#"{"id": 1, "image": {"name": "", "pull_policy": null}}"#)
                .unwrap();
        assert!(p.image.pull_policy.is_empty());
        assert!(p.services.is_empty());
        let p: JobPayload = serde_json::from_str(
            r#"{"artifacts": null, "cache": [{"key": "k"}], "secrets": null}"#,
        )
        .unwrap();
        assert!(p.artifacts.is_empty() && p.secrets.is_empty());
        assert_eq!(p.cache.len(), 1);
    }
}
