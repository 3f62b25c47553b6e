//! A job as GitLab hands it to the runner: its payload (`response.json`), its variables in
//! the order gitlab-runner's `GetAllVariables` lists them, and `CI_JOB_SERVICES` as the
//! custom executor puts it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::protocol::expand::expand;

/// The runner version this stand-in plays.
pub const RUNNER_VERSION: &str = "19.4.0";
/// The GitLab instance jobs come from.
pub const SERVER_URL: &str = "https://gitlab.example.com";
/// The host of [`SERVER_URL`].
const SERVER_HOST: &str = "gitlab.example.com";
/// The container registry the stand-in GitLab names (`CI_REGISTRY`).
const REGISTRY: &str = "registry.gitlab.example.com";

/// A job variable.
#[derive(Clone, Debug)]
pub struct Var {
    /// Name.
    pub key: String,
    /// Value.
    pub value: String,
    /// Masked in GitLab.
    pub masked: bool,
    /// File-type variable.
    pub file: bool,
    /// Raw (`expand: false`): the runner does not expand it.
    pub raw: bool,
    /// Defined in the project's CI/CD settings, not in `.gitlab-ci.yml`: GitLab sends it
    /// with `public: false` (masked and file variables can only be such).
    pub setting: bool,
}

impl Var {
    /// A `.gitlab-ci.yml` variable: public, neither masked nor a file.
    pub fn new(key: &str, value: impl Into<String>) -> Self {
        plain(key, value)
    }
}

/// A variable that is neither masked nor a file.
fn plain(key: &str, value: impl Into<String>) -> Var {
    Var {
        key: key.into(),
        value: value.into(),
        masked: false,
        file: false,
        raw: false,
        setting: false,
    }
}

/// A `services:` entry.
#[derive(Clone, Debug, Default)]
pub struct Service {
    /// Image.
    pub name: String,
    /// Aliases as written (`"db,pg"`).
    pub alias: String,
    /// Entrypoint override.
    pub entrypoint: Option<Vec<String>>,
    /// Command override.
    pub command: Option<Vec<String>>,
    /// Service variables.
    pub variables: Vec<(String, String)>,
    /// `docker: user:`.
    pub user: Option<String>,
}

/// Where `get_sources` gets the project from.
#[derive(Clone, Debug)]
pub struct GitSource {
    /// The repository, as the helper container reaches it (a `file://` path the settings'
    /// `docker.volumes` mount into it, in tests and for `exec`).
    pub repo: PathBuf,
    /// The commit to check out.
    pub sha: String,
    /// The branch or tag name the pipeline runs for.
    pub ref_name: String,
    /// Whether `ref_name` is a tag.
    pub is_tag: bool,
}

