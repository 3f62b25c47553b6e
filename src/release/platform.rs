//! The platform a release's image must be built for: the task definition's
//! `runtimePlatform` (`cpuArchitecture` X86_64 or ARM64, `operatingSystemFamily` LINUX),
//! and whether an image built elsewhere fits it. Pure.

use aws_sdk_ecs::types::{CpuArchitecture, OsFamily, TaskDefinition};

/// An image platform, as the engine and registries name it (`linux/arm64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64` or `arm64`.
    pub architecture: String,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)
    }
}

/// A task definition this executor cannot build an image for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{task_definition} runs on {platform}: this executor builds Linux images only; release \
     Windows tasks with a Windows build host"
)]
pub struct UnsupportedPlatform {
    /// `family:revision`.
    pub task_definition: String,
    /// What its `runtimePlatform` says.
    pub platform: String,
}

/// Registries' and engines' names for one architecture.
fn normalize(architecture: &str) -> &str {
    match architecture.to_ascii_lowercase().as_str() {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        _ => architecture,
    }
}

impl Platform {
    /// The platform of a task definition's `runtimePlatform`; `None` when it names none
    /// (the tasks then run where the cluster places them: the engine's own platform is as
    /// good a guess as any).
    pub fn of_task_definition(
        td: &TaskDefinition,
    ) -> Result<Option<Platform>, UnsupportedPlatform> {
        let Some(runtime) = td.runtime_platform() else {
            return Ok(None);
        };
        let label = || format!("{}:{}", td.family().unwrap_or("?"), td.revision());
        if let Some(os) = runtime.operating_system_family() {
            if *os != OsFamily::Linux {
                return Err(UnsupportedPlatform {
                    task_definition: label(),
                    platform: os.as_str().to_string(),
                });
            }
        }
        Ok(runtime.cpu_architecture().map(|arch| Platform {
            os: "linux".into(),
            architecture: match arch {
                CpuArchitecture::Arm64 => "arm64".into(),
                CpuArchitecture::X8664 => "amd64".into(),
                other => normalize(other.as_str()).to_string(),
            },
        }))
    }

    /// When an image listed for `has` (`(os, architecture)`, blanks ignored) has none of
    /// this platform, the platforms it has (`linux/amd64, …`); `None` when one fits or
    /// none is known.
    pub fn missing_from(&self, has: &[(String, String)]) -> Option<String> {
        let known: Vec<String> = has
            .iter()
            .filter(|(os, arch)| !os.is_empty() && !arch.is_empty())
            .map(|(os, arch)| format!("{os}/{arch}"))
            .collect();
        let fits = has.iter().any(|(os, arch)| self.fits(os, arch));
        (!known.is_empty() && !fits).then(|| known.join(", "))
    }

    /// Whether an image for `os`/`architecture` runs here.
    pub fn fits(&self, os: &str, architecture: &str) -> bool {
        os.eq_ignore_ascii_case(&self.os) && normalize(architecture) == self.architecture
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::RuntimePlatform;

    use super::*;

    fn td(arch: Option<CpuArchitecture>, os: Option<OsFamily>) -> TaskDefinition {
        TaskDefinition::builder()
            .family("shop")
            .revision(3)
            .runtime_platform(
                RuntimePlatform::builder()
                    .set_cpu_architecture(arch)
                    .set_operating_system_family(os)
                    .build(),
            )
            .build()
    }

    #[test]
    fn task_definitions_name_their_platform_and_images_fit_it_or_not() {
        let arm =
            Platform::of_task_definition(&td(Some(CpuArchitecture::Arm64), Some(OsFamily::Linux)))
                .unwrap()
                .unwrap();
        assert_eq!(arm.to_string(), "linux/arm64");
        assert!(arm.fits("linux", "aarch64") && arm.fits("linux", "arm64"));
        assert!(!arm.fits("linux", "amd64"));
        let x86 = Platform::of_task_definition(&td(Some(CpuArchitecture::X8664), None))
            .unwrap()
            .unwrap();
        assert_eq!(x86.to_string(), "linux/amd64");
        assert_eq!(
            Platform::of_task_definition(&TaskDefinition::builder().build()),
            Ok(None)
        );
        let windows = td(None, Some(OsFamily::WindowsServer2022Core));
        assert!(Platform::of_task_definition(&windows).is_err());
    }
}
