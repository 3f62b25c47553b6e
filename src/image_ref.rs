//! Image references as Docker reads them, `[registry[:port]/]path[:tag][@digest]`: one
//! parser for job images, services, pulls, the release image and the images in task
//! definitions.

use std::fmt;

/// Docker Hub's registry name in credential stores.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference. Parsing never fails: the engine judges what it cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    registry: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses `reference`.
    pub fn parse(reference: &str) -> ImageRef {
        let (name, digest) = match reference.rsplit_once('@') {
            Some((name, digest)) => (name, Some(digest.to_string())),
            None => (reference, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(colon) => (
                &name[..last_slash + colon],
                Some(name[last_slash + colon + 1..].to_string()),
            ),
            None => (name, None),
        };
        // The first component is a registry only if it looks like a host: Docker's rule.
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (Some(first.to_string()), rest.to_string())
            }
            _ => (None, name.to_string()),
        };
        ImageRef {
            registry,
            path,
            tag,
            digest,
        }
    }

    /// The registry host (with port), `docker.io` for Docker Hub images.
    pub fn registry(&self) -> &str {
        self.registry.as_deref().unwrap_or(DOCKER_HUB)
    }

    /// The registry as written, `None` for Docker Hub images written without one.
    pub fn explicit_registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }

    /// The registry host without a port.
    pub fn registry_host(&self) -> &str {
        let registry = self.registry();
        registry.split(':').next().unwrap_or(registry)
    }

    /// The path inside the registry (`group/app`, `library/alpine` as written: `alpine`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The repository as written, registry included: the reference without tag and digest.
    pub fn repository(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The tag, if one is written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:…`), if one is written.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The repository and what to pull of it: the digest if there is one, else the tag,
    /// else `latest` (without either the engine would pull every tag).
    pub fn pull_target(&self) -> (String, String) {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => (self.repository(), digest.clone()),
            (None, Some(tag)) => (self.repository(), tag.clone()),
            (None, None) => (self.repository(), "latest".to_string()),
        }
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same reference pinned to `digest` (`repo:tag@sha256:…`).
    pub fn with_digest(&self, digest: &str) -> ImageRef {
        ImageRef {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_form() {
        let r = ImageRef::parse("127.0.0.1:5000/g/app:v1@sha256:ab");
        assert_eq!(
            (r.registry(), r.path(), r.tag(), r.digest()),
            ("127.0.0.1:5000", "g/app", Some("v1"), Some("sha256:ab"))
        );
        assert_eq!(r.repository(), "127.0.0.1:5000/g/app");
        assert_eq!(r.registry_host(), "127.0.0.1");
        assert_eq!(r.to_string(), "127.0.0.1:5000/g/app:v1@sha256:ab");

        let hub = ImageRef::parse("alpine");
        assert_eq!(
            (hub.registry(), hub.path(), hub.tag()),
            ("docker.io", "alpine", None)
        );
        assert_eq!(hub.pull_target(), ("alpine".into(), "latest".into()));
        assert_eq!(ImageRef::parse("library/alpine:3").registry(), "docker.io");
        assert_eq!(ImageRef::parse("localhost/x").registry(), "localhost");
        assert_eq!(
            ImageRef::parse("registry.gitlab.example/g/p:1").registry(),
            "registry.gitlab.example"
        );
        assert_eq!(
            ImageRef::parse("127.0.0.1:5000/app").pull_target(),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
        assert_eq!(
            ImageRef::parse("app@sha256:ab").pull_target(),
            ("app".into(), "sha256:ab".into())
        );
        assert_eq!(
            ImageRef::parse("r/app:v1@sha256:ab")
                .with_tag("v2")
                .to_string(),
            "r/app:v2"
        );
        assert_eq!(
            ImageRef::parse("r/app:v1")
                .with_digest("sha256:cd")
                .to_string(),
            "r/app:v1@sha256:cd"
        );
    }
}