impl GitSource {
    /// `git_ref` (a tag if `is_tag`) of the repository at `repo`, at the commit it names now.
    pub fn new(repo: &Path, git_ref: &str, is_tag: bool) -> Self {
        let sha = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["rev-parse", &format!("{git_ref}^{{commit}}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        GitSource {
            repo: repo.to_path_buf(),
            sha,
            ref_name: git_ref.into(),
            is_tag,
        }
    }
}

/// A `cache:` entry.
#[derive(Clone, Debug, Default)]
pub struct CacheDef {
    /// `key` (empty: `<job name>/<ref>`, as GitLab defaults it).
    pub key: String,
    /// `paths`.
    pub paths: Vec<String>,
    /// `policy`: `pull-push` (empty), `pull` or `push`.
    pub policy: String,
    /// `when`: `on_success` (empty), `on_failure` or `always`.
    pub when: String,
    /// `untracked`.
    pub untracked: bool,
}

/// An `artifacts:` entry.
#[derive(Clone, Debug, Default)]
pub struct ArtifactDef {
    /// `name`.
    pub name: String,
    /// `paths`.
    pub paths: Vec<String>,
    /// `when`: `on_success` (empty), `on_failure` or `always`.
    pub when: String,
    /// `expire_in`.
    pub expire_in: String,
}

/// A job this one needs the artifacts of.
#[derive(Clone, Debug, Default)]
pub struct Dependency {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// A job as GitLab hands it to the runner.
#[derive(Clone, Debug)]
pub struct Job {
    /// `CI_JOB_ID`.
    pub id: u64,
    /// `CI_PROJECT_ID`.
    pub project_id: u64,
    /// `CI_PROJECT_PATH`.
    pub project_path: String,
    /// `CI_CONCURRENT_ID`: the runner-wide slot of the job.
    pub concurrent_id: u64,
    /// `CI_CONCURRENT_PROJECT_ID`: the job's slot among the project's jobs on the runner.
    pub project_slot: u64,
    /// Whether GitLab protects the job's ref (`git_info.protected`).
    pub protected: bool,
    /// Job name.
    pub name: String,
    /// Job stage.
    pub stage: String,
    /// `CI_COMMIT_SHA` when the job has no sources (else the source's commit).
    pub commit_sha: String,
    /// `CI_COMMIT_TIMESTAMP` (ISO 8601).
    pub commit_timestamp: String,
    /// `CI_COMMIT_MESSAGE`.
    pub commit_message: String,
    /// The commit's author, who stands for the user who started the pipeline
    /// (`GITLAB_USER_*`, `CI_COMMIT_AUTHOR`): name and email.
    pub author: (String, String),
    /// `image:`.
    pub image: Option<String>,
    /// `image: entrypoint:`.
    pub image_entrypoint: Option<Vec<String>>,
    /// `image: pull_policy:`.
    pub pull_policy: Vec<String>,
    /// `image: docker: user:`.
    pub image_user: Option<String>,
    /// `services:`.
    pub services: Vec<Service>,
    /// Job variables (user-defined; predefined ones are added by the runner).
    pub variables: Vec<Var>,
    /// `script:` (before_script merged).
    pub script: Vec<String>,
    /// Further steps, as `release:` adds `step_release`: (name, commands).
    pub steps: Vec<(String, Vec<String>)>,
    /// `after_script:`.
    pub after_script: Vec<String>,
    /// `hooks: pre_get_sources_script:`.
    pub pre_get_sources: Vec<String>,
    /// `hooks: post_get_sources_script:`.
    pub post_get_sources: Vec<String>,
    /// `cache:`.
    pub cache: Vec<CacheDef>,
    /// `artifacts:`.
    pub artifacts: Vec<ArtifactDef>,
    /// Jobs whose artifacts this one downloads.
    pub dependencies: Vec<Dependency>,
    /// Sources; without them the job runs with `GIT_STRATEGY: none`.
    pub git: Option<GitSource>,
    /// Job timeout in seconds.
    pub timeout: u64,
}

impl Job {
    /// Adds a plain variable.
    pub fn var(mut self, key: &str, value: &str) -> Self {
        self.variables.push(plain(key, value));
        self
    }

