//! A project's git checkout through the `git` command, for `exec` and the operator's
//! `release`: which commit a tag or branch names, what the working tree holds that the
//! commit does not, a commit's tree exported as `git archive` exports it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why git could not tell or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The directory is not a usable checkout, or a git command failed.
    #[error("{0}")]
    Failed(String),
    /// A tag the command asked for does not exist.
    #[error("there is no tag `{tag}` in {root} (git tag --list shows the tags)")]
    UnknownTag {
        /// The tag.
        tag: String,
        /// The checkout.
        root: PathBuf,
    },
}

/// A git checkout.
#[derive(Debug)]
pub struct Checkout {
    /// The working tree's top directory.
    pub root: PathBuf,
    /// The repository the job clones from: the common git directory, which a linked
    /// worktree shares with its main checkout (its objects and refs are there).
    pub git_dir: PathBuf,
    /// The checked-out branch (`main` when detached).
    pub branch: String,
    /// `group/project`, from the `origin` remote (else `local/<directory>`).
    pub project_path: String,
}

/// The commit a pipeline runs for, and its ref.
#[derive(Debug, Clone)]
pub struct Commit {
    /// Its id.
    pub sha: String,
    /// Its committer date (ISO 8601).
    pub timestamp: String,
    /// Its message.
    pub message: String,
    /// Its author's name.
    pub author_name: String,
    /// Its author's email.
    pub author_email: String,
    /// The branch or tag name.
    pub ref_name: String,
    /// Whether `ref_name` is a tag.
    pub is_tag: bool,
    /// Said once before the jobs run, when the ref is not what it seems (a branch name
    /// without a local branch).
    pub note: Option<String>,
}

impl Checkout {
    /// The checkout holding `file`.
    pub fn open(file: &Path) -> Result<Self, GitError> {
        let dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::of_dir(dir).map_err(|e| match e {
            GitError::Failed(why) => {
                GitError::Failed(format!("exec runs jobs of a git checkout; {why}"))
            }
            other => other,
        })
    }

