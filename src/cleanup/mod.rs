//! Emergency cleanup actions run when a GPU crosses its hard limit (configuration only, so far).
//!
//! The `cleanup` section is accepted and validated here so the configuration format is stable;
//! the actions themselves belong to the OOM-prevention work.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The `cleanup` section as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCleanup {
    /// Cleanup is off unless this is true.
    pub enabled: bool,
}

/// The validated `cleanup` section.
#[derive(Debug, Clone, Default)]
pub struct CleanupConfig {
    pub enabled: bool,
}

impl RawCleanup {
    pub fn validate(&self) -> Result<CleanupConfig, ConfigError> {
        Ok(CleanupConfig {
            enabled: self.enabled,
        })
    }
}
