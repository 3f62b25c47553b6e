//! `artifacts: reports: dotenv:`: after a needed job, its dotenv files are read out of the
//! project's builds volume (where the job left them; the next job's checkout cleans them)
//! and their variables handed to the jobs that need it, as GitLab does. The file is read
//! as GitLab's parser reads it: `KEY=VALUE` lines, key and value trimmed, quotes kept.

use crate::docker::{self, volumes};
use crate::settings::Settings;

use super::ExecError;

/// The variables of a dotenv file; `Err` says which line is not `KEY=VALUE` with a valid
/// name. Blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {} is not KEY=VALUE", n + 1))?;
            let key = key.trim();
            let valid =
                !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(format!(
                    "line {}: `{key}` is not a variable name (letters, digits, _)",
                    n + 1
                ));
            }
            Ok((key.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// The text of `path` in the builds volume `volume`, read through a short-lived container
/// of an image already on the host; `None` when the file does not exist.
pub fn read(settings: &Settings, volume: &str, path: &str) -> Result<Option<String>, ExecError> {
    let docker_error = |e: docker::DockerError| ExecError::Docker(Box::new(e));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ExecError::Runner)?;
    runtime.block_on(async {
        let engine = docker::connect(&settings.docker).await.map_err(docker_error)?;
        let image = docker::image_on_host(&engine, &settings.docker)
            .await
            .map_err(docker_error)?
            .ok_or_else(|| {
                ExecError::Usage(
                    "no image on this host to read the project volume with (docker.helper_image, the local helper or docker.default_image)".into(),
                )
            })?;
        let bytes = volumes::read_file(&engine, volume, path, &image)
            .await
            .map_err(docker_error)?;
        Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn dotenv_lines_as_gitlab_reads_them() {
        let vars = parse(
            "IMAGE_TAG=v1.2.3\n\n  URL = https://a.example/x?y=1 \nQUOTED=\"kept\"\nEMPTY=\n",
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("IMAGE_TAG", "v1.2.3"),
                ("URL", "https://a.example/x?y=1"),
                ("QUOTED", "\"kept\""),
                ("EMPTY", "")
            ]
        );
        assert!(parse("# a comment\n").unwrap_err().contains("line 1"));
        assert!(parse("A=1\nBAD-NAME=2").unwrap_err().contains("line 2"));
        assert!(parse("=x").is_err());
    }
}
