#!/usr/bin/env bash
# Checks vram-exporter's monitoring-as-code: the bundled rules (syntax and promtool unit tests), the example
# Alertmanager configuration (syntax and routing), the compose Prometheus configuration, and the Grafana
# dashboards (JSON, ids, datasource variable, PromQL of every panel). Exits non-zero on any failure.
# promtool/amtool come from Debian's `prometheus` and `prometheus-alertmanager` packages; where they are
# missing the checks that need them are skipped loudly, unless VRAM_REQUIRE_TOOLS=1, which makes it a failure.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2

RULES=alerts/vram-exporter.rules.yml
AM=alerts/alertmanager.yml
PROM=deploy/compose/prometheus.yml
failures=0
skipped=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step() { printf '\n==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
fail() { printf '    FAIL: %s\n' "$*"; failures=$((failures + 1)); }
run() {
    local what=$1; shift
    if "$@" >"$tmp/out" 2>&1; then
        sed 's/^/      /' "$tmp/out"; ok "$what"
    else
        sed 's/^/      /' "$tmp/out"; fail "$what"
    fi
}

have_tool() {
    if command -v "$1" >/dev/null 2>&1; then return 0; fi
    if [ "${VRAM_REQUIRE_TOOLS:-0}" = 1 ]; then
        fail "$1 not found and VRAM_REQUIRE_TOOLS=1 (install Debian package $2)"
    else
        printf '    !!! SKIPPED: %s not found (install Debian package %s); set VRAM_REQUIRE_TOOLS=1 to fail instead\n' "$1" "$2"
        skipped=$((skipped + 1))
    fi
    return 1
}

step "Prometheus rules ($RULES)"
if have_tool promtool prometheus; then
    run "promtool check rules $RULES" promtool check rules "$RULES"
    run "promtool test rules alerts/tests/*.yml" promtool test rules alerts/tests/*.yml
fi

step "Rule conventions (labels, annotations, runbook anchors, tests per alert)"
run "every alert has severity, summary, description, runbook_url with an anchor in docs/runbook.md and a firing test" \
    python3 - "$RULES" <<'PY'
import glob, re, sys
try:
    import yaml
except ImportError:
    print("python3-yaml missing: rule convention check needs it"); sys.exit(1)
rules = yaml.safe_load(open(sys.argv[1]))
runbook = open("docs/runbook.md").read()
anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
           for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
fired = set()
for path in glob.glob("alerts/tests/*.yml"):
    for group in yaml.safe_load(open(path)).get("tests", []):
        for case in group.get("alert_rule_test", []) or []:
            if case.get("exp_alerts"):
                fired.add(case["alertname"])
errors = []
names = []
for group in rules["groups"]:
    for rule in group["rules"]:
        if "record" in rule:
            if not re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]):
                errors.append(f"recording rule {rule['record']}: not level:metric:operations")
            continue
        name = rule["alert"]; names.append(name)
        if not re.fullmatch(r"Vram[A-Z][A-Za-z]+", name):
            errors.append(f"{name}: not CamelCase with the Vram prefix")
        if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
            errors.append(f"{name}: severity must be critical or warning")
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                errors.append(f"{name}: missing annotation {key}")
        anchor = ann.get("runbook_url", "").rpartition("#")[2]
        if anchor != name.lower():
            errors.append(f"{name}: runbook_url anchor {anchor!r} is not {name.lower()!r}")
        if anchor not in anchors:
            errors.append(f"{name}: docs/runbook.md has no section #{anchor}")
        if name not in fired:
            errors.append(f"{name}: no promtool test expects it to fire")
print(f"{len(names)} alerts: {', '.join(names)}")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY

step "Alertmanager configuration ($AM)"
if have_tool amtool prometheus-alertmanager; then
    run "amtool check-config $AM" amtool check-config "$AM"
    route_is() {
        local want=$1; shift
        local got
        got=$(amtool config routes test --config.file="$AM" "$@" 2>/dev/null)
        [ "$got" = "$want" ] || { echo "labels $* routed to '$got', want '$want'"; return 1; }
    }
    run "critical alerts route to pager" route_is pager alertname=VramHardLimitBreached severity=critical instance=h:18726 gpu=0
    run "warning alerts route to chat" route_is chat alertname=VramSoftLimitExceeded severity=warning instance=h:18726 gpu=0
fi

step "Prometheus configuration ($PROM)"
if have_tool promtool prometheus; then
    run "promtool check config $PROM (rule files resolved relative to it)" promtool check config "$PROM"
fi

step "Grafana dashboards (dashboards/*.json)"
for f in dashboards/*.json; do
    run "$f is valid JSON (python3 -m json.tool)" python3 -m json.tool "$f" /dev/null
done
run "dashboard structure: uids, unique panel ids, datasource/cluster/node variables, units, cluster in by/on" \
    python3 - "$tmp/exprs.yml" <<'PY'
import glob, json, re, sys
DS = {"type": "prometheus", "uid": "${datasource}"}
ALLOWED = {"cluster", "job", "node", "gpu", "namespace", "__rate_interval", "__interval", "__range"}
SUBST = {"cluster": ".*", "job": "vram-exporter", "node": "localhost:18726", "gpu": "0", "namespace": ".*",
         "__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
EXPECTED_UIDS = {"vram-fleet.json": "vram-fleet", "vram-gpu.json": "vram-gpu"}
errors, exprs = [], []

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))

def datasources(node, path="$"):
    if isinstance(node, dict):
        if "datasource" in node and isinstance(node["datasource"], (dict, str)):
            yield path, node["datasource"]
        for k, v in node.items():
            yield from datasources(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from datasources(v, f"{path}[{i}]")

uids = {}
for path in sorted(glob.glob("dashboards/*.json")):
    name = path.rsplit("/", 1)[1]
    d = json.load(open(path))
    where = name
    if not d.get("description"):
        errors.append(f"{where}: no description saying why it exists")
    uid = d.get("uid")
    if EXPECTED_UIDS.get(name, uid) != uid or not uid:
        errors.append(f"{where}: uid {uid!r}, want {EXPECTED_UIDS.get(name)!r}")
    if uid in uids:
        errors.append(f"{where}: uid {uid} also used by {uids[uid]}")
    uids[uid] = name
    if d.get("id") not in (None,):
        errors.append(f"{where}: dashboard id must be null (assigned by Grafana)")
    variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append(f"{where}: needs a `datasource` variable of type datasource (prometheus)")
    for v in ("cluster", "job", "node", "gpu"):
        var = variables.get(v)
        if not var or var.get("type") != "query" or "label_values(" not in json.dumps(var.get("query")):
            errors.append(f"{where}: needs a `{v}` query variable using label_values")
    for p, value in datasources(d):
        if isinstance(value, str) or (value.get("uid") not in ("${datasource}", "-- Grafana --")):
            errors.append(f"{where}: {p} datasource {value!r} is hard-coded")
    ids = {}
    for panel in walk(d.get("panels", [])):
        pid = panel.get("id")
        if not isinstance(pid, int):
            errors.append(f"{where}: panel {panel.get('title')!r} has no integer id")
        elif pid in ids:
            errors.append(f"{where}: panel id {pid} used by {ids[pid]!r} and {panel.get('title')!r}")
        ids[pid] = panel.get("title")
        if panel.get("type") == "row":
            continue
        if panel.get("datasource") != DS:
            errors.append(f"{where}: panel {pid} datasource is {panel.get('datasource')!r}, want {DS}")
        if not panel.get("targets"):
            errors.append(f"{where}: panel {pid} has no query")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            errors.append(f"{where}: panel {pid} ({panel.get('title')!r}) has no unit (fieldConfig.defaults.unit)")
        # Every by()/on() keeps the cluster label, so two clusters' series never merge.
        for t in panel.get("targets", []):
            for clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", t.get("expr", "")):
                labels = [l.strip() for l in clause.split(",")]
                if "cluster" not in labels:
                    errors.append(f"{where}: panel {pid} groups by ({clause}) without cluster")
        for t in panel.get("targets", []):
            if t.get("datasource") != DS:
                errors.append(f"{where}: panel {pid} target {t.get('refId')} datasource is not {DS}")
            expr = t.get("expr", "")
            used = set(re.findall(r"\$\{?(\w+)", expr))
            if used - ALLOWED:
                errors.append(f"{where}: panel {pid} uses variables {sorted(used - ALLOWED)} (allowed: {sorted(ALLOWED)})")
            concrete = re.sub(r"\$\{?(\w+)\}?", lambda m: SUBST.get(m.group(1), m.group(0)), expr)
            exprs.append((f"{uid}_{pid}_{t.get('refId')}", concrete))
    links = json.dumps(d.get("links", []))
    other = {"vram-fleet": "/d/vram-gpu/", "vram-gpu": "/d/vram-fleet/"}.get(uid)
    if other and other not in links:
        errors.append(f"{where}: no dashboard link to {other}")
    print(f"{name}: uid {uid}, {len(ids)} panels, {sum(1 for e in exprs if e[0].startswith(uid + '_'))} queries")

# Every panel query (variables substituted) becomes a recording rule so promtool can parse the PromQL.
with open(sys.argv[1], "w") as f:
    f.write("groups:\n  - name: dashboard-exprs\n    rules:\n")
    for name, expr in exprs:
        rec = "dashboard:" + re.sub(r"[^a-zA-Z0-9_]", "_", name) + ":expr"
        f.write(f"      - record: {rec}\n        expr: {json.dumps(expr)}\n")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
if [ -s "$tmp/exprs.yml" ] && have_tool promtool prometheus; then
    run "every panel query parses as PromQL (variables substituted)" promtool check rules "$tmp/exprs.yml"
fi

step "Provisioning and compose files (YAML)"
run "dashboards/provisioning/*.yml, deploy/compose/*.yml parse as YAML" python3 - <<'PY'
import glob, sys
try:
    import yaml
except ImportError:
    print("python3-yaml missing"); sys.exit(1)
for path in sorted(glob.glob("dashboards/provisioning/*.yml") + glob.glob("deploy/compose/*.yml")):
    yaml.safe_load(open(path))
    print(path)
PY

printf '\n'
if [ "$failures" -gt 0 ]; then
    printf 'check-monitoring: %d check(s) FAILED\n' "$failures"
    exit 1
fi
if [ "$skipped" -gt 0 ]; then
    printf 'check-monitoring: passed, but %d tool check(s) were SKIPPED (missing promtool/amtool)\n' "$skipped"
else
    printf 'check-monitoring: all checks passed\n'
fi