    /// Adds a variable of the project's CI/CD settings, neither masked nor a file.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.variables.push(Var {
            setting: true,
            ..plain(key, value)
        });
        self
    }

    /// Adds a masked variable (of the project's CI/CD settings).
    pub fn masked(mut self, key: &str, value: &str) -> Self {
        self.variables.push(Var {
            masked: true,
            setting: true,
            ..plain(key, value)
        });
        self
    }

    /// Adds a file-type variable (of the project's CI/CD settings).
    pub fn file_var(mut self, key: &str, content: &str) -> Self {
        self.variables.push(Var {
            file: true,
            setting: true,
            ..plain(key, content)
        });
        self
    }

    /// A user variable's value (the last definition wins).
    pub fn variable(&self, key: &str) -> Option<&str> {
        self.variables
            .iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value.as_str())
    }

    pub(super) fn git_ref(&self) -> (String, bool) {
        self.git
            .as_ref()
            .map(|g| (g.ref_name.clone(), g.is_tag))
            .unwrap_or_else(|| ("main".into(), false))
    }

    /// The commit the job builds.
    pub(super) fn sha(&self) -> &str {
        self.git
            .as_ref()
            .map(|g| g.sha.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.commit_sha)
    }

    /// The identity the runner's payload vouches for (what the executor names objects by).
    pub fn identity(&self, runner: &super::Runner) -> crate::protocol::JobIdentity {
        crate::protocol::JobIdentity {
            runner_id: runner.runner_id,
            project_id: self.project_id,
            project_path: self.project_path.clone(),
            job_id: self.id,
            protected: self.protected,
            slot: self.project_slot,
        }
    }

    pub(super) fn token(&self) -> String {
        format!("glcbt-64_{}secrettoken", self.id)
    }

    /// The predefined variables GitLab itself sends with the job (the runner adds its
    /// own around them): what GitLab's side of a pipeline can refer to.
    pub fn gitlab_variables(&self, runner: &super::Runner) -> Vec<Var> {
        let (git_ref, is_tag) = self.git_ref();
        let secret = |k: &str, v: String| Var {
            masked: true,
            setting: true,
            ..plain(k, v)
        };
        let sha = self.sha().to_string();
        let project_name = self.project_path.rsplit('/').next().unwrap_or_default();
        let namespace = self
            .project_path
            .rsplit_once('/')
            .map_or("", |(namespace, _)| namespace);
        let (author_name, author_email) = &self.author;
        let login = author_email.split('@').next().unwrap_or_default();
        let (title, description) = self
            .commit_message
            .split_once('\n')
            .map_or((self.commit_message.as_str(), ""), |(t, d)| {
                (t, d.trim_start_matches('\n'))
            });
        vec![
            plain("CI", "true"),
            plain("GITLAB_CI", "true"),
            plain("CI_SERVER_URL", SERVER_URL),
            plain("CI_JOB_ID", self.id.to_string()),
            plain("CI_JOB_NAME", self.name.clone()),
            plain("CI_JOB_STAGE", self.stage.clone()),
            plain(
                "CI_JOB_URL",
                format!("{SERVER_URL}/{}/-/jobs/{}", self.project_path, self.id),
            ),
            plain("CI_PIPELINE_ID", (self.id / 10).to_string()),
            plain("CI_PIPELINE_SOURCE", "push"),
            plain("CI_DEFAULT_BRANCH", "main"),
            plain("CI_PROJECT_ID", self.project_id.to_string()),
            plain("CI_PROJECT_PATH", self.project_path.clone()),
            plain("CI_PROJECT_PATH_SLUG", slug(&self.project_path)),
            plain("CI_PROJECT_NAME", project_name),
            plain("CI_PROJECT_TITLE", project_name),
            plain("CI_PROJECT_NAMESPACE", namespace),
            plain(
                "CI_PROJECT_ROOT_NAMESPACE",
                namespace.split('/').next().unwrap_or_default(),
            ),
            plain(
                "CI_PROJECT_URL",
                format!("{SERVER_URL}/{}", self.project_path),
            ),
            plain("CI_PROJECT_VISIBILITY", "private"),
            plain("CI_CONFIG_PATH", ".gitlab-ci.yml"),
            plain("CI_SERVER_HOST", SERVER_HOST),
            plain("CI_SERVER_FQDN", SERVER_HOST),
            plain("CI_SERVER_PROTOCOL", "https"),
            plain("CI_SERVER_PORT", "443"),
            plain("CI_SERVER_NAME", "GitLab"),
            plain("CI_API_V4_URL", format!("{SERVER_URL}/api/v4")),
            plain("CI_API_GRAPHQL_URL", format!("{SERVER_URL}/api/graphql")),
            plain("CI_PIPELINE_IID", (self.id / 10 % 100_000).to_string()),
            plain(
                "CI_PIPELINE_URL",
                format!(
                    "{SERVER_URL}/{}/-/pipelines/{}",
                    self.project_path,
                    self.id / 10
                ),
            ),
            plain("CI_JOB_NAME_SLUG", slug(&self.name)),
            plain("CI_NODE_TOTAL", "1"),
            plain("GITLAB_USER_ID", "1"),
            plain("GITLAB_USER_LOGIN", login),
            plain("GITLAB_USER_NAME", author_name.clone()),
            plain("GITLAB_USER_EMAIL", author_email.clone()),
            plain(
                "CI_COMMIT_AUTHOR",
                format!("{author_name} <{author_email}>"),
            ),
            plain("CI_COMMIT_MESSAGE", self.commit_message.clone()),
            plain("CI_COMMIT_TITLE", title),
            plain("CI_COMMIT_DESCRIPTION", description),
            plain("CI_RUNNER_ID", runner.runner_id.to_string()),
            plain("CI_COMMIT_REF_PROTECTED", self.protected.to_string()),
            plain("CI_COMMIT_SHA", sha.clone()),
            plain(
                "CI_COMMIT_SHORT_SHA",
                sha.chars().take(8).collect::<String>(),
            ),
            plain("CI_COMMIT_TIMESTAMP", self.commit_timestamp.clone()),
            plain("CI_COMMIT_REF_NAME", git_ref.clone()),
            plain("CI_COMMIT_REF_SLUG", slug(&git_ref)),
            plain("CI_REGISTRY", REGISTRY),
            plain(
                "CI_REGISTRY_IMAGE",
                format!("{REGISTRY}/{}", self.project_path.to_ascii_lowercase()),
            ),
            plain("CI_REGISTRY_USER", "gitlab-ci-token"),
            secret("CI_JOB_TOKEN", self.token()),
            secret("CI_REGISTRY_PASSWORD", self.token()),
            plain(
                if is_tag {
                    "CI_COMMIT_TAG"
                } else {
                    "CI_COMMIT_BRANCH"
                },
                git_ref,
            ),
        ]
    }

    /// Every variable, in the order GitLab and the runner list them, for `status`
    /// (`CI_JOB_STATUS`) and the directories the runner computed; expanded as the runner's
    /// `GetAllVariables` expands them.
    pub(super) fn all_variables(
        &self,
        runner: &super::Runner,
        dirs: &Dirs,
        status: &str,
    ) -> Vec<Var> {
        let mut vars = Vec::new();
        if let Some(image) = &self.image {
            vars.push(plain("CI_JOB_IMAGE", image.clone()));
        }
        vars.push(plain("CI_RUNNER_SHORT_TOKEN", runner.short_token.clone()));
        vars.extend(runner.environment.iter().map(|(k, v)| plain(k, v.clone())));
        vars.extend([
            plain("CI_BUILDS_DIR", dirs.builds.clone()),
            plain("CI_PROJECT_DIR", dirs.project.clone()),
            plain("CI_CONCURRENT_ID", self.concurrent_id.to_string()),
            plain("CI_CONCURRENT_PROJECT_ID", self.project_slot.to_string()),
            plain("CI_SERVER", "yes"),
            plain("CI_JOB_STATUS", status),
            plain("CI_JOB_TIMEOUT", self.timeout.to_string()),
        ]);
        vars.extend(self.payload_variables(runner));
        vars.extend([
            plain("CI_SHARED_ENVIRONMENT", "true"),
            plain("CI_RUNNER_VERSION", RUNNER_VERSION),
            plain("CI_RUNNER_REVISION", "d79f3e7b"),
            plain("CI_RUNNER_EXECUTABLE_ARCH", "linux/amd64"),
            plain("RUNNER_TEMP_PROJECT_DIR", format!("{}.tmp", dirs.project)),
        ]);
        expand_variables(&vars)
    }

    /// The variables GitLab sends in the payload: its predefined ones first, then the job's
    /// own (which may redefine them), each expanded against these alone with references it
    /// does not know kept for the runner (`sort_and_expand_all(keep_undefined: true)`).
    pub(super) fn payload_variables(&self, runner: &super::Runner) -> Vec<Var> {
        let mut vars = self.gitlab_variables(runner);
        vars.extend(self.variables.iter().cloned());
        // A job without sources says so, as a pipeline would: else the runner's default
        // strategy (`fetch`) would apply to it.
        if self.git.is_none() && self.variable("GIT_STRATEGY").is_none() {
            vars.push(plain("GIT_STRATEGY", "none"));
        }
        let known = vars.clone();
        vars.into_iter()
            .map(|v| match v.raw {
                true => v,
                false => Var {
                    value: crate::protocol::expand::expand_known(&v.value, &|name| {
                        known
                            .iter()
                            .rev()
                            .find(|k| k.key == name && !k.file)
                            .map(|k| k.value.clone())
                    }),
                    ..v
                },
            })
            .collect()
    }

    /// `response.json`: the job payload.
    pub(super) fn payload(&self, runner: &super::Runner) -> Value {
        let (git_ref, is_tag) = self.git_ref();
        let vars: Vec<Value> = self
            .payload_variables(runner)
            .iter()
            .map(|v| json!({"key": v.key, "value": v.value, "public": !v.setting, "masked": v.masked, "file": v.file, "raw": v.raw}))
            .collect();
        let step = |name: &str, script: &[String], when: &str| json!({"name": name, "script": script, "timeout": self.timeout, "when": when, "allow_failure": false});
        let mut steps = vec![step("script", &self.script, "on_success")];
        steps.extend(self.steps.iter().map(|(n, s)| step(n, s, "on_success")));
        if !self.after_script.is_empty() {
            steps.push(step("after_script", &self.after_script, "always"));
        }
        let mut hooks = Vec::new();
        for (name, script) in [
            ("pre_get_sources_script", &self.pre_get_sources),
            ("post_get_sources_script", &self.post_get_sources),
        ] {
            if !script.is_empty() {
                hooks.push(json!({"name": name, "script": script}));
            }
        }
        let image_options = match &self.image_user {
            Some(user) => json!({"docker": {"user": user}}),
            None => json!({}),
        };
        json!({
            "id": self.id,
            "token": self.token(),
            "allow_git_fetch": true,
            "job_info": {"name": self.name, "stage": self.stage, "project_id": self.project_id,
                         "project_name": self.project_path.rsplit('/').next().unwrap_or(""),
                         "project_full_path": self.project_path, "pipeline_id": self.id / 10},
            "git_info": {"repo_url": self.repo_url(), "ref": git_ref, "sha": self.sha(),
                         "ref_type": if is_tag { "tag" } else { "branch" }, "depth": 20,
                         "protected": self.protected,
                         "refspecs": ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]},
            "runner_info": {"timeout": self.timeout},
            "variables": vars,
            "steps": steps,
            "hooks": hooks,
            "image": {"name": self.image.clone().unwrap_or_default(), "entrypoint": self.image_entrypoint,
                      "pull_policy": self.pull_policy, "executor_opts": image_options},
            "services": self.services.iter().map(|s| json!({"name": s.name, "alias": s.alias,
                      "entrypoint": s.entrypoint, "command": s.command, "pull_policy": self.pull_policy,
                      "executor_opts": match &s.user { Some(user) => json!({"docker": {"user": user}}), None => json!({}) },
                      "variables": s.variables.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "cache": self.cache.iter().map(|c| json!({"key": c.key, "paths": c.paths, "policy": c.policy,
                      "when": c.when, "untracked": c.untracked})).collect::<Vec<_>>(),
            "artifacts": self.artifacts.iter().map(|a| json!({"name": a.name, "paths": a.paths, "when": a.when,
                      "expire_in": a.expire_in, "artifact_type": "archive", "artifact_format": "zip"})).collect::<Vec<_>>(),
            "dependencies": self.dependencies.iter().map(|d| json!({"id": d.id, "name": d.name,
                      "token": self.token(), "artifacts_file": {"filename": "artifacts.zip", "size": 1}})).collect::<Vec<_>>(),
            "credentials": [{"type": "registry", "url": "registry.gitlab.example.com",
                             "username": "gitlab-ci-token", "password": self.token()}],
            "features": {"trace_sections": true},
        })
    }

    /// The clone URL: a local repository by path (with the job token, as GitLab writes
    /// its URLs, for a remote one).
    pub(super) fn repo_url(&self) -> String {
        match &self.git {
            Some(g) => format!("file://{}", g.repo.display()),
            None => format!(
                "https://gitlab-ci-token:{}@gitlab.example.com/{}.git",
                self.token(),
                self.project_path
            ),
        }
    }

    /// `CUSTOM_ENV_CI_JOB_SERVICES`, as `custom.go` builds it: names and aliases expanded
    /// with the job's (expanded) variables `vars`, the first alias only, the service's
    /// `variables` expanded against `vars` and themselves, and left out when it has none.
    pub(super) fn services_env(&self, vars: &[Var]) -> String {
        if self.services.is_empty() {
            return String::new();
        }
        let list: Vec<Value> = self
            .services
            .iter()
            .map(|s| {
                let alias = expand_with(&s.alias, vars);
                let first_alias = alias.split([',', ' ']).find(|a| !a.is_empty()).unwrap_or("");
                let mut v = json!({"name": expand_with(&s.name, vars), "alias": first_alias, "entrypoint": s.entrypoint, "command": s.command});
                if !s.variables.is_empty() {
                    let mut all = vars.to_vec();
                    all.extend(s.variables.iter().map(|(k, v)| plain(k, v.clone())));
                    let all = expand_variables(&all);
                    v["variables"] = s
                        .variables
                        .iter()
                        .map(|(k, _)| {
                            let value = all.iter().rev().find(|v| &v.key == k).map(|v| v.value.clone());
                            (k.clone(), json!(value.unwrap_or_default()))
                        })
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                v
            })
            .collect();
        Value::Array(list).to_string()
    }
}

/// The runner's `Variables.Expand`: every variable that is not raw expanded once against
/// all of them (the last definition of a name wins; a file variable stands for its path).
fn expand_variables(vars: &[Var]) -> Vec<Var> {
    vars.iter()
        .map(|v| match v.raw {
            true => v.clone(),
            false => Var {
                value: expand_with(&v.value, vars),
                ..v.clone()
            },
        })
        .collect()
}

/// `value` expanded as the runner expands it with `vars` (`Variables.ExpandValue`).
pub(super) fn expand_with(value: &str, vars: &[Var]) -> String {
    let lookup = |name: &str| {
        let v = vars.iter().rev().find(|v| v.key == name)?;
        Some(match v.file {
            true => {
                let temp = vars
                    .iter()
                    .rev()
                    .find(|t| t.key == "RUNNER_TEMP_PROJECT_DIR")
                    .map(|t| t.value.as_str())
                    .unwrap_or_default();
                format!("{temp}/{}", v.key)
            }
            false => v.value.clone(),
        })
    };
    expand(value, &lookup)
}

/// The directories the runner computed from the `config` output.
#[derive(Clone, Debug, Default)]
pub struct Dirs {
    /// `builds_dir`.
    pub builds: String,
    /// `cache_dir`.
    pub cache: String,
    /// The project directory (`CI_PROJECT_DIR`).
    pub project: String,
    /// The project's cache directory (`<cache_dir>/<project path>`).
    pub project_cache: String,
}

/// `CI_COMMIT_REF_SLUG`: lowercase, `[a-z0-9-]`, at most 63 characters.
fn slug(s: &str) -> String {
    let mapped: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    mapped.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_once_as_the_runner_expands_them() {
        let vars = vec![
            plain("RUNNER_TEMP_PROJECT_DIR", "/builds/g/p.tmp"),
            plain("BASE", "v1"),
            plain("BASE", "v2"),
            plain("TAG", "app:$BASE-${CI_MISSING}"),
            plain("NESTED", "[$TAG]"),
            Var {
                raw: true,
                ..plain("RAW", "$BASE $$")
            },
            plain("PRICE", "$$5"),
            Var {
                file: true,
                ..plain("KEY", "secret")
            },
            plain("KEY_PATH", "$KEY"),
        ];
        let expanded = expand_variables(&vars);
        let value = |k: &str| {
            expanded
                .iter()
                .rev()
                .find(|v| v.key == k)
                .map(|v| v.value.as_str())
        };
        assert_eq!(value("TAG"), Some("app:v2-"));
        assert_eq!(value("NESTED"), Some("[app:$BASE-${CI_MISSING}]"));
        assert_eq!(value("RAW"), Some("$BASE $$"));
        assert_eq!(value("PRICE"), Some("$5"));
        assert_eq!(value("KEY"), Some("secret"));
        assert_eq!(value("KEY_PATH"), Some("/builds/g/p.tmp/KEY"));
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Feature/ABC_1"), "feature-abc-1");
    }
}
