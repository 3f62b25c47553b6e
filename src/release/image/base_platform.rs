//! Whether the Dockerfile's base images have a variant for the task definition's platform,
//! checked before the build: BuildKit builds from a base of one platform for another
//! without a word when the registry holds a single-platform image (its `RUN` steps then
//! run the base's binaries natively), so the image pushed would claim the task's platform
//! and hold another's programs. The bases come from the `FROM` lines (`scratch`, earlier
//! stages, `--platform=` and `$ARG` names are left to the build); their platforms from
//! the registry with the build's credentials (a multi-platform index), else from the
//! engine's own copy; a base whose platform neither tells is left to the build.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::Docker;

use super::super::platform::Platform;
use super::registry;
use super::ImageError;
use crate::image_ref::ImageRef;

/// The base images of `dockerfile` whose platform this check can know.
pub(super) fn bases(dockerfile: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut bases = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((first, rest)) = words.split_first() else {
            continue;
        };
        if !first.eq_ignore_ascii_case("FROM") {
            continue;
        }
        let flags = rest.iter().take_while(|w| w.starts_with("--")).count();
        let chosen = rest[..flags].iter().any(|f| f.starts_with("--platform"));
        let Some(image) = rest.get(flags) else {
            continue;
        };
        if let [as_word, name, ..] = &rest[flags + 1..] {
            if as_word.eq_ignore_ascii_case("AS") {
                stages.push(name.to_ascii_lowercase());
            }
        }
        let earlier = stages[..stages.len().saturating_sub(1)]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(image));
        if chosen || earlier || image.contains('$') || image.eq_ignore_ascii_case("scratch") {
            continue;
        }
        if !bases.iter().any(|b| b == image) {
            bases.push(image.to_string());
        }
    }
    bases
}

/// Refuses the build when a base image has platforms and none is `platform`.
pub(super) async fn check(
    docker: &Docker,
    dockerfile: &str,
    platform: &Platform,
    registries: &HashMap<String, DockerCredentials>,
) -> Result<(), ImageError> {
    for base in bases(dockerfile) {
        let reference = ImageRef::parse(&base);
        let credentials = registries.get(reference.registry_host()).cloned();
        let listed: Vec<(String, String)> =
            match docker.inspect_registry_image(&base, credentials).await {
                Ok(inspect) => registry::platforms(&inspect),
                Err(_) => Vec::new(),
            };
        // The engine lists no platform for a single-platform manifest, nor without an
        // answer from the registry: then its own copy is what the build would use.
        let has = match listed.is_empty() {
            false => listed,
            true => match docker.inspect_image(&base).await {
                Ok(image) => vec![(
                    image.os.unwrap_or_default(),
                    image.architecture.unwrap_or_default(),
                )],
                Err(_) => Vec::new(),
            },
        };
        if let Some(has) = platform.missing_from(&has) {
            return Err(ImageError::BaseWrongPlatform {
                base,
                has,
                wants: platform.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_the_external_images_the_build_starts_from() {
        let dockerfile = "\
# syntax=docker/dockerfile:1
ARG BASE=debian:bookworm
FROM golang:1.22 AS build
RUN go build
from --platform=$BUILDPLATFORM node:22 as assets
FROM build AS test
FROM $BASE
FROM scratch
FROM registry.example.com/team/runtime:3 AS final
COPY --from=build /app /app
FROM golang:1.22
";
        assert_eq!(
            bases(dockerfile),
            ["golang:1.22", "registry.example.com/team/runtime:3"]
        );
    }
}
