//! The stage scripts gitlab-runner 19.x writes for the custom executor
//! (`shells/abstract.go`, `shells/bash.go`), with its `RunnerCommand` `gitlab-runner`: the
//! variable exports, git fetch with hooks, cache extractor and archiver, artifact
//! downloader and uploader, file-variable cleanup, wrapped in `BashWriter.Finish`.

use super::job::{expand_with, Dirs, Job, Var, RUNNER_VERSION, SERVER_URL};

const RUNNER_COMMAND: &str = "gitlab-runner";

/// A stage body in the shape of `BashWriter.Finish`.
pub fn finish(body: &str) -> String {
    format!(
        "#!/usr/bin/env bash\n\ntrap 'exit 1' TERM\n\ncase \"$(set -o)\" in *\"pipefail\"*) set -o pipefail;; esac; set -o errexit\nset +o noclobber\n(trap 'exit 1' TERM; eval {}) < /dev/null\nexit 0\n",
        shell_quote(body)
    )
}

/// `helpers.ShellEscape`: ANSI-C quoting with `\xNN` for control and non-ASCII bytes;
/// words of only safe characters stay bare.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b",-./@_".contains(&b))
    {
        return s.to_string();
    }
    let mut out = String::from("$'");
    for b in s.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

fn notice(text: &str) -> String {
    format!(
        "echo {}\n",
        shell_quote(&format!("\x1b[32;1m{text}\x1b[0;m"))
    )
}

fn warning(text: &str) -> String {
    format!(
        "echo {}\n",
        shell_quote(&format!("\x1b[0;33m{text}\x1b[0;m"))
    )
}

/// Each command echoed in bold green, then run, as the runner writes user commands.
pub fn commands(lines: &[String]) -> String {
    lines
        .iter()
        .map(|c| format!("{}{c}\n", notice(&format!("$ {c}"))))
        .collect()
}

/// `writeExports`: every variable (file variables written to `<project>.tmp`), `GITLAB_ENV`
/// and what earlier stages added to it.
pub fn exports(vars: &[Var], dirs: &Dirs) -> String {
    let tmp = format!("{}.tmp", dirs.project);
    let mut body = String::new();
    for v in vars {
        if v.file {
            body.push_str(&format!(
                "mkdir -p {t}\nprintf '%s' {val} > {t}/{k}\nexport {k}={t}/{k}\n",
                t = shell_quote(&tmp),
                val = shell_quote(&v.value),
                k = v.key
            ));
        } else {
            body.push_str(&format!("export {}={}\n", v.key, shell_quote(&v.value)));
        }
    }
    let env_file = shell_quote(&format!("{tmp}/gitlab_runner_env"));
    body.push_str(&format!(
        "export GITLAB_ENV={env_file}\nmkdir -p {}\ntouch {env_file}\nwhile read -r line; do export \"$line\"; done < {env_file}\n",
        shell_quote(&tmp)
    ));
    body
}

fn cd(dirs: &Dirs) -> String {
    format!("cd {}\n", shell_quote(&dirs.project))
}

/// `prepare_script`: where the job runs; stale runner files removed. No exports.
pub fn prepare(dirs: &Dirs, hostname: &str) -> String {
    let tmp = format!("{}.tmp", dirs.project);
    format!(
        "echo \"Running on $(hostname) via {hostname}...\"\nrm -f {}\nrm -f {}\n",
        shell_quote(&format!("{tmp}/gitlab_runner_env")),
        shell_quote(&format!("{tmp}/masking.db"))
    )
}

