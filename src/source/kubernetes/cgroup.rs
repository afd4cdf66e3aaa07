//! Which pod and container a process runs in, from the bytes of its `/proc/<pid>/cgroup`.
//!
//! The kubelet puts every container in a cgroup under its `kubepods` root; the path carries the
//! pod UID and the container runtime's container ID. Both drivers and both cgroup versions are
//! understood:
//!
//! - systemd driver (v1 or v2): `/kubepods.slice/kubepods-burstable.slice/
//!   kubepods-burstable-pod<uid with _ for ->.slice/<runtime>-<id>.scope`, where `<runtime>` is
//!   `cri-containerd`, `crio` or `docker`;
//! - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>` (also `/kubepods/pod<uid>/<id>` for
//!   guaranteed pods); CRI-O's own cgroup manager names the container `crio-<id>` (no `.scope`);
//! - either below a nesting prefix, as on nested nodes (kind: `/kubelet.slice/kubelet-kubepods.slice/
//!   kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod<uid>.slice/…`; Docker in
//!   Docker: `/docker/<id>/kubepods/…`).
//!
//! The path is anchored at the kubepods root: between it and the pod segment only QoS segments
//! may stand, and the prefix above it may not be a user or system slice nor a service or scope
//! unit (systemd delegates those subtrees to their owners, who may create any cgroup in them: a
//! user's `user@1000.service/kubepods.slice/kubepods-pod<uid>.slice/…` is a host process posing
//! as a pod, not a pod).
//!
//! Read from inside a cgroup namespace (a pod reading the host's /proc), the path is relative to
//! the reader's own cgroup (`/../../kubepods-besteffort.slice/…`): the kernel writes the `..`
//! steps up to the common ancestor, so a path that climbs out of the reader's cgroup and comes
//! down through QoS segments straight to a pod segment is below the same kubepods root as the
//! reader's own pod, and is accepted without naming the root.
//!
//! A v2 file has one line `0::<path>`; a v1 file one line per hierarchy, of which the first that
//! names a container wins. Lines are split on the first two `:` only (a path may hold colons), and
//! nothing has to be UTF-8 except the parts that are taken.

/// The pod and container a process belongs to, as its cgroup names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The pod's UID, with dashes (`0f1e…-…`), as Kubernetes writes it.
    pub pod_uid: String,
    /// The runtime's container ID (64 hexadecimal digits for containerd, CRI-O and Docker).
    pub container_id: String,
}

/// The container a `/proc/<pid>/cgroup` file places its process in; None for a process outside
/// Kubernetes (or a file that is not in the cgroup format).
pub fn parse(bytes: &[u8]) -> Option<ContainerRef> {
    bytes.split(|&b| b == b'\n').find_map(|line| {
        // hierarchy-ID:controller-list:path
        let mut parts = line.splitn(3, |&b| b == b':');
        let (_id, _controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        from_path(path)
    })
}

/// The container named by one cgroup path, when the path is anchored at a kubepods root.
fn from_path(path: &[u8]) -> Option<ContainerRef> {
    let path = std::str::from_utf8(path).ok()?.trim_end_matches('\r');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // The pod's segment, then the container's right after it.
    let (pod_at, pod_uid) = segments
        .iter()
        .enumerate()
        .find_map(|(i, s)| pod_uid_of(s).map(|uid| (i, uid)))?;
    if !anchored(&segments[..pod_at]) {
        return None;
    }
    let container_id = container_id_of(segments.get(pod_at + 1)?)?;
    Some(ContainerRef {
        pod_uid,
        container_id,
    })
}

/// Whether the segments above a pod segment are a kubepods root and its QoS classes: below a
/// nesting prefix that is not a delegated systemd subtree, or climbing out of the reader's cgroup
/// namespace (`..`).
fn anchored(above: &[&str]) -> bool {
    let climbed = above.iter().take_while(|s| **s == "..").count();
    if climbed > 0 {
        // Relative to the reader's cgroup: after the climb, only the kubepods chain.
        return above[climbed..].iter().all(|s| is_kubepods(s) || is_qos(s));
    }
    let Some(root) = above.iter().position(|s| is_kubepods(s)) else {
        return false;
    };
    above[..root].iter().all(|s| nesting_allowed(s)) && above[root + 1..].iter().all(|s| is_qos(s))
}

/// The kubelet's root: `kubepods` (cgroupfs), `kubepods.slice` or a nested `<prefix>-kubepods.slice`.
fn is_kubepods(segment: &str) -> bool {
    segment == "kubepods"
        || segment
            .strip_suffix(".slice")
            .is_some_and(|s| s == "kubepods" || s.ends_with("-kubepods"))
}

/// A QoS class below the root: `burstable`/`besteffort` (cgroupfs) or `…kubepods-<qos>.slice`.
fn is_qos(segment: &str) -> bool {
    const QOS: [&str; 2] = ["burstable", "besteffort"];
    QOS.contains(&segment)
        || segment.strip_suffix(".slice").is_some_and(|s| {
            QOS.iter()
                .any(|q| s.strip_suffix(q).is_some_and(|k| k.ends_with("kubepods-")))
        })
}

/// A segment that may stand above the kubepods root: not a user, system or machine slice nor a
/// service or scope unit, whose owners may create cgroups of any name below them.
fn nesting_allowed(segment: &str) -> bool {
    !(segment.ends_with(".service")
        || segment.ends_with(".scope")
        || ["user.slice", "system.slice", "machine.slice"].contains(&segment)
        || (segment.starts_with("user-") && segment.ends_with(".slice")))
}

/// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid_of(segment: &str) -> Option<String> {
    let uid = if let Some(slice) = segment.strip_suffix(".slice") {
        let at = slice.rfind("-pod")?;
        if !slice.contains("kubepods") {
            return None;
        }
        slice[at + 4..].replace('_', "-")
    } else {
        segment.strip_prefix("pod")?.to_string()
    };
    is_uid(&uid).then_some(uid)
}

