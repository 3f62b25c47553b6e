//! The build context of a job, read from the project's volume through one of the job's
//! containers: the engine streams the context directory out as a tar, and the entries
//! [`ContextRules`] keeps are written into the tar the build reads. The checkout never
//! touches the runner host's filesystem.
//!
//! `DOCKER_BUILD_CONTEXT` and `DOCKERFILE` are resolved component by component with the
//! engine's stat: a symbolic link that leads out of the project directory is refused.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;

use super::context::{
    ContextError, ContextRules, ContextStats, DockerIgnore, Keep, OUTSIDE_DOCKERFILE,
};
use crate::docker::archive;

/// The resolved inputs of a build from a job's volume.
#[derive(Debug)]
pub struct VolumePlan {
    /// The container through which the volume is read.
    pub container: String,
    /// The context directory, resolved, inside the project.
    pub context: String,
    /// The Dockerfile, resolved, inside the project.
    pub dockerfile: String,
    /// The Dockerfile's path inside the tar, as passed to the build API.
    pub dockerfile_in_tar: String,
    /// What goes into the tar.
    pub rules: ContextRules,
}

/// Resolves the context and Dockerfile inside `project_dir` of `container` and reads the
/// context's `.dockerignore`.
pub async fn plan(
    docker: &Docker,
    container: &str,
    project_dir: &str,
    context: &str,
    dockerfile: &str,
) -> Result<VolumePlan, ContextError> {
    let project = project_dir.trim_end_matches('/');
    let context_path = resolve(docker, container, project, context, "DOCKER_BUILD_CONTEXT").await?;
    let dockerfile_path = resolve(docker, container, project, dockerfile, "DOCKERFILE").await?;
    let dockerfile_in_tar = match dockerfile_path.strip_prefix(&format!("{context_path}/")) {
        Some(rel) => rel.to_string(),
        None => OUTSIDE_DOCKERFILE.to_string(),
    };
    let ignore_path = format!("{context_path}/.dockerignore");
    let ignore = match archive::read(docker, container, &ignore_path)
        .await
        .map_err(|e| engine(&ignore_path, e))?
    {
        Some(bytes) => DockerIgnore::parse(&String::from_utf8_lossy(&bytes))?,
        None => DockerIgnore::default(),
    };
    Ok(VolumePlan {
        container: container.to_string(),
        context: context_path,
        dockerfile: dockerfile_path,
        rules: ContextRules::new(ignore, &dockerfile_in_tar),
        dockerfile_in_tar,
    })
}

/// `rel` under `project`, every symbolic link on the way followed and required to stay in
/// the project.
async fn resolve(
    docker: &Docker,
    container: &str,
    project: &str,
    rel: &str,
    name: &'static str,
) -> Result<String, ContextError> {
    let escapes = || ContextError::Escapes {
        name,
        value: rel.to_string(),
    };
    if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
        return Err(escapes());
    }
    let inside = |path: &str| path == project || path.starts_with(&format!("{project}/"));
    let mut current = project.to_string();
    for component in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let next = format!("{current}/{component}");
        let stat = archive::stat(docker, container, &next)
            .await
            .map_err(|e| engine(&next, e))?;
        current = match stat {
            None => {
                return Err(ContextError::Missing {
                    name,
                    value: rel.to_string(),
                    path: PathBuf::from(next),
                })
            }
            Some(s) if s.symlink => {
                if s.link_target.is_empty() || !inside(&s.link_target) {
                    return Err(escapes());
                }
                s.link_target
            }
            Some(_) => next,
        };
    }
    Ok(current)
}

fn engine(path: &str, e: impl std::fmt::Display) -> ContextError {
    ContextError::Io {
        path: PathBuf::from(path),
        source: io::Error::other(e.to_string()),
    }
}

/// Feeds the engine's tar stream of a path to a blocking reader.
pub struct StreamReader {
    rx: std::sync::mpsc::Receiver<Result<Bytes, io::Error>>,
    current: Bytes,
}

impl StreamReader {
    /// Reads `path` of `container` through a task that forwards the engine's chunks.
    pub fn spawn(docker: &Docker, container: &str, path: &str) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let mut stream = archive::download(docker, container, path);
        tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| io::Error::other(e.to_string()));
                let failed = chunk.is_err();
                if tx.send(chunk).is_err() || failed {
                    return;
                }
            }
        });
        StreamReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(chunk) => self.current = chunk?,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Rewrites the engine's tar of the context directory (entries under the directory's name)
/// into the build's tar (entries relative to the context), keeping what the rules keep; a
/// Dockerfile from outside the context comes as `dockerfile` (the engine's tar of that file).
pub fn write_tar(
    rules: &ContextRules,
    context: impl Read,
    dockerfile: Option<impl Read>,
    out: impl Write,
) -> Result<ContextStats, ContextError> {
    let io_err = |source| ContextError::Io {
        path: PathBuf::from("(build context)"),
        source,
    };
    let mut tar = tar::Builder::new(out);
    let mut stats = ContextStats::default();
    let mut git_seen = false;
    let mut source = tar::Archive::new(context);
    for entry in source.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        let path = entry.path().map_err(io_err)?.to_string_lossy().into_owned();
        // The first component is the context directory's own name.
        let Some((_, rel)) = path.trim_end_matches('/').split_once('/') else {
            continue;
        };
        let rel = rel.to_string();
        match rules.keep(&rel) {
            Keep::NeverGit => {
                if !git_seen {
                    git_seen = true;
                    stats.ignored += 1;
                }
                continue;
            }
            Keep::No => {
                stats.ignored += 1;
                continue;
            }
            Keep::Yes => {}
        }
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(io_err)?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            tar.append_link(&mut header, &rel, target).map_err(io_err)?;
            stats.files += 1;
        } else if kind.is_dir() {
            tar.append_data(&mut header, &rel, io::empty())
                .map_err(io_err)?;
        } else if kind.is_file() {
            stats.files += 1;
            stats.bytes += header.size().unwrap_or(0);
            tar.append_data(&mut header, &rel, &mut entry)
                .map_err(io_err)?;
        }
    }
    if let Some(dockerfile) = dockerfile {
        let mut source = tar::Archive::new(dockerfile);
        if let Some(entry) = source.entries().map_err(io_err)?.next() {
            let mut entry = entry.map_err(io_err)?;
            let mut header = entry.header().clone();
            tar.append_data(&mut header, OUTSIDE_DOCKERFILE, &mut entry)
                .map_err(io_err)?;
        }
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar as the engine sends a directory: every entry under the directory's name.
    fn engine_tar(files: &[(&str, &str)]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("project/{path}"), content.as_bytes())
                .unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn the_engine_tar_becomes_the_context_minus_git_and_ignored_files() {
        let source = engine_tar(&[
            ("Dockerfile", "FROM scratch"),
            (".dockerignore", "*.env\n"),
            ("src/main.rs", "fn main() {}"),
            ("secret.env", "X=1"),
            (".git/HEAD", "ref"),
            (".git/objects/ab", "x"),
        ]);
        let rules = ContextRules::new(DockerIgnore::parse("*.env\n").unwrap(), "Dockerfile");
        let mut out = Vec::new();
        let stats = write_tar(&rules, source.as_slice(), None::<&[u8]>, &mut out).unwrap();
        let names: Vec<String> = tar::Archive::new(out.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["Dockerfile", ".dockerignore", "src/main.rs"]);
        assert_eq!((stats.files, stats.ignored), (3, 2));
    }
}
