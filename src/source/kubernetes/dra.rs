//! DRA claims in the kubelet's pod-resources answer (`ContainerResources.dynamic_resources`, beta
//! in Kubernetes 1.34): which GPUs NVIDIA's DRA driver gave a container, and through which claim.
//!
//! The driver (`gpu.nvidia.com`, github.com/NVIDIA/k8s-dra-driver-gpu) names a full GPU
//! `gpu-<minor>` and a MIG device `gpu-<parentMinor>-mig-<…>`, where the minor is the GPU's
//! `/dev/nvidia<minor>` number (NVML `nvmlDeviceGetMinorNumber`). A claimed device is filed under
//! its GPU's minor number ([`minor_key`]); a MIG device under its parent GPU, so it is published
//! with the GPU that holds its memory. Other drivers' devices are not GPUs we see.

use super::limits::{namespace_ok, pod_ok};
use super::pb::v1::ContainerResources;

/// The NVIDIA DRA driver's name in `ClaimResource.driver_name`.
pub const NVIDIA_DRIVER: &str = "gpu.nvidia.com";

/// The key a claimed device is filed under in the device map: the GPU's minor number (never a
/// UUID, which starts `GPU-` or `MIG-`).
pub fn minor_key(minor: u32) -> String {
    format!("minor:{minor}")
}

/// The GPU minor number of a device name of the NVIDIA driver: `gpu-3` → 3, `gpu-3-mig-…` → 3.
pub fn device_minor(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("gpu-")?;
    let (digits, tail) = rest.split_once('-').unwrap_or((rest, ""));
    if !(tail.is_empty() || tail.starts_with("mig-")) {
        return None;
    }
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The NVIDIA GPUs claimed for `container`: (claim name, key of the GPU), for claims in
/// `namespace` (a pod's claims are in its own namespace) whose names are within Kubernetes' bounds.
pub fn claimed<'a>(
    container: &'a ContainerResources,
    namespace: &'a str,
) -> impl Iterator<Item = (&'a str, String)> + 'a {
    container
        .dynamic_resources
        .iter()
        .filter(move |d| {
            pod_ok(&d.claim_name)
                && (d.claim_namespace.is_empty() || d.claim_namespace == namespace)
                && namespace_ok(namespace)
        })
        .flat_map(|d| {
            d.claim_resources
                .iter()
                .filter(|r| r.driver_name == NVIDIA_DRIVER)
                .filter_map(|r| device_minor(&r.device_name))
                .map(|minor| (d.claim_name.as_str(), minor_key(minor)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kubernetes::pb::v1::{ClaimResource, DynamicResource};

    #[test]
    fn nvidia_device_names() {
        assert_eq!(device_minor("gpu-0"), Some(0));
        assert_eq!(device_minor("gpu-12"), Some(12));
        assert_eq!(device_minor("gpu-3-mig-9-4-2"), Some(3));
        for bad in [
            "gpu-",
            "gpu-x",
            "gpu-1-foo",
            "gpu--1",
            "cpu-1",
            "gpu-123456",
            "",
        ] {
            assert_eq!(device_minor(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_nvidia_claims_in_the_pods_namespace() {
        let claim = |name: &str, ns: &str, driver: &str, device: &str| DynamicResource {
            claim_name: name.into(),
            claim_namespace: ns.into(),
            claim_resources: vec![ClaimResource {
                driver_name: driver.into(),
                device_name: device.into(),
                ..Default::default()
            }],
        };
        let c = ContainerResources {
            dynamic_resources: vec![
                claim("a", "ml", NVIDIA_DRIVER, "gpu-1"),
                claim("b", "ml", "other.example.com", "gpu-2"),
                claim("c", "elsewhere", NVIDIA_DRIVER, "gpu-3"),
                claim("d", "ml", NVIDIA_DRIVER, "gpu-4-mig-1-0-1"),
            ],
            ..Default::default()
        };
        let got: Vec<(&str, String)> = claimed(&c, "ml").collect();
        assert_eq!(got, [("a", "minor:1".into()), ("d", "minor:4".into())]);
    }
}
