//! `config`: tells the runner where builds and caches live: the container paths where every
//! container of a job mounts the project's volumes. No network I/O, no Docker.

use std::collections::BTreeMap;

use crate::protocol::{ConfigOutput, DriverInfo};
use crate::settings::Settings;

/// The config output for these settings.
pub fn config(settings: &Settings) -> ConfigOutput {
    ConfigOutput {
        builds_dir: settings.builds_dir.display().to_string(),
        cache_dir: settings.cache_dir.display().to_string(),
        // Each concurrency slot of a project has volumes of its own.
        builds_dir_is_shared: false,
        hostname: host_name(),
        driver: DriverInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        shell: settings.shell.as_str().to_string(),
        job_env: BTreeMap::new(),
    }
}

/// The kernel's host name: no resolver, no network.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
