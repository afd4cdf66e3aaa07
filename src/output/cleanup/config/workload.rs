//! Which Kubernetes workloads and users a signal or kill action may touch: the
//! `namespace_regex`, `pod_regex`, `avoid_namespaces` and `avoid_uids` keys.

use regex::Regex;

use super::{key, regex, RawAction};
use crate::base::input::ConfigError;

/// Which Kubernetes workloads a signal or kill action may touch (names from `kubernetes`).
#[derive(Debug, Clone)]
pub struct WorkloadFilter {
    /// Only processes in a pod whose namespace matches (a process outside a pod never does).
    pub namespace: Option<Regex>,
    /// Only processes in a pod whose name matches.
    pub pod: Option<Regex>,
    /// Never a process in one of these namespaces, nor one in a pod whose namespace is unknown
    /// (it might be one of them); processes outside Kubernetes are not concerned.
    pub avoid_namespaces: Vec<String>,
    /// Never a process of these user IDs (owner of `/proc/<pid>`); with any given, a process whose
    /// owner cannot be read is not touched either.
    pub avoid_uids: Vec<u32>,
}

/// The namespaces no action touches unless the configuration says otherwise.
pub const DEFAULT_AVOID_NAMESPACES: &[&str] = &["kube-system"];

impl Default for WorkloadFilter {
    fn default() -> Self {
        WorkloadFilter {
            namespace: None,
            pod: None,
            avoid_namespaces: DEFAULT_AVOID_NAMESPACES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            avoid_uids: Vec::new(),
        }
    }
}

impl RawAction {
    /// `namespace_regex`, `pod_regex` and `avoid_namespaces` of a signal or kill action.
    pub(super) fn workload_filter(&self, prefix: &str) -> Result<WorkloadFilter, ConfigError> {
        let filter = |name: &str, written: &Option<String>| {
            written
                .as_deref()
                .map(|r| regex(&key(prefix, name), r))
                .transpose()
        };
        let mut out = WorkloadFilter {
            namespace: filter("namespace_regex", &self.namespace_regex)?,
            pod: filter("pod_regex", &self.pod_regex)?,
            ..WorkloadFilter::default()
        };
        if let Some(list) = &self.avoid_namespaces {
            if let Some(bad) = list
                .iter()
                .find(|n| n.is_empty() || n.len() > 63 || n.contains(char::is_whitespace))
            {
                return Err(ConfigError::invalid(
                    key(prefix, "avoid_namespaces"),
                    format!("{bad:?}"),
                    "is not a namespace name (1 to 63 characters, no spaces)",
                ));
            }
            out.avoid_namespaces = list.clone();
        }
        out.avoid_uids = self.avoid_uids.clone().unwrap_or_default();
        Ok(out)
    }
}
