//! The build context: the files under `DOCKER_BUILD_CONTEXT` minus `.dockerignore` (and the
//! checkout's `.git`), as the tar stream the engine's build API expects, from a directory on
//! this host; [`super::volume_context`] makes the same from a job's volume. Nothing here may
//! reach outside the project.

use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use regex::Regex;

use crate::glob;

/// Name under which a Dockerfile from outside the context is added to the tar.
pub const OUTSIDE_DOCKERFILE: &str = ".gitlab-ecs-executor.Dockerfile";

/// The context could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A path resolves outside the project directory (`..`, absolute, or via a symlink).
    #[error(
        "{name} `{value}` resolves outside the project directory; build inputs must stay inside it"
    )]
    Escapes {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// A path does not exist.
    #[error("{name} `{value}` does not exist in the project directory ({path})")]
    Missing {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// The resolved path.
        path: PathBuf,
    },
    /// `.dockerignore` has a pattern we cannot use.
    #[error(".dockerignore line `{0}` is not a valid pattern")]
    BadPattern(String),
    /// Reading the context failed.
    #[error("cannot read the build context at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// What goes into the context tar: the checkout's `.git` never (clone metadata differs
/// between checkouts of one commit and would defeat the layer cache; the commit is in the
/// image's revision label), what `.dockerignore` excludes neither, the Dockerfile and
/// `.dockerignore` always.
#[derive(Debug, Default)]
pub struct ContextRules {
    ignore: DockerIgnore,
    dockerfile_in_tar: String,
}

/// What to do with one path of the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Send it.
    Yes,
    /// Leave it out (and, for a directory, what is below it unless a rule re-includes it).
    No,
    /// Leave out the checkout's metadata and everything below it.
    NeverGit,
}

impl ContextRules {
    /// The rules of a context whose `.dockerignore` says `ignore`.
    pub fn new(ignore: DockerIgnore, dockerfile_in_tar: &str) -> Self {
        ContextRules {
            ignore,
            dockerfile_in_tar: dockerfile_in_tar.to_string(),
        }
    }

    /// The verdict on `rel`, a `/`-separated path relative to the context root.
    pub fn keep(&self, rel: &str) -> Keep {
        if rel == ".git" || rel.starts_with(".git/") {
            return Keep::NeverGit;
        }
        let always = rel == self.dockerfile_in_tar || rel == ".dockerignore";
        if !always && self.ignore.excludes(rel) {
            Keep::No
        } else {
            Keep::Yes
        }
    }

    /// Whether an excluded directory must still be looked into: a rule may re-include
    /// something below it.
    pub fn look_below_excluded(&self) -> bool {
        self.ignore.has_exceptions()
    }
}

/// The resolved inputs of a build.
#[derive(Debug, Clone)]
pub struct ContextPlan {
    /// Context directory (canonical, inside the project).
    pub root: PathBuf,
    /// Dockerfile (canonical, inside the project).
    pub dockerfile: PathBuf,
    /// The Dockerfile's path inside the tar, as passed to the build API.
    pub dockerfile_in_tar: String,
}

/// Resolves `context` and `dockerfile` (relative to `project`), refusing anything that ends
/// up outside the project once symlinks are followed.
pub fn plan(project: &Path, context: &str, dockerfile: &str) -> Result<ContextPlan, ContextError> {
    let project = canonical(project, "CI_PROJECT_DIR", &project.display().to_string())?;
    let root = inside(&project, context, "DOCKER_BUILD_CONTEXT")?;
    let dockerfile = inside(&project, dockerfile, "DOCKERFILE")?;
    let dockerfile_in_tar = match dockerfile.strip_prefix(&root) {
        Ok(rel) => rel.to_string_lossy().into_owned(),
        Err(_) => OUTSIDE_DOCKERFILE.to_string(),
    };
    Ok(ContextPlan {
        root,
        dockerfile,
        dockerfile_in_tar,
    })
}

fn inside(project: &Path, rel: &str, name: &'static str) -> Result<PathBuf, ContextError> {
    let escapes = || ContextError::Escapes {
        name,
        value: rel.to_string(),
    };
    let path = Path::new(rel);
    if path.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    }) {
        return Err(escapes());
    }
    let resolved = canonical(&project.join(path), name, rel)?;
    if !resolved.starts_with(project) {
        return Err(escapes());
    }
    Ok(resolved)
}

