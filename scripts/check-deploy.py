#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/kubernetes without a cluster.

1. The committed PrometheusRule carries the same rules as alerts/vram-exporter.rules.yml (both are generated
   from mixin/ by scripts/gen-mixin.py, whose --check proves they are fresh).
2. The kustomize base renders (with `kustomize build`, or the kustomize built into `kubectl`), alone and
   with each optional component, and every document parses as a Kubernetes object of the expected kinds.
3. The pieces agree: probes point at the exporter's real paths, the DaemonSet, Service, ServiceMonitor and
   config.toml agree on the port, selectors match, the config file is mounted where --config says, and
   the security settings are those documented in docs/deploy.md, the ServiceMonitor gives every target the
   node's name as `instance`, and the grafana-dashboards component ships every dashboards/*.json unchanged
   in a ConfigMap labelled grafana_dashboard: "1".

Needs PyYAML (deploy/requirements.txt). Without a kustomize binary it says so loudly and checks the base
through a minimal built-in renderer (resources, configMapGenerator, images; no components) instead;
with VRAM_REQUIRE_TOOLS=1 a missing kustomize is a failure. With --exporter-bin (or VRAM_EXPORTER_BIN)
the rendered config.toml is also passed to `vram-exporter --check-config`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - the message is the point.
    sys.exit("check-deploy: PyYAML is required: pip install -r deploy/requirements.txt")

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE = REPO_ROOT / "deploy" / "kubernetes"
COMPONENTS = ("cleanup", "nvidia-runtime", "grafana-dashboards", "pod-names", "runtime-names")

# The exporter's HTTP routes (README); a probe or scrape path outside this set is a typo.
EXPORTER_PATHS = {"/", "/metrics", "/-/healthy", "/-/ready", "/api/v1/gpus"}
EXPECTED_KINDS = ["ConfigMap", "DaemonSet", "PrometheusRule", "Service", "ServiceMonitor"]


class Checker:
    """Collects failures so that one run reports all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
        return ok


RULES = Path("alerts/vram-exporter.rules.yml")
PROMETHEUSRULE = Path("deploy/kubernetes/prometheusrule.yaml")


def check_prometheusrule_fresh(c: Checker, rules_path: Path) -> object:
    """Returns the parsed rule file, for comparing with the rendered PrometheusRule later."""
    committed_path = REPO_ROOT / PROMETHEUSRULE
    if not c.check(rules_path.exists(), f"{RULES} is missing"):
        return None
    if not c.check(committed_path.exists(), f"{PROMETHEUSRULE} is missing; run python3 scripts/gen-mixin.py"):
        return None
    rules = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    c.check(
        isinstance(rules, dict) and isinstance(rules.get("groups"), list) and len(rules["groups"]) > 0,
        f"{RULES}: expected a non-empty groups list",
    )
    committed_doc = yaml.safe_load(committed_path.read_text(encoding="utf-8"))
    c.check(
        isinstance(committed_doc, dict) and committed_doc.get("spec") == rules,
        f"{PROMETHEUSRULE}: spec does not parse to the same rules as {RULES}; run python3 scripts/gen-mixin.py",
    )
    return rules


# ---------------------------------------------------------------------------------------------------
# Rendering


def find_kustomize() -> list[str] | None:
    if os.environ.get("KUSTOMIZE"):
        return os.environ["KUSTOMIZE"].split()
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render_with(kustomize: list[str], components: tuple[str, ...]) -> str:
    """Renders the base, through a throw-away overlay when components are asked for."""
    if not components:
        return subprocess.run([*kustomize, str(BASE)], check=True, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as overlay:
        # kustomize refuses absolute paths to bases and components, hence relative ones.
        rel = Path(os.path.relpath(BASE, overlay)).as_posix()
        (Path(overlay) / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n  - {rel}\n"
            "components:\n" + "".join(f"  - {rel}/components/{name}\n" for name in components),
            encoding="utf-8",
        )
        return subprocess.run([*kustomize, overlay], check=True, capture_output=True, text=True).stdout


def render_minimal() -> str:
    """A stand-in for `kustomize build` covering only what the base uses (no hash suffixes)."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    docs: list[dict] = []
    for resource in kustomization.get("resources", []):
        docs.extend(d for d in yaml.safe_load_all((BASE / resource).read_text(encoding="utf-8")) if d)
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(f).name: (BASE / f).read_text(encoding="utf-8") for f in generator.get("files", [])}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    tags = {i["name"]: i for i in kustomization.get("images", [])}
    for doc in docs:
        if doc.get("kind") == "DaemonSet":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                image = tags.get(container["image"])
                if image:
                    container["image"] = f"{image.get('newName', image['name'])}:{image.get('newTag', 'latest')}"
    return yaml.safe_dump_all(docs)


