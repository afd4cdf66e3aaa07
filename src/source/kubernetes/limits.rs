//! The bounds on what the Kubernetes sources may put into labels and memory: names longer than
//! Kubernetes itself allows are not names Kubernetes gave (left out, never published), and a GPU
//! publishes at most [`MAX_ALLOCATIONS_PER_GPU`] allocations, with a count of those left out.
//!
//! Kubernetes' own limits: a namespace and a container name are DNS-1123 labels (at most 63
//! characters), a pod name a DNS-1123 subdomain (at most 253); a resource claim's name is a
//! subdomain too.

/// The most allocations (containers, claims) published per GPU; the rest are counted.
pub const MAX_ALLOCATIONS_PER_GPU: usize = 64;

/// A namespace name: 1 to 63 bytes.
pub fn namespace_ok(s: &str) -> bool {
    (1..=63).contains(&s.len())
}

/// A pod name: 1 to 253 bytes.
pub fn pod_ok(s: &str) -> bool {
    (1..=253).contains(&s.len())
}

/// A container name: 1 to 63 bytes.
pub fn container_ok(s: &str) -> bool {
    (1..=63).contains(&s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_lengths() {
        assert!(namespace_ok("kube-system") && !namespace_ok("") && !namespace_ok(&"n".repeat(64)));
        assert!(pod_ok(&"p".repeat(253)) && !pod_ok(&"p".repeat(254)) && !pod_ok(""));
        assert!(container_ok(&"c".repeat(63)) && !container_ok(&"c".repeat(64)));
    }
}