/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope` (systemd), `crio-<id>`
/// (CRI-O's cgroupfs manager) or a bare `<id>` (cgroupfs). CRI-O's `crio-conmon-<id>` is the
/// monitor, not the container (its ID part is not hexadecimal).
fn container_id_of(segment: &str) -> Option<String> {
    let id = match segment.strip_suffix(".scope") {
        Some(scope) => ["cri-containerd-", "crio-", "docker-"]
            .iter()
            .find_map(|prefix| scope.strip_prefix(prefix))?,
        None => segment.strip_prefix("crio-").unwrap_or(segment),
    };
    is_container_id(id).then(|| id.to_string())
}

/// A UUID in its textual form: 36 characters, hexadecimal digits and dashes at 8, 13, 18, 23.
pub(crate) fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A runtime container ID: hexadecimal digits, 12 to 64 of them.
pub(crate) fn is_container_id(s: &str) -> bool {
    (12..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f4c8a4e-3b6b-4c1f-9d6e-2a5b7c8d9e01";
    const ID: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904b825dc642cb6eb9a060e54bf";

    fn want() -> Option<ContainerRef> {
        Some(ContainerRef {
            pod_uid: UID.into(),
            container_id: ID.into(),
        })
    }

    fn systemd_path(qos: Option<&str>, runtime: &str) -> String {
        let uid = UID.replace('-', "_");
        match qos {
            Some(q) => format!(
                "/kubepods.slice/kubepods-{q}.slice/kubepods-{q}-pod{uid}.slice/{runtime}-{ID}.scope"
            ),
            None => format!("/kubepods.slice/kubepods-pod{uid}.slice/{runtime}-{ID}.scope"),
        }
    }

    fn cgroupfs_path(qos: Option<&str>) -> String {
        match qos {
            Some(q) => format!("/kubepods/{q}/pod{UID}/{ID}"),
            None => format!("/kubepods/pod{UID}/{ID}"),
        }
    }

    /// A cgroup v1 file as a kubelet node writes it: several hierarchies, the path in each.
    fn v1(path: &str) -> String {
        format!(
            "12:pids:{path}\n11:hugetlb:{path}\n10:memory:{path}\n9:devices:{path}\n\
             4:cpu,cpuacct:{path}\n1:name=systemd:{path}\n0::/\n"
        )
    }

    fn v2(path: &str) -> String {
        format!("0::{path}\n")
    }

    #[test]
    fn every_runtime_driver_version_and_qos() {
        let qos = [None, Some("burstable"), Some("besteffort")];
        for q in qos {
            for runtime in ["cri-containerd", "crio", "docker"] {
                let p = systemd_path(q, runtime);
                assert_eq!(parse(v2(&p).as_bytes()), want(), "{p}");
                assert_eq!(parse(v1(&p).as_bytes()), want(), "{p}");
            }
            // cgroupfs names the container by its bare ID (containerd, Docker) or, with CRI-O's
            // own cgroup manager, `crio-<id>` without `.scope`.
            let p = cgroupfs_path(q);
            assert_eq!(parse(v2(&p).as_bytes()), want(), "{p}");
            assert_eq!(parse(v1(&p).as_bytes()), want(), "{p}");
            let p = p.replace(ID, &format!("crio-{ID}"));
            assert_eq!(parse(v2(&p).as_bytes()), want(), "{p}");
            assert_eq!(parse(v1(&p).as_bytes()), want(), "{p}");
            let conmon = p.replace("crio-", "crio-conmon-");
            assert_eq!(parse(v2(&conmon).as_bytes()), None, "{conmon}");
        }
    }

    #[test]
    fn nested_under_a_prefix() {
        // kind and other nested nodes put kubepods below their own cgroup and prefix the slices.
        let uid = UID.replace('-', "_");
        let p = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
             kubelet-kubepods-besteffort-pod{uid}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse(v2(&p).as_bytes()), want());
        let p = format!("/docker/abc/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse(v2(&p).as_bytes()), want());
    }

    #[test]
    fn relative_to_the_readers_cgroup_namespace() {
        // The exporter's own pod is in kubepods-burstable; the target in besteffort.
        let uid = UID.replace('-', "_");
        for p in [
            format!("/../../../kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/crio-{ID}.scope"),
            format!("/../../pod{UID}/{ID}"),
            format!("/../../besteffort/pod{UID}/{ID}"),
        ] {
            assert_eq!(parse(v2(&p).as_bytes()), want(), "{p}");
        }
        // The reader's own container (path "/") and its siblings outside any pod.
        assert_eq!(parse(b"0::/\n"), None);
        assert_eq!(parse(b"0::/../../system.slice/containerd.service\n"), None);
    }

    #[test]
    fn processes_outside_kubernetes_have_none() {
        for text in [
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            "0::/system.slice/vram-exporter.service\n",
            "0::/\n",
            "12:pids:/user.slice\n1:name=systemd:/user.slice/user-1000.slice\n",
            // The pod's own cgroup (no container below it), e.g. the pause process's parent.
            &format!("0::/kubepods/burstable/pod{UID}\n"),
            // CRI-O's monitor process.
            &format!(
                "0::/kubepods.slice/kubepods-pod{}.slice/crio-conmon-{ID}.scope\n",
                UID.replace('-', "_")
            ),
        ] {
            assert_eq!(parse(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn a_pod_segment_below_a_user_or_system_slice_is_a_host_process() {
        // A user's delegated subtree can hold cgroups of any name: a host process posing as a pod.
        let pod = systemd_path(None, "cri-containerd");
        let cgroupfs = cgroupfs_path(Some("burstable"));
        for prefix in [
            "/user.slice/user-1000.slice/user@1000.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice/containerd.service",
            "/system.slice/docker-abc.scope",
            "/machine.slice",
            "/user.slice",
        ] {
            for p in [format!("{prefix}{pod}"), format!("{prefix}{cgroupfs}")] {
                assert_eq!(parse(v2(&p).as_bytes()), None, "{p}");
                assert_eq!(parse(v1(&p).as_bytes()), None, "{p}");
            }
        }
        // Relative paths: after the climb only the kubepods chain may follow.
        for p in [
            format!("/../../user.slice/user-1000.slice/user@1000.service{pod}"),
            format!("/../../../system.slice/x.service/pod{UID}/{ID}"),
        ] {
            assert_eq!(parse(v2(&p).as_bytes()), None, "{p}");
        }
        // No kubepods root at all, or something else between it and the pod.
        for p in [
            format!("/pod{UID}/{ID}"),
            format!("/foo/pod{UID}/{ID}"),
            format!("/kubepods/burstable/extra/pod{UID}/{ID}"),
        ] {
            assert_eq!(parse(v2(&p).as_bytes()), None, "{p}");
        }
    }

    #[test]
    fn malformed_files_give_none_not_a_panic() {
        let cases: [&[u8]; 8] = [
            b"",
            b"\n\n",
            b"garbage",
            b"0:",
            b"0::",
            b"\xff\xfe::/kubepods/pod\xff/\xff",
            b"0::/kubepods/podnot-a-uid/4b825dc642cb",
            b"0::/kubepods/burstable/pod0f4c8a4e-3b6b-4c1f-9d6e-2a5b7c8d9e01/not-hex!",
        ];
        for c in cases {
            assert_eq!(parse(c), None, "{c:?}");
        }
    }

    #[test]
    fn a_path_with_colons_and_crlf_is_read_whole() {
        let p = cgroupfs_path(Some("burstable"));
        assert_eq!(parse(format!("0::{p}\r\n").as_bytes()), want());
        // A non-UTF-8 line before the container's line does not hide it.
        let mut bytes = b"5:weird:/a\xff:b\n".to_vec();
        bytes.extend_from_slice(v1(&p).as_bytes());
        assert_eq!(parse(&bytes), want());
    }
}