    /// The checkout holding directory `dir`.
    pub fn of_dir(dir: &Path) -> Result<Self, GitError> {
        let root = git(dir, &["rev-parse", "--show-toplevel"])
            .map(PathBuf::from)
            .map_err(|e| GitError::Failed(format!("not a git checkout: {e}")))?;
        let git_dir = git(
            &root,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        )
        .map(PathBuf::from)?;
        let branch = match git(&root, &["rev-parse", "--abbrev-ref", "HEAD"]) {
            Ok(b) if b != "HEAD" => b,
            _ => "main".into(),
        };
        let project_path = git(&root, &["config", "--get", "remote.origin.url"])
            .ok()
            .and_then(|url| project_path_of(&url))
            .unwrap_or_else(|| {
                format!(
                    "local/{}",
                    root.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "project".into())
                )
            });
        Ok(Checkout {
            root,
            git_dir,
            branch,
            project_path,
        })
    }

    /// The commit of `--tag` (which must exist), of `--branch` (the local branch, else
    /// `HEAD` run under that name), or of `HEAD` on the checked-out branch.
    pub fn resolve(&self, tag: Option<&str>, branch: Option<&str>) -> Result<Commit, GitError> {
        let commit_of = |r: &str| {
            git(
                &self.root,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{r}^{{commit}}"),
                ],
            )
        };
        let head = || {
            commit_of("HEAD")
                .map_err(|e| GitError::Failed(format!("the checkout has no commit to run: {e}")))
        };
        let (sha, ref_name, is_tag, note) = match (tag, branch) {
            (Some(tag), _) => {
                let sha =
                    commit_of(&format!("refs/tags/{tag}")).map_err(|_| GitError::UnknownTag {
                        tag: tag.to_string(),
                        root: self.root.clone(),
                    })?;
                (sha, tag.to_string(), true, None)
            }
            (None, Some(branch)) => match commit_of(&format!("refs/heads/{branch}")) {
                Ok(sha) => (sha, branch.to_string(), false, None),
                Err(_) => {
                    let sha = head()?;
                    let note = format!(
                        "there is no local branch `{branch}`: running HEAD ({}) as branch `{branch}`",
                        short(&sha)
                    );
                    (sha, branch.to_string(), false, Some(note))
                }
            },
            (None, None) => (head()?, self.branch.clone(), false, None),
        };
        let field = |format: &str| {
            git(
                &self.root,
                &["log", "-1", &format!("--format={format}"), &sha],
            )
        };
        Ok(Commit {
            timestamp: field("%cI")?,
            message: field("%B")?,
            author_name: field("%an")?,
            author_email: field("%ae")?,
            sha,
            ref_name,
            is_tag,
            note,
        })
    }

    /// Tracked files whose working-tree or staged content differs from `HEAD`.
    pub fn uncommitted(&self) -> Result<Vec<String>, GitError> {
        let status = git(
            &self.root,
            &["status", "--porcelain", "--untracked-files=no"],
        )?;
        Ok(status
            .lines()
            .filter_map(|l| l.get(3..))
            .map(str::to_string)
            .collect())
    }

    /// Which of `files` (relative to the root) differ between the working tree and `sha`.
    pub fn differing(&self, sha: &str, files: &[String]) -> Result<Vec<String>, GitError> {
        let mut args = vec!["diff", "--name-only", sha, "--"];
        args.extend(files.iter().map(String::as_str));
        Ok(git(&self.root, &args)?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// A `cache: key: files:` key: derived from the commits that last changed `files` up to
    /// `sha` (`default` when none did), after `prefix-` if given, as GitLab derives it.
    pub fn files_cache_key(
        &self,
        sha: &str,
        files: &[String],
        prefix: Option<&str>,
    ) -> Result<String, GitError> {
        // GitLab keys by the files as a set: listed in another order or twice, the same key.
        let mut files: Vec<&String> = files.iter().collect();
        files.sort();
        files.dedup();
        let mut commits = Vec::new();
        for file in files {
            let last = git(&self.root, &["log", "-1", "--format=%H", sha, "--", file])?;
            if !last.is_empty() {
                commits.push(last);
            }
        }
        let digest = match commits.is_empty() {
            true => "default".to_string(),
            false => git_with_input(&self.root, &["hash-object", "--stdin"], &commits.join("\n"))?,
        };
        Ok(match prefix {
            Some(prefix) => format!("{prefix}-{digest}"),
            None => digest,
        })
    }

    /// Writes the tree of commit `sha` into the empty directory `dest`, as `git archive`
    /// exports it: committed files only, nothing of the working tree.
    pub fn export(&self, sha: &str, dest: &Path) -> Result<(), GitError> {
        let failed = |message: String| {
            GitError::Failed(format!(
                "cannot export commit {} of {}: {message}",
                short(sha),
                self.root.display()
            ))
        };
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.root)
            .args(["archive", "--format=tar", sha])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot run git: {e}")))?;
        let unpacked = match child.stdout.take() {
            Some(out) => tar::Archive::new(out)
                .unpack(dest)
                .map_err(|e| failed(e.to_string())),
            None => Err(failed("git gave no output".into())),
        };
        let status = child
            .wait_with_output()
            .map_err(|e| failed(e.to_string()))?;
        if !status.status.success() {
            return Err(failed(
                String::from_utf8_lossy(&status.stderr).trim().to_string(),
            ));
        }
        unpacked
    }
}

/// The first 8 characters of a commit id.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(8)]
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    run_git(dir, args, None)
}

fn git_with_input(dir: &Path, args: &[&str], input: &str) -> Result<String, GitError> {
    run_git(dir, args, Some(input))
}

fn run_git(dir: &Path, args: &[&str], input: Option<&str>) -> Result<String, GitError> {
    let failed = |message: String| {
        GitError::Failed(format!(
            "git {} in {}: {message}",
            args.join(" "),
            dir.display()
        ))
    };
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        // Paths as they are, not quoted (`git status`, `ls-files`).
        .args(["-c", "core.quotepath=false"])
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| GitError::Failed(format!("cannot run git: {e}")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        std::io::Write::write_all(&mut stdin, text.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// `group/project` from a clone URL (`https://host/group/project.git`, `git@host:group/project.git`).
fn project_path_of(url: &str) -> Option<String> {
    let url = url.trim_end_matches('/').trim_end_matches(".git");
    // A remote on a server names the whole path (`group/subgroup/app`), as GitLab's
    // `CI_PROJECT_PATH` does; a local directory only its last two parts.
    let on_server = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, path)| path),
        None => url
            .split_once(':')
            .filter(|(host, _)| !host.contains('/'))
            .map(|(_, path)| path),
    };
    let parts: Vec<&str> = on_server
        .unwrap_or(url)
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match (on_server, parts.as_slice()) {
        (Some(_), [_, _, ..]) => Some(parts.join("/")),
        (None, [.., group, project]) => Some(format!("{group}/{project}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_from_remotes() {
        assert_eq!(
            project_path_of("https://gitlab.example.com/group/app.git").as_deref(),
            Some("group/app")
        );
        assert_eq!(
            project_path_of("git@gitlab.example.com:group/sub/app.git").as_deref(),
            Some("group/sub/app")
        );
        assert_eq!(
            project_path_of("/srv/repos/app").as_deref(),
            Some("repos/app")
        );
    }
}