/// `get_sources`, by `GIT_STRATEGY`, with the job's `hooks:` before and after.
pub fn get_sources(job: &Job, vars: &[Var], dirs: &Dirs) -> String {
    let proj = shell_quote(&dirs.project);
    let tmp = format!("{}.tmp", dirs.project);
    let template = format!("{tmp}/git-template");
    let mut body = exports(vars, dirs);
    body.push_str("export GIT_TERMINAL_PROMPT=0\nexport GCM_INTERACTIVE=Never\n");
    let strategy = job
        .variable("GIT_STRATEGY")
        .map(str::to_string)
        .unwrap_or_else(|| {
            if job.git.is_some() {
                "fetch".into()
            } else {
                "none".into()
            }
        });
    let fetches = matches!(strategy.as_str(), "fetch" | "clone");
    if fetches {
        body.push_str(&commands(&job.pre_get_sources));
    }
    if job.variable("GIT_LFS_SKIP_SMUDGE").is_none() {
        body.push_str("export GIT_LFS_SKIP_SMUDGE=1\n");
    }
    match strategy.as_str() {
        "none" => body.push_str(&format!("echo \"Skipping Git repository setup\"\nmkdir -p {proj}\n")),
        "empty" => body.push_str(&format!(
            "echo \"Skipping Git repository setup and creating an empty build directory\"\nrm -r -f {proj}\nmkdir -p {proj}\n"
        )),
        _ => {
            let git = format!("{}/.git", dirs.project);
            for lock in ["index.lock", "shallow.lock", "HEAD.lock", "hooks/post-checkout", "config.lock"] {
                body.push_str(&format!("rm -f {}\n", shell_quote(&format!("{git}/{lock}"))));
            }
            body.push_str(&format!(
                "if [ -d {refs} ]; then find {refs} -name '*.lock' -type f -exec rm -f {{}} +; fi\n",
                refs = shell_quote(&format!("{git}/refs"))
            ));
            // clean_git_config: nothing of an earlier job's git configuration survives.
            body.push_str(&format!(
                "rm -f {}\nrm -r -f {}\nrm -f {}\nrm -r -f {}\n",
                shell_quote(&format!("{template}/config")),
                shell_quote(&format!("{template}/hooks")),
                shell_quote(&format!("{git}/config")),
                shell_quote(&format!("{git}/hooks"))
            ));
            body.push_str(&format!("mkdir -p {}\n", shell_quote(&template)));
            for (key, value) in [
                ("init.defaultBranch", "none"),
                ("fetch.recurseSubmodules", "false"),
                ("credential.interactive", "never"),
                ("gc.autoDetach", "false"),
            ] {
                body.push_str(&format!(
                    "git config -f {} {key} {value}\n",
                    shell_quote(&format!("{template}/config"))
                ));
            }
            if strategy == "clone" {
                body.push_str(&format!("rm -r -f {proj}\n"));
            }
            body.push_str("echo \"Fetching changes with git depth set to 20...\"\n");
            body.push_str(&format!(
                "git init {proj} --template {}\ncd {proj}\n",
                shell_quote(&template)
            ));
            let url = shell_quote(&job.repo_url());
            body.push_str(&format!(
                "if git remote add origin {url} >/dev/null 2>&1; then\necho \"Created fresh repository.\"\nelse\ngit remote set-url origin {url}\nfi\n"
            ));
            body.push_str(&format!(
                "git -c {} fetch origin --no-recurse-submodules '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*' --depth 20 --prune --quiet\n",
                shell_quote(&format!("http.userAgent=gitlab-runner {RUNNER_VERSION} linux/amd64"))
            ));
            let (git_ref, _) = job.git_ref();
            let sha = job.sha();
            body.push_str(&format!(
                "echo \"Checking out {} as detached HEAD (ref is {git_ref})...\"\ngit -c submodule.recurse=false checkout -f -q {sha}\ngit clean -ffdx\n",
                crate::git::short(sha)
            ));
            body.push_str("if git lfs version >/dev/null 2>&1; then\ngit lfs pull\necho\nfi\n");
            body.push_str("echo \"Skipping Git submodules setup\"\n");
        }
    }
    if fetches {
        body.push_str(&commands(&job.post_get_sources));
    }
    body
}

/// `clear_worktree`: before a second `get_sources` attempt. No exports.
pub fn clear_worktree(dirs: &Dirs) -> String {
    let proj = shell_quote(&dirs.project);
    format!(
        "echo \"Deleting tracked and untracked files...\"\nif [ -d {proj} ]; then\ncd {proj}\ngit rm -rf --ignore-unmatch --quiet .\ngit clean -ffdx -q\nfi\n"
    )
}

