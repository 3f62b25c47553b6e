//! The git checkout as `exec`'s pipeline reads it: the working tree where the pipeline file
//! and its includes are read, other projects' checkouts for `include: project`, and a
//! commit's history and tree for `rules: changes:` and `exists:`.

use std::cell::OnceCell;
use std::path::PathBuf;

use super::pipeline::{Repository, Source, VarDef};
use crate::git::{git, short, Checkout, Commit};

impl Checkout {
    /// The working tree, where the pipeline file and its includes are read.
    /// The working tree, with the checkouts of other projects `include: project` reads
    /// and the variables include paths may name.
    pub fn working_tree<'c>(
        &'c self,
        projects: &'c [(String, PathBuf)],
        variables: &'c [VarDef],
    ) -> WorkingTree<'c> {
        WorkingTree {
            checkout: self,
            projects,
            variables,
        }
    }

    /// The history and tree of `commit`, for `rules: changes:` and `exists:`.
    pub fn at<'c>(&'c self, commit: &'c Commit) -> AtCommit<'c> {
        AtCommit {
            checkout: self,
            commit,
            files: OnceCell::new(),
        }
    }
}

/// The files of the working tree (tracked and untracked, not ignored).
pub struct WorkingTree<'c> {
    checkout: &'c Checkout,
    /// `--include-project` checkouts, by project path.
    projects: &'c [(String, PathBuf)],
    /// What include paths may name.
    variables: &'c [VarDef],
}

impl Source for WorkingTree<'_> {
    fn read(&self, path: &str) -> Result<Option<String>, String> {
        match std::fs::read_to_string(self.checkout.root.join(path)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn files(&self) -> Result<Vec<String>, String> {
        git(
            &self.checkout.root,
            &["ls-files", "--cached", "--others", "--exclude-standard"],
        )
        .map(|out| out.lines().map(str::to_string).collect())
        .map_err(|e| e.to_string())
    }
    fn variable(&self, name: &str) -> Option<String> {
        self.variables
            .iter()
            .rev()
            .find(|v| v.key == name)
            .map(|v| v.value.clone())
    }

    fn project(
        &self,
        project: &str,
        git_ref: Option<&str>,
    ) -> Result<Option<Box<dyn Source + '_>>, String> {
        let Some((_, dir)) = self.projects.iter().find(|(p, _)| p == project) else {
            return Ok(None);
        };
        let rev = git_ref.unwrap_or("HEAD");
        git(
            dir,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ],
        )
        .map_err(|_| format!("`{project}` ({}) has no commit `{rev}`", dir.display()))?;
        Ok(Some(Box::new(ProjectAt {
            dir: dir.clone(),
            rev: rev.to_string(),
        })))
    }
}

/// Another project's files at one commit, as `include: project` reads them from GitLab.
struct ProjectAt {
    dir: PathBuf,
    rev: String,
}

impl Source for ProjectAt {
    fn read(&self, path: &str) -> Result<Option<String>, String> {
        let spec = format!("{}:{path}", self.rev);
        if git(&self.dir, &["cat-file", "-e", &spec]).is_err() {
            return Ok(None);
        }
        git(&self.dir, &["show", &spec])
            .map(Some)
            .map_err(|e| e.to_string())
    }

    fn files(&self) -> Result<Vec<String>, String> {
        git(&self.dir, &["ls-tree", "-r", "--name-only", &self.rev])
            .map(|out| out.lines().map(String::from).collect())
            .map_err(|e| e.to_string())
    }
}

/// A commit of the checkout, as `rules:` see it.
pub struct AtCommit<'c> {
    checkout: &'c Checkout,
    commit: &'c Commit,
    files: OnceCell<Vec<String>>,
}

impl AtCommit<'_> {
    /// What `changes:` compares the commit with, for the job log.
    pub fn base(&self) -> String {
        match self.parent() {
            _ if self.commit.is_tag => {
                "a tag pipeline has nothing to compare with: `rules: changes` match, as on GitLab".into()
            }
            Some(parent) => format!(
                "`rules: changes` compare commit {} with its parent {} (a push of one commit to branch `{}`)",
                short(&self.commit.sha),
                short(&parent),
                self.commit.ref_name
            ),
            None => "the commit has no parent: `rules: changes` match, as for a new branch on GitLab"
                .into(),
        }
    }

    fn parent(&self) -> Option<String> {
        git(
            &self.checkout.root,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{}^", self.commit.sha),
            ],
        )
        .ok()
    }
}

impl Repository for AtCommit<'_> {
    fn changed_files(&self, compare_to: Option<&str>) -> Result<Option<Vec<String>>, String> {
        let sha = &self.commit.sha;
        let range = match compare_to {
            // GitLab compares with the merge base of `compare_to` and the commit.
            Some(other) => format!("{other}...{sha}"),
            None if self.commit.is_tag => return Ok(None),
            None => match self.parent() {
                Some(parent) => format!("{parent}..{sha}"),
                None => return Ok(None),
            },
        };
        git(
            &self.checkout.root,
            &["diff", "--name-only", "--no-renames", &range],
        )
        .map(|out| Some(out.lines().map(str::to_string).collect()))
        .map_err(|e| e.to_string())
    }

    fn files(&self) -> Result<Vec<String>, String> {
        if let Some(files) = self.files.get() {
            return Ok(files.clone());
        }
        let files: Vec<String> = git(
            &self.checkout.root,
            &["ls-tree", "-r", "--name-only", &self.commit.sha],
        )
        .map_err(|e| e.to_string())?
        .lines()
        .map(str::to_string)
        .collect();
        Ok(self.files.get_or_init(|| files).clone())
    }
}