# ---------------------------------------------------------------------------------------------------
# Checks on one rendering


def container_port(container: dict, ref: object) -> int | None:
    """Resolves a probe or Service targetPort (a name or a number) to the container's port number."""
    for port in container.get("ports", []):
        if ref == port.get("name") or ref == port.get("containerPort"):
            return port["containerPort"]
    return None


def subset(small: dict | None, big: dict | None) -> bool:
    return bool(small) and all((big or {}).get(k) == v for k, v in small.items())


def check_rendering(c: Checker, label: str, text: str, components: tuple[str, ...], rules: object,
                    exporter_bin: str | None) -> None:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        c.check(False, f"[{label}] output is not YAML: {err}")
        return

    by_kind: dict[str, dict] = {}
    for i, doc in enumerate(docs):
        where = f"[{label}] document {i}"
        if not c.check(isinstance(doc, dict), f"{where} is not a mapping"):
            continue
        meta = doc.get("metadata") or {}
        c.check(bool(doc.get("apiVersion")), f"{where} has no apiVersion")
        c.check(bool(doc.get("kind")), f"{where} has no kind")
        c.check(isinstance(meta, dict) and bool(meta.get("name")), f"{where} ({doc.get('kind')}) has no metadata.name")
        c.check("namespace" not in meta, f"{where} ({doc.get('kind')}) sets a namespace; the base must not")
        by_kind.setdefault(doc.get("kind"), doc)
    kinds = sorted(str(d.get("kind")) for d in docs if isinstance(d, dict))
    expected_kinds = sorted(EXPECTED_KINDS + (["ConfigMap"] if "grafana-dashboards" in components else []))
    if not c.check(kinds == expected_kinds, f"[{label}] kinds are {kinds}, expected {expected_kinds}"):
        return
    dashboard_maps = [d for d in docs if d.get("kind") == "ConfigMap" and "grafana_dashboard" in (d["metadata"].get("labels") or {})]
    by_kind["ConfigMap"] = next(d for d in docs if d.get("kind") == "ConfigMap" and d not in dashboard_maps)
    if "grafana-dashboards" in components:
        check_dashboard_configmap(c, label, dashboard_maps)
    else:
        c.check(not dashboard_maps, f"[{label}] a grafana_dashboard ConfigMap without the grafana-dashboards component")

    ds, svc, sm = by_kind["DaemonSet"], by_kind["Service"], by_kind["ServiceMonitor"]
    cm, rule = by_kind["ConfigMap"], by_kind["PrometheusRule"]
    c.check(ds["apiVersion"] == "apps/v1", f"[{label}] DaemonSet apiVersion is {ds['apiVersion']}")
    c.check(sm["apiVersion"] == "monitoring.coreos.com/v1", f"[{label}] ServiceMonitor apiVersion")
    c.check(rule["apiVersion"] == "monitoring.coreos.com/v1", f"[{label}] PrometheusRule apiVersion")

    pod = ds["spec"]["template"]["spec"]
    pod_labels = ds["spec"]["template"]["metadata"].get("labels", {})
    c.check(subset(ds["spec"]["selector"].get("matchLabels"), pod_labels),
            f"[{label}] DaemonSet selector does not match its pod template labels")
    containers = pod.get("containers", [])
    if not c.check(len(containers) == 1, f"[{label}] expected one container, found {len(containers)}"):
        return
    ctr = containers[0]
    metrics_port = container_port(ctr, "metrics")
    c.check(metrics_port is not None, f"[{label}] the container has no port named metrics")

    # Scheduling on GPU nodes.
    c.check((pod.get("nodeSelector") or {}).get("nvidia.com/gpu.present") == "true",
            f"[{label}] nodeSelector nvidia.com/gpu.present: \"true\" is missing")
    c.check(any(t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NoSchedule" for t in pod.get("tolerations", [])),
            f"[{label}] no toleration for nvidia.com/gpu NoSchedule")

    # Probes.
    for probe_name, path in (("readinessProbe", "/-/ready"), ("livenessProbe", "/-/healthy")):
        get = (ctr.get(probe_name) or {}).get("httpGet") or {}
        c.check(get.get("path") == path, f"[{label}] {probe_name} path is {get.get('path')!r}, expected {path}")
        c.check(get.get("path") in EXPORTER_PATHS, f"[{label}] {probe_name} path {get.get('path')!r} is not an exporter route")
        c.check(container_port(ctr, get.get("port")) == metrics_port and metrics_port is not None,
                f"[{label}] {probe_name} port {get.get('port')!r} is not the metrics port")

    # Resources.
    res = ctr.get("resources") or {}
    for kind in ("requests", "limits"):
        for key in ("cpu", "memory"):
            c.check(key in (res.get(kind) or {}), f"[{label}] resources.{kind}.{key} is missing")

    # Configuration: --config points into the mounted ConfigMap, which parses and listens on the port.
    args = ctr.get("args", [])
    config_args = [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    if c.check(len(config_args) == 1, f"[{label}] expected one --config=PATH argument, found {config_args}"):
        config_path = Path(config_args[0])
        mounts = {m["mountPath"]: m["name"] for m in ctr.get("volumeMounts", [])}
        volume_name = mounts.get(str(config_path.parent))
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        volume = volumes.get(volume_name) or {}
        c.check((volume.get("configMap") or {}).get("name") == cm["metadata"]["name"],
                f"[{label}] {config_path.parent} is not a mount of ConfigMap {cm['metadata']['name']}")
        config_text = (cm.get("data") or {}).get(config_path.name)
        if c.check(config_text is not None, f"[{label}] ConfigMap has no key {config_path.name}"):
            try:
                config = tomllib.loads(config_text)
            except tomllib.TOMLDecodeError as err:
                c.check(False, f"[{label}] {config_path.name} is not TOML: {err}")
                config = {}
            listen = str((config.get("web") or {}).get("listen", "0.0.0.0:18726"))
            c.check(listen.rsplit(":", 1)[-1] == str(metrics_port),
                    f"[{label}] config web.listen {listen} disagrees with containerPort {metrics_port}")
            if exporter_bin:
                check_config_with_exporter(c, label, exporter_bin, config_path.name, config_text)

    # Security.
    pod_sc = pod.get("securityContext") or {}
    ctr_sc = ctr.get("securityContext") or {}
    caps = ctr_sc.get("capabilities") or {}
    c.check(ctr_sc.get("readOnlyRootFilesystem") is True, f"[{label}] readOnlyRootFilesystem is not true")
    c.check(ctr_sc.get("allowPrivilegeEscalation") is False, f"[{label}] allowPrivilegeEscalation is not false")
    c.check(not ctr_sc.get("privileged"), f"[{label}] the container is privileged")
    c.check(caps.get("drop") == ["ALL"], f"[{label}] capabilities.drop is {caps.get('drop')}, expected [ALL]")
    c.check(pod.get("automountServiceAccountToken") is False, f"[{label}] the service account token is mounted")
    if "cleanup" in components:
        c.check(pod.get("hostPID") is True, f"[{label}] hostPID is not true")
        c.check(caps.get("add") == ["KILL"], f"[{label}] capabilities.add is {caps.get('add')}, expected [KILL]")
    else:
        c.check(not pod.get("hostPID"), f"[{label}] hostPID is set without the cleanup component")
        c.check(not caps.get("add"), f"[{label}] capabilities are added without the cleanup component")
    if {"cleanup", "pod-names", "runtime-names"} & set(components):
        c.check(pod_sc.get("runAsUser") == 0,
                f"[{label}] the pod does not run as UID 0 (kill, pod-resources or runtime socket)")
    else:
        c.check(pod_sc.get("runAsNonRoot") is True and pod_sc.get("runAsUser", 0) != 0,
                f"[{label}] the pod does not run as a non-root user")

    # Workload attribution: the host's /proc where kubernetes.proc_root points, the kubelet's pod-resources
    # directory where the configured socket is, both hostPath mounts read-only.
    env = {e.get("name"): e.get("value") for e in ctr.get("env", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    host_mounts = {m["mountPath"]: ((volumes.get(m["name"]) or {}).get("hostPath") or {}, m.get("readOnly"))
                   for m in ctr.get("volumeMounts", [])}
    proc_root = env.get("VRAM_EXPORTER__KUBERNETES__PROC_ROOT", "/proc")
    proc = host_mounts.get(proc_root)
    c.check(proc is not None and proc[0].get("path") == "/proc" and proc[1] is True,
            f"[{label}] kubernetes.proc_root {proc_root} is not the host's /proc mounted read-only")
    socket_dir = "/var/lib/kubelet/pod-resources"
    sock = host_mounts.get(socket_dir)
    c.check(sock is not None and sock[0].get("path") == socket_dir and sock[1] is True,
            f"[{label}] {socket_dir} is not the host's pod-resources directory mounted read-only")
    if "runtime-names" in components:
        # The runtime's socket at its host path, named by kubernetes.runtime_socket.
        c.check(env.get("VRAM_EXPORTER__KUBERNETES__RUNTIME_SOCKET") == "/run/containerd/containerd.sock",
                f"[{label}] kubernetes.runtime_socket does not name the mounted runtime socket")
        rt = host_mounts.get("/run/containerd/containerd.sock")
        c.check(rt is not None and rt[0].get("path") == "/run/containerd/containerd.sock"
                and rt[0].get("type") == "Socket" and rt[1] is True,
                f"[{label}] the container runtime's socket is not mounted read-only at its host path")
    c.check(all(ro is True for hp, ro in host_mounts.values() if hp),
            f"[{label}] a hostPath volume is mounted writable")
    expected_runtime = "nvidia" if "nvidia-runtime" in components else None
    c.check(pod.get("runtimeClassName") == expected_runtime,
            f"[{label}] runtimeClassName is {pod.get('runtimeClassName')!r}, expected {expected_runtime!r}")

    # Service and ServiceMonitor agree with the pods and with each other.
    c.check(subset(svc["spec"].get("selector"), pod_labels), f"[{label}] Service selector does not match the pods")
    svc_ports = {p.get("name"): p for p in svc["spec"].get("ports", [])}
    svc_metrics = svc_ports.get("metrics")
    if c.check(svc_metrics is not None, f"[{label}] Service has no port named metrics"):
        c.check(container_port(ctr, svc_metrics.get("targetPort", svc_metrics.get("port"))) == metrics_port,
                f"[{label}] Service targetPort {svc_metrics.get('targetPort')!r} is not the container's metrics port")
        c.check(svc_metrics.get("port") == metrics_port,
                f"[{label}] Service port {svc_metrics.get('port')} differs from containerPort {metrics_port}")
    c.check(subset(sm["spec"].get("selector", {}).get("matchLabels"), svc["metadata"].get("labels")),
            f"[{label}] ServiceMonitor selector does not match the Service's labels")
    endpoints = sm["spec"].get("endpoints", [])
    c.check(len(endpoints) > 0, f"[{label}] ServiceMonitor has no endpoints")
    for ep in endpoints:
        c.check(ep.get("port") in svc_ports, f"[{label}] ServiceMonitor port {ep.get('port')!r} is not a Service port name")
        c.check(ep.get("path", "/metrics") == "/metrics", f"[{label}] ServiceMonitor path {ep.get('path')!r} is not /metrics")
        # Stable identity: instance is the node's name, not the pod address, so a rollout keeps the series.
        relabel = ep.get("relabelings") or []
        c.check(any(r.get("sourceLabels") == ["__meta_kubernetes_pod_node_name"] and r.get("targetLabel") == "instance"
                    and r.get("action", "replace") == "replace" for r in relabel),
                f"[{label}] ServiceMonitor endpoint {ep.get('port')!r} does not relabel the node name into instance")

    # PrometheusRule carries exactly the bundled rules, and their job selector is the Service's name
    # (the job label the Prometheus operator gives targets of a ServiceMonitor without jobLabel).
    if rules is not None:
        c.check(rule.get("spec") == rules, f"[{label}] PrometheusRule spec differs from alerts/vram-exporter.rules.yml")
        exprs = [str(r.get("expr", "")) for g in rules.get("groups", []) for r in g.get("rules", [])]
        jobs = {m for e in exprs for m in re.findall(r'\bjob\s*=~?\s*"([^"]*)"', e)}
        if "jobLabel" not in sm["spec"]:
            c.check(jobs <= {svc["metadata"]["name"]},
                    f"[{label}] the rules select job {sorted(jobs)} but the Service (hence job) is {svc['metadata']['name']!r}")


def check_dashboard_configmap(c: Checker, label: str, maps: list[dict]) -> None:
    """The component's ConfigMap carries every committed dashboard, unchanged, for the Grafana sidecar."""
    if not c.check(len(maps) == 1, f"[{label}] expected one grafana_dashboard ConfigMap, found {len(maps)}"):
        return
    cm = maps[0]
    c.check(cm["metadata"]["labels"].get("grafana_dashboard") == "1",
            f"[{label}] dashboards ConfigMap label grafana_dashboard is not the string \"1\"")
    data = cm.get("data") or {}
    files = {p.name: p for p in sorted((REPO_ROOT / "dashboards").glob("*.json"))}
    c.check(sorted(data) == sorted(files), f"[{label}] dashboards ConfigMap keys {sorted(data)} are not {sorted(files)}")
    for name, path in files.items():
        if name in data:
            c.check(json.loads(data[name]) == json.loads(path.read_text(encoding="utf-8")),
                    f"[{label}] dashboards ConfigMap {name} differs from dashboards/{name}")
    size = sum(len(v.encode()) for v in data.values())
    c.check(size < 900 * 1024, f"[{label}] dashboards ConfigMap is {size} bytes; a ConfigMap holds at most 1 MiB")


def check_config_with_exporter(c: Checker, label: str, exporter_bin: str, name: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VRAM_EXPORTER__")}
        proc = subprocess.run([exporter_bin, "--config", str(path), "--check-config"],
                              capture_output=True, text=True, env=env, timeout=60)
    c.check(proc.returncode == 0,
            f"[{label}] vram-exporter --check-config refused {name} (exit {proc.returncode}): {proc.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rules", type=Path, default=REPO_ROOT / "alerts" / "vram-exporter.rules.yml",
                        help="the Prometheus rule file the PrometheusRule must carry")
    parser.add_argument("--exporter-bin", default=os.environ.get("VRAM_EXPORTER_BIN"),
                        help="a built vram-exporter, to validate config.toml with --check-config")
    args = parser.parse_args(argv)

    c = Checker()
    rules = check_prometheusrule_fresh(c, args.rules)

    kustomize = find_kustomize()
    variants: list[tuple[str, ...]] = [(), ("cleanup",), ("nvidia-runtime",), ("grafana-dashboards",), ("pod-names",),
                                       ("runtime-names",), COMPONENTS]
    if kustomize is None:
        banner = "#" * 78
        print(f"{banner}\n# check-deploy: NO kustomize OR kubectl FOUND. The base is checked through a\n"
              f"# minimal built-in renderer; the components are NOT checked.\n{banner}", file=sys.stderr)
        if os.environ.get("VRAM_REQUIRE_TOOLS") == "1":
            c.check(False, "VRAM_REQUIRE_TOOLS=1 and no kustomize or kubectl is installed")
        check_rendering(c, "base, minimal renderer", render_minimal(), (), rules, args.exporter_bin)
    else:
        print(f"check-deploy: rendering with `{' '.join(kustomize)}`")
        for components in variants:
            label = "base" + "".join(f" + {name}" for name in components)
            try:
                text = render_with(kustomize, components)
            except subprocess.CalledProcessError as err:
                c.check(False, f"[{label}] {' '.join(kustomize)} failed: {err.stderr.strip()}")
                continue
            check_rendering(c, label, text, components, rules, args.exporter_bin if not components else None)

    if c.failures:
        for failure in c.failures:
            print(f"check-deploy: FAIL {failure}", file=sys.stderr)
        print(f"check-deploy: {len(c.failures)} failing, {c.passed} passing checks", file=sys.stderr)
        return 1
    print(f"check-deploy: ok ({c.passed} checks over {len(variants) if kustomize else 1} renderings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
