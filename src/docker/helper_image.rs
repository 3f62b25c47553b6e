//! The helper image: where git, caches and artifacts are handled, never on the runner host.
//! By default GitLab's own helper image for the runner's version and the engine's
//! architecture, in every form an operator may have it, as the docker executor looks for
//! it: under GitLab's registry name, under its Docker Hub name, or loaded from the archive
//! gitlab-runner's package installs; else pulled. The helper built on this host
//! ([`LOCAL_HELPER_IMAGE`]) is used only where the operator names it: it cannot upload
//! artifacts or reports to GitLab, reach a distributed cache or fetch LFS files.

use std::path::{Path, PathBuf};

use bollard::query_parameters::{CreateImageOptionsBuilder, ImportImageOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;

use super::image::{ensure_image, Credentials, ImageOrigin};
use super::{is_not_found, DockerError};
use crate::image_ref::ImageRef;
use crate::joblog::JobLog;
use crate::settings::DockerSettings;

/// GitLab's helper image in GitLab's registry, the name the docker executor uses.
const GITLAB_HELPER: &str = "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper";
/// The same image as GitLab publishes it on Docker Hub.
const DOCKER_HUB_HELPER: &str = "gitlab/gitlab-runner-helper";

/// The helper image `.ci/images helper` builds from Debian's packages, for hosts that cannot
/// have GitLab's and for `exec`, which never talks to GitLab.
pub const LOCAL_HELPER_IMAGE: &str = "gitlab-ecs-executor/helper:local";

const SETTING: &str = "docker.helper_image";

/// Where the Debian package puts the archive of [`LOCAL_HELPER_IMAGE`].
const PACKAGED_LOCAL_HELPER: &str =
    "/usr/lib/gitlab-ecs-executor/helper-images/gitlab-ecs-executor-helper.docker.tar.zst";

/// The helper image tag for a runner version (`19.4.0`) and an engine architecture
/// (`x86_64`, `aarch64`), as the docker executor tags it: `x86_64-v19.4.0`.
fn helper_tag(runner_version: Option<&str>, architecture: &str) -> String {
    let version = runner_version
        .and_then(|v| {
            let numeric: String = v
                .trim_start_matches('v')
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            (numeric.split('.').filter(|p| !p.is_empty()).count() >= 3).then(|| {
                format!(
                    "v{}",
                    numeric.split('.').take(3).collect::<Vec<_>>().join(".")
                )
            })
        })
        .unwrap_or_else(|| "latest".to_string());
    format!("{}-{version}", helper_arch(architecture))
}

/// The architecture as GitLab names it in helper tags and archives.
fn helper_arch(architecture: &str) -> &str {
    match architecture {
        "x86_64" | "amd64" | "" => "x86_64",
        "aarch64" | "arm64" => "arm64",
        "armv6l" | "armv7l" | "arm" => "arm",
        other => other,
    }
}

/// GitLab's helper image for a runner version and an engine architecture.
pub fn default_helper_image(runner_version: Option<&str>, architecture: &str) -> ImageRef {
    ImageRef::parse(&format!(
        "{GITLAB_HELPER}:{}",
        helper_tag(runner_version, architecture)
    ))
}

/// The archives of GitLab's helper for `arch` that gitlab-runner's package may hold, in
/// the order the docker executor tries them: the newer `docker load` archive, then the
/// exported file system; its names before and after helper flavours, and `amd64` for
/// `x86_64`.
fn prebuilt_archives(dir: &Path, arch: &str) -> Vec<PathBuf> {
    let mut arches = vec![arch];
    if arch == "x86_64" {
        arches.push("amd64");
    }
    let mut paths = Vec::new();
    for arch in arches {
        for stem in [
            format!("prebuilt-alpine-{arch}"),
            format!("prebuilt-{arch}"),
        ] {
            paths.push(dir.join(format!("{stem}.docker.tar.zst")));
            paths.push(dir.join(format!("{stem}.tar.xz")));
        }
    }
    paths
}

/// Makes sure the helper image is on the host; returns it.
pub async fn ensure_helper(
    docker: &Docker,
    settings: &DockerSettings,
    runner_version: Option<&str>,
    credentials: &Credentials,
    log: &JobLog,
) -> Result<ImageRef, DockerError> {
    let origin = ImageOrigin::Settings(SETTING);
    if !settings.helper_image.trim().is_empty() {
        let image = ImageRef::parse(settings.helper_image.trim());
        let local = image.to_string() == LOCAL_HELPER_IMAGE;
        let packaged = Path::new(PACKAGED_LOCAL_HELPER);
        if local && !image_present(docker, LOCAL_HELPER_IMAGE).await? && packaged.is_file() {
            match load_prebuilt(docker, packaged, &image).await {
                Ok(()) => log.info(&format!(
                    "Loaded the helper image {image} from {}",
                    packaged.display()
                )),
                Err(message) => log.warn(&format!(
                    "Cannot load the helper image from {}: {message}",
                    packaged.display()
                )),
            }
        }
        // Built on this host or shipped with the package, never in a registry.
        let never = [crate::settings::PullPolicy::Never];
        let policies = match local {
            true => &never[..],
            false => &settings.pull_policy[..],
        };
        ensure_image(docker, &image, origin, policies, None, credentials, log).await?;
        return Ok(image);
    }
    let architecture = docker
        .info()
        .await
        .ok()
        .and_then(|i| i.architecture)
        .unwrap_or_default();
    let tag = helper_tag(runner_version, &architecture);
    let gitlab = ImageRef::parse(&format!("{GITLAB_HELPER}:{tag}"));
    for name in [gitlab.to_string(), format!("{DOCKER_HUB_HELPER}:{tag}")] {
        if image_present(docker, &name).await? {
            return Ok(ImageRef::parse(&name));
        }
    }
    for archive in prebuilt_archives(&settings.helper_images_dir, helper_arch(&architecture)) {
        if !archive.is_file() {
            continue;
        }
        match load_prebuilt(docker, &archive, &gitlab).await {
            Ok(()) => {
                log.info(&format!(
                    "Loaded the helper image {gitlab} from {}",
                    archive.display()
                ));
                return Ok(gitlab);
            }
            Err(message) => log.warn(&format!(
                "Cannot load the helper image from {}: {message}",
                archive.display()
            )),
        }
    }
    ensure_image(
        docker,
        &gitlab,
        origin,
        &settings.pull_policy,
        None,
        credentials,
        log,
    )
    .await?;
    Ok(gitlab)
}

/// Loads a prebuilt helper archive as `image`, as the docker executor does: a `docker
/// load` archive is loaded and tagged; an exported file system is imported with the
/// entrypoint export loses.
async fn load_prebuilt(docker: &Docker, archive: &Path, image: &ImageRef) -> Result<(), String> {
    let (repository, tag) = image.pull_target();
    if archive.to_string_lossy().ends_with(".docker.tar.zst") {
        // Decompressed here: engines before 23.0 take no zstd.
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let body = file_chunks(archive.to_path_buf(), Encoding::Zstd);
        let mut stream = docker.import_image_stream(options, body, None);
        let mut loaded = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| e.to_string())?;
            let text = info.stream.unwrap_or_default();
            for prefix in ["Loaded image:", "Loaded image ID:"] {
                if let Some(id) = text.trim().strip_prefix(prefix) {
                    loaded = Some(id.trim().to_string());
                }
            }
        }
        let loaded = loaded.ok_or("the archive named no image")?;
        let options = bollard::query_parameters::TagImageOptionsBuilder::default()
            .repo(&repository)
            .tag(&tag)
            .build();
        return docker
            .tag_image(&loaded, Some(options))
            .await
            .map_err(|e| e.to_string());
    }
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(&repository)
        .tag(&tag)
        .changes(vec![
            r#"ENTRYPOINT ["/usr/bin/dumb-init", "/entrypoint"]"#.to_string()
        ])
        .build();
    // The engine decompresses the xz itself.
    let body = bollard::body_try_stream(file_chunks(archive.to_path_buf(), Encoding::Plain));
    let mut stream = docker.create_image(Some(options), Some(body), None);
    while let Some(item) = stream.next().await {
        item.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// How a file's bytes are read out.
#[derive(Clone, Copy)]
enum Encoding {
    /// As they are.
    Plain,
    /// Decompressed from zstd (one or more frames).
    Zstd,
}

/// A file's content in chunks, read on a blocking thread so an image of hundreds of
/// megabytes never sits in memory whole.
fn file_chunks(
    path: PathBuf,
    encoding: Encoding,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    use std::io::{BufRead, Read};
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut chunk = vec![0u8; 1 << 20];
        // Sends what `reader` yields; false once the engine stopped reading.
        let mut send_all = |reader: &mut dyn Read| -> std::io::Result<bool> {
            loop {
                let n = reader.read(&mut chunk)?;
                if n == 0 {
                    return Ok(true);
                }
                let sent = tx.blocking_send(Ok(bytes::Bytes::copy_from_slice(&chunk[..n])));
                if sent.is_err() {
                    return Ok(false);
                }
            }
        };
        let copied = (|| -> std::io::Result<()> {
            let mut source = std::io::BufReader::new(std::fs::File::open(&path)?);
            match encoding {
                Encoding::Plain => send_all(&mut source).map(drop),
                Encoding::Zstd => {
                    while !source.fill_buf()?.is_empty() {
                        let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut source)
                            .map_err(std::io::Error::other)?;
                        if !send_all(&mut frame)? {
                            break;
                        }
                    }
                    Ok(())
                }
            }
        })();
        if let Err(e) = copied {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// An image already on the host that operator commands can create (never start) containers
/// of to read volumes, without pulling: `docker.helper_image`, else the local helper, else
/// `docker.default_image`.
pub async fn image_on_host(
    docker: &Docker,
    settings: &DockerSettings,
) -> Result<Option<String>, DockerError> {
    for candidate in [
        settings.helper_image.trim(),
        LOCAL_HELPER_IMAGE,
        settings.default_image.trim(),
    ] {
        if !candidate.is_empty() && image_present(docker, candidate).await? {
            return Ok(Some(candidate.to_string()));
        }
    }
    Ok(None)
}

/// Whether `image` is on the host (no pull).
pub async fn image_present(docker: &Docker, image: &str) -> Result<bool, DockerError> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(DockerError::api(format!("inspect image {image}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prebuilt_archives_in_the_docker_executors_order() {
        let names: Vec<String> = prebuilt_archives(Path::new("/h"), "x86_64")
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(names[0], "/h/prebuilt-alpine-x86_64.docker.tar.zst");
        assert_eq!(names[1], "/h/prebuilt-alpine-x86_64.tar.xz");
        assert!(names.contains(&"/h/prebuilt-x86_64.tar.xz".to_string()));
        assert!(names.contains(&"/h/prebuilt-alpine-amd64.tar.xz".to_string()));
        assert_eq!(prebuilt_archives(Path::new("/h"), "arm64").len(), 4);
    }

    #[test]
    fn gitlab_helper_tags() {
        assert_eq!(
            default_helper_image(Some("19.4.0"), "x86_64").to_string(),
            format!("{GITLAB_HELPER}:x86_64-v19.4.0")
        );
        assert_eq!(
            default_helper_image(Some("19.4.0~pre.123.g1234"), "aarch64").tag(),
            Some("arm64-v19.4.0")
        );
        assert_eq!(
            default_helper_image(None, "x86_64").tag(),
            Some("x86_64-latest")
        );
        assert_eq!(
            default_helper_image(Some("dev"), "armv7l").tag(),
            Some("arm-latest")
        );
    }
}
