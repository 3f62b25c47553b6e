//! The JSON object `config` prints for the runner (reference §2).

use std::collections::BTreeMap;

use serde::Serialize;

/// `driver` in the config output: only shown in the job log's "Using Custom executor" line.
#[derive(Debug, Clone, Serialize)]
pub struct DriverInfo {
    /// Driver name.
    pub name: String,
    /// Driver version.
    pub version: String,
}

/// Everything `config` tells the runner. Absent fields keep the runner's own values.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigOutput {
    /// Host directory holding project checkouts (bind-mounted into job containers).
    pub builds_dir: String,
    /// Host directory holding caches.
    pub cache_dir: String,
    /// True: the runner nests project dirs per runner and concurrent slot, so concurrent
    /// jobs of one project never share a checkout.
    pub builds_dir_is_shared: bool,
    /// Shown as `Running on … via <hostname>`.
    pub hostname: String,
    /// Driver name and version.
    pub driver: DriverInfo,
    /// Script language the runner generates.
    pub shell: String,
    /// Un-prefixed variables for later driver calls of this job.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub job_env: BTreeMap<String, String>,
}

impl ConfigOutput {
    /// The single line of JSON the runner parses; nothing else may reach stdout.
    pub fn to_json_line(&self) -> serde_json::Result<String> {
        Ok(serde_json::to_string(self)? + "\n")
    }
}
