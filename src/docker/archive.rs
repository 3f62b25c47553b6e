//! Files in a job's volumes, through a (created, not necessarily running) container of the
//! job: what a release reads of the checkout and writes back (`ecs-release.env`), and the
//! volumes' last-used stamp. Nothing here touches the runner host's filesystem.

use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::Stream;

use super::{is_not_found, DockerError};
use crate::clock;

/// What the engine says of a path in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// Whether the path itself is a symbolic link.
    pub symlink: bool,
    /// Where a symbolic link leads, resolved inside the container.
    pub link_target: String,
    /// The modification time, epoch seconds.
    pub modified: Option<i64>,
}

/// The engine's stat of `path` in `container`; `None` if it does not exist.
pub async fn stat(
    docker: &Docker,
    container: &str,
    path: &str,
) -> Result<Option<PathStat>, DockerError> {
    let options = ContainerArchiveInfoOptionsBuilder::default()
        .path(path)
        .build();
    match docker
        .get_container_archive_info(container, Some(options))
        .await
    {
        Ok(s) => Ok(Some(PathStat {
            // Go's os.ModeSymlink.
            symlink: s.file_mode & (1 << 27) != 0,
            link_target: s.link_target,
            modified: s
                .modification_time
                .as_deref()
                .and_then(clock::parse_rfc3339),
        })),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(DockerError::api(format!("stat {path} in {container}"))(e)),
    }
}

/// A tar stream of `path` in `container`; entries are named under `path`'s last component.
pub fn download(
    docker: &Docker,
    container: &str,
    path: &str,
) -> impl Stream<Item = Result<Bytes, bollard::errors::Error>> + use<> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    docker.download_from_container(container, Some(options))
}

/// The contents of the file `path` in `container`, `None` if it does not exist.
pub async fn read(
    docker: &Docker,
    container: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, DockerError> {
    if stat(docker, container, path).await?.is_none() {
        return Ok(None);
    }
    let failed = |e: std::io::Error| DockerError::Api {
        action: format!("read {path} in {container}"),
        source: bollard::errors::Error::IOError { err: e },
    };
    let mut tar_bytes = Vec::new();
    let mut stream = download(docker, container, path);
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        tar_bytes.extend_from_slice(
            &chunk.map_err(DockerError::api(format!("read {path} in {container}")))?,
        );
    }
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entries = archive.entries().map_err(failed)?;
    match entries.next() {
        Some(entry) => {
            let mut contents = Vec::new();
            std::io::Read::read_to_end(&mut entry.map_err(failed)?, &mut contents)
                .map_err(failed)?;
            Ok(Some(contents))
        }
        None => Ok(None),
    }
}

/// Writes `contents` as `dir/name` (mode 0644) in `container`.
pub async fn write_file(
    docker: &Docker,
    container: &str,
    dir: &str,
    name: &str,
    contents: &[u8],
) -> Result<(), DockerError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(clock::epoch_secs().max(0) as u64);
    header.set_cksum();
    let mut tar = tar::Builder::new(Vec::new());
    let bytes = tar
        .append_data(&mut header, name, contents)
        .and_then(|()| tar.into_inner())
        .map_err(|err| DockerError::Api {
            action: format!("pack {name}"),
            source: bollard::errors::Error::IOError { err },
        })?;
    let options = UploadToContainerOptionsBuilder::default().path(dir).build();
    docker
        .upload_to_container(container, Some(options), bollard::body_full(bytes.into()))
        .await
        .map_err(DockerError::api(format!(
            "write {dir}/{name} in {container}"
        )))
}
