//! Which BuildKit frontend a Dockerfile asks for (`# syntax=…`), and whether this runner
//! runs it. A frontend is a program the builder runs with its whole build cache at hand: the
//! Dockerfile frontend keeps each project's cache mounts in the namespace the executor sets
//! (`BUILDKIT_CACHE_MOUNT_NS`); another frontend need not. So only the frontends the
//! operator lists run (`release.dockerfile_frontends`, Docker's own by default).

use crate::glob;
use crate::image_ref::ImageRef;

/// A Dockerfile whose frontend this runner does not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the Dockerfile asks for the BuildKit frontend `{frontend}` (its `# syntax=` line), which \
     this runner does not run: a frontend could read other projects' build caches. Remove \
     the line (the engine's own Dockerfile frontend builds it), use one of \
     release.dockerfile_frontends ({}), or ask the runner's operator",
    .allowed.join(", ")
)]
pub struct FrontendRefused {
    /// The frontend the Dockerfile names.
    pub frontend: String,
    /// The patterns this runner allows.
    pub allowed: Vec<String>,
}

/// The frontend image the `syntax` parser directive of `dockerfile` names, if any. Parser
/// directives are `# key=value` lines at the very top; the first other line (an
/// instruction, a comment, a blank line) ends them.
pub fn syntax_directive(dockerfile: &str) -> Option<String> {
    for line in dockerfile.trim_start_matches('\u{feff}').lines() {
        let rest = line.trim_start().strip_prefix('#')?;
        let (key, value) = rest.split_once('=')?;
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        if key.eq_ignore_ascii_case("syntax") {
            return Some(value.trim().to_string()).filter(|v| !v.is_empty());
        }
    }
    None
}

/// Refuses `dockerfile` if it asks for a frontend `allowed` does not match (by image name,
/// registry included, without tag or digest).
pub fn check(dockerfile: &str, allowed: &[String]) -> Result<(), FrontendRefused> {
    let Some(frontend) = syntax_directive(dockerfile) else {
        return Ok(());
    };
    let image = ImageRef::parse(&frontend);
    let name = match image.explicit_registry() {
        Some(registry) => format!("{registry}/{}", image.path()),
        None => image.path().to_string(),
    };
    if allowed.iter().any(|p| glob::matches(p, &name)) {
        return Ok(());
    }
    Err(FrontendRefused {
        frontend,
        allowed: allowed.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        crate::settings::ReleaseSettings::default().dockerfile_frontends
    }

    #[test]
    fn parser_directives_are_read_only_at_the_top() {
        assert_eq!(
            syntax_directive("# syntax=docker/dockerfile:1.7\nFROM x\n").as_deref(),
            Some("docker/dockerfile:1.7")
        );
        assert_eq!(
            syntax_directive("#escape=`\n#  SYNTAX = evil/frontend \nFROM x\n").as_deref(),
            Some("evil/frontend")
        );
        // After a comment, a blank line or an instruction it is a comment.
        for text in [
            "# a comment\n# syntax=evil/frontend\nFROM x",
            "\n# syntax=evil/frontend\nFROM x",
            "FROM x\n# syntax=evil/frontend",
        ] {
            assert_eq!(syntax_directive(text), None, "{text}");
        }
    }

    #[test]
    fn only_the_listed_frontends_run() {
        for ok in [
            "FROM debian\n",
            "# syntax=docker/dockerfile:1\nFROM debian\n",
            "# syntax=docker.io/docker/dockerfile:1.7@sha256:abc\nFROM debian\n",
        ] {
            assert!(check(ok, &defaults()).is_ok(), "{ok}");
        }
        for refused in [
            "# syntax=evil/frontend:1\nFROM debian\n",
            "# syntax=registry.example.com/docker/dockerfile:1\nFROM debian\n",
            "# syntax=docker/dockerfile-evil:1\nFROM debian\n",
        ] {
            let err = check(refused, &defaults()).unwrap_err();
            assert!(
                err.to_string().contains("release.dockerfile_frontends"),
                "{err}"
            );
        }
    }
}