fn canonical(path: &Path, name: &'static str, value: &str) -> Result<PathBuf, ContextError> {
    path.canonicalize().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ContextError::Missing {
            name,
            value: value.to_string(),
            path: path.to_path_buf(),
        },
        _ => ContextError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })
}

/// `.dockerignore` rules: Go `filepath.Match` patterns with `**`, `!` exceptions, the last
/// matching rule winning, a rule on a directory covering everything below it.
#[derive(Debug, Default)]
pub struct DockerIgnore {
    rules: Vec<(Regex, bool)>,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, ContextError> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let cleaned = clean(pattern);
            if cleaned.is_empty() {
                continue;
            }
            let regex = glob::to_regex(&cleaned)
                .and_then(|re| Regex::new(&re).ok())
                .ok_or_else(|| ContextError::BadPattern(line.to_string()))?;
            rules.push((regex, exception));
        }
        Ok(DockerIgnore { rules })
    }

    /// Whether `rel` (a `/`-separated path relative to the context root) is excluded.
    pub fn excludes(&self, rel: &str) -> bool {
        let mut excluded = false;
        for (regex, exception) in &self.rules {
            if matches_self_or_parent(regex, rel) {
                excluded = !exception;
            }
        }
        excluded
    }

    /// Whether any rule re-includes something: then excluded directories must still be walked.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(_, e)| *e)
    }
}

fn matches_self_or_parent(regex: &Regex, rel: &str) -> bool {
    let mut end = rel.len();
    loop {
        if regex.is_match(&rel[..end]) {
            return true;
        }
        match rel[..end].rfind('/') {
            Some(i) => end = i,
            None => return false,
        }
    }
}

/// `filepath.Clean` of a pattern, relative to the context root.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// What went into a context tar.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ContextStats {
    /// Files (and symlinks) sent.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// Entries left out by `.dockerignore`.
    pub ignored: u64,
}

