//! `runner-config`: the `[[runners]]` entry gitlab-runner needs to call this executor, with
//! the path it is installed at, so registering is copy and paste.

use std::path::Path;

/// The sample entry shipped with the executor; its path is the package's.
const SAMPLE: &str = include_str!("../../runner-config/gitlab-runner.toml");
const PACKAGED_PATH: &str = "/usr/bin/gitlab-ecs-executor";

/// The `[[runners]]` entry for gitlab-runner's config.toml, calling `binary` for every stage.
pub fn runner_config(binary: &Path) -> String {
    // TOML basic strings: backslashes and quotes escaped.
    let quoted = binary
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    SAMPLE.replace(PACKAGED_PATH, &quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_calls_the_installed_binary() {
        let text = runner_config(Path::new("/opt/gee/bin/gitlab-ecs-executor"));
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let runner = &parsed["runners"].as_array().unwrap()[0];
        let custom = runner["custom"].as_table().unwrap();
        for stage in ["config", "prepare", "run", "cleanup"] {
            assert_eq!(
                custom[&format!("{stage}_exec")].as_str(),
                Some("/opt/gee/bin/gitlab-ecs-executor"),
                "{stage}"
            );
            assert_eq!(custom[&format!("{stage}_args")][0].as_str(), Some(stage));
        }
        assert_eq!(runner["executor"].as_str(), Some("custom"));
        assert_eq!(runner["custom_build_dir"]["enabled"].as_bool(), Some(true));
        assert!(!text.contains(PACKAGED_PATH));
    }
}