/// The cache archive of `key`, relative to the project directory, as the runner passes it.
fn cache_file(dirs: &Dirs, key: &str) -> String {
    relative(
        &dirs.project,
        &format!("{}/{key}/cache.zip", dirs.project_cache),
    )
}

/// `to` relative to the directory `from` (both absolute).
fn relative(from: &str, to: &str) -> String {
    let from: Vec<&str> = from.split('/').filter(|p| !p.is_empty()).collect();
    let to: Vec<&str> = to.split('/').filter(|p| !p.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}

fn guard(action: &str, inner: &str) -> String {
    format!(
        "if {RUNNER_COMMAND} --version >/dev/null 2>&1; then\n{inner}else\n{}fi\n",
        warning(&format!("Missing {RUNNER_COMMAND}. {action} is disabled."))
    )
}

/// The cache key as the runner uses it: expanded with the job's variables, `<job>/<ref>`
/// when empty.
fn cache_key(job: &Job, key: &str, vars: &[Var]) -> String {
    match expand_with(key, vars) {
        key if key.is_empty() => format!("{}/{}", job.name, job.git_ref().0),
        key => key,
    }
}

/// A housekeeping stage of `inner` commands under `title`, `None` when it has none (the
/// runner then skips the stage).
fn housekeeping(title: &str, inner: &str, vars: &[Var], dirs: &Dirs) -> Option<String> {
    (!inner.is_empty())
        .then(|| format!("{}{}{}", exports(vars, dirs), cd(dirs), guard(title, inner)))
}

/// `restore_cache`, or `None` when no cache is pulled.
pub fn restore_cache(job: &Job, vars: &[Var], dirs: &Dirs) -> Option<String> {
    let mut inner = String::new();
    for cache in &job.cache {
        // The runner expands the policy (`policy: $CACHE_POLICY`).
        if (cache.paths.is_empty() && !cache.untracked)
            || expand_with(&cache.policy, vars) == "push"
        {
            continue;
        }
        let key = cache_key(job, &cache.key, vars);
        inner.push_str(&format!(
            "echo {}\nif {RUNNER_COMMAND} cache-extractor --file {} --timeout 10; then\necho \"Successfully extracted cache\"\nelse\necho \"Failed to extract cache\"\nfi\n",
            shell_quote(&format!("Checking cache for {key}...")),
            shell_quote(&cache_file(dirs, &key))
        ));
    }
    housekeeping("Extracting cache", &inner, vars, dirs)
}

/// `download_artifacts`, or `None` without dependencies.
pub fn download_artifacts(job: &Job, vars: &[Var], dirs: &Dirs) -> Option<String> {
    let mut inner = String::new();
    for dep in &job.dependencies {
        inner.push_str(&format!(
            "echo {}\n{RUNNER_COMMAND} artifacts-downloader --url {SERVER_URL} --token {} --id {}\n",
            shell_quote(&format!("Downloading artifacts for {} ({})...", dep.name, dep.id)),
            shell_quote(&job.token()),
            dep.id
        ));
    }
    housekeeping("Artifacts downloading", &inner, vars, dirs)
}

/// A user step (`build_script`, `step_*`).
pub fn user_step(lines: &[String], vars: &[Var], dirs: &Dirs) -> String {
    format!("{}{}{}", exports(vars, dirs), cd(dirs), commands(lines))
}

/// `after_script`.
pub fn after_script(lines: &[String], vars: &[Var], dirs: &Dirs) -> String {
    format!(
        "{}{}echo \"Running after script...\"\n{}",
        exports(vars, dirs),
        cd(dirs),
        commands(lines)
    )
}

fn when_matches(when: &str, on_success: bool) -> bool {
    match when {
        "" | "on_success" => on_success,
        "on_failure" => !on_success,
        "always" => true,
        _ => false,
    }
}

/// `archive_cache` / `archive_cache_on_failure`, or `None` when nothing is cached.
pub fn archive_cache(job: &Job, vars: &[Var], dirs: &Dirs, on_success: bool) -> Option<String> {
    let mut inner = String::new();
    for cache in &job.cache {
        if !when_matches(&cache.when, on_success)
            || expand_with(&cache.policy, vars) == "pull"
            || (cache.paths.is_empty() && !cache.untracked)
        {
            continue;
        }
        let key = cache_key(job, &cache.key, vars);
        let mut args: String = cache
            .paths
            .iter()
            .map(|p| format!(" --path {}", shell_quote(p)))
            .collect();
        if cache.untracked {
            args.push_str(" --untracked");
        }
        inner.push_str(&format!(
            "echo {}\nif {RUNNER_COMMAND} cache-archiver --file {} --timeout 10{args}; then\necho \"Created cache\"\nelse\necho \"Failed to create cache\"\nfi\n",
            shell_quote(&format!("Creating cache {key}...")),
            shell_quote(&cache_file(dirs, &key))
        ));
    }
    housekeeping("Creating cache", &inner, vars, dirs)
}

/// `upload_artifacts_on_success` / `_on_failure`, or `None` when nothing is uploaded.
pub fn upload_artifacts(job: &Job, vars: &[Var], dirs: &Dirs, on_success: bool) -> Option<String> {
    let mut inner = String::new();
    for artifact in &job.artifacts {
        if !when_matches(&artifact.when, on_success) || artifact.paths.is_empty() {
            continue;
        }
        let paths: String = artifact
            .paths
            .iter()
            .map(|p| format!(" --path {}", shell_quote(p)))
            .collect();
        let mut extra = String::new();
        if !artifact.name.is_empty() {
            extra.push_str(&format!(" --name {}", shell_quote(&artifact.name)));
        }
        if !artifact.expire_in.is_empty() {
            extra.push_str(&format!(
                " --expire-in {}",
                shell_quote(&artifact.expire_in)
            ));
        }
        inner.push_str(&format!(
            "echo \"Uploading artifacts...\"\n{RUNNER_COMMAND} artifacts-uploader --url {SERVER_URL} --token {} --id {}{paths}{extra} --artifact-format zip --artifact-type archive\n",
            shell_quote(&job.token()),
            job.id
        ));
    }
    housekeeping("Uploading artifacts", &inner, vars, dirs)
}

/// `cleanup_file_variables`: file variables exported as paths only, then removed.
pub fn cleanup_file_variables(vars: &[Var], dirs: &Dirs) -> String {
    let tmp = format!("{}.tmp", dirs.project);
    let mut body = String::new();
    for v in vars.iter().filter(|v| v.file) {
        body.push_str(&format!(
            "export {}={}\n",
            v.key,
            shell_quote(&format!("{tmp}/{}", v.key))
        ));
    }
    for name in ["gitlab_runner_env", "masking.db", ".gitlab-runner.ext.conf"] {
        body.push_str(&format!(
            "rm -f {}\n",
            shell_quote(&format!("{tmp}/{name}"))
        ));
    }
    for v in vars.iter().filter(|v| v.file) {
        body.push_str(&format!(
            "rm -f {}\n",
            shell_quote(&format!("{tmp}/{}", v.key))
        ));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_is_ansi_c() {
        assert_eq!(shell_quote("it's\n\x1b"), "$'it\\'s\\n\\x1b'");
        assert_eq!(shell_quote("/builds/group/app"), "/builds/group/app");
        assert_eq!(shell_quote(""), "$''");
    }

    #[test]
    fn cache_files_are_relative_to_the_project() {
        let dirs = Dirs {
            project: "/builds/group/app".into(),
            project_cache: "/cache/group/app".into(),
            ..Dirs::default()
        };
        assert_eq!(
            cache_file(&dirs, "deps"),
            "../../../cache/group/app/deps/cache.zip"
        );
    }
}