/// Writes the context of `plan` as a tar to `out`. Symlinks are stored as links, never
/// followed, so nothing outside the context is read.
pub fn write_tar(plan: &ContextPlan, out: impl Write) -> Result<ContextStats, ContextError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContextError::Io { path, source }
    };
    let ignore_file = plan.root.join(".dockerignore");
    let ignore = match std::fs::read_to_string(&ignore_file) {
        Ok(text) => DockerIgnore::parse(&text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(io_err(&ignore_file)(e)),
    };
    let rules = ContextRules::new(ignore, &plan.dockerfile_in_tar);
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut stats = ContextStats::default();
    let mut stack = vec![plan.root.clone()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .collect::<Result<_, _>>()
            .map_err(io_err(&dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let rel = path
                .strip_prefix(&plan.root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file_type = entry.file_type().map_err(io_err(&path))?;
            match rules.keep(&rel) {
                Keep::NeverGit => {
                    stats.ignored += 1;
                    continue;
                }
                Keep::No => {
                    stats.ignored += 1;
                    if !(file_type.is_dir() && rules.look_below_excluded()) {
                        continue;
                    }
                }
                Keep::Yes if file_type.is_dir() => {
                    tar.append_path_with_name(&path, &rel)
                        .map_err(io_err(&path))?;
                }
                Keep::Yes => {}
            }
            if file_type.is_dir() {
                stack.push(path);
                continue;
            }
            if file_type.is_file() || file_type.is_symlink() {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                tar.append_path_with_name(&path, &rel)
                    .map_err(io_err(&path))?;
                stats.files += 1;
                stats.bytes += size;
            }
        }
    }
    if plan.dockerfile_in_tar == OUTSIDE_DOCKERFILE {
        tar.append_path_with_name(&plan.dockerfile, OUTSIDE_DOCKERFILE)
            .map_err(io_err(&plan.dockerfile))?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err(&plan.root))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    #[test]
    fn dockerignore_semantics() {
        let i = ignore(
            "# comment\n*.log\n/target\nnode_modules\n**/*.tmp\n!keep.log\ndocs/**/draft-?.md\n",
        );
        assert!(i.excludes("app.log"));
        assert!(!i.excludes("sub/app.log"), "`*` does not cross directories");
        assert!(!i.excludes("keep.log"));
        assert!(i.excludes("target"));
        assert!(i.excludes("target/debug/x"));
        assert!(i.excludes("node_modules/a/b"));
        assert!(i.excludes("a/b/c.tmp") && i.excludes("c.tmp"));
        assert!(i.excludes("docs/x/y/draft-1.md") && i.excludes("docs/draft-2.md"));
        assert!(!i.excludes("src/main.rs"));
        let last_wins = ignore("!a.txt\n*.txt");
        assert!(last_wins.excludes("a.txt"));
        let dir_exception = ignore("build\n!build/keep");
        assert!(dir_exception.excludes("build/other") && !dir_exception.excludes("build/keep"));
        assert!(ignore("[a-c].txt").excludes("b.txt"));
        assert!(!ignore("[^a].txt").excludes("a.txt") && ignore("[^a].txt").excludes("b.txt"));
    }

    fn tree(root: &Path, files: &[&str]) {
        for f in files {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
    }

    fn names(plan: &ContextPlan) -> (BTreeSet<String>, ContextStats) {
        let mut buf = Vec::new();
        let stats = write_tar(plan, &mut buf).unwrap();
        let mut archive = tar::Archive::new(buf.as_slice());
        let names = archive
            .entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect();
        (names, stats)
    }

    #[test]
    fn the_tar_honours_dockerignore_and_keeps_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        tree(
            dir.path(),
            &[
                "Dockerfile",
                "src/main.rs",
                "target/big.bin",
                "secret.env",
                "keep/a",
                ".git/HEAD",
            ],
        );
        std::fs::write(
            dir.path().join(".dockerignore"),
            "target\n*.env\nDockerfile\n",
        )
        .unwrap();
        let plan = plan(dir.path(), ".", "Dockerfile").unwrap();
        let (names, stats) = names(&plan);
        let expected: BTreeSet<String> = [
            "Dockerfile",
            ".dockerignore",
            "src",
            "src/main.rs",
            "keep",
            "keep/a",
        ]
        .map(String::from)
        .into();
        assert_eq!(names, expected);
        assert_eq!((stats.files, stats.ignored), (4, 3));
    }

    #[test]
    fn a_dockerfile_outside_the_context_is_added_under_a_private_name() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["docker/app.Dockerfile", "app/main.rs"]);
        let plan = plan(dir.path(), "app", "docker/app.Dockerfile").unwrap();
        assert_eq!(plan.dockerfile_in_tar, OUTSIDE_DOCKERFILE);
        assert!(names(&plan).0.contains(OUTSIDE_DOCKERFILE));
    }

    #[test]
    fn paths_escaping_the_project_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let project = outer.path().join("project");
        tree(&project, &["Dockerfile"]);
        tree(outer.path(), &["elsewhere/Dockerfile"]);
        std::os::unix::fs::symlink(outer.path().join("elsewhere"), project.join("link")).unwrap();
        for (ctx, df) in [
            ("..", "Dockerfile"),
            ("/", "Dockerfile"),
            (".", "../elsewhere/Dockerfile"),
            ("link", "Dockerfile"),
            (".", "link/Dockerfile"),
        ] {
            let err = plan(&project, ctx, df).unwrap_err();
            assert!(
                matches!(err, ContextError::Escapes { .. }),
                "{ctx} {df}: {err}"
            );
        }
        assert!(matches!(
            plan(&project, ".", "Nope").unwrap_err(),
            ContextError::Missing { .. }
        ));
    }

    #[test]
    fn symlinks_inside_the_context_are_stored_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["Dockerfile"]);
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let plan = plan(dir.path(), ".", "Dockerfile").unwrap();
        let mut buf = Vec::new();
        write_tar(&plan, &mut buf).unwrap();
        let mut archive = tar::Archive::new(buf.as_slice());
        let link = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().ends_with("passwd"))
            .unwrap();
        assert!(link.header().entry_type().is_symlink());
        assert_eq!(link.header().size().unwrap(), 0);
    }
}
